"""Staff control of one booking through the handlers: /cancel CODE REASON (no strike, the seat
back to the waitlist first, the citizen told with an apology and a rebook button)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from bot.dispatch import Dispatcher
from bot.wiring import App
from handlers.engine import Assistant
from storage import booking, waitlist
from storage.db import Database
from storage.models import (
    Appointment,
    AppointmentStatus,
    AuditLog,
    CancelKind,
    Channel,
    Outbox,
    Service,
    Slot,
    Strike,
)
from storage.settings import Settings
from tests.dialog import Dialog
from tests.helpers import account, person, slots_of, valid_id
from tests.staff_support import (
    STAFF_A,
    STAFF_PRIVATE,
    Recorder,
    Staff,
    staff_dispatcher,
    staff_settings,
)
from tests.staff_support import (
    book_telegram as book_at_window,
)

ID_A = valid_id("11010519491231002")
ID_B = valid_id("11010519800101003")
TODAY, TUESDAY = dt.date(2026, 11, 23), dt.date(2026, 11, 24)


@pytest.fixture
def settings() -> Settings:
    return staff_settings()


@pytest.fixture
def dispatcher(assistant: Assistant, settings: Settings, group: Recorder,
               citizens: Recorder) -> Dispatcher:
    return staff_dispatcher(assistant, settings, group, telegram=citizens)


async def book_online(assistant: Assistant | App, service: str, day: dt.date, index: int, *,
                      user: str, name: str = "张三", mobile: str = "13812345678",
                      id_number: str = ID_A) -> Appointment:
    """A booking a citizen made online (from the online seats, so a freed seat goes to the
    waitlist)."""
    async with assistant.database.session() as session:
        services = {s.code: s for s in (await session.scalars(select(Service))).all()}
        now = assistant.clock.now()
        slot = (await slots_of(session, assistant.centre, services[service], now, day))[index]
        citizen = await person(session, assistant.centre, now, name=name, mobile=mobile,
                               id_number=id_number)
        identity = await account(session, now, user=user, person_id=citizen.id)
        return await booking.book(session, assistant.centre, now, person_id=citizen.id,
                                  slot_id=slot.id, identity_id=identity.id,
                                  channel=Channel.TELEGRAM, made_by=f"telegram:{user}",
                                  confirm=False)


async def test_staff_cancel_one_booking_without_a_strike(
        assistant: Assistant, wang: Staff, database: Database, dispatcher: Dispatcher,
        citizens: Recorder) -> None:
    mine = await book_online(assistant, "id_card", TUESDAY, 0, user="51")
    async with database.session() as session:
        waiting = await account(session, assistant.clock.now(), user="52")
        await waitlist.join_waitlist(session, assistant.centre, assistant.clock.now(),
                                     identity_id=waiting.id, service_id=mine.service_id,
                                     day=TUESDAY)
    assert "没有预约码为 ZZZZZZ" in await wang.command("cancel", "ZZZZZZ 设备故障")
    missing = await wang.command("cancel", mine.code.lower())
    assert "请写明原因" in missing and f"/cancel {mine.code}" in missing
    done = await wang.command("cancel", f"{mine.code.lower()} 窗口设备故障")
    assert "已取消（不计失约）" in done and mine.code in done and "张* 138****5678" in done
    assert "13812345678" not in done
    again = await wang.command("cancel", f"{mine.code} 再取消一次")
    assert "当前状态为「已取消」" in again

    async with database.read() as session:
        row = await session.get(Appointment, mine.id)
        assert row is not None and row.status == AppointmentStatus.CANCELLED
        assert row.cancel_kind == CancelKind.STAFF and row.cancel_reason == "窗口设备故障"
        assert await session.scalar(select(func.count()).select_from(Strike)) == 0
        slot = await session.get(Slot, mine.slot_id)
        assert slot is not None and slot.booked == 0 and slot.held == 1   # offered to the waitlist
        audit = await session.scalar(select(AuditLog).where(AuditLog.action == "cancel"))
        assert audit is not None and audit.actor == f"telegram:{STAFF_A}"
        assert audit.detail["kind"] == "staff" and audit.detail["reason"] == "窗口设备故障"
        assert await session.scalar(select(func.count()).select_from(Outbox).where(
            Outbox.kind == "waitlist_offer")) == 1
    await dispatcher.drain()
    [told] = [d for d in citizens.sent if d.chat_id == "51"]
    assert "非常抱歉" in told.text and "窗口设备故障" in told.text and "不计失约" in told.text
    assert mine.code in told.text
    citizen = Dialog(assistant, user="51", channel="telegram")
    await citizen.send(choice=told.tokens[0])                       # 重新预约
    assert "一次性告知" in citizen.text and "居民身份证" in citizen.text


async def test_staff_cancel_refuses_a_past_booking_and_non_staff(
        assistant: Assistant, wang: Staff, database: Database) -> None:
    started = await book_at_window(assistant, "id_card", TODAY, 0, user="51", name="张三",
                                   mobile="13812345678", id_number=ID_A)
    refused = await wang.command("cancel", f"{started.code} 设备故障")
    assert f"预约 {started.code} 已于" in refused and "09:00 开始，不能再取消或改约" in refused
    later = await book_online(assistant, "id_card", TUESDAY, 2, user="52", name="李四",
                              mobile="13900001111", id_number=ID_B)
    # A citizen's /cancel with words only leaves what they were doing.
    stranger = Dialog(assistant, user="53", channel="telegram")
    await stranger.send(command="cancel", args=f"{later.code} 不想去了",
                        text=f"/cancel {later.code} 不想去了")
    async with database.read() as session:
        row = await session.get(Appointment, later.id)
        assert row is not None and row.status == AppointmentStatus.BOOKED
    # Allow-listed staff may do it in a private chat too.
    private = Staff(assistant, STAFF_PRIVATE, "赵六", chat=STAFF_PRIVATE)
    assert "已取消（不计失约）" in await private.command("cancel", f"{later.code} 人员调整")
    assert "/cancel 预约码 原因" in await wang.command("staffhelp")
