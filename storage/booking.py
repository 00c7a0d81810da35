"""Booking: hold a seat, book it, cancel, reschedule, and the notifications each implies.

Every operation takes the caller's session and does not commit: one transaction per incoming
update or job, committed at the boundary. Each rule lives once, in storage.rules; these
functions apply it and write what it implies (audit, outbox) in the same transaction. How seats
are taken without overbooking is told in storage.seats.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.accounts import reachable_account
from storage.audit import audit
from storage.blocks import ACTIVE_BLOCK_ENDS, StrikeOutcome, active_block, add_strike
from storage.catalog import ServiceDef
from storage.centre import Centre
from storage.db import at_commit, fetch_rows
from storage.models import (
    Appointment,
    AppointmentStatus,
    CancelKind,
    Channel,
    ChannelIdentity,
    Hold,
    Person,
    Service,
    Slot,
    WaitlistEntry,
    WaitStatus,
)
from storage.move_offers import withdraw_offers
from storage.outbox import REMINDER, drop_pending, enqueue, enqueue_many
from storage.refusals import BookingRefused, Refusal
from storage.rules import account_at_cap, at_local, can_change
from storage.seats import (
    SlotInfo,
    check_bookable,
    nearest_alternatives,
    release_holds,
    release_seat,
    slot_for_booking,
    slot_info,
    take_offline_seat,
    take_online_seat,
)
from storage.sms import notice_by_sms
from storage.waitlist import expire_holds, offer_freed_seat

CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L
CODE_LENGTH = 6
ACTIVE = (AppointmentStatus.BOOKED, AppointmentStatus.CHECKED_IN)


# --- looking things up ------------------------------------------------------------------------

# The statements every booking attempt runs are built once (building SQL expressions costs
# more than running these short queries); values come in as bound parameters.
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
_OTHER = aliased(Appointment)
# Every check of a booking that depends on who books, in one round trip: the block in force,
# a booking of the service that day, the active/week/month counts, and whether the booking
# code drawn for it is taken.
_PERSON_CHECK = select(
    ACTIVE_BLOCK_ENDS,
    select(_OTHER.id).where(_OTHER.code == bindparam("code")).exists().correlate(None),
    func.max(case((_SAME_DAY, Appointment.code))),
    func.coalesce(func.sum(case((and_(Appointment.status == AppointmentStatus.BOOKED,
                                      Appointment.starts_at > bindparam("now")), 1), else_=0)), 0),
    func.coalesce(func.sum(case((and_(_COUNTED, Appointment.created_at >= bindparam("week")), 1),
                                else_=0)), 0),
    func.coalesce(func.sum(case((and_(_COUNTED, Appointment.created_at >= bindparam("month")), 1),
                                else_=0)), 0),
).where(Appointment.person_id == bindparam("person_id"), Appointment.id != bindparam("ignore"))


async def appointment_by_code(session: AsyncSession, code: str, *, lock: bool = False) -> Appointment:
    """Raises BookingRefused(UNKNOWN_CODE)."""
    query = select(Appointment).where(Appointment.code == code.strip().upper())
    appointment = await session.scalar(query.with_for_update() if lock else query)
    if appointment is None:
        raise BookingRefused(Refusal.UNKNOWN_CODE, code=code.strip().upper())
    return appointment


async def person_of_code(session: AsyncSession, code: str) -> Person | None:
    """The person a booking code was made for, or None when there is no such booking."""
    appointment = await session.scalar(select(Appointment).where(
        Appointment.code == code.strip().upper()))
    return await session.get(Person, appointment.person_id) if appointment is not None else None


async def recent_appointments(session: AsyncSession, person_id: int, since: dt.datetime,
                              limit: int = 20) -> list[Appointment]:
    """A person's appointments starting since ``since`` and any still booked, latest first."""
    return list((await session.scalars(
        select(Appointment).where(Appointment.person_id == person_id,
                                  or_(Appointment.starts_at >= since,
                                      Appointment.status == AppointmentStatus.BOOKED))
        .order_by(Appointment.starts_at.desc()).limit(limit))).all())


async def reachable_identity(session: AsyncSession, person_id: int) -> int | None:
    """The chat account proven to act for a person that can still be reached: where a booking
    staff make for them (代办) sends its confirmation and reminders
    (``storage.accounts.reachable_account``)."""
    return await reachable_account(session, person_id)


async def _locked_appointment(session: AsyncSession, appointment_id: int) -> Appointment:
    appointment = await session.scalar(select(Appointment).where(Appointment.id == appointment_id)
                                       .with_for_update())
    if appointment is None:
        raise BookingRefused(Refusal.UNKNOWN_CODE)
    return appointment


# --- holding a seat ---------------------------------------------------------------------------


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
    check_bookable(centre, info, now)
    expires = now + dt.timedelta(minutes=centre.policy(info.definition).hold_minutes)
    mine = await session.scalar(select(Hold).where(Hold.owner == owner, Hold.slot_id == slot_id))
    await release_holds(session, owner, keep_slot=slot_id)
    if mine is not None:
        mine.expires_at = expires
        await session.flush()
        return HeldSeat(mine.id, slot_id, expires)
    await expire_holds(session, centre, now, slot_id)
    if not await take_online_seat(session, slot_id, "held"):
        raise BookingRefused(Refusal.FULL, alternatives=await nearest_alternatives(
            session, centre, info, now))
    hold = Hold(slot_id=slot_id, owner=owner, expires_at=expires, created_at=now)
    session.add(hold)
    await session.flush()
    return HeldSeat(hold.id, slot_id, expires)


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
    # The seat stays counted (as held) until the move, which cannot fail: it is the commit's
    # last statement, so the hot slot's row is locked for that and the commit only.
    at_commit(session, update(Slot).where(Slot.id == slot_id)
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
        if not await take_offline_seat(session, info.slot.id):
            raise BookingRefused(Refusal.FULL, alternatives=[])
        return
    if await _consume_hold(session, owner, info.slot.id, info.slot.held):
        return
    if info.slot.held:  # only then can a hold have run out
        await expire_holds(session, centre, now, info.slot.id)
    if not await take_online_seat(session, info.slot.id, "booked"):
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
                        caps: bool = True, code: str | None = None) -> bool:
    """Refuse a blocked person, a second booking of the service that day, or one over the caps.

    One query over the person's appointments answers every check (this runs on every booking),
    and says whether ``code`` is taken.
    """
    return await _check_rules_of_person(session, centre, now, person_id, info.definition, info.service.id,
                                 info.slot.local_date, ignore_appointment=ignore_appointment,
                                 caps=caps, code=code)


async def _check_account(session: AsyncSession, centre: Centre, now: dt.datetime,
                         identity_id: int) -> None:
    (active,), = await fetch_rows(session, _ACCOUNT_ACTIVE, {"identity_id": identity_id, "now": now})
    if account_at_cap(active or 0, centre.accounts):
        raise BookingRefused(Refusal.CAP_ACCOUNT, limit=centre.accounts.active_bookings_per_account)


async def check_may_book(session: AsyncSession, centre: Centre, now: dt.datetime, *,
                         person_id: int | None, service_id: int, identity_id: int | None = None,
                         slot_id: int | None = None) -> None:
    """The rules of ``book`` that depend on who books (block, per-person caps, the account's
    cap and, once a slot is picked, a second booking of the service that day), checked as soon
    as the person is known so that nobody holds a seat, or gives their details, for a booking
    the rules refuse. ``book`` checks them again under its locks. Without a person (not chosen
    yet) only the account's cap is checked.

    Raises:
        BookingRefused: BLOCKED (until, strikes), DUPLICATE (code), CAP_ACTIVE/CAP_WEEK/
            CAP_MONTH (limit), CAP_ACCOUNT (limit), SERVICE_INACTIVE, UNKNOWN_SLOT.
    """
    service = await session.get(Service, service_id)
    if service is None:
        raise BookingRefused(Refusal.SERVICE_INACTIVE)
    day = None
    if slot_id is not None:
        slot = await session.get(Slot, slot_id)
        if slot is None:
            raise BookingRefused(Refusal.UNKNOWN_SLOT)
        day = slot.local_date
    if person_id is not None:
        await _check_rules_of_person(session, centre, now, person_id,
                                     ServiceDef.from_json(service.definition), service.id, day)
    if identity_id is not None:
        await _check_account(session, centre, now, identity_id)


async def _check_rules_of_person(session: AsyncSession, centre: Centre, now: dt.datetime,
                                 person_id: int, definition: ServiceDef, service_id: int,
                                 day: dt.date | None, *, ignore_appointment: int | None = None,
                                 caps: bool = True, code: str | None = None) -> bool:
    """Returns whether ``code`` is taken by another booking (False when no code is given).

    In ``book`` and ``reschedule`` it runs after the person's lock, in the transaction a lock
    began (``fetch_rows``), so it sees every booking committed before the lock was granted."""
    (blocked_until, code_taken, duplicate, active, this_week, this_month), = await fetch_rows(
        session, _PERSON_CHECK, {
            "person_id": person_id, "ignore": ignore_appointment or 0, "service_id": service_id,
            "local_date": day, "now": now, "week": _week_start(now, centre),
            "month": _month_start(now, centre), "code": code or ""})
    if blocked_until is not None:
        block = await active_block(session, person_id, now)   # rare: read its details
        if block is not None:
            raise BookingRefused(Refusal.BLOCKED, until=block.ends_at, strikes=block.strikes)
    policy = centre.policy(definition)
    if duplicate:
        raise BookingRefused(Refusal.DUPLICATE, code=duplicate)
    if not caps:
        return bool(code_taken)
    if active >= policy.max_active_bookings:
        raise BookingRefused(Refusal.CAP_ACTIVE, limit=policy.max_active_bookings)
    if policy.max_bookings_per_week and this_week >= policy.max_bookings_per_week:
        raise BookingRefused(Refusal.CAP_WEEK, limit=policy.max_bookings_per_week)
    if policy.max_bookings_per_month and this_month >= policy.max_bookings_per_month:
        raise BookingRefused(Refusal.CAP_MONTH, limit=policy.max_bookings_per_month)
    return bool(code_taken)


def _draw_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


async def _new_code(session: AsyncSession) -> str:
    for _ in range(20):
        code = _draw_code()
        if not await session.scalar(_CODE_TAKEN, {"code": code}):
            return code
    raise RuntimeError("could not find a free booking code")  # 1 in 887 million, 20 times


async def schedule_reminders(session: AsyncSession, centre: Centre, now: dt.datetime,
                             appointment: Appointment, *, confirm: bool = False) -> int:
    """Queue the notifications of a new or moved appointment that are still ahead: the
    confirmation (when asked), the evening-before reminder and the reminders at the offsets.
    A booking made after a reminder's time skips that reminder. Without a chat account (a
    walk-in or phone booking) they go by SMS where the policy allows (storage.sms)."""
    settings = centre.notifications
    due: list[tuple[str, dt.datetime]] = []
    if settings.reminder_evening is not None:
        evening_day = centre.calendar.previous_working_day(appointment.local_date)
        due.append(("evening", at_local(evening_day, settings.reminder_evening, centre.tz)))
    for offset in settings.reminder_offsets:
        due.append((f"{int(offset.total_seconds() // 60)}m", appointment.starts_at - offset))
    rows: list[dict[str, Any]] = [
        dict(kind=REMINDER, due_at=when, payload={"label": label},
             dedup_key=f"remind:{appointment.id}:{appointment.reschedules}:{label}")
        for label, when in due if now < when < appointment.starts_at]
    if confirm:
        rows.insert(0, dict(kind="booking_confirmed", due_at=now, payload={},
                            dedup_key=f"confirm:{appointment.id}"))
    if appointment.identity_id is None:
        queued = 0
        for row in rows:
            queued += await notice_by_sms(
                session, centre, now, kind=row["kind"], dedup_key=row["dedup_key"],
                person_id=appointment.person_id, account_id=None, appointment_id=appointment.id,
                payload=row["payload"], due_at=row["due_at"], expires_at=appointment.starts_at)
        return queued
    return await enqueue_many(session, now=now, identity_id=appointment.identity_id,
                              appointment_id=appointment.id, expires_at=appointment.starts_at,
                              rows=rows)


async def book(session: AsyncSession, centre: Centre, now: dt.datetime, *, person_id: int,
               slot_id: int, identity_id: int | None, channel: Channel, made_by: str,
               owner: str | None = None, offline: bool = False, age: int | None = None,
               attached: bool = False, confirm: bool = True,
               notice_version: str | None = None) -> Appointment:
    """Book a seat of ``slot_id`` for a person, in one transaction with its notifications.

    Args:
        owner: the holder key; a seat this owner holds on the slot is used first.
        offline: a staff booking for a walk-in or phone caller (代办), from the seats not
            offered online; release and booking-stop times do not apply to it.
        attached: a staff booking sent to ``identity_id``, an account proven to act for the
            person (``reachable_identity``): it is that account's at once (``attached_at``).
        confirm: queue a confirmation notification (a chat that shows the confirmation as its
            reply passes False).
        notice_version: the digest of the one-time notice the citizen was shown
            (``ServiceDef.notice_version``), kept with the booking.

    Returns:
        The new appointment, with its booking code.

    Raises:
        BookingRefused: UNKNOWN_SLOT, SERVICE_INACTIVE, NOT_RELEASED, TOO_LATE, SUSPENDED,
            BLOCKED (until), DUPLICATE (code), CAP_ACTIVE/CAP_WEEK/CAP_MONTH (limit),
            CAP_ACCOUNT (limit: the account's upcoming bookings across its people), or FULL
            (alternatives).
    """
    # One statement: the slot, whether a closure covers it, whether it is visibly full and
    # then its service's free slots (storage.seats.slot_for_booking).
    read = await slot_for_booking(session, centre, slot_id, now)
    info = read.info
    if offline:
        if not info.service.active:
            raise BookingRefused(Refusal.SERVICE_INACTIVE)
        if info.slot.ends_at <= now:
            raise BookingRefused(Refusal.TOO_LATE, closed_at=info.slot.ends_at)
        if info.closed:
            raise BookingRefused(Refusal.SUSPENDED)
    else:
        check_bookable(centre, info, now)
        if read.full:
            # Full with no hold that could be the caller's or could run out: say so at once
            # (in a release rush most attempts end here), with the free slots read with it.
            raise BookingRefused(Refusal.FULL, alternatives=await nearest_alternatives(
                session, centre, info, now, free=read.free))
    # One booking at a time per person, so two taps at once cannot both pass the caps.
    await session.execute(_LOCK_PERSON, {"person_id": person_id})
    code = _draw_code()   # checked with the person's rules; drawn again only if taken
    if await _check_person(session, centre, now, person_id, info, caps=not offline, code=code):
        code = await _new_code(session)
    if identity_id is not None and not offline:  # and per account, for its cap across people
        await session.execute(_LOCK_ACCOUNT, {"identity_id": identity_id})
        await _check_account(session, centre, now, identity_id)
    # From here on the slot row is locked (PostgreSQL) until commit: keep this part short.
    await _take_seat_for_booking(session, centre, now, info, owner, offline)
    appointment = Appointment(
        code=code, person_id=person_id, service_id=info.service.id, slot_id=slot_id,
        resource_id=info.slot.resource_id, identity_id=identity_id, local_date=info.slot.local_date,
        starts_at=info.slot.starts_at, ends_at=info.slot.ends_at, status=AppointmentStatus.BOOKED,
        channel=channel, offline=offline, made_by=made_by, age_at_booking=age,
        notice_version=notice_version, reschedules=0, created_at=now, updated_at=now,
        # A staff booking sent to an account proven to act for the person (``reachable_identity``)
        # is that account's at once: its reminders' buttons work there.
        attached_at=now if attached and identity_id is not None else None)
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
    await release_seat(session, appointment.slot_id, offline=appointment.offline)
    await withdraw_offers(session, now, appointment.id, actor=actor)  # staff's /move offers
    await drop_pending(session, appointment.id, (REMINDER, "booking_confirmed"), "cancelled")
    await audit(session, now, actor, "cancel", "appointment", appointment.id, kind=kind.value,
                reason=reason)
    if notify and appointment.identity_id is not None:
        await enqueue(session, kind="cancelled", now=now, identity_id=appointment.identity_id,
                      appointment_id=appointment.id, dedup_key=f"cancelled:{appointment.id}",
                      payload={"by_staff": by_staff, "reason": reason})
    if notify:
        await notice_by_sms(session, centre, now, kind="cancelled", person_id=appointment.person_id,
                            account_id=appointment.identity_id, appointment_id=appointment.id,
                            dedup_key=f"cancelled:{appointment.id}",
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
        if (month or 0) > centre.rules.strike_cancellations_per_month:
            strike = await add_strike(session, centre, now, appointment.person_id,
                                      "cancellations", appointment)
    if not appointment.offline:
        await offer_freed_seat(session, centre, now, appointment.slot_id)
    return ChangeResult(appointment, late, strike)


async def reschedule(session: AsyncSession, centre: Centre, now: dt.datetime, appointment_id: int,
                     new_slot_id: int, *, actor: str, owner: str | None = None,
                     by_staff: bool = False) -> ChangeResult:
    """Move an appointment to another slot of the same service, atomically.

    The new seat is taken first; only then is the old one given back, so a full new slot
    leaves the booking exactly as it was. A move staff offered and the citizen accepted
    (``by_staff``, storage.control) ignores the cutoff and the release and booking-stop times
    (its seat was held when it was offered) and never counts as a strike.

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
    if by_staff:
        decision = dataclasses.replace(decision, allowed=True, late=False)
    if not decision.allowed:
        raise BookingRefused(Refusal.CUTOFF_PASSED, deadline=decision.deadline)
    new = await slot_info(session, new_slot_id)
    if new.service.id != old.service.id:
        raise BookingRefused(Refusal.OTHER_SERVICE)
    if not by_staff:
        check_bookable(centre, new, now)
    elif new.closed:
        raise BookingRefused(Refusal.SUSPENDED)
    elif new.slot.starts_at <= now:
        raise BookingRefused(Refusal.TOO_LATE, closed_at=new.slot.starts_at)
    # One booking or move at a time per person, as in ``book``: two moves (or a move and a
    # booking) to one day cannot both pass the one-a-day check.
    await session.execute(_LOCK_PERSON, {"person_id": appointment.person_id})
    await _check_person(session, centre, now, appointment.person_id, new,
                        ignore_appointment=appointment.id, caps=False)
    await _take_seat_for_booking(session, centre, now, new, owner, offline=False)
    await release_seat(session, old.slot.id, offline=appointment.offline)
    if appointment.offline:  # a walk-in booking moved online takes an online seat now
        appointment.offline = False
    await drop_pending(session, appointment.id, (REMINDER,), "rescheduled")
    await withdraw_offers(session, now, appointment.id, actor=actor, keep_owner=owner)
    appointment.slot_id, appointment.local_date = new.slot.id, new.slot.local_date
    appointment.resource_id = new.slot.resource_id
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
    await offer_freed_seat(session, centre, now, old.slot.id)
    return ChangeResult(appointment, decision.late, strike)
