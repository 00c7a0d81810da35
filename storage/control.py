"""Staff control of one booking: cancel it for the citizen (no strike, with a reason and an
apology), and move it to another slot with the citizen's consent. Each goes through the booking
rules of storage.booking and is audited. Nothing here commits.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.audit import SYSTEM, audit
from storage.booking import ChangeResult, appointment_by_code, cancel, reschedule
from storage.centre import Centre
from storage.models import Appointment, AppointmentStatus, Hold, MoveOffer, MoveStatus
from storage.move_offers import close_offer, move_owner, open_offers, tell_staff
from storage.outbox import enqueue
from storage.refusals import BookingRefused
from storage.seats import slot_info, take_online_seat
from storage.slots import active_closures, is_closed
from storage.sms import notice_by_sms, sms_planned
from storage.waitlist import expire_holds


class ControlRefusal(enum.StrEnum):
    UNKNOWN_CODE = "unknown_code"
    PAST = "past"
    NOT_BOOKED = "not_booked"
    REASON_REQUIRED = "reason_required"
    OFFER_OPEN = "offer_open"          # a move is already waiting for the citizen's answer
    NO_CHAT = "no_chat"                # no chat account to answer an offer on, and no SMS for it
    SAME_SLOT = "same_slot"
    SLOT_GONE = "slot_gone"            # the new slot has started, is closed, or is another service's
    FULL = "full"
    OFFER_GONE = "offer_gone"          # answered, lapsed or withdrawn already
    NOT_YOURS = "not_yours"            # an answer from an account the offer was not sent to


class ControlRefused(Exception):
    """What staff asked of one booking the rules refuse; ``details`` hold the facts a message
    needs (the code, the status)."""

    def __init__(self, reason: ControlRefusal, **details: Any) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.details = details


async def staff_cancel(session: AsyncSession, centre: Centre, now: dt.datetime, code: str, *,
                       actor: str, reason: str) -> ChangeResult:
    """Cancel a booking for its citizen: no strike, the seat goes back (to the waitlist first),
    the citizen is told the reason with an apology and a way to rebook, and it is audited.

    Raises:
        ControlRefused: UNKNOWN_CODE, REASON_REQUIRED, PAST (it has started), NOT_BOOKED
            (cancelled, checked in, done or a no-show already; ``status``).
    """
    try:
        appointment = await appointment_by_code(session, code, lock=True)
    except BookingRefused:
        raise ControlRefused(ControlRefusal.UNKNOWN_CODE, code=code.strip().upper()) from None
    if not reason.strip():
        raise ControlRefused(ControlRefusal.REASON_REQUIRED, code=appointment.code)
    if appointment.status != AppointmentStatus.BOOKED:
        raise ControlRefused(ControlRefusal.NOT_BOOKED, code=appointment.code,
                             status=appointment.status)
    if appointment.starts_at <= now:
        raise ControlRefused(ControlRefusal.PAST, code=appointment.code,
                             starts_at=appointment.starts_at)
    return await cancel(session, centre, now, appointment.id, actor=actor, by_staff=True,
                        reason=reason.strip(), notify=True)


# --- moving with the citizen's consent (/move) ----------------------------------------------


async def movable(session: AsyncSession, now: dt.datetime, code: str, *,
                  lock: bool = False, centre: Centre | None = None) -> Appointment:
    """The booking staff may offer to move: booked, not started, reachable in a chat (or, with
    ``centre``, by SMS when its policy sends ``move_offer`` texts: docs/sms.md), and with no
    other offer waiting.

    Raises:
        ControlRefused: UNKNOWN_CODE, NOT_BOOKED, PAST, NO_CHAT, OFFER_OPEN (``expires_at``).
    """
    try:
        appointment = await appointment_by_code(session, code, lock=lock)
    except BookingRefused:
        raise ControlRefused(ControlRefusal.UNKNOWN_CODE, code=code.strip().upper()) from None
    if appointment.status != AppointmentStatus.BOOKED:
        raise ControlRefused(ControlRefusal.NOT_BOOKED, code=appointment.code,
                             status=appointment.status)
    if appointment.starts_at <= now:
        raise ControlRefused(ControlRefusal.PAST, code=appointment.code,
                             starts_at=appointment.starts_at)
    if appointment.identity_id is None and not (
            centre is not None and sms_planned(centre, "move_offer", account_id=None)):
        raise ControlRefused(ControlRefusal.NO_CHAT, code=appointment.code)
    pending = await open_offers(session, appointment.id)
    if pending:
        raise ControlRefused(ControlRefusal.OFFER_OPEN, code=appointment.code,
                             expires_at=pending[0].expires_at)
    return appointment


def offer_deadline(now: dt.datetime, hours: int, *starts: dt.datetime) -> dt.datetime:
    """When an offer lapses: ``hours`` from now, but never after either slot starts."""
    return min(now + dt.timedelta(hours=hours), *starts)


async def offer_move(session: AsyncSession, centre: Centre, now: dt.datetime, code: str,
                     slot_id: int, *, actor: str) -> MoveOffer:
    """Offer the citizen to move their booking to ``slot_id``. Nothing about the booking
    changes; one online seat of the new slot is held for the offer until its deadline
    (``rules.move_answer_hours``, never past either start), and the citizen is asked to accept
    or decline: in the chat, or by SMS when the citizen has no chat account (they answer by
    replying 1 or 2, storage.sms_answers). Audited.

    Raises:
        ControlRefused: those of ``movable``; SAME_SLOT; SLOT_GONE (started, closed, another
            service or no such slot); FULL.
    """
    appointment = await movable(session, now, code, lock=True, centre=centre)
    if slot_id == appointment.slot_id:
        raise ControlRefused(ControlRefusal.SAME_SLOT, code=appointment.code)
    try:
        info = await slot_info(session, slot_id)
    except BookingRefused:
        raise ControlRefused(ControlRefusal.SLOT_GONE, code=appointment.code) from None
    closures = await active_closures(session, info.service, info.slot.starts_at,
                                     info.slot.ends_at)
    if info.service.id != appointment.service_id or info.slot.starts_at <= now \
            or is_closed(closures, info.slot.starts_at, info.slot.ends_at):
        raise ControlRefused(ControlRefusal.SLOT_GONE, code=appointment.code)
    if info.slot.held:
        await expire_holds(session, centre, now, slot_id)
    if not await take_online_seat(session, slot_id, "held"):
        raise ControlRefused(ControlRefusal.FULL, code=appointment.code)
    expires = offer_deadline(now, centre.rules.move_answer_hours, appointment.starts_at,
                             info.slot.starts_at)
    offer = MoveOffer(appointment_id=appointment.id, slot_id=slot_id, status=MoveStatus.OFFERED,
                      offered_by=actor, expires_at=expires, created_at=now)
    session.add(offer)
    await session.flush()
    session.add(Hold(slot_id=slot_id, owner=move_owner(offer.id), expires_at=expires,
                     created_at=now))
    await audit(session, now, actor, "move_offered", "appointment", appointment.id,
                offer=offer.id, from_slot=appointment.slot_id, to_slot=slot_id,
                expires_at=expires.isoformat())
    payload = {"offer": offer.id, "slot": slot_id, "expires_at": expires.isoformat()}
    if appointment.identity_id is not None:
        await enqueue(session, kind="move_offer", now=now, identity_id=appointment.identity_id,
                      appointment_id=appointment.id, dedup_key=f"move:{offer.id}",
                      expires_at=expires, payload=payload)
    await notice_by_sms(session, centre, now, kind="move_offer", person_id=appointment.person_id,
                        account_id=appointment.identity_id, appointment_id=appointment.id,
                        dedup_key=f"move:{offer.id}", payload=payload, expires_at=expires)
    await session.flush()
    return offer


async def answer_move(session: AsyncSession, centre: Centre, now: dt.datetime, offer_id: int, *,
                      accept: bool, identity_id: int | None, actor: str,
                      person_id: int | None = None) -> MoveOffer:
    """The citizen's answer to a move offer: accepting moves the booking onto the held seat
    (no cutoff, no strike); declining leaves it exactly as it was and frees the held seat.
    Staff are told either way. In the chat the answer is the account's (``identity_id``); by
    SMS reply, the person's whose mobile replied (``person_id``). The appointment row is
    locked before the offer, in the same order as a cancel, so a cancel and an answer at once
    end one after the other: whichever comes second finds the other's result.

    Raises:
        ControlRefused: OFFER_GONE (``status``: answered, lapsed or withdrawn; or the booking
            could no longer be moved, in which case the offer is withdrawn), NOT_YOURS.
    """
    found = await session.get(MoveOffer, offer_id)
    if found is None:
        raise ControlRefused(ControlRefusal.OFFER_GONE, status=None)
    appointment = await session.scalar(select(Appointment).where(
        Appointment.id == found.appointment_id).with_for_update())
    offer = await session.scalar(select(MoveOffer).where(MoveOffer.id == offer_id)
                                 .with_for_update().execution_options(populate_existing=True))
    assert appointment is not None and offer is not None  # foreign key; offers are never deleted
    if (appointment.person_id != person_id) if identity_id is None \
            else (appointment.identity_id != identity_id):
        raise ControlRefused(ControlRefusal.NOT_YOURS)
    if offer.status != MoveStatus.OFFERED:
        raise ControlRefused(ControlRefusal.OFFER_GONE, status=offer.status)
    if offer.expires_at <= now:
        await close_offer(session, now, offer, MoveStatus.LAPSED, actor=SYSTEM)
        raise ControlRefused(ControlRefusal.OFFER_GONE, status=offer.status)
    if not accept:
        await close_offer(session, now, offer, MoveStatus.DECLINED, actor=actor,
                          by_sms=identity_id is None)
        return offer
    try:
        await reschedule(session, centre, now, appointment.id, offer.slot_id, actor=actor,
                         owner=move_owner(offer.id), by_staff=True)
    except BookingRefused:
        await close_offer(session, now, offer, MoveStatus.WITHDRAWN, actor=SYSTEM)
        raise ControlRefused(ControlRefusal.OFFER_GONE, status=offer.status) from None
    offer.status, offer.decided_at = MoveStatus.ACCEPTED, now
    await audit(session, now, actor, "move_accepted", "appointment", appointment.id,
                offer=offer.id, to_slot=offer.slot_id)
    await tell_staff(session, now, offer, by_sms=identity_id is None)
    return offer


async def lapse_move_offers(session: AsyncSession, now: dt.datetime) -> int:
    """The scheduler's sweep: offers unanswered by their deadline lapse, their held seats go
    back, the booking stays as it was, and staff are told.

    Returns:
        How many offers lapsed.
    """
    due = (await session.scalars(select(MoveOffer).where(
        MoveOffer.status == MoveStatus.OFFERED, MoveOffer.expires_at <= now)
        .with_for_update(skip_locked=True))).all()   # skip_locked: PostgreSQL; SQLite ignores it
    for offer in due:
        await close_offer(session, now, offer, MoveStatus.LAPSED, actor=SYSTEM)
    return len(due)
