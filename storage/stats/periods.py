"""The period and the service or department a manager asks figures for, as they type them."""

from __future__ import annotations

import calendar
import datetime as dt
import enum
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Service
from storage.rules import at_local
from storage.services import match_service, service_ids_of

MAX_PERIOD_DAYS = 366


_ALIASES = {
    "today": "today", "今天": "today", "今日": "today",
    "week": "week", "本周": "week",
    "month": "month", "本月": "month",
}


_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")


_RANGE = re.compile(r"^(.+?)\s*(?:\.\.|~|至)\s*(.+)$")


class StatsErrorCode(enum.StrEnum):
    UNKNOWN_PERIOD = "unknown_period"
    BAD_DATE = "bad_date"
    BACKWARDS_RANGE = "backwards_range"
    RANGE_TOO_LONG = "range_too_long"
    UNKNOWN_SCOPE = "unknown_scope"
    AMBIGUOUS_SCOPE = "ambiguous_scope"


class StatsError(ValueError):
    """A manager's request the figures cannot answer; ``code`` names the problem for the chat's
    message, ``details`` the facts it needs (the text typed, the limit...)."""

    def __init__(self, code: StatsErrorCode, /, **details: Any) -> None:
        super().__init__(code.value)
        self.code = code
        self.details = details


@dataclass(frozen=True)
class Period:
    """A range of local calendar days, both ends included."""

    kind: Literal["today", "week", "month", "range"]
    first: dt.date
    last: dt.date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def label(self) -> str:
        if self.first == self.last:
            return self.first.isoformat()
        return f"{self.first.isoformat()}..{self.last.isoformat()}"

    def starts_at(self, tz: ZoneInfo) -> dt.datetime:
        """The first instant of the period (local midnight), in UTC."""
        return at_local(self.first, dt.time(0), tz)

    def ends_at(self, tz: ZoneInfo) -> dt.datetime:
        """The instant just after the period (the next local midnight), in UTC."""
        return at_local(self.last + dt.timedelta(days=1), dt.time(0), tz)

    def previous(self) -> Period:
        """The period to compare with: the same number of days just before; for a calendar
        month, the previous calendar month (环比), which is what a manager compares a month with."""
        if self.kind == "month":
            last = self.first - dt.timedelta(days=1)
            return Period("month", last.replace(day=1), last)
        return Period(self.kind, self.first - dt.timedelta(days=self.days),
                      self.first - dt.timedelta(days=1))


def _parse_date(text: str) -> dt.date:
    match = _DATE.match(text)
    if match is None:
        raise StatsError(StatsErrorCode.UNKNOWN_PERIOD, text=text)
    try:
        return dt.date(*(int(part) for part in match.groups()))
    except ValueError:
        raise StatsError(StatsErrorCode.BAD_DATE, text=text) from None


def parse_period(text: str | None, now: dt.datetime, tz: ZoneInfo, *,
                 max_days: int = MAX_PERIOD_DAYS) -> Period:
    """Read a period as a manager types it, in the centre's time zone.

    ``today`` (今天), ``week`` (本周: Monday to Sunday of this week), ``month`` (本月: this
    calendar month), one day ``YYYY-MM-DD``, or a range ``YYYY-MM-DD..YYYY-MM-DD`` (both days
    included; ``~`` or ``至`` also separate). Empty means today. Full-width characters are
    accepted.

    Returns:
        The period.

    Raises:
        StatsError: UNKNOWN_PERIOD (text), BAD_DATE (text: shaped like a date but no such day),
            BACKWARDS_RANGE (first, last), RANGE_TOO_LONG (days, limit).
    """
    cleaned = unicodedata.normalize("NFKC", text or "").strip().lower()
    today = now.astimezone(tz).date()
    kind = _ALIASES.get(cleaned or "today")
    if kind == "today":
        return Period("today", today, today)
    if kind == "week":
        monday = today - dt.timedelta(days=today.weekday())
        return Period("week", monday, monday + dt.timedelta(days=6))
    if kind == "month":
        days_in_month = calendar.monthrange(today.year, today.month)[1]
        return Period("month", today.replace(day=1), today.replace(day=days_in_month))
    match = _RANGE.match(cleaned)
    first, last = ((_parse_date(match.group(1)), _parse_date(match.group(2))) if match
                   else (_parse_date(cleaned),) * 2)
    if last < first:
        raise StatsError(StatsErrorCode.BACKWARDS_RANGE, first=first, last=last)
    days = (last - first).days + 1
    if days > max_days:
        raise StatsError(StatsErrorCode.RANGE_TOO_LONG, days=days, limit=max_days)
    return Period("range", first, last)


@dataclass(frozen=True)
class Scope:
    """The figures of one service or one department instead of the whole centre."""

    kind: Literal["service", "department"]
    code: str
    name_zh: str
    name_en: str
    service_ids: tuple[int, ...]


async def resolve_scope(session: AsyncSession, code: str | None) -> Scope | None:
    """Find the service or department a manager named, as every staff command does
    (``storage.services.match_service``: code, name in either language, or an unambiguous
    part of it; services first).

    Returns:
        The scope, or None for the whole centre when ``code`` is empty.

    Raises:
        StatsError: UNKNOWN_SCOPE or AMBIGUOUS_SCOPE (code, matched: the ``Matched`` with the
            candidates or every service to list).
    """
    if code is None or not code.strip():
        return None
    wanted = unicodedata.normalize("NFKC", code).strip()
    matched = await match_service(session, wanted)
    found = matched.found
    if found is None:
        raise StatsError(StatsErrorCode.AMBIGUOUS_SCOPE if matched.ambiguous
                         else StatsErrorCode.UNKNOWN_SCOPE, code=wanted, matched=matched)
    kind: Literal["service", "department"] = "service" if isinstance(found, Service) else "department"
    return Scope(kind, found.code, found.name_zh, found.name_en,
                 await service_ids_of(session, found))
