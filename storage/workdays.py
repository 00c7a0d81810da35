"""China's working-day calendar: statutory holidays, make-up working days (调休), and the
centre's own closed and extra working dates.

The official calendar comes from the ``holidays`` package. Its dates for years after the last
State Council notice it knows are its own extrapolation (statutory days, no make-up working
days), so such dates are marked provisional until the package, or the centre, confirms them.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import holidays
from holidays.countries.china import ChinaStaticHolidays

MAX_SCAN_DAYS = 400  # no gap between working days is longer than this, whatever a centre sets


class DayKind(enum.StrEnum):
    WEEKDAY = "weekday"
    WEEKEND = "weekend"
    HOLIDAY = "holiday"
    MAKEUP_WORKDAY = "makeup_workday"    # a weekend day worked to bridge a holiday (调休上班)
    CENTRE_CLOSED = "centre_closed"
    CENTRE_OPEN = "centre_open"


@dataclass(frozen=True)
class DayInfo:
    day: dt.date
    working: bool
    kind: DayKind
    holiday_zh: str | None = None
    holiday_en: str | None = None
    provisional: bool = False
    note: str | None = None

    def describe(self) -> str:
        """One line for operators, e.g. "working day: make-up working day (调休) for 春节"."""
        state = "working day" if self.working else "closed"
        reason = {
            DayKind.WEEKDAY: "ordinary weekday",
            DayKind.WEEKEND: "weekend",
            DayKind.HOLIDAY: "public holiday",
            DayKind.MAKEUP_WORKDAY: "make-up working day (调休上班)",
            DayKind.CENTRE_CLOSED: "closed by the centre",
            DayKind.CENTRE_OPEN: "opened by the centre",
        }[self.kind]
        if self.holiday_zh:
            reason += f" {self.holiday_zh} / {self.holiday_en}"
        if self.note:
            reason += f" ({self.note})"
        if self.provisional:
            reason += " [provisional: the official notice for this year is not published yet]"
        return f"{state}: {reason}"


@functools.cache
def published_through() -> int:
    """The last year whose official holiday notice the calendar data includes."""
    return max(ChinaStaticHolidays.special_public_holidays)


@functools.lru_cache(maxsize=64)
def _official_year(year: int) -> tuple[dict[dt.date, tuple[str, str]], frozenset[dt.date]]:
    """Holidays (date -> zh, en name) and make-up working days of one year."""
    try:
        zh = holidays.China(years=year, language="zh_CN")
        en = holidays.China(years=year, language="en_US")
        names = {day: (zh[day], en.get(day, zh[day])) for day in zh}
        return names, frozenset(d for d in zh.weekend_workdays if d.year == year)
    except (ValueError, KeyError, OverflowError, NotImplementedError):
        # Outside the years the package can compute: weekends only, and provisional.
        return {}, frozenset()


class WorkCalendar:
    """Which days a centre works, and the date arithmetic the booking rules need."""

    def __init__(self, closed: Iterable[dt.date] = (), extra_working: Iterable[dt.date] = (),
                 overrides: Mapping[dt.date, tuple[bool, str]] | None = None) -> None:
        self._centre: dict[dt.date, tuple[bool, str | None]] = {}
        for day in closed:
            self._centre[day] = (False, None)
        for day in extra_working:
            self._centre[day] = (True, None)
        for day, (working, note) in (overrides or {}).items():
            self._centre[day] = (working, note)
        self._known: dict[dt.date, DayInfo] = {}   # a calendar never changes once built

    def info(self, day: dt.date) -> DayInfo:
        """Whether ``day`` is a working day, and why."""
        known = self._known.get(day)
        if known is None:
            if len(self._known) > 20_000:
                self._known.clear()
            known = self._known[day] = self._info(day)
        return known

    def _info(self, day: dt.date) -> DayInfo:
        names, makeup = _official_year(day.year)
        name = names.get(day)
        provisional = day.year > published_through() or (not names and not makeup)
        if day in self._centre:
            working, note = self._centre[day]
            kind = DayKind.CENTRE_OPEN if working else DayKind.CENTRE_CLOSED
            zh, en = _plain(name) if name else (None, None)
            return DayInfo(day, working, kind, zh, en, provisional=False, note=note)
        if day in makeup:
            zh, en = _makeup_reason(day, names)
            return DayInfo(day, True, DayKind.MAKEUP_WORKDAY, zh, en, provisional=provisional)
        if name is not None:
            if _is_substitute_label(name[0]):
                name = _nearest_holiday(day, names) or name
            return DayInfo(day, False, DayKind.HOLIDAY, *_plain(name), provisional=provisional)
        if day.weekday() >= 5:
            return DayInfo(day, False, DayKind.WEEKEND, provisional=provisional)
        return DayInfo(day, True, DayKind.WEEKDAY, provisional=provisional)

    def is_working_day(self, day: dt.date) -> bool:
        return self.info(day).working

    def next_working_day(self, day: dt.date, *, include: bool = False) -> dt.date:
        """The first working day after ``day`` (or ``day`` itself when ``include`` and working)."""
        return self._step(day, 1, include)

    def previous_working_day(self, day: dt.date, *, include: bool = False) -> dt.date:
        """The last working day before ``day`` (or ``day`` itself when ``include`` and working)."""
        return self._step(day, -1, include)

    def add_working_days(self, day: dt.date, count: int) -> dt.date:
        """Move ``count`` working days from ``day`` (backwards when negative)."""
        for _ in range(abs(count)):
            day = self._step(day, 1 if count > 0 else -1, False)
        return day

    def working_days_between(self, start: dt.date, end: dt.date) -> int:
        """How many working days lie in [start, end) (negative if end is before start)."""
        if end < start:
            return -self.working_days_between(end, start)
        return sum(self.is_working_day(start + dt.timedelta(days=i))
                   for i in range((end - start).days))

    def working_days_from(self, start: dt.date, count: int) -> list[dt.date]:
        """The next ``count`` working days starting at ``start`` (inclusive)."""
        days: list[dt.date] = []
        day = start
        while len(days) < count:
            if self.is_working_day(day):
                days.append(day)
            day += dt.timedelta(days=1)
        return days

    def _step(self, day: dt.date, direction: int, include: bool) -> dt.date:
        if include and self.is_working_day(day):
            return day
        for _ in range(MAX_SCAN_DAYS):
            day += dt.timedelta(days=direction)
            if self.is_working_day(day):
                return day
        raise ValueError(f"no working day within {MAX_SCAN_DAYS} days of {day}")


_QUALIFIER = re.compile(r"\s*(（[^）]*）|\([^)]*\))$")


def _is_substitute_label(name: str) -> bool:
    return name.startswith("休息日")


def _plain(name: tuple[str, str]) -> tuple[str, str]:
    """"国庆节（补假）" / "National Day (observed)" -> "国庆节" / "National Day"."""
    return _QUALIFIER.sub("", name[0]), _QUALIFIER.sub("", name[1])


def _nearest_holiday(day: dt.date, names: Mapping[dt.date, tuple[str, str]]
                     ) -> tuple[str, str] | None:
    for distance in range(1, 10):
        for candidate in (day - dt.timedelta(days=distance), day + dt.timedelta(days=distance)):
            name = names.get(candidate)
            if name and not _is_substitute_label(name[0]):
                return _plain(name)
    return None


def _makeup_reason(day: dt.date, names: Mapping[dt.date, tuple[str, str]]
                   ) -> tuple[str, str] | tuple[None, None]:
    """Name the holiday a make-up working day pays for (the day off labelled with this date)."""
    for off_day, (zh, _en) in names.items():
        if day.isoformat() in zh:
            holiday = _nearest_holiday(off_day, names)
            if holiday:
                return holiday
    return None, None
