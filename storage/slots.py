"""Slots: generated from each service's opening hours on working days, and what is still free.

A slot's free online seats are ``online_capacity - booked - held``; holds that have run out
but are not swept yet are counted as free, so the answer is right without writing anything.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import BindParameter, and_, bindparam, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from storage.catalog import ServiceDef
from storage.centre import Centre
from storage.models import Closure, Hold, Service, ServiceResource, Slot
from storage.outbox import insert_ignoring_duplicates
from storage.rosters import roster_of, roster_slot_times, sittings_on
from storage.rules import (
    at_local,
    booking_closes_at,
    booking_stop_at,
    last_released_day,
    policy_for,
    release_at,
)


def slot_times(service: ServiceDef, day: dt.date) -> list[tuple[dt.time, dt.time]]:
    """Start and end times of the slots of ``day``: each opening period cut into slot lengths."""
    length = dt.timedelta(minutes=service.slot_minutes)
    times = []
    for opens, closes in service.hours_on(day):
        start = dt.datetime.combine(day, opens)
        end = dt.datetime.combine(day, closes)
        while start + length <= end:
            times.append((start.time(), (start + length).time()))
            start += length
    return times


async def ensure_slots(session: AsyncSession, centre: Centre, service: Service,
                       now: dt.datetime) -> None:
    """Create the missing slots up to the last released day (idempotent, cheap when done).

    Args:
        service: the service row; its ``slots_through`` records how far slots exist.
    """
    definition = ServiceDef.from_json(service.definition)
    today = now.astimezone(centre.tz).date()
    through = last_released_day(now, definition, centre.tz) + dt.timedelta(days=1)
    if service.slots_through is not None and service.slots_through >= through:
        return
    first = max(today, service.slots_through + dt.timedelta(days=1)) if service.slots_through else today
    existing = set((await session.execute(select(Slot.resource_id, Slot.starts_at).where(
        Slot.service_id == service.id, Slot.local_date >= first, Slot.local_date <= through))).all())
    roster = await roster_of(session, service.id, first, through)
    online = definition.online_capacity
    rows = []
    day = first
    while day <= through:
        if centre.calendar.is_working_day(day):
            times = slot_times(definition, day)
            planned: list[tuple[int | None, dt.time, dt.time, int, int]]
            if not roster.resource_ids:
                planned = [(None, start, end, definition.capacity, online) for start, end in times]
            else:  # one slot per resource on the half-days its roster gives it
                planned = [(rid, start, end, sitting.seats, sitting.online)
                           for rid in roster.resource_ids
                           for start, end, sitting in roster_slot_times(
                               times, sittings_on(day, roster.patterns[rid], roster.exceptions[rid]))]
            for resource_id, start, end, capacity, online_capacity in planned:
                starts_at = at_local(day, start, centre.tz)
                if (resource_id, starts_at) not in existing:
                    rows.append(dict(service_id=service.id, resource_id=resource_id, local_date=day,
                                     starts_at=starts_at, ends_at=at_local(day, end, centre.tz),
                                     capacity=capacity, online_capacity=online_capacity,
                                     booked=0, held=0, offline_booked=0))
        day += dt.timedelta(days=1)
    if rows:
        # Two first looks at a newly released day at once both make its slots: the second
        # skips the ones the first made instead of failing on the unique (service, start,
        # resource) or, without a resource, (service, start).
        await session.execute(insert_ignoring_duplicates(session, Slot, None).values(rows))
    service.slots_through = through
    await session.flush()


class DayState(enum.StrEnum):
    OPEN = "open"                # seats left
    FULL = "full"                # released, no seat left (waitlist possible)
    NOT_RELEASED = "not_released"
    CLOSED = "closed"            # booking for the day has closed (stop time, lead time)
    SUSPENDED = "suspended"      # the centre closed the service (停办/停诊)


@dataclass(frozen=True)
class SlotView:
    slot_id: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    remaining: int
    bookable: bool
    resource_id: int | None = None


@dataclass(frozen=True)
class DayView:
    day: dt.date
    state: DayState
    remaining: int
    provisional: bool
    opens_at: dt.datetime | None = None
    slots: tuple[SlotView, ...] = field(default=())


def expired_holds_by_slot(now: dt.datetime | BindParameter[Any]):  # type: ignore[no-untyped-def]
    """A subquery: per slot, holds that have run out but are not swept yet (at ``now``, a
    value or a bound parameter of a statement built once)."""
    return (select(Hold.slot_id, func.count().label("stale"))
            .where(Hold.expires_at <= now).group_by(Hold.slot_id).subquery())


def free_seats_column(now: dt.datetime):  # type: ignore[no-untyped-def]
    stale = expired_holds_by_slot(now)
    remaining = Slot.online_capacity - Slot.booked - Slot.held + func.coalesce(stale.c.stale, 0)
    return stale, remaining


def closure_covers(service_id, department_id, start, end, resource_id):  # type: ignore[no-untyped-def]
    """Which closures apply to a slot: those overlapping ``start``..``end`` that cover the
    service itself, its department, the whole centre, or the slot's doctor or window (a
    resource's 停诊 covers only its own slots). The arguments are SQL expressions (the columns
    of a slot and its service, or bound parameters). Written over the table's columns, so the
    booking's Core statements that carry it build no ORM rows."""
    c = Closure.__table__.c
    return and_(c.starts_at < end, c.ends_at > start,
                or_(c.service_id == service_id,
                    and_(c.service_id.is_(None), c.department_id == department_id),
                    and_(c.service_id.is_(None), c.department_id.is_(None), c.resource_id.is_(None)),
                    and_(c.service_id.is_(None), c.resource_id == resource_id)))


# Built once: this runs on every booking attempt, and building SQL is the costly part.
_CLOSURES = select(Closure).where(
    Closure.starts_at < bindparam("end"), Closure.ends_at > bindparam("start"),
    or_(Closure.service_id == bindparam("service_id"),
        and_(Closure.service_id.is_(None), Closure.department_id == bindparam("department_id")),
        and_(Closure.service_id.is_(None), Closure.department_id.is_(None),
             Closure.resource_id.is_(None)),
        # a doctor's or window's 停诊 covers only that resource's slots (is_closed)
        and_(Closure.service_id.is_(None), Closure.resource_id.in_(
            select(ServiceResource.resource_id)
            .where(ServiceResource.service_id == bindparam("service_id"))))))

# Whether a slot of a service (the columns of a query that selects both) is closed, inside the
# query that reads the slot: no second round trip on every booking attempt.
_SLOT, _SERVICE = Slot.__table__.c, Service.__table__.c
SLOT_CLOSED = select(Closure.__table__.c.id).where(closure_covers(
    _SLOT.service_id, _SERVICE.department_id, _SLOT.starts_at, _SLOT.ends_at,
    _SLOT.resource_id)).exists()


class ServiceKeys(Protocol):
    """What reading a service's closures needs of it: a service row, or the plain values a
    booking reads (storage.seats.ServiceRow)."""

    @property
    def id(self) -> int: ...

    @property
    def department_id(self) -> int: ...


async def active_closures(session: AsyncSession, service: ServiceKeys, start: dt.datetime,
                          end: dt.datetime) -> Sequence[Closure]:
    """Closures that cover the service (itself, its department, or the whole centre)."""
    return (await session.scalars(_CLOSURES, {
        "start": start, "end": end, "service_id": service.id,
        "department_id": service.department_id})).all()


def is_closed(closures: Sequence[Closure], starts_at: dt.datetime, ends_at: dt.datetime,
              resource_id: int | None = None) -> bool:
    """Whether a slot (of ``resource_id``, if it has one) falls in one of the closures."""
    return any(c.starts_at < ends_at and c.ends_at > starts_at
               and (c.resource_id is None or c.resource_id == resource_id) for c in closures)


async def availability(session: AsyncSession, centre: Centre, service: Service, now: dt.datetime,
                       days: int = 7, resource_id: int | None = None) -> list[DayView]:
    """The next ``days`` working days of a service with the online seats left per day and slot
    (of one doctor or window, with ``resource_id``).

    Days not released yet say when they open; the next unreleased day is included so the bot
    can say so. Nothing is written except, once a day, the slots of a newly released day.
    """
    definition = ServiceDef.from_json(service.definition)
    policy = policy_for(definition, centre.rules)
    await ensure_slots(session, centre, service, now)
    today = now.astimezone(centre.tz).date()
    released = last_released_day(now, definition, centre.tz)
    day_list = centre.calendar.working_days_from(today, days)
    if day_list and day_list[-1] > released:
        day_list = [d for d in day_list if d <= released]
        day_list.append(centre.calendar.next_working_day(released))
    elif day_list:
        following = centre.calendar.next_working_day(day_list[-1])
        if following > released:
            day_list.append(following)
    if not day_list:
        return []
    stale, remaining = free_seats_column(now)
    rows = (await session.execute(
        select(Slot.id, Slot.local_date, Slot.starts_at, Slot.ends_at, remaining, Slot.resource_id)
        .outerjoin(stale, stale.c.slot_id == Slot.id)
        .where(Slot.service_id == service.id, Slot.local_date >= day_list[0],
               Slot.local_date <= day_list[-1],
               true() if resource_id is None else Slot.resource_id == resource_id)
        .order_by(Slot.starts_at, Slot.resource_id))).all()
    closures = await active_closures(session, service, at_local(day_list[0], dt.time(0), centre.tz),
                                     at_local(day_list[-1] + dt.timedelta(days=1), dt.time(0), centre.tz))
    by_day: dict[dt.date, list[SlotView]] = {d: [] for d in day_list}
    suspended_days: set[dt.date] = set()
    stops: dict[dt.date, dt.datetime | None] = {}
    for slot_id, day, starts_at, ends_at, free, resource_id in rows:
        if day not in by_day:
            continue
        if is_closed(closures, starts_at, ends_at, resource_id):
            suspended_days.add(day)
            continue
        if day not in stops:
            stops[day] = booking_stop_at(day, policy, centre.calendar, centre.tz)
        bookable = now < booking_closes_at(day, starts_at, policy, centre.calendar, centre.tz,
                                           stops[day])
        by_day[day].append(SlotView(slot_id, starts_at, ends_at, max(0, int(free)), bookable,
                                    resource_id))
    views = []
    for day in day_list:
        provisional = centre.calendar.info(day).provisional
        if day > released:
            views.append(DayView(day, DayState.NOT_RELEASED, 0, provisional,
                                 opens_at=release_at(day, definition, centre.tz)))
            continue
        slots = tuple(by_day[day])
        open_slots = [s for s in slots if s.bookable]
        left = sum(s.remaining for s in open_slots)
        if not slots and day in suspended_days:
            state = DayState.SUSPENDED
        elif not open_slots:
            state = DayState.CLOSED
        else:
            state = DayState.OPEN if left else DayState.FULL
        views.append(DayView(day, state, left, provisional, slots=slots))
    return views
