"""Complaints and suggestions (投诉/建议): accepted at any time, kept confidential, a repeat
within ``complaints.merge_days`` merged into the first as a 催办, classified (有效/无效/部分有效)
with a reason, answered, and followed up (回访: an unsatisfied answer reopens it once).

Who handles them: the supervisors (``access.supervisors``; with none, the managers), in their
private chat with the bot or the WeCom app. Alerts go to the outbox target ``SUPERVISORS``,
which the dispatcher sends to each of them except the staff member a complaint names; never to
the staff group. Nothing here commits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import random
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.accounts import visible_to
from storage.audit import audit
from storage.centre import Centre
from storage.models import (
    Appointment,
    AuditLog,
    Case,
    Complaint,
    ComplaintEvent,
    Handoff,
    RequestStatus,
)
from storage.outbox import enqueue
from storage.privacy import mask_text
from storage.rules import working_days_later
from storage.settings import AccessSettings

SUPERVISORS = "supervisors"      # the outbox target: each complaint handler, in private
CATEGORIES = ("attitude", "efficiency", "materials", "environment", "other")
KINDS = ("complaint", "suggestion")
CLASSES = ("valid", "invalid", "partly")
# What a supervisor may type for a classification, in either language.
CLASS_WORDS = {"有效": "valid", "valid": "valid", "无效": "invalid", "invalid": "invalid",
               "部分有效": "partly", "partly": "partly", "partial": "partly"}
HISTORY_DAYS = 30
MAX_TEXT = 1000
# The staff actions on an appointment that make a clerk the one a complaint about it names.
_SERVED = ("check_in", "complete")


class ComplaintRefusal(enum.StrEnum):
    UNKNOWN = "unknown"
    NOT_YOURS = "not_yours"              # the citizen: not their booking, case or complaint
    NAMED = "named"                      # a supervisor named in the complaint
    BAD_CLASS = "bad_class"
    TEXT_REQUIRED = "text_required"
    NOT_CLASSIFIED = "not_classified"
    CLOSED = "closed"
    NOT_RESOLVED = "not_resolved"        # 回访 before the outcome
    ALREADY_ANSWERED = "already_answered"


class ComplaintRefused(Exception):
    def __init__(self, reason: ComplaintRefusal, **details: Any) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.details = details


def complaint_handlers(access: AccessSettings) -> tuple[str, ...]:
    """Who receives and handles complaints: the supervisors, or with none the managers."""
    return tuple(access.supervisors or access.managers)


def may_handle(access: AccessSettings, actor: str) -> bool:
    return actor in complaint_handlers(access)


@dataclasses.dataclass(frozen=True)
class Subject:
    """What a complaint is about: a booking or a case of the citizen's, or nothing."""

    appointment_id: int | None = None
    case_id: int | None = None
    service_id: int | None = None
    person_id: int | None = None
    staff_named: str | None = None


@dataclasses.dataclass(frozen=True)
class Submitted:
    complaint: Complaint
    merged: bool          # a 催办 of an earlier complaint, not a new one


class FollowupOutcome(enum.StrEnum):
    SATISFIED = "satisfied"
    REOPENED = "reopened"          # unsatisfied, the first time: reopened and escalated
    RECORDED = "recorded"          # unsatisfied again: recorded, not reopened


# --- what a complaint can be about ----------------------------------------------------------------


async def recent_subjects(session: AsyncSession, now: dt.datetime, *, account_ids: Sequence[int],
                          days: int = 90, limit: int = 5) -> tuple[list[Appointment], list[Case]]:
    """The citizen's own recent bookings and cases a complaint may be about, newest first.

    Args:
        account_ids: the asking account and the accounts proven to be the same citizen's.
    """
    since = now - dt.timedelta(days=days)
    appointments = (await session.scalars(
        select(Appointment).where(visible_to(account_ids[0]), Appointment.starts_at >= since)
        .order_by(Appointment.starts_at.desc(), Appointment.id.desc()).limit(limit))).all()
    cases = (await session.scalars(
        select(Case).where(Case.identity_id.in_(list(account_ids)), Case.opened_at >= since)
        .order_by(Case.opened_at.desc(), Case.id.desc()).limit(limit))).all()
    return list(appointments), list(cases)


async def _served_by(session: AsyncSession, appointment_id: int) -> str | None:
    """The staff member who last checked in or completed the appointment."""
    return await session.scalar(
        select(AuditLog.actor).where(AuditLog.entity == "appointment",
                                     AuditLog.entity_id == appointment_id,
                                     AuditLog.action.in_(_SERVED),
                                     AuditLog.actor.not_like("identity:%"))
        .order_by(AuditLog.at.desc(), AuditLog.id.desc()).limit(1))


async def about(session: AsyncSession, *, appointment_id: int | None = None,
                case_id: int | None = None) -> Subject:
    """What a complaint about this booking or case is about, and the staff member it names
    (who served the booking, or owns the case); the caller checked it is the citizen's."""
    case = await session.get(Case, case_id) if case_id is not None else None
    if case is not None:
        return Subject(appointment_id=case.appointment_id, case_id=case.id,
                       service_id=case.service_id, person_id=case.person_id,
                       staff_named=case.owner or None)
    appointment = await session.get(Appointment, appointment_id) \
        if appointment_id is not None else None
    if appointment is not None:
        return Subject(appointment_id=appointment.id, service_id=appointment.service_id,
                       person_id=appointment.person_id,
                       staff_named=await _served_by(session, appointment.id))
    return Subject()


async def subject_of(session: AsyncSession, *, account_ids: Sequence[int],
                     appointment_id: int | None = None, case_id: int | None = None) -> Subject:
    """What a complaint is about, checked to be the citizen's own booking or case.

    Raises:
        ComplaintRefused: NOT_YOURS.
    """
    if case_id is not None:
        case = await session.get(Case, case_id)
        if case is None or case.identity_id not in account_ids:
            raise ComplaintRefused(ComplaintRefusal.NOT_YOURS)
    elif appointment_id is not None and await session.scalar(select(Appointment.id).where(
            Appointment.id == appointment_id, visible_to(account_ids[0]))) is None:
        raise ComplaintRefused(ComplaintRefusal.NOT_YOURS)
    return await about(session, appointment_id=appointment_id, case_id=case_id)


# --- opening, merging -----------------------------------------------------------------------------


async def add_event(session: AsyncSession, now: dt.datetime, complaint: Complaint, actor: str,
                    action: str, text: str | None = None, **detail: Any) -> None:
    """Write one step of a complaint's history (its text masked)."""
    session.add(ComplaintEvent(complaint_id=complaint.id, at=now, actor=actor[:80], action=action,
                               text=mask_text(text[:MAX_TEXT]) if text else None, detail=detail))


async def alert_supervisors(session: AsyncSession, now: dt.datetime, complaint: Complaint,
                            kind: str, key: str, **payload: Any) -> None:
    """Tell the complaint handlers in private (outbox target ``SUPERVISORS``)."""
    await enqueue(session, kind=kind, now=now, target=SUPERVISORS,
                  dedup_key=f"complaint:{complaint.id}:{key}"[:160],
                  payload={"complaint": complaint.id, **payload})


async def register(session: AsyncSession, centre: Centre, now: dt.datetime, *, identity_id: int,
                   text: str, subject: Subject = Subject(), kind: str = "complaint",
                   category: str = "other", photo: str | None = None, rating_id: int | None = None,
                   answer_days: int = 1, resolve_days: int = 15) -> Complaint:
    """Open a complaint (or suggestion) with its due times and alert the supervisors.

    Args:
        answer_days: working days for the first answer (1 = the same or next working day).
        resolve_days: working days to resolve it.
    """
    complaint = Complaint(
        identity_id=identity_id, appointment_id=subject.appointment_id, rating_id=rating_id,
        case_id=subject.case_id, service_id=subject.service_id, person_id=subject.person_id,
        staff_named=subject.staff_named, kind=kind if kind in KINDS else "complaint",
        category=category if category in CATEGORIES else "other", photo=photo,
        text=mask_text(text[:MAX_TEXT]), status=RequestStatus.OPEN, opened_at=now,
        priority=0, repeats=0, complex=False, reopened=0, escalations=0,
        first_answer_due=working_days_later(now, answer_days, centre.calendar, centre.tz),
        resolution_due=working_days_later(now, resolve_days, centre.calendar, centre.tz))
    session.add(complaint)
    await session.flush()
    await add_event(session, now, complaint, f"identity:{identity_id}", "opened", text,
                    photo=bool(photo))
    await audit(session, now, f"identity:{identity_id}", "complaint", "complaint", complaint.id,
                appointment=subject.appointment_id, case=subject.case_id, rating=rating_id)
    await alert_supervisors(session, now, complaint, "complaint_alert", "open")
    return complaint


async def find_repeat(session: AsyncSession, now: dt.datetime, *, identity_id: int,
                      subject: Subject, merge_days: int) -> Complaint | None:
    """The citizen's complaint about the same service or case opened within ``merge_days``
    (open or not): a new one about it is a 催办 of that one. None when there is none or the
    new one is about nothing in particular."""
    if merge_days <= 0 or (subject.service_id is None and subject.case_id is None):
        return None
    same_subject = Complaint.case_id == subject.case_id if subject.case_id is not None \
        else Complaint.service_id == subject.service_id
    same_person = or_(Complaint.identity_id == identity_id,
                      Complaint.person_id == subject.person_id) \
        if subject.person_id is not None else Complaint.identity_id == identity_id
    return await session.scalar(
        select(Complaint).where(same_person, same_subject, Complaint.kind == "complaint",
                                Complaint.opened_at >= now - dt.timedelta(days=merge_days))
        .order_by(Complaint.opened_at.desc(), Complaint.id.desc()).limit(1))


async def submit(session: AsyncSession, centre: Centre, now: dt.datetime, *, identity_id: int,
                 text: str, subject: Subject = Subject(), kind: str = "complaint",
                 category: str = "other", photo: str | None = None, answer_days: int = 1,
                 resolve_days: int = 15, merge_days: int = 30) -> Submitted:
    """What a citizen files from the chat: a new complaint, or, when the same person
    complained about the same service or case within ``merge_days``, a 催办 of that one: its
    priority goes up, the repeat is kept in its history, and its owner (or, unclaimed, the
    supervisors) is told. A suggestion is never merged.

    Raises:
        ComplaintRefused: TEXT_REQUIRED.
    """
    if not text.strip():
        raise ComplaintRefused(ComplaintRefusal.TEXT_REQUIRED)
    earlier = await find_repeat(session, now, identity_id=identity_id, subject=subject,
                                merge_days=merge_days) if kind == "complaint" else None
    if earlier is None:
        return Submitted(await register(
            session, centre, now, identity_id=identity_id, text=text.strip(), subject=subject,
            kind=kind, category=category, photo=photo, answer_days=answer_days,
            resolve_days=resolve_days), merged=False)
    await session.execute(update(Complaint).where(Complaint.id == earlier.id).values(
        repeats=Complaint.repeats + 1, priority=Complaint.priority + 1)
        .execution_options(synchronize_session=False))
    await session.refresh(earlier)
    if not earlier.text:
        earlier.text = mask_text(text.strip()[:MAX_TEXT])
    await add_event(session, now, earlier, f"identity:{identity_id}", "urge", text.strip(),
                    photo=bool(photo), category=category)
    await audit(session, now, f"identity:{identity_id}", "complaint_urge", "complaint", earlier.id)
    target = earlier.claimed_by if earlier.claimed_by and earlier.status != RequestStatus.OPEN \
        and earlier.claimed_by != earlier.staff_named else SUPERVISORS
    await enqueue(session, kind="complaint_urge", now=now, target=target,
                  dedup_key=f"complaint:{earlier.id}:urge:{earlier.repeats}",
                  payload={"complaint": earlier.id, "repeat": earlier.repeats})
    return Submitted(earlier, merged=True)


# --- supervisors ----------------------------------------------------------------------------------


async def _complaint(session: AsyncSession, number: int, actor: str | None = None) -> Complaint:
    found = await session.scalar(select(Complaint).where(Complaint.id == number)
                                 .execution_options(populate_existing=True))
    if found is None:
        raise ComplaintRefused(ComplaintRefusal.UNKNOWN, number=number)
    if actor is not None and found.staff_named == actor:
        raise ComplaintRefused(ComplaintRefusal.NAMED, number=number)
    return found


async def visible(session: AsyncSession, number: int, *, actor: str) -> Complaint:
    """A complaint as a supervisor may see it: never one naming them.

    Raises:
        ComplaintRefused: UNKNOWN, NAMED (reported as UNKNOWN to them).
    """
    return await _complaint(session, number, actor)


async def open_list(session: AsyncSession, *, actor: str, limit: int = 30) -> list[Complaint]:
    """The complaints not closed, highest priority and oldest first; none naming ``actor``."""
    return list((await session.scalars(
        select(Complaint).where(Complaint.status != RequestStatus.CLOSED,
                                or_(Complaint.staff_named.is_(None),
                                    Complaint.staff_named != actor))
        .order_by(Complaint.priority.desc(), Complaint.opened_at, Complaint.id)
        .limit(limit))).all())


async def followup_list(session: AsyncSession, centre: Centre, now: dt.datetime, *,
                        actor: str) -> list[Complaint]:
    """This month's sample of resolved complaints for a supervisor's 回访 (none naming them)."""
    first = centre.today(now).replace(day=1)
    return list((await session.scalars(
        select(Complaint).where(Complaint.sampled_on >= first,
                                or_(Complaint.staff_named.is_(None),
                                    Complaint.staff_named != actor))
        .order_by(Complaint.id))).all())


async def history(session: AsyncSession, number: int) -> list[ComplaintEvent]:
    return list((await session.scalars(select(ComplaintEvent).where(
        ComplaintEvent.complaint_id == number).order_by(ComplaintEvent.at, ComplaintEvent.id))).all())


async def person_history(session: AsyncSession, now: dt.datetime, complaint: Complaint,
                         days: int = HISTORY_DAYS) -> tuple[list[Complaint], list[Handoff]]:
    """The same citizen's other complaints and their hand-offs of the last ``days`` days."""
    since = now - dt.timedelta(days=days)
    same = Complaint.identity_id == complaint.identity_id
    if complaint.person_id is not None:
        same = or_(same, Complaint.person_id == complaint.person_id)
    complaints = (await session.scalars(select(Complaint).where(
        same, Complaint.id != complaint.id, Complaint.opened_at >= since)
        .order_by(Complaint.opened_at.desc()))).all()
    handoffs = (await session.scalars(select(Handoff).where(
        Handoff.identity_id == complaint.identity_id, Handoff.opened_at >= since)
        .order_by(Handoff.opened_at.desc()))).all()
    return list(complaints), list(handoffs)


async def _take(session: AsyncSession, now: dt.datetime, complaint: Complaint, actor: str) -> None:
    """Acting on an unclaimed complaint claims it for ``actor``."""
    if complaint.claimed_by is None:
        complaint.claimed_by, complaint.claimed_at = actor, now
        if complaint.status == RequestStatus.OPEN:
            complaint.status = RequestStatus.CLAIMED


async def classify(session: AsyncSession, now: dt.datetime, number: int, *, actor: str,
                   classification: str, reason: str) -> Complaint:
    """Record whether the complaint was founded (有效/无效/部分有效), with the reason.

    Raises:
        ComplaintRefused: UNKNOWN, NAMED, BAD_CLASS, TEXT_REQUIRED.
    """
    complaint = await _complaint(session, number, actor)
    chosen = CLASS_WORDS.get(classification.strip().casefold())
    if chosen is None:
        raise ComplaintRefused(ComplaintRefusal.BAD_CLASS, number=number)
    if not reason.strip():
        raise ComplaintRefused(ComplaintRefusal.TEXT_REQUIRED, number=number)
    await _take(session, now, complaint, actor)
    complaint.classification, complaint.classified_by, complaint.classified_at = \
        chosen, actor, now
    complaint.classification_reason = mask_text(reason.strip()[:MAX_TEXT])
    await add_event(session, now, complaint, actor, "classified", reason.strip(),
                    classification=chosen)
    await audit(session, now, actor, "classify", "complaint", number, classification=chosen)
    return complaint


async def mark_complex(session: AsyncSession, centre: Centre, now: dt.datetime, number: int, *,
                       actor: str, working_days: int) -> Complaint:
    """A complex complaint is answered within ``working_days`` of its opening (a week).

    Raises:
        ComplaintRefused: UNKNOWN, NAMED, CLOSED.
    """
    complaint = await _complaint(session, number, actor)
    if complaint.status == RequestStatus.CLOSED:
        raise ComplaintRefused(ComplaintRefusal.CLOSED, number=number)
    await _take(session, now, complaint, actor)
    complaint.complex = True
    complaint.first_answer_due = working_days_later(complaint.opened_at, working_days,
                                                    centre.calendar, centre.tz)
    await add_event(session, now, complaint, actor, "complex")
    return complaint


async def answer(session: AsyncSession, now: dt.datetime, number: int, *, actor: str,
                 text: str) -> Complaint:
    """Give the citizen the outcome (with its classification) and close the complaint; the
    citizen is asked the 回访 question with it (outbox kind "complaint_outcome").

    Raises:
        ComplaintRefused: UNKNOWN, NAMED, TEXT_REQUIRED, NOT_CLASSIFIED, CLOSED.
    """
    complaint = await _complaint(session, number, actor)
    if not text.strip():
        raise ComplaintRefused(ComplaintRefusal.TEXT_REQUIRED, number=number)
    if complaint.status == RequestStatus.CLOSED:
        raise ComplaintRefused(ComplaintRefusal.CLOSED, number=number)
    if complaint.classification is None:
        raise ComplaintRefused(ComplaintRefusal.NOT_CLASSIFIED, number=number)
    await _take(session, now, complaint, actor)
    if complaint.answered_at is None:
        complaint.answered_at = now
    complaint.status, complaint.resolved_at = RequestStatus.CLOSED, now
    complaint.outcome = mask_text(text.strip()[:3000], keep_mobiles=True)
    complaint.followup_asked_at, complaint.followup_at = now, None
    complaint.followup_satisfied = None
    await add_event(session, now, complaint, actor, "answered", text.strip())
    await audit(session, now, actor, "answer", "complaint", number)
    await enqueue(session, kind="complaint_outcome", now=now, identity_id=complaint.identity_id,
                  dedup_key=f"complaint:{number}:outcome:{complaint.reopened}",
                  payload={"complaint": number})
    return complaint


async def followup(session: AsyncSession, now: dt.datetime, number: int, *, identity_id: int,
                   satisfied: bool) -> tuple[Complaint, FollowupOutcome]:
    """The citizen's 回访 answer, "您对投诉处理结果是否满意": satisfied closes it for good;
    unsatisfied the first time reopens it, raises its priority and escalates it to the
    supervisors; unsatisfied again is recorded and not reopened.

    Raises:
        ComplaintRefused: UNKNOWN, NOT_YOURS, NOT_RESOLVED, ALREADY_ANSWERED.
    """
    complaint = await _complaint(session, number)
    if complaint.identity_id != identity_id:
        raise ComplaintRefused(ComplaintRefusal.NOT_YOURS, number=number)
    if complaint.status != RequestStatus.CLOSED or complaint.followup_asked_at is None:
        raise ComplaintRefused(ComplaintRefusal.NOT_RESOLVED, number=number)
    answered = await session.execute(
        update(Complaint).where(Complaint.id == number, Complaint.followup_at.is_(None),
                                Complaint.status == RequestStatus.CLOSED)
        .values(followup_at=now, followup_satisfied=satisfied)
        .execution_options(synchronize_session=False))
    if not answered.rowcount:  # type: ignore[attr-defined]
        raise ComplaintRefused(ComplaintRefusal.ALREADY_ANSWERED, number=number)
    await session.refresh(complaint)
    actor = f"identity:{identity_id}"
    await add_event(session, now, complaint, actor, "satisfied" if satisfied else "unsatisfied")
    await audit(session, now, actor, "complaint_followup", "complaint", number,
                satisfied=satisfied)
    if satisfied:
        return complaint, FollowupOutcome.SATISFIED
    if complaint.reopened >= 1:
        return complaint, FollowupOutcome.RECORDED
    complaint.reopened += 1
    complaint.priority += 1
    complaint.status = RequestStatus.CLAIMED if complaint.claimed_by else RequestStatus.OPEN
    complaint.resolved_at = None
    await add_event(session, now, complaint, actor, "reopened")
    await alert_supervisors(session, now, complaint, "complaint_reopened", "reopened")
    return complaint, FollowupOutcome.REOPENED


async def sample_followups(session: AsyncSession, centre: Centre, now: dt.datetime, *,
                           size: int) -> list[int]:
    """Once a month, pick ``size`` complaints resolved last month for the supervisors' 回访 list
    (a reproducible draw per month) and send them the list. Idempotent: a month already drawn
    is not drawn again.

    Returns:
        The complaint numbers picked (empty when already drawn or none to draw).
    """
    today = centre.today(now)
    first = today.replace(day=1)
    if size <= 0 or await session.scalar(select(func.count()).select_from(Complaint).where(
            Complaint.sampled_on >= first)):
        return []
    previous = (first - dt.timedelta(days=1)).replace(day=1)
    start = dt.datetime.combine(previous, dt.time(0), centre.tz)
    end = dt.datetime.combine(first, dt.time(0), centre.tz)
    resolved = list((await session.scalars(select(Complaint.id).where(
        Complaint.status == RequestStatus.CLOSED, Complaint.resolved_at >= start,
        Complaint.resolved_at < end).order_by(Complaint.id))).all())
    if not resolved:
        return []
    picked = sorted(random.Random(previous.toordinal()).sample(resolved,
                                                               min(size, len(resolved))))
    await session.execute(update(Complaint).where(Complaint.id.in_(picked))
                          .values(sampled_on=today).execution_options(synchronize_session=False))
    await enqueue(session, kind="complaint_sample", now=now, target=SUPERVISORS,
                  dedup_key=f"complaint_sample:{first.isoformat()}",
                  payload={"complaints": picked, "month": previous.isoformat()[:7]})
    return picked


# --- figures ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ComplaintFigures:
    """Complaints and suggestions of a period (opened in it; 催办 and 回访 answers made in it)."""

    by_category: dict[str, int]
    suggestions: int = 0
    answered: int = 0
    answered_on_time: int = 0       # the outcome given by the answer deadline
    merged: int = 0                 # repeats merged into an earlier complaint as 催办
    satisfied: int = 0              # 回访 answers
    unsatisfied: int = 0
    reopened: int = 0

    @property
    def complaints(self) -> int:
        return sum(self.by_category.values())

    @property
    def satisfied_share(self) -> float | None:
        answers = self.satisfied + self.unsatisfied
        return self.satisfied / answers if answers else None


async def complaint_figures(session: AsyncSession, centre: Centre, first: dt.date, last: dt.date,
                            *, service_ids: Sequence[int] | None = None) -> ComplaintFigures:
    """The complaint figures of the local days ``first``..``last``: complaints by category,
    suggestions, answers on time, merged repeats, 回访 satisfaction and reopenings.

    Args:
        service_ids: only complaints about these services (None: all, also those about none).
    """
    start = dt.datetime.combine(first, dt.time(0), centre.tz)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(0), centre.tz)
    scoped = Complaint.service_id.in_(list(service_ids)) if service_ids is not None else None

    def where(*conditions: Any) -> list[Any]:
        return [*conditions, *([scoped] if scoped is not None else [])]

    opened = (await session.execute(
        select(Complaint.kind, Complaint.category, func.count())
        .where(*where(Complaint.opened_at >= start, Complaint.opened_at < end))
        .group_by(Complaint.kind, Complaint.category))).all()
    by_category = dict.fromkeys(CATEGORIES, 0)
    suggestions = 0
    for kind, category, count in opened:
        if kind == "suggestion":
            suggestions += int(count)
        else:
            by_category[category if category in by_category else "other"] += int(count)
    answered = (await session.execute(select(
        func.count(Complaint.answered_at),
        func.count(Complaint.id).filter(Complaint.answered_at <= Complaint.first_answer_due))
        .where(*where(Complaint.opened_at >= start, Complaint.opened_at < end,
                      Complaint.answered_at.is_not(None))))).one()
    events = (await session.execute(
        select(ComplaintEvent.action, func.count()).join(
            Complaint, Complaint.id == ComplaintEvent.complaint_id)
        .where(*where(ComplaintEvent.at >= start, ComplaintEvent.at < end,
                      ComplaintEvent.action.in_(("urge", "reopened", "satisfied",
                                                 "unsatisfied"))))
        .group_by(ComplaintEvent.action))).all()
    # Each 回访 answer counts, the one before a reopening too.
    counted = {action: int(count) for action, count in events}
    return ComplaintFigures(by_category=by_category, suggestions=suggestions,
                            answered=int(answered[0]), answered_on_time=int(answered[1]),
                            merged=counted.get("urge", 0), reopened=counted.get("reopened", 0),
                            satisfied=counted.get("satisfied", 0),
                            unsatisfied=counted.get("unsatisfied", 0))
