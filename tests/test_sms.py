"""Text messages end to end: outbox rows written by the booking rules, the dispatcher, and the
real Tencent Cloud SDK talking to the fake SMS API on 127.0.0.1 (and the fake WeChat API for
the chat side)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import httpx
import pytest
from sqlalchemy import select

from bot.dispatch import Dispatcher
from bot.export import summary_rows
from bot.sms import build_sms, sms_routes
from bot.web import build_web_app
from bot.wechat.sender import WechatSender
from bot.wiring import App
from handlers.engine import Assistant
from handlers.i18n import Speaker
from handlers.stats import render_figures
from storage import accounts, booking, cases, closures, linking, reach
from storage import sms as sms_store
from storage.accounts import AccountRefusal, AccountRefused
from storage.centre import Centre
from storage.clock import ManualClock
from storage.db import Database
from storage.identity import identity_for
from storage.models import (
    Appointment,
    CaseKind,
    Channel,
    Outbox,
    OutboxStatus,
    Relation,
    Service,
    SmsCode,
    SmsMessage,
    SmsOptOut,
)
from storage.settings import Settings, SmsSettings, SmsTemplate
from storage.stats.figures import figures
from storage.stats.periods import parse_period
from tests.dialog import Dialog, verify_dialog
from tests.fakes.tencent_sms import TEMPLATES, FakeTencentSms
from tests.fakes.wechat_api import FakeWechatApi
from tests.helpers import TZ, local, make_centre, person, slots_of, valid_id
from tests.test_wechat_sender import sender_for, wechat_settings

MOBILE = "13812345678"
OPENID = "oSmsTest_12AbCdEfGhIjKlMnOpQr"


@pytest.fixture
def centre(sms_settings: SmsSettings) -> Centre:
    return dataclasses.replace(make_centre(), sms=sms_settings)


@pytest.fixture
def settings(sms_settings: SmsSettings) -> Settings:
    return dataclasses.replace(Settings(), sms=sms_settings)


@pytest.fixture
async def wechat(wechat_api: FakeWechatApi, database: Database, clock: ManualClock,
                 http: httpx.AsyncClient) -> WechatSender:
    return sender_for(wechat_settings(wechat_api), database, clock, http)


@pytest.fixture
def dispatcher(app: App, wechat: WechatSender) -> Dispatcher:
    return Dispatcher(database=app.database, centre=app.centre, settings=app.settings,
                      clock=app.clock, senders={"wechat": wechat}, sms=build_sms(app.settings.sms))


async def walk_in(app: App, day: dt.date, index: int = 6, mobile: str = MOBILE,
                  service: str = "id_card") -> Appointment:
    """A booking staff made at the window for a citizen without a chat account."""
    async with app.database.session() as session:
        found = await session.scalar(select(Service).where(Service.code == service))
        assert found is not None
        slot = (await slots_of(session, app.centre, found, app.clock.now(), day))[index]
        citizen = await person(session, app.centre, app.clock.now(), mobile=mobile,
                               id_number=valid_id("1101051950" + mobile[-7:]))
        return await booking.book(session, app.centre, app.clock.now(), person_id=citizen.id,
                                  slot_id=slot.id, identity_id=None, channel=Channel.STAFF,
                                  made_by="telegram:staff", offline=True)


async def wechat_books(app: App, day: dt.date, last_wrote: dt.datetime,
                       index: int = 6) -> Appointment:
    """A WeChat follower who last wrote at ``last_wrote`` books for themself."""
    async with app.database.session() as session:
        service = await session.scalar(select(Service).where(Service.code == "id_card"))
        assert service is not None
        slot = (await slots_of(session, app.centre, service, app.clock.now(), day))[index]
        citizen = await person(session, app.centre, app.clock.now(), mobile=MOBILE)
        identity = await identity_for(session, "wechat", OPENID, "zh-CN", app.clock.now())
        identity.last_inbound_at = last_wrote
        return await booking.book(session, app.centre, app.clock.now(), person_id=citizen.id,
                                  slot_id=slot.id, identity_id=identity.id, channel=Channel.WECHAT,
                                  made_by=f"wechat:{OPENID}", confirm=False)


async def rows(app: App, *kinds: str) -> list[Outbox]:
    async with app.database.read() as session:
        query = select(Outbox).order_by(Outbox.id)
        if kinds:
            query = query.where(Outbox.kind.in_(kinds))
        return list((await session.scalars(query)).all())


async def test_the_real_sdk_signs_and_the_fake_checks_it(sms_api: FakeTencentSms,
                                                         sms_settings: SmsSettings) -> None:
    sender = build_sms(sms_settings)
    assert sender is not None
    sent = await sender.send(MOBILE, "reminder", {"service": "居民身份证办理", "when": "明天 09:00",
                                                  "place": "一楼3号窗口", "code": "ABC234"})
    [text] = sms_api.texts
    assert text.mobile == "+86" + MOBILE and text.template_id == TEMPLATES["reminder"].template_id
    assert text.params == ["居民身份证办理", "明天 09:00", "一楼3号窗口", "ABC234"]
    assert sent.serial_no == text.serial_no and sent.fee == 1
    assert sms_api.authorizations[0].startswith("TC3-HMAC-SHA256 Credential=AKID")
    wrong = build_sms(dataclasses.replace(sms_settings, secret_key="not-the-key"))
    assert wrong is not None
    from bot.channels import GiveUp
    with pytest.raises(GiveUp, match="SignatureFailure"):
        await wrong.send(MOBILE, "reminder", {})


async def test_a_walk_in_is_confirmed_and_reminded_by_sms(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    appointment = await walk_in(app, dt.date(2026, 11, 25))         # Wednesday 11:00
    assert (await dispatcher.drain()).sent == 1
    [confirmation] = sms_api.texts
    assert confirmation.template_id == TEMPLATES["booking_confirmed"].template_id
    assert confirmation.params[2] == appointment.code and "居民身份证" in confirmation.params[0]
    assert confirmation.sign == "某某市政务服务中心"
    clock.set(local(2026, 11, 24, 18))                               # the evening before
    assert (await dispatcher.drain()).sent == 1
    clock.set(local(2026, 11, 25, 9))                                # two hours before
    assert (await dispatcher.drain()).sent == 1
    assert [t.template_id for t in sms_api.texts[1:]] == [TEMPLATES["reminder"].template_id] * 2
    # The number is in no outbox row and no log line; the send log keeps only its keyed hash.
    for row in await rows(app):
        assert MOBILE not in str(row.payload) and MOBILE not in str(row.target)
    async with app.database.read() as session:
        logged = (await session.scalars(select(SmsMessage))).all()
    assert len(logged) == 3 and all(m.status == "sent" and m.mobile_hash != MOBILE for m in logged)
    ours = [r.getMessage() for r in caplog.records
            if r.name.startswith(("yuyue", "tencentcloud", "httpx", "uvicorn"))]
    assert not any(MOBILE in line for line in ours)


async def test_a_wechat_reminder_outside_the_window_falls_back_to_sms(
        app: App, sms_api: FakeTencentSms, wechat_api: FakeWechatApi, dispatcher: Dispatcher,
        clock: ManualClock) -> None:
    await wechat_books(app, dt.date(2026, 11, 25), last_wrote=clock.now() - dt.timedelta(days=1))
    clock.set(local(2026, 11, 24, 18))              # 57 hours after the citizen last wrote
    first = await dispatcher.drain()
    assert first.undeliverable == 1 and sms_api.texts == []
    second = await dispatcher.drain()               # the SMS queued by the fallback
    assert second.sent == 1
    [text] = sms_api.texts
    assert text.template_id == TEMPLATES["reminder"].template_id and text.mobile.endswith(MOBILE)
    chat, _later, twin = await rows(app)
    assert chat.status == OutboxStatus.UNDELIVERABLE and "48-hour" in (chat.last_error or "")
    assert twin.target and twin.target.startswith("sms:") and twin.status == OutboxStatus.SENT
    assert twin.payload["sms"] == {"via": "fallback", "account": chat.identity_id, "for": chat.id}


async def test_without_sms_the_reason_is_recorded(app: App, wechat: WechatSender,
                                                  clock: ManualClock) -> None:
    dispatcher = Dispatcher(database=app.database, centre=app.centre,
                            settings=dataclasses.replace(app.settings, sms=SmsSettings()),
                            clock=clock, senders={"wechat": wechat})
    await wechat_books(app, dt.date(2026, 11, 25), last_wrote=clock.now() - dt.timedelta(days=1))
    clock.set(local(2026, 11, 24, 18))
    assert (await dispatcher.drain()).undeliverable == 1
    chat = (await rows(app, "reminder"))[0]
    assert chat.status == OutboxStatus.UNDELIVERABLE
    assert chat.last_error and chat.last_error.endswith("; SMS not set up")


async def test_a_closure_goes_both_in_chat_and_by_sms(
        app: App, sms_api: FakeTencentSms, wechat_api: FakeWechatApi, dispatcher: Dispatcher,
        clock: ManualClock) -> None:
    appointment = await wechat_books(app, dt.date(2026, 11, 25), last_wrote=clock.now())
    async with app.database.session() as session:
        await closures.apply_closure(session, app.centre, clock.now(),
                                     starts_at=local(2026, 11, 25), ends_at=local(2026, 11, 26),
                                     reason="设备检修", actor="telegram:staff",
                                     service_id=appointment.service_id)
    report = await dispatcher.drain()
    assert report.sent == 2
    sent = [c.body for c in wechat_api.calls if c.path == "message/custom/send"]
    assert any("设备检修" in str(body) for body in sent)
    [text] = sms_api.texts
    assert text.template_id == TEMPLATES["closure_cancelled"].template_id
    assert text.params[2] == "设备检修"


async def test_quiet_hours_defer_but_a_closure_for_the_next_morning_goes(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    clock.set(local(2026, 11, 24, 21, 30))
    morning = await walk_in(app, dt.date(2026, 11, 25), index=0)                # 09:00
    afternoon = await walk_in(app, dt.date(2026, 11, 25), index=10, mobile="13900001111")
    assert (await dispatcher.drain()).sent == 0                 # confirmations wait for 08:00
    waiting = await rows(app)
    assert {r.due_at for r in waiting if r.kind == "booking_confirmed"} == {local(2026, 11, 25, 8)}
    assert all(r.attempts == 0 for r in waiting)                # a wait is not an attempt
    clock.set(local(2026, 11, 24, 22))
    async with app.database.session() as session:
        for appointment in (morning, afternoon):
            await closures.apply_closure(session, app.centre, clock.now(),
                                         starts_at=appointment.starts_at,
                                         ends_at=appointment.ends_at, reason="停诊",
                                         actor="telegram:staff", service_id=appointment.service_id)
    assert (await dispatcher.drain()).sent == 1                 # the 09:00 one cannot wait
    [urgent] = sms_api.texts
    assert urgent.mobile.endswith(MOBILE) and urgent.template_id == "2000003"
    clock.set(local(2026, 11, 25, 8))
    assert (await dispatcher.drain()).sent == 1                 # the 14:00 one at 08:00
    assert sms_api.texts[1].mobile.endswith("13900001111")


async def test_one_text_a_minute_per_number(app: App, sms_api: FakeTencentSms,
                                            dispatcher: Dispatcher, clock: ManualClock) -> None:
    await walk_in(app, dt.date(2026, 11, 25), index=6)
    async with app.database.session() as session:
        other = await session.scalar(select(Service).where(Service.code == "dental"))
        assert other is not None
        slot = (await slots_of(session, app.centre, other, clock.now(), dt.date(2026, 11, 26)))[0]
        citizen = await person(session, app.centre, clock.now(), mobile=MOBILE)
        await booking.book(session, app.centre, clock.now(), person_id=citizen.id, slot_id=slot.id,
                           identity_id=None, channel=Channel.STAFF, made_by="telegram:staff",
                           offline=True)
    assert (await dispatcher.drain()).sent == 1
    second = next(r for r in await rows(app) if r.status == OutboxStatus.PENDING
                  and r.kind == "booking_confirmed")
    assert second.due_at == clock.now() + dt.timedelta(minutes=1) and second.attempts == 0
    clock.advance(dt.timedelta(minutes=1))
    assert (await dispatcher.drain()).sent == 1
    assert len(sms_api.texts) == 2


async def test_an_opt_out_reply_is_honoured(app: App, sms_api: FakeTencentSms,
                                            dispatcher: Dispatcher, clock: ManualClock) -> None:
    web = build_web_app(sms_routes(app.database, app.centre, clock, app.settings.sms))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web),
                                 base_url="http://yuyue.test") as client:
        answer = await client.post("/sms/tencent", json=[{
            "extend": "", "mobile": MOBILE, "nationcode": "86", "sign": "某某市政务服务中心",
            "text": "TD", "time": 1795000000}])
    assert answer.json() == {"result": 0, "errmsg": "OK"}
    async with app.database.read() as session:
        [opted] = (await session.scalars(select(SmsOptOut))).all()
    assert opted.source == "reply" and MOBILE not in opted.mobile_hash
    await walk_in(app, dt.date(2026, 11, 25))
    assert (await dispatcher.drain()).undeliverable == 1
    assert sms_api.texts == []
    [row] = await rows(app, "booking_confirmed")
    assert row.last_error == "sms opted out"


async def test_a_failed_receipt_marks_the_notice_undeliverable(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    await walk_in(app, dt.date(2026, 11, 25))
    await dispatcher.drain()
    [text] = sms_api.texts
    web = build_web_app(sms_routes(app.database, app.centre, clock,
                                   dataclasses.replace(app.settings.sms, callback_token="s3cret")))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web),
                                 base_url="http://yuyue.test") as client:
        report = [{"user_receive_time": "2026-11-23 09:00:10", "nationcode": "86",
                   "mobile": MOBILE, "report_status": "FAIL", "errmsg": "MK:0005",
                   "description": "用户手机关机", "sid": text.serial_no}]
        assert (await client.post("/sms/tencent", json=report)).status_code == 403
        assert (await client.post("/sms/tencent?token=s3cret", json=report)).json()["result"] == 0
    [row] = await rows(app, "booking_confirmed")
    assert row.status == OutboxStatus.UNDELIVERABLE and "MK:0005" in (row.last_error or "")


async def test_provider_errors_retry_or_park(app: App, sms_api: FakeTencentSms,
                                             dispatcher: Dispatcher, clock: ManualClock) -> None:
    await walk_in(app, dt.date(2026, 11, 25))
    sms_api.fail_next("LimitExceeded.PhoneNumberOneHourLimit")
    assert (await dispatcher.drain()).retried == 1
    [row] = await rows(app, "booking_confirmed")
    assert row.status == OutboxStatus.PENDING and row.due_at == clock.now() + dt.timedelta(hours=1)
    clock.advance(dt.timedelta(hours=1))
    sms_api.fail_call_next("FailedOperation.InsufficientBalanceInSmsPackage")
    assert (await dispatcher.drain()).failed == 1
    parked, alert = await rows(app, "booking_confirmed", "delivery_failed")
    assert parked.status == OutboxStatus.FAILED and "InsufficientBalance" in (parked.last_error or "")
    assert alert.kind == "delivery_failed" and alert.target == "staff"
    assert "sms" in alert.payload["kind"]


async def test_a_wrong_number_is_undeliverable(app: App, sms_api: FakeTencentSms,
                                               dispatcher: Dispatcher) -> None:
    await walk_in(app, dt.date(2026, 11, 25))
    sms_api.fail_next("InvalidParameterValue.IncorrectPhoneNumber")
    assert (await dispatcher.drain()).undeliverable == 1
    [row] = await rows(app, "booking_confirmed")
    assert "IncorrectPhoneNumber" in (row.last_error or "")


async def test_figures(app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher,
                       clock: ManualClock) -> None:
    await walk_in(app, dt.date(2026, 11, 25))
    await dispatcher.drain()
    async with app.database.session() as session:
        await sms_store.opt_out(session, app.centre, clock.now(), "13900002222", source="staff")
    async with app.database.read() as session:
        figures = await sms_store.sms_figures(session, clock.now() - dt.timedelta(days=1),
                                              clock.now() + dt.timedelta(days=1), price_fen=5)
    assert figures == sms_store.SmsFigures(sent=1, failed=0, delivered=0, billed=1, cost_fen=5,
                                           opt_outs=1)


# --- a verification code to the mobile on file --------------------------------------------------


async def test_a_code_by_sms_proves_the_person_and_attaches_their_walk_in(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="yuyue")
    appointment = await walk_in(app, dt.date(2026, 11, 25))
    await dispatcher.drain()                                       # the walk-in's confirmation
    clock.advance(dt.timedelta(minutes=5))
    verifier = linking.SmsCode(app.centre)
    async with app.database.session() as session:
        identity = await identity_for(session, "wechat", OPENID, "zh-CN", clock.now())
        account_id = identity.id
        challenge = await verifier.challenge(session, clock.now(), account_id=account_id,
                                             person_id=appointment.person_id)
    assert challenge.code is None and challenge.expires_at == clock.now() + dt.timedelta(minutes=5)
    assert (await dispatcher.drain()).sent == 1
    code = sms_api.texts[-1].params[0]
    assert len(code) == 6 and code.isdigit() and sms_api.texts[-1].params[1] == "5"
    async with app.database.read() as session:
        stored = (await session.scalars(select(SmsCode))).all()
        [code_row] = await rows(app, "sms_code")
    assert all(code not in s.code_hash for s in stored) and "code" not in code_row.payload
    wrong = "000000" if code != "000000" else "111111"
    async with app.database.session() as session:
        with pytest.raises(AccountRefused) as refused:
            await verifier.verify(session, clock.now(), account_id=account_id, answer=wrong)
    assert refused.value.reason == AccountRefusal.WRONG_ANSWER
    async with app.database.session() as session:
        proof = await verifier.verify(session, clock.now(), account_id=account_id,
                                      answer=f" {code[:3]} {code[3:]} ")
        attached = await linking.claim_person(session, app.centre, clock.now(), proof,
                                              relation=Relation.SELF, consent_version="2026-11")
    assert [a.id for a in attached] == [appointment.id]
    async with app.database.session() as session:                 # single use
        with pytest.raises(AccountRefused):
            await verifier.verify(session, clock.now(), account_id=account_id, answer=code)
    async with app.database.read() as session:
        seen = await accounts.appointment_for(session, account_id=account_id,
                                              appointment_id=appointment.id)
        reminders = await rows(app, "reminder")
    assert seen is not None
    # its reminders now go to the chat; the texts queued for the walk-in are dropped
    assert {(r.target or "chat")[:4]: r.status for r in reminders} == {
        "sms:": OutboxStatus.DROPPED, "chat": OutboxStatus.PENDING}
    assert not any(code in r.getMessage() for r in caplog.records)


async def test_codes_expire_and_are_rate_limited(app: App, sms_api: FakeTencentSms,
                                                 dispatcher: Dispatcher, clock: ManualClock) -> None:
    appointment = await walk_in(app, dt.date(2026, 11, 25))
    verifier = linking.SmsCode(app.centre)
    async with app.database.session() as session:
        account_id = (await identity_for(session, "telegram", "42", "zh-CN", clock.now())).id
        await verifier.challenge(session, clock.now(), account_id=account_id,
                                 person_id=appointment.person_id)
    await dispatcher.drain()
    code = sms_api.texts[-1].params[0]
    clock.advance(dt.timedelta(minutes=5))
    async with app.database.session() as session:
        with pytest.raises(AccountRefused):
            await verifier.verify(session, clock.now(), account_id=account_id, answer=code)
    for _ in range(4):
        async with app.database.session() as session:
            await verifier.challenge(session, clock.now(), account_id=account_id,
                                     person_id=appointment.person_id)
    async with app.database.session() as session:
        with pytest.raises(AccountRefused) as refused:
            await verifier.challenge(session, clock.now(), account_id=account_id,
                                     person_id=appointment.person_id)
    assert refused.value.reason == AccountRefusal.TOO_MANY_CODES


async def test_stats_and_export_count_texts(app: App, sms_api: FakeTencentSms,
                                            dispatcher: Dispatcher, clock: ManualClock) -> None:
    await walk_in(app, dt.date(2026, 11, 25))
    await dispatcher.drain()
    async with app.database.session() as session:
        await sms_store.opt_out(session, app.centre, clock.now(), "13900002222", source="staff")
    async with app.database.read() as session:
        result = await figures(session, app.centre, clock.now(),
                               parse_period("today", clock.now(), TZ))
    items = {key: (now, before) for key, now, before in result.items()}
    assert items["sms.sent"] == (1, 0) and items["sms.cost_fen"] == (5, 0)
    assert items["sms.opt_outs"] == (1, 0)
    assert "短信 1 条（失败 0，送达 0），费用约 0.05 元，退订 1" in render_figures(Speaker("zh-CN"), result)
    labels = {key: label for label, _, _, key in summary_rows(result)}
    assert labels["sms.cost_fen"] == "短信费用估算（分）"


async def test_a_staff_made_case_is_told_by_sms(app: App, sms_api: FakeTencentSms,
                                                dispatcher: Dispatcher, clock: ManualClock) -> None:
    templates = {**TEMPLATES,
                 "case_accepted": SmsTemplate("2000010", ("number", "service", "when")),
                 "case_ready": SmsTemplate("2000011", ("number", "place"))}
    centre = dataclasses.replace(app.centre, sms=dataclasses.replace(app.centre.sms,
                                                                     templates=templates))
    dispatcher.sms = build_sms(centre.sms)
    async with app.database.session() as session:
        service = await session.scalar(select(Service).where(Service.code == "id_card"))
        citizen = await person(session, centre, clock.now(), mobile=MOBILE)
        assert service is not None
        case = await cases.open_case(session, centre, clock.now(), actor="telegram:staff",
                                     kind=CaseKind.PROMISED, service_id=service.id,
                                     person_id=citizen.id)
        number = case.number
    assert (await dispatcher.drain()).sent == 1
    clock.advance(dt.timedelta(days=2))
    async with app.database.session() as session:
        await cases.start_processing(session, centre, clock.now(), number, actor="telegram:staff")
        await cases.mark_ready(session, centre, clock.now(), number, actor="telegram:staff")
    assert (await dispatcher.drain()).sent == 1
    accepted, ready = sms_api.texts
    assert accepted.template_id == "2000010" and accepted.params[0] == number
    assert "居民身份证" in accepted.params[1] and accepted.params[2] == case.due_on.isoformat()
    assert ready.template_id == "2000011" and ready.params == [number, "一楼 证件领取窗口 1号"]


async def test_a_blocked_chat_account_falls_back_to_sms(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    await wechat_books(app, dt.date(2026, 11, 25), last_wrote=clock.now())
    async with app.database.session() as session:      # the citizen unfollowed / blocked the bot
        await reach.mark_unreachable(session, "wechat", OPENID, "unsubscribed", clock.now())
    clock.set(local(2026, 11, 24, 18))
    assert (await dispatcher.drain()).undeliverable == 1
    assert (await dispatcher.drain()).sent == 1
    assert [t.template_id for t in sms_api.texts] == [TEMPLATES["reminder"].template_id]


async def test_a_kind_the_policy_keeps_off_sms_says_so(
        app: App, sms_api: FakeTencentSms, wechat: WechatSender, clock: ManualClock) -> None:
    never = dataclasses.replace(app.settings.sms, policy={**app.settings.sms.policy,
                                                          "reminder": "never"})
    dispatcher = Dispatcher(database=app.database, centre=app.centre,
                            settings=dataclasses.replace(app.settings, sms=never), clock=clock,
                            senders={"wechat": wechat}, sms=build_sms(never))
    await wechat_books(app, dt.date(2026, 11, 25), last_wrote=clock.now() - dt.timedelta(days=1))
    clock.set(local(2026, 11, 24, 18))
    assert (await dispatcher.drain()).undeliverable == 1
    assert (await dispatcher.drain()).claimed == 0 and sms_api.texts == []
    chat = (await rows(app, "reminder"))[0]
    assert chat.last_error and chat.last_error.endswith("; not by SMS for this kind")


# --- 绑定 by SMS in the chat -------------------------------------------------------------------

ON_FILE = "13800101001"     # its last 7 digits make a valid ID number in ``walk_in``


async def test_sms_verification_attaches_the_window_booking_of_a_person_of_the_account(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    appointment = await walk_in(app, dt.date(2026, 11, 25), mobile=ON_FILE)
    await dispatcher.drain()                            # the walk-in's confirmation
    clock.advance(dt.timedelta(minutes=5))          # (texts to one number are spaced)
    chat = Dialog(Assistant(database=app.database, centre=app.centre, clock=app.clock,
                            settings=app.settings), user="oSmsChat_1234", channel="wechat")
    await verify_dialog(chat, [
        ("/people", "添加"), ("[添加办事人]", "新办事人是您的"), ("[本人]", "同意"),
        ("[同意并继续]", "真实姓名"), ("张三", "手机号"), ("13900000000", "身份证号"),
        (valid_id("1101051950" + ON_FILE[-7:]), "已添加办事人 张*"),
    ])
    await chat.command("my")
    assert appointment.code not in chat.text
    await verify_dialog(chat, [("/link", "短信验证"), ("[短信验证]", "请选择办事人"),
                               ("[张*]", "验证码已发送")])
    assert (await dispatcher.drain()).sent == 1
    code = sms_api.texts[-1].params[0]
    assert sms_api.texts[-1].mobile.endswith(ON_FILE)          # the mobile on file, not the one typed
    await verify_dialog(chat, [("000000" if code != "000000" else "111111", "验证未通过"),
                               (code, "1个预约已关联到本账号")])
    await chat.command("my")
    assert any("居民身份证" in label for label in chat.labels)


# --- 短信验证 of someone found by name and ID number (a window or phone booking only) ------------


def sms_chat(app: App, user: str) -> Dialog:
    return Dialog(Assistant(database=app.database, centre=app.centre, clock=app.clock,
                            settings=app.settings), user=user, channel="wechat")


async def to_the_id_number(chat: Dialog, name: str) -> None:
    """From anywhere to 短信验证 → 用姓名和证件号码查找 → 父母 → the name typed."""
    await verify_dialog(chat, [("/link", "短信验证"), ("[短信验证]", "用姓名和证件号码查找"),
                               ("[用姓名和证件号码查找]", "TA 是您的"), ("[父母]", "真实姓名"),
                               (name, "身份证号码")])


BY_ID_SENT = "如信息与登记一致，验证码已发送到登记的手机号码"


async def test_a_person_known_only_from_the_window_is_found_by_name_and_id_and_proved_by_sms(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    appointment = await walk_in(app, dt.date(2026, 11, 25), mobile=ON_FILE)
    await dispatcher.drain()                            # the walk-in's confirmation
    clock.advance(dt.timedelta(minutes=5))              # (texts to one number are spaced)
    chat = sms_chat(app, "oSmsById_0001")
    await to_the_id_number(chat, "张三")
    await verify_dialog(chat, [(valid_id("1101051950" + ON_FILE[-7:]), BY_ID_SENT)])
    assert "138****" not in chat.text and ON_FILE not in chat.text   # no part of the number
    assert (await dispatcher.drain()).sent == 1
    text = sms_api.texts[-1]
    assert text.mobile.endswith(ON_FILE)                # the mobile on file: none was typed
    code = text.params[0]
    await verify_dialog(chat, [("000000" if code != "000000" else "111111", "验证未通过"),
                               (code, "1个预约已关联到本账号")])
    await chat.command("my")
    assert any("居民身份证" in label for label in chat.labels)
    await chat.command("people")
    assert any("张*" in label and "父母" in label for label in chat.labels), chat.labels
    async with app.database.read() as session:
        account_id = (await identity_for(session, "wechat", "oSmsById_0001", "zh-CN",
                                         clock.now())).id
        assert await accounts.appointment_for(session, account_id=account_id,
                                              appointment_id=appointment.id) is not None


async def test_name_and_id_get_one_answer_whether_they_match_or_not_and_wrong_codes_lock(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    """An ID number is no secret: a match, no such person, another name, and no mobile on file
    get one and the same answer, with no part of a number, and all go on to the code; only a
    match sends a text. Failures are counted at the code, towards the proof lock."""
    await walk_in(app, dt.date(2026, 11, 25), mobile=ON_FILE)
    no_mobile_id = valid_id("11010519600101123")
    async with app.database.session() as session:
        nobody_to_text = await person(session, app.centre, clock.now(), name="王五",
                                      id_number=no_mobile_id)
        nobody_to_text.mobile = ""
    await dispatcher.drain()                            # the walk-in's confirmation
    clock.advance(dt.timedelta(minutes=5))              # (texts to one number are spaced)
    sent_before = len(sms_api.texts)
    chat = sms_chat(app, "oSmsProbe_0002")
    answers = []
    for name, number in [("张三", valid_id("1101051950" + ON_FILE[-7:])),  # the match
                         ("张三", valid_id("11010519700101555")),          # nobody has it
                         ("李四", valid_id("1101051950" + ON_FILE[-7:])),  # a record, another name
                         ("王五", no_mobile_id)]:                          # the name, no mobile
        await to_the_id_number(chat, name)
        await chat.say(number)
        answers.append(chat.text)
        await dispatcher.drain()
    assert BY_ID_SENT in answers[0] and "138****" not in answers[0]
    assert answers == [answers[0]] * 4
    assert len(sms_api.texts) == sent_before + 1        # only the match sent a text
    for left in (4, 3, 2, 1):                            # the code for the match is gone
        await verify_dialog(chat, [(sms_api.texts[-1].params[0], f"还可尝试{left}次")])
    await chat.say("123456")                            # 5 wrong within the hour: locked
    assert "验证错误次数过多" in chat.text
    await to_the_id_number(chat, "张三")                # even the right details, while locked
    await chat.say(valid_id("1101051950" + ON_FILE[-7:]))
    assert "验证错误次数过多" in chat.text and BY_ID_SENT not in chat.text
    await dispatcher.drain()
    assert len(sms_api.texts) == sent_before + 1       # nothing sent while locked
    clock.advance(dt.timedelta(minutes=61))            # the lock is over
    await to_the_id_number(chat, "张三")
    await verify_dialog(chat, [(valid_id("1101051950" + ON_FILE[-7:]), BY_ID_SENT)])
    await dispatcher.drain()
    code = sms_api.texts[-1].params[0]
    assert len(sms_api.texts) == sent_before + 2
    await verify_dialog(chat, [(code, "1个预约已关联到本账号")])


async def test_the_codes_limit_for_a_person_found_by_id_is_silent(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    """Too many codes for the person gives the same answer as any other (a distinct one would
    tell that the name and number match), and sends nothing."""
    await walk_in(app, dt.date(2026, 11, 25), mobile=ON_FILE)
    await dispatcher.drain()
    number = valid_id("1101051950" + ON_FILE[-7:])
    for index in range(app.centre.sms.codes_per_hour):  # other accounts ask for the person
        chat = sms_chat(app, f"oSmsLimit_{index:04d}")
        await to_the_id_number(chat, "张三")
        await verify_dialog(chat, [(number, BY_ID_SENT)])
        first = chat.text
        clock.advance(dt.timedelta(minutes=1))
    assert await codes(app) == app.centre.sms.codes_per_hour
    chat = sms_chat(app, "oSmsLimit_last")
    await to_the_id_number(chat, "张三")
    await chat.say(number)
    assert chat.text == first and "频繁" not in chat.text
    assert await codes(app) == app.centre.sms.codes_per_hour   # none made, so none sent


async def codes(app: App) -> int:
    async with app.database.read() as session:
        return len((await session.scalars(select(SmsCode.id))).all())


async def test_a_full_list_may_still_prove_a_person_already_on_it_by_id(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    """The people limit is claim_person's: finding by ID someone already on a full list works,
    and someone new on a full list is refused only once proved."""
    await walk_in(app, dt.date(2026, 11, 25), mobile=ON_FILE)
    await walk_in(app, dt.date(2026, 11, 25), index=7, mobile="13800202002")
    await dispatcher.drain()
    full = dataclasses.replace(app.centre, accounts=dataclasses.replace(
        app.centre.accounts, people_per_account=1))
    chat = Dialog(Assistant(database=app.database, centre=full, clock=app.clock,
                            settings=app.settings), user="oSmsFull_0001", channel="wechat")
    for _ in range(2):                                   # the second time the list is full
        clock.advance(dt.timedelta(minutes=5))
        await to_the_id_number(chat, "张三")
        await verify_dialog(chat, [(valid_id("1101051950" + ON_FILE[-7:]), BY_ID_SENT)])
        await dispatcher.drain()
        await verify_dialog(chat, [(sms_api.texts[-1].params[0], "验证成功")])
    clock.advance(dt.timedelta(minutes=5))
    await to_the_id_number(chat, "张三")
    await verify_dialog(chat, [(valid_id("1101051950" + "0202002"), BY_ID_SENT)])
    await dispatcher.drain()
    await verify_dialog(chat, [(sms_api.texts[-1].params[0], "最多登记1位办事人")])
