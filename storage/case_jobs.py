"""The periodic work on cases (办件) the scheduler runs, as plain operations on a session and
``now``.

Each job is idempotent and safe to run in several processes at once: a case is marked with a
conditional UPDATE before its notice is queued (only the process whose UPDATE changed the row
queues it), and every notice has a de-duplication key. Run them every few minutes; a job that
runs late sends what is due at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.case_rules import (
    CLOCK_RUNNING,
    due_reminder_at,
    followup_at,
    is_overdue,
    last_overdue_due_date,
    uncollected_reminder_at,
)
from storage.cases import CaseLine, case_payload, tell_staff
from storage.catalog import ServiceDef
from storage.centre import Centre
from storage.models import Case, CaseState, Service
from storage.outbox import enqueue

BATCH = 500
_RUNNING = [state.value for state in CLOCK_RUNNING]


def _staff_payload(case: Case, service: ServiceDef) -> dict[str, Any]:
    return case_payload(case, service, owner=case.owner, state=case.state.value)


async def _cases(session: AsyncSession, *conditions: Any, order: Any,
                 limit: int = BATCH) -> list[tuple[Case, ServiceDef]]:
    """Cases matching ``conditions`` with their service's definition, in ``order``."""
    rows = (await session.execute(
        select(Case, Service.definition).join(Service, Service.id == Case.service_id)
        .where(*conditions).order_by(order, Case.id).limit(limit))).all()
    return [(case, ServiceDef.from_json(definition)) for case, definition in rows]


async def _claim(session: AsyncSession, case: Case, *conditions: Any, **values: Any) -> bool:
    """Mark one case with a conditional UPDATE; True for the one process that changed it."""
    result = await session.execute(update(Case).where(Case.id == case.id, *conditions)
                                   .values(**values).execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def remind_due_cases(session: AsyncSession, centre: Centre, now: dt.datetime) -> int:
    """Remind each owner of a running case ``cases.due_reminder_working_days`` working days
    before its due date (``case_due_soon`` to the owner's account). Once per due date: an
    extended or resumed case is reminded again before its new date. A case already overdue
    gets no reminder (``escalate_overdue_cases`` deals with it).

    Returns:
        How many reminders were queued.
    """
    settings, calendar = centre.cases, centre.calendar
    horizon = calendar.add_working_days(centre.today(now), settings.due_reminder_working_days)
    rows = await _cases(
        session, Case.state.in_(_RUNNING), Case.due_on.is_not(None), Case.due_on <= horizon,
        or_(Case.reminded_due_on.is_(None), Case.reminded_due_on != Case.due_on),
        order=Case.due_on)
    queued = 0
    for case, service in rows:
        due = case.due_on
        assert due is not None
        if now < due_reminder_at(due, settings, calendar, centre.tz) \
                or is_overdue(due, now, settings, centre.tz):
            continue
        if await _claim(session, case, Case.due_on == due, Case.state.in_(_RUNNING),
                        or_(Case.reminded_due_on.is_(None), Case.reminded_due_on != due),
                        reminded_due_on=due):
            queued += await enqueue(session, kind="case_due_soon", now=now, target=case.owner,
                                    dedup_key=f"case:{case.id}:due_soon:{due.isoformat()}",
                                    payload=_staff_payload(case, service))
    return queued


async def escalate_overdue_cases(session: AsyncSession, centre: Centre, now: dt.datetime, *,
                                 supervisors: Sequence[str]) -> int:
    """Escalate each running case not ready at its overdue time (``cases.overdue_time`` on the
    due date) to the supervisors (``case_overdue``; to the staff group when none are set).
    Exactly once per due date, however often the job runs.

    Args:
        supervisors: ``access.supervisors``.

    Returns:
        How many cases were escalated.
    """
    last_due = last_overdue_due_date(now, centre.cases, centre.tz)
    rows = await _cases(
        session, Case.state.in_(_RUNNING), Case.due_on.is_not(None), Case.due_on <= last_due,
        or_(Case.escalated_due_on.is_(None), Case.escalated_due_on != Case.due_on),
        order=Case.due_on)
    made = 0
    for case, service in rows:
        due = case.due_on
        assert due is not None
        if await _claim(session, case, Case.due_on == due, Case.state.in_(_RUNNING),
                        or_(Case.escalated_due_on.is_(None), Case.escalated_due_on != due),
                        escalated_due_on=due):
            await tell_staff(session, now, supervisors, kind="case_overdue",
                             key=f"case:{case.id}:overdue:{due.isoformat()}",
                             payload=_staff_payload(case, service))
            made += 1
    return made


async def remind_uncollected(session: AsyncSession, centre: Centre, now: dt.datetime) -> int:
    """Remind a citizen whose result has been ready ``cases.uncollected_working_days`` working
    days without being collected (``case_uncollected``, once per case).

    Returns:
        How many reminders were queued.
    """
    settings = centre.cases
    # Oldest first, so the ones due come before the rest; the rule decides for each.
    rows = await _cases(
        session, Case.state == CaseState.READY, Case.identity_id.is_not(None),
        Case.uncollected_reminded_at.is_(None), Case.ready_on < centre.today(now),
        order=Case.ready_on)
    queued = 0
    for case, service in rows:
        assert case.ready_on is not None
        if now < uncollected_reminder_at(case.ready_on, settings, centre.calendar, centre.tz):
            continue
        if await _claim(session, case, Case.state == CaseState.READY,
                        Case.uncollected_reminded_at.is_(None), uncollected_reminded_at=now):
            pickup = case.details.get("pickup", {})
            queued += await enqueue(
                session, kind="case_uncollected", now=now, identity_id=case.identity_id,
                dedup_key=f"case:{case.id}:uncollected",
                payload=case_payload(case, service, ready_on=case.ready_on.isoformat(),
                                     place=pickup.get("place"), hours=pickup.get("hours"),
                                     bring=pickup.get("bring"), mail=service.case.mail))
    return queued


async def request_followups(session: AsyncSession, centre: Centre, now: dt.datetime) -> int:
    """Ask each citizen about their closed case (回访) ``cases.followup_working_days`` working
    days after it closed (``case_followup``, once per case); the answer goes to
    ``storage.cases.rate_case``.

    Returns:
        How many were asked.
    """
    rows = await _cases(
        session, Case.state == CaseState.CLOSED, Case.identity_id.is_not(None),
        Case.followup_asked_at.is_(None), Case.closed_at <= now,
        order=Case.closed_at)
    asked = 0
    for case, service in rows:
        assert case.closed_at is not None
        closed_on = case.closed_at.astimezone(centre.tz).date()
        if now < followup_at(closed_on, centre.cases, centre.calendar, centre.tz):
            continue
        if await _claim(session, case, Case.followup_asked_at.is_(None), followup_asked_at=now):
            asked += await enqueue(
                session, kind="case_followup", now=now, identity_id=case.identity_id,
                dedup_key=f"case:{case.id}:followup",
                payload=case_payload(case, service, closed_on=closed_on.isoformat()))
    return asked


async def overdue_cases(session: AsyncSession, centre: Centre, now: dt.datetime, *,
                        limit: int = 100) -> list[CaseLine]:
    """Running cases past their overdue time, the longest overdue first (for the daily
    digest and /cases)."""
    last_due = last_overdue_due_date(now, centre.cases, centre.tz)
    rows = await _cases(
        session, Case.state.in_(_RUNNING), Case.due_on.is_not(None), Case.due_on <= last_due,
        order=Case.due_on, limit=limit)
    return [CaseLine(case, service, True) for case, service in rows]
