"""The open offers to move a booking (/move) and the seats held for them: what booking,
closures and the offer itself use to let an offer go. The offer's rules live in storage.control.
Nothing here commits.

While an offer is open its new seat is held like a citizen's pick: a ``Hold`` row of the new
slot (counted in ``slot.held``) whose owner is ``move:<offer id>`` and which expires at the
offer's deadline. Accepting turns that hold into the booked seat; declining, the deadline
passing, or the booking being cancelled first gives it back.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.audit import audit
from storage.models import ClosureOffer, Hold, MoveOffer, MoveStatus
from storage.offer_holds import closure_owner, release_closure_hold
from storage.outbox import STAFF_TARGET, enqueue
from storage.seats import release_seat


def move_owner(offer_id: int) -> str:
    """The owner of the seat held for an offer."""
    return f"move:{offer_id}"


async def release_move_hold(session: AsyncSession, offer: MoveOffer) -> bool:
    """Give back the seat held for an offer; False when it was already swept."""
    gone = (await session.execute(delete(Hold).where(Hold.owner == move_owner(offer.id))
                                  .returning(Hold.slot_id))).all()
    for (slot,) in gone:
        await release_seat(session, slot, held=True)
    return bool(gone)


async def tell_staff(session: AsyncSession, now: dt.datetime, offer: MoveOffer, *,
                     by_sms: bool = False) -> None:
    """Tell the staff group how an offer ended (accepted, declined, lapsed, withdrawn), and
    whether the citizen answered by SMS reply."""
    await enqueue(session, kind="move_answered", now=now, target=STAFF_TARGET,
                  appointment_id=offer.appointment_id, dedup_key=f"move_answered:{offer.id}",
                  payload={"offer": offer.id, "status": offer.status.value,
                           "by": offer.offered_by, **({"by_sms": True} if by_sms else {})})


async def close_offer(session: AsyncSession, now: dt.datetime, offer: MoveOffer,
                      status: MoveStatus, *, actor: str, by_sms: bool = False) -> None:
    """End an open offer without moving the booking: its seat is given back, staff are told,
    and it is audited."""
    await release_move_hold(session, offer)
    offer.status, offer.decided_at = status, now
    await audit(session, now, actor, f"move_{status.value}", "appointment", offer.appointment_id,
                offer=offer.id, to_slot=offer.slot_id)
    await tell_staff(session, now, offer, by_sms=by_sms)


async def open_offers(session: AsyncSession, appointment_id: int, *,
                      lock: bool = False) -> list[MoveOffer]:
    """The offers of a booking still waiting for the citizen."""
    query = select(MoveOffer).where(MoveOffer.appointment_id == appointment_id,
                                    MoveOffer.status == MoveStatus.OFFERED)
    return list((await session.scalars(query.with_for_update() if lock else query)).all())


async def withdraw_offers(session: AsyncSession, now: dt.datetime, appointment_id: int, *,
                          actor: str, keep_owner: str | None = None) -> int:
    """The booking was cancelled or changed: its open offers (a staff /move, a 替诊 or 换诊
    after a 停诊) end and their seats go back (except the offer whose seat is ``keep_owner``:
    the one being accepted). Called with the
    appointment row locked, so an answer to an offer waits for this."""
    offers = [offer for offer in await open_offers(session, appointment_id, lock=True)
              if move_owner(offer.id) != keep_owner]
    for offer in offers:
        await close_offer(session, now, offer, MoveStatus.WITHDRAWN, actor=actor)
    return len(offers) + await _withdraw_closure_offers(session, now, appointment_id, actor=actor,
                                                        keep_owner=keep_owner)


async def _withdraw_closure_offers(session: AsyncSession, now: dt.datetime, appointment_id: int,
                                   *, actor: str, keep_owner: str | None) -> int:
    """The booking's waiting 替诊/换诊 offers end too, and the seat held for a 换诊 by SMS goes
    back (a later reply to their text then finds nothing to answer). An offer whose answer is
    being written right now is skipped rather than waited for (skip_locked, PostgreSQL: the
    answer locks the offer, then the booking, the reverse of this order); that answer then
    finds the booking cancelled and changes nothing, and the deadline sweep ends the offer."""
    offers = (await session.scalars(select(ClosureOffer).where(
        ClosureOffer.appointment_id == appointment_id, ClosureOffer.status == "pending")
        .with_for_update(skip_locked=True).execution_options(populate_existing=True))).all()
    withdrawn = 0
    for offer in offers:
        if offer.status != "pending" or closure_owner(offer.id) == keep_owner:
            continue
        offer.status, offer.decided_at = "withdrawn", now
        await release_closure_hold(session, offer.id)
        await audit(session, now, actor, "closure_offer_withdrawn", "appointment", appointment_id,
                    offer=offer.id, kind=offer.kind)
        withdrawn += 1
    return withdrawn
