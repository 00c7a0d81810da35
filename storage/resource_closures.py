"""A doctor's or window's absence (停诊): a closure of one resource, with what each affected
patient is offered, chosen by staff booking by booking (after the patient's consent, as the
hospital rules ask):

- 替诊 (substitute): another doctor of the same specialty takes the same time. The patient is
  told who and may accept or cancel without a strike; no answer by the deadline counts as
  accepted (``rules.closure_answer_hours``, never later than the start).
- 换诊 (move): the nearest free times (same doctor, then same specialty and title, ...) are
  offered; the patient picks one or cancels without a strike; no answer by the deadline
  cancels without a strike, with an apology and a way to rebook.
- cancel: cancelled by the centre with an apology and a way to rebook, as every closure.

A patient with no chat account (a window or phone booking) is asked by SMS when the centre
sends these by SMS (docs/sms.md): the 替诊 text names the doctor, the time and the deadline;
the 换诊 text offers the nearest time, whose seat is held for them (storage.offer_holds). They
answer by replying 1 or 2 (storage.sms_answers); no answer means what it means in the chat.

The closure row counts the affected bookings and the notices later than
``rules.closure_notice_hours`` (缺陷管理, per resource). Nothing here commits.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.accounts import appointment_for
from storage.audit import audit
from storage.booking import schedule_reminders
from storage.centre import Centre
from storage.models import (
    Appointment,
    AppointmentStatus,
    CancelKind,
    Closure,
    ClosureOffer,
    Hold,
    MoveOffer,
    MoveStatus,
    Resource,
    Service,
    ServiceResource,
    Slot,
)
from storage.offer_holds import book_held_seat, hold_closure_seat, release_closure_hold
from storage.outbox import REMINDER, drop_pending, enqueue
from storage.refusals import BookingRefused, Refusal
from storage.resources import likeness, resource_info, title_rank
from storage.rules import closure_notice_is_late
from storage.seats import nearest_of_resource, release_seat, take_online_seat
from storage.slots import closure_covers
from storage.sms import notice_by_sms, sms_planned

MOVE_CHOICES = 3


class Way(enum.StrEnum):
    SUBSTITUTE = "substitute"   # 替诊
    MOVE = "move"               # 换诊
    CANCEL = "cancel"


@dataclass(frozen=True)
class Decision:
    way: Way
    substitute: int | None = None


@dataclass(frozen=True)
class Affected:
    appointment: Appointment
    late: bool
    substitutes: tuple[int, ...]    # resources that may take the same time, nearest first


@dataclass(frozen=True)
class ResourceClosurePlan:
    affected: list[Affected] = field(default_factory=list)

    @property
    def late(self) -> int:
        return sum(a.late for a in self.affected)


async def _closed_at(session: AsyncSession, resource_id: int, starts_at: dt.datetime,
                     ends_at: dt.datetime) -> bool:
    return await session.scalar(select(Closure.id).where(
        Closure.resource_id == resource_id, Closure.starts_at < ends_at,
        Closure.ends_at > starts_at).limit(1)) is not None


async def substitutes_for(session: AsyncSession, appointment: Appointment,
                          closed_id: int) -> tuple[int, ...]:
    """Doctors who may take a closed doctor's patient at the same time: the same specialty,
    serving the same service, active and not closed then; the same title first."""
    closed = await resource_info(session, closed_id)
    if closed is None or closed.specialty is None:
        return ()
    rows = (await session.scalars(
        select(Resource).join(ServiceResource, ServiceResource.resource_id == Resource.id)
        .where(ServiceResource.service_id == appointment.service_id, Resource.active.is_(True),
               Resource.id != closed_id, Resource.specialty_zh == closed.specialty.zh))).all()
    candidates = []
    for row in rows:
        if await _closed_at(session, row.id, appointment.starts_at, appointment.ends_at):
            continue
        info = await resource_info(session, row.id)
        assert info is not None
        candidates.append(info)
    candidates.sort(key=lambda r: (likeness(r, closed), title_rank(r)))
    return tuple(r.id for r in candidates)


async def plan_resource_closure(session: AsyncSession, centre: Centre, now: dt.datetime, *,
                                resource_id: int, starts_at: dt.datetime,
                                ends_at: dt.datetime) -> ResourceClosurePlan:
    """The bookings a resource's closure touches, which get late notice, who could substitute.

    Raises:
        BookingRefused: BAD_RANGE when the period ends before it starts or is already over.
    """
    if ends_at <= starts_at or ends_at <= now:
        raise BookingRefused(Refusal.BAD_RANGE, starts_at=starts_at, ends_at=ends_at)
    appointments = (await session.scalars(select(Appointment).where(
        Appointment.resource_id == resource_id, Appointment.status == AppointmentStatus.BOOKED,
        Appointment.starts_at < ends_at, Appointment.ends_at > starts_at,
        Appointment.starts_at > now).order_by(Appointment.starts_at, Appointment.id))).all()
    return ResourceClosurePlan([
        Affected(a, closure_notice_is_late(a.starts_at, now, centre.rules),
                 await substitutes_for(session, a, resource_id)) for a in appointments])


def answer_deadline(centre: Centre, now: dt.datetime, starts_at: dt.datetime) -> dt.datetime:
    """Until when a patient may answer an offer: the setting's hours, never after the start."""
    return min(now + dt.timedelta(hours=centre.rules.closure_answer_hours), starts_at)


async def apply_resource_closure(session: AsyncSession, centre: Centre, now: dt.datetime, *,
                                 resource_id: int, starts_at: dt.datetime, ends_at: dt.datetime,
                                 reason: str, actor: str,
                                 decisions: Mapping[int, Decision]) -> Closure:
    """Close one resource for a period and handle each affected booking as staff decided
    (by appointment id; a booking without a decision, or with a substitute who may not take
    it, is cancelled; a 换诊 with no free time to offer is cancelled too).

    Raises:
        BookingRefused: BAD_RANGE, REASON_REQUIRED.
    """
    if not reason or not reason.strip():
        raise BookingRefused(Refusal.REASON_REQUIRED)
    plan = await plan_resource_closure(session, centre, now, resource_id=resource_id,
                                       starts_at=starts_at, ends_at=ends_at)
    closure = Closure(resource_id=resource_id, starts_at=starts_at, ends_at=ends_at,
                      reason=reason.strip(), created_by=actor, created_at=now,
                      affected=len(plan.affected), late_notices=plan.late)
    session.add(closure)
    await session.flush()
    await audit(session, now, actor, "closure", "closure", closure.id, resource=resource_id,
                starts_at=starts_at.isoformat(), ends_at=ends_at.isoformat(),
                affected=closure.affected, late=closure.late_notices)
    for item in plan.affected:
        appointment = item.appointment
        await session.refresh(appointment, with_for_update=True)
        if appointment.status != AppointmentStatus.BOOKED:
            continue
        decision = decisions.get(appointment.id, Decision(Way.CANCEL))
        payload = {"closure": closure.id, "reason": closure.reason, "late": item.late,
                   "resource": resource_id}
        if decision.way == Way.SUBSTITUTE and decision.substitute in item.substitutes:
            await _offer_substitute(session, centre, now, closure, appointment, decision.substitute,
                                    payload, actor)
        elif decision.way == Way.MOVE and await _offer_move(session, centre, now, closure, appointment,
                                                          payload, actor):
            pass
        else:
            await cancel_for_closure(session, centre, now, closure, appointment, actor,
                                     late=item.late)
    slots = select(Slot.id).where(Slot.resource_id == resource_id, Slot.starts_at < ends_at,
                                  Slot.ends_at > starts_at)
    gone = (await session.execute(delete(Hold).where(Hold.slot_id.in_(slots))
                                  .returning(Hold.slot_id))).all()
    for (slot,) in gone:
        await release_seat(session, slot, held=True)
    return closure


async def _offer_substitute(session: AsyncSession, centre: Centre, now: dt.datetime,
                            closure: Closure, appointment: Appointment, substitute: int,
                            payload: dict[str, object], actor: str) -> None:
    offer = ClosureOffer(closure_id=closure.id, appointment_id=appointment.id, kind=Way.SUBSTITUTE.value,
                         from_resource_id=appointment.resource_id, substitute_id=substitute,
                         slot_ids=[], status="pending",
                         deadline=answer_deadline(centre, now, appointment.starts_at), created_at=now)
    session.add(offer)
    appointment.resource_id, appointment.updated_at = substitute, now
    await session.flush()
    await audit(session, now, actor, "substitute", "appointment", appointment.id,
                closure=closure.id, substitute=substitute, offer=offer.id)
    body = {**payload, "offer": offer.id, "substitute": substitute,
            "deadline": offer.deadline.isoformat()}
    key = f"closure:{closure.id}:{appointment.id}"
    if appointment.identity_id is not None:
        await enqueue(session, kind="closure_substitute", now=now, identity_id=appointment.identity_id,
                      appointment_id=appointment.id, dedup_key=key, payload=body)
    # No chat account (a window or phone booking): the 替诊 goes by SMS, answered by reply.
    await notice_by_sms(session, centre, now, kind="closure_substitute", person_id=appointment.person_id,
                        account_id=appointment.identity_id, appointment_id=appointment.id,
                        dedup_key=key, payload=body, expires_at=offer.deadline)


async def _offer_move(session: AsyncSession, centre: Centre, now: dt.datetime, closure: Closure,
                      appointment: Appointment, payload: dict[str, object], actor: str) -> bool:
    """Offer the nearest free times; False when there is none, or no way to ask the patient
    (then it is cancelled). By SMS the nearest time with a free seat is offered and its seat
    held for them until the deadline."""
    service = await session.get(Service, appointment.service_id)
    assert service is not None and closure.resource_id is not None
    by_sms = sms_planned(centre, "closure_move", account_id=appointment.identity_id)
    if appointment.identity_id is None and not by_sms:
        return False
    deadline = answer_deadline(centre, now, appointment.starts_at)
    choices = await nearest_of_resource(session, centre, service, closure.resource_id, now,
                                        limit=MOVE_CHOICES)
    # A text offers one time, held for the answer: the nearest that starts after the deadline,
    # read as such (however many free times come before it). Kept with the chat notice too,
    # for a text if the chat cannot deliver it.
    later = [c.slot_id for c in await nearest_of_resource(
        session, centre, service, closure.resource_id, now, limit=MOVE_CHOICES, after=deadline)]
    if not choices or (appointment.identity_id is None and not later):
        return False
    offer = ClosureOffer(closure_id=closure.id, appointment_id=appointment.id, kind=Way.MOVE.value,
                         from_resource_id=closure.resource_id, substitute_id=None,
                         slot_ids=[] if appointment.identity_id is None else [c.slot_id for c in choices],
                         status="pending", deadline=deadline, created_at=now)
    session.add(offer)
    await session.flush()
    held = await hold_closure_seat(session, offer, now, later) if by_sms else None
    if by_sms and held is None and appointment.identity_id is None:
        await session.delete(offer)
        await session.flush()
        return False
    await drop_pending(session, appointment.id, (REMINDER,), "closure")
    await audit(session, now, actor, "move_offered", "appointment", appointment.id,
                closure=closure.id, offer=offer.id, slots=offer.slot_ids, held=held)
    body = {**payload, "offer": offer.id, "deadline": offer.deadline.isoformat(), "later": later}
    key = f"closure:{closure.id}:{appointment.id}"
    if appointment.identity_id is not None:
        await enqueue(session, kind="closure_move", now=now, identity_id=appointment.identity_id,
                      appointment_id=appointment.id, dedup_key=key, payload=body)
    if held is not None:
        await notice_by_sms(session, centre, now, kind="closure_move", person_id=appointment.person_id,
                            account_id=appointment.identity_id, appointment_id=appointment.id,
                            dedup_key=key, payload=body, expires_at=offer.deadline)
    return True


async def cancel_for_closure(session: AsyncSession, centre: Centre, now: dt.datetime,
                             closure: Closure, appointment: Appointment, actor: str, *,
                             late: bool, notify: bool = True) -> None:
    """Cancel a booking for the closure: no strike, the seat back, an apology and a way to
    rebook (unless the patient cancelled it themselves in the chat, ``notify=False``)."""
    appointment.status, appointment.cancelled_at = AppointmentStatus.CANCELLED, now
    appointment.cancel_kind, appointment.cancel_reason = CancelKind.CENTRE, closure.reason
    appointment.updated_at = now
    await release_seat(session, appointment.slot_id, offline=appointment.offline)
    await drop_pending(session, appointment.id, (REMINDER, "booking_confirmed"), "closure")
    await audit(session, now, actor, "cancel", "appointment", appointment.id, kind="centre",
                closure=closure.id, late_notice=late)
    if not notify:
        return
    payload = {"closure": closure.id, "reason": closure.reason, "late": late}
    key = f"closure:{closure.id}:{appointment.id}:cancel"
    if appointment.identity_id is not None:
        await enqueue(session, kind="closure_cancelled", now=now, identity_id=appointment.identity_id,
                      appointment_id=appointment.id, dedup_key=key, payload=payload)
    await notice_by_sms(session, centre, now, kind="closure_cancelled", person_id=appointment.person_id,
                        account_id=appointment.identity_id, appointment_id=appointment.id,
                        dedup_key=key, payload=payload)


# --- the patient's answer -----------------------------------------------------------------------


class OfferGone(Exception):
    """The offer was answered already, its deadline passed, or it is not this account's."""


class TimeGone(Exception):
    """The time picked for a 换诊 has no free seat any more (the others are still offered)."""


@dataclass(frozen=True)
class OfferView:
    offer: ClosureOffer
    appointment: Appointment
    closure: Closure


async def open_offer(session: AsyncSession, now: dt.datetime, offer_id: int,
                     account_id: int | None, *, person_id: int | None = None,
                     lock: bool = False) -> OfferView:
    """An offer still waiting for this account's answer (or, answered by SMS, the answer of
    the person ``person_id`` whose mobile replied).

    Raises:
        OfferGone: answered, past its deadline, or not this account's (person's).
    """
    query = select(ClosureOffer).where(ClosureOffer.id == offer_id)
    # Locked, the row as it is now (an answer by SMS looked at it before it locked it).
    locked = query.with_for_update().execution_options(populate_existing=True)
    offer = await session.scalar(locked if lock else query)
    if offer is None or offer.status != "pending" or offer.deadline <= now:
        raise OfferGone
    if account_id is not None:
        appointment = await appointment_for(session, account_id=account_id,
                                            appointment_id=offer.appointment_id, lock=lock)
    else:
        mine = select(Appointment).where(Appointment.id == offer.appointment_id,
                                         Appointment.person_id == person_id)
        appointment = await session.scalar(mine.with_for_update() if lock else mine)
    closure = await session.get(Closure, offer.closure_id)
    if appointment is None or closure is None or appointment.status != AppointmentStatus.BOOKED:
        raise OfferGone
    return OfferView(offer, appointment, closure)


async def answer_substitute(session: AsyncSession, centre: Centre, now: dt.datetime, *,
                            offer_id: int, account_id: int | None, accept: bool, actor: str,
                            person_id: int | None = None) -> OfferView:
    """Accept the 替诊, or cancel the booking without a strike (in the chat: ``account_id``;
    by SMS reply: ``person_id``).

    Raises:
        OfferGone: see ``open_offer``.
    """
    view = await open_offer(session, now, offer_id, account_id, person_id=person_id, lock=True)
    if view.offer.kind != Way.SUBSTITUTE.value:
        raise OfferGone
    view.offer.status, view.offer.decided_at = ("accepted" if accept else "declined"), now
    if not accept:
        await cancel_for_closure(session, centre, now, view.closure, view.appointment, actor,
                                 late=False, notify=False)
    await audit(session, now, actor, "substitute_" + view.offer.status, "appointment",
                view.appointment.id, offer=view.offer.id)
    return view


async def _slot_closed(session: AsyncSession, slot: Slot) -> bool:
    """Whether a closure (of its doctor or window, its service, department or the centre)
    covers the slot now: a time offered before it was closed is not taken."""
    service = await session.get(Service, slot.service_id)
    assert service is not None
    resource = slot.resource_id if slot.resource_id is not None else -1     # matches no closure
    return await session.scalar(select(Closure.id).where(closure_covers(
        service.id, service.department_id, slot.starts_at, slot.ends_at, resource)).limit(1)) is not None


async def answer_move(session: AsyncSession, centre: Centre, now: dt.datetime, *, offer_id: int,
                      account_id: int | None, slot_id: int | None, actor: str,
                      person_id: int | None = None) -> OfferView:
    """Move the booking to one of the offered times (``slot_id``), or cancel it without a
    strike (``slot_id`` None); in the chat (``account_id``) or by SMS reply (``person_id``).
    A seat held for the offer (by SMS) becomes the booking when its time is chosen, and is
    given back once another time is booked (never before: a time gone keeps it).

    Raises:
        OfferGone: see ``open_offer``, or a time that was not offered.
        TimeGone: that time has no free seat any more, or is closed now (停诊 since).
    """
    view = await open_offer(session, now, offer_id, account_id, person_id=person_id, lock=True)
    offer, appointment = view.offer, view.appointment
    if offer.kind != Way.MOVE.value:
        raise OfferGone
    if slot_id is None:
        await release_closure_hold(session, offer.id)
        offer.status, offer.decided_at = "cancelled", now
        await cancel_for_closure(session, centre, now, view.closure, appointment, actor,
                                 late=False, notify=False)
        await audit(session, now, actor, "move_cancelled", "appointment", appointment.id, offer=offer.id)
        return view
    if slot_id not in offer.slot_ids:
        raise OfferGone
    new = await session.get(Slot, slot_id, with_for_update=True)
    if new is None or new.starts_at <= now or await _slot_closed(session, new):
        raise TimeGone
    # The held seat (by SMS) becomes the booking when it is the time chosen; any other time
    # needs a free seat, and the hold is given back only once the move has its seat (a time
    # just taken leaves the held one for the next answer).
    if not await book_held_seat(session, offer.id, slot_id):
        if not await take_online_seat(session, slot_id, "booked"):
            raise TimeGone
        await release_closure_hold(session, offer.id)
    await release_seat(session, appointment.slot_id, offline=appointment.offline)
    await drop_pending(session, appointment.id, (REMINDER,), "rescheduled")
    old_slot = appointment.slot_id
    appointment.offline = False
    appointment.slot_id, appointment.local_date = new.id, new.local_date
    appointment.starts_at, appointment.ends_at = new.starts_at, new.ends_at
    appointment.resource_id, appointment.updated_at = new.resource_id, now
    offer.status, offer.decided_at = "moved", now
    await session.flush()
    await audit(session, now, actor, "move_chosen", "appointment", appointment.id, offer=offer.id,
                from_slot=old_slot, to_slot=new.id)
    await schedule_reminders(session, centre, now, appointment)
    return view


async def settle_offers(session: AsyncSession, centre: Centre, now: dt.datetime) -> int:
    """Offers whose deadline passed without an answer: a 替诊 stands (accepted); a 换诊 is
    cancelled without a strike, with an apology and a way to rebook. Returns how many."""
    # Locked, as they are now: an answer at the deadline that holds an offer's row is left to
    # finish (skip_locked: PostgreSQL; SQLite has one writer), and one that finished first
    # has moved it on (populate_existing: not the copy read before).
    offers = (await session.scalars(select(ClosureOffer).where(
        ClosureOffer.status == "pending", ClosureOffer.deadline <= now)
        .order_by(ClosureOffer.id).limit(500).with_for_update(skip_locked=True)
        .execution_options(populate_existing=True))).all()
    offers = [offer for offer in offers if offer.status == "pending"]
    for offer in offers:
        offer.status, offer.decided_at = "defaulted", now
        await release_closure_hold(session, offer.id)
        appointment = await session.get(Appointment, offer.appointment_id, with_for_update=True)
        closure = await session.get(Closure, offer.closure_id)
        if appointment is None or closure is None:
            continue
        if offer.kind == Way.MOVE.value and appointment.status == AppointmentStatus.BOOKED:
            await cancel_for_closure(session, centre, now, closure, appointment, "system",
                                     late=closure_notice_is_late(appointment.starts_at, now, centre.rules))
        await audit(session, now, "system", f"{offer.kind}_defaulted", "appointment",
                    offer.appointment_id, offer=offer.id)
    await session.flush()
    return len(offers)


async def upcoming_closures(session: AsyncSession, now: dt.datetime, resource_id: int,
                            limit: int = 10) -> list[Closure]:
    """A resource's closures not over yet (停诊查询), soonest first."""
    return list((await session.scalars(select(Closure).where(
        Closure.resource_id == resource_id, Closure.ends_at > now)
        .order_by(Closure.starts_at).limit(limit))).all())


@dataclass(frozen=True)
class WaitingOffer:
    """An offer waiting for the patient's answer: its notice kind, id, booking, and the
    closure's reason (a /move has none)."""

    kind: str
    offer_id: int
    appointment_id: int
    reason: str = ""


async def waiting_offers(session: AsyncSession, now: dt.datetime,
                         appointment_ids: list[int]) -> list[WaitingOffer]:
    """The offers (替诊, 换诊, a staff /move) still waiting for an answer on these bookings:
    “我的预约” shows them again with their buttons, for a citizen whose notice came as a
    WeChat template (the chat window was closed)."""
    if not appointment_ids:
        return []
    found = [WaitingOffer("closure_substitute" if offer.kind == Way.SUBSTITUTE.value
                          else "closure_move", offer.id, offer.appointment_id, reason)
             for offer, reason in (await session.execute(
                 select(ClosureOffer, Closure.reason).join(Closure, Closure.id == ClosureOffer.closure_id)
                 .where(ClosureOffer.appointment_id.in_(appointment_ids),
                        ClosureOffer.status == "pending", ClosureOffer.deadline > now)
                 .order_by(ClosureOffer.id))).all()]
    found += [WaitingOffer("move_offer", offer.id, offer.appointment_id)
              for offer in (await session.scalars(select(MoveOffer).where(
                  MoveOffer.appointment_id.in_(appointment_ids),
                  MoveOffer.status == MoveStatus.OFFERED, MoveOffer.expires_at > now)
                  .order_by(MoveOffer.id))).all()]
    return found
