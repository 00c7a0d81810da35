"""The staff side over real HTTP: a Telegram citizen and the staff group on the fake Bot API,
the outbox dispatcher in between, and the WeCom group robot on its fake webhook."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from bot.channels import TryLater, Unreachable
from bot.dispatch import Dispatcher
from bot.telegram import TelegramChannel
from bot.telegram.limiter import RateLimiter
from bot.wecom import WecomRobotSender, build_wecom_sender
from bot.wiring import App
from handlers.core import Choice, Reply
from storage import booking
from storage.db import Database
from storage.models import Channel, Handoff, Rating, RequestStatus, Service
from storage.settings import Settings, TelegramSettings, WecomSettings
from tests.fakes import FakeTime
from tests.fakes.telegram_api import FakeTelegram, button_labels
from tests.fakes.wecom_robot import FakeWecomRobot
from tests.helpers import account, feed, person, running_telegram, slots_of, texts
from tests.staff_support import STAFF_A, STAFF_B, STAFF_GROUP, staff_settings

CITIZEN = 5111000001


@pytest.fixture
async def api() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def robot(fake_time: FakeTime) -> AsyncIterator[FakeWecomRobot]:
    async with FakeWecomRobot(clock=fake_time.now) as server:
        yield server


@pytest.fixture
def settings(api: FakeTelegram, robot: FakeWecomRobot) -> Settings:
    return staff_settings(Settings(
        telegram=TelegramSettings(token=api.token, base_url=api.base_url,
                                  base_file_url=api.base_file_url),
        wecom=WecomSettings(robot_webhook=robot.webhook)))


@pytest.fixture
async def channel(app: App, fake_time: FakeTime) -> AsyncIterator[TelegramChannel]:
    async with running_telegram(app, RateLimiter(now=fake_time.now, sleep=fake_time.sleep)) as channel:
        yield channel


@pytest.fixture
async def wecom(app: App, fake_time: FakeTime) -> AsyncIterator[WecomRobotSender]:
    sender = build_wecom_sender(app)
    sender.now, sender.sleep = fake_time.now, fake_time.sleep
    try:
        yield sender
    finally:
        await sender.close()


@pytest.fixture
def dispatcher(app: App, channel: TelegramChannel, wecom: WecomRobotSender) -> Dispatcher:
    return Dispatcher(database=app.database, centre=app.centre, settings=app.settings,
                      clock=app.clock, senders={"telegram": channel.sender},
                      staff_senders=[channel.sender, wecom])


async def test_a_telegram_hand_off_claimed_answered_by_reply_and_closed(
        api: FakeTelegram, channel: TelegramChannel, dispatcher: Dispatcher,
        robot: FakeWecomRobot, database: Database) -> None:
    await feed(channel, api.text_update(CITIZEN, "/human"))
    assert "已为您转接人工服务（编号 1）" in texts(api, CITIZEN)[-1]
    await dispatcher.drain()
    alert = api.last_menu(STAFF_GROUP)
    assert "人工服务 #1" in alert["text"] and button_labels(alert) == ["认领"]
    assert "人工服务 #1" in robot.texts[0] and "(认领)" in robot.texts[0]   # notify-only copy

    await feed(channel, api.press_update(STAFF_A, alert, "认领"))
    shown = api.chat_messages(STAFF_GROUP)[0]
    assert "已由 小明 认领" in shown["text"] and not shown.get("reply_markup")   # edited in place

    await feed(channel, api.text_update(CITIZEN, "我的医保报销材料不全怎么办？"))
    await dispatcher.drain()
    relayed = api.chat_messages(STAFF_GROUP)[-1]
    assert "市民说" in relayed["text"] and "医保报销材料不全" in relayed["text"]
    assert len(robot.texts) == 1                          # citizens' words stay in Telegram

    # The staff member answers by replying to the relayed message in the group.
    await feed(channel, api.text_update(STAFF_A, "请补交发票原件，可以邮寄。",
                                               chat_id=STAFF_GROUP, reply_to=relayed))
    assert "正在发送给市民（#1）" in texts(api, STAFF_GROUP)[-1]
    await dispatcher.drain()
    answer = api.last_menu(CITIZEN)
    assert "工作人员回复" in answer["text"] and "请补交发票原件" in answer["text"]
    assert button_labels(answer) == ["回复工作人员"]
    answered = answer["text"]
    await feed(channel, api.press_update(CITIZEN, answer, "回复工作人员"))
    # The staff answer stays above; the prompt to write comes as a new message.
    [kept] = [m for m in api.chat_messages(CITIZEN) if m["message_id"] == answer["message_id"]]
    assert kept["text"] == answered
    assert "请直接输入要告诉工作人员的话（编号 1）" in texts(api, CITIZEN)[-1]
    await feed(channel, api.text_update(CITIZEN, "好的，谢谢"))
    await dispatcher.drain()
    assert "好的，谢谢" in texts(api, STAFF_GROUP)[-1]

    await feed(channel, api.text_update(STAFF_A, "/close 1 已说明补交材料",
                                               chat_id=STAFF_GROUP))
    await dispatcher.drain()
    closing = api.last_menu(CITIZEN)
    assert "已结束" in closing["text"] and button_labels(closing)[0] == "非常满意"
    await feed(channel, api.press_update(CITIZEN, closing, "满意"))
    assert "感谢您的评价" in "\n".join(texts(api, CITIZEN))     # the rating menu became the thanks
    async with database.read() as session:
        handoff = await session.get(Handoff, 1)
        assert handoff is not None and handoff.status == RequestStatus.CLOSED
        assert handoff.first_reply_at is not None and handoff.closed_at is not None
        rating = await session.scalar(select(Rating).where(Rating.handoff_id == 1))
        assert rating is not None and rating.level == 4


async def test_two_staff_pressing_claim_together(api: FakeTelegram, channel: TelegramChannel,
                                                 dispatcher: Dispatcher,
                                                 database: Database) -> None:
    await feed(channel, api.text_update(CITIZEN, "/human"))
    await dispatcher.drain()
    alert = api.last_menu(STAFF_GROUP)
    await asyncio.gather(feed(channel, api.press_update(STAFF_A, alert, "认领")),
                         feed(channel, api.press_update(STAFF_B, alert, "认领")))
    async with database.read() as session:
        handoff = await session.get(Handoff, 1)
        assert handoff is not None and handoff.claimed_by in (f"telegram:{STAFF_A}",
                                                              f"telegram:{STAFF_B}")
    shown = [c.params.get("text", "") for c in api.calls_to("editMessageText") if c.ok]
    shown += [c.params.get("text", "") for c in api.calls_to("sendMessage") if c.ok
              and c.chat_id == STAFF_GROUP]
    assert sum("已由 小明 认领（首问负责）" in t for t in shown) == 1
    # The late press is answered to its presser alone, as the button's pop-up.
    toasts = [c.params.get("text") or "" for c in api.calls_to("answerCallbackQuery") if c.ok]
    assert sum("谢谢" in t for t in toasts) == 1 and not any("谢谢" in t for t in shown)
    [alert_now] = [m for m in api.chat_messages(STAFF_GROUP) if m["message_id"] == alert["message_id"]]
    assert "已由 小明 认领" in alert_now["text"] and "联系人：未提供" in alert_now["text"]


async def test_the_wecom_robot_keeps_to_twenty_a_minute_and_reports_errors(
        robot: FakeWecomRobot, wecom: WecomRobotSender, fake_time: FakeTime) -> None:
    for number in range(25):
        await wecom.deliver("staff", [Reply(f"提醒 {number}", ((Choice("认领", "g:claim:1"),),))],
                            kind="handoff_alert")
    assert len(robot.texts) == 25 and robot.refused == []
    assert sum(fake_time.slept) >= 60.0                   # the 21st waited for the minute
    assert robot.texts[0] == "提醒 0\n(认领)"
    await wecom.deliver("staff", [Reply("市民说：你好")], kind="handoff_message")
    assert len(robot.texts) == 25                          # relayed chat is not for the robot
    robot.fail_next(45009)
    with pytest.raises(TryLater):
        await wecom.deliver("staff", [Reply("x")], kind="delivery_failed")
    robot.key = "rotated"
    with pytest.raises(Unreachable):
        await wecom.deliver("staff", [Reply("x")], kind="delivery_failed")


async def test_a_long_alert_is_cut_to_the_robots_size(robot: FakeWecomRobot,
                                                      wecom: WecomRobotSender) -> None:
    await wecom.deliver("staff", [Reply("\n".join(["一行预约信息" * 10] * 30))])
    assert len(robot.texts) == 3                           # 5,430 bytes in 2,048-byte pieces
    assert all(len(t.encode()) <= 2048 for t in robot.texts)
    assert "".join(robot.texts).count("一行预约信息") == 300


async def test_a_reminders_cancel_pressed_after_the_cutoff_keeps_the_reminder_and_says_why(
        api: FakeTelegram, channel: TelegramChannel, app: App) -> None:
    now = app.clock.now()
    async with app.database.session() as session:
        citizen = await account(session, now, user=str(CITIZEN))
        someone = await person(session, app.centre, now)
        id_card = (await session.scalars(select(Service).where(Service.code == "id_card"))).one()
        [slot, *_] = await slots_of(session, app.centre, id_card, now, dt.date(2026, 11, 24))
        appointment = await booking.book(session, app.centre, now, person_id=someone.id,
                                         slot_id=slot.id, identity_id=citizen.id,
                                         channel=Channel.TELEGRAM, made_by="test", confirm=False)
        code = appointment.code
    reminder_text = f"预约提醒：明天 09:00 居民身份证办理，预约码 {code}，请带好材料。"
    await channel.sender.deliver(str(CITIZEN), [Reply(reminder_text, ((
        Choice("取消预约", f"g:cancel:{code}"), Choice("改约", f"g:resched:{code}")),))],
        kind="reminder")
    reminder = dict(api.last_menu(CITIZEN))
    app.clock.advance(dt.timedelta(hours=1))                # Monday 10:00: past the cutoff
    await feed(channel, api.press_update(CITIZEN, reminder, "取消预约"))
    [kept] = [m for m in api.chat_messages(CITIZEN) if m["message_id"] == reminder["message_id"]]
    assert kept["text"] == reminder_text                    # time, place, code stay
    said = texts(api, CITIZEN)[-2]
    assert "已超过改约/取消截止时间" in said and "人工" in said and "该菜单已过期" not in said
