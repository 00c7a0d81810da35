"""Hand-offs (人工服务) from request to close: first claim owns it, relay both ways, closing with
a rating; race-free claims; escalation as the clock moves. Through the real engine and the
outbox dispatcher, with the real WeChat sender against the fake WeChat API."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging

import httpx
import pytest
from sqlalchemy import func, select

from bot.dispatch import Dispatcher
from bot.wechat.api import AccessTokens
from bot.wechat.sender import WechatSender
from handlers.engine import Assistant
from storage import handoffs
from storage.clock import ManualClock
from storage.db import Database
from storage.handoffs import StaffRefusal, StaffRefused
from storage.models import (
    AuditLog,
    ChannelIdentity,
    Complaint,
    Handoff,
    HomeVisitRequest,
    Outbox,
    Rating,
    RequestStatus,
)
from storage.settings import Settings, WechatSettings
from tests.dialog import Dialog
from tests.fakes.wechat_api import APP_ID, APP_SECRET, FakeWechatApi
from tests.helpers import account, local, make_centre, person
from tests.staff_support import STAFF_A, STAFF_B, SUPERVISOR, Recorder, Staff, staff_dispatcher, staff_settings

OPENID = "oWx_handoff_citizen_0000000001"


@pytest.fixture
def settings(wechat_api: FakeWechatApi) -> Settings:
    return staff_settings(Settings(wechat=WechatSettings(
        app_id=APP_ID, app_secret=APP_SECRET, token="t", api_base_url=wechat_api.url)))


@pytest.fixture
def telegram() -> Recorder:
    return Recorder("telegram")


@pytest.fixture
def dispatcher(assistant: Assistant, settings: Settings, http: httpx.AsyncClient,
               group: Recorder, telegram: Recorder) -> Dispatcher:
    tokens = AccessTokens(settings.wechat, assistant.database, assistant.clock, http, owner="t")
    wechat = WechatSender(settings.wechat, assistant.database, assistant.clock, tokens)
    return staff_dispatcher(assistant, settings, group, telegram=telegram, wechat=wechat)


def sent_to_wechat(api: FakeWechatApi) -> list[str]:
    return [c.body["text"]["content"] for c in api.calls
            if c.path.endswith("message/custom/send") and c.errcode == 0]


async def test_a_wechat_citizen_is_helped_from_request_to_rating(
        assistant: Assistant, dispatcher: Dispatcher, group: Recorder, wechat_api: FakeWechatApi,
        database: Database, clock: ManualClock) -> None:
    citizen = Dialog(assistant, user=OPENID, channel="wechat")
    wang, li = Staff(assistant, STAFF_A, "王芳"), Staff(assistant, STAFF_B, "李强")
    await citizen.say("我想问问")
    await citizen.say("我的情况比较复杂")                  # two misunderstandings: a person?
    assert "人工服务" in citizen.labels
    await citizen.press("人工服务")
    assert "编号 1" in citizen.text and "10分钟" in citizen.text

    await dispatcher.drain()
    [alert] = group.take()
    assert alert.kind == "handoff_alert" and "人工服务 #1" in alert.text
    assert "我的情况比较复杂" in alert.text              # what the bot did not understand
    claimed = await wang.press(alert.tokens[0])
    assert "已由 王芳 认领" in claimed and "我的情况比较复杂" in claimed
    assert wang.last[0].edit                              # the alert itself now says who
    assert "已由 王芳 认领" in await li.press(alert.tokens[0])
    assert "谢谢" in li.text

    clock.advance(dt.timedelta(minutes=2))
    await citizen.say("我的社保卡丢了")
    assert "已转给负责您的工作人员" in citizen.text
    await dispatcher.drain()
    [relayed] = group.take()
    assert relayed.kind == "handoff_message"
    assert "负责人：王芳" in relayed.text and "我的社保卡丢了" in relayed.text

    clock.advance(dt.timedelta(minutes=1))
    assert "正在发送给市民" in await wang.say("请带身份证到二楼5号窗口补办，当场可取。")
    assert "由 王芳 负责" in await li.command("reply", "1 我也来说两句")   # not the owner
    await dispatcher.drain()
    answer = sent_to_wechat(wechat_api)[-1]
    assert "工作人员回复" in answer and "请带身份证到二楼5号窗口补办，当场可取。" in answer
    assert "msgmenuid=g:talk:1" in answer                 # a link to write back
    assert "我也来说两句" not in "".join(sent_to_wechat(wechat_api))

    clock.advance(dt.timedelta(minutes=5))
    assert "已结束" in await wang.command("close", "1 已告知补办流程")
    await dispatcher.drain()
    closing = sent_to_wechat(wechat_api)[-1]
    assert "已结束" in closing and "非常满意" in closing and "已告知补办流程" not in closing

    # WeChat shows the levels as message-menu links; a tap sends the link's id back.
    assert "msgmenuid=g:rateh:1:5" in closing
    await citizen.send(choice="g:rateh:1:5")
    assert "感谢您的评价" in citizen.text
    async with database.read() as session:
        handoff = await session.get(Handoff, 1)
        assert handoff is not None and handoff.status == RequestStatus.CLOSED
        assert handoff.opened_at == local(2026, 11, 23, 9, 0)
        assert handoff.claimed_at == local(2026, 11, 23, 9, 0)
        assert handoff.first_reply_at == local(2026, 11, 23, 9, 3)
        assert handoff.closed_at == local(2026, 11, 23, 9, 8)
        assert handoff.claimed_by == f"telegram:{STAFF_A}" and handoff.summary == "已告知补办流程"
        rating = await session.scalar(select(Rating).where(Rating.handoff_id == 1))
        assert rating is not None and rating.level == 5
        actions = (await session.scalars(select(AuditLog.action).where(
            AuditLog.entity == "handoff").order_by(AuditLog.id))).all()
        assert actions == ["claim", "reply", "close", "rate"]


async def test_a_staff_answer_outside_wechats_48_hours_is_not_sent_and_the_owner_is_told(
        assistant: Assistant, dispatcher: Dispatcher, database: Database,
        clock: ManualClock) -> None:
    citizen = Dialog(assistant, user=OPENID, channel="wechat")
    wang = Staff(assistant, STAFF_A, "王芳")
    await citizen.command("human")
    await wang.command("claim", "1")
    clock.advance(dt.timedelta(hours=49))
    answer = await wang.say("您好，还需要帮助吗？")
    assert "48小时" in answer and "无法送达" in answer
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(Outbox)
                                    .where(Outbox.kind == "relay")) == 0


async def test_two_staff_claiming_at_once_one_owns_it(database: Database,
                                                      clock: ManualClock) -> None:
    now = clock.now()
    for round_ in range(3):
        async with database.session() as session:
            identity = await account(session, now, user=f"c{round_}")
            handoff = Handoff(identity_id=identity.id, status=RequestStatus.OPEN, opened_at=now,
                              context={})
            session.add(handoff)
            await session.flush()
            number = handoff.id

        async def claim(actor: str, name: str, number: int = number) -> Handoff:
            async with database.session() as session:
                return await handoffs.claim(session, now, Handoff, number, actor=actor, name=name)

        results = await asyncio.gather(claim("telegram:1", "甲"), claim("telegram:2", "乙"),
                                       return_exceptions=True)
        won = [r for r in results if isinstance(r, Handoff)]
        lost = [r for r in results if isinstance(r, StaffRefused)]
        assert len(won) == 1 and len(lost) == 1, results
        assert lost[0].reason == StaffRefusal.ALREADY_CLAIMED
        assert lost[0].details["owner"] == ("甲" if won[0].claimed_by == "telegram:1" else "乙")
        async with database.read() as session:
            stored = await session.get(Handoff, number)
            assert stored is not None and stored.claimed_by == won[0].claimed_by
            assert await session.scalar(select(func.count()).select_from(AuditLog).where(
                AuditLog.entity_id == number, AuditLog.action == "claim")) == 1


async def escalate(database: Database, clock: ManualClock, minutes: int = 10) -> int:
    async with database.session() as session:
        return await handoffs.escalate_overdue(session, make_centre(), clock.now(),
                                               escalate_minutes=minutes,
                                               supervisors=(f"telegram:{SUPERVISOR}",))


async def test_an_unclaimed_hand_off_is_re_alerted_then_sent_to_supervisors_once(
        assistant: Assistant, dispatcher: Dispatcher, group: Recorder, telegram: Recorder,
        database: Database, clock: ManualClock) -> None:
    await Dialog(assistant, user="5100000001", channel="telegram").command("human")
    await dispatcher.drain()
    group.take()
    clock.advance(dt.timedelta(minutes=9))
    assert await escalate(database, clock) == 0
    clock.advance(dt.timedelta(minutes=1))
    # Two processes running the job at the same moment make one escalation between them.
    assert sum(await asyncio.gather(escalate(database, clock), escalate(database, clock))) == 1
    await dispatcher.drain()
    [again] = group.take()
    assert "10分钟仍无人认领" in again.text and again.tokens == ["g:claim:1"]
    clock.advance(dt.timedelta(minutes=9))
    assert await escalate(database, clock) == 0
    clock.advance(dt.timedelta(minutes=1))
    assert await escalate(database, clock) == 1
    assert await escalate(database, clock) == 0
    await dispatcher.drain()
    [overdue] = telegram.of_kind("handoff_overdue")
    assert overdue.chat_id == str(SUPERVISOR) and "督办" in overdue.text
    assert overdue.tokens == ["g:claim:1"]
    clock.advance(dt.timedelta(hours=3))
    assert await escalate(database, clock) == 0


async def test_a_claim_before_the_reminder_goes_out_drops_the_reminder(
        assistant: Assistant, dispatcher: Dispatcher, group: Recorder,
        database: Database, clock: ManualClock) -> None:
    await Dialog(assistant, user="5100000002", channel="telegram").command("human")
    await dispatcher.drain()
    group.take()
    clock.advance(dt.timedelta(minutes=10))
    assert await escalate(database, clock) == 1
    await Staff(assistant, STAFF_A, "王芳").command("claim", "#1")
    assert (await dispatcher.drain()).dropped == 1
    assert group.take() == []


async def test_a_hand_off_asked_for_at_night_escalates_from_when_staff_are_back(
        assistant: Assistant, database: Database, clock: ManualClock) -> None:
    clock.set(local(2026, 11, 23, 20, 0))
    citizen = Dialog(assistant, user="5100000003", channel="telegram")
    await citizen.command("human")
    assert "11月24日 周二 09:00" in citizen.text
    clock.set(local(2026, 11, 24, 9, 5))
    assert await escalate(database, clock) == 0
    clock.set(local(2026, 11, 24, 9, 10))
    assert await escalate(database, clock) == 1


async def test_overdue_complaints_and_home_visit_requests_go_to_supervisors(
        assistant: Assistant, dispatcher: Dispatcher, telegram: Recorder, database: Database,
        clock: ManualClock) -> None:
    centre = make_centre()
    async with database.session() as session:
        identity = await account(session, clock.now(), user="5100000004")
        citizen = await person(session, centre, clock.now())
        complaint = Complaint(identity_id=identity.id, text="等了一个小时",
                              status=RequestStatus.OPEN, opened_at=clock.now(),
                              first_answer_due=local(2026, 11, 24, 17),
                              resolution_due=local(2026, 12, 14, 17))
        request = HomeVisitRequest(identity_id=identity.id, person_id=citizen.id, service_id=1,
                                   address="青溪镇人民路1号", preferred_times="上午",
                                   eligibility="age", age=80, status=RequestStatus.OPEN,
                                   created_at=clock.now(), due_at=local(2026, 11, 24, 17))
        session.add_all([complaint, request])
    clock.set(local(2026, 11, 24, 17, 1))
    assert await escalate(database, clock) == 2
    assert await escalate(database, clock) == 0
    await dispatcher.drain()
    assert {d.kind for d in telegram.sent} == {"complaint_overdue", "home_visit_overdue"}
    assert all(d.chat_id == str(SUPERVISOR) for d in telegram.sent)
    assert "首次答复期限" in telegram.of_kind("complaint_overdue")[0].text
    clock.set(local(2026, 12, 14, 17, 1))
    assert await escalate(database, clock) == 1                  # past resolution too
    async with database.read() as session:
        stored = await session.get(Complaint, 1)
        assert stored is not None and stored.escalations == 2


async def test_without_supervisors_escalations_go_to_the_staff_group(database: Database,
                                                                    clock: ManualClock) -> None:
    async with database.session() as session:
        identity = await account(session, clock.now(), user="5100000005")
        session.add(Handoff(identity_id=identity.id, status=RequestStatus.OPEN,
                            opened_at=clock.now(), context={}))
    clock.advance(dt.timedelta(minutes=30))
    async with database.session() as session:
        assert await handoffs.escalate_overdue(session, make_centre(), clock.now(),
                                               escalate_minutes=10, supervisors=[]) == 1
        targets = (await session.scalars(select(Outbox.target))).all()
    assert targets == ["staff"]


async def test_an_identity_that_blocked_the_bot_gets_no_relay(
        assistant: Assistant, database: Database, clock: ManualClock) -> None:
    await Dialog(assistant, user="5100000006", channel="telegram").command("human")
    wang = Staff(assistant, STAFF_A, "王芳")
    await wang.command("claim", "1")
    async with database.session() as session:
        identity = await session.scalar(select(ChannelIdentity).where(
            ChannelIdentity.platform_user_id == "5100000006"))
        assert identity is not None
        identity.unreachable_at = clock.now()
    assert "屏蔽" in await wang.command("reply", "1 您好")


async def test_a_wrong_app_secret_is_logged_and_the_owner_told_when_the_answer_is_given_up(
        assistant: Assistant, settings: Settings, http: httpx.AsyncClient, group: Recorder,
        telegram: Recorder, wechat_api: FakeWechatApi, database: Database, clock: ManualClock,
        caplog: pytest.LogCaptureFixture) -> None:
    wrong = dataclasses.replace(settings.wechat, app_secret="not-the-app-secret")
    wechat = WechatSender(wrong, database, clock, AccessTokens(wrong, database, clock, http, owner="t"))
    dispatcher = Dispatcher(database=database, centre=assistant.centre, settings=settings,
                            clock=clock, senders={"telegram": telegram, "wechat": wechat},
                            staff_senders=[group])
    citizen = Dialog(assistant, user=OPENID, channel="wechat")
    wang = Staff(assistant, STAFF_A, "王芳")
    await citizen.command("human")
    await wang.command("claim", "1")
    await dispatcher.drain()
    group.take()
    caplog.set_level(logging.WARNING)
    assert "如未能送达，会再通知您" in await wang.command("reply", "1 请带身份证来补办。")
    for _ in range(settings.notifications.max_attempts):
        report = await dispatcher.drain()
        assert report.sent == 0
        clock.advance(dt.timedelta(minutes=9))
    await dispatcher.drain()
    [told] = [d for d in group.take() if d.kind == "relay_failed"]
    assert "人工服务 #1" in told.text and "未能送达市民" in told.text and "40125" in told.text
    assert wechat_api.sent("message/custom/send") == []
    lines = [r.getMessage() for r in caplog.records if "access token refused" in r.getMessage()]
    # Six attempts over 45 minutes: one line per ten minutes, each counting the ones between.
    assert 1 < len(lines) < settings.notifications.max_attempts
    assert all("errcode 40125" in line and "AppSecret is wrong" in line for line in lines)
    assert all(OPENID[:8] not in r.getMessage() for r in caplog.records)
