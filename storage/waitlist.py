"""The waitlist: citizens told when a seat frees up (held for them a while) or when a day is
released; and the sweep of holds that ran out, whose seats pass to the next one waiting.
Nothing here commits."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.centre import Centre
from storage.models import ChannelIdentity, Hold, Slot, WaitKind, WaitlistEntry, WaitStatus
from storage.outbox import enqueue
from storage.refusals import BookingRefused, Refusal
from storage.seats import owner_key, release_seat, slot_info, take_online_seat


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
    if (waiting or 0) >= centre.rules.waitlist_size:
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
        await release_seat(session, slot, held=True)
        await offer_freed_seat(session, centre, now, slot)
    return True


async def offer_freed_seat(session: AsyncSession, centre: Centre, now: dt.datetime,
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
    if entry is None or not await take_online_seat(session, slot_id, "held"):
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


async def expire_holds(session: AsyncSession, centre: Centre, now: dt.datetime,
                       slot_id: int | None = None) -> int:
    """Give back the seats of holds that ran out, of one slot or of all (the scheduler's sweep,
    every minute); waitlist offers that ran out pass to the next citizen waiting.

    Returns:
        How many holds were released.
    """
    condition = Hold.expires_at <= now
    if slot_id is not None:
        condition = and_(condition, Hold.slot_id == slot_id)
    gone = (await session.execute(delete(Hold).where(condition)
                                  .returning(Hold.slot_id, Hold.waitlist_id))).all()
    for slot, waitlist_id in gone:
        await release_seat(session, slot, held=True)
        if waitlist_id is not None:
            await session.execute(update(WaitlistEntry).where(WaitlistEntry.id == waitlist_id)
                                  .values(status=WaitStatus.EXPIRED, updated_at=now))
            await offer_freed_seat(session, centre, now, slot)
    return len(gone)


async def waiting_entries(session: AsyncSession, identity_id: int) -> list[WaitlistEntry]:
    """The places an account is waiting for (or has been offered), by day."""
    return list((await session.scalars(select(WaitlistEntry).where(
        WaitlistEntry.identity_id == identity_id,
        WaitlistEntry.status.in_([WaitStatus.WAITING, WaitStatus.OFFERED]))
        .order_by(WaitlistEntry.local_date))).all())
