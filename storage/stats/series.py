"""The days of a period for the manager's chart."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.centre import Centre
from storage.models import Appointment, AppointmentStatus, Service, Slot
from storage.stats.counting import dialect_of, epoch_bucket, in_scope, ratio, slot_closed, sum_where
from storage.stats.periods import Period, Scope


@dataclass(frozen=True)
class DayPoint:
    """One day of the chart: bookings made that day, no-shows among that day's appointments,
    and the day's online seats."""

    day: dt.date
    bookings: int = 0
    no_shows: int = 0
    offered: int = 0
    booked: int = 0

    @property
    def utilisation(self) -> float | None:
        return ratio(self.booked, self.offered)


_BUCKET_SECONDS = 900  # every time zone's offset is a whole number of quarter hours


async def daily_series(session: AsyncSession, centre: Centre, period: Period,
                       scope: Scope | None = None) -> list[DayPoint]:
    """Per day of ``period``: bookings made, no-shows, online seats offered and booked.

    Bookings are counted per quarter hour in the database and the quarters placed on local
    days here: SQLite has no time-zone database, and this stays exact for every zone.

    Returns:
        One point per day of the period, in order, days without anything included.
    """
    start, end = period.starts_at(centre.tz), period.ends_at(centre.tz)
    bucket = epoch_bucket(dialect_of(session), Appointment.created_at, _BUCKET_SECONDS).label("q")
    made: dict[dt.date, int] = {}
    for quarter, count in (await session.execute(
            select(bucket, func.count())
            .where(Appointment.created_at >= start, Appointment.created_at < end,
                   in_scope(Appointment.service_id, scope))
            .group_by(bucket))).all():
        day = dt.datetime.fromtimestamp(int(quarter) * _BUCKET_SECONDS, dt.UTC).astimezone(
            centre.tz).date()
        made[day] = made.get(day, 0) + int(count)
    no_shows = dict((await session.execute(
        select(Appointment.local_date, func.count())
        .where(Appointment.local_date >= period.first, Appointment.local_date <= period.last,
               Appointment.status == AppointmentStatus.NO_SHOW,
               in_scope(Appointment.service_id, scope))
        .group_by(Appointment.local_date))).all())
    open_slot = ~slot_closed()
    seats = {day: (int(offered), int(booked)) for day, offered, booked in (await session.execute(
        select(Slot.local_date, sum_where(open_slot, Slot.online_capacity), sum_where(open_slot, Slot.booked))
        .join(Service, Service.id == Slot.service_id)
        .where(Slot.local_date >= period.first, Slot.local_date <= period.last,
               in_scope(Slot.service_id, scope))
        .group_by(Slot.local_date))).all()}
    points = []
    for offset in range(period.days):
        day = period.first + dt.timedelta(days=offset)
        offered, booked = seats.get(day, (0, 0))
        points.append(DayPoint(day, made.get(day, 0), int(no_shows.get(day, 0)), offered, booked))
    return points
