"""The periodic work the scheduler runs, as plain operations on a session and ``now``.

Each is idempotent and safe to run in several processes at once: state changes are
conditional, and every notification has a de-duplication key.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.case_jobs import overdue_cases
from storage.catalog import ServiceDef
from storage.centre import Centre
from storage.handoffs import staff_name
from storage.models import (
    Appointment,
    AppointmentStatus,
    HomeVisitRequest,
    Outbox,
    OutboxStatus,
    RequestStatus,
    Service,
    WaitKind,
    WaitlistEntry,
    WaitStatus,
)
from storage.outbox import STAFF_TARGET, enqueue
from storage.rules import last_released_day

DIGEST_CASES = 20


async def request_ratings(session: AsyncSession, centre: Centre, now: dt.datetime,
                          delay_minutes: int, limit: int = 500) -> int:
    """Ask for a rating of appointments checked in but never marked done, once the slot has
    ended plus ``delay_minutes`` (completed ones were asked when staff marked them).

    Returns:
        How many requests were queued.
    """
    due = now - dt.timedelta(minutes=delay_minutes)
    rows = (await session.execute(
        select(Appointment.id, Appointment.identity_id).where(
            Appointment.status == AppointmentStatus.CHECKED_IN, Appointment.ends_at <= due,
            Appointment.identity_id.is_not(None))
        .order_by(Appointment.ends_at).limit(limit))).all()
    queued = 0
    for appointment_id, identity_id in rows:
        queued += await enqueue(session, kind="rating_request", now=now, identity_id=identity_id,
                                appointment_id=appointment_id, dedup_key=f"rate:{appointment_id}")
    return queued


async def notify_releases(session: AsyncSession, centre: Centre, now: dt.datetime) -> int:
    """Tell citizens who asked "tell me when it opens" that their day is now bookable.

    Returns:
        How many were told.
    """
    entries = (await session.execute(
        select(WaitlistEntry, Service.definition).join(Service, Service.id == WaitlistEntry.service_id)
        .where(WaitlistEntry.kind == WaitKind.RELEASE, WaitlistEntry.status == WaitStatus.WAITING)
        .order_by(WaitlistEntry.id))).all()
    told = 0
    for entry, definition in entries:
        if entry.local_date > last_released_day(now, ServiceDef.from_json(definition), centre.tz):
            continue
        done = await session.execute(update(WaitlistEntry).where(
            WaitlistEntry.id == entry.id, WaitlistEntry.status == WaitStatus.WAITING)
            .values(status=WaitStatus.DONE, updated_at=now).execution_options(synchronize_session=False))
        if done.rowcount:  # type: ignore[attr-defined]
            told += await enqueue(session, kind="release_open", now=now, identity_id=entry.identity_id,
                                  dedup_key=f"release:{entry.id}",
                                  payload={"service": entry.service_id, "day": entry.local_date.isoformat()})
    return told


async def staff_digest(session: AsyncSession, centre: Centre, now: dt.datetime) -> bool:
    """Queue today's digest for the staff group: tomorrow's appointments per service,
    home-visit requests waiting, notifications that failed, and the overdue open cases (the
    longest overdue first, at most ``DIGEST_CASES``). Once a day."""
    today = centre.today(now)
    tomorrow = centre.calendar.next_working_day(today)
    per_service = (await session.execute(
        select(Service.name_zh, Service.name_en, func.count(Appointment.id))
        .join(Appointment, Appointment.service_id == Service.id)
        .where(Appointment.local_date == tomorrow, Appointment.status == AppointmentStatus.BOOKED)
        .group_by(Service.id, Service.name_zh, Service.name_en).order_by(Service.id))).all()
    waiting = await session.scalar(select(func.count()).select_from(HomeVisitRequest).where(
        HomeVisitRequest.status == RequestStatus.OPEN))
    failed = await session.scalar(select(func.count()).select_from(Outbox).where(
        Outbox.status == OutboxStatus.FAILED, Outbox.created_at >= now - dt.timedelta(days=1)))
    overdue = [{"number": line.case.number,
                "service": {"zh": line.service.name.zh, "en": line.service.name.en},
                "due_on": line.case.due_on.isoformat() if line.case.due_on else None,
                "owner": await staff_name(session, line.case.owner)}
               for line in await overdue_cases(session, centre, now, limit=DIGEST_CASES)]
    return await enqueue(session, kind="staff_digest", now=now, target=STAFF_TARGET,
                         dedup_key=f"digest:{today.isoformat()}",
                         payload={"day": tomorrow.isoformat(),
                                  "services": [[zh, en, n] for zh, en, n in per_service],
                                  "home_visits": waiting, "failed": failed,
                                  "overdue_cases": overdue})
