"""Manager figures (/stats): what happened in a period, counted in the database.

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
  failed notifications by when they were due. Figures of one service or department count only
  what belongs to it: ratings and complaints of its appointments, failed notifications about
  its appointments. Hand-offs and blocks carry no service, so they are not part of such figures
  at all (``NOT_PER_SERVICE``: left out of ``items()``, said so in the chat), rather than
  the whole centre's numbers shown as the service's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.catalog import ServiceDef
from storage.centre import Centre
from storage.models import (
    Appointment,
    AppointmentStatus,
    Block,
    CancelKind,
    Channel,
    Complaint,
    Handoff,
    Outbox,
    OutboxStatus,
    Rating,
    Service,
    Slot,
)
from storage.rules import at_local, last_released_day
from storage.slots import free_seats_column
from storage.sms import sms_figures
from storage.stats.counting import count_where, dialect_of, in_scope, minutes_between, ratio, slot_closed, sum_where
from storage.stats.periods import Period, Scope

REMAINING_DAYS = 7
SATISFIED_LEVEL = 4  # 满意 (4) and 非常满意 (5) on the five-level 好差评 scale
NOT_PER_SERVICE = ("handoffs", "blocked_now")


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
        return ratio(self.no_shows, self.due)


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
        return ratio(self.booked, self.offered)


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
        return ratio(self.satisfied, self.count)


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
class Texts:
    """Text messages (短信) handed to the provider in the period: sent, failed (refused or
    reported undelivered), delivered per receipt, the cost estimate in fen (billed messages
    times ``sms.price_fen``), and numbers that opted out."""

    sent: int = 0
    failed: int = 0
    delivered: int = 0
    cost_fen: int = 0
    opt_outs: int = 0


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
    sms: Texts = field(default_factory=Texts)

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
    blocked_now: int | None     # None for one service or department: a block has no service

    def items(self) -> list[tuple[str, int | float | None, int | float | None]]:
        """Every figure as (stable key, this period, previous period or None for a snapshot);
        for one service or department, without those that have no service."""
        previous = dict(self.previous.items())
        rows: list[tuple[str, int | float | None, int | float | None]] = [
            (key, value, previous[key]) for key, value in self.current.items()]
        rows.append(("remaining_seats", self.remaining_seats, None))
        rows.append(("blocked_now", self.blocked_now, None))
        if self.scope is not None:
            rows = [row for row in rows if row[0].split(".")[0] not in NOT_PER_SERVICE]
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
               count_where(and_(online, Appointment.channel == Channel.WECHAT)),
               count_where(and_(online, Appointment.channel == Channel.TELEGRAM)),
               count_where(by_staff),
               count_where(and_(online, Appointment.channel == Channel.TERMINAL)))
        .where(window.instants(Appointment.created_at), in_scope(Appointment.service_id, scope))
        .group_by(is_current))).all()
    return {key: Bookings(*map(int, values)) for key, values in _split(rows).items()}


async def _appointments(session: AsyncSession, window: _Window, scope: Scope | None,
                        now: dt.datetime) -> dict[int, tuple[Appointments, Cancellations]]:
    status = Appointment.status
    held = status != AppointmentStatus.CANCELLED
    kind = Appointment.cancel_kind
    is_current = window.by_day(Appointment.local_date)
    rows = (await session.execute(
        select(is_current, func.count(), count_where(held),
               count_where(status == AppointmentStatus.BOOKED),
               count_where(status == AppointmentStatus.CHECKED_IN),
               count_where(status == AppointmentStatus.COMPLETED),
               count_where(status == AppointmentStatus.NO_SHOW),
               count_where(and_(held, or_(Appointment.starts_at <= now, status.in_(
                   [AppointmentStatus.COMPLETED, AppointmentStatus.NO_SHOW])))),
               count_where(and_(held, Appointment.offline.is_(False))),
               count_where(and_(held, Appointment.offline.is_(True))),
               count_where(status == AppointmentStatus.CANCELLED),
               count_where(and_(status == AppointmentStatus.CANCELLED, kind == CancelKind.CITIZEN)),
               count_where(and_(status == AppointmentStatus.CANCELLED, kind == CancelKind.LATE)),
               count_where(and_(status == AppointmentStatus.CANCELLED, kind == CancelKind.CENTRE)),
               count_where(and_(status == AppointmentStatus.CANCELLED, kind == CancelKind.STAFF)))
        .where(window.days(Appointment.local_date), in_scope(Appointment.service_id, scope))
        .group_by(is_current))).all()
    return {key: (Appointments(*map(int, values[:9])), Cancellations(*map(int, values[9:])))
            for key, values in _split(rows).items()}


async def _seats(session: AsyncSession, window: _Window, scope: Scope | None) -> dict[int, Seats]:
    open_slot = ~slot_closed()
    is_current = window.by_day(Slot.local_date)
    rows = (await session.execute(
        select(is_current, sum_where(open_slot, Slot.online_capacity), sum_where(open_slot, Slot.booked),
               sum_where(None, Slot.booked), count_where(~open_slot))
        .join(Service, Service.id == Slot.service_id)
        .where(window.days(Slot.local_date), in_scope(Slot.service_id, scope))
        .group_by(is_current))).all()
    return {key: Seats(*map(int, values)) for key, values in _split(rows).items()}


async def _ratings(session: AsyncSession, window: _Window,
                   scope: Scope | None) -> dict[int, Ratings]:
    is_current = window.by_instant(Rating.created_at)
    query = (select(is_current, func.count(), func.avg(Rating.level),
                    count_where(Rating.level >= SATISFIED_LEVEL),
                    *(count_where(Rating.level == level) for level in range(1, 6)))
             .where(window.instants(Rating.created_at)).group_by(is_current))
    if scope is not None:  # only ratings of appointments can belong to a service
        query = query.join(Appointment, Appointment.id == Rating.appointment_id).where(
            in_scope(Appointment.service_id, scope))
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
                    count_where(and_(answered.is_not(None), answered <= due)),
                    count_where(and_(answered.is_not(None), answered > due)),
                    count_where(and_(answered.is_(None), due < now)),
                    count_where(and_(answered.is_(None), due >= now)))
             .where(window.instants(Complaint.opened_at)).group_by(is_current))
    if scope is not None:  # a complaint about no appointment belongs to no service
        query = query.join(Appointment, Appointment.id == Complaint.appointment_id).where(
            in_scope(Appointment.service_id, scope))
    rows = (await session.execute(query)).all()
    return {key: Complaints(*map(int, values)) for key, values in _split(rows).items()}


async def _median_minutes_to_claim(session: AsyncSession, start: dt.datetime, end: dt.datetime,
                                   claimed: int) -> float | None:
    """The median in SQL both databases speak: sort, skip to the middle, take one or two."""
    if not claimed:
        return None
    minutes = minutes_between(dialect_of(session), Handoff.opened_at, Handoff.claimed_at)
    middle = (await session.scalars(
        select(minutes).where(Handoff.opened_at >= start, Handoff.opened_at < end,
                              Handoff.claimed_at.is_not(None))
        .order_by(minutes).offset((claimed - 1) // 2).limit(2 - claimed % 2))).all()
    return round(sum(float(m) for m in middle) / len(middle), 2)  # julianday is not exact


async def _handoffs(session: AsyncSession, window: _Window) -> dict[int, Handoffs]:
    is_current = window.by_instant(Handoff.opened_at)
    rows = _split((await session.execute(
        select(is_current, func.count(), count_where(Handoff.claimed_at.is_not(None)),
               count_where(Handoff.claimed_at.is_(None)))
        .where(window.instants(Handoff.opened_at)).group_by(is_current))).all())
    result = {}
    for key, (opened, claimed, unclaimed) in rows.items():
        start, end = (window.split, window.end) if key else (window.start, window.split)
        median = await _median_minutes_to_claim(session, start, end, int(claimed))
        result[key] = Handoffs(int(opened), int(claimed), int(unclaimed), median)
    return result


async def _notifications(session: AsyncSession, window: _Window,
                         scope: Scope | None) -> dict[int, Notifications]:
    is_current = window.by_instant(Outbox.due_at)
    query = (select(is_current, count_where(Outbox.status == OutboxStatus.FAILED),
                    count_where(Outbox.status == OutboxStatus.UNDELIVERABLE))
             .where(Outbox.status.in_([OutboxStatus.FAILED, OutboxStatus.UNDELIVERABLE]),
                    window.instants(Outbox.due_at))
             .group_by(is_current))
    if scope is not None:  # only a notice about an appointment belongs to a service
        query = query.join(Appointment, Appointment.id == Outbox.appointment_id).where(
            in_scope(Appointment.service_id, scope))
    rows = (await session.execute(query)).all()
    return {key: Notifications(*map(int, values)) for key, values in _split(rows).items()}


async def _texts(session: AsyncSession, period: Period, centre: Centre) -> Texts:
    start = at_local(period.first, dt.time(0), centre.tz)
    end = at_local(period.last + dt.timedelta(days=1), dt.time(0), centre.tz)
    counted = await sms_figures(session, start, end, centre.sms.price_fen)
    return Texts(counted.sent, counted.failed, counted.delivered, counted.cost_fen,
                 counted.opt_outs)


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
                                                     in_scope(Service.id, scope)))).all()
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
               or_(*bookable), ~slot_closed()))
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
    handoffs = await _handoffs(session, window) if scope is None else {}
    notifications = await _notifications(session, window, scope)
    # Texts belong to no service (a closure's text names several): centre-wide only.
    texts = {key: await _texts(session, which, centre) if scope is None else Texts()
             for key, which in ((1, window.current), (0, window.previous))}

    def part(key: int, which: Period) -> PeriodFigures:
        counted, cancelled = appointments.get(key, (Appointments(), Cancellations()))
        return PeriodFigures(which, bookings.get(key, Bookings()), counted, cancelled,
                             seats.get(key, Seats()), ratings.get(key, Ratings()),
                             complaints.get(key, Complaints()), handoffs.get(key, Handoffs()),
                             notifications.get(key, Notifications()), texts[key])

    return Figures(now=now, scope=scope, current=part(1, window.current),
                   previous=part(0, window.previous),
                   remaining_seats=await remaining_seats(session, centre, now, scope),
                   blocked_now=await blocked_now(session, now) if scope is None else None)
