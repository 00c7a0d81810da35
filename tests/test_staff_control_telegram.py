"""Staff control of one booking over real HTTP: the staff group and a citizen on the fake Bot
API, the outbox dispatcher in between."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.dispatch import Dispatcher
from bot.telegram import TelegramChannel
from bot.telegram.limiter import RateLimiter
from bot.wiring import App
from storage.db import Database
from storage.models import Appointment, AppointmentStatus, AuditLog
from storage.settings import Settings, TelegramSettings
from tests.fakes import FakeTime
from tests.fakes.telegram_api import FakeTelegram, button_labels
from tests.helpers import running_telegram
from tests.staff_support import STAFF_A, STAFF_GROUP, STAFF_PRIVATE, staff_settings
from tests.test_staff_control import book_online

CITIZEN = 5111000001
TUESDAY = dt.date(2026, 11, 24)
_update_ids = itertools.count(900001)


@pytest.fixture
async def api() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
def settings(api: FakeTelegram) -> Settings:
    return staff_settings(Settings(telegram=TelegramSettings(
        token=api.token, base_url=api.base_url, base_file_url=api.base_file_url)))


@pytest.fixture
async def channel(app: App, fake_time: FakeTime) -> AsyncIterator[TelegramChannel]:
    async with running_telegram(app, RateLimiter(now=fake_time.now, sleep=fake_time.sleep)) as channel:
        yield channel


@pytest.fixture
def dispatcher(app: App, channel: TelegramChannel) -> Dispatcher:
    return Dispatcher(database=app.database, centre=app.centre, settings=app.settings,
                      clock=app.clock, senders={"telegram": channel.sender},
                      staff_senders=[channel.sender])


async def feed(channel: TelegramChannel, update: dict[str, Any]) -> None:
    update.setdefault("update_id", next(_update_ids))
    await channel.process_json(update)


def texts(api: FakeTelegram, chat: int) -> list[str]:
    return [m.get("text", "") for m in api.chat_messages(chat)]


async def test_staff_cancel_in_the_group_reaches_the_citizen_with_a_rebook_button(
        app: App, api: FakeTelegram, channel: TelegramChannel, dispatcher: Dispatcher,
        database: Database) -> None:
    mine = await book_online(app, "id_card", TUESDAY, 0, user=str(CITIZEN))
    await feed(channel, api.text_update(STAFF_A, f"/cancel {mine.code}", chat_id=STAFF_GROUP))
    assert "请写明原因" in texts(api, STAFF_GROUP)[-1]
    await feed(channel, api.text_update(STAFF_A, f"/cancel {mine.code} 窗口设备故障",
                                        chat_id=STAFF_GROUP))
    assert "已取消（不计失约）" in texts(api, STAFF_GROUP)[-1]
    await dispatcher.drain()
    told = api.last_menu(CITIZEN)
    assert "非常抱歉" in told["text"] and "窗口设备故障" in told["text"]
    assert button_labels(told) == ["重新预约"]
    await feed(channel, api.press_update(CITIZEN, told, "重新预约"))
    assert "一次性告知" in texts(api, CITIZEN)[-1]
    async with database.read() as session:
        row = await session.get(Appointment, mine.id)
        assert row is not None and row.status == AppointmentStatus.CANCELLED


async def test_staff_move_in_the_group_and_the_citizen_accepts(
        app: App, api: FakeTelegram, channel: TelegramChannel, dispatcher: Dispatcher,
        database: Database) -> None:
    mine = await book_online(app, "id_card", TUESDAY, 0, user=str(CITIZEN))
    await feed(channel, api.text_update(STAFF_A, f"/move {mine.code}", chat_id=STAFF_GROUP))
    days = api.last_menu(STAFF_GROUP)
    assert "请选择新日期" in days["text"] and "11月25日 周三 · 余" in button_labels(days)[1]
    await feed(channel, api.press_update(STAFF_A, days, "11月25日"))
    slots = api.last_menu(STAFF_GROUP)
    assert "请选择时段" in slots["text"]
    await feed(channel, api.press_update(STAFF_A, slots, "10:00-10:20"))
    assert "已向市民发出改约邀请" in texts(api, STAFF_GROUP)[-1]
    await dispatcher.drain()
    asked = api.last_menu(CITIZEN)
    assert "工作人员想为您改约" in asked["text"]
    assert button_labels(asked) == ["同意改约", "保留原预约"]
    await feed(channel, api.press_update(CITIZEN, asked, "同意改约"))
    shown = [m for m in api.chat_messages(CITIZEN) if m["message_id"] == asked["message_id"]]
    assert "已改约" in shown[0]["text"] and not shown[0].get("reply_markup")   # edited in place
    await dispatcher.drain()
    assert "市民已同意改约" in texts(api, STAFF_GROUP)[-1]
    async with database.read() as session:
        row = await session.get(Appointment, mine.id)
        assert row is not None and row.local_date == dt.date(2026, 11, 25)


async def test_phone_is_refused_in_the_group_and_shown_in_private(
        app: App, api: FakeTelegram, channel: TelegramChannel, dispatcher: Dispatcher,
        database: Database) -> None:
    await book_online(app, "id_card", TUESDAY, 0, user=str(CITIZEN))
    await feed(channel, api.text_update(CITIZEN, "/human"))
    await feed(channel, api.text_update(STAFF_PRIVATE, "/claim 1"))
    await feed(channel, api.text_update(STAFF_A, "/phone 1", chat_id=STAFF_GROUP))
    assert "请私聊机器人发送 /phone 编号" in texts(api, STAFF_GROUP)[-1]
    await feed(channel, api.text_update(STAFF_PRIVATE, "/phone 1"))
    assert "张三 13812345678" in texts(api, STAFF_PRIVATE)[-1]
    assert not any("13812345678" in t for t in texts(api, STAFF_GROUP))
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "phone_shown")) == 1


async def test_closures_and_reopen_in_the_group(
        app: App, api: FakeTelegram, channel: TelegramChannel, database: Database) -> None:
    await feed(channel, api.text_update(STAFF_A, "/closure id_card 11-25 设备检修",
                                        chat_id=STAFF_GROUP))
    await feed(channel, api.press_update(STAFF_A, api.last_menu(STAFF_GROUP), "确认停办"))
    await feed(channel, api.text_update(STAFF_A, "/closures", chat_id=STAFF_GROUP))
    listing = texts(api, STAFF_GROUP)[-1]
    assert "#1【居民身份证办理" in listing and "设备检修" in listing
    await feed(channel, api.text_update(STAFF_A, "/reopen 1", chat_id=STAFF_GROUP))
    assert "已撤销停办 #1" in texts(api, STAFF_GROUP)[-1]
    await feed(channel, api.text_update(STAFF_A, "/closures", chat_id=STAFF_GROUP))
    assert "没有未结束的停办" in texts(api, STAFF_GROUP)[-1]
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "reopen")) == 1
