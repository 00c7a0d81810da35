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
from typing import cast

from sqlalchemy import (
    Table,
    and_,
    bindparam,
    delete,
    false,
    func,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.util import ClauseAdapter

from storage.catalog import ServiceDef
from storage.centre import Centre
from storage.db import fetch_rows
from storage.models import Closure, Hold, Service, Slot
from storage.refusals import BookingRefused, Refusal
from storage.resources import likeness, resource_info
from storage.rules import booking_closes_at, last_released_day, release_at
from storage.slots import (
    SLOT_CLOSED,
    active_closures,
    closure_covers,
    ensure_slots,
    expired_holds_by_slot,
    is_closed,
)


@dataclass(frozen=True)
class SlotRow:
    """A slot as a booking reads it: plain values (no ORM instance, nothing to keep in step)."""

    id: int
    service_id: int
    resource_id: int | None
    local_date: dt.date
    starts_at: dt.datetime
    ends_at: dt.datetime
    capacity: int
    online_capacity: int
    booked: int
    held: int
    offline_booked: int


@dataclass(frozen=True)
class ServiceRow:
    """The columns of a service that booking needs (its definition is parsed once per version)."""

    id: int
    department_id: int
    active: bool
    definition_hash: str


@dataclass(frozen=True)
class SlotInfo:
    """A slot with its service, as operations and messages need them."""

    slot: SlotRow
    service: ServiceRow
    definition: ServiceDef
    closed: bool = False   # a closure of the centre covers the slot (read with it)


def owner_key(channel: str, user_id: str) -> str:
    """Who holds a seat: one chat user on one channel."""
    return f"{channel}:{user_id}"


# The statements every booking attempt runs are built once (building SQL expressions costs
# more than running these short queries); values come in as bound parameters. They are Core
# statements over the tables: rows come back as tuples, with no ORM instances to build.
_SLOT_TABLE = cast(Table, Slot.__table__)
_S, _V = _SLOT_TABLE.c, Service.__table__.c
_SLOT_INFO = (select(_S.id, _S.service_id, _S.resource_id, _S.local_date, _S.starts_at, _S.ends_at,
                     _S.capacity, _S.online_capacity, _S.booked, _S.held, _S.offline_booked,
                     _V.id, _V.department_id, _V.active, _V.definition_hash, SLOT_CLOSED)
              .select_from(Slot.__table__.join(Service.__table__, _V.id == _S.service_id))
              .where(_S.id == bindparam("slot_id")))
_DEFINITION = select(_V.definition, _V.definition_hash).where(_V.id == bindparam("service_id"))

# Parsed service definitions, per process, keyed by the service and its definition's digest
# (``Service.definition_hash``, which every catalog load that changes the definition changes):
# a changed catalog is read again at the next attempt, by every process.
_DEFINITIONS: dict[tuple[int, str], ServiceDef] = {}


async def service_definition(session: AsyncSession, service_id: int, digest: str) -> ServiceDef:
    """The parsed definition of a service whose stored digest is ``digest``."""
    found = _DEFINITIONS.get((service_id, digest))
    if found is None:
        data, digest = (await session.execute(_DEFINITION, {"service_id": service_id})).one()
        found = ServiceDef.from_json(data)
        if len(_DEFINITIONS) >= 1024:   # old versions are never asked for again
            _DEFINITIONS.clear()
        _DEFINITIONS[(service_id, digest)] = found   # keyed by the digest read with it
    return found


async def slot_info(session: AsyncSession, slot_id: int) -> SlotInfo:
    """The slot, its service and whether a closure covers it, in one statement.

    Raises BookingRefused(UNKNOWN_SLOT) when there is no such slot."""
    row = next(iter(await fetch_rows(session, _SLOT_INFO, {"slot_id": slot_id})), None)
    if row is None:
        raise BookingRefused(Refusal.UNKNOWN_SLOT)
    service = ServiceRow(*row[11:15])
    return SlotInfo(SlotRow(*row[:11]), service,
                    await service_definition(session, service.id, service.definition_hash),
                    bool(row[15]))


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


_TAKE = {column: update(_SLOT_TABLE).where(
    _S.id == bindparam("slot_id"), _S.booked + _S.held < _S.online_capacity)
    .values({column: _S[column] + 1}) for column in ("booked", "held")}


async def take_online_seat(session: AsyncSession, slot_id: int, column: str) -> bool:
    """Take one online seat as ``booked`` or ``held`` if one is free; True when taken."""
    result = await session.execute(_TAKE[column], {"slot_id": slot_id})
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release_seat(session: AsyncSession, slot_id: int, *, offline: bool = False,
                       held: bool = False) -> None:
    """Give back one seat: a window seat, a held one, or a booked online one."""
    column = Slot.offline_booked if offline else Slot.held if held else Slot.booked
    await session.execute(update(Slot).where(Slot.id == slot_id).values({column: column - 1})
                          .execution_options(synchronize_session=False))


_HOLD_TABLE = cast(Table, Hold.__table__)
_H = _HOLD_TABLE.c
# Built once (were built at every greeting and menu message): the owner's conversation holds,
# all of them or all but one slot's; and a held seat given back.
_RELEASE_HOLDS = delete(_HOLD_TABLE).where(
    _H.owner == bindparam("owner"), _H.waitlist_id.is_(None)).returning(_H.slot_id)
_RELEASE_HOLDS_BUT = _RELEASE_HOLDS.where(_H.slot_id != bindparam("keep_slot"))
_GIVE_BACK_HELD = update(_SLOT_TABLE).where(_S.id == bindparam("slot_id")).values(held=_S.held - 1)


async def release_holds(session: AsyncSession, owner: str, *, keep_slot: int | None = None) -> int:
    """Give back the seats ``owner`` holds in a conversation (not waitlist offers made to them)."""
    if keep_slot is None:
        gone = (await session.execute(_RELEASE_HOLDS, {"owner": owner})).all()
    else:
        gone = (await session.execute(_RELEASE_HOLDS_BUT, {"owner": owner, "keep_slot": keep_slot})).all()
    for (slot,) in gone:
        await session.execute(_GIVE_BACK_HELD, {"slot_id": slot})
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
                               now: dt.datetime, limit: int = 3,
                               free: Sequence[SlotChoice] | None = None) -> list[SlotChoice]:
    """Other slots of the same service with a free seat: same day first, nearest time first.

    When the slot has a doctor (a resource), the same doctor's slots come first, then doctors
    of the same specialty and title, then the same specialty, then the service's others.
    ``free``: the service's free slots when already read (``slot_for_booking``), else read here.
    """
    if free is None:
        candidates = await _free_choices(session, centre, info.service, info.definition, now,
                                         exclude=info.slot.id)
    else:
        candidates = _bookable_choices(centre, info.definition, now, free)
    target = info.slot
    tiers = await _likeness_tiers(session, target.resource_id, candidates)
    candidates.sort(key=lambda s: (tiers.get(s.resource_id, 3), s.local_date != target.local_date,
                                   abs((s.starts_at - target.starts_at).total_seconds())))
    return candidates[:limit]


async def nearest_of_resource(session: AsyncSession, centre: Centre, service: Service,
                              resource_id: int, now: dt.datetime, limit: int = 6, *,
                              after: dt.datetime | None = None) -> list[SlotChoice]:
    """Slots with a free seat for a citizen who asked for one doctor whose days are full: the
    same doctor's soonest, then the same specialty and title, the same specialty, the rest
    (only those that start after ``after``, when given: a 换诊 by SMS holds one after the
    answer deadline)."""
    candidates = await _free_choices(session, centre, service, ServiceDef.from_json(service.definition), now,
                                     after=after)
    tiers = await _likeness_tiers(session, resource_id, candidates)
    candidates.sort(key=lambda s: (tiers.get(s.resource_id, 3), s.starts_at))
    return candidates[:limit]


def _free_slot_conditions(slot, service_id, department_id, exclude, remaining):  # type: ignore[no-untyped-def]
    """Where a slot (``slot``, a table or its alias) of the service is a free alternative: from
    today (bound ``today``, ``now``), not started, a seat left, not ``exclude``, no closure over
    it (storage.slots.closure_covers). The release horizon is the caller's (it depends on the
    service's definition)."""
    return (slot.c.service_id == service_id, slot.c.local_date >= bindparam("today"),
            slot.c.starts_at > bindparam("now"), remaining > 0, slot.c.id != exclude,
            ~select(Closure.__table__.c.id).where(closure_covers(
                service_id, department_id, slot.c.starts_at, slot.c.ends_at,
                slot.c.resource_id)).exists())


# The free slots of a service, built once: the seats left (holds run out but not swept count
# as free), and no slot a closure covers, in one statement.
_STALE = expired_holds_by_slot(bindparam("now"))
_REMAINING = _S.online_capacity - _S.booked - _S.held + func.coalesce(_STALE.c.stale, 0)
_FREE_CHOICES = (
    select(_S.id, _S.local_date, _S.starts_at, _S.ends_at, _REMAINING, _S.resource_id)
    .select_from(Slot.__table__.outerjoin(_STALE, _STALE.c.slot_id == _S.id))
    .where(_S.local_date <= bindparam("last"), _S.starts_at > bindparam("after"),
           *_free_slot_conditions(Slot.__table__, bindparam("service_id"),
                                  bindparam("department_id"), bindparam("exclude"), _REMAINING))
    .order_by(_S.starts_at).limit(200))


async def _free_choices(session: AsyncSession, centre: Centre, service: Service | ServiceRow,
                        definition: ServiceDef, now: dt.datetime,
                        exclude: int | None = None,
                        after: dt.datetime | None = None) -> list[SlotChoice]:
    """The service's free slots a citizen may book now, soonest first (starting after
    ``after`` when given, else after ``now``)."""
    rows = (await session.execute(_FREE_CHOICES, {
        "service_id": service.id, "department_id": service.department_id, "now": now,
        "after": max(now, after) if after is not None else now,
        "today": centre.today(now), "last": last_released_day(now, definition, centre.tz),
        "exclude": exclude or 0})).all()
    return _bookable_choices(centre, definition, now, [
        SlotChoice(slot_id, day, starts, ends, int(free), resource_id)
        for slot_id, day, starts, ends, free, resource_id in rows])


def _bookable_choices(centre: Centre, definition: ServiceDef, now: dt.datetime,
                      free: Sequence[SlotChoice]) -> list[SlotChoice]:
    """The free slots a citizen may still book now: released, and before the booking stop."""
    last = last_released_day(now, definition, centre.tz)
    policy = centre.policy(definition)
    return [c for c in free if c.local_date <= last
            and now < booking_closes_at(c.local_date, c.starts_at, policy, centre.calendar, centre.tz)]


# --- the read that starts a booking -----------------------------------------------------------

# A slot whose online seats are all booked, with no hold that could be the booker's or could run
# out: a booking of it is refused as full before any lock (in a release rush most attempts end
# here). The one statement of that rule, read with the slot.
VISIBLY_FULL = and_(_S.held == 0, _S.booked >= _S.online_capacity)

_TARGET = Slot.__table__.alias("target")
_OTHER = Slot.__table__.alias("other")
_OTHER_STALE = expired_holds_by_slot(bindparam("now"))
_OTHER_REMAINING = (_OTHER.c.online_capacity - _OTHER.c.booked - _OTHER.c.held
                    + func.coalesce(_OTHER_STALE.c.stale, 0))
_SLOT_COLUMNS = ("id", "service_id", "resource_id", "local_date", "starts_at", "ends_at",
                 "capacity", "online_capacity", "booked", "held", "offline_booked")
_SPARE = (
    select(literal(1).label("kind"), *(_OTHER.c[name] for name in _SLOT_COLUMNS),
           _V.id, _V.department_id, _V.active, _V.definition_hash,
           false().label("closed"), false().label("full"), _OTHER_REMAINING.label("remaining"))
    .select_from(_TARGET.join(Service.__table__, _V.id == _TARGET.c.service_id)
                 .join(_OTHER, _OTHER.c.service_id == _TARGET.c.service_id)
                 .outerjoin(_OTHER_STALE, _OTHER_STALE.c.slot_id == _OTHER.c.id))
    .where(_TARGET.c.id == bindparam("slot_id"),
           ClauseAdapter(_TARGET).traverse(VISIBLY_FULL),
           *_free_slot_conditions(_OTHER, _TARGET.c.service_id, _V.department_id, _TARGET.c.id,
                                  _OTHER_REMAINING))
    .order_by(_OTHER.c.starts_at).limit(200).subquery())
# The slot with its service, and only when it is visibly full the service's free slots (the
# alternatives a refusal offers): one round trip for every attempt that ends as "full".
_SLOT_FOR_BOOKING = union_all(
    select(literal(0).label("kind"), *(_S[name] for name in _SLOT_COLUMNS),
           _V.id, _V.department_id, _V.active, _V.definition_hash, SLOT_CLOSED.label("closed"),
           VISIBLY_FULL.label("full"), literal(0).label("remaining"))
    .select_from(Slot.__table__.join(Service.__table__, _V.id == _S.service_id))
    .where(_S.id == bindparam("slot_id")),
    select(*_SPARE.c))


@dataclass(frozen=True)
class BookingRead:
    """What a booking reads first: the slot and, when it is visibly full, the free slots of its
    service (unranked; ``nearest_alternatives`` ranks them)."""

    info: SlotInfo
    full: bool
    free: list[SlotChoice]


async def slot_for_booking(session: AsyncSession, centre: Centre, slot_id: int,
                           now: dt.datetime) -> BookingRead:
    """The slot, its service, whether a closure covers it, whether it is visibly full and then
    the alternatives, in one statement.

    Raises BookingRefused(UNKNOWN_SLOT) when there is no such slot."""
    rows = await fetch_rows(session, _SLOT_FOR_BOOKING, {
        "slot_id": slot_id, "now": now, "today": centre.today(now)})
    target = next((row for row in rows if row[0] == 0), None)
    if target is None:
        raise BookingRefused(Refusal.UNKNOWN_SLOT)
    service = ServiceRow(*target[12:16])
    info = SlotInfo(SlotRow(*target[1:12]), service,
                    await service_definition(session, service.id, service.definition_hash),
                    bool(target[16]))
    free = sorted((SlotChoice(row[1], row[4], row[5], row[6], int(row[18]), row[3])
                   for row in rows if row[0] == 1), key=lambda c: c.starts_at)
    return BookingRead(info, bool(target[17]), free)


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
