"""The seat held for a 换诊 offered by SMS. A text can name one time only, and "reply 1 to
accept" must not find that time gone, so when a 换诊 goes by SMS (the patient has no chat
account, or the chat could not deliver it) one seat of the nearest offered time is held for the
offer: a ``Hold`` of that slot (the nearest free time that starts after the deadline, so it is
still ahead whenever they answer) (counted in ``slot.held``) whose owner is ``closure:<offer id>``
and which expires at the offer's deadline. Taking the held time turns it into the booked seat;
another time booked, a cancel, the deadline passing or the sweep of run out holds gives it
back (a time picked but just taken keeps it). A 换诊 answered only in the chat holds nothing
(it offers several times and a time just taken offers the others). Nothing here commits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ClosureOffer, Hold, Slot
from storage.seats import release_seat, take_online_seat


def closure_owner(offer_id: int) -> str:
    """The owner of the seat held for a 换诊 offered by SMS."""
    return f"closure:{offer_id}"


async def held_slot(session: AsyncSession, offer_id: int) -> int | None:
    """The slot whose seat is held for the offer, if one is."""
    return await session.scalar(select(Hold.slot_id).where(Hold.owner == closure_owner(offer_id))
                                .order_by(Hold.id).limit(1))


async def hold_closure_seat(session: AsyncSession, offer: ClosureOffer, now: dt.datetime,
                            candidates: Sequence[int]) -> int | None:
    """Hold one seat of the first of ``candidates`` (nearest first) that starts after the
    offer's deadline and has a free seat, until the deadline (the one already held, if any).
    A text offers that one time, so it must still be ahead whenever the patient answers; it
    joins the offer's times, so the answer may take it.

    Returns:
        The slot held, or None when no candidate has a free seat left.
    """
    already = await held_slot(session, offer.id)
    if already is not None:
        return already
    for slot_id in candidates:
        slot = await session.get(Slot, slot_id)
        if slot is None or slot.starts_at <= max(now, offer.deadline):
            continue
        if await take_online_seat(session, slot_id, "held"):
            session.add(Hold(slot_id=slot_id, owner=closure_owner(offer.id),
                             expires_at=offer.deadline, created_at=now))
            if slot_id not in offer.slot_ids:
                offer.slot_ids = [*offer.slot_ids, slot_id]
            await session.flush()
            return slot_id
    return None


async def book_held_seat(session: AsyncSession, offer_id: int, slot_id: int) -> bool:
    """Turn the seat held for the offer into the booked seat, when ``slot_id`` is the time it
    holds; False when it holds none there."""
    gone = (await session.execute(delete(Hold).where(Hold.owner == closure_owner(offer_id),
                                                     Hold.slot_id == slot_id)
                                  .returning(Hold.id))).all()
    if not gone:
        return False
    await session.execute(update(Slot).where(Slot.id == slot_id)
                          .values(held=Slot.held - len(gone), booked=Slot.booked + 1)
                          .execution_options(synchronize_session=False))
    return True


async def release_closure_hold(session: AsyncSession, offer_id: int) -> bool:
    """Give back the seat held for the offer; False when none was (or it was swept)."""
    gone = (await session.execute(delete(Hold).where(Hold.owner == closure_owner(offer_id))
                                  .returning(Hold.slot_id))).all()
    for (slot,) in gone:
        await release_seat(session, slot, held=True)
    return bool(gone)
