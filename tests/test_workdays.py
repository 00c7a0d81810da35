import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.workdays import DayKind, WorkCalendar, published_through

D = dt.date
calendar = WorkCalendar()


@pytest.mark.parametrize(("day", "working", "kind"), [
    # 2026 Spring Festival: 15-23 Feb off, Sat 14 Feb and Sat 28 Feb worked (调休).
    (D(2026, 2, 13), True, DayKind.WEEKDAY),
    (D(2026, 2, 14), True, DayKind.MAKEUP_WORKDAY),
    (D(2026, 2, 15), False, DayKind.WEEKEND),
    (D(2026, 2, 16), False, DayKind.HOLIDAY),
    (D(2026, 2, 17), False, DayKind.HOLIDAY),
    (D(2026, 2, 20), False, DayKind.HOLIDAY),
    (D(2026, 2, 23), False, DayKind.HOLIDAY),
    (D(2026, 2, 24), True, DayKind.WEEKDAY),
    (D(2026, 2, 28), True, DayKind.MAKEUP_WORKDAY),
    # 2026 National Day: 1-7 Oct off, Sun 20 Sep and Sat 10 Oct worked.
    (D(2026, 9, 20), True, DayKind.MAKEUP_WORKDAY),
    (D(2026, 9, 30), True, DayKind.WEEKDAY),
    (D(2026, 10, 1), False, DayKind.HOLIDAY),
    (D(2026, 10, 5), False, DayKind.HOLIDAY),
    (D(2026, 10, 7), False, DayKind.HOLIDAY),
    (D(2026, 10, 8), True, DayKind.WEEKDAY),
    (D(2026, 10, 10), True, DayKind.MAKEUP_WORKDAY),
    (D(2026, 10, 11), False, DayKind.WEEKEND),
])
def test_official_2026_calendar(day: dt.date, working: bool, kind: DayKind) -> None:
    info = calendar.info(day)
    assert (info.working, info.kind) == (working, kind)
    assert not info.provisional


def test_makeup_working_day_names_its_holiday() -> None:
    assert calendar.info(D(2026, 2, 14)).holiday_zh == "春节"
    assert calendar.info(D(2026, 10, 10)).holiday_zh == "国庆节"
    assert "调休" in calendar.info(D(2026, 9, 20)).describe()


def test_date_arithmetic_across_the_spring_festival() -> None:
    assert calendar.previous_working_day(D(2026, 2, 24)) == D(2026, 2, 14)
    assert calendar.next_working_day(D(2026, 2, 14)) == D(2026, 2, 24)
    assert calendar.next_working_day(D(2026, 2, 14), include=True) == D(2026, 2, 14)
    assert calendar.add_working_days(D(2026, 2, 13), 1) == D(2026, 2, 14)
    assert calendar.add_working_days(D(2026, 2, 13), 2) == D(2026, 2, 24)
    assert calendar.add_working_days(D(2026, 2, 24), -1) == D(2026, 2, 14)
    # February 2026: 20 weekdays minus 5 holiday weekdays (16,17,18,19,20,23 = 6) plus 2 Saturdays.
    assert calendar.working_days_between(D(2026, 2, 1), D(2026, 3, 1)) == 20 - 6 + 2
    assert calendar.working_days_between(D(2026, 3, 1), D(2026, 2, 1)) == -16
    assert calendar.working_days_from(D(2026, 9, 30), 3) == [D(2026, 9, 30), D(2026, 10, 8), D(2026, 10, 9)]


def test_centre_overrides_win_and_are_not_provisional() -> None:
    year = published_through() + 1
    centre = WorkCalendar(closed=[D(2026, 12, 31)], extra_working=[D(2026, 10, 3), D(year, 1, 2)])
    assert centre.info(D(2026, 12, 31)).kind == DayKind.CENTRE_CLOSED
    assert not centre.is_working_day(D(2026, 12, 31))
    assert centre.info(D(2026, 10, 3)).working
    assert not centre.info(D(year, 1, 2)).provisional


def test_years_after_the_last_notice_are_provisional() -> None:
    later = published_through() + 1
    info = calendar.info(D(later, 10, 1))
    assert info.provisional and not info.working
    assert "provisional" in info.describe()


@given(st.dates(min_value=D(1, 1, 1), max_value=D(9998, 12, 1)))
def test_any_date_of_any_year_gets_an_answer(day: dt.date) -> None:
    info = calendar.info(day)
    assert info.day == day
    nxt = calendar.next_working_day(day)
    assert nxt > day and calendar.is_working_day(nxt)
