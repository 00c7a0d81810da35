"""At the window: check-in, completion, no-shows (marked by staff or swept after the grace
period) and undoing the last mark, each audited; and the lists staff work from (a day's
appointments, a booking found by code or mobile). Nothing here commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.audit import SYSTEM, audit
from storage.blocks import StrikeOutcome, add_strike, lift
from storage.booking import appointment_by_code
from storage.catalog import ServiceDef
from storage.centre import Centre
from storage.models import (
    Appointment,
    AppointmentStatus,
    AuditLog,
    Block,
    Outbox,
    OutboxStatus,
    Person,
    Service,
    Strike,
)
from storage.outbox import REMINDER, drop_pending, enqueue
from storage.refusals import BookingRefused, Refusal
from storage.rules import no_show_at

RATING_REQUEST = "rating_request"
MARK_UNDONE = "mark_undone"


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
    """Mark served an appointment of today that was checked in; the citizen is then asked to
    rate it. Only a citizen who came can have been served: a booking of another day, or one
    never checked in, is refused with the reason.

    Raises:
        BookingRefused: UNKNOWN_CODE, WRONG_DAY (day), NOT_CHECKED_IN, NOT_CHANGEABLE (status).
    """
    appointment = await appointment_by_code(session, code, lock=True)
    if appointment.local_date != centre.today(now):
        raise BookingRefused(Refusal.WRONG_DAY, day=appointment.local_date, code=appointment.code)
    if appointment.status == AppointmentStatus.BOOKED:
        raise BookingRefused(Refusal.NOT_CHECKED_IN, code=appointment.code)
    if appointment.status != AppointmentStatus.CHECKED_IN:
        raise BookingRefused(Refusal.NOT_CHANGEABLE, status=appointment.status, code=appointment.code)
    appointment.completed_at = now
    await _transition(session, appointment, AppointmentStatus.COMPLETED, now, actor, "complete")
    await drop_pending(session, appointment.id, (REMINDER,), "completed")
    if appointment.identity_id is not None:
        await enqueue(session, kind=RATING_REQUEST, now=now, identity_id=appointment.identity_id,
                      appointment_id=appointment.id,
                      dedup_key=await _fresh_key(session, f"rate:{appointment.id}"))
    return appointment


async def _fresh_key(session: AsyncSession, base: str) -> str:
    """``base``, or ``base:N`` when a notice of that cause was queued before and then undone:
    a mark made again after an undo is told again."""
    earlier = await session.scalar(select(func.count()).select_from(Outbox).where(
        or_(Outbox.dedup_key == base, Outbox.dedup_key.like(f"{base}:%"))))
    return f"{base}:{earlier}" if earlier else base


async def mark_no_show(session: AsyncSession, centre: Centre, now: dt.datetime, code: str, *,
                       actor: str) -> StrikeOutcome:
    """Staff mark a citizen who did not come; it counts as a strike. Not before the grace
    period after the start has run out (the no-show rule every confirmation states: not
    checked in ``no_show_grace_minutes`` after the start).

    Raises:
        BookingRefused: UNKNOWN_CODE, NOT_CHANGEABLE (status), NO_SHOW_TOO_EARLY (at, grace).
    """
    appointment = await appointment_by_code(session, code, lock=True)
    if appointment.status != AppointmentStatus.BOOKED:
        raise BookingRefused(Refusal.NOT_CHANGEABLE, status=appointment.status, code=appointment.code)
    service = await session.get(Service, appointment.service_id)
    assert service is not None  # foreign key
    policy = centre.policy(ServiceDef.from_json(service.definition))
    possible_at = no_show_at(appointment.starts_at, policy)
    if now < possible_at:
        raise BookingRefused(Refusal.NO_SHOW_TOO_EARLY, code=appointment.code, at=possible_at,
                             grace=policy.no_show_grace_minutes)
    return await _no_show(session, centre, now, appointment, actor)


async def _no_show(session: AsyncSession, centre: Centre, now: dt.datetime,
                   appointment: Appointment, actor: str) -> StrikeOutcome:
    appointment.no_show_at = now
    await _transition(session, appointment, AppointmentStatus.NO_SHOW, now, actor, "no_show")
    await drop_pending(session, appointment.id, (REMINDER,), "no-show")
    if appointment.identity_id is not None:
        await enqueue(session, kind="no_show", now=now, identity_id=appointment.identity_id,
                      appointment_id=appointment.id,
                      dedup_key=await _fresh_key(session, f"noshow:{appointment.id}"))
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

    Undoing a no-show voids its strike and lifts a block that strike caused. What the citizen
    was to be told of the mark (the rating request, the no-show, strike and block notices) is
    dropped if it has not gone out; if it has, the citizen is told the mark was withdrawn.

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
    told_keys: list[str] = []
    if last.action == "no_show":
        appointment.no_show_at = None
        strike = await session.scalar(select(Strike).where(
            Strike.appointment_id == appointment.id, Strike.reason == "no_show",
            Strike.voided_at.is_(None)))
        if strike is not None:
            told_keys.append(f"strike:{strike.id}")
            strike.voided_at = now
            await audit(session, now, actor, "void_strike", "strike", strike.id, reason=reason)
            caused = await session.scalar(select(Block).where(
                Block.person_id == appointment.person_id, Block.starts_at == strike.at,
                Block.lifted_at.is_(None)))
            if caused is not None:
                told_keys.append(f"blocked:{caused.id}")
                await lift(session, now, caused, actor, reason or "no-show undone")
    elif last.action == "complete":
        appointment.completed_at = None
    elif last.action == "check_in":
        appointment.checked_in_at = None
    await _transition(session, appointment, previous, now, actor, "undo", undid=last.action,
                      reason=reason)
    if await _withdraw_notices(session, appointment, _TOLD_OF[last.action], told_keys, last.at) \
            and appointment.identity_id is not None:
        await enqueue(session, kind=MARK_UNDONE, now=now, identity_id=appointment.identity_id,
                      appointment_id=appointment.id,
                      dedup_key=await _fresh_key(session, f"undone:{appointment.id}"),
                      payload={"undid": last.action})
    return appointment


# What the citizen is told of each window mark, by outbox kind (a check-in itself is not told,
# but a checked-in appointment is asked for a rating after its slot).
_TOLD_OF = {"check_in": (RATING_REQUEST,), "complete": (RATING_REQUEST,), "no_show": ("no_show",)}


async def _withdraw_notices(session: AsyncSession, appointment: Appointment, kinds: tuple[str, ...],
                            keys: list[str], marked_at: dt.datetime) -> bool:
    """Drop the notices of an undone mark (made at ``marked_at``) that have not gone out; True
    when one has (or is going out now), so the citizen must be told it was withdrawn. Notices
    older than the last withdrawal were withdrawn then (outbox ids only grow)."""
    withdrawn = await session.scalar(select(func.max(Outbox.id)).where(
        Outbox.appointment_id == appointment.id, Outbox.kind == MARK_UNDONE))
    mine = and_(or_(and_(Outbox.appointment_id == appointment.id, Outbox.kind.in_(kinds)),
                    Outbox.dedup_key.in_(keys)),
                Outbox.id > (withdrawn or 0))
    await session.execute(
        update(Outbox).where(mine, Outbox.status == OutboxStatus.PENDING)
        .values(status=OutboxStatus.DROPPED, last_error="mark undone")
        .execution_options(synchronize_session=False))
    told = await session.scalar(select(func.count()).select_from(Outbox).where(
        mine, Outbox.status.in_([OutboxStatus.SENDING, OutboxStatus.SENT]),
        Outbox.created_at >= marked_at))
    return bool(told)


# --- the window's lists -----------------------------------------------------------------------

Listed = tuple[Appointment, Person, Service]
_LISTED = (select(Appointment, Person, Service)
           .join(Person, Person.id == Appointment.person_id)
           .join(Service, Service.id == Appointment.service_id))


async def appointments_on(session: AsyncSession, day: dt.date,
                          service_ids: Sequence[int] | None = None) -> list[Listed]:
    """The appointments of a day by time, of every service or of these (``match_service``
    and ``service_ids_of`` in storage.services find them from what staff typed)."""
    query = _LISTED.where(Appointment.local_date == day).order_by(Appointment.starts_at)
    if service_ids is not None:
        query = query.where(Appointment.service_id.in_(list(service_ids)))
    return [(a, p, s) for a, p, s in (await session.execute(query)).all()]


async def appointments_with_code(session: AsyncSession, code: str) -> list[Listed]:
    """The appointment with this booking code, as a list of none or one."""
    query = _LISTED.where(Appointment.code == code.strip().upper())
    return [(a, p, s) for a, p, s in (await session.execute(query)).all()]


async def appointments_of_mobile(session: AsyncSession, mobile: str, since: dt.datetime,
                                 limit: int) -> list[Listed]:
    """Appointments since ``since`` of the people registered with this mobile, by time."""
    query = (_LISTED.where(Person.mobile == mobile, Appointment.starts_at >= since)
             .order_by(Appointment.starts_at).limit(limit))
    return [(a, p, s) for a, p, s in (await session.execute(query)).all()]
