"""Figures per doctor or window over a period: bookings, attendance, no-shows, utilisation of
its seats, ratings, and its closures with their late notices (缺陷管理)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
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


async def resource_figures(session: AsyncSession, centre: Centre, period: Period,
                           resource_id: int) -> ResourceFigures:
    """The figures of one doctor or window over ``period`` (local days, both ends included)."""
    status = Appointment.status
    in_period = (Appointment.resource_id == resource_id, Appointment.local_date >= period.first,
                 Appointment.local_date <= period.last)
    booked, attended, no_shows, cancelled = (await session.execute(select(
        count_where(status != AppointmentStatus.CANCELLED),
        count_where(status.in_((AppointmentStatus.CHECKED_IN, AppointmentStatus.COMPLETED))),
        count_where(status == AppointmentStatus.NO_SHOW),
        count_where(status == AppointmentStatus.CANCELLED)).where(*in_period))).one()
    offered, taken = (await session.execute(select(
        sum_where(None, Slot.capacity), sum_where(None, Slot.booked + Slot.offline_booked))
        .join(Service, Service.id == Slot.service_id)
        .where(Slot.resource_id == resource_id, Slot.local_date >= period.first,
               Slot.local_date <= period.last, ~slot_closed()))).one()
    ratings, average = (await session.execute(select(func.count(Rating.id), func.avg(Rating.level))
                                              .join(Appointment, Appointment.id == Rating.appointment_id)
                                              .where(*in_period))).one()
    start = at_local(period.first, dt.time(0), centre.tz)
    end = at_local(period.last + dt.timedelta(days=1), dt.time(0), centre.tz)
    closures, touched, late = (await session.execute(select(
        func.count(Closure.id), func.coalesce(func.sum(Closure.affected), 0),
        func.coalesce(func.sum(Closure.late_notices), 0))
        .where(Closure.resource_id == resource_id, Closure.starts_at >= start,
               Closure.starts_at < end))).one()
    return ResourceFigures(int(booked), int(attended), int(no_shows), int(cancelled), int(offered),
                           int(taken), int(ratings), float(average) if average is not None else None,
                           int(closures), int(touched), int(late))


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
    """One resource's figures day by day (or week by week, see ``buckets``): the same query as
    its figures over the whole period, once per point."""
    return [(part, await resource_figures(session, centre, part, resource_id))
            for part in buckets(period)]
