"""Case notices (办件) fall back to SMS, per the policy (``fallback`` by default), when the chat
cannot deliver them: WeChat's 48-hour window closed with no template and no consent, Telegram
answering 403 (the bot blocked), or no chat account at all (a case staff opened for a walk-in).
The real Tencent Cloud SDK talks to the fake SMS API; the chats are the fake WeChat and Telegram
APIs, over real HTTP."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select

from bot.dispatch import Dispatcher
from bot.sms import build_sms
from bot.telegram import TelegramChannel
from bot.telegram.limiter import RateLimiter
from bot.wechat.sender import WechatSender
from bot.wiring import App
from storage import cases
from storage.centre import Centre
from storage.clock import ManualClock
from storage.db import Database
from storage.identity import identity_for
from storage.models import Case, CaseKind, Outbox, OutboxStatus, Service
from storage.settings import Settings, SmsSettings, TelegramSettings
from tests.fakes import FakeTime
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.tencent_sms import TEMPLATES, FakeTencentSms
from tests.fakes.wechat_api import FakeWechatApi
from tests.helpers import make_centre, person, running_telegram
from tests.test_wechat_sender import sender_for, wechat_settings

MOBILE = "13812345678"
OPENID = "oSmsCase_12AbCdEfGhIjKlMnOpQr"
TELEGRAM_USER = 5111000077
STAFF, BOSS = "telegram:100", "telegram:900"


@pytest.fixture
def centre(sms_settings: SmsSettings) -> Centre:
    return dataclasses.replace(make_centre(), sms=sms_settings)


@pytest.fixture
def settings(sms_settings: SmsSettings, telegram_api: FakeTelegram) -> Settings:
    return dataclasses.replace(Settings(), sms=sms_settings, telegram=TelegramSettings(
        token=telegram_api.token, base_url=telegram_api.base_url,
        base_file_url=telegram_api.base_file_url))


@pytest.fixture
async def telegram(app: App, fake_time: FakeTime) -> AsyncIterator[TelegramChannel]:
    async with running_telegram(app, RateLimiter(now=fake_time.now, sleep=fake_time.sleep)) as channel:
        yield channel


@pytest.fixture
async def dispatcher(app: App, wechat_api: FakeWechatApi, database: Database, clock: ManualClock,
                     http: httpx.AsyncClient, telegram: TelegramChannel) -> Dispatcher:
    wechat: WechatSender = sender_for(wechat_settings(wechat_api), database, clock, http)
    return Dispatcher(database=app.database, centre=app.centre, settings=app.settings,
                      clock=app.clock, senders={"wechat": wechat, "telegram": telegram.sender},
                      sms=build_sms(app.settings.sms))


async def open_case(app: App, kind: CaseKind, *, channel: str | None, user: str = "",
                    last_wrote: dt.datetime | None = None, **kw: object) -> Case:
    """A 居民身份证 case opened at the window for the citizen with MOBILE, for their chat
    account on ``channel`` (None: they have none)."""
    async with app.database.session() as session:
        service = await session.scalar(select(Service).where(Service.code == "id_card"))
        assert service is not None
        citizen = await person(session, app.centre, app.clock.now(), mobile=MOBILE)
        identity_id = None
        if channel is not None:
            identity = await identity_for(session, channel, user, "zh-CN", app.clock.now())
            identity.person_id = citizen.id
            identity.last_inbound_at = last_wrote
            identity_id = identity.id
        return await cases.open_case(session, app.centre, app.clock.now(), actor=STAFF, kind=kind,
                                     service_id=service.id, person_id=citizen.id,
                                     identity_id=identity_id, **kw)  # type: ignore[arg-type]


async def step(app: App, operation: object, *args: object, **kw: object) -> object:
    async with app.database.session() as session:
        return await operation(session, app.centre, app.clock.now(), *args, **kw)  # type: ignore[operator]


async def extend(app: App, clock: ManualClock, number: str) -> None:
    """An extension requested and approved (延期 told to the citizen)."""
    extension = await step(app, cases.request_extension, number, actor=STAFF, days=3,
                           reason="等待外省户籍信息", supervisors=(BOSS,))
    await step(app, cases.decide_extension, extension.id, actor=BOSS,  # type: ignore[attr-defined]
               approve=True, supervisors=(BOSS,))


async def rows(app: App, kind: str) -> list[Outbox]:
    async with app.database.read() as session:
        return list((await session.scalars(select(Outbox).where(Outbox.kind == kind)
                                           .order_by(Outbox.id))).all())


async def drain_twice(dispatcher: Dispatcher) -> None:
    """The chat attempt, then the SMS twin its failure queued."""
    await dispatcher.drain()
    await dispatcher.drain()


def texts_by_template(sms_api: FakeTencentSms) -> dict[str, list[str]]:
    return {text.template_id: text.params for text in sms_api.texts}


async def test_wechat_outside_the_window_case_notices_fall_back_to_sms(
        app: App, sms_api: FakeTencentSms, wechat_api: FakeWechatApi, dispatcher: Dispatcher,
        clock: ManualClock) -> None:
    case = await open_case(app, CaseKind.CORRECTION, channel="wechat", user=OPENID,
                           last_wrote=clock.now() - dt.timedelta(days=3), missing=[0])
    await drain_twice(dispatcher)                                     # 补正
    clock.advance(dt.timedelta(days=2))                               # Wed 25 Nov
    await step(app, cases.resubmit, case.number, actor=STAFF)
    await extend(app, clock, case.number)                   # 延期
    await drain_twice(dispatcher)
    clock.advance(dt.timedelta(minutes=5))
    await step(app, cases.mark_ready, case.number, actor=STAFF)       # 办结/领证
    await drain_twice(dispatcher)
    sent = texts_by_template(sms_api)
    assert sent[TEMPLATES["case_correction"].template_id] == [
        case.number, "居民身份证办理（首次申领/换领/补领）", "2026-12-07"]   # the 补正 deadline
    told = (await rows(app, "case_extended"))[0]
    assert sent[TEMPLATES["case_extended"].template_id] == [case.number, told.payload["due_on"]]
    assert sent[TEMPLATES["case_ready"].template_id] == [case.number, "一楼 证件领取窗口 1号"]
    assert all(text.mobile == "+86" + MOBILE for text in sms_api.texts)
    for kind in ("case_correction", "case_extended", "case_ready"):
        chat, twin = await rows(app, kind)
        assert chat.status == OutboxStatus.UNDELIVERABLE and "48-hour" in (chat.last_error or "")
        assert twin.target == f"sms:{case.person_id}" and twin.status == OutboxStatus.SENT
        assert twin.payload["sms"] == {"via": "fallback", "account": chat.identity_id,
                                       "for": chat.id}
    # The 补正-received notice is not an SMS kind by default: the chat row says so.
    [resubmitted] = await rows(app, "case_resubmitted")
    assert (resubmitted.last_error or "").endswith("; not by SMS for this kind")
    assert wechat_api.sent("message/custom/send") == []


async def test_inside_the_window_a_case_notice_goes_to_the_chat_only(
        app: App, sms_api: FakeTencentSms, wechat_api: FakeWechatApi, dispatcher: Dispatcher,
        clock: ManualClock) -> None:
    await open_case(app, CaseKind.CORRECTION, channel="wechat", user=OPENID,
                    last_wrote=clock.now() - dt.timedelta(hours=1), missing=[0])
    await drain_twice(dispatcher)
    [chat] = await rows(app, "case_correction")
    assert chat.status == OutboxStatus.SENT and sms_api.texts == []
    assert "一次性补正告知" in wechat_api.texts[-1]


async def test_a_telegram_citizen_who_blocked_the_bot_gets_case_notices_by_sms(
        app: App, sms_api: FakeTencentSms, telegram_api: FakeTelegram, dispatcher: Dispatcher,
        clock: ManualClock) -> None:
    telegram_api.block(TELEGRAM_USER)
    case = await open_case(app, CaseKind.CORRECTION, channel="telegram", user=str(TELEGRAM_USER),
                           last_wrote=clock.now(), missing=[0, 1])
    await drain_twice(dispatcher)
    [chat, twin] = await rows(app, "case_correction")
    assert chat.status == OutboxStatus.UNDELIVERABLE and "blocked" in (chat.last_error or "")
    assert twin.status == OutboxStatus.SENT
    clock.advance(dt.timedelta(days=2))
    await step(app, cases.resubmit, case.number, actor=STAFF)
    await extend(app, clock, case.number)
    await dispatcher.drain()          # the account is known to be unreachable: straight to SMS
    await dispatcher.drain()
    clock.advance(dt.timedelta(minutes=5))
    await step(app, cases.mark_ready, case.number, actor=STAFF)
    await drain_twice(dispatcher)
    assert [t.template_id for t in sms_api.texts] == [
        TEMPLATES[kind].template_id for kind in ("case_correction", "case_extended", "case_ready")]
    assert telegram_api.chat_messages(TELEGRAM_USER) == []


async def test_a_case_without_a_chat_account_is_told_by_sms_at_once(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, clock: ManualClock) -> None:
    case = await open_case(app, CaseKind.CORRECTION, channel=None, missing=[0])
    assert (await dispatcher.drain()).sent == 1
    [correction] = await rows(app, "case_correction")
    assert correction.payload["sms"] == {"via": "no_chat", "account": None}
    clock.advance(dt.timedelta(days=2))
    await step(app, cases.resubmit, case.number, actor=STAFF)
    await extend(app, clock, case.number)
    await dispatcher.drain()                          # the 延期 text (and the staff alerts)
    assert len(sms_api.texts) == 2
    clock.advance(dt.timedelta(minutes=5))
    await step(app, cases.mark_ready, case.number, actor=STAFF)
    assert (await dispatcher.drain()).sent == 1
    assert [t.template_id for t in sms_api.texts] == [
        TEMPLATES[kind].template_id for kind in ("case_correction", "case_extended", "case_ready")]
    assert await rows(app, "case_resubmitted") == []                 # not an SMS kind: nothing


async def test_a_case_kind_the_policy_keeps_off_sms_stays_off(
        app: App, sms_api: FakeTencentSms, database: Database, clock: ManualClock,
        dispatcher: Dispatcher) -> None:
    never = dataclasses.replace(app.settings.sms, policy={**app.settings.sms.policy,
                                                          "case_correction": "never"})
    dispatcher.settings = dataclasses.replace(app.settings, sms=never)
    from storage.outbox import SmsHook
    dispatcher.sms_hook = SmsHook(never, app.centre.tz)
    await open_case(app, CaseKind.CORRECTION, channel="wechat", user=OPENID,
                    last_wrote=clock.now() - dt.timedelta(days=3), missing=[0])
    await drain_twice(dispatcher)
    [chat] = await rows(app, "case_correction")
    assert chat.status == OutboxStatus.UNDELIVERABLE and sms_api.texts == []
    assert (chat.last_error or "").endswith("; not by SMS for this kind")
