"""Booking operations against a real database, with the clock moved by hand."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import re

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import DBAPIError

from storage import attendance, blocks, booking, closures, seats, waitlist
from storage.catalog import load_catalog
from storage.clock import ManualClock
from storage.db import Database
from storage.models import (
    Appointment,
    AppointmentStatus,
    AuditLog,
    Block,
    CancelKind,
    Channel,
    Hold,
    Outbox,
    OutboxStatus,
    Service,
    Slot,
    Strike,
    WaitlistEntry,
    WaitStatus,
)
from storage.refusals import BookingRefused, Refusal
from storage.seats import owner_key
from storage.settings import BlockTier
from storage.slots import DayState, availability
from tests.helpers import (
    account,
    demo_catalog,
    load_demo,
    local,
    make_centre,
    person,
    slots_of,
    valid_id,
)

MINUTE = dt.timedelta(minutes=1)
TUESDAY = dt.date(2026, 11, 24)


async def setup(database: Database, centre, clock: ManualClock, code: str = "id_card",  # type: ignore[no-untyped-def]
                day: dt.date = TUESDAY):
    async with database.session() as session:
        services = await load_demo(session, clock.now())
        slots = await slots_of(session, centre, services[code], clock.now(), day)
    return services, slots


def citizen_id(n: int) -> str:
    return valid_id(f"110105199001{n % 28 + 1:02d}{n % 1000:03d}")


async def new_citizen(database: Database, centre, clock: ManualClock, n: int):  # type: ignore[no-untyped-def]
    async with database.session() as session:
        p = await person(session, centre, clock.now(), name="张三", mobile=f"138{n:08d}",
                         id_number=citizen_id(n))
        a = await account(session, clock.now(), user=str(n), person_id=p.id)
        return p.id, a.id


async def book_one(database, centre, clock, slot_id, n=1, **kw):  # type: ignore[no-untyped-def]
    person_id, identity_id = await new_citizen(database, centre, clock, n)
    async with database.session() as session:
        appointment = await booking.book(session, centre, clock.now(), person_id=person_id,
                                         slot_id=slot_id, identity_id=identity_id,
                                         channel=Channel.TELEGRAM, made_by=f"telegram:{n}", **kw)
        return appointment


async def slot_counts(database: Database, slot_id: int) -> tuple[int, int]:
    async with database.read() as session:
        slot = await session.get(Slot, slot_id)
        assert slot is not None
        return slot.booked, slot.held


async def test_book_writes_the_appointment_reminders_and_audit(database, centre, clock) -> None:  # type: ignore[no-untyped-def]
    _, slots = await setup(database, centre, clock)
    appointment = await book_one(database, centre, clock, slots[0].id)
    assert len(appointment.code) == 6 and not set(appointment.code) & set("01OIL")
    assert await slot_counts(database, slots[0].id) == (1, 0)
    async with database.read() as session:
        rows = (await session.scalars(select(Outbox).where(Outbox.appointment_id == appointment.id)
                                      .order_by(Outbox.due_at))).all()
        kinds = [(r.kind, r.payload.get("label")) for r in rows]
        assert kinds == [("booking_confirmed", None), ("reminder", "evening"), ("reminder", "120m")]
        assert rows[1].due_at == local(2026, 11, 23, 18)           # evening of the previous working day
        assert rows[2].due_at == slots[0].starts_at - dt.timedelta(hours=2)
        assert await session.scalar(select(func.count()).select_from(AuditLog)
                                    .where(AuditLog.action == "book")) == 1


async def test_booking_after_a_reminder_time_skips_it(database, centre, clock) -> None:  # type: ignore[no-untyped-def]
    _, slots = await setup(database, centre, clock, "internal_medicine", dt.date(2026, 11, 23))
    clock.set(local(2026, 11, 23, 10))
    late_slot = next(s for s in slots if s.starts_at >= local(2026, 11, 23, 11, 15))
    appointment = await book_one(database, centre, clock, late_slot.id, confirm=False)
    async with database.read() as session:
        kinds = (await session.scalars(select(Outbox.kind).where(Outbox.appointment_id == appointment.id))).all()
    assert kinds == []   # the evening before and 2 hours before have both passed


async def test_booking_codes_are_unique_and_not_sequential(database, centre, clock) -> None:  # type: ignore[no-untyped-def]
    _, slots = await setup(database, centre, clock)
    codes = [(await book_one(database, centre, clock, slots[i].id, n=i)).code for i in range(6)]
    assert len(set(codes)) == 6 and all(re.fullmatch(r"[0-9A-Z]{6}", code) for code in codes)
    # A counter changes the last character or two from one booking to the next and keeps the
    # first; random codes differ almost everywhere (the chance that this fails is about 1e-6).
    for before, after in itertools.pairwise(codes):
        assert sum(a != b for a, b in zip(before, after, strict=True)) >= 2, (before, after)
    assert len({code[0] for code in codes}) > 1


async def test_full_slot_refusal_offers_nearest_alternatives_same_day_first(database, centre, clock) -> None:  # type: ignore[no-untyped-def]
    _, slots = await setup(database, centre, clock)
    target = slots[3]
    for n in range(target.online_capacity):
        await book_one(database, centre, clock, target.id, n=n)
    with pytest.raises(BookingRefused) as refused:
        await book_one(database, centre, clock, target.id, n=99)
    assert refused.value.reason == Refusal.FULL
    alternatives = refused.value.details["alternatives"]
    assert [a.local_date for a in alternatives] == [TUESDAY] * 3
    assert {alternatives[0].slot_id, alternatives[1].slot_id} == {slots[2].id, slots[4].id}


async def test_a_full_slot_is_refused_in_one_statement_with_the_same_alternatives(  # type: ignore[no-untyped-def]
        database, centre, clock) -> None:
    """In a release rush most attempts find the slot full: the statement that reads the slot
    carries its service's free slots then, and nothing else is read; they rank as the separate
    query ranks them (released days only, closed slots left out)."""
    services, slots = await setup(database, centre, clock)
    target = slots[3]
    async with database.session() as session:
        await closures.apply_closure(session, centre, clock.now(), starts_at=slots[4].starts_at,
                                     ends_at=slots[4].ends_at, reason="检修", actor="staff:1",
                                     service_id=services["id_card"].id)
    for n in range(target.online_capacity):
        await book_one(database, centre, clock, target.id, n=n)
    person_id, identity_id = await new_citizen(database, centre, clock, 99)
    statements: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _many) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    async with database.session() as session:
        await session.execute(select(func.count()).select_from(Slot))   # BEGIN before counting
        event.listen(database.engine.sync_engine, "before_cursor_execute", record)
        try:
            with pytest.raises(BookingRefused) as refused:
                await booking.book(session, centre, clock.now(), person_id=person_id,
                                   slot_id=target.id, identity_id=identity_id,
                                   channel=Channel.TELEGRAM, made_by="telegram:99")
        finally:
            event.remove(database.engine.sync_engine, "before_cursor_execute", record)
        assert refused.value.reason == Refusal.FULL and len(statements) == 1
        read = await seats.slot_for_booking(session, centre, target.id, clock.now())
        assert read.full and read.info.slot.booked == target.online_capacity
        offered = await seats.nearest_alternatives(session, centre, read.info, clock.now(),
                                                   limit=1000, free=read.free)
        assert offered == await seats.nearest_alternatives(session, centre, read.info,
                                                           clock.now(), limit=1000)
    assert refused.value.details["alternatives"] == offered[:3]
    assert slots[4].id not in {a.slot_id for a in offered} and slots[2].id in {a.slot_id for a in offered}
    last = max(a.local_date for a in offered)
    async with database.read() as session:
        unreleased = await session.scalar(select(func.count()).select_from(Slot).where(
            Slot.service_id == target.service_id, Slot.local_date > last))
    assert unreleased   # slots of the next, unreleased day exist and are not offered


async def test_a_catalog_load_reaches_the_next_booking(database, centre, clock) -> None:  # type: ignore[no-untyped-def]
    """A process keeps each service's parsed definition keyed by the digest a catalog load
    stores with it: a changed rule applies at the next attempt, in every process."""
    services, slots = await setup(database, centre, clock)
    async with database.session() as session:
        wednesday = await slots_of(session, centre, services["id_card"], clock.now(),
                                   TUESDAY + dt.timedelta(days=1))
    first = await book_one(database, centre, clock, slots[0].id, n=1)   # the definition is read
    catalog = demo_catalog()
    async with database.session() as session:
        await load_catalog(session, dataclasses.replace(catalog, services=tuple(
            dataclasses.replace(s, rules={**s.rules, "max_active_bookings": 1})
            if s.code == "id_card" else s for s in catalog.services)), clock.now())
    async with database.session() as session:
        with pytest.raises(BookingRefused) as refused:
            await booking.book(session, centre, clock.now(), person_id=first.person_id,
                               slot_id=wednesday[0].id, identity_id=first.identity_id,
                               channel=Channel.TELEGRAM, made_by="telegram:1")
    assert refused.value.reason == Refusal.CAP_ACTIVE and refused.value.details["limit"] == 1


async def test_closures_read_with_the_slot_and_the_alternatives(database, centre, clock) -> None:  # type: ignore[no-untyped-def]
    """Whether a closure covers a slot is read in the statement that reads the slot (and the
    alternatives): the service's, its department's and the whole centre's count, another
    department's does not, and a closed neighbour is never offered instead of a full slot."""
    services, slots = await setup(database, centre, clock)
    service = services["id_card"]
    other = next(s for s in services.values() if s.department_id != service.department_id)

    async def close(slot, **whom):  # type: ignore[no-untyped-def]
        async with database.session() as session:
            await closures.apply_closure(session, centre, clock.now(), starts_at=slot.starts_at,
                                         ends_at=slot.ends_at, reason="检修", actor="staff:1", **whom)

    await close(slots[5], department_id=other.department_id)
    assert (await book_one(database, centre, clock, slots[5].id, n=50)).code
    for n, (slot, whom) in enumerate(((slots[6], {"department_id": service.department_id}),
                                      (slots[7], {}), (slots[2], {"service_id": service.id}))):
        await close(slot, **whom)
        with pytest.raises(BookingRefused) as refused:
            await book_one(database, centre, clock, slot.id, n=60 + n)
        assert refused.value.reason == Refusal.SUSPENDED
    target = slots[3]
    for n in range(target.online_capacity):
        await book_one(database, centre, clock, target.id, n=n)
    with pytest.raises(BookingRefused) as refused:
        await book_one(database, centre, clock, target.id, n=99)
    offered = {a.slot_id for a in refused.value.details["alternatives"]}
    assert slots[4].id in offered and not offered & {slots[2].id, slots[6].id, slots[7].id}


async def test_not_released_and_too_late(database, centre, clock) -> None:  # type: ignore[no-untyped-def]
    services, _ = await setup(database, centre, clock)
    async with database.session() as session:
        later = await slots_of(session, centre, services["id_card"], clock.now(), dt.date(2026, 12, 1))
    with pytest.raises(BookingRefused) as refused:
        await book_one(database, centre, clock, later[0].id)
    assert refused.value.reason == Refusal.NOT_RELEASED
    assert refused.value.details["opens_at"] == local(2026, 11, 24, 8)
    clock.set(local(2026, 11, 24, 8))
    assert (await book_one(database, centre, clock, later[0].id, n=2)).local_date == dt.date(2026, 12, 1)

    _, tuesday = await setup(database, centre, clock)
    clock.set(local(2026, 11, 23, 14, 59))
    await book_one(database, centre, clock, tuesday[0].id, n=3)
    clock.set(local(2026, 11, 23, 15, 0))
    with pytest.raises(BookingRefused) as refused:
        await book_one(database, centre, clock, tuesday[1].id, n=4)
    assert refused.value.reason == Refusal.TOO_LATE


async def test_duplicate_and_caps(database, centre, clock) -> None:  # type: ignore[no-untyped-def]
    services, slots = await setup(database, centre, clock)
    person_id, identity_id = await new_citizen(database, centre, clock, 1)

    async def try_book(slot_id: int) -> Appointment:
        async with database.session() as session:
            return await booking.book(session, centre, clock.now(), person_id=person_id, slot_id=slot_id,
                                      identity_id=identity_id, channel=Channel.WECHAT, made_by="wechat:1")

    first = await try_book(slots[0].id)
    with pytest.raises(BookingRefused) as refused:
        await try_book(slots[5].id)
    assert refused.value.reason == Refusal.DUPLICATE and refused.value.details["code"] == first.code
    async with database.session() as session:
        other = [await slots_of(session, centre, services[c], clock.now(), TUESDAY) for c in
                 ("hukou_transfer", "social_card", "senior_card")]
    await try_book(other[0][0].id)
    await try_book(other[1][0].id)
    with pytest.raises(BookingRefused) as refused:
        await try_book(other[2][0].id)
    assert refused.value.reason == Refusal.CAP_ACTIVE and refused.value.details["limit"] == 3


async def test_a_held_seat_is_kept_while_the_citizen_types(database, centre, clock) -> None:  # type: ignore[no-untyped-def]
    _, slots = await setup(database, centre, clock, "dental", TUESDAY)    # one online seat per slot
    slot = slots[0]
    assert slot.online_capacity == 1
    async with database.session() as session:
        held = await booking.hold_seat(session, centre, clock.now(), owner="telegram:1", slot_id=slot.id)
    assert held.expires_at == clock.now() + 10 * MINUTE
    with pytest.raises(BookingRefused) as refused:
        await book_one(database, centre, clock, slot.id, n=2)          # someone faster
    assert refused.value.reason == Refusal.FULL
    clock.advance(minutes=9)
    mine = await book_one(database, centre, clock, slot.id, n=1, owner="telegram:1")
    assert mine.slot_id == slot.id and await slot_counts(database, slot.id) == (1, 0)


async def test_an_expired_hold_frees_the_seat(database, centre, clock) -> None:  # type: ignore[no-untyped-def]
    _, slots = await setup(database, centre, clock, "dental", TUESDAY)
    slot = slots[0]
    async with database.session() as session:
        await booking.hold_seat(session, centre, clock.now(), owner="telegram:1", slot_id=slot.id)
        views = await availability(session, centre, await session.get(Service, slot.service_id), clock.now())
        assert next(s for s in views[1].slots if s.slot_id == slot.id).remaining == 0
    clock.advance(minutes=10)
    async with database.read() as session:
        views = await availability(session, centre, await session.get(Service, slot.service_id), clock.now())
        assert next(s for s in views[1].slots if s.slot_id == slot.id).remaining == 1  # read-only, right
    await book_one(database, centre, clock, slot.id, n=2)
    assert await slot_counts(database, slot.id) == (1, 0)
    with pytest.raises(BookingRefused) as refused:
        await book_one(database, centre, clock, slot.id, n=1, owner="telegram:1")
    assert refused.value.reason == Refusal.FULL and refused.value.details["alternatives"]


async def test_picking_another_slot_gives_the_first_hold_back(database, centre, clock) -> None:  # type: ignore[no-untyped-def]
    _, slots = await setup(database, centre, clock, "dental", TUESDAY)
    async with database.session() as session:
        await booking.hold_seat(session, centre, clock.now(), owner="wechat:o1", slot_id=slots[0].id)
        await booking.hold_seat(session, centre, clock.now(), owner="wechat:o1", slot_id=slots[1].id)
    assert await slot_counts(database, slots[0].id) == (0, 0)
    assert await slot_counts(database, slots[1].id) == (0, 1)
    async with database.session() as session:
        assert await seats.release_holds(session, "wechat:o1") == 1
    assert await slot_counts(database, slots[1].id) == (0, 0)


async def test_cancel_before_and_after_the_cutoff(database, centre, clock) -> None:  # type: ignore[no-untyped-def]
    _, slots = await setup(database, centre, clock)
    appointment = await book_one(database, centre, clock, slots[0].id)   # Tuesday 09:00
    clock.set(slots[0].starts_at - dt.timedelta(days=1) - MINUTE)       # Monday 08:59
    async with database.session() as session:
        result = await booking.cancel(session, centre, clock.now(), appointment.id, actor="telegram:1")
    assert not result.late and result.appointment.cancel_kind == CancelKind.CITIZEN
    assert await slot_counts(database, slots[0].id) == (0, 0)
    async with database.read() as session:
        statuses = (await session.scalars(select(Outbox.status).where(
            Outbox.appointment_id == appointment.id))).all()
    assert set(statuses) == {OutboxStatus.DROPPED}

    second = await book_one(database, centre, clock, slots[1].id, n=2)   # Tuesday 09:20
    clock.set(slots[1].starts_at - dt.timedelta(days=1) + MINUTE)
    with pytest.raises(BookingRefused) as refused:
        async with database.session() as session:
            await booking.cancel(session, centre, clock.now(), second.id, actor="telegram:2")
    assert refused.value.reason == Refusal.CUTOFF_PASSED
    assert refused.value.details["deadline"] == slots[1].starts_at - dt.timedelta(days=1)
    assert await slot_counts(database, slots[1].id) == (1, 0)


async def test_late_cancel_with_strike_policy(database, clock) -> None:  # type: ignore[no-untyped-def]
    centre = make_centre(late_cancel="strike")
    _, slots = await setup(database, centre, clock)
    appointment = await book_one(database, centre, clock, slots[0].id)
    clock.set(slots[0].starts_at - dt.timedelta(hours=1))
    async with database.session() as session:
        result = await booking.cancel(session, centre, clock.now(), appointment.id, actor="telegram:1")
    assert result.late and result.strike is not None and result.strike.count == 1
    assert result.appointment.cancel_kind == CancelKind.LATE


async def test_reschedule_is_atomic(database, centre, clock) -> None:  # type: ignore[no-untyped-def]
    _, tuesday = await setup(database, centre, clock)
    slots = tuesday[6:]   # late enough on Tuesday to be before the cutoff on Monday 09:00
    mine = await book_one(database, centre, clock, slots[0].id)
    full = slots[1]
    for n in range(full.online_capacity):
        await book_one(database, centre, clock, full.id, n=10 + n)
    with pytest.raises(BookingRefused) as refused:
        async with database.session() as session:
            await booking.reschedule(session, centre, clock.now(), mine.id, full.id, actor="t")
    assert refused.value.reason == Refusal.FULL
    assert await slot_counts(database, slots[0].id) == (1, 0)
    async with database.read() as session:
        unchanged = await session.get(Appointment, mine.id)
        assert unchanged is not None and unchanged.slot_id == slots[0].id

    async with database.session() as session:
        moved = await booking.reschedule(session, centre, clock.now(), mine.id, slots[2].id, actor="t")
    assert moved.appointment.slot_id == slots[2].id and moved.appointment.code == mine.code
    assert await slot_counts(database, slots[0].id) == (0, 0)
    assert await slot_counts(database, slots[2].id) == (1, 0)
    async with database.read() as session:
        pending = (await session.scalars(select(Outbox).where(
            Outbox.appointment_id == mine.id, Outbox.kind == "reminder",
            Outbox.status == OutboxStatus.PENDING))).all()
    assert {r.due_at for r in pending} == {local(2026, 11, 23, 18), slots[2].starts_at - dt.timedelta(hours=2)}


async def test_no_show_sweep_strikes_and_blocks(database, centre, clock) -> None:  # type: ignore[no-untyped-def]
    services, _ = await setup(database, centre, clock, "internal_medicine", TUESDAY)
    person_id, identity_id = await new_citizen(database, centre, clock, 1)
    days = [dt.date(2026, 11, 24), dt.date(2026, 11, 25), dt.date(2026, 11, 26)]
    for number, day in enumerate(days, start=1):
        clock.set(local(day.year, day.month, day.day, 7))
        async with database.session() as session:
            slot = (await slots_of(session, centre, services["internal_medicine"], clock.now(), day))[4]
            appointment = await booking.book(session, centre, clock.now(), person_id=person_id,
                                             slot_id=slot.id, identity_id=identity_id,
                                             channel=Channel.TELEGRAM, made_by="telegram:1")
        clock.set(slot.starts_at + 29 * MINUTE)
        async with database.session() as session:
            assert await attendance.sweep_no_shows(session, centre, clock.now()) == []
        clock.set(slot.starts_at + 30 * MINUTE)
        async with database.session() as session:
            assert await attendance.sweep_no_shows(session, centre, clock.now()) == [appointment.id]
        async with database.session() as session:
            assert await attendance.sweep_no_shows(session, centre, clock.now()) == []   # idempotent
        async with database.read() as session:
            kinds = (await session.scalars(select(Outbox.kind).where(Outbox.identity_id == identity_id)
                                           .order_by(Outbox.id))).all()
            assert kinds[-1] == ("blocked" if number == 3 else "strike_warning")
            assert await session.scalar(select(func.count()).select_from(Strike)) == number
    async with database.read() as session:
        block = await blocks.active_block(session, person_id, clock.now())
        assert block is not None and block.ends_at == clock.now() + dt.timedelta(days=90)
        block_end = block.ends_at
    with pytest.raises(BookingRefused) as refused:
        async with database.session() as session:
            friday = dt.date(2026, 11, 27)
            slot = (await slots_of(session, centre, services["internal_medicine"], clock.now(), friday))[0]
            await booking.book(session, centre, clock.now(), person_id=person_id, slot_id=slot.id,
                               identity_id=identity_id, channel=Channel.TELEGRAM, made_by="telegram:1")
    assert refused.value.reason == Refusal.BLOCKED and refused.value.details["until"] == block_end
    clock.set(block_end)
    async with database.read() as session:
        assert await blocks.active_block(session, person_id, clock.now()) is None   # ends by itself


async def test_window_operations_and_undo(database, centre, clock) -> None:  # type: ignore[no-untyped-def]
    _, slots = await setup(database, centre, clock)
    appointment = await book_one(database, centre, clock, slots[0].id)
    with pytest.raises(BookingRefused) as refused:
        async with database.session() as session:
            await attendance.check_in(session, centre, clock.now(), appointment.code, actor="staff:1")
    assert refused.value.reason == Refusal.WRONG_DAY
    clock.set(slots[0].starts_at - 5 * MINUTE)
    for bad, reason in (("ZZZZZZ", Refusal.UNKNOWN_CODE),):
        with pytest.raises(BookingRefused) as refused:
            async with database.session() as session:
                await attendance.check_in(session, centre, clock.now(), bad, actor="staff:1")
        assert refused.value.reason == reason
    with pytest.raises(BookingRefused) as refused:
        async with database.session() as session:
            await attendance.check_in(session, centre, clock.now(), appointment.code, actor="staff:1", id_last4="1234")
    assert refused.value.reason == Refusal.ID_MISMATCH
    async with database.session() as session:
        checked = await attendance.check_in(session, centre, clock.now(), appointment.code.lower(),
                                         actor="staff:1", id_last4=citizen_id(1)[-4:].lower())
    assert checked.status == AppointmentStatus.CHECKED_IN
    async with database.session() as session:
        done = await attendance.complete(session, centre, clock.now(), appointment.code, actor="staff:1")
    assert done.status == AppointmentStatus.COMPLETED
    async with database.session() as session:
        undone = await attendance.undo(session, centre, clock.now(), appointment.code, actor="staff:1")
    assert undone.status == AppointmentStatus.CHECKED_IN
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(Outbox).where(
            Outbox.kind == "rating_request")) == 1


async def test_undo_of_a_no_show_voids_the_strike_and_lifts_its_block(database, clock) -> None:  # type: ignore[no-untyped-def]
    centre = make_centre(block_tiers=(BlockTier(1, 30),))
    _, slots = await setup(database, centre, clock)
    appointment = await book_one(database, centre, clock, slots[0].id)
    clock.set(slots[0].starts_at + 30 * MINUTE)  # the grace period has just run out
    async with database.session() as session:
        outcome = await attendance.mark_no_show(session, centre, clock.now(), appointment.code, actor="staff:1")
    assert outcome.blocked_until is not None
    async with database.session() as session:
        await attendance.undo(session, centre, clock.now(), appointment.code, actor="staff:1", reason="came late")
    async with database.read() as session:
        assert await blocks.active_block(session, appointment.person_id, clock.now()) is None
        strike = await session.scalar(select(Strike))
        assert strike is not None and strike.voided_at is not None
        again = await session.get(Appointment, appointment.id)
        assert again is not None and again.status == AppointmentStatus.BOOKED
    with pytest.raises(BookingRefused) as refused:
        async with database.session() as session:
            await attendance.undo(session, centre, clock.now(), appointment.code, actor="staff:1")
    assert refused.value.reason == Refusal.NOTHING_TO_UNDO


async def test_staff_cannot_mark_a_no_show_before_the_grace_period_ends(database, clock) -> None:  # type: ignore[no-untyped-def]
    centre = make_centre(no_show_grace_minutes=10)     # the rule the confirmation states
    _, slots = await setup(database, centre, clock)
    appointment = await book_one(database, centre, clock, slots[0].id)
    for early in (slots[0].starts_at + dt.timedelta(seconds=10), slots[0].starts_at + 10 * MINUTE
                  - dt.timedelta(seconds=1)):
        clock.set(early)
        with pytest.raises(BookingRefused) as refused:
            async with database.session() as session:
                await attendance.mark_no_show(session, centre, clock.now(), appointment.code,
                                              actor="staff:1")
        assert refused.value.reason == Refusal.NO_SHOW_TOO_EARLY
        assert refused.value.details["at"] == slots[0].starts_at + 10 * MINUTE
        assert refused.value.details["grace"] == 10
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(Strike)) == 0
    clock.set(slots[0].starts_at + 10 * MINUTE)
    async with database.session() as session:
        outcome = await attendance.mark_no_show(session, centre, clock.now(), appointment.code,
                                                actor="staff:1")
    assert outcome.count == 1


async def test_lift_block_needs_a_reason(database, centre, clock) -> None:  # type: ignore[no-untyped-def]
    person_id, _ = await new_citizen(database, centre, clock, 1)
    async with database.session() as session:
        session.add(Block(person_id=person_id, starts_at=clock.now(), ends_at=clock.now() + dt.timedelta(days=9),
                          strikes=3, created_at=clock.now()))
    for reason, refusal in (("", Refusal.REASON_REQUIRED),):
        with pytest.raises(BookingRefused) as refused:
            async with database.session() as session:
                await blocks.lift_block(session, clock.now(), person_id, actor="staff:1", reason=reason)
        assert refused.value.reason == refusal
    async with database.session() as session:
        assert await blocks.lift_block(session, clock.now(), person_id, actor="staff:1", reason="hospital record") == 1
    async with database.read() as session:
        assert await blocks.active_block(session, person_id, clock.now()) is None
        assert await session.scalar(select(AuditLog.detail).where(AuditLog.action == "lift_block")) == {
            "block": 1, "reason": "hospital record"}


async def test_closure_cancels_apologises_and_flags_late_notice(database, centre, clock) -> None:  # type: ignore[no-untyped-def]
    services, slots = await setup(database, centre, clock)
    early = await book_one(database, centre, clock, slots[0].id, n=1)     # 09:00 Tuesday
    later = await book_one(database, centre, clock, slots[9].id, n=2)     # afternoon
    clock.set(slots[0].starts_at - dt.timedelta(hours=1))                 # 1 hour's notice for the first
    start, end = local(2026, 11, 24, 0), local(2026, 11, 26, 0)
    async with database.read() as session:
        plan = await closures.plan_closure(session, centre, clock.now(), starts_at=start, ends_at=end,
                                          service_id=services["id_card"].id)
    assert [a.id for a in plan.appointments] == [early.id, later.id] and plan.late == 1
    async with database.session() as session:
        closure = await closures.apply_closure(session, centre, clock.now(), starts_at=start, ends_at=end,
                                              reason="系统升级", actor="staff:1",
                                              service_id=services["id_card"].id)
    assert (closure.affected, closure.late_notices) == (2, 1)
    async with database.read() as session:
        rows = (await session.scalars(select(Appointment).order_by(Appointment.id))).all()
        assert {r.cancel_kind for r in rows} == {CancelKind.CENTRE}
        notices = (await session.scalars(select(Outbox).where(Outbox.kind == "closure_cancelled")
                                         .order_by(Outbox.appointment_id))).all()
        assert [n.payload["late"] for n in notices] == [True, False]
        assert await session.scalar(select(func.count()).select_from(Strike)) == 0
        views = await availability(session, centre, services["id_card"], clock.now())
        assert views[0].day == TUESDAY and views[0].state == DayState.SUSPENDED
    async with database.session() as session:
        wednesday = await slots_of(session, centre, services["id_card"], clock.now(), dt.date(2026, 11, 25))
    with pytest.raises(BookingRefused) as refused:
        await book_one(database, centre, clock, wednesday[0].id, n=3)
    assert refused.value.reason == Refusal.SUSPENDED
    with pytest.raises(BookingRefused) as refused:
        async with database.session() as session:
            await closures.plan_closure(session, centre, clock.now(), starts_at=end, ends_at=start)
    assert refused.value.reason == Refusal.BAD_RANGE


async def test_waitlist_offers_a_freed_seat_in_order_then_to_everyone(database, centre, clock) -> None:  # type: ignore[no-untyped-def]
    services, slots = await setup(database, centre, clock, "dental", TUESDAY)
    slot = slots[0]
    taken = await book_one(database, centre, clock, slot.id, n=1)
    waiting = []
    for n in (2, 3):
        _, identity_id = await new_citizen(database, centre, clock, n)
        async with database.session() as session:
            entry = await waitlist.join_waitlist(session, centre, clock.now(), identity_id=identity_id,
                                                service_id=services["dental"].id, day=TUESDAY)
            again = await waitlist.join_waitlist(session, centre, clock.now(), identity_id=identity_id,
                                                service_id=services["dental"].id, day=TUESDAY)
            assert again.id == entry.id
        waiting.append(entry.id)
    async with database.session() as session:
        await booking.cancel(session, centre, clock.now(), taken.id, actor="telegram:1")
    assert await slot_counts(database, slot.id) == (0, 1)            # held for the first in line
    with pytest.raises(BookingRefused):
        await book_one(database, centre, clock, slot.id, n=4)        # not for anyone else
    clock.advance(minutes=10)
    async with database.session() as session:
        assert await waitlist.expire_holds(session, centre, clock.now()) == 1
        hold = await session.scalar(select(Hold))
        assert hold is not None and hold.owner == owner_key("telegram", "3")   # the next one
        entries = {e.id: e.status for e in (await session.scalars(select(WaitlistEntry))).all()}
        assert entries == {waiting[0]: WaitStatus.EXPIRED, waiting[1]: WaitStatus.OFFERED}
    second = await book_one(database, centre, clock, slot.id, n=3, owner=owner_key("telegram", "3"))
    assert second.slot_id == slot.id and await slot_counts(database, slot.id) == (1, 0)
    async with database.read() as session:
        offers = (await session.scalars(select(Outbox.kind).where(Outbox.kind == "waitlist_offer"))).all()
        assert len(offers) == 2


async def test_two_moves_of_one_persons_bookings_to_one_day_go_one_at_a_time(clock, database) -> None:  # type: ignore[no-untyped-def]
    """Two of a person's bookings moved to the same day at once: the second move waits for the
    person's lock, then sees the first and is refused as a second booking that day."""
    centre = make_centre(max_active_bookings=3)
    services, tuesday = await setup(database, centre, clock)
    async with database.session() as session:
        wednesday = await slots_of(session, centre, services["id_card"], clock.now(),
                                   TUESDAY + dt.timedelta(days=1))
        thursday = await slots_of(session, centre, services["id_card"], clock.now(),
                                  TUESDAY + dt.timedelta(days=2))
    first = await book_one(database, centre, clock, tuesday[6].id, n=7)
    async with database.session() as session:
        second = await booking.book(session, centre, clock.now(), person_id=first.person_id,
                                    slot_id=wednesday[6].id, identity_id=first.identity_id,
                                    channel=Channel.TELEGRAM, made_by="telegram:7")
    other = Database(database.url, pool_size=1)
    try:
        async with database.session() as session:
            await booking.reschedule(session, centre, clock.now(), first.id, thursday[6].id,
                                     actor="telegram:7")
            if not database.is_sqlite:   # SQLite's writers go one at a time anyway
                with pytest.raises(DBAPIError, match="lock timeout"):
                    async with other.session() as elsewhere:
                        await elsewhere.execute(text("SET LOCAL lock_timeout = '50ms'"))
                        await booking.reschedule(elsewhere, centre, clock.now(), second.id,
                                                 thursday[7].id, actor="telegram:7")
    finally:
        await other.dispose()
    with pytest.raises(BookingRefused) as refused:
        async with database.session() as session:
            await booking.reschedule(session, centre, clock.now(), second.id, thursday[7].id,
                                     actor="telegram:7")
    assert refused.value.reason == Refusal.DUPLICATE
