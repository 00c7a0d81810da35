"""Changing a roster from the staff chat (``/roster``): a weekly half-day's seats, or a dated
exception. Audited; future slots follow at once, booked ones are never removed. Nothing here
commits."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.audit import audit
from storage.catalog import ServiceDef
from storage.centre import Centre
from storage.models import (
    Appointment,
    AppointmentStatus,
    RosterException,
    RosterPattern,
    Service,
    ServiceResource,
    Slot,
)
from storage.resources import refit_resource_slots
from storage.rosters import ExceptionRow, PatternRow, half_of, online_seats, sittings_on
from storage.slots import ensure_slots

MAX_SEATS = 100


class RosterRefused(ValueError):
    """The change cannot be made: ``reason`` says why (a catalog key of the message)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RosterChange:
    """What a change left: bookings still on the half-days it took away (move them with
    ``/closure``, which tells the citizens)."""

    kept_bookings: int


async def _check(session: AsyncSession, resource_id: int, service_id: int, seats: int) -> ServiceDef:
    if not 0 <= seats <= MAX_SEATS:
        raise RosterRefused("bad_seats")
    served = await session.scalar(select(func.count()).select_from(ServiceResource).where(
        ServiceResource.resource_id == resource_id, ServiceResource.service_id == service_id))
    service = await session.get(Service, service_id)
    if not served or service is None:
        raise RosterRefused("not_served")
    return ServiceDef.from_json(service.definition)


async def set_pattern(session: AsyncSession, centre: Centre, now: dt.datetime, *, resource_id: int,
                      service_id: int, weekday: int, half: str, seats: int,
                      actor: str) -> RosterChange:
    """Work ``seats`` per slot on that weekday's half-day every week from now on (0: not).

    Raises:
        RosterRefused: "bad_seats", "not_served".
    """
    definition = await _check(session, resource_id, service_id, seats)
    found = await session.scalar(select(RosterPattern).where(
        RosterPattern.resource_id == resource_id, RosterPattern.service_id == service_id,
        RosterPattern.weekday == weekday, RosterPattern.half == half))
    before = None if found is None else found.seats
    if seats == 0:
        if found is not None:
            await session.delete(found)
    elif found is None:
        session.add(RosterPattern(resource_id=resource_id, service_id=service_id, weekday=weekday,
                                  half=half, seats=seats,
                                  online_seats=online_seats(seats, definition.online_share),
                                  source="staff", updated_at=now))
    else:
        found.seats, found.online_seats = seats, online_seats(seats, definition.online_share)
        found.source, found.updated_at = "staff", now
    await session.flush()
    await audit(session, now, actor, "roster", "resource", resource_id, service=service_id,
                weekday=weekday, half=half, seats_before=before, seats=seats)
    return await _follow(session, centre, now, resource_id, service_id)


async def set_exception(session: AsyncSession, centre: Centre, now: dt.datetime, *,
                        resource_id: int, service_id: int, day: dt.date, half: str, seats: int,
                        note: str, actor: str) -> RosterChange:
    """A dated change: ``half`` ("am", "pm", "day") off (``seats`` 0) or worked with ``seats``.

    Raises:
        RosterRefused: "bad_seats", "not_served", "past_day".
    """
    definition = await _check(session, resource_id, service_id, seats)
    if day < centre.today(now):
        raise RosterRefused("past_day")
    await session.execute(delete(RosterException).where(
        RosterException.resource_id == resource_id, RosterException.service_id == service_id,
        RosterException.day == day, RosterException.half == half))
    session.add(RosterException(resource_id=resource_id, service_id=service_id, day=day, half=half,
                                seats=seats, online_seats=online_seats(seats, definition.online_share),
                                note=note[:200], created_by=actor, created_at=now))
    await session.flush()
    await audit(session, now, actor, "roster_exception", "resource", resource_id,
                service=service_id, day=day.isoformat(), half=half, seats=seats, note=note[:200])
    return await _follow(session, centre, now, resource_id, service_id)


async def _follow(session: AsyncSession, centre: Centre, now: dt.datetime, resource_id: int,
                  service_id: int) -> RosterChange:
    """Future slots follow the roster: unbooked ones are made again; a booked one outside the
    roster now keeps its bookings but takes no more; one inside gets the new seats (never
    fewer than taken)."""
    await refit_resource_slots(session, service_id, resource_id, now)
    service = await session.get(Service, service_id)
    if service is not None:
        await ensure_slots(session, centre, service, now)
    kept = list((await session.scalars(select(Slot).where(
        Slot.service_id == service_id, Slot.resource_id == resource_id, Slot.starts_at > now))).all())
    if not kept:
        return RosterChange(0)
    first, last = min(s.local_date for s in kept), max(s.local_date for s in kept)
    patterns = [PatternRow(p.weekday, p.half, p.seats, p.online_seats) for p in (await session.scalars(
        select(RosterPattern).where(RosterPattern.resource_id == resource_id,
                                    RosterPattern.service_id == service_id))).all()]
    exceptions = [ExceptionRow(e.day, e.half, e.seats, e.online_seats) for e in (await session.scalars(
        select(RosterException).where(RosterException.resource_id == resource_id,
                                      RosterException.service_id == service_id,
                                      RosterException.day >= first,
                                      RosterException.day <= last))).all()]
    outside: list[int] = []
    for slot in kept:
        sitting = sittings_on(slot.local_date, patterns, exceptions).get(
            half_of(slot.starts_at.astimezone(centre.tz).time()))
        online = sitting.online if sitting else 0
        seats = sitting.seats if sitting else 0
        slot.online_capacity = max(online, slot.booked + slot.held)
        slot.capacity = max(seats, slot.online_capacity + slot.offline_booked)
        if sitting is None:
            outside.append(slot.id)
    bookings = 0
    if outside:
        bookings = int(await session.scalar(select(func.count()).select_from(Appointment).where(
            Appointment.slot_id.in_(outside), Appointment.status == AppointmentStatus.BOOKED)) or 0)
    await session.flush()
    return RosterChange(bookings)


@dataclass(frozen=True)
class RosterView:
    """A resource's roster for one service: its weekly half-days and the coming exceptions."""

    service_id: int
    patterns: tuple[PatternRow, ...]
    exceptions: tuple[tuple[ExceptionRow, str], ...]     # with its note


async def roster_views(session: AsyncSession, now: dt.datetime, centre: Centre,
                       resource_id: int, days: int = 60) -> list[RosterView]:
    """Per service the resource serves: its pattern and the exceptions of the next ``days``."""
    today = centre.today(now)
    views = []
    for service_id in (await session.scalars(select(ServiceResource.service_id).where(
            ServiceResource.resource_id == resource_id).order_by(ServiceResource.service_id))).all():
        patterns = tuple(PatternRow(p.weekday, p.half, p.seats, p.online_seats) for p in (
            await session.scalars(select(RosterPattern).where(
                RosterPattern.resource_id == resource_id, RosterPattern.service_id == service_id)
                .order_by(RosterPattern.weekday, RosterPattern.half))).all())
        exceptions = tuple((ExceptionRow(e.day, e.half, e.seats, e.online_seats), e.note) for e in (
            await session.scalars(select(RosterException).where(
                RosterException.resource_id == resource_id, RosterException.service_id == service_id,
                RosterException.day >= today, RosterException.day <= today + dt.timedelta(days=days))
                .order_by(RosterException.day, RosterException.half))).all())
        views.append(RosterView(service_id, patterns, exceptions))
    return views
