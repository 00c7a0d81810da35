"""Rosters (排班): which half-days a resource (doctor, window) works for a service, with how
many seats per slot, from its weekly pattern and the dated exceptions.

The rules are plain functions of their inputs; ``roster_of`` reads what they need from the
database. Slots are generated from them in storage/slots.py, on the centre's working days only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.catalog import NOON
from storage.models import Resource, RosterException, RosterPattern, ServiceResource


def half_of(start: dt.time) -> str:
    """The half-day a slot starting at ``start`` belongs to: "am" before noon, else "pm"."""
    return "am" if start < NOON else "pm"


def online_seats(seats: int, share: float) -> int:
    """The online part of ``seats`` (at least one when there is a seat at all)."""
    return 0 if seats <= 0 else max(1, min(seats, round(seats * share)))


@dataclass(frozen=True)
class Sitting:
    """One half-day a resource works: seats per slot and the online part of them."""

    seats: int
    online: int


@dataclass(frozen=True)
class PatternRow:
    weekday: int
    half: str
    seats: int
    online: int


@dataclass(frozen=True)
class ExceptionRow:
    day: dt.date
    half: str          # "am", "pm" or "day"
    seats: int         # 0: not working
    online: int


def sittings_on(day: dt.date, patterns: Iterable[PatternRow],
                exceptions: Iterable[ExceptionRow]) -> dict[str, Sitting]:
    """The half-days worked on ``day``: the weekly pattern, then that day's exceptions (a
    whole-day exception first, a half-day one over it)."""
    sittings = {p.half: Sitting(p.seats, p.online) for p in patterns if p.weekday == day.weekday()}
    todays = sorted((e for e in exceptions if e.day == day), key=lambda e: e.half != "day")
    for exception in todays:
        for half in (("am", "pm") if exception.half == "day" else (exception.half,)):
            if exception.seats <= 0:
                sittings.pop(half, None)
            else:
                sittings[half] = Sitting(exception.seats, exception.online)
    return sittings


def roster_slot_times(times: Iterable[tuple[dt.time, dt.time]],
                      sittings: dict[str, Sitting]) -> list[tuple[dt.time, dt.time, Sitting]]:
    """Of a day's service slots (start, end), those in a half-day the resource works."""
    return [(start, end, sittings[half_of(start)]) for start, end in times
            if half_of(start) in sittings]


@dataclass(frozen=True)
class Roster:
    """What slot generation needs of one service's resources."""

    resource_ids: tuple[int, ...]
    patterns: dict[int, tuple[PatternRow, ...]]
    exceptions: dict[int, tuple[ExceptionRow, ...]]


async def roster_of(session: AsyncSession, service_id: int, first: dt.date,
                    last: dt.date) -> Roster:
    """The active resources of a service with their patterns and the exceptions in
    ``first``..``last``; no resource ids when the service has none (it works as before)."""
    ids = tuple((await session.scalars(
        select(Resource.id).join(ServiceResource, ServiceResource.resource_id == Resource.id)
        .where(ServiceResource.service_id == service_id, Resource.active.is_(True))
        .order_by(Resource.id))).all())
    patterns: dict[int, list[PatternRow]] = {rid: [] for rid in ids}
    exceptions: dict[int, list[ExceptionRow]] = {rid: [] for rid in ids}
    if ids:
        for p in (await session.scalars(select(RosterPattern).where(
                RosterPattern.service_id == service_id, RosterPattern.resource_id.in_(ids)))).all():
            patterns[p.resource_id].append(PatternRow(p.weekday, p.half, p.seats, p.online_seats))
        for e in (await session.scalars(select(RosterException).where(
                RosterException.service_id == service_id, RosterException.resource_id.in_(ids),
                RosterException.day >= first, RosterException.day <= last))).all():
            exceptions[e.resource_id].append(ExceptionRow(e.day, e.half, e.seats, e.online_seats))
    return Roster(ids, {k: tuple(v) for k, v in patterns.items()},
                  {k: tuple(v) for k, v in exceptions.items()})
