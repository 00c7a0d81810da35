"""Complaints over the real transports: a WeChat citizen files one (with a photo) through the
webhook in safe mode and the supervisor, a WeChat user too, gets it by customer-service message;
a Telegram citizen files one on the fake Bot API, the supervisor answers in private, and the
citizen's 不满意 to the 回访 reopens it. The staff group and the clerk get nothing."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select

from bot.dispatch import Dispatcher
from bot.reports import FileReports
from bot.telegram import TelegramChannel
from bot.telegram.limiter import RateLimiter
from bot.web import build_web_app
from bot.wechat import build_wechat
from bot.wiring import App
from handlers.engine import Assistant
from storage.clock import ManualClock
from storage.db import Database
from storage.models import Complaint, RequestStatus
from storage.settings import AccessSettings, Settings, TelegramSettings, WechatSettings
from tests.fakes import FakeTime
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.wechat_api import (
    APP_ID,
    APP_SECRET,
    SAMPLE_AES_KEY,
    SAMPLE_TOKEN,
    FakeWechatApi,
    WechatPush,
)
from tests.helpers import feed, load_demo, make_centre, running_telegram
from tests.staff_support import STAFF_GROUP, SUPERVISOR
from tests.test_wechat_webhook import Citizen, Env

BOSS_OPENID = "oBoss_12AbCdEfGhIjKlMnOpQrSt"
CITIZEN = 5111000007


# --- WeChat ------------------------------------------------------------------------------------

@pytest.fixture
async def wechat_api() -> AsyncIterator[FakeWechatApi]:
    async with FakeWechatApi() as fake:
        yield fake


@pytest.fixture
async def env(database: Database, clock: ManualClock,
              wechat_api: FakeWechatApi) -> AsyncIterator[Env]:
    async with database.session() as session:
        await load_demo(session, clock.now())
    settings = dataclasses.replace(Settings(), wechat=WechatSettings(
        app_id=APP_ID, app_secret=APP_SECRET, token=SAMPLE_TOKEN,
        encoding_aes_key=SAMPLE_AES_KEY, api_base_url=wechat_api.url),
        access=AccessSettings(supervisors=(f"wechat:{BOSS_OPENID}",)))
    centre = make_centre()
    app = App(settings=settings, database=database, centre=centre, clock=clock)
    assistant = Assistant(database=database, centre=centre, clock=clock, settings=settings,
                          reports=FileReports())
    channel = build_wechat(app, assistant)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_web_app(
        channel.webhook_routes())), base_url="http://yuyue.test")
    push = WechatPush(http, path="/wechat", token=SAMPLE_TOKEN, aes_key=SAMPLE_AES_KEY,
                      now=clock.now)
    made = Env(wechat_api, channel, push, database, clock, http, app)
    yield made
    await channel.close()
    await http.aclose()


async def test_a_wechat_complaint_with_a_photo_reaches_the_supervisor_in_private(
        env: Env, wechat_api: FakeWechatApi, database: Database) -> None:
    boss = Citizen(env, BOSS_OPENID)
    boss._ids = itertools.count(34602178399870100)      # WeChat's message ids are unique
    # WeChat lets the account write to someone only within 48 hours of their last message.
    assert "没有未办结" in await boss.say("/complaints")
    citizen = Citizen(env)
    assert "投诉建议" in await citizen.say("主菜单")
    assert "保密" in await citizen.pick("投诉建议")
    assert "服务态度" in await citizen.pick("投诉")
    assert "具体情况" in await citizen.pick("环境设施")
    assert "照片" in await citizen.say("洗手间没有纸，地面很滑")
    answer = await citizen.send(citizen.message("image", MsgId=24602178399879999))
    assert "投诉已登记，编号 1" in answer and "保密" in answer
    dispatcher = Dispatcher(database=database, centre=env.app.centre, settings=env.app.settings,
                            clock=env.clock, senders={"wechat": env.channel.sender})
    assert (await dispatcher.drain()).sent == 1
    [sent] = [b for b in wechat_api.sent("message/custom/send")
              if "投诉 #1" in b.get("text", {}).get("content", "")]
    assert sent["touser"] == BOSS_OPENID
    assert "环境设施" in sent["text"]["content"] and "附照片" in sent["text"]["content"]
    async with database.read() as session:
        stored = await session.scalar(select(Complaint))
        assert stored is not None
        assert stored.photo == "wechat:Gs3dcN7qYxvXbq1wMz5d9Ld0bHh3UHr5Y_sample"
    # The supervisor works on it from their own WeChat chat with the account.
    assert "#1 投诉·环境设施" in await boss.say("/complaints")
    assert "有效" in await boss.say("/classify 1 有效 保洁漏检")
    assert "已把处理结果告知市民" in await boss.say("/answer 1 已补齐用品并增加巡检")


# --- Telegram ----------------------------------------------------------------------------------

@pytest.fixture
async def api() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
def settings(api: FakeTelegram) -> Settings:
    return dataclasses.replace(Settings(), telegram=TelegramSettings(
        token=api.token, base_url=api.base_url, base_file_url=api.base_file_url,
        staff_chat_id=STAFF_GROUP), access=AccessSettings(supervisors=(f"telegram:{SUPERVISOR}",)))


@pytest.fixture
async def channel(app: App, fake_time: FakeTime) -> AsyncIterator[TelegramChannel]:
    async with running_telegram(app, RateLimiter(now=fake_time.now, sleep=fake_time.sleep)) as made:
        yield made


async def press(channel: TelegramChannel, api: FakeTelegram, chat: int, label: str) -> str:
    """Press ``label`` on the last message to ``chat`` with buttons; what was answered."""
    menu = api.last_menu(chat)
    before = len(api.calls_to("sendMessage")) + len(api.calls_to("editMessageText"))
    await feed(channel, api.press_update(chat, menu, label))
    after = api.calls_to("sendMessage") + api.calls_to("editMessageText")
    return "\n".join(str(c.params.get("text", "")) for c in after[before:])


async def test_a_telegram_complaint_answered_and_reopened_by_an_unsatisfied_citizen(
        app: App, api: FakeTelegram, channel: TelegramChannel, database: Database) -> None:
    await feed(channel, api.text_update(CITIZEN, "/start"))
    assert "保密" in await press(channel, api, CITIZEN, "投诉建议")
    await press(channel, api, CITIZEN, "投诉")
    assert "具体情况" in await press(channel, api, CITIZEN, "办事效率")
    await feed(channel, api.text_update(CITIZEN, "排队两个小时没人叫号"))
    await feed(channel, api.photo_update(CITIZEN, "AgACAgUAAxkBAAIB"))
    assert "投诉已登记，编号 1" in api.chat_messages(CITIZEN)[-2]["text"]
    dispatcher = Dispatcher(database=app.database, centre=app.centre, settings=app.settings,
                            clock=app.clock, senders={"telegram": channel.sender},
                            staff_senders=[channel.sender])
    await dispatcher.drain()
    [alert] = [m for m in api.chat_messages(SUPERVISOR) if "投诉 #1" in m["text"]]
    assert "办事效率" in alert["text"] and "排队两个小时" in alert["text"]
    assert not api.chat_messages(STAFF_GROUP)
    await feed(channel, api.text_update(SUPERVISOR, "/classify 1 部分有效 叫号机故障半小时"))
    await feed(channel, api.text_update(SUPERVISOR, "/answer 1 叫号机已修复，已向您致歉"))
    assert "已把处理结果告知市民" in api.chat_messages(SUPERVISOR)[-1]["text"]
    await dispatcher.drain()
    outcome = api.chat_messages(CITIZEN)[-1]
    assert "叫号机已修复" in outcome["text"] and "是否满意" in outcome["text"]
    await feed(channel, api.press_update(CITIZEN, outcome, "不满意"))
    assert "重新办理" in api.chat_messages(CITIZEN)[-2]["text"] + api.chat_messages(CITIZEN)[-1]["text"]
    async with database.read() as session:
        stored = await session.get(Complaint, 1)
        assert stored is not None and stored.status != RequestStatus.CLOSED
        assert stored.reopened == 1 and stored.photo == "telegram:AgACAgUAAxkBAAIB-1280"
    await dispatcher.drain()
    assert any("不满意" in m["text"] for m in api.chat_messages(SUPERVISOR))
    assert not api.chat_messages(STAFF_GROUP)
