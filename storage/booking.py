"""Booking operations: hold, book, cancel, reschedule, check in, complete, no-show, undo,
strikes and blocks, closures and the waitlist.

Every operation takes the caller's session and does not commit: one transaction per incoming
update or job, committed at the boundary. Each rule lives once, in storage.rules; these
functions apply it and write what it implies (audit, outbox) in the same transaction.

Seats are taken with a conditional UPDATE (``booked + held < online_capacity``). On PostgreSQL
the row lock it takes makes concurrent bookers wait and re-check the condition on the newest row
version, so the slot can never be overbooked, and no lock is held longer than the transaction.
On SQLite writers are serialised by BEGIN IMMEDIATE. A CHECK constraint on the slot is the
backstop on both.
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.catalog import ServiceDef
from storage.centre import Centre
from storage.models import (
    Appointment,
    AppointmentStatus,
    AuditLog,
    Block,
    CancelKind,
    Channel,
    ChannelIdentity,
    Closure,
    Hold,
    Person,
    Service,
    Slot,
    Strike,
    WaitKind,
    WaitlistEntry,
    WaitStatus,
)
from storage.outbox import REMINDER, drop_pending, enqueue, enqueue_many
from storage.rules import (
    account_at_cap,
    at_local,
    block_until,
    booking_closes_at,
    can_change,
    closure_notice_is_late,
    last_released_day,
    next_threshold,
    no_show_at,
    release_at,
    strikes_in_window,
    strikes_to_block,
)
from storage.slots import active_closures, free_seats_column, is_closed

CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L
CODE_LENGTH = 6
ACTIVE = (AppointmentStatus.BOOKED, AppointmentStatus.CHECKED_IN)
SYSTEM = "system"


class Refusal(enum.StrEnum):
    UNKNOWN_SLOT = "unknown_slot"
    SERVICE_INACTIVE = "service_inactive"
    NOT_RELEASED = "not_released"
    TOO_LATE = "too_late"
    SUSPENDED = "suspended"
    FULL = "full"
    BLOCKED = "blocked"
    DUPLICATE = "duplicate"
    CAP_ACTIVE = "cap_active"
    CAP_WEEK = "cap_week"
    CAP_MONTH = "cap_month"
    CAP_ACCOUNT = "cap_account"
    CUTOFF_PASSED = "cutoff_passed"
    NOT_CHANGEABLE = "not_changeable"
    SAME_SLOT = "same_slot"
    OTHER_SERVICE = "other_service"
    UNKNOWN_CODE = "unknown_code"
    WRONG_DAY = "wrong_day"
    ID_MISMATCH = "id_mismatch"
    NOTHING_TO_UNDO = "nothing_to_undo"
    NOT_BLOCKED = "not_blocked"
    REASON_REQUIRED = "reason_required"
    WAITLIST_FULL = "waitlist_full"
    BAD_RANGE = "bad_range"


class BookingRefused(Exception):
    """An operation the rules do not allow; ``reason`` names the rule, ``details`` the facts
    the message needs (until when, the deadline, alternatives...)."""

    def __init__(self, reason: Refusal, **details: Any) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.details = details


@dataclass(frozen=True)
class SlotInfo:
    """A slot with its service, as operations and messages need them."""

    slot: Slot
    service: Service
    definition: ServiceDef


def owner_key(channel: str, user_id: str) -> str:
    """Who holds a seat: one chat user on one channel."""
    return f"{channel}:{user_id}"


async def audit(session: AsyncSession, now: dt.datetime, actor: str, action: str, entity: str,
                entity_id: int | None, **detail: Any) -> None:
    session.add(AuditLog(at=now, actor=actor, action=action, entity=entity, entity_id=entity_id,
                         detail=detail))


# --- looking things up ------------------------------------------------------------------------


# The statements every booking attempt runs are built once (building SQL expressions costs
# more than running these short queries); values come in as bound parameters.
_SLOT_INFO = (select(Slot, Service).join(Service, Service.id == Slot.service_id)
              .where(Slot.id == bindparam("slot_id")))
_ACTIVE_BLOCK = (select(Block).where(Block.person_id == bindparam("person_id"),
                                     Block.lifted_at.is_(None), Block.starts_at <= bindparam("now"),
                                     Block.ends_at > bindparam("now"))
                 .order_by(Block.ends_at.desc()).limit(1))
_LOCK_PERSON = select(Person.id).where(Person.id == bindparam("person_id")).with_for_update()
_ACCOUNT_ACTIVE = select(func.count()).select_from(Appointment).where(
    Appointment.identity_id == bindparam("identity_id"),
    Appointment.status == AppointmentStatus.BOOKED, Appointment.starts_at > bindparam("now"))
_LOCK_ACCOUNT = (select(ChannelIdentity.id).where(ChannelIdentity.id == bindparam("identity_id"))
                 .with_for_update())
_CODE_TAKEN = select(Appointment.id).where(Appointment.code == bindparam("code"))
_SAME_DAY = and_(Appointment.service_id == bindparam("service_id"),
                 Appointment.local_date == bindparam("local_date"),
                 Appointment.status.in_([s.value for s in ACTIVE]))
_COUNTED = or_(Appointment.cancel_kind.is_(None), Appointment.cancel_kind != CancelKind.CENTRE)
_PERSON_CHECK = select(
    func.max(case((_SAME_DAY, Appointment.code))),
    func.coalesce(func.sum(case((and_(Appointment.status == AppointmentStatus.BOOKED,
                                      Appointment.starts_at > bindparam("now")), 1), else_=0)), 0),
    func.coalesce(func.sum(case((and_(_COUNTED, Appointment.created_at >= bindparam("week")), 1),
                                else_=0)), 0),
    func.coalesce(func.sum(case((and_(_COUNTED, Appointment.created_at >= bindparam("month")), 1),
                                else_=0)), 0),
).where(Appointment.person_id == bindparam("person_id"), Appointment.id != bindparam("ignore"))


async def slot_info(session: AsyncSession, slot_id: int) -> SlotInfo:
    """Raises BookingRefused(UNKNOWN_SLOT) when there is no such slot."""
    row = (await session.execute(_SLOT_INFO, {"slot_id": slot_id})).one_or_none()
    if row is None:
        raise BookingRefused(Refusal.UNKNOWN_SLOT)
    slot, service = row
    return SlotInfo(slot, service, ServiceDef.from_json(service.definition))


async def appointment_by_code(session: AsyncSession, code: str, *, lock: bool = False) -> Appointment:
    """Raises BookingRefused(UNKNOWN_CODE)."""
    query = select(Appointment).where(Appointment.code == code.strip().upper())
    appointment = await session.scalar(query.with_for_update() if lock else query)
    if appointment is None:
        raise BookingRefused(Refusal.UNKNOWN_CODE, code=code.strip().upper())
    return appointment


async def _locked_appointment(session: AsyncSession, appointment_id: int) -> Appointment:
    appointment = await session.scalar(select(Appointment).where(Appointment.id == appointment_id)
                                       .with_for_update())
    if appointment is None:
        raise BookingRefused(Refusal.UNKNOWN_CODE)
    return appointment


async def active_block(session: AsyncSession, person_id: int, now: dt.datetime) -> Block | None:
    """The block in force for a person at ``now`` (the one ending last), if any."""
    return await session.scalar(_ACTIVE_BLOCK, {"person_id": person_id, "now": now})


# --- seats ------------------------------------------------------------------------------------


def check_bookable(centre: Centre, info: SlotInfo, now: dt.datetime,
                   closures: Sequence[Closure]) -> None:
    """Refuse a slot that is not released yet, closed for booking, or closed by the centre."""
    if not info.service.active:
        raise BookingRefused(Refusal.SERVICE_INACTIVE)
    slot, definition = info.slot, info.definition
    if now < release_at(slot.local_date, definition, centre.tz):
        raise BookingRefused(Refusal.NOT_RELEASED,
                             opens_at=release_at(slot.local_date, definition, centre.tz))
    closes = booking_closes_at(slot.local_date, slot.starts_at, centre.policy(definition),
                               centre.calendar, centre.tz)
    if now >= closes:
        raise BookingRefused(Refusal.TOO_LATE, closed_at=closes)
    if is_closed(closures, slot.starts_at, slot.ends_at):
        raise BookingRefused(Refusal.SUSPENDED)


async def _take_online_seat(session: AsyncSession, slot_id: int, column: str) -> bool:
    """Take one online seat as ``booked`` or ``held`` if one is free; True when taken."""
    result = await session.execute(
        update(Slot).where(Slot.id == slot_id, Slot.booked + Slot.held < Slot.online_capacity)
        .values({column: getattr(Slot, column) + 1}).execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def _take_offline_seat(session: AsyncSession, slot_id: int) -> bool:
    result = await session.execute(
        update(Slot).where(Slot.id == slot_id,
                           Slot.offline_booked < Slot.capacity - Slot.online_capacity)
        .values(offline_booked=Slot.offline_booked + 1).execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def _release_seat(session: AsyncSession, slot_id: int, *, offline: bool = False,
                        held: bool = False) -> None:
    column = Slot.offline_booked if offline else Slot.held if held else Slot.booked
    await session.execute(update(Slot).where(Slot.id == slot_id).values({column: column - 1})
                          .execution_options(synchronize_session=False))


async def _expire_holds(session: AsyncSession, centre: Centre, now: dt.datetime,
                        slot_id: int | None = None) -> int:
    """Give back the seats of holds that ran out (of one slot, or all); waitlist offers that ran
    out pass to the next citizen waiting."""
    condition = Hold.expires_at <= now
    if slot_id is not None:
        condition = and_(condition, Hold.slot_id == slot_id)
    gone = (await session.execute(delete(Hold).where(condition)
                                  .returning(Hold.slot_id, Hold.waitlist_id))).all()
    for slot, waitlist_id in gone:
        await _release_seat(session, slot, held=True)
        if waitlist_id is not None:
            await session.execute(update(WaitlistEntry).where(WaitlistEntry.id == waitlist_id)
                                  .values(status=WaitStatus.EXPIRED, updated_at=now))
            await _offer_freed_seat(session, centre, now, slot)
    return len(gone)


async def expire_holds(session: AsyncSession, centre: Centre, now: dt.datetime) -> int:
    """Sweep every hold that has run out (the scheduler calls this every minute).

    Returns:
        How many holds were released.
    """
    return await _expire_holds(session, centre, now)


async def nearest_alternatives(session: AsyncSession, centre: Centre, info: SlotInfo,
                               now: dt.datetime, limit: int = 3) -> list[SlotChoice]:
    """Other slots of the same service with a free seat: same day first, nearest time first."""
    last = last_released_day(now, info.definition, centre.tz)
    stale, remaining = free_seats_column(now)
    rows = (await session.execute(
        select(Slot, remaining).outerjoin(stale, stale.c.slot_id == Slot.id)
        .where(Slot.service_id == info.service.id, Slot.id != info.slot.id,
               Slot.local_date >= centre.today(now), Slot.local_date <= last,
               Slot.starts_at > now, remaining > 0)
        .order_by(Slot.starts_at).limit(200))).all()
    if not rows:
        return []
    closures = await active_closures(session, info.service, rows[0][0].starts_at, rows[-1][0].ends_at)
    policy = centre.policy(info.definition)
    candidates = [SlotChoice(slot.id, slot.local_date, slot.starts_at, slot.ends_at, int(free))
                  for slot, free in rows
                  if now < booking_closes_at(slot.local_date, slot.starts_at, policy,
                                             centre.calendar, centre.tz)
                  and not is_closed(closures, slot.starts_at, slot.ends_at)]
    target = info.slot
    candidates.sort(key=lambda s: (s.local_date != target.local_date,
                                   abs((s.starts_at - target.starts_at).total_seconds())))
    return candidates[:limit]


@dataclass(frozen=True)
class SlotChoice:
    """A slot offered as an alternative: plain values that outlive the transaction."""

    slot_id: int
    local_date: dt.date
    starts_at: dt.datetime
    ends_at: dt.datetime
    remaining: int


@dataclass(frozen=True)
class HeldSeat:
    hold_id: int
    slot_id: int
    expires_at: dt.datetime


async def hold_seat(session: AsyncSession, centre: Centre, now: dt.datetime, *, owner: str,
                    slot_id: int) -> HeldSeat:
    """Keep one seat of a slot for ``owner`` for ``hold_minutes`` while they give their details.

    A hold counts against capacity. Picking another slot gives the previous hold back.

    Raises:
        BookingRefused: UNKNOWN_SLOT, NOT_RELEASED, TOO_LATE, SUSPENDED, or FULL with
            ``alternatives`` (nearest other slots with a free seat).
    """
    info = await slot_info(session, slot_id)
    closures = await active_closures(session, info.service, info.slot.starts_at, info.slot.ends_at)
    check_bookable(centre, info, now, closures)
    expires = now + dt.timedelta(minutes=centre.policy(info.definition).hold_minutes)
    mine = await session.scalar(select(Hold).where(Hold.owner == owner, Hold.slot_id == slot_id))
    await release_holds(session, owner, keep_slot=slot_id)
    if mine is not None:
        mine.expires_at = expires
        await session.flush()
        return HeldSeat(mine.id, slot_id, expires)
    await _expire_holds(session, centre, now, slot_id)
    if not await _take_online_seat(session, slot_id, "held"):
        raise BookingRefused(Refusal.FULL, alternatives=await nearest_alternatives(
            session, centre, info, now))
    hold = Hold(slot_id=slot_id, owner=owner, expires_at=expires, created_at=now)
    session.add(hold)
    await session.flush()
    return HeldSeat(hold.id, slot_id, expires)


async def release_holds(session: AsyncSession, owner: str, *, keep_slot: int | None = None) -> int:
    """Give back the seats ``owner`` holds in a conversation (not waitlist offers made to them)."""
    condition = and_(Hold.owner == owner, Hold.waitlist_id.is_(None))
    if keep_slot is not None:
        condition = and_(condition, Hold.slot_id != keep_slot)
    gone = (await session.execute(delete(Hold).where(condition).returning(Hold.slot_id))).all()
    for (slot,) in gone:
        await _release_seat(session, slot, held=True)
    return len(gone)


async def _consume_hold(session: AsyncSession, owner: str | None, slot_id: int,
                        held: int = 1) -> bool:
    """Turn the owner's hold on this slot into a booked seat; False when they hold none.

    A hold that ran out but was not swept still counts: nobody else could take that seat.
    """
    if owner is None or not held:
        return False
    gone = (await session.execute(delete(Hold).where(Hold.owner == owner, Hold.slot_id == slot_id)
                                  .returning(Hold.waitlist_id))).all()
    if not gone:
        return False
    await session.execute(update(Slot).where(Slot.id == slot_id)
                          .values(held=Slot.held - 1, booked=Slot.booked + 1)
                          .execution_options(synchronize_session=False))
    for (waitlist_id,) in gone:
        if waitlist_id is not None:
            await session.execute(update(WaitlistEntry).where(WaitlistEntry.id == waitlist_id)
                                  .values(status=WaitStatus.DONE))
    return True


async def _take_seat_for_booking(session: AsyncSession, centre: Centre, now: dt.datetime,
                                 info: SlotInfo, owner: str | None, offline: bool) -> None:
    if offline:
        if not await _take_offline_seat(session, info.slot.id):
            raise BookingRefused(Refusal.FULL, alternatives=[])
        return
    if await _consume_hold(session, owner, info.slot.id, info.slot.held):
        return
    if info.slot.held:  # only then can a hold have run out
        await _expire_holds(session, centre, now, info.slot.id)
    if not await _take_online_seat(session, info.slot.id, "booked"):
        raise BookingRefused(Refusal.FULL, alternatives=await nearest_alternatives(
            session, centre, info, now))


# --- booking ----------------------------------------------------------------------------------


def _week_start(now: dt.datetime, centre: Centre) -> dt.datetime:
    today = centre.today(now)
    return at_local(today - dt.timedelta(days=today.weekday()), dt.time(0), centre.tz)


def _month_start(now: dt.datetime, centre: Centre) -> dt.datetime:
    return at_local(centre.today(now).replace(day=1), dt.time(0), centre.tz)


async def _check_person(session: AsyncSession, centre: Centre, now: dt.datetime, person_id: int,
                        info: SlotInfo, *, ignore_appointment: int | None = None,
                        caps: bool = True) -> None:
    """Refuse a blocked person, a second booking of the service that day, or one over the caps.

    One query over the person's appointments answers every check (this runs on every booking).
    """
    block = await active_block(session, person_id, now)
    if block is not None:
        raise BookingRefused(Refusal.BLOCKED, until=block.ends_at, strikes=block.strikes)
    policy = centre.policy(info.definition)
    duplicate, active, this_week, this_month = (await session.execute(_PERSON_CHECK, {
        "person_id": person_id, "ignore": ignore_appointment or 0, "service_id": info.service.id,
        "local_date": info.slot.local_date, "now": now, "week": _week_start(now, centre),
        "month": _month_start(now, centre)})).one()
    if duplicate:
        raise BookingRefused(Refusal.DUPLICATE, code=duplicate)
    if not caps:
        return
    if active >= policy.max_active_bookings:
        raise BookingRefused(Refusal.CAP_ACTIVE, limit=policy.max_active_bookings)
    if policy.max_bookings_per_week and this_week >= policy.max_bookings_per_week:
        raise BookingRefused(Refusal.CAP_WEEK, limit=policy.max_bookings_per_week)
    if policy.max_bookings_per_month and this_month >= policy.max_bookings_per_month:
        raise BookingRefused(Refusal.CAP_MONTH, limit=policy.max_bookings_per_month)


async def _new_code(session: AsyncSession) -> str:
    for _ in range(20):
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        if not await session.scalar(_CODE_TAKEN, {"code": code}):
            return code
    raise RuntimeError("could not find a free booking code")  # 1 in 887 million, 20 times


async def schedule_reminders(session: AsyncSession, centre: Centre, now: dt.datetime,
                             appointment: Appointment, *, confirm: bool = False) -> int:
    """Queue the notifications of a new or moved appointment that are still ahead: the
    confirmation (when asked), the evening-before reminder and the reminders at the offsets.
    A booking made after a reminder's time skips that reminder."""
    if appointment.identity_id is None:
        return 0
    settings = centre.notifications
    due: list[tuple[str, dt.datetime]] = []
    if settings.reminder_evening is not None:
        evening_day = centre.calendar.previous_working_day(appointment.local_date)
        due.append(("evening", at_local(evening_day, settings.reminder_evening, centre.tz)))
    for offset in settings.reminder_offsets:
        due.append((f"{int(offset.total_seconds() // 60)}m", appointment.starts_at - offset))
    rows = [dict(kind=REMINDER, due_at=when, payload={"label": label},
                 dedup_key=f"remind:{appointment.id}:{appointment.reschedules}:{label}")
            for label, when in due if now < when < appointment.starts_at]
    if confirm:
        rows.insert(0, dict(kind="booking_confirmed", due_at=now, payload={},
                            dedup_key=f"confirm:{appointment.id}"))
    return await enqueue_many(session, now=now, identity_id=appointment.identity_id,
                              appointment_id=appointment.id, expires_at=appointment.starts_at,
                              rows=rows)


async def book(session: AsyncSession, centre: Centre, now: dt.datetime, *, person_id: int,
               slot_id: int, identity_id: int | None, channel: Channel, made_by: str,
               owner: str | None = None, offline: bool = False, age: int | None = None,
               confirm: bool = True) -> Appointment:
    """Book a seat of ``slot_id`` for a person, in one transaction with its notifications.

    Args:
        owner: the holder key; a seat this owner holds on the slot is used first.
        offline: a staff booking for a walk-in or phone caller (代办), from the seats not
            offered online; release and booking-stop times do not apply to it.
        confirm: queue a confirmation notification (a chat that shows the confirmation as its
            reply passes False).

    Returns:
        The new appointment, with its booking code.

    Raises:
        BookingRefused: UNKNOWN_SLOT, SERVICE_INACTIVE, NOT_RELEASED, TOO_LATE, SUSPENDED,
            BLOCKED (until), DUPLICATE (code), CAP_ACTIVE/CAP_WEEK/CAP_MONTH (limit),
            CAP_ACCOUNT (limit: the account's upcoming bookings across its people), or FULL
            (alternatives).
    """
    info = await slot_info(session, slot_id)
    closures = await active_closures(session, info.service, info.slot.starts_at, info.slot.ends_at)
    if offline:
        if not info.service.active:
            raise BookingRefused(Refusal.SERVICE_INACTIVE)
        if info.slot.ends_at <= now:
            raise BookingRefused(Refusal.TOO_LATE, closed_at=info.slot.ends_at)
        if is_closed(closures, info.slot.starts_at, info.slot.ends_at):
            raise BookingRefused(Refusal.SUSPENDED)
    else:
        check_bookable(centre, info, now, closures)
        if info.slot.held == 0 and info.slot.booked >= info.slot.online_capacity:
            # Full with no hold that could be the caller's or could run out: say so at once
            # (in a release rush most attempts end here).
            raise BookingRefused(Refusal.FULL, alternatives=await nearest_alternatives(
                session, centre, info, now))
    # One booking at a time per person, so two taps at once cannot both pass the caps.
    await session.execute(_LOCK_PERSON, {"person_id": person_id})
    await _check_person(session, centre, now, person_id, info, caps=not offline)
    if identity_id is not None and not offline:  # and per account, for its cap across people
        await session.execute(_LOCK_ACCOUNT, {"identity_id": identity_id})
        active = await session.scalar(_ACCOUNT_ACTIVE, {"identity_id": identity_id, "now": now})
        if account_at_cap(active or 0, centre.accounts):
            raise BookingRefused(Refusal.CAP_ACCOUNT,
                                 limit=centre.accounts.active_bookings_per_account)
    code = await _new_code(session)
    # From here on the slot row is locked (PostgreSQL) until commit: keep this part short.
    await _take_seat_for_booking(session, centre, now, info, owner, offline)
    appointment = Appointment(
        code=code, person_id=person_id, service_id=info.service.id, slot_id=slot_id,
        identity_id=identity_id, local_date=info.slot.local_date, starts_at=info.slot.starts_at,
        ends_at=info.slot.ends_at, status=AppointmentStatus.BOOKED, channel=channel,
        offline=offline, made_by=made_by, age_at_booking=age, reschedules=0, created_at=now,
        updated_at=now)
    session.add(appointment)
    await session.flush()
    await audit(session, now, made_by, "book", "appointment", appointment.id, slot_id=slot_id,
                channel=channel.value, offline=offline)
    if identity_id is not None:
        await session.execute(update(WaitlistEntry).where(
            WaitlistEntry.identity_id == identity_id, WaitlistEntry.service_id == info.service.id,
            WaitlistEntry.local_date == info.slot.local_date,
            WaitlistEntry.status.in_([WaitStatus.WAITING, WaitStatus.OFFERED]))
            .values(status=WaitStatus.DONE, updated_at=now))
        await schedule_reminders(session, centre, now, appointment, confirm=confirm)
    return appointment


# --- cancel and reschedule --------------------------------------------------------------------


@dataclass(frozen=True)
class ChangeResult:
    appointment: Appointment
    late: bool = False
    strike: StrikeOutcome | None = None


async def cancel(session: AsyncSession, centre: Centre, now: dt.datetime, appointment_id: int, *,
                 actor: str, by_staff: bool = False, reason: str | None = None,
                 notify: bool = False) -> ChangeResult:
    """Cancel an appointment and give its seat back (to the waitlist first).

    A citizen may cancel until the cutoff; after it the rule refuses, or allows it with a strike
    (``late_cancel = "strike"``). Staff cancel at any time without a strike.

    Raises:
        BookingRefused: NOT_CHANGEABLE (status), CUTOFF_PASSED (deadline).
    """
    appointment = await _locked_appointment(session, appointment_id)
    if appointment.status != AppointmentStatus.BOOKED:
        raise BookingRefused(Refusal.NOT_CHANGEABLE, status=appointment.status)
    info = await slot_info(session, appointment.slot_id)
    late = False
    if not by_staff:
        decision = can_change(appointment.starts_at, now, centre.policy(info.definition),
                              centre.calendar, centre.tz)
        if not decision.allowed:
            raise BookingRefused(Refusal.CUTOFF_PASSED, deadline=decision.deadline)
        late = decision.late
    kind = CancelKind.STAFF if by_staff else CancelKind.LATE if late else CancelKind.CITIZEN
    appointment.status, appointment.cancelled_at = AppointmentStatus.CANCELLED, now
    appointment.cancel_kind, appointment.cancel_reason, appointment.updated_at = kind, reason, now
    await _release_seat(session, appointment.slot_id, offline=appointment.offline)
    await drop_pending(session, appointment.id, (REMINDER, "booking_confirmed"), "cancelled")
    await audit(session, now, actor, "cancel", "appointment", appointment.id, kind=kind.value,
                reason=reason)
    if notify and appointment.identity_id is not None:
        await enqueue(session, kind="cancelled", now=now, identity_id=appointment.identity_id,
                      appointment_id=appointment.id, dedup_key=f"cancelled:{appointment.id}",
                      payload={"by_staff": by_staff, "reason": reason})
    strike = None
    if late:
        strike = await add_strike(session, centre, now, appointment.person_id, "late_cancel",
                                  appointment)
    elif not by_staff and centre.rules.strike_cancellations_per_month:
        month = await session.scalar(select(func.count()).select_from(Appointment).where(
            Appointment.person_id == appointment.person_id,
            Appointment.cancel_kind.in_([CancelKind.CITIZEN, CancelKind.LATE]),
            Appointment.cancelled_at >= _month_start(now, centre)))
        if month > centre.rules.strike_cancellations_per_month:
            strike = await add_strike(session, centre, now, appointment.person_id,
                                      "cancellations", appointment)
    if not appointment.offline:
        await _offer_freed_seat(session, centre, now, appointment.slot_id)
    return ChangeResult(appointment, late, strike)


async def reschedule(session: AsyncSession, centre: Centre, now: dt.datetime, appointment_id: int,
                     new_slot_id: int, *, actor: str, owner: str | None = None) -> ChangeResult:
    """Move an appointment to another slot of the same service, atomically.

    The new seat is taken first; only then is the old one given back, so a full new slot
    leaves the booking exactly as it was.

    Raises:
        BookingRefused: NOT_CHANGEABLE, CUTOFF_PASSED, SAME_SLOT, OTHER_SERVICE, or any refusal
            of booking the new slot (FULL with alternatives, NOT_RELEASED, DUPLICATE...).
    """
    appointment = await _locked_appointment(session, appointment_id)
    if appointment.status != AppointmentStatus.BOOKED:
        raise BookingRefused(Refusal.NOT_CHANGEABLE, status=appointment.status)
    if new_slot_id == appointment.slot_id:
        raise BookingRefused(Refusal.SAME_SLOT)
    old = await slot_info(session, appointment.slot_id)
    decision = can_change(appointment.starts_at, now, centre.policy(old.definition),
                          centre.calendar, centre.tz)
    if not decision.allowed:
        raise BookingRefused(Refusal.CUTOFF_PASSED, deadline=decision.deadline)
    new = await slot_info(session, new_slot_id)
    if new.service.id != old.service.id:
        raise BookingRefused(Refusal.OTHER_SERVICE)
    closures = await active_closures(session, new.service, new.slot.starts_at, new.slot.ends_at)
    check_bookable(centre, new, now, closures)
    await _check_person(session, centre, now, appointment.person_id, new,
                        ignore_appointment=appointment.id, caps=False)
    await _take_seat_for_booking(session, centre, now, new, owner, offline=False)
    await _release_seat(session, old.slot.id, offline=appointment.offline)
    if appointment.offline:  # a walk-in booking moved online takes an online seat now
        appointment.offline = False
    await drop_pending(session, appointment.id, (REMINDER,), "rescheduled")
    appointment.slot_id, appointment.local_date = new.slot.id, new.slot.local_date
    appointment.starts_at, appointment.ends_at = new.slot.starts_at, new.slot.ends_at
    appointment.reschedules += 1
    appointment.updated_at = now
    await session.flush()
    await audit(session, now, actor, "reschedule", "appointment", appointment.id,
                from_slot=old.slot.id, to_slot=new.slot.id, late=decision.late)
    await schedule_reminders(session, centre, now, appointment)
    strike = None
    if decision.late:
        strike = await add_strike(session, centre, now, appointment.person_id, "late_cancel",
                                  appointment)
    await _offer_freed_seat(session, centre, now, old.slot.id)
    return ChangeResult(appointment, decision.late, strike)


# --- at the window ----------------------------------------------------------------------------


async def _transition(session: AsyncSession, appointment: Appointment, to: AppointmentStatus,
                      now: dt.datetime, actor: str, action: str, **detail: Any) -> None:
    before = appointment.status
    appointment.status, appointment.updated_at = to, now
    await audit(session, now, actor, action, "appointment", appointment.id,
                before=before.value, after=to.value, **detail)


async def check_in(session: AsyncSession, centre: Centre, now: dt.datetime, code: str, *,
                   actor: str, id_last4: str | None = None) -> Appointment:
    """Check a citizen in at the window by booking code, optionally checking the ID's last 4.

    Raises:
        BookingRefused: UNKNOWN_CODE, WRONG_DAY (day), NOT_CHANGEABLE (status), ID_MISMATCH.
    """
    appointment = await appointment_by_code(session, code, lock=True)
    if appointment.local_date != centre.today(now):
        raise BookingRefused(Refusal.WRONG_DAY, day=appointment.local_date, code=appointment.code)
    if appointment.status != AppointmentStatus.BOOKED:
        raise BookingRefused(Refusal.NOT_CHANGEABLE, status=appointment.status, code=appointment.code)
    if id_last4:
        person = await session.get(Person, appointment.person_id)
        masked = (person.id_masked or "") if person else ""
        if not masked or masked[-4:].upper() != id_last4.strip().upper():
            raise BookingRefused(Refusal.ID_MISMATCH, code=appointment.code)
    appointment.checked_in_at = now
    await _transition(session, appointment, AppointmentStatus.CHECKED_IN, now, actor, "check_in")
    await drop_pending(session, appointment.id, (REMINDER,), "checked in")
    return appointment


async def complete(session: AsyncSession, centre: Centre, now: dt.datetime, code: str, *,
                   actor: str) -> Appointment:
    """Mark an appointment served; the citizen is then asked to rate it.

    Raises:
        BookingRefused: UNKNOWN_CODE, NOT_CHANGEABLE (status).
    """
    appointment = await appointment_by_code(session, code, lock=True)
    if appointment.status not in ACTIVE:
        raise BookingRefused(Refusal.NOT_CHANGEABLE, status=appointment.status, code=appointment.code)
    if appointment.checked_in_at is None:
        appointment.checked_in_at = now
    appointment.completed_at = now
    await _transition(session, appointment, AppointmentStatus.COMPLETED, now, actor, "complete")
    await drop_pending(session, appointment.id, (REMINDER,), "completed")
    if appointment.identity_id is not None:
        await enqueue(session, kind="rating_request", now=now, identity_id=appointment.identity_id,
                      appointment_id=appointment.id, dedup_key=f"rate:{appointment.id}")
    return appointment


async def mark_no_show(session: AsyncSession, centre: Centre, now: dt.datetime, code: str, *,
                       actor: str) -> StrikeOutcome:
    """Staff mark a citizen who did not come; it counts as a strike.

    Raises:
        BookingRefused: UNKNOWN_CODE, NOT_CHANGEABLE (status, or not started yet).
    """
    appointment = await appointment_by_code(session, code, lock=True)
    if appointment.status != AppointmentStatus.BOOKED or appointment.starts_at > now:
        raise BookingRefused(Refusal.NOT_CHANGEABLE, status=appointment.status, code=appointment.code,
                             not_started=appointment.starts_at > now)
    return await _no_show(session, centre, now, appointment, actor)


async def _no_show(session: AsyncSession, centre: Centre, now: dt.datetime,
                   appointment: Appointment, actor: str) -> StrikeOutcome:
    appointment.no_show_at = now
    await _transition(session, appointment, AppointmentStatus.NO_SHOW, now, actor, "no_show")
    await drop_pending(session, appointment.id, (REMINDER,), "no-show")
    if appointment.identity_id is not None:
        await enqueue(session, kind="no_show", now=now, identity_id=appointment.identity_id,
                      appointment_id=appointment.id, dedup_key=f"noshow:{appointment.id}")
    return await add_strike(session, centre, now, appointment.person_id, "no_show", appointment)


async def sweep_no_shows(session: AsyncSession, centre: Centre, now: dt.datetime,
                         limit: int = 500) -> list[int]:
    """Turn every appointment not checked in by the end of its grace period into a no-show.

    Idempotent and safe to run in several processes at once: an appointment changes state
    once, under its row lock.

    Returns:
        The ids of the appointments marked.
    """
    candidates = (await session.execute(
        select(Appointment, Service.definition).join(Service, Service.id == Appointment.service_id)
        .where(Appointment.status == AppointmentStatus.BOOKED, Appointment.starts_at <= now)
        .order_by(Appointment.starts_at).limit(limit))).all()
    marked = []
    for appointment, definition in candidates:
        policy = centre.policy(ServiceDef.from_json(definition))
        if now < no_show_at(appointment.starts_at, policy):
            continue
        locked = await session.scalar(select(Appointment).where(
            Appointment.id == appointment.id, Appointment.status == AppointmentStatus.BOOKED)
            .with_for_update(skip_locked=True))  # PostgreSQL: another sweeper has it; skip
        if locked is None:
            continue
        await _no_show(session, centre, now, locked, SYSTEM)
        marked.append(locked.id)
    return marked


async def undo(session: AsyncSession, centre: Centre, now: dt.datetime, code: str, *,
               actor: str, reason: str | None = None) -> Appointment:
    """Undo the last window mark (check-in, completion or no-show) of an appointment, audited.

    Undoing a no-show voids its strike and lifts a block that strike caused.

    Raises:
        BookingRefused: UNKNOWN_CODE, NOTHING_TO_UNDO.
    """
    appointment = await appointment_by_code(session, code, lock=True)
    last = await session.scalar(
        select(AuditLog).where(AuditLog.entity == "appointment", AuditLog.entity_id == appointment.id)
        .order_by(AuditLog.id.desc()).limit(1))
    if last is None or last.action not in ("check_in", "complete", "no_show") \
            or last.detail.get("after") != appointment.status.value:
        raise BookingRefused(Refusal.NOTHING_TO_UNDO, code=appointment.code,
                             status=appointment.status)
    previous = AppointmentStatus(last.detail["before"])
    if last.action == "no_show":
        appointment.no_show_at = None
        strike = await session.scalar(select(Strike).where(
            Strike.appointment_id == appointment.id, Strike.reason == "no_show",
            Strike.voided_at.is_(None)))
        if strike is not None:
            strike.voided_at = now
            await audit(session, now, actor, "void_strike", "strike", strike.id, reason=reason)
            caused = await session.scalar(select(Block).where(
                Block.person_id == appointment.person_id, Block.starts_at == strike.at,
                Block.lifted_at.is_(None)))
            if caused is not None:
                await _lift(session, now, caused, actor, reason or "no-show undone")
    elif last.action == "complete":
        appointment.completed_at = None
    elif last.action == "check_in":
        appointment.checked_in_at = None
    await _transition(session, appointment, previous, now, actor, "undo", undid=last.action,
                      reason=reason)
    return appointment


# --- strikes and blocks -----------------------------------------------------------------------


@dataclass(frozen=True)
class StrikeOutcome:
    count: int                          # strikes inside the window, this one included
    blocked_until: dt.datetime | None   # set when this strike started a block
    next_threshold: int | None = None
    next_block_days: int | None = None


async def add_strike(session: AsyncSession, centre: Centre, now: dt.datetime, person_id: int,
                     reason: str, appointment: Appointment | None = None) -> StrikeOutcome:
    """Record a strike, block the person when it reaches a tier, and tell them either way."""
    strike = Strike(person_id=person_id, appointment_id=appointment.id if appointment else None,
                    reason=reason, at=now)
    session.add(strike)
    await session.flush()
    rules = centre.rules
    times = (await session.scalars(select(Strike.at).where(
        Strike.person_id == person_id, Strike.voided_at.is_(None),
        Strike.at > now - dt.timedelta(days=rules.strike_window_days)))).all()
    count = strikes_in_window(times, now, rules)
    await audit(session, now, SYSTEM, "strike", "person", person_id, reason=reason, count=count,
                appointment=appointment.id if appointment else None)
    identity_id = appointment.identity_id if appointment else None
    tier = strikes_to_block(count, rules)
    if tier is not None:
        block = Block(person_id=person_id, starts_at=now, ends_at=block_until(now, tier),
                      strikes=count, created_at=now)
        session.add(block)
        await session.flush()
        await audit(session, now, SYSTEM, "block", "person", person_id, block=block.id,
                    until=block.ends_at.isoformat(), strikes=count)
        if identity_id is not None:
            await enqueue(session, kind="blocked", now=now, identity_id=identity_id,
                          dedup_key=f"blocked:{block.id}",
                          payload={"until": block.ends_at.isoformat(), "strikes": count})
        return StrikeOutcome(count, block.ends_at)
    upcoming = next_threshold(count, rules)
    if identity_id is not None:
        await enqueue(session, kind="strike_warning", now=now, identity_id=identity_id,
                      dedup_key=f"strike:{strike.id}",
                      payload={"count": count, "reason": reason,
                               "threshold": upcoming.strikes if upcoming else None,
                               "days": upcoming.days if upcoming else None})
    return StrikeOutcome(count, None, upcoming.strikes if upcoming else None,
                         upcoming.days if upcoming else None)


async def _lift(session: AsyncSession, now: dt.datetime, block: Block, actor: str,
                reason: str) -> None:
    block.lifted_at, block.lifted_by, block.lift_reason = now, actor, reason
    await audit(session, now, actor, "lift_block", "person", block.person_id, block=block.id,
                reason=reason)


async def lift_block(session: AsyncSession, now: dt.datetime, person_id: int, *, actor: str,
                     reason: str) -> int:
    """Staff lift a person's block early; a reason is required and audited.

    Raises:
        BookingRefused: REASON_REQUIRED, NOT_BLOCKED.
    """
    if not reason or not reason.strip():
        raise BookingRefused(Refusal.REASON_REQUIRED)
    blocks = (await session.scalars(select(Block).where(
        Block.person_id == person_id, Block.lifted_at.is_(None), Block.ends_at > now))).all()
    if not blocks:
        raise BookingRefused(Refusal.NOT_BLOCKED)
    for block in blocks:
        await _lift(session, now, block, actor, reason.strip())
    return len(blocks)


# --- closures ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClosurePlan:
    appointments: list[Appointment] = field(default_factory=list)
    late: int = 0


def _in_scope(service_id: int | None, department_id: int | None) -> Any:
    if service_id is not None:
        return Appointment.service_id == service_id
    if department_id is not None:
        return Appointment.service_id.in_(select(Service.id).where(Service.department_id == department_id))
    return True


async def plan_closure(session: AsyncSession, centre: Centre, now: dt.datetime, *,
                       starts_at: dt.datetime, ends_at: dt.datetime, service_id: int | None = None,
                       department_id: int | None = None) -> ClosurePlan:
    """Which bookings a closure would cancel, and how many would get less notice than required.

    Raises:
        BookingRefused: BAD_RANGE when the period ends before it starts or is already over.
    """
    if ends_at <= starts_at or ends_at <= now:
        raise BookingRefused(Refusal.BAD_RANGE, starts_at=starts_at, ends_at=ends_at)
    appointments = list((await session.scalars(select(Appointment).where(
        _in_scope(service_id, department_id), Appointment.status == AppointmentStatus.BOOKED,
        Appointment.starts_at < ends_at, Appointment.ends_at > starts_at,
        Appointment.starts_at > now).order_by(Appointment.starts_at))).all())
    late = sum(closure_notice_is_late(a.starts_at, now, centre.rules) for a in appointments)
    return ClosurePlan(appointments, late)


async def apply_closure(session: AsyncSession, centre: Centre, now: dt.datetime, *,
                        starts_at: dt.datetime, ends_at: dt.datetime, reason: str, actor: str,
                        service_id: int | None = None, department_id: int | None = None) -> Closure:
    """Close a service, a department or the whole centre for a period (停办/停诊).

    Every affected booking is cancelled by the centre (no strike), its citizen gets an apology
    with a way to rebook, and notices that come later than ``closure_notice_hours`` before the
    start are counted as late for the manager.

    Raises:
        BookingRefused: BAD_RANGE, REASON_REQUIRED.
    """
    if not reason or not reason.strip():
        raise BookingRefused(Refusal.REASON_REQUIRED)
    plan = await plan_closure(session, centre, now, starts_at=starts_at, ends_at=ends_at,
                              service_id=service_id, department_id=department_id)
    closure = Closure(service_id=service_id, department_id=department_id, starts_at=starts_at,
                      ends_at=ends_at, reason=reason.strip(), created_by=actor, created_at=now,
                      affected=len(plan.appointments), late_notices=plan.late)
    session.add(closure)
    await session.flush()
    await audit(session, now, actor, "closure", "closure", closure.id, service=service_id,
                department=department_id, starts_at=starts_at.isoformat(),
                ends_at=ends_at.isoformat(), affected=closure.affected, late=closure.late_notices)
    for appointment in plan.appointments:
        await session.refresh(appointment, with_for_update=True)
        if appointment.status != AppointmentStatus.BOOKED:
            continue
        late = closure_notice_is_late(appointment.starts_at, now, centre.rules)
        appointment.status, appointment.cancelled_at = AppointmentStatus.CANCELLED, now
        appointment.cancel_kind, appointment.cancel_reason = CancelKind.CENTRE, closure.reason
        appointment.updated_at = now
        await _release_seat(session, appointment.slot_id, offline=appointment.offline)
        await drop_pending(session, appointment.id, (REMINDER, "booking_confirmed"), "closure")
        await audit(session, now, actor, "cancel", "appointment", appointment.id, kind="centre",
                    closure=closure.id, late_notice=late)
        if appointment.identity_id is not None:
            await enqueue(session, kind="closure_cancelled", now=now,
                          identity_id=appointment.identity_id, appointment_id=appointment.id,
                          dedup_key=f"closure:{closure.id}:{appointment.id}",
                          payload={"closure": closure.id, "reason": closure.reason, "late": late})
    scope_slots = select(Slot.id).where(Slot.starts_at < ends_at, Slot.ends_at > starts_at)
    if service_id is not None:
        scope_slots = scope_slots.where(Slot.service_id == service_id)
    elif department_id is not None:
        scope_slots = scope_slots.where(Slot.service_id.in_(
            select(Service.id).where(Service.department_id == department_id)))
    gone = (await session.execute(delete(Hold).where(Hold.slot_id.in_(scope_slots))
                                  .returning(Hold.slot_id))).all()
    for (slot,) in gone:
        await _release_seat(session, slot, held=True)
    return closure


# --- waitlist ---------------------------------------------------------------------------------


async def join_waitlist(session: AsyncSession, centre: Centre, now: dt.datetime, *,
                        identity_id: int, service_id: int, day: dt.date,
                        slot_id: int | None = None, kind: WaitKind = WaitKind.SEAT) -> WaitlistEntry:
    """Ask to be told when a seat frees up (or when the day is released). Idempotent.

    Raises:
        BookingRefused: WAITLIST_FULL.
    """
    existing = await session.scalar(select(WaitlistEntry).where(
        WaitlistEntry.identity_id == identity_id, WaitlistEntry.service_id == service_id,
        WaitlistEntry.local_date == day, WaitlistEntry.kind == kind,
        WaitlistEntry.status.in_([WaitStatus.WAITING, WaitStatus.OFFERED])))
    if existing is not None:
        return existing
    waiting = await session.scalar(select(func.count()).select_from(WaitlistEntry).where(
        WaitlistEntry.service_id == service_id, WaitlistEntry.local_date == day,
        WaitlistEntry.status == WaitStatus.WAITING))
    if waiting >= centre.rules.waitlist_size:
        raise BookingRefused(Refusal.WAITLIST_FULL)
    entry = WaitlistEntry(kind=kind, service_id=service_id, local_date=day, slot_id=slot_id,
                          identity_id=identity_id, status=WaitStatus.WAITING, created_at=now,
                          updated_at=now)
    session.add(entry)
    await session.flush()
    return entry


async def leave_waitlist(session: AsyncSession, centre: Centre, now: dt.datetime, entry_id: int,
                         identity_id: int) -> bool:
    """Leave the waitlist; a seat being offered goes to the next citizen."""
    entry = await session.scalar(select(WaitlistEntry).where(
        WaitlistEntry.id == entry_id, WaitlistEntry.identity_id == identity_id,
        WaitlistEntry.status.in_([WaitStatus.WAITING, WaitStatus.OFFERED])))
    if entry is None:
        return False
    entry.status, entry.updated_at = WaitStatus.LEFT, now
    gone = (await session.execute(delete(Hold).where(Hold.waitlist_id == entry.id)
                                  .returning(Hold.slot_id))).all()
    for (slot,) in gone:
        await _release_seat(session, slot, held=True)
        await _offer_freed_seat(session, centre, now, slot)
    return True


async def _offer_freed_seat(session: AsyncSession, centre: Centre, now: dt.datetime,
                            slot_id: int) -> WaitlistEntry | None:
    """Offer a seat that just freed up to the first citizen waiting for it, held for them."""
    slot = await session.get(Slot, slot_id, populate_existing=True)
    if slot is None or slot.starts_at <= now:
        return None
    candidates = (await session.execute(
        select(WaitlistEntry, ChannelIdentity)
        .join(ChannelIdentity, ChannelIdentity.id == WaitlistEntry.identity_id)
        .where(WaitlistEntry.service_id == slot.service_id, WaitlistEntry.local_date == slot.local_date,
               WaitlistEntry.kind == WaitKind.SEAT, WaitlistEntry.status == WaitStatus.WAITING,
               or_(WaitlistEntry.slot_id.is_(None), WaitlistEntry.slot_id == slot_id))
        .order_by(WaitlistEntry.id).limit(5)
        .with_for_update(skip_locked=True, of=WaitlistEntry))).all()
    entry: WaitlistEntry | None = None
    owner = ""
    for candidate, identity in candidates:
        owner = owner_key(identity.channel, identity.platform_user_id)
        # Someone already holding this very slot (picking it in a chat) needs no offer of it.
        if not await session.scalar(select(Hold.id).where(Hold.slot_id == slot_id, Hold.owner == owner)):
            entry = candidate
            break
    if entry is None or not await _take_online_seat(session, slot_id, "held"):
        return None
    info = await slot_info(session, slot_id)
    expires = now + dt.timedelta(minutes=centre.policy(info.definition).hold_minutes)
    session.add(Hold(slot_id=slot_id, owner=owner, expires_at=expires, waitlist_id=entry.id,
                     created_at=now))
    entry.status, entry.offered_at, entry.updated_at = WaitStatus.OFFERED, now, now
    await enqueue(session, kind="waitlist_offer", now=now, identity_id=entry.identity_id,
                  dedup_key=f"offer:{entry.id}:{slot_id}", expires_at=expires,
                  payload={"slot": slot_id, "service": slot.service_id,
                           "hold_expires_at": expires.isoformat()})
    await session.flush()
    return entry
