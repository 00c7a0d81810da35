"""Periods as managers type them, and the figures adding up over a seeded history."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from storage.centre import Centre
from storage.db import Database
from storage.models import Appointment, Slot
from storage.seed import SeedError, booking_code, seed_history
from storage.stats.figures import figures
from storage.stats.periods import MAX_PERIOD_DAYS, Period, StatsError, StatsErrorCode, parse_period, resolve_scope
from storage.stats.series import daily_series
from tests.helpers import TZ, examples, load_demo, local

NOW = local(2026, 11, 25, 18, 0)  # a Wednesday


@pytest.mark.parametrize(("text", "expected"), [
    ("today", Period("today", dt.date(2026, 11, 25), dt.date(2026, 11, 25))),
    ("", Period("today", dt.date(2026, 11, 25), dt.date(2026, 11, 25))),
    (None, Period("today", dt.date(2026, 11, 25), dt.date(2026, 11, 25))),
    ("今天", Period("today", dt.date(2026, 11, 25), dt.date(2026, 11, 25))),
    (" WEEK ", Period("week", dt.date(2026, 11, 23), dt.date(2026, 11, 29))),
    ("本周", Period("week", dt.date(2026, 11, 23), dt.date(2026, 11, 29))),
    ("month", Period("month", dt.date(2026, 11, 1), dt.date(2026, 11, 30))),
    ("2026-11-01..2026-11-15", Period("range", dt.date(2026, 11, 1), dt.date(2026, 11, 15))),
    ("2026-11-01 ~ 2026-11-15", Period("range", dt.date(2026, 11, 1), dt.date(2026, 11, 15))),
    ("２０２６－１１－０１..２０２６－１１－１５",  # typed with a Chinese input method
     Period("range", dt.date(2026, 11, 1), dt.date(2026, 11, 15))),
    ("2026-2-3", Period("range", dt.date(2026, 2, 3), dt.date(2026, 2, 3))),
])
def test_periods(text: str | None, expected: Period) -> None:
    assert parse_period(text, NOW, TZ) == expected


def test_today_is_the_centres_day_not_utcs() -> None:
    # 01:30 in Shanghai is still the previous day in UTC.
    assert parse_period("today", local(2026, 11, 26, 1, 30), TZ).first == dt.date(2026, 11, 26)


@pytest.mark.parametrize(("text", "code", "details"), [
    ("yesterday", StatsErrorCode.UNKNOWN_PERIOD, {"text": "yesterday"}),
    ("2026-11", StatsErrorCode.UNKNOWN_PERIOD, {"text": "2026-11"}),
    ("2026-02-30", StatsErrorCode.BAD_DATE, {"text": "2026-02-30"}),
    ("2026-11-01..2026-13-01", StatsErrorCode.BAD_DATE, {"text": "2026-13-01"}),
    ("2026-11-15..2026-11-01", StatsErrorCode.BACKWARDS_RANGE,
     {"first": dt.date(2026, 11, 15), "last": dt.date(2026, 11, 1)}),
    ("2025-01-01..2026-11-01", StatsErrorCode.RANGE_TOO_LONG,
     {"days": 670, "limit": MAX_PERIOD_DAYS}),
])
def test_period_errors(text: str, code: StatsErrorCode, details: dict[str, object]) -> None:
    with pytest.raises(StatsError) as caught:
        parse_period(text, NOW, TZ)
    assert caught.value.code == code and caught.value.details == details


def test_longest_range_is_allowed() -> None:
    period = parse_period("2025-11-26..2026-11-26", NOW, TZ)
    assert period.days == MAX_PERIOD_DAYS


@pytest.mark.parametrize(("period", "previous"), [
    (Period("today", dt.date(2026, 11, 23), dt.date(2026, 11, 23)),
     Period("today", dt.date(2026, 11, 22), dt.date(2026, 11, 22))),
    (Period("week", dt.date(2026, 11, 23), dt.date(2026, 11, 29)),
     Period("week", dt.date(2026, 11, 16), dt.date(2026, 11, 22))),
    (Period("month", dt.date(2026, 3, 1), dt.date(2026, 3, 31)),
     Period("month", dt.date(2026, 2, 1), dt.date(2026, 2, 28))),
    (Period("range", dt.date(2026, 11, 10), dt.date(2026, 11, 19)),
     Period("range", dt.date(2026, 10, 31), dt.date(2026, 11, 9))),
])
def test_previous_period(period: Period, previous: Period) -> None:
    assert period.previous() == previous


def test_booking_codes_are_distinct_and_readable() -> None:
    codes = {booking_code(n) for n in range(1, 50_001)}
    assert len(codes) == 50_000
    assert not set("".join(codes)) & set("01OIL")


# --- a seeded history: the parts add up for any period and scope ------------------------------


@pytest.fixture
async def seeded(database: Database, centre: Centre) -> Database:
    async with database.session() as session:
        await load_demo(session, local(2026, 8, 1))
    report = await seed_history(database, centre, NOW, 4000, seed=7, months=3)
    assert report.appointments == 4000
    return database


async def test_seed_writes_a_consistent_history(seeded: Database, centre: Centre) -> None:
    async with seeded.read() as session:
        count = await session.scalar(select(func.count()).select_from(Appointment))
        booked = await session.scalar(select(func.sum(Slot.booked)))
        live_online = await session.scalar(select(func.count()).select_from(Appointment).where(
            Appointment.status != "cancelled", Appointment.offline.is_(False)))
        f = await figures(session, centre, NOW, parse_period("month", NOW, TZ))
    assert count == 4000 and booked == live_online
    c = f.current
    assert c.bookings.total > 0 and c.bookings.wechat > c.bookings.telegram > 0
    assert c.bookings.staff > 0 and c.appointments.completed > 0 and c.appointments.no_shows > 0
    assert 0 < c.appointments.no_show_rate < 0.2  # type: ignore[operator]
    assert c.cancellations.citizen > 0 and c.ratings.count > 0 and c.handoffs.opened > 0
    assert f.remaining_seats > 0 and f.blocked_now > 0
    assert f.problems() == []


async def test_seed_refuses_a_database_with_appointments(seeded: Database, centre: Centre) -> None:
    with pytest.raises(SeedError):
        await seed_history(seeded, centre, NOW, 10, seed=1)


days_back = st.integers(min_value=0, max_value=130)


@settings(max_examples=examples(25, on_postgres=10), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=days_back, length=st.integers(min_value=1, max_value=60),
       scope=st.sampled_from([None, "id_card", "internal_medicine", "town_centre", "outpatient"]))
async def test_parts_add_up_for_any_period(seeded: Database, centre: Centre, start: int,
                                           length: int, scope: str | None) -> None:
    first = NOW.astimezone(TZ).date() - dt.timedelta(days=start)
    period = Period("range", first, first + dt.timedelta(days=length - 1))
    async with seeded.read() as session:
        chosen = await resolve_scope(session, scope)
        f = await figures(session, centre, NOW, period, chosen)
        series = await daily_series(session, centre, period, chosen)
    assert f.problems() == []
    assert sum(p.bookings for p in series) == f.current.bookings.total
    assert sum(p.no_shows for p in series) == f.current.appointments.no_shows
    assert sum(p.offered for p in series) == f.current.seats.offered
    assert sum(p.booked for p in series) == f.current.seats.booked
