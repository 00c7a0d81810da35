"""Closures (停办/停诊): a service, a department or the whole centre closed for a period; the
bookings it cancels are told with an apology and a way to rebook. Nothing here commits."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.audit import audit
from storage.centre import Centre
from storage.models import Appointment, AppointmentStatus, CancelKind, Closure, Hold, Service, Slot
from storage.move_offers import withdraw_offers
from storage.outbox import REMINDER, drop_pending, enqueue
from storage.refusals import BookingRefused, Refusal
from storage.rules import closure_notice_is_late
from storage.seats import release_seat
from storage.sms import notice_by_sms


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
        await release_seat(session, appointment.slot_id, offline=appointment.offline)
        await withdraw_offers(session, now, appointment.id, actor=actor)
        await drop_pending(session, appointment.id, (REMINDER, "booking_confirmed"), "closure")
        await audit(session, now, actor, "cancel", "appointment", appointment.id, kind="centre",
                    closure=closure.id, late_notice=late)
        payload = {"closure": closure.id, "reason": closure.reason, "late": late}
        if appointment.identity_id is not None:
            await enqueue(session, kind="closure_cancelled", now=now,
                          identity_id=appointment.identity_id, appointment_id=appointment.id,
                          dedup_key=f"closure:{closure.id}:{appointment.id}", payload=payload)
        await notice_by_sms(session, centre, now, kind="closure_cancelled",
                            person_id=appointment.person_id, account_id=appointment.identity_id,
                            appointment_id=appointment.id,
                            dedup_key=f"closure:{closure.id}:{appointment.id}", payload=payload)
    scope_slots = select(Slot.id).where(Slot.starts_at < ends_at, Slot.ends_at > starts_at)
    if service_id is not None:
        scope_slots = scope_slots.where(Slot.service_id == service_id)
    elif department_id is not None:
        scope_slots = scope_slots.where(Slot.service_id.in_(
            select(Service.id).where(Service.department_id == department_id)))
    gone = (await session.execute(delete(Hold).where(Hold.slot_id.in_(scope_slots))
                                  .returning(Hold.slot_id))).all()
    for (slot,) in gone:
        await release_seat(session, slot, held=True)
    return closure
