"""Seats of a slot: the online seats a chat can take or hold, the seats kept for the window
(walk-ins and phone callers), and the nearest free alternatives.

Seats are taken with a conditional UPDATE (``booked + held < online_capacity``). On PostgreSQL
the row lock it takes makes concurrent bookers wait and re-check the condition on the newest row
version, so the slot can never be overbooked, and no lock is held longer than the transaction.
On SQLite writers are serialised by BEGIN IMMEDIATE. A CHECK constraint on the slot is the
backstop on both. Nothing here commits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.catalog import ServiceDef
from storage.centre import Centre
from storage.models import Closure, Hold, Service, Slot
from storage.refusals import BookingRefused, Refusal
from storage.resources import likeness, resource_info
from storage.rules import booking_closes_at, last_released_day, release_at
from storage.slots import SLOT_CLOSED, active_closures, ensure_slots, free_seats_column, is_closed


@dataclass(frozen=True)
class SlotInfo:
    """A slot with its service, as operations and messages need them."""

    slot: Slot
    service: Service
    definition: ServiceDef
    closed: bool = False   # a closure of the centre covers the slot (read with it)


def owner_key(channel: str, user_id: str) -> str:
    """Who holds a seat: one chat user on one channel."""
    return f"{channel}:{user_id}"


# The statements every booking attempt runs are built once (building SQL expressions costs
# more than running these short queries); values come in as bound parameters.
_SLOT_INFO = (select(Slot, Service, SLOT_CLOSED).join(Service, Service.id == Slot.service_id)
              .where(Slot.id == bindparam("slot_id")))


async def slot_info(session: AsyncSession, slot_id: int) -> SlotInfo:
    """The slot, its service and whether a closure covers it, in one statement.

    Raises BookingRefused(UNKNOWN_SLOT) when there is no such slot."""
    row = (await session.execute(_SLOT_INFO, {"slot_id": slot_id})).one_or_none()
    if row is None:
        raise BookingRefused(Refusal.UNKNOWN_SLOT)
    slot, service, closed = row
    return SlotInfo(slot, service, ServiceDef.from_json(service.definition), bool(closed))


def check_bookable(centre: Centre, info: SlotInfo, now: dt.datetime,
                   closures: Sequence[Closure] | None = None) -> None:
    """Refuse a slot that is not released yet, closed for booking, or closed by the centre
    (``closures`` when given, else what ``slot_info`` read with the slot)."""
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
    if info.closed if closures is None else is_closed(closures, slot.starts_at, slot.ends_at,
                                                      slot.resource_id):
        raise BookingRefused(Refusal.SUSPENDED)


# --- online seats and holds -------------------------------------------------------------------


async def take_online_seat(session: AsyncSession, slot_id: int, column: str) -> bool:
    """Take one online seat as ``booked`` or ``held`` if one is free; True when taken."""
    result = await session.execute(
        update(Slot).where(Slot.id == slot_id, Slot.booked + Slot.held < Slot.online_capacity)
        .values({column: getattr(Slot, column) + 1}).execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release_seat(session: AsyncSession, slot_id: int, *, offline: bool = False,
                       held: bool = False) -> None:
    """Give back one seat: a window seat, a held one, or a booked online one."""
    column = Slot.offline_booked if offline else Slot.held if held else Slot.booked
    await session.execute(update(Slot).where(Slot.id == slot_id).values({column: column - 1})
                          .execution_options(synchronize_session=False))


async def release_holds(session: AsyncSession, owner: str, *, keep_slot: int | None = None) -> int:
    """Give back the seats ``owner`` holds in a conversation (not waitlist offers made to them)."""
    condition = and_(Hold.owner == owner, Hold.waitlist_id.is_(None))
    if keep_slot is not None:
        condition = and_(condition, Hold.slot_id != keep_slot)
    gone = (await session.execute(delete(Hold).where(condition).returning(Hold.slot_id))).all()
    for (slot,) in gone:
        await release_seat(session, slot, held=True)
    return len(gone)


async def hold_of(session: AsyncSession, owner: str, slot_id: int) -> Hold | None:
    """The seat ``owner`` holds on a slot (in a conversation or offered from the waitlist)."""
    return await session.scalar(select(Hold).where(Hold.owner == owner, Hold.slot_id == slot_id))


@dataclass(frozen=True)
class SlotChoice:
    """A slot offered as an alternative: plain values that outlive the transaction."""

    slot_id: int
    local_date: dt.date
    starts_at: dt.datetime
    ends_at: dt.datetime
    remaining: int
    resource_id: int | None = None


async def nearest_alternatives(session: AsyncSession, centre: Centre, info: SlotInfo,
                               now: dt.datetime, limit: int = 3) -> list[SlotChoice]:
    """Other slots of the same service with a free seat: same day first, nearest time first.

    When the slot has a doctor (a resource), the same doctor's slots come first, then doctors
    of the same specialty and title, then the same specialty, then the service's others.
    """
    candidates = await _free_choices(session, centre, info.service, info.definition, now,
                                     exclude=info.slot.id)
    target = info.slot
    tiers = await _likeness_tiers(session, target.resource_id, candidates)
    candidates.sort(key=lambda s: (tiers.get(s.resource_id, 3), s.local_date != target.local_date,
                                   abs((s.starts_at - target.starts_at).total_seconds())))
    return candidates[:limit]


async def nearest_of_resource(session: AsyncSession, centre: Centre, service: Service,
                              resource_id: int, now: dt.datetime, limit: int = 6) -> list[SlotChoice]:
    """Slots with a free seat for a citizen who asked for one doctor whose days are full: the
    same doctor's soonest, then the same specialty and title, the same specialty, the rest."""
    candidates = await _free_choices(session, centre, service, ServiceDef.from_json(service.definition), now)
    tiers = await _likeness_tiers(session, resource_id, candidates)
    candidates.sort(key=lambda s: (tiers.get(s.resource_id, 3), s.starts_at))
    return candidates[:limit]


async def _free_choices(session: AsyncSession, centre: Centre, service: Service,
                        definition: ServiceDef, now: dt.datetime,
                        exclude: int | None = None) -> list[SlotChoice]:
    last = last_released_day(now, definition, centre.tz)
    stale, remaining = free_seats_column(now)
    query = (select(Slot, remaining).outerjoin(stale, stale.c.slot_id == Slot.id)
             .where(Slot.service_id == service.id, Slot.local_date >= centre.today(now),
                    Slot.local_date <= last, Slot.starts_at > now, remaining > 0)
             .order_by(Slot.starts_at).limit(200))
    if exclude is not None:
        query = query.where(Slot.id != exclude)
    rows = (await session.execute(query)).all()
    if not rows:
        return []
    closures = await active_closures(session, service, rows[0][0].starts_at, rows[-1][0].ends_at)
    policy = centre.policy(definition)
    return [SlotChoice(slot.id, slot.local_date, slot.starts_at, slot.ends_at, int(free),
                       slot.resource_id)
            for slot, free in rows
            if now < booking_closes_at(slot.local_date, slot.starts_at, policy,
                                       centre.calendar, centre.tz)
            and not is_closed(closures, slot.starts_at, slot.ends_at, slot.resource_id)]


async def _likeness_tiers(session: AsyncSession, wanted_id: int | None,
                          candidates: Sequence[SlotChoice]) -> dict[int | None, int]:
    """Per resource of the candidates, how near it is to the wanted one (storage.resources)."""
    if wanted_id is None:
        return {}
    wanted = await resource_info(session, wanted_id)
    tiers: dict[int | None, int] = {}
    for resource_id in {c.resource_id for c in candidates}:
        other = await resource_info(session, resource_id) if resource_id is not None else None
        tiers[resource_id] = likeness(other, wanted)
    return tiers


# --- the window's seats -----------------------------------------------------------------------

# A slot keeps ``capacity - online_capacity`` seats for the window (walk-ins and phone callers,
# 代办); chats never see them. The one statement of that rule, for queries and updates alike:
WINDOW_SEAT_FREE = Slot.offline_booked < Slot.capacity - Slot.online_capacity


def window_seats_left(slot: Slot) -> int:
    """The seats of a loaded slot still kept for the window."""
    return slot.capacity - slot.online_capacity - slot.offline_booked


async def take_offline_seat(session: AsyncSession, slot_id: int) -> bool:
    """Take one of the window's seats if one is free; True when taken."""
    result = await session.execute(
        update(Slot).where(Slot.id == slot_id, WINDOW_SEAT_FREE)
        .values(offline_booked=Slot.offline_booked + 1).execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def window_slots(session: AsyncSession, centre: Centre, service: Service,
                       days: Sequence[dt.date], now: dt.datetime) -> list[Slot]:
    """The slots of these days, not over yet and not closed, with a window seat still free."""
    await ensure_slots(session, centre, service, now)
    slots = list((await session.scalars(select(Slot).where(
        Slot.service_id == service.id, Slot.local_date.in_(list(days)), Slot.ends_at > now,
        WINDOW_SEAT_FREE).order_by(Slot.starts_at))).all())
    if not slots:
        return []
    closures = await active_closures(session, service, slots[0].starts_at, slots[-1].ends_at)
    return [s for s in slots if not is_closed(closures, s.starts_at, s.ends_at, s.resource_id)]
