"""The SQL the figures, the chart and the exports share: conditional counts and sums, a service
filter, closed slots, and the date arithmetic each database spells its own way."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Integer, and_, case, cast, exists, extract, false, func, or_, true
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Closure, Service, Slot
from storage.stats.periods import Scope


def in_scope(column: Any, scope: Scope | None) -> ColumnElement[bool]:
    if scope is None:
        return true()
    if not scope.service_ids:
        return false()
    return column.in_(scope.service_ids)  # type: ignore[no-any-return]


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def count_where(condition: ColumnElement[bool]) -> Any:
    """COUNT of the rows where ``condition`` holds (0, never NULL)."""
    return func.count(case((condition, 1)))


def sum_where(condition: ColumnElement[bool] | None, value: Any) -> Any:
    expression = value if condition is None else case((condition, value), else_=0)
    return func.coalesce(func.sum(expression), 0)


def minutes_between(dialect: str, start: Any, end: Any) -> Any:
    """Minutes from ``start`` to ``end``: each database spells interval arithmetic its own way."""
    if dialect == "postgresql":
        return extract("epoch", end - start) / 60.0
    return (func.julianday(end) - func.julianday(start)) * 1440.0


def epoch_bucket(dialect: str, column: Any, seconds: int) -> Any:
    """The instant's number of ``seconds``-long steps since 1970 (UTC), as an integer."""
    if dialect == "postgresql":
        return func.floor(extract("epoch", column) / seconds)
    return cast(func.strftime("%s", column), Integer) // seconds


def dialect_of(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def slot_closed() -> ColumnElement[bool]:
    """The slot lies in a closure of its service, its department, the whole centre or its
    resource (a doctor's 停诊)."""
    return exists().where(
        Closure.starts_at < Slot.ends_at, Closure.ends_at > Slot.starts_at,
        or_(Closure.service_id == Slot.service_id,
            and_(Closure.service_id.is_(None), Closure.department_id == Service.department_id),
            and_(Closure.service_id.is_(None), Closure.department_id.is_(None),
                 Closure.resource_id.is_(None)),
            and_(Closure.service_id.is_(None), Closure.resource_id == Slot.resource_id)))
