"""SMS at the window and the provider's receipts: staff record an opt-out or an opt-in in the
staff chat (`/sms optout MOBILE REASON`, audited, the number masked in every answer) and list
them; and a delivery receipt that reaches the callback before the send's answer is recorded is
kept and applied when it is (the fake provider posts it first, as the real one can)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select

from bot.dispatch import Dispatcher
from bot.sms import build_sms, sms_routes
from bot.web import build_web_app
from bot.wiring import App
from handlers.engine import Assistant
from storage import booking
from storage import sms as sms_store
from storage.centre import Centre
from storage.clock import ManualClock
from storage.db import Database
from storage.models import (
    Appointment,
    AuditLog,
    Channel,
    Outbox,
    OutboxStatus,
    Service,
    SmsEarlyReceipt,
    SmsMessage,
    SmsOptOut,
)
from storage.settings import Settings, SmsSettings
from tests.dialog import Dialog
from tests.fakes import LocalServer
from tests.fakes.tencent_sms import FakeTencentSms
from tests.helpers import make_centre, person, slots_of, valid_id
from tests.staff_support import STAFF_A, Staff, staff_settings

MOBILE = "13812345678"
OTHER = "13900001111"


@pytest.fixture
def centre(sms_settings: SmsSettings) -> Centre:
    return dataclasses.replace(make_centre(), sms=sms_settings)


@pytest.fixture
def settings(sms_settings: SmsSettings) -> Settings:
    return staff_settings(dataclasses.replace(Settings(), sms=sms_settings))


@pytest.fixture
def dispatcher(app: App) -> Dispatcher:
    return Dispatcher(database=app.database, centre=app.centre, settings=app.settings,
                      clock=app.clock, senders={}, sms=build_sms(app.settings.sms))


async def walk_in(app: App, mobile: str = MOBILE) -> Appointment:
    """A booking staff made for a citizen without a chat account: confirmed by SMS."""
    async with app.database.session() as session:
        found = await session.scalar(select(Service).where(Service.code == "id_card"))
        assert found is not None
        slot = (await slots_of(session, app.centre, found, app.clock.now(),
                               dt.date(2026, 11, 25)))[6]
        citizen = await person(session, app.centre, app.clock.now(), mobile=mobile,
                               id_number=valid_id("1101051950" + mobile[-7:]))
        return await booking.book(session, app.centre, app.clock.now(), person_id=citizen.id,
                                  slot_id=slot.id, identity_id=None, channel=Channel.STAFF,
                                  made_by="telegram:staff", offline=True)


async def audited(database: Database, action: str) -> list[AuditLog]:
    async with database.read() as session:
        return list((await session.scalars(select(AuditLog).where(AuditLog.action == action)
                                           .order_by(AuditLog.id))).all())


# --- /sms in the staff chat ---------------------------------------------------------------------


async def test_staff_record_an_opt_out_and_an_opt_in_in_the_chat(
        app: App, assistant: Assistant, wang: Staff, sms_api: FakeTencentSms,
        dispatcher: Dispatcher, clock: ManualClock) -> None:
    said = await wang.command("sms", f"optout {MOBILE} 市民来电要求不再接收短信")
    assert "已登记：138****5678 不再接收通知短信（原因：市民来电要求不再接收短信）" in said
    assert MOBILE not in said
    assert "已在退订名单中" in await wang.command("sms", f"optout {MOBILE} 再说一次")
    row, again = await audited(app.database, "sms_opt_out")
    assert again.detail["changed"] is False
    assert row.actor == f"telegram:{STAFF_A}" and row.detail["mobile"] == "138****5678"
    assert row.detail["reason"] == "市民来电要求不再接收短信"
    async with app.database.read() as session:
        [kept] = (await session.scalars(select(SmsOptOut))).all()
        every_audit = (await session.scalars(select(AuditLog))).all()
    assert (kept.source, kept.masked, kept.actor) == ("staff", "138****5678", f"telegram:{STAFF_A}")
    assert MOBILE not in kept.mobile_hash and not any(MOBILE in str(a.detail) for a in every_audit)

    # The number's texts stop; a reply of TD from another number is listed beside it.
    await walk_in(app)
    assert (await dispatcher.drain()).undeliverable == 1 and sms_api.texts == []
    web = build_web_app(sms_routes(app.database, app.centre, clock, app.settings.sms))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web),
                                 base_url="http://yuyue.test") as client:
        await client.post("/sms/tencent", json=[{"mobile": OTHER, "nationcode": "86",
                                                  "text": "退订", "time": 1795000000}])
    listing = await wang.command("sms", "optouts")
    assert "短信退订名单（共 2 个号码" in listing
    assert "139****1111" in listing and "回复退订" in listing
    assert "138****5678" in listing and "工作人员登记，原因：市民来电要求不再接收短信" in listing
    assert MOBILE not in listing and OTHER not in listing

    said = await wang.command("sms", f"optin {MOBILE} 本人到窗口要求恢复")
    assert "已恢复：138****5678 可以重新接收通知短信" in said and MOBILE not in said
    assert "不在退订名单中" in await wang.command("sms", f"optin {MOBILE} 再次")
    [opt_in] = (await audited(app.database, "sms_opt_in"))[:1]
    assert opt_in.detail == {"mobile": "138****5678", "reason": "本人到窗口要求恢复", "changed": True}
    assert "共 1 个号码" in await wang.command("sms", "optouts")


async def test_bad_sms_commands_say_how_and_citizens_cannot_use_them(
        assistant: Assistant, wang: Staff) -> None:
    assert "用法" in await wang.command("sms")
    assert "用法" in await wang.command("sms", "block 13812345678 x")
    assert "手机号不正确" in await wang.command("sms", "optout 12345 原因")
    assert "请写明原因" in await wang.command("sms", f"optout {MOBILE}")
    assert "退订名单是空的" in await wang.command("sms", "optouts")
    citizen = Dialog(assistant, user="51", channel="telegram")
    await citizen.command("sms", f"optout {MOBILE} 我")
    assert "已登记" not in citizen.text
    async with assistant.database.read() as session:
        assert (await session.scalars(select(SmsOptOut))).all() == []


# --- a receipt before the send is recorded ------------------------------------------------------


@pytest.fixture
async def callback(app: App, clock: ManualClock) -> AsyncIterator[str]:
    """The SMS callback served on 127.0.0.1, for the fake provider to post receipts to."""
    web = build_web_app(sms_routes(app.database, app.centre, clock, app.settings.sms))
    async with LocalServer(web) as server:
        yield server.url + app.settings.sms.callback_path


async def messages(app: App) -> list[SmsMessage]:
    async with app.database.read() as session:
        return list((await session.scalars(select(SmsMessage).order_by(SmsMessage.id))).all())


async def test_a_receipt_before_the_send_is_recorded_is_kept_and_applied(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, callback: str) -> None:
    sms_api.report_first(callback)                       # delivered, said before the answer
    await walk_in(app)
    assert (await dispatcher.drain()).sent == 1
    assert sms_api.receipts_posted == [200]
    [message] = await messages(app)
    assert message.status == "delivered" and message.reported_at is not None
    async with app.database.read() as session:
        assert (await session.scalars(select(SmsEarlyReceipt))).all() == []


async def test_an_early_failure_receipt_makes_the_notice_undeliverable(
        app: App, sms_api: FakeTencentSms, dispatcher: Dispatcher, callback: str) -> None:
    sms_api.report_first(callback, "FAIL", "MK:0005")
    await walk_in(app)
    await dispatcher.drain()
    [message] = await messages(app)
    assert message.status == "undelivered" and "MK:0005" in (message.error or "")
    async with app.database.read() as session:
        [row] = (await session.scalars(select(Outbox).where(
            Outbox.kind == "booking_confirmed"))).all()
    assert row.status == OutboxStatus.UNDELIVERABLE and "MK:0005" in (row.last_error or "")


async def test_a_receipt_nobody_sent_is_kept_a_week_only(app: App, clock: ManualClock) -> None:
    async with app.database.session() as session:
        assert await sms_store.record_receipts(session, clock.now(), [
            sms_store.Receipt("2433:unknown", delivered=True)]) == 0
    clock.advance(dt.timedelta(days=8))
    async with app.database.session() as session:
        await sms_store.record_receipts(session, clock.now(), [])
        assert (await session.scalars(select(SmsEarlyReceipt))).all() == []
