"""Manager figures on cases (办件): the 六件 counts, 限时办结 and its exceptions, per service and
per week. Every number is an aggregate query grouped by service; nothing loops over cases.

What each figure counts (docs/cases.md says the same for managers):

- opened, by kind (六件), and corrected (补正 rate): cases *opened* in the period (local date),
  the rate being the share of them that got at least one 补正 notice so far.
- completed, on time, average working days: cases that became ready (办结) in the period and
  had a committed date (即办件 and 退回件 have none; a 上报件 has one once its answer date is
  known). On time means ready on or before the due date in force, which counts the clock's
  pauses for 补正 and approved extensions; the working days are those on the clock (pauses
  left out).
- extensions: requested in the period, and approved or refused in the period.
- overdue now: running cases past their overdue time at ``now``, whatever the period.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from storage.case_rules import CLOCK_RUNNING, last_overdue_due_date
from storage.centre import Centre
from storage.models import Case, CaseExtension, CaseKind, ExtensionStatus, Service
from storage.rules import at_local

WITH_COMMITMENT = (CaseKind.PROMISED, CaseKind.CORRECTION, CaseKind.JOINT, CaseKind.REPORTED)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class CaseFigures:
    """The case figures of one service, or of several added up."""

    opened: int = 0
    immediate: int = 0      # 即办件
    promised: int = 0       # 承诺件
    correction: int = 0     # 补办件
    returned: int = 0       # 退回件
    joint: int = 0          # 联办件
    reported: int = 0       # 上报件
    corrected: int = 0      # opened in the period and given at least one 补正 notice
    completed: int = 0      # 办结 in the period, with a committed date
    on_time: int = 0
    clock_days: int = 0     # working days on the clock, summed over ``completed``
    extensions_requested: int = 0
    extensions_approved: int = 0
    extensions_refused: int = 0
    overdue_now: int = 0

    @property
    def by_kind(self) -> dict[str, int]:
        """The 六件 counts, by CaseKind value."""
        return {kind.value: getattr(self, kind.value) for kind in CaseKind}

    @property
    def on_time_rate(self) -> float | None:
        return _ratio(self.on_time, self.completed)

    @property
    def correction_rate(self) -> float | None:
        return _ratio(self.corrected, self.opened)

    @property
    def average_working_days(self) -> float | None:
        return self.clock_days / self.completed if self.completed else None

    def __add__(self, other: CaseFigures) -> CaseFigures:
        return CaseFigures(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                              for f in dataclasses.fields(self)})


@dataclass(frozen=True)
class ServiceCaseFigures:
    code: str
    name_zh: str
    name_en: str
    figures: CaseFigures


@dataclass(frozen=True)
class CaseReport:
    """The centre's (or the chosen services') case figures of a period, and each service's."""

    first: dt.date
    last: dt.date
    total: CaseFigures
    services: tuple[ServiceCaseFigures, ...]   # services with anything to count, catalog order


@dataclass(frozen=True)
class WeekPoint:
    """One week of the chart (Monday to Sunday): cases completed with a committed date, and
    how many on time."""

    monday: dt.date
    completed: int = 0
    on_time: int = 0

    @property
    def on_time_rate(self) -> float | None:
        return _ratio(self.on_time, self.completed)


def _count(condition: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _scoped(service_ids: Sequence[int] | None) -> ColumnElement[bool]:
    return Case.service_id.in_(list(service_ids)) if service_ids is not None else true()


def _completed_in(first: dt.date, last: dt.date) -> ColumnElement[bool]:
    return and_(Case.ready_on >= first, Case.ready_on <= last, Case.due_on.is_not(None),
                Case.kind.in_([k.value for k in WITH_COMMITMENT]))


async def _by_service(session: AsyncSession, centre: Centre, now: dt.datetime, first: dt.date,
                      last: dt.date, service_ids: Sequence[int] | None) -> dict[int, CaseFigures]:
    found: dict[int, dict[str, int]] = {}

    def add(service_id: int, **values: Any) -> None:
        found.setdefault(service_id, {}).update({k: int(v or 0) for k, v in values.items()})

    scope = _scoped(service_ids)
    for row in (await session.execute(
            select(Case.service_id, func.count(), _count(Case.corrections > 0),
                   *(_count(Case.kind == kind) for kind in CaseKind))
            .where(Case.opened_on >= first, Case.opened_on <= last, scope)
            .group_by(Case.service_id))).all():
        service_id, opened, corrected, *kinds = row
        add(service_id, opened=opened, corrected=corrected,
            **{kind.value: n for kind, n in zip(CaseKind, kinds, strict=True)})
    for service_id, completed, in_time, days in (await session.execute(
            select(Case.service_id, func.count(), _count(Case.ready_on <= Case.due_on),
                   func.coalesce(func.sum(Case.clock_days), 0))
            .where(_completed_in(first, last), scope).group_by(Case.service_id))).all():
        add(service_id, completed=completed, on_time=in_time, clock_days=days)
    start, end = at_local(first, dt.time(0), centre.tz), at_local(last + dt.timedelta(days=1),
                                                                   dt.time(0), centre.tz)
    requested_in = and_(CaseExtension.requested_at >= start, CaseExtension.requested_at < end)
    decided_in = and_(CaseExtension.decided_at >= start, CaseExtension.decided_at < end)
    for service_id, requested, approved, refused in (await session.execute(
            select(Case.service_id, _count(requested_in),
                   _count(and_(decided_in, CaseExtension.status == ExtensionStatus.APPROVED)),
                   _count(and_(decided_in, CaseExtension.status == ExtensionStatus.REFUSED)))
            .join(Case, Case.id == CaseExtension.case_id)
            .where(scope, or_(requested_in, decided_in))
            .group_by(Case.service_id))).all():
        add(service_id, extensions_requested=requested, extensions_approved=approved,
            extensions_refused=refused)
    last_due = last_overdue_due_date(now, centre.cases, centre.tz)
    for service_id, overdue in (await session.execute(
            select(Case.service_id, func.count())
            .where(Case.state.in_([s.value for s in CLOCK_RUNNING]), Case.due_on <= last_due, scope)
            .group_by(Case.service_id))).all():
        add(service_id, overdue_now=overdue)
    return {service_id: CaseFigures(**values) for service_id, values in found.items()}


async def case_report(session: AsyncSession, centre: Centre, now: dt.datetime, first: dt.date,
                      last: dt.date, *, service_ids: Sequence[int] | None = None) -> CaseReport:
    """Count the case figures of the local days ``first`` to ``last`` (both included), for the
    whole centre and per service.

    Args:
        service_ids: only these services (a scope a manager chose), or None for all.

    Returns:
        The totals and one entry per service that has anything to count.
    """
    per_service = await _by_service(session, centre, now, first, last, service_ids)
    names = (await session.execute(select(Service.id, Service.code, Service.name_zh,
                                          Service.name_en).order_by(Service.id))).all()
    services = tuple(ServiceCaseFigures(code, zh, en, per_service[service_id])
                     for service_id, code, zh, en in names if service_id in per_service)
    total = sum((entry.figures for entry in services), CaseFigures())
    return CaseReport(first, last, total, services)


async def weekly_on_time(session: AsyncSession, first: dt.date, last: dt.date, *,
                         service_ids: Sequence[int] | None = None) -> list[WeekPoint]:
    """The on-time rate per week (Monday to Sunday) of the weeks touching ``first`` to ``last``,
    for the chart; completions are counted within ``first`` to ``last`` only.

    Returns:
        One point per week, in order, weeks without completions included.
    """
    rows = (await session.execute(
        select(Case.ready_on, func.count(), _count(Case.ready_on <= Case.due_on))
        .where(_completed_in(first, last), _scoped(service_ids)).group_by(Case.ready_on))).all()
    monday = first - dt.timedelta(days=first.weekday())
    weeks: dict[dt.date, list[int]] = {}
    while monday <= last:
        weeks[monday] = [0, 0]
        monday += dt.timedelta(days=7)
    for day, completed, in_time in rows:
        week = weeks[day - dt.timedelta(days=day.weekday())]
        week[0] += int(completed)
        week[1] += int(in_time)
    return [WeekPoint(day, completed, in_time) for day, (completed, in_time) in weeks.items()]
