"""Closures ahead and undoing one (/closures, /reopen): a closure that has not started and
from which no booking has been moved yet can be withdrawn; its seats are bookable again. The
bookings it cancelled stay cancelled (their citizens were told and may have booked again).
Nothing here commits.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.audit import audit
from storage.models import AuditLog, Closure, ClosureOffer

# Audit actions on an appointment that cancel it; any other action naming a closure moved the
# booking (to another slot or another doctor), which a reopen could not undo.
_NOT_A_MOVE = frozenset({"cancel"})


class ReopenRefusal(enum.StrEnum):
    UNKNOWN = "unknown"
    STARTED = "started"    # it has begun: what it closed is in the past or under way
    MOVED = "moved"        # bookings were moved because of it (``count``)


class ReopenRefused(Exception):
    def __init__(self, reason: ReopenRefusal, **details: Any) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.details = details


async def closures_ahead(session: AsyncSession, now: dt.datetime) -> list[Closure]:
    """Closures not over yet (under way or to come), soonest first."""
    return list((await session.scalars(select(Closure).where(Closure.ends_at > now)
                                       .order_by(Closure.starts_at, Closure.id))).all())


async def moved_bookings(session: AsyncSession, closure: Closure) -> int:
    """How many bookings were moved because of a closure: appointments whose audit rows name
    it (``closure=<id>``) with an action other than a cancel."""
    rows = (await session.scalars(select(AuditLog).where(
        AuditLog.entity == "appointment", AuditLog.at >= closure.created_at,
        AuditLog.action.not_in(_NOT_A_MOVE)))).all()
    moved = {row.entity_id for row in rows if (row.detail or {}).get("closure") == closure.id}
    # A doctor's 停诊 that offered 替诊 or 换诊 has moved (or asked to move) those bookings.
    moved |= set((await session.scalars(select(ClosureOffer.appointment_id)
                                        .where(ClosureOffer.closure_id == closure.id))).all())
    return len(moved)


async def reopen_closure(session: AsyncSession, now: dt.datetime, closure_id: int, *,
                         actor: str) -> Closure:
    """Withdraw a closure that has not started and moved no booking: its slots are bookable
    again. Audited ("reopen", with what the closure was).

    Returns:
        The closure as it was (no longer stored).

    Raises:
        ReopenRefused: UNKNOWN, STARTED (``starts_at``), MOVED (``count``).
    """
    closure = await session.scalar(select(Closure).where(Closure.id == closure_id)
                                   .with_for_update())
    if closure is None:
        raise ReopenRefused(ReopenRefusal.UNKNOWN, number=closure_id)
    if closure.starts_at <= now:
        raise ReopenRefused(ReopenRefusal.STARTED, number=closure_id, starts_at=closure.starts_at)
    moved = await moved_bookings(session, closure)
    if moved:
        raise ReopenRefused(ReopenRefusal.MOVED, number=closure_id, count=moved)
    await audit(session, now, actor, "reopen", "closure", closure.id,
                service=closure.service_id, department=closure.department_id,
                resource=closure.resource_id,
                starts_at=closure.starts_at.isoformat(), ends_at=closure.ends_at.isoformat(),
                reason=closure.reason, created_by=closure.created_by, affected=closure.affected)
    await session.delete(closure)
    await session.flush()
    return closure
