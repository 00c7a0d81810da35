"""Manager figures (/stats, charts, exports): what happened in a period, counted in the database.

Every number is an aggregate query (COUNT/SUM/AVG with CASE) over an indexed range, so a month
over a million appointments stays well under a second; nothing loops over appointments in
Python. The current and the previous period are counted by the same query, split by a CASE on
the period boundary, which halves the scans.

What each figure counts, so the parts add up (``Figures.problems`` checks that they do):

- bookings made: appointments *created* in the period, by channel; walk-in and phone bookings
  by staff (``offline``) count as staff whatever channel recorded them.
- appointments, cancellations, no-shows: appointments *scheduled* in the period (their local
  date), so ``scheduled = held + cancelled`` and ``held = booked + checked in + completed +
  no-shows``. The no-show rate (失约率) divides no-shows by the appointments held whose time has
  come (started, or already completed / marked a no-show).
- utilisation: online seats booked / online seats offered by the slots of the period, leaving
  out slots the centre closed (停办/停诊).
- remaining seats (剩余号源): online seats a citizen could still book now, today and the next
  six days (released, not closed, before the booking stop).
- ratings and complaints by when they were given / opened; hand-offs by when they were opened;
  failed notifications by when they were due. Hand-offs, blocks and notifications belong to the
  whole centre (they carry no service), so a service filter does not narrow them
  (``CENTRE_WIDE``).
"""

from __future__ import annotations

import calendar
import datetime as dt
import enum
import re
import unicodedata
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Integer,
    and_,
    case,
    cast,
    exists,
    extract,
    false,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession

from storage.catalog import ServiceDef
from storage.centre import Centre
from storage.identity import mask_mobile, mask_name
from storage.models import (
    Appointment,
    AppointmentStatus,
    Block,
    CancelKind,
    Channel,
    Closure,
    Complaint,
    Department,
    Handoff,
    Outbox,
    OutboxStatus,
    Person,
    Rating,
    Service,
    Slot,
)
from storage.rules import at_local, last_released_day
from storage.slots import free_seats_column

MAX_PERIOD_DAYS = 366
REMAINING_DAYS = 7
SATISFIED_LEVEL = 4  # 满意 (4) and 非常满意 (5) on the five-level 好差评 scale
CENTRE_WIDE = ("handoffs", "notifications", "blocked_now")

_ALIASES = {
    "today": "today", "今天": "today", "今日": "today",
    "week": "week", "本周": "week",
    "month": "month", "本月": "month",
}
_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_RANGE = re.compile(r"^(.+?)\s*(?:\.\.|~|至)\s*(.+)$")


# --- periods and scope ------------------------------------------------------------------------


class StatsErrorCode(enum.StrEnum):
    UNKNOWN_PERIOD = "unknown_period"
    BAD_DATE = "bad_date"
    BACKWARDS_RANGE = "backwards_range"
    RANGE_TOO_LONG = "range_too_long"
    UNKNOWN_SCOPE = "unknown_scope"


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
    """Find the service or department a manager named by its catalog code (services first).

    Returns:
        The scope, or None for the whole centre when ``code`` is empty.

    Raises:
        StatsError: UNKNOWN_SCOPE (code).
    """
    if code is None or not code.strip():
        return None
    wanted = unicodedata.normalize("NFKC", code).strip()
    service = await session.scalar(select(Service).where(Service.code == wanted))
    if service is not None:
        return Scope("service", service.code, service.name_zh, service.name_en, (service.id,))
    department = await session.scalar(select(Department).where(Department.code == wanted))
    if department is None:
        raise StatsError(StatsErrorCode.UNKNOWN_SCOPE, code=wanted)
    ids = (await session.scalars(select(Service.id).where(Service.department_id == department.id)
                                 .order_by(Service.id))).all()
    return Scope("department", department.code, department.name_zh, department.name_en,
                 tuple(ids))


def _in_scope(column: Any, scope: Scope | None) -> ColumnElement[bool]:
    if scope is None:
        return true()
    if not scope.service_ids:
        return false()
    return column.in_(scope.service_ids)  # type: ignore[no-any-return]


# --- the figures --------------------------------------------------------------------------------


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class Bookings:
    """Bookings made (created) in the period, by where they came from."""

    total: int = 0
    wechat: int = 0
    telegram: int = 0
    staff: int = 0       # staff on behalf of a citizen (代办): staff channel or walk-in/phone
    terminal: int = 0


@dataclass(frozen=True)
class Appointments:
    """Appointments scheduled in the period, by what became of them."""

    scheduled: int = 0
    held: int = 0        # scheduled and not cancelled
    booked: int = 0      # still waiting for the citizen
    checked_in: int = 0
    completed: int = 0
    no_shows: int = 0
    due: int = 0         # held and their time has come: the no-show rate's denominator
    online: int = 0      # held on online seats (the slots' ``booked``)
    offline: int = 0     # held on walk-in/phone seats

    @property
    def no_show_rate(self) -> float | None:
        """失约率: no-shows / appointments held whose time has come; None when none has."""
        return _ratio(self.no_shows, self.due)


@dataclass(frozen=True)
class Cancellations:
    """Appointments scheduled in the period that were cancelled, by who cancelled and when."""

    total: int = 0
    citizen: int = 0     # by the citizen before the cutoff
    late: int = 0        # by the citizen after the cutoff (a strike)
    centre: int = 0      # the centre closed the service (停办/停诊)
    staff: int = 0       # a clerk cancelled for the citizen


@dataclass(frozen=True)
class Seats:
    """Online seats of the period's slots."""

    offered: int = 0     # online capacity of slots the centre did not close
    booked: int = 0      # online seats booked on those slots
    booked_all: int = 0  # online seats booked on every slot, closed ones included
    closed_slots: int = 0

    @property
    def utilisation(self) -> float | None:
        return _ratio(self.booked, self.offered)


@dataclass(frozen=True)
class Ratings:
    """Ratings given in the period on the five-level 好差评 scale."""

    count: int = 0
    average: float | None = None
    satisfied: int = 0   # 满意 or better
    levels: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)  # how many of level 1..5

    @property
    def satisfied_share(self) -> float | None:
        """满意率: share of ratings at 满意 or better."""
        return _ratio(self.satisfied, self.count)


@dataclass(frozen=True)
class Complaints:
    """Complaints opened in the period and how their first answer went."""

    opened: int = 0
    answered_on_time: int = 0
    answered_late: int = 0
    open_overdue: int = 0   # no answer yet, first-answer time passed
    open_pending: int = 0   # no answer yet, still in time

    @property
    def overdue(self) -> int:
        """First answer late, or still missing after it was due."""
        return self.answered_late + self.open_overdue


@dataclass(frozen=True)
class Handoffs:
    """Requests for a person (人工服务) opened in the period."""

    opened: int = 0
    claimed: int = 0
    unclaimed: int = 0
    median_minutes_to_claim: float | None = None


@dataclass(frozen=True)
class Notifications:
    """Notifications due in the period that could not be delivered."""

    failed: int = 0
    undeliverable: int = 0


@dataclass(frozen=True)
class PeriodFigures:
    """Everything counted for one period."""

    period: Period
    bookings: Bookings
    appointments: Appointments
    cancellations: Cancellations
    seats: Seats
    ratings: Ratings
    complaints: Complaints
    handoffs: Handoffs
    notifications: Notifications

    def items(self) -> list[tuple[str, int | float | None]]:
        """Every figure as (stable key, value), e.g. ("appointments.no_show_rate", 0.05)."""
        out: list[tuple[str, int | float | None]] = []
        for group in fields(self):
            if group.name == "period":
                continue
            value = getattr(self, group.name)
            for item in fields(value):
                if item.name == "levels":
                    out.extend((f"ratings.level_{n}", count)
                               for n, count in enumerate(value.levels, start=1))
                else:
                    out.append((f"{group.name}.{item.name}", getattr(value, item.name)))
            for derived in _DERIVED.get(group.name, ()):
                out.append((f"{group.name}.{derived}", getattr(value, derived)))
        return out


_DERIVED = {"appointments": ("no_show_rate",), "seats": ("utilisation",),
            "ratings": ("satisfied_share",), "complaints": ("overdue",)}


@dataclass(frozen=True)
class Figures:
    """The manager's figures for a period, with the previous period to compare with.

    ``remaining_seats`` and ``blocked_now`` are about the moment ``now``, not the period.
    """

    now: dt.datetime
    scope: Scope | None
    current: PeriodFigures
    previous: PeriodFigures
    remaining_seats: int
    blocked_now: int

    def items(self) -> list[tuple[str, int | float | None, int | float | None]]:
        """Every figure as (stable key, this period, previous period or None for a snapshot)."""
        previous = dict(self.previous.items())
        rows: list[tuple[str, int | float | None, int | float | None]] = [
            (key, value, previous[key]) for key, value in self.current.items()]
        rows.append(("remaining_seats", self.remaining_seats, None))
        rows.append(("blocked_now", self.blocked_now, None))
        return rows

    def problems(self) -> list[str]:
        """Where the parts do not add up to the totals; empty when every figure is consistent."""
        return check_totals(self)


def check_totals(figures: Figures) -> list[str]:
    """Check that the parts add up to the totals, for both periods.

    The totals are counted by their own SQL expressions, not summed from the parts, so this
    catches a part that is counted twice or not at all.

    Returns:
        One line per inconsistency (empty when there is none).
    """
    problems: list[str] = []

    def same(label: str, total: int, parts: Sequence[int]) -> None:
        if total != sum(parts):
            problems.append(f"{label}: {total} != {' + '.join(map(str, parts))}")

    def at_most(label: str, small: int, large: int) -> None:
        if small > large:
            problems.append(f"{label}: {small} > {large}")

    for name, part in (("current", figures.current), ("previous", figures.previous)):
        b, a, c = part.bookings, part.appointments, part.cancellations
        same(f"{name} bookings", b.total, (b.wechat, b.telegram, b.staff, b.terminal))
        same(f"{name} scheduled", a.scheduled, (a.held, c.total))
        same(f"{name} held", a.held, (a.booked, a.checked_in, a.completed, a.no_shows))
        same(f"{name} held by seat", a.held, (a.online, a.offline))
        same(f"{name} cancellations", c.total, (c.citizen, c.late, c.centre, c.staff))
        at_most(f"{name} completed and no-shows within due", a.completed + a.no_shows, a.due)
        at_most(f"{name} due within held", a.due, a.held)
        s = part.seats
        same(f"{name} online seats booked", s.booked_all, (a.online,))
        at_most(f"{name} seats booked within offered", s.booked, s.offered)
        at_most(f"{name} seats booked on open slots", s.booked, s.booked_all)
        r = part.ratings
        same(f"{name} ratings", r.count, r.levels)
        same(f"{name} satisfied", r.satisfied, r.levels[SATISFIED_LEVEL - 1:])
        k = part.complaints
        same(f"{name} complaints", k.opened,
             (k.answered_on_time, k.answered_late, k.open_overdue, k.open_pending))
        h = part.handoffs
        same(f"{name} hand-offs", h.opened, (h.claimed, h.unclaimed))
    return problems


# --- counting ---------------------------------------------------------------------------------


def _count(condition: ColumnElement[bool]) -> Any:
    """COUNT of the rows where ``condition`` holds (0, never NULL)."""
    return func.count(case((condition, 1)))


def _sum(condition: ColumnElement[bool] | None, value: Any) -> Any:
    expression = value if condition is None else case((condition, value), else_=0)
    return func.coalesce(func.sum(expression), 0)


def _minutes_between(dialect: str, start: Any, end: Any) -> Any:
    """Minutes from ``start`` to ``end``: each database spells interval arithmetic its own way."""
    if dialect == "postgresql":
        return extract("epoch", end - start) / 60.0
    return (func.julianday(end) - func.julianday(start)) * 1440.0


def _epoch_bucket(dialect: str, column: Any, seconds: int) -> Any:
    """The instant's number of ``seconds``-long steps since 1970 (UTC), as an integer."""
    if dialect == "postgresql":
        return func.floor(extract("epoch", column) / seconds)
    return cast(func.strftime("%s", column), Integer) // seconds


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


class _Window:
    """The previous and current period together: one query covers both, a CASE splits them."""

    def __init__(self, period: Period, tz: ZoneInfo) -> None:
        self.current = period
        self.previous = period.previous()
        self.first = self.previous.first
        self.last = period.last
        self.split_day = period.first
        self.start = self.previous.starts_at(tz)
        self.split = period.starts_at(tz)
        self.end = period.ends_at(tz)

    def by_day(self, column: Any) -> Any:
        return case((column >= self.split_day, 1), else_=0).label("is_current")

    def by_instant(self, column: Any) -> Any:
        return case((column >= self.split, 1), else_=0).label("is_current")

    def days(self, column: Any) -> ColumnElement[bool]:
        return and_(column >= self.first, column <= self.last)

    def instants(self, column: Any) -> ColumnElement[bool]:
        return and_(column >= self.start, column < self.end)


def _split(rows: Sequence[Any]) -> dict[int, Any]:
    return {int(row[0]): row[1:] for row in rows}


async def _bookings(session: AsyncSession, window: _Window,
                    scope: Scope | None) -> dict[int, Bookings]:
    by_staff = or_(Appointment.offline.is_(True), Appointment.channel == Channel.STAFF)
    online = and_(Appointment.offline.is_(False), Appointment.channel != Channel.STAFF)
    is_current = window.by_instant(Appointment.created_at)
    rows = (await session.execute(
        select(is_current, func.count(),
               _count(and_(online, Appointment.channel == Channel.WECHAT)),
               _count(and_(online, Appointment.channel == Channel.TELEGRAM)),
               _count(by_staff),
               _count(and_(online, Appointment.channel == Channel.TERMINAL)))
        .where(window.instants(Appointment.created_at), _in_scope(Appointment.service_id, scope))
        .group_by(is_current))).all()
    return {key: Bookings(*map(int, values)) for key, values in _split(rows).items()}


async def _appointments(session: AsyncSession, window: _Window, scope: Scope | None,
                        now: dt.datetime) -> dict[int, tuple[Appointments, Cancellations]]:
    status = Appointment.status
    held = status != AppointmentStatus.CANCELLED
    kind = Appointment.cancel_kind
    is_current = window.by_day(Appointment.local_date)
    rows = (await session.execute(
        select(is_current, func.count(), _count(held),
               _count(status == AppointmentStatus.BOOKED),
               _count(status == AppointmentStatus.CHECKED_IN),
               _count(status == AppointmentStatus.COMPLETED),
               _count(status == AppointmentStatus.NO_SHOW),
               _count(and_(held, or_(Appointment.starts_at <= now, status.in_(
                   [AppointmentStatus.COMPLETED, AppointmentStatus.NO_SHOW])))),
               _count(and_(held, Appointment.offline.is_(False))),
               _count(and_(held, Appointment.offline.is_(True))),
               _count(status == AppointmentStatus.CANCELLED),
               _count(and_(status == AppointmentStatus.CANCELLED, kind == CancelKind.CITIZEN)),
               _count(and_(status == AppointmentStatus.CANCELLED, kind == CancelKind.LATE)),
               _count(and_(status == AppointmentStatus.CANCELLED, kind == CancelKind.CENTRE)),
               _count(and_(status == AppointmentStatus.CANCELLED, kind == CancelKind.STAFF)))
        .where(window.days(Appointment.local_date), _in_scope(Appointment.service_id, scope))
        .group_by(is_current))).all()
    return {key: (Appointments(*map(int, values[:9])), Cancellations(*map(int, values[9:])))
            for key, values in _split(rows).items()}


def _slot_closed() -> ColumnElement[bool]:
    """The slot lies in a closure of its service, its department or the whole centre."""
    return exists().where(
        Closure.starts_at < Slot.ends_at, Closure.ends_at > Slot.starts_at,
        or_(Closure.service_id == Slot.service_id,
            and_(Closure.service_id.is_(None), Closure.department_id == Service.department_id),
            and_(Closure.service_id.is_(None), Closure.department_id.is_(None))))


async def _seats(session: AsyncSession, window: _Window, scope: Scope | None) -> dict[int, Seats]:
    open_slot = ~_slot_closed()
    is_current = window.by_day(Slot.local_date)
    rows = (await session.execute(
        select(is_current, _sum(open_slot, Slot.online_capacity), _sum(open_slot, Slot.booked),
               _sum(None, Slot.booked), _count(~open_slot))
        .join(Service, Service.id == Slot.service_id)
        .where(window.days(Slot.local_date), _in_scope(Slot.service_id, scope))
        .group_by(is_current))).all()
    return {key: Seats(*map(int, values)) for key, values in _split(rows).items()}


async def _ratings(session: AsyncSession, window: _Window,
                   scope: Scope | None) -> dict[int, Ratings]:
    is_current = window.by_instant(Rating.created_at)
    query = (select(is_current, func.count(), func.avg(Rating.level),
                    _count(Rating.level >= SATISFIED_LEVEL),
                    *(_count(Rating.level == level) for level in range(1, 6)))
             .where(window.instants(Rating.created_at)).group_by(is_current))
    if scope is not None:  # only ratings of appointments can belong to a service
        query = query.join(Appointment, Appointment.id == Rating.appointment_id).where(
            _in_scope(Appointment.service_id, scope))
    result: dict[int, Ratings] = {}
    rows = _split((await session.execute(query)).all())
    for key, (count, average, satisfied, *levels) in rows.items():
        result[key] = Ratings(int(count), float(average) if average is not None else None,
                              int(satisfied), tuple(int(n) for n in levels))  # type: ignore[arg-type]
    return result


async def _complaints(session: AsyncSession, window: _Window, scope: Scope | None,
                      now: dt.datetime) -> dict[int, Complaints]:
    answered, due = Complaint.answered_at, Complaint.first_answer_due
    is_current = window.by_instant(Complaint.opened_at)
    query = (select(is_current, func.count(),
                    _count(and_(answered.is_not(None), answered <= due)),
                    _count(and_(answered.is_not(None), answered > due)),
                    _count(and_(answered.is_(None), due < now)),
                    _count(and_(answered.is_(None), due >= now)))
             .where(window.instants(Complaint.opened_at)).group_by(is_current))
    if scope is not None:  # a complaint about no appointment belongs to no service
        query = query.join(Appointment, Appointment.id == Complaint.appointment_id).where(
            _in_scope(Appointment.service_id, scope))
    rows = (await session.execute(query)).all()
    return {key: Complaints(*map(int, values)) for key, values in _split(rows).items()}


async def _median_minutes_to_claim(session: AsyncSession, start: dt.datetime, end: dt.datetime,
                                   claimed: int) -> float | None:
    """The median in SQL both databases speak: sort, skip to the middle, take one or two."""
    if not claimed:
        return None
    minutes = _minutes_between(_dialect(session), Handoff.opened_at, Handoff.claimed_at)
    middle = (await session.scalars(
        select(minutes).where(Handoff.opened_at >= start, Handoff.opened_at < end,
                              Handoff.claimed_at.is_not(None))
        .order_by(minutes).offset((claimed - 1) // 2).limit(2 - claimed % 2))).all()
    return round(sum(float(m) for m in middle) / len(middle), 2)  # julianday is not exact


async def _handoffs(session: AsyncSession, window: _Window) -> dict[int, Handoffs]:
    is_current = window.by_instant(Handoff.opened_at)
    rows = _split((await session.execute(
        select(is_current, func.count(), _count(Handoff.claimed_at.is_not(None)),
               _count(Handoff.claimed_at.is_(None)))
        .where(window.instants(Handoff.opened_at)).group_by(is_current))).all())
    result = {}
    for key, (opened, claimed, unclaimed) in rows.items():
        start, end = (window.split, window.end) if key else (window.start, window.split)
        median = await _median_minutes_to_claim(session, start, end, int(claimed))
        result[key] = Handoffs(int(opened), int(claimed), int(unclaimed), median)
    return result


async def _notifications(session: AsyncSession, window: _Window) -> dict[int, Notifications]:
    is_current = window.by_instant(Outbox.due_at)
    rows = (await session.execute(
        select(is_current, _count(Outbox.status == OutboxStatus.FAILED),
               _count(Outbox.status == OutboxStatus.UNDELIVERABLE))
        .where(Outbox.status.in_([OutboxStatus.FAILED, OutboxStatus.UNDELIVERABLE]),
               window.instants(Outbox.due_at))
        .group_by(is_current))).all()
    return {key: Notifications(*map(int, values)) for key, values in _split(rows).items()}


async def remaining_seats(session: AsyncSession, centre: Centre, now: dt.datetime,
                          scope: Scope | None = None, days: int = REMAINING_DAYS) -> int:
    """Online seats a citizen could still book (剩余号源), today and the next ``days - 1`` days.

    A seat counts when its slot is released, not closed by the centre, and still before the
    service's booking stop and minimum lead time; holds that ran out count as free.

    Returns:
        The number of seats.
    """
    today = centre.today(now)
    services = (await session.execute(
        select(Service.id, Service.definition).where(Service.active.is_(True),
                                                     _in_scope(Service.id, scope)))).all()
    bookable: list[ColumnElement[bool]] = []
    for service_id, definition_json in services:
        definition = ServiceDef.from_json(definition_json)
        policy = centre.policy(definition)
        last = min(last_released_day(now, definition, centre.tz),
                   today + dt.timedelta(days=days - 1))
        open_days = []
        day = today
        while day <= last:  # at most ``days`` days per service: this loop is over the calendar
            stop = (at_local(centre.calendar.previous_working_day(day), policy.booking_stop,
                             centre.tz) if policy.booking_stop is not None else None)
            if stop is None or now < stop:
                open_days.append(day)
            day += dt.timedelta(days=1)
        if open_days:
            bookable.append(and_(
                Slot.service_id == service_id, Slot.local_date.in_(open_days),
                Slot.starts_at > now + dt.timedelta(minutes=policy.min_lead_minutes)))
    if not bookable:
        return 0
    stale, free = free_seats_column(now)
    total = await session.scalar(
        select(func.coalesce(func.sum(free), 0))
        .select_from(Slot).join(Service, Service.id == Slot.service_id)
        .outerjoin(stale, stale.c.slot_id == Slot.id)
        .where(Slot.local_date >= today, Slot.local_date < today + dt.timedelta(days=days),
               or_(*bookable), ~_slot_closed()))
    return int(total or 0)


async def blocked_now(session: AsyncSession, now: dt.datetime) -> int:
    """Citizens on the blacklist at ``now`` (block started, not ended, not lifted)."""
    return int(await session.scalar(
        select(func.count(func.distinct(Block.person_id)))
        .where(Block.lifted_at.is_(None), Block.starts_at <= now, Block.ends_at > now)) or 0)


async def figures(session: AsyncSession, centre: Centre, now: dt.datetime, period: Period,
                  scope: Scope | None = None) -> Figures:
    """Count every manager figure for ``period`` and the period before it.

    Args:
        period: from ``parse_period``.
        scope: one service or department (``resolve_scope``), or None for the whole centre.

    Returns:
        The figures; ``figures.problems()`` is empty when the parts add up.
    """
    window = _Window(period, centre.tz)
    bookings = await _bookings(session, window, scope)
    appointments = await _appointments(session, window, scope, now)
    seats = await _seats(session, window, scope)
    ratings = await _ratings(session, window, scope)
    complaints = await _complaints(session, window, scope, now)
    handoffs = await _handoffs(session, window)
    notifications = await _notifications(session, window)

    def part(key: int, which: Period) -> PeriodFigures:
        counted, cancelled = appointments.get(key, (Appointments(), Cancellations()))
        return PeriodFigures(which, bookings.get(key, Bookings()), counted, cancelled,
                             seats.get(key, Seats()), ratings.get(key, Ratings()),
                             complaints.get(key, Complaints()), handoffs.get(key, Handoffs()),
                             notifications.get(key, Notifications()))

    return Figures(now=now, scope=scope, current=part(1, window.current),
                   previous=part(0, window.previous),
                   remaining_seats=await remaining_seats(session, centre, now, scope),
                   blocked_now=await blocked_now(session, now))


# --- daily series for the chart ---------------------------------------------------------------


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
        return _ratio(self.booked, self.offered)


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
    bucket = _epoch_bucket(_dialect(session), Appointment.created_at, _BUCKET_SECONDS).label("q")
    made: dict[dt.date, int] = {}
    for quarter, count in (await session.execute(
            select(bucket, func.count())
            .where(Appointment.created_at >= start, Appointment.created_at < end,
                   _in_scope(Appointment.service_id, scope))
            .group_by(bucket))).all():
        day = dt.datetime.fromtimestamp(int(quarter) * _BUCKET_SECONDS, dt.UTC).astimezone(
            centre.tz).date()
        made[day] = made.get(day, 0) + int(count)
    no_shows = dict((await session.execute(
        select(Appointment.local_date, func.count())
        .where(Appointment.local_date >= period.first, Appointment.local_date <= period.last,
               Appointment.status == AppointmentStatus.NO_SHOW,
               _in_scope(Appointment.service_id, scope))
        .group_by(Appointment.local_date))).all())
    open_slot = ~_slot_closed()
    seats = {day: (int(offered), int(booked)) for day, offered, booked in (await session.execute(
        select(Slot.local_date, _sum(open_slot, Slot.online_capacity), _sum(open_slot, Slot.booked))
        .join(Service, Service.id == Slot.service_id)
        .where(Slot.local_date >= period.first, Slot.local_date <= period.last,
               _in_scope(Slot.service_id, scope))
        .group_by(Slot.local_date))).all()}
    points = []
    for offset in range(period.days):
        day = period.first + dt.timedelta(days=offset)
        offered, booked = seats.get(day, (0, 0))
        points.append(DayPoint(day, made.get(day, 0), int(no_shows.get(day, 0)), offered, booked))
    return points


# --- rows for exports ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AppointmentRow:
    """One appointment for an export, personal data masked. Times are local to the centre."""

    code: str
    service_code: str
    service_name: str
    local_date: dt.date
    starts_at: dt.datetime
    status: str
    channel: str
    offline: bool
    name: str            # masked: 张*
    mobile: str          # masked: 138****5678
    id_number: str       # the stored masked form (110***********1234), or ""
    created_at: dt.datetime
    checked_in_at: dt.datetime | None
    completed_at: dt.datetime | None
    cancelled_at: dt.datetime | None
    cancel_kind: str
    rating: int | None


EXPORT_COLUMNS = tuple(f.name for f in fields(AppointmentRow))


async def appointment_rows(session: AsyncSession, centre: Centre, period: Period,
                           scope: Scope | None = None, *,
                           locale: str = "zh-CN") -> AsyncIterator[AppointmentRow]:
    """Yield the period's appointments one by one (streamed), in start order, masked.

    Names and mobiles are masked here, ID numbers exist only in their stored masked form, so no
    export can carry them in full.

    Args:
        locale: picks the service name's language ("zh..." or anything else for English).

    Yields:
        One row per appointment scheduled in the period, cancelled ones included.
    """
    name_column = Service.name_zh if locale.lower().startswith("zh") else Service.name_en
    query = (select(Appointment.code, Service.code, name_column, Appointment.local_date,
                    Appointment.starts_at, Appointment.status, Appointment.channel,
                    Appointment.offline, Person.name, Person.mobile, Person.id_masked,
                    Appointment.created_at, Appointment.checked_in_at, Appointment.completed_at,
                    Appointment.cancelled_at, Appointment.cancel_kind, Rating.level)
             .join(Service, Service.id == Appointment.service_id)
             .join(Person, Person.id == Appointment.person_id)
             .outerjoin(Rating, Rating.appointment_id == Appointment.id)
             .where(Appointment.local_date >= period.first, Appointment.local_date <= period.last,
                    _in_scope(Appointment.service_id, scope))
             .order_by(Appointment.starts_at, Appointment.id))
    tz = centre.tz

    def local(value: dt.datetime | None) -> dt.datetime | None:
        return value.astimezone(tz) if value is not None else None

    result = await session.stream(query.execution_options(yield_per=1000))
    async for (code, service_code, service_name, day, starts_at, status, channel, offline, name,
               mobile, id_masked, created_at, checked_in_at, completed_at, cancelled_at,
               cancel_kind, level) in result:
        yield AppointmentRow(
            code=code, service_code=service_code, service_name=service_name, local_date=day,
            starts_at=starts_at.astimezone(tz), status=str(status), channel=str(channel),
            offline=bool(offline), name=mask_name(name), mobile=mask_mobile(mobile),
            id_number=id_masked or "", created_at=created_at.astimezone(tz),
            checked_in_at=local(checked_in_at), completed_at=local(completed_at),
            cancelled_at=local(cancelled_at), cancel_kind=str(cancel_kind) if cancel_kind else "",
            rating=level)
