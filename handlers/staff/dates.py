"""Dates and times as staff type them: "11-25", "2026-11-25", "11月25日", "today"/"今天",
"14:00", and periods made of them."""

from __future__ import annotations

import datetime as dt
import re

from handlers.context import Ctx
from storage.rules import at_local

_DATE = re.compile(r"^(?:(\d{4})-)?(\d{1,2})-(\d{1,2})$")
_DATE_ZH = re.compile(r"^(?:(\d{4})年)?(\d{1,2})月(\d{1,2})[日号]$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_TIME_RANGE = re.compile(r"^(\d{1,2}:\d{2})-(\d{1,2}:\d{2})$")


def parse_day(ctx: Ctx, text: str) -> dt.date | None:
    """"11-25", "2026-11-25", "11月25日", "today"/"今天", "tomorrow"/"明天"."""
    word = text.strip().lower()
    if word in ("today", "今天"):
        return ctx.today
    if word in ("tomorrow", "明天"):
        return ctx.today + dt.timedelta(days=1)
    match = _DATE.match(word) or _DATE_ZH.match(word)
    if not match:
        return None
    year = int(match.group(1)) if match.group(1) else ctx.today.year
    try:
        day = dt.date(year, int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None
    if not match.group(1) and day < ctx.today - dt.timedelta(days=180):
        day = day.replace(year=year + 1)  # "01-05" said in November is next January
    return day


def parse_clock(text: str) -> dt.time | None:
    match = _TIME.match(text.strip())
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        return None
    return dt.time(int(match.group(1)), int(match.group(2)))


def parse_when(ctx: Ctx, text: str) -> dt.datetime | None:
    """A local date and time like "11-25 14:00"."""
    parts = text.split()
    if len(parts) != 2:
        return None
    day, clock = parse_day(ctx, parts[0]), parse_clock(parts[1])
    if day is None or clock is None:
        return None
    return at_local(day, clock, ctx.centre.tz)


def parse_range(ctx: Ctx, words: list[str]) -> tuple[dt.datetime, dt.datetime, int] | None:
    """A period from the leading words: "11-24", "11-24 09:00-12:00", "11-24 11-26",
    "11-24 09:00 11-25 12:00". Returns (start, end, words used), or None."""
    tz = ctx.centre.tz
    first = parse_day(ctx, words[0]) if words else None
    if first is None:
        return None
    second = words[1] if len(words) > 1 else ""
    span = _TIME_RANGE.match(second)
    if span:
        opens, closes = parse_clock(span.group(1)), parse_clock(span.group(2))
        if opens is None or closes is None:
            return None
        return at_local(first, opens, tz), at_local(first, closes, tz), 2
    clock = parse_clock(second) if second else None
    if clock is not None:
        third = parse_day(ctx, words[2]) if len(words) > 2 else None
        end_clock = parse_clock(words[3]) if len(words) > 3 else None
        if third is not None and end_clock is not None:
            return at_local(first, clock, tz), at_local(third, end_clock, tz), 4
        end_clock = parse_clock(words[2]) if len(words) > 2 else None
        if end_clock is not None:
            return at_local(first, clock, tz), at_local(first, end_clock, tz), 3
        return None
    last = parse_day(ctx, second) if second else None
    if last is not None:
        return (at_local(first, dt.time(0), tz),
                at_local(last + dt.timedelta(days=1), dt.time(0), tz), 2)
    return (at_local(first, dt.time(0), tz),
            at_local(first + dt.timedelta(days=1), dt.time(0), tz), 1)
