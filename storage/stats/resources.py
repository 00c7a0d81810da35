"""Figures per doctor or window over a period: bookings, attendance, no-shows, utilisation of
its seats, ratings, and its closures with their late notices (缺陷管理)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from storage.centre import Centre
from storage.models import Appointment, AppointmentStatus, Closure, Rating, Service, Slot
from storage.rules import at_local
from storage.stats.counting import count_where, ratio, slot_closed, sum_where
from storage.stats.periods import Period


@dataclass(frozen=True)
class ResourceFigures:
    """One resource over one period.

    ``booked`` counts the appointments it serves (the substitute's after a 替诊) scheduled in
    the period and not cancelled; ``attended`` those checked in or completed; ``utilisation``
    is the seats taken of its own slots over the seats they offered (closed slots left out).
    ``closures`` are its closures starting in the period, with the bookings they touched and
    the notices that came later than the required notice.
    """

    booked: int
    attended: int
    no_shows: int
    cancelled: int
    seats_offered: int
    seats_taken: int
    ratings: int
    rating_average: float | None
    closures: int
    closure_bookings: int
    late_notices: int

    @property
    def utilisation(self) -> float | None:
        return ratio(self.seats_taken, self.seats_offered)

    @property
    def attendance(self) -> float | None:
        return ratio(self.attended, self.attended + self.no_shows)


ZERO = ResourceFigures(0, 0, 0, 0, 0, 0, 0, None, 0, 0, 0)


def _counts(status: Any) -> tuple[Any, ...]:
    return (count_where(status != AppointmentStatus.CANCELLED),
            count_where(status.in_((AppointmentStatus.CHECKED_IN, AppointmentStatus.COMPLETED))),
            count_where(status == AppointmentStatus.NO_SHOW),
            count_where(status == AppointmentStatus.CANCELLED))


async def resources_figures(session: AsyncSession, centre: Centre, period: Period,
                            resource_ids: Sequence[int] | None = None) -> dict[int, ResourceFigures]:
    """The figures of every doctor and window (or of ``resource_ids``) over ``period`` (local
    days, both ends included), in four statements whatever their number: one per kind of row,
    grouped by resource. A resource with nothing in the period is left out (its figures are
    ``ZERO``)."""
    def only(column: Any) -> Any:
        return true() if resource_ids is None else column.in_(list(resource_ids))

    in_period = (Appointment.resource_id.is_not(None), only(Appointment.resource_id),
                 Appointment.local_date >= period.first, Appointment.local_date <= period.last)
    counts = {row[0]: row[1:] for row in (await session.execute(
        select(Appointment.resource_id, *_counts(Appointment.status)).where(*in_period)
        .group_by(Appointment.resource_id))).all()}
    seats = {row[0]: row[1:] for row in (await session.execute(select(
        Slot.resource_id, sum_where(None, Slot.capacity),
        sum_where(None, Slot.booked + Slot.offline_booked))
        .join(Service, Service.id == Slot.service_id)
        .where(Slot.resource_id.is_not(None), only(Slot.resource_id),
               Slot.local_date >= period.first, Slot.local_date <= period.last, ~slot_closed())
        .group_by(Slot.resource_id))).all()}
    ratings = {row[0]: row[1:] for row in (await session.execute(
        select(Appointment.resource_id, func.count(Rating.id), func.avg(Rating.level))
        .join(Appointment, Appointment.id == Rating.appointment_id).where(*in_period)
        .group_by(Appointment.resource_id))).all()}
    start = at_local(period.first, dt.time(0), centre.tz)
    end = at_local(period.last + dt.timedelta(days=1), dt.time(0), centre.tz)
    closures = {row[0]: row[1:] for row in (await session.execute(select(
        Closure.resource_id, func.count(Closure.id), func.coalesce(func.sum(Closure.affected), 0),
        func.coalesce(func.sum(Closure.late_notices), 0))
        .where(Closure.resource_id.is_not(None), only(Closure.resource_id),
               Closure.starts_at >= start, Closure.starts_at < end)
        .group_by(Closure.resource_id))).all()}
    found: dict[int, ResourceFigures] = {}
    for resource_id in counts.keys() | seats.keys() | ratings.keys() | closures.keys():
        if resource_id is None:     # left out by every statement; said for the type checker
            continue
        booked, attended, no_shows, cancelled = counts.get(resource_id, (0, 0, 0, 0))
        offered, taken = seats.get(resource_id, (0, 0))
        rated, average = ratings.get(resource_id, (0, None))
        closed, touched, late = closures.get(resource_id, (0, 0, 0))
        found[resource_id] = ResourceFigures(
            int(booked), int(attended), int(no_shows), int(cancelled), int(offered), int(taken),
            int(rated), float(average) if average is not None else None,
            int(closed), int(touched), int(late))
    return found


async def resource_figures(session: AsyncSession, centre: Centre, period: Period,
                           resource_id: int) -> ResourceFigures:
    """The figures of one doctor or window over ``period`` (local days, both ends included)."""
    return (await resources_figures(session, centre, period, [resource_id])).get(resource_id, ZERO)


def buckets(period: Period) -> list[Period]:
    """The points of one resource's chart over ``period``: each day up to two weeks, else each
    calendar week (Monday to Sunday, the first and last cut to the period)."""
    if period.days <= 14:
        return [Period("range", day, day) for day in
                (period.first + dt.timedelta(days=n) for n in range(period.days))]
    points, first = [], period.first
    while first <= period.last:
        last = min(first + dt.timedelta(days=6 - first.weekday()), period.last)
        points.append(Period("range", first, last))
        first = last + dt.timedelta(days=1)
    return points


async def resource_series(session: AsyncSession, centre: Centre, period: Period,
                          resource_id: int) -> list[tuple[Period, ResourceFigures]]:
    """One resource's figures day by day (or week by week, see ``buckets``), as its figures over
    each point would be, in four statements whatever the number of points: the rows are
    grouped by local date (closures read one by one: a resource has few) and added up per
    point."""
    in_period = (Appointment.resource_id == resource_id, Appointment.local_date >= period.first,
                 Appointment.local_date <= period.last)
    counts = {row[0]: row[1:] for row in (await session.execute(
        select(Appointment.local_date, *_counts(Appointment.status)).where(*in_period)
        .group_by(Appointment.local_date))).all()}
    seats = {row[0]: row[1:] for row in (await session.execute(select(
        Slot.local_date, sum_where(None, Slot.capacity),
        sum_where(None, Slot.booked + Slot.offline_booked))
        .join(Service, Service.id == Slot.service_id)
        .where(Slot.resource_id == resource_id, Slot.local_date >= period.first,
               Slot.local_date <= period.last, ~slot_closed())
        .group_by(Slot.local_date))).all()}
    ratings = {row[0]: row[1:] for row in (await session.execute(
        select(Appointment.local_date, func.count(Rating.id), func.coalesce(func.sum(Rating.level), 0))
        .join(Appointment, Appointment.id == Rating.appointment_id).where(*in_period)
        .group_by(Appointment.local_date))).all()}
    start = at_local(period.first, dt.time(0), centre.tz)
    end = at_local(period.last + dt.timedelta(days=1), dt.time(0), centre.tz)
    closures = (await session.execute(select(Closure.starts_at, Closure.affected,
                                             Closure.late_notices)
                                      .where(Closure.resource_id == resource_id,
                                             Closure.starts_at >= start,
                                             Closure.starts_at < end))).all()

    def add(rows: Mapping[Any, Sequence[Any]], part: Period, width: int) -> list[int]:
        totals = [0] * width
        for day, values in rows.items():
            if part.first <= _day(day) <= part.last:
                totals = [total + int(value or 0) for total, value in zip(totals, values, strict=True)]
        return totals

    series = []
    for part in buckets(period):
        booked, attended, no_shows, cancelled = add(counts, part, 4)
        offered, taken = add(seats, part, 2)
        rated, level_sum = add(ratings, part, 2)
        part_start = at_local(part.first, dt.time(0), centre.tz)
        part_end = at_local(part.last + dt.timedelta(days=1), dt.time(0), centre.tz)
        inside = [row for row in closures if part_start <= row.starts_at < part_end]
        series.append((part, ResourceFigures(
            booked, attended, no_shows, cancelled, offered, taken, rated,
            level_sum / rated if rated else None, len(inside),
            sum(int(row.affected or 0) for row in inside),
            sum(int(row.late_notices or 0) for row in inside))))
    return series


def _day(value: dt.date | str) -> dt.date:
    """A local date as the database grouped it (a date; text from a driver that gives one)."""
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])
