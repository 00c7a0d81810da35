"""Staff control of one booking over real HTTP: the staff group and a citizen on the fake Bot
API, the outbox dispatcher in between."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from bot.dispatch import Dispatcher
from bot.telegram import TelegramChannel
from bot.wiring import App
from storage.db import Database
from storage.models import Appointment, AppointmentStatus, AuditLog
from storage.settings import Settings
from tests.fakes.telegram_api import FakeTelegram, button_labels
from tests.helpers import feed, texts
from tests.staff_support import STAFF_A, STAFF_GROUP, STAFF_PRIVATE
from tests.test_staff_control import book_online

CITIZEN = 5111000001
TUESDAY = dt.date(2026, 11, 24)


@pytest.fixture
def settings(telegram_staff_settings: Settings) -> Settings:
    return telegram_staff_settings


async def test_staff_cancel_in_the_group_reaches_the_citizen_with_a_rebook_button(
        app: App, telegram_api: FakeTelegram, telegram_channel: TelegramChannel, telegram_dispatcher: Dispatcher,
        database: Database) -> None:
    mine = await book_online(app, "id_card", TUESDAY, 0, user=str(CITIZEN))
    await feed(telegram_channel, telegram_api.text_update(STAFF_A, f"/cancel {mine.code}", chat_id=STAFF_GROUP))
    assert "请写明原因" in texts(telegram_api, STAFF_GROUP)[-1]
    await feed(telegram_channel, telegram_api.text_update(STAFF_A, f"/cancel {mine.code} 窗口设备故障",
                                                          chat_id=STAFF_GROUP))
    assert "已取消（不计失约）" in texts(telegram_api, STAFF_GROUP)[-1]
    await telegram_dispatcher.drain()
    told = telegram_api.last_menu(CITIZEN)
    assert "非常抱歉" in told["text"] and "窗口设备故障" in told["text"]
    assert button_labels(told) == ["重新预约"]
    await feed(telegram_channel, telegram_api.press_update(CITIZEN, told, "重新预约"))
    assert "一次性告知" in texts(telegram_api, CITIZEN)[-1]
    async with database.read() as session:
        row = await session.get(Appointment, mine.id)
        assert row is not None and row.status == AppointmentStatus.CANCELLED


async def test_staff_move_in_the_group_and_the_citizen_accepts(
        app: App, telegram_api: FakeTelegram, telegram_channel: TelegramChannel, telegram_dispatcher: Dispatcher,
        database: Database) -> None:
    mine = await book_online(app, "id_card", TUESDAY, 0, user=str(CITIZEN))
    await feed(telegram_channel, telegram_api.text_update(STAFF_A, f"/move {mine.code}", chat_id=STAFF_GROUP))
    days = telegram_api.last_menu(STAFF_GROUP)
    assert "请选择新日期" in days["text"] and "11月25日 周三 · 余" in button_labels(days)[1]
    await feed(telegram_channel, telegram_api.press_update(STAFF_A, days, "11月25日"))
    slots = telegram_api.last_menu(STAFF_GROUP)
    assert "请选择时段" in slots["text"]
    await feed(telegram_channel, telegram_api.press_update(STAFF_A, slots, "10:00-10:20"))
    assert "已向市民发出改约邀请" in texts(telegram_api, STAFF_GROUP)[-1]
    await telegram_dispatcher.drain()
    asked = telegram_api.last_menu(CITIZEN)
    assert "工作人员想为您改约" in asked["text"]
    assert button_labels(asked) == ["同意改约", "保留原预约"]
    await feed(telegram_channel, telegram_api.press_update(CITIZEN, asked, "同意改约"))
    shown = [m for m in telegram_api.chat_messages(CITIZEN) if m["message_id"] == asked["message_id"]]
    assert "已改约" in shown[0]["text"] and not shown[0].get("reply_markup")   # edited in place
    await telegram_dispatcher.drain()
    assert "市民已同意改约" in texts(telegram_api, STAFF_GROUP)[-1]
    async with database.read() as session:
        row = await session.get(Appointment, mine.id)
        assert row is not None and row.local_date == dt.date(2026, 11, 25)


async def test_phone_is_refused_in_the_group_and_shown_in_private(
        app: App, telegram_api: FakeTelegram, telegram_channel: TelegramChannel, telegram_dispatcher: Dispatcher,
        database: Database) -> None:
    await book_online(app, "id_card", TUESDAY, 0, user=str(CITIZEN))
    await feed(telegram_channel, telegram_api.text_update(CITIZEN, "/human"))
    await feed(telegram_channel, telegram_api.text_update(STAFF_PRIVATE, "/claim 1"))
    await feed(telegram_channel, telegram_api.text_update(STAFF_A, "/phone 1", chat_id=STAFF_GROUP))
    assert "请私聊机器人发送 /phone 编号" in texts(telegram_api, STAFF_GROUP)[-1]
    await feed(telegram_channel, telegram_api.text_update(STAFF_PRIVATE, "/phone 1"))
    assert "张三 13812345678" in texts(telegram_api, STAFF_PRIVATE)[-1]
    assert not any("13812345678" in t for t in texts(telegram_api, STAFF_GROUP))
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "phone_shown")) == 1


async def test_closures_and_reopen_in_the_group(
        app: App, telegram_api: FakeTelegram, telegram_channel: TelegramChannel, database: Database) -> None:
    await feed(telegram_channel, telegram_api.text_update(STAFF_A, "/closure id_card 11-25 设备检修",
                                                          chat_id=STAFF_GROUP))
    await feed(telegram_channel, telegram_api.press_update(STAFF_A, telegram_api.last_menu(STAFF_GROUP), "确认停办"))
    await feed(telegram_channel, telegram_api.text_update(STAFF_A, "/closures", chat_id=STAFF_GROUP))
    listing = texts(telegram_api, STAFF_GROUP)[-1]
    assert "#1【居民身份证办理" in listing and "设备检修" in listing
    await feed(telegram_channel, telegram_api.text_update(STAFF_A, "/reopen 1", chat_id=STAFF_GROUP))
    assert "已撤销停办 #1" in texts(telegram_api, STAFF_GROUP)[-1]
    await feed(telegram_channel, telegram_api.text_update(STAFF_A, "/closures", chat_id=STAFF_GROUP))
    assert "没有未结束的停办" in texts(telegram_api, STAFF_GROUP)[-1]
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "reopen")) == 1
