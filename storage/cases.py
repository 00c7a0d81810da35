"""Cases (办件): what the centre does after the visit, from acceptance to the result in the
citizen's hands, managed by kind (六件管理) against a committed number of working days.

Every operation takes the caller's session and does not commit. Each change is one step of
the state machine in storage.case_rules, written as a ``CaseEvent`` (who, when, why) and an
audit row, and every step the citizen must hear about queues its notice in the outbox in the
same transaction (docs/cases.md lists the kinds and their payloads). A case row is locked
(``FOR UPDATE`` on PostgreSQL; SQLite serialises writers) before it changes, so two staff
members pressing at once change it once.

Staff are named by their account key ("telegram:<id>", "wechat:<openid>"); a citizen acting
on their own case is "identity:<id>". Supervisors are the ``access.supervisors`` keys, passed
in by the caller.
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case as sql_case
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.audit import audit
from storage.case_rules import (
    CLOCK_RUNNING,
    OPEN_STATES,
    CaseAction,
    case_number,
    clock_working_days,
    correction_deadline,
    due_date,
    extended_due_date,
    is_overdue,
    joint_due_date,
    looks_like_case_number,
    next_state,
    parse_case_number,
    paused_working_days,
)
from storage.catalog import ServiceDef, Text
from storage.centre import Centre
from storage.feedback import COMPLAINT_AT_OR_BELOW, LEVELS, open_complaint
from storage.models import (
    Appointment,
    AppointmentStatus,
    Case,
    CaseEvent,
    CaseExtension,
    CaseKind,
    CasePart,
    CaseState,
    Complaint,
    ExtensionStatus,
    Service,
)
from storage.outbox import STAFF_TARGET, enqueue
from storage.privacy import mask_text
from storage.sms import notice_by_sms

MAX_COMMITTED_DAYS = 365
MAX_TEXT = 500
MAX_TRACKING = 40


class CaseRefusal(enum.StrEnum):
    BAD_NUMBER = "bad_number"                # text: eight digits, but the check digit is wrong
    UNKNOWN = "unknown"                      # number
    UNKNOWN_APPOINTMENT = "unknown_appointment"
    NOT_SERVED = "not_served"                # status: the booking was never checked in
    ALREADY_OPENED = "already_opened"        # number: this booking already has a case
    UNKNOWN_SERVICE = "unknown_service"
    NOT_ALLOWED = "not_allowed"              # number, state, action
    MISSING_ITEMS = "missing_items"          # 补正 naming nothing missing
    BAD_ITEM = "bad_item"                    # item, count: not on the service's materials list
    CORRECTION_LIMIT = "correction_limit"    # corrections: another 补正 needs a supervisor
    NOT_SUPERVISOR = "not_supervisor"        # actor
    REASON_REQUIRED = "reason_required"
    BASIS_REQUIRED = "basis_required"
    PARTS_REQUIRED = "parts_required"        # a joint case names two departments or more
    BAD_PART = "bad_part"                    # part
    PARTS_OPEN = "parts_open"                # open: departments not done yet
    DAYS_REQUIRED = "days_required"          # no committed working days to count
    BAD_DAYS = "bad_days"                    # days, limit
    NO_DUE_DATE = "no_due_date"
    EXTENSION_PENDING = "extension_pending"  # extension
    ALREADY_DECIDED = "already_decided"      # status, by
    SELF_APPROVAL = "self_approval"
    NO_MAILING = "no_mailing"                # the service does not post results
    TRACKING_REQUIRED = "tracking_required"
    BAD_DATE = "bad_date"                    # day
    NOT_YOURS = "not_yours"
    ALREADY_RATED = "already_rated"
    BAD_LEVEL = "bad_level"


class CaseRefused(Exception):
    """A case operation the rules or the case's state do not allow; ``reason`` names the rule,
    ``details`` the facts the message needs."""

    def __init__(self, reason: CaseRefusal, **details: Any) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.details = details


@dataclass(frozen=True)
class PartSpec:
    """One department of a joint case (联办件) and its committed working days (None: the
    service's own)."""

    name: str
    working_days: int | None = None


@dataclass(frozen=True)
class CaseLine:
    """A case in a list (/cases, the digest): the row, its service, whether it is overdue."""

    case: Case
    service: ServiceDef
    overdue: bool


@dataclass(frozen=True)
class CaseView:
    """Everything /case N and the citizen's 办件进度 show: the row, its service, its
    departments (joint cases), its history (oldest first) and its extension requests."""

    case: Case
    service: ServiceDef
    parts: tuple[CasePart, ...]
    events: tuple[CaseEvent, ...]
    extensions: tuple[CaseExtension, ...]
    overdue: bool


# --- small helpers ----------------------------------------------------------------------------


def _text(value: Text | None) -> dict[str, str] | None:
    return None if value is None else {"zh": value.zh, "en": value.en}


def _both(value: str) -> dict[str, str]:
    """A text staff typed, shown as it is in either language."""
    return {"zh": value, "en": value}


def _clean(value: str | None, limit: int = MAX_TEXT) -> str:
    """A typed text, trimmed and masked (storage.privacy) before it is stored or shown."""
    return mask_text((value or "").strip()[:limit])


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day is not None else None


def case_payload(case: Case, service: ServiceDef, **extra: Any) -> dict[str, Any]:
    """What every notice of a case carries, with ``extra`` (docs/cases.md lists each kind's)."""
    return {"case": case.id, "number": case.number, "kind": case.kind.value,
            "service": {"code": service.code, "name": _text(service.name)},
            "due_on": _iso(case.due_on), **extra}


async def _tell_citizen(session: AsyncSession, centre: Centre, now: dt.datetime, case: Case,
                        kind: str, key: str, payload: dict[str, Any]) -> bool:
    """Queue a notice to the account the case belongs to; a staff-made case, which has none,
    is told by SMS where the policy allows (storage.sms)."""
    if case.identity_id is None:
        return await notice_by_sms(session, centre, now, kind=kind, dedup_key=f"case:{case.id}:{key}",
                                   person_id=case.person_id, account_id=None, payload=payload)
    return await enqueue(session, kind=kind, now=now, identity_id=case.identity_id,
                         dedup_key=f"case:{case.id}:{key}", payload=payload)


async def tell_staff(session: AsyncSession, now: dt.datetime, targets: Sequence[str], *,
                     kind: str, key: str, payload: dict[str, Any]) -> int:
    """Queue a staff alert to each target (account keys); with none, to the staff group.

    Returns:
        How many rows were written.
    """
    written = 0
    for target in targets or (STAFF_TARGET,):
        written += await enqueue(session, kind=kind, now=now, target=target,
                                 dedup_key=f"{key}:{target}"[:160], payload=payload)
    return written


async def _definition(session: AsyncSession, service_id: int) -> ServiceDef:
    service = await session.get(Service, service_id)
    if service is None:
        raise CaseRefused(CaseRefusal.UNKNOWN_SERVICE)
    return ServiceDef.from_json(service.definition)


async def _step(session: AsyncSession, now: dt.datetime, case: Case, action: CaseAction,
                actor: str, *, reason: str | None = None, **detail: Any) -> None:
    """Move the case one step (or refuse), and write its history entry and audit row."""
    before: CaseState | None = case.state   # None while the case is being opened
    after = next_state(before, action)
    if after is None:
        raise CaseRefused(CaseRefusal.NOT_ALLOWED, number=case.number, state=before,
                          action=action.value)
    case.state, case.updated_at = after, now
    await session.flush()
    session.add(CaseEvent(case_id=case.id, at=now, actor=actor, action=action.value,
                          state_before=before, state_after=after, reason=reason, detail=detail))
    await audit(session, now, actor, f"case_{action.value}", "case", case.id,
                before=before.value if before else None, after=after.value, reason=reason,
                **detail)


async def _locked(session: AsyncSession, number: str) -> Case:
    parsed = _number(number)
    case = await session.scalar(select(Case).where(Case.number == parsed).with_for_update()
                                .execution_options(populate_existing=True))
    if case is None:
        raise CaseRefused(CaseRefusal.UNKNOWN, number=parsed)
    return case


def _number(text: str) -> str:
    """The case number in ``text``, or the refusal that tells a typo from a stranger."""
    parsed = parse_case_number(text)
    if parsed is None:
        if looks_like_case_number(text):
            raise CaseRefused(CaseRefusal.BAD_NUMBER, text=text.strip()[:20])
        raise CaseRefused(CaseRefusal.UNKNOWN, number=text.strip()[:20])
    return parsed


async def _new_number(session: AsyncSession) -> str:
    for _ in range(50):
        number = case_number(1_000_000 + secrets.randbelow(9_000_000))
        if not await session.scalar(select(Case.id).where(Case.number == number)):
            return number
    raise RuntimeError("no free case number after 50 tries")


def _committed(kind: CaseKind, service: ServiceDef, committed_days: int | None) -> int:
    days = service.processing_days if committed_days is None else committed_days
    if kind in (CaseKind.PROMISED, CaseKind.CORRECTION) and days < 1:
        raise CaseRefused(CaseRefusal.DAYS_REQUIRED)
    if not 0 <= days <= MAX_COMMITTED_DAYS:
        raise CaseRefused(CaseRefusal.BAD_DAYS, days=days, limit=MAX_COMMITTED_DAYS)
    return days


def _missing(service: ServiceDef, missing: Sequence[int], note: str | None) -> list[dict[str, str]]:
    """The items a 补正 notice lists, in the order of the service's materials list."""
    chosen = sorted(set(missing))
    for item in chosen:
        if not 0 <= item < len(service.materials):
            raise CaseRefused(CaseRefusal.BAD_ITEM, item=item, count=len(service.materials))
    if not chosen and not _clean(note):
        raise CaseRefused(CaseRefusal.MISSING_ITEMS)
    return [_text(service.materials[item].name) or {} for item in chosen]


def _refusal_texts(reason: str | None, legal_basis: str | None) -> tuple[str, str]:
    reason, basis = _clean(reason, 1000), _clean(legal_basis, 1000)
    if not reason:
        raise CaseRefused(CaseRefusal.REASON_REQUIRED)
    if not basis:
        raise CaseRefused(CaseRefusal.BASIS_REQUIRED)
    return reason, basis


def _parts(service: ServiceDef, parts: Sequence[PartSpec]) -> list[tuple[str, int]]:
    named = [(_clean(p.name, 200), service.processing_days if p.working_days is None
              else p.working_days) for p in parts]
    names = [name for name, _ in named]
    if len(named) < 2 or len(set(names)) != len(names) or not all(names):
        raise CaseRefused(CaseRefusal.PARTS_REQUIRED)
    for name, days in named:
        if days < 1:
            raise CaseRefused(CaseRefusal.DAYS_REQUIRED, part=name)
        if days > MAX_COMMITTED_DAYS:
            raise CaseRefused(CaseRefusal.BAD_DAYS, days=days, limit=MAX_COMMITTED_DAYS)
    return named


# --- opening ----------------------------------------------------------------------------------


async def open_case(session: AsyncSession, centre: Centre, now: dt.datetime, *, actor: str,
                    kind: CaseKind, appointment_id: int | None = None,
                    service_id: int | None = None, person_id: int | None = None,
                    identity_id: int | None = None, committed_days: int | None = None,
                    missing: Sequence[int] = (), missing_note: str | None = None,
                    reason: str | None = None, legal_basis: str | None = None,
                    parts: Sequence[PartSpec] = (), expected_on: dt.date | None = None) -> Case:
    """Open a case at the window, from a served booking or for a walk-in, as ``kind`` says.

    - 即办件 (IMMEDIATE): done at the window; accepted, ready, collected and closed at once.
    - 承诺件 (PROMISED): accepted; due ``committed_days`` working days later (default: the
      service's processing days); the citizen gets the receipt (``case_accepted``).
    - 补办件 (CORRECTION): accepted and at once waiting for the ``missing`` materials (indexes
      into the service's materials list) and/or ``missing_note``; the clock is stopped and the
      citizen gets the one written notice (``case_correction``).
    - 退回件 (RETURNED): refused at the window with ``reason`` and ``legal_basis`` (both
      required); the citizen is told (``case_refused``).
    - 联办件 (JOINT): accepted with two or more ``parts``; due when the slowest part is.
    - 上报件 (REPORTED): accepted and sent up; due on ``expected_on`` when known.

    Args:
        actor: the staff account opening it; it owns the case (reminders go to it).
        appointment_id: the booking served (checked in or completed); its person, service
            and account are the case's. Without it (a walk-in) give ``service_id`` and
            ``person_id``, and ``identity_id`` when the citizen has an account.

    Returns:
        The new case, with its number.

    Raises:
        CaseRefused: UNKNOWN_APPOINTMENT, NOT_SERVED (status), ALREADY_OPENED (number),
            UNKNOWN_SERVICE, DAYS_REQUIRED, BAD_DAYS, MISSING_ITEMS, BAD_ITEM,
            REASON_REQUIRED, BASIS_REQUIRED, PARTS_REQUIRED, BAD_DATE (day).
    """
    if appointment_id is not None:
        appointment = await session.scalar(select(Appointment).where(
            Appointment.id == appointment_id).with_for_update())
        if appointment is None:
            raise CaseRefused(CaseRefusal.UNKNOWN_APPOINTMENT)
        if appointment.status not in (AppointmentStatus.CHECKED_IN, AppointmentStatus.COMPLETED):
            raise CaseRefused(CaseRefusal.NOT_SERVED, status=appointment.status)
        existing = await session.scalar(select(Case.number).where(
            Case.appointment_id == appointment_id))
        if existing is not None:
            raise CaseRefused(CaseRefusal.ALREADY_OPENED, number=existing)
        service_id, person_id = appointment.service_id, appointment.person_id
        identity_id = appointment.identity_id
    if service_id is None or person_id is None:
        raise CaseRefused(CaseRefusal.UNKNOWN_SERVICE)
    service = await _definition(session, service_id)
    today = centre.today(now)
    days = 0
    if kind in (CaseKind.PROMISED, CaseKind.CORRECTION):
        days = _committed(kind, service, committed_days)
    items = _missing(service, missing, missing_note) if kind == CaseKind.CORRECTION else []
    refusal = _refusal_texts(reason, legal_basis) if kind == CaseKind.RETURNED else None
    joint = _parts(service, parts) if kind == CaseKind.JOINT else []
    if kind == CaseKind.REPORTED and expected_on is not None and expected_on < today:
        raise CaseRefused(CaseRefusal.BAD_DATE, day=expected_on)

    case = Case(number=await _new_number(session), appointment_id=appointment_id,
                service_id=service_id, person_id=person_id, identity_id=identity_id, kind=kind,
                owner=actor, opened_at=now, opened_on=today, committed_days=days,
                corrections=0, paused_days=0, details={}, created_at=now, updated_at=now)
    session.add(case)
    if refusal is not None:
        case.refusal_reason, case.legal_basis = refusal
        await _step(session, now, case, CaseAction.REFUSE, actor, reason=refusal[0],
                    legal_basis=refusal[1])
        await _tell_citizen(session, centre, now, case, "case_refused", "refused", case_payload(
            case, service, reason=refusal[0], legal_basis=refusal[1], phone=service.phone))
        return case

    if kind == CaseKind.JOINT:
        case.committed_days = max(d for _, d in joint)
        case.due_on = joint_due_date(today, (d for _, d in joint), centre.calendar)
    elif kind == CaseKind.REPORTED:
        case.due_on = expected_on
    else:
        case.due_on = due_date(today, days, centre.calendar)
    await _step(session, now, case, CaseAction.ACCEPT, actor, kind=kind.value,
                due_on=_iso(case.due_on), committed_days=case.committed_days)
    for name, part_days in joint:
        session.add(CasePart(case_id=case.id, name=name, working_days=part_days,
                             due_on=due_date(today, part_days, centre.calendar)))

    if kind == CaseKind.IMMEDIATE:
        _mark_ready(case, centre, now)
        await _step(session, now, case, CaseAction.READY, actor)
        case.delivery = "window"
        await _hand_over(session, now, case, CaseAction.COLLECT, actor)
    elif kind == CaseKind.CORRECTION:
        await _correct(session, centre, now, case, service, actor=actor, items=items,
                       note=_clean(missing_note), approved_by=None)
    else:
        extra: dict[str, Any] = {"committed_days": case.committed_days,
                                 "place": _text(service.place), "phone": service.phone}
        if kind == CaseKind.JOINT:
            extra["parts"] = [{"name": name, "due_on": _iso(due_date(today, d, centre.calendar))}
                              for name, d in joint]
        if kind == CaseKind.REPORTED:
            extra["expected_on"] = _iso(expected_on)
        await _tell_citizen(session, centre, now, case, "case_accepted", "accepted",
                            case_payload(case, service, **extra))
    return case


# --- 补正 -------------------------------------------------------------------------------------


async def _correct(session: AsyncSession, centre: Centre, now: dt.datetime, case: Case,
                   service: ServiceDef, *, actor: str, items: list[dict[str, str]], note: str,
                   approved_by: str | None) -> None:
    today = centre.today(now)
    deadline = correction_deadline(today, centre.cases, centre.calendar)
    case.paused_on, case.correction_due_on = today, deadline
    case.corrections += 1
    case.details = {**case.details, "correction": {"items": items, "note": note or None,
                                                   "deadline": deadline.isoformat()}}
    await _step(session, now, case, CaseAction.CORRECTION, actor, reason=note or None,
                items=items, deadline=deadline.isoformat(), approved_by=approved_by,
                number_of=case.corrections)
    await _tell_citizen(session, centre, now, case, "case_correction", f"correction:{case.corrections}",
                        case_payload(case, service, items=items, note=note or None,
                                 deadline=deadline.isoformat(), place=_text(service.place),
                                 phone=service.phone, book_service=service.code))


async def request_correction(session: AsyncSession, centre: Centre, now: dt.datetime,
                             number: str, *, actor: str, missing: Sequence[int] = (),
                             note: str | None = None, approved_by: str | None = None,
                             supervisors: Sequence[str] = ()) -> Case:
    """Tell the citizen, once and in writing, what is missing (一次性补正告知); the case clock
    stops until the materials arrive (``resubmit``).

    A case may get ``cases.corrections_without_approval`` such notices (one by default); another
    needs ``approved_by`` naming one of ``supervisors``.

    Args:
        missing: indexes into the service's materials list.
        note: free text for anything the list does not name.

    Raises:
        CaseRefused: BAD_NUMBER, UNKNOWN, NOT_ALLOWED (state), CORRECTION_LIMIT (corrections),
            NOT_SUPERVISOR (actor), MISSING_ITEMS, BAD_ITEM.
    """
    case = await _locked(session, number)
    if case.state not in CLOCK_RUNNING:
        raise CaseRefused(CaseRefusal.NOT_ALLOWED, number=case.number, state=case.state,
                          action=CaseAction.CORRECTION.value)
    if case.corrections >= centre.cases.corrections_without_approval:
        if approved_by is None:
            raise CaseRefused(CaseRefusal.CORRECTION_LIMIT, number=case.number,
                              corrections=case.corrections)
        if approved_by not in supervisors:
            raise CaseRefused(CaseRefusal.NOT_SUPERVISOR, actor=approved_by)
    service = await _definition(session, case.service_id)
    items = _missing(service, missing, note)
    await _correct(session, centre, now, case, service, actor=actor, items=items,
                   note=_clean(note), approved_by=approved_by)
    return case


async def resubmit(session: AsyncSession, centre: Centre, now: dt.datetime, number: str, *,
                   actor: str) -> Case:
    """The missing materials arrived: the clock runs again and the due date (and each open
    department's) moves by the working days spent waiting; the citizen is told the new date
    (``case_resubmitted``).

    Raises:
        CaseRefused: BAD_NUMBER, UNKNOWN, NOT_ALLOWED (state).
    """
    case = await _locked(session, number)
    if case.state != CaseState.CORRECTION or case.paused_on is None:
        raise CaseRefused(CaseRefusal.NOT_ALLOWED, number=case.number, state=case.state,
                          action=CaseAction.RESUBMIT.value)
    paused = paused_working_days(case.paused_on, centre.today(now), centre.calendar)
    if case.due_on is not None:
        case.due_on = centre.calendar.add_working_days(case.due_on, paused)
    for part in (await session.scalars(select(CasePart).where(
            CasePart.case_id == case.id, CasePart.done_at.is_(None)))).all():
        part.due_on = centre.calendar.add_working_days(part.due_on, paused)
    case.paused_days += paused
    case.paused_on = case.correction_due_on = None
    await _step(session, now, case, CaseAction.RESUBMIT, actor, paused_days=paused,
                due_on=_iso(case.due_on))
    service = await _definition(session, case.service_id)
    await _tell_citizen(session, centre, now, case, "case_resubmitted", f"resubmitted:{case.corrections}",
                        case_payload(case, service, paused_days=paused))
    return case


# --- work and result --------------------------------------------------------------------------


async def start_processing(session: AsyncSession, centre: Centre, now: dt.datetime, number: str,
                           *, actor: str) -> Case:
    """Record that work on an accepted case has begun (in progress).

    Raises:
        CaseRefused: BAD_NUMBER, UNKNOWN, NOT_ALLOWED (state).
    """
    case = await _locked(session, number)
    await _step(session, now, case, CaseAction.START, actor)
    return case


async def mark_part_done(session: AsyncSession, centre: Centre, now: dt.datetime, number: str,
                         part_id: int, *, actor: str) -> CasePart:
    """Mark one department's part of a joint case done (again: no change).

    Raises:
        CaseRefused: BAD_NUMBER, UNKNOWN, BAD_PART (part), NOT_ALLOWED (state).
    """
    case = await _locked(session, number)
    part = await session.scalar(select(CasePart).where(CasePart.id == part_id,
                                                       CasePart.case_id == case.id))
    if part is None:
        raise CaseRefused(CaseRefusal.BAD_PART, part=part_id)
    if part.done_at is not None:
        return part
    await _step(session, now, case, CaseAction.PART_DONE, actor, part=part.name)
    part.done_at, part.done_by = now, actor
    return part


def _mark_ready(case: Case, centre: Centre, now: dt.datetime) -> None:
    today = centre.today(now)
    case.ready_at, case.ready_on = now, today
    case.clock_days = clock_working_days(case.opened_on, today, case.paused_days, centre.calendar)


async def _make_ready(session: AsyncSession, centre: Centre, now: dt.datetime, case: Case,
                      actor: str, **detail: Any) -> None:
    if case.state not in CLOCK_RUNNING:
        raise CaseRefused(CaseRefusal.NOT_ALLOWED, number=case.number, state=case.state,
                          action=CaseAction.READY.value)
    open_parts = (await session.scalars(select(CasePart.name).where(
        CasePart.case_id == case.id, CasePart.done_at.is_(None)).order_by(CasePart.id))).all()
    if open_parts:
        raise CaseRefused(CaseRefusal.PARTS_OPEN, number=case.number, open=list(open_parts))
    _mark_ready(case, centre, now)
    await _step(session, now, case, CaseAction.READY, actor, clock_days=case.clock_days,
                **detail)


async def _hand_over(session: AsyncSession, now: dt.datetime, case: Case, how: CaseAction,
                     actor: str, **detail: Any) -> None:
    """Collected or mailed, and with that closed."""
    await _step(session, now, case, how, actor, **detail)
    case.closed_at = now
    await _step(session, now, case, CaseAction.CLOSE, actor)


async def mark_ready(session: AsyncSession, centre: Centre, now: dt.datetime, number: str, *,
                     actor: str, pickup_place: str | None = None,
                     pickup_hours: str | None = None) -> Case:
    """办结: the result is ready to collect; the citizen is told where, when and what to bring
    (``case_ready``, delivery "pickup").

    Args:
        pickup_place, pickup_hours: override the catalog's (service ``case.pickup_place`` or its
            place; ``case.pickup_hours`` or its opening hours) for this case.

    Raises:
        CaseRefused: BAD_NUMBER, UNKNOWN, NOT_ALLOWED (state), PARTS_OPEN (open).
    """
    case = await _locked(session, number)
    service = await _definition(session, case.service_id)
    place = _both(_clean(pickup_place)) if _clean(pickup_place) else \
        _text(service.case.pickup_place or service.place)
    hours = _both(_clean(pickup_hours)) if _clean(pickup_hours) else _text(service.case.pickup_hours)
    pickup = {"place": place, "hours": hours, "bring": _text(service.case.bring)}
    case.details = {**case.details, "pickup": pickup}
    await _make_ready(session, centre, now, case, actor, pickup=pickup)
    await _tell_citizen(session, centre, now, case, "case_ready", "ready:pickup", case_payload(
        case, service, delivery="pickup", ready_on=_iso(case.ready_on), **pickup,
        mail=service.case.mail))
    return case


async def mail_result(session: AsyncSession, centre: Centre, now: dt.datetime, number: str, *,
                      actor: str, tracking_number: str) -> Case:
    """Post the result (邮寄) and close the case; the citizen gets the tracking number
    (``case_ready``, delivery "mail"). A case still in work is marked ready first.

    Raises:
        CaseRefused: BAD_NUMBER, UNKNOWN, TRACKING_REQUIRED, NO_MAILING, NOT_ALLOWED (state),
            PARTS_OPEN (open).
    """
    tracking = _clean(tracking_number, MAX_TRACKING)
    if not tracking:
        raise CaseRefused(CaseRefusal.TRACKING_REQUIRED)
    case = await _locked(session, number)
    service = await _definition(session, case.service_id)
    if not service.case.mail:
        raise CaseRefused(CaseRefusal.NO_MAILING, number=case.number)
    if case.state != CaseState.READY:
        await _make_ready(session, centre, now, case, actor)
    case.delivery, case.tracking_number = "mail", tracking
    await _hand_over(session, now, case, CaseAction.MAIL, actor, tracking_number=tracking)
    await _tell_citizen(session, centre, now, case, "case_ready", "ready:mail", case_payload(
        case, service, delivery="mail", ready_on=_iso(case.ready_on), tracking_number=tracking))
    return case


async def collect(session: AsyncSession, centre: Centre, now: dt.datetime, number: str, *,
                  actor: str) -> Case:
    """The citizen collected the result at the window (领取): the case is closed.

    Raises:
        CaseRefused: BAD_NUMBER, UNKNOWN, NOT_ALLOWED (state).
    """
    case = await _locked(session, number)
    case.delivery = "pickup"
    await _hand_over(session, now, case, CaseAction.COLLECT, actor)
    return case


async def refuse(session: AsyncSession, centre: Centre, now: dt.datetime, number: str, *,
                 actor: str, reason: str, legal_basis: str) -> Case:
    """Refuse an open case with the reason and the legal basis, both required; the citizen is
    told, with how to appeal (``case_refused``).

    Raises:
        CaseRefused: REASON_REQUIRED, BASIS_REQUIRED, BAD_NUMBER, UNKNOWN, NOT_ALLOWED (state).
    """
    reason, basis = _refusal_texts(reason, legal_basis)
    case = await _locked(session, number)
    await _step(session, now, case, CaseAction.REFUSE, actor, reason=reason, legal_basis=basis)
    case.refusal_reason, case.legal_basis = reason, basis
    case.paused_on = case.correction_due_on = None
    service = await _definition(session, case.service_id)
    await _tell_citizen(session, centre, now, case, "case_refused", "refused", case_payload(
        case, service, reason=reason, legal_basis=basis, phone=service.phone))
    return case


async def withdraw(session: AsyncSession, centre: Centre, now: dt.datetime, number: str, *,
                   actor: str, identity_ids: Sequence[int] | None = None,
                   reason: str | None = None) -> Case:
    """The citizen withdraws an open case (撤回). The citizen is not sent a notice (they
    asked for it); the case's owner is told (``case_withdrawn``) unless the owner recorded it.

    Args:
        identity_ids: when a citizen acts, the accounts they act as; the case must belong to
            one of them. None when staff record a withdrawal the citizen asked for.

    Raises:
        CaseRefused: BAD_NUMBER, UNKNOWN, NOT_YOURS, NOT_ALLOWED (state).
    """
    case = await _locked(session, number)
    if identity_ids is not None and case.identity_id not in identity_ids:
        raise CaseRefused(CaseRefusal.NOT_YOURS)
    before = case.state
    text = _clean(reason) or None
    await _step(session, now, case, CaseAction.WITHDRAW, actor, reason=text)
    case.paused_on = case.correction_due_on = None
    if actor != case.owner:
        await tell_staff(session, now, (case.owner,), kind="case_withdrawn",
                         key=f"case:{case.id}:withdrawn",
                         payload=case_payload(case, await _definition(session, case.service_id),
                                              state=before.value, reason=text,
                                              by_citizen=identity_ids is not None))
    return case


async def set_expected_answer(session: AsyncSession, centre: Centre, now: dt.datetime,
                              number: str, *, actor: str, expected_on: dt.date) -> Case:
    """Record when the higher authority is expected to answer a reported case (上报件); that
    is its due date from now on, and the citizen is told (``case_expected``).

    Raises:
        CaseRefused: BAD_NUMBER, UNKNOWN, NOT_ALLOWED (kind or state), BAD_DATE (day).
    """
    case = await _locked(session, number)
    if case.kind != CaseKind.REPORTED:
        raise CaseRefused(CaseRefusal.NOT_ALLOWED, number=case.number, state=case.state,
                          action=CaseAction.EXPECTED.value)
    if expected_on < centre.today(now):
        raise CaseRefused(CaseRefusal.BAD_DATE, day=expected_on)
    await _step(session, now, case, CaseAction.EXPECTED, actor, expected_on=_iso(expected_on),
                due_before=_iso(case.due_on))
    case.due_on = expected_on
    service = await _definition(session, case.service_id)
    await _tell_citizen(session, centre, now, case, "case_expected", f"expected:{expected_on.isoformat()}",
                        case_payload(case, service, expected_on=_iso(expected_on)))
    return case


# --- extensions (延期) -------------------------------------------------------------------------


async def request_extension(session: AsyncSession, centre: Centre, now: dt.datetime, number: str,
                            *, actor: str, days: int, reason: str,
                            supervisors: Sequence[str]) -> CaseExtension:
    """Ask a supervisor to move a case's due date by ``days`` working days, with a reason; the
    supervisors are alerted (``case_extension_request``). One request at a time per case.

    Raises:
        CaseRefused: REASON_REQUIRED, BAD_DAYS (days, limit), BAD_NUMBER, UNKNOWN,
            NOT_ALLOWED (state), NO_DUE_DATE, EXTENSION_PENDING (extension).
    """
    text = _clean(reason, 1000)
    if not text:
        raise CaseRefused(CaseRefusal.REASON_REQUIRED)
    limit = centre.cases.max_extension_working_days
    if not 1 <= days <= limit:
        raise CaseRefused(CaseRefusal.BAD_DAYS, days=days, limit=limit)
    case = await _locked(session, number)
    if case.state not in OPEN_STATES:
        raise CaseRefused(CaseRefusal.NOT_ALLOWED, number=case.number, state=case.state,
                          action=CaseAction.EXTENSION_REQUESTED.value)
    if case.due_on is None:
        raise CaseRefused(CaseRefusal.NO_DUE_DATE, number=case.number)
    pending = await session.scalar(select(CaseExtension.id).where(
        CaseExtension.case_id == case.id, CaseExtension.status == ExtensionStatus.REQUESTED))
    if pending is not None:
        raise CaseRefused(CaseRefusal.EXTENSION_PENDING, extension=pending)
    extension = CaseExtension(case_id=case.id, days=days, reason=text,
                              status=ExtensionStatus.REQUESTED, requested_by=actor,
                              requested_at=now, due_before=case.due_on)
    session.add(extension)
    await session.flush()
    await _step(session, now, case, CaseAction.EXTENSION_REQUESTED, actor, reason=text,
                extension=extension.id, days=days)
    await tell_staff(session, now, supervisors, kind="case_extension_request",
                     key=f"case_extension:{extension.id}:request",
                     payload=case_payload(case, await _definition(session, case.service_id),
                                          extension=extension.id, days=days, reason=text,
                                          requested_by=actor))
    return extension


async def decide_extension(session: AsyncSession, centre: Centre, now: dt.datetime,
                           extension_id: int, *, actor: str, approve: bool,
                           supervisors: Sequence[str], note: str | None = None) -> CaseExtension:
    """A supervisor approves or refuses an extension request; the first decision wins.

    Approved: the due date moves by the requested working days and the citizen is told the
    reason and the new date (``case_extended``). Either way the requester is told
    (``case_extension_decided``). Nobody decides their own request.

    Raises:
        CaseRefused: NOT_SUPERVISOR (actor), UNKNOWN, SELF_APPROVAL, ALREADY_DECIDED (status,
            by), NOT_ALLOWED (state: approving for a case no longer open), NO_DUE_DATE.
    """
    if actor not in supervisors:
        raise CaseRefused(CaseRefusal.NOT_SUPERVISOR, actor=actor)
    extension = await session.get(CaseExtension, extension_id, populate_existing=True)
    if extension is None:
        raise CaseRefused(CaseRefusal.UNKNOWN, number=str(extension_id))
    if extension.requested_by == actor:
        raise CaseRefused(CaseRefusal.SELF_APPROVAL)
    case = await session.scalar(select(Case).where(Case.id == extension.case_id).with_for_update()
                                .execution_options(populate_existing=True))
    assert case is not None  # a foreign key keeps it
    if approve and case.state not in OPEN_STATES:
        raise CaseRefused(CaseRefusal.NOT_ALLOWED, number=case.number, state=case.state,
                          action=CaseAction.EXTENSION_APPROVED.value)
    if approve and case.due_on is None:
        raise CaseRefused(CaseRefusal.NO_DUE_DATE, number=case.number)
    status = ExtensionStatus.APPROVED if approve else ExtensionStatus.REFUSED
    new_due = extended_due_date(case.due_on, extension.days, centre.calendar) \
        if approve and case.due_on is not None else None
    decided = await session.execute(
        update(CaseExtension).where(CaseExtension.id == extension_id,
                                    CaseExtension.status == ExtensionStatus.REQUESTED)
        .values(status=status, decided_by=actor, decided_at=now,
                decision_note=_clean(note, 1000) or None, due_after=new_due)
        .execution_options(synchronize_session=False))
    await session.refresh(extension)
    if not decided.rowcount:  # type: ignore[attr-defined]
        raise CaseRefused(CaseRefusal.ALREADY_DECIDED, status=extension.status,
                          by=extension.decided_by)
    service = await _definition(session, case.service_id)
    if approve:
        before = case.due_on
        case.due_on = new_due
        await _step(session, now, case, CaseAction.EXTENSION_APPROVED, actor,
                    reason=extension.reason, extension=extension.id, days=extension.days,
                    due_before=_iso(before), due_after=_iso(new_due))
        await _tell_citizen(session, centre, now, case, "case_extended", f"extended:{extension.id}",
                            case_payload(case, service, reason=extension.reason,
                                     days=extension.days, due_before=_iso(before)))
    else:
        await _step(session, now, case, CaseAction.EXTENSION_REFUSED, actor,
                    reason=extension.decision_note, extension=extension.id)
    await tell_staff(session, now, (extension.requested_by,), kind="case_extension_decided",
                     key=f"case_extension:{extension.id}:decided",
                     payload=case_payload(case, service, extension=extension.id, approved=approve,
                                          days=extension.days, note=extension.decision_note,
                                          decided_by=actor))
    return extension


# --- 回访 -------------------------------------------------------------------------------------


async def rate_case(session: AsyncSession, centre: Centre, now: dt.datetime, *, case_id: int,
                    identity_id: int, level: int, answer_days: int,
                    resolve_days: int) -> tuple[Case, Complaint | None]:
    """The citizen answers the 回访 of a closed case on the five-level scale (once per case);
    不满意 or worse opens a complaint (storage.feedback) linked from the case.

    Args:
        answer_days, resolve_days: ``conversation.complaint_answer_working_days`` and
            ``complaint_resolution_working_days``.

    Raises:
        CaseRefused: BAD_LEVEL, NOT_YOURS, NOT_ALLOWED (state), ALREADY_RATED.
    """
    if level not in LEVELS:
        raise CaseRefused(CaseRefusal.BAD_LEVEL)
    case = await session.get(Case, case_id, populate_existing=True)
    if case is None or case.identity_id != identity_id:
        raise CaseRefused(CaseRefusal.NOT_YOURS)
    if case.state != CaseState.CLOSED:
        raise CaseRefused(CaseRefusal.NOT_ALLOWED, number=case.number, state=case.state,
                          action=CaseAction.FOLLOWUP.value)
    answered = await session.execute(
        update(Case).where(Case.id == case_id, Case.followup_level.is_(None))
        .values(followup_level=level, followup_at=now, updated_at=now)
        .execution_options(synchronize_session=False))
    if not answered.rowcount:  # type: ignore[attr-defined]
        raise CaseRefused(CaseRefusal.ALREADY_RATED, number=case.number)
    await session.refresh(case)
    actor = f"identity:{identity_id}"
    await _step(session, now, case, CaseAction.FOLLOWUP, actor, level=level)
    complaint = None
    if level <= COMPLAINT_AT_OR_BELOW:
        complaint = await open_complaint(session, centre, now, identity_id=identity_id, text="",
                                         appointment_id=case.appointment_id, case_id=case.id,
                                         answer_days=answer_days, resolve_days=resolve_days)
        case.complaint_id = complaint.id
    return case, complaint


async def add_followup_comment(session: AsyncSession, case_id: int, *, identity_id: int,
                               comment: str) -> bool:
    """Keep the citizen's optional words with their 回访 answer (and its complaint), ID
    numbers and mobiles masked.

    Returns:
        False when the case is not theirs or not answered yet.
    """
    case = await session.get(Case, case_id)
    if case is None or case.identity_id != identity_id or case.followup_level is None:
        return False
    case.followup_comment = mask_text(comment.strip()[:1000])
    if case.complaint_id is not None:
        complaint = await session.get(Complaint, case.complaint_id)
        if complaint is not None and not complaint.text:
            complaint.text = case.followup_comment
    return True


# --- looking cases up -------------------------------------------------------------------------


async def find_case(session: AsyncSession, number: str) -> Case:
    """The case with the number a citizen or staff member typed (spaces, full-width digits and
    look-alike letters allowed).

    Raises:
        CaseRefused: BAD_NUMBER (text: the check digit does not match), UNKNOWN (number).
    """
    parsed = _number(number)
    case = await session.scalar(select(Case).where(Case.number == parsed))
    if case is None:
        raise CaseRefused(CaseRefusal.UNKNOWN, number=parsed)
    return case


async def _view(session: AsyncSession, centre: Centre, now: dt.datetime, case: Case) -> CaseView:
    parts = (await session.scalars(select(CasePart).where(CasePart.case_id == case.id)
                                   .order_by(CasePart.id))).all()
    events = (await session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)
                                    .order_by(CaseEvent.id))).all()
    extensions = (await session.scalars(select(CaseExtension).where(
        CaseExtension.case_id == case.id).order_by(CaseExtension.id))).all()
    return CaseView(case, await _definition(session, case.service_id), tuple(parts),
                    tuple(events), tuple(extensions), _overdue(case, centre, now))


def _overdue(case: Case, centre: Centre, now: dt.datetime) -> bool:
    return case.state in CLOCK_RUNNING and is_overdue(case.due_on, now, centre.cases, centre.tz)


async def view_case(session: AsyncSession, centre: Centre, now: dt.datetime,
                    number: str) -> CaseView:
    """A case with its departments, history and extensions (/case N).

    Raises:
        CaseRefused: BAD_NUMBER, UNKNOWN.
    """
    return await _view(session, centre, now, await find_case(session, number))


async def cases_of_accounts(session: AsyncSession, centre: Centre, now: dt.datetime,
                            identity_ids: Sequence[int], *, limit: int = 10) -> list[CaseView]:
    """The cases of these accounts (办件进度): open ones first, then the most recent.

    Args:
        identity_ids: the asking account and the accounts verifiably linked to it.
    """
    if not identity_ids:
        return []
    still_open = sql_case((Case.state.in_([s.value for s in (*OPEN_STATES, CaseState.READY)]), 0),
                          else_=1)
    cases = (await session.scalars(select(Case).where(Case.identity_id.in_(list(identity_ids)))
                                   .order_by(still_open, Case.opened_at.desc(), Case.id.desc())
                                   .limit(limit))).all()
    return [await _view(session, centre, now, case) for case in cases]


async def open_cases(session: AsyncSession, centre: Centre, now: dt.datetime, *,
                     owner: str | None = None, limit: int = 50) -> list[CaseLine]:
    """Open cases (accepted, waiting for materials, in progress, ready) by due date, overdue
    ones first, cases without a due date last (/cases).

    Args:
        owner: only the cases this staff account owns.
    """
    query = select(Case, Service.definition).join(Service, Service.id == Case.service_id).where(
        Case.state.in_([s.value for s in (*OPEN_STATES, CaseState.READY)]))
    if owner is not None:
        query = query.where(Case.owner == owner)
    rows = (await session.execute(query.order_by(Case.due_on.is_(None), Case.due_on, Case.id)
                                  .limit(limit))).all()
    lines = [CaseLine(case, ServiceDef.from_json(definition), _overdue(case, centre, now))
             for case, definition in rows]
    return sorted(lines, key=lambda line: not line.overdue)


async def case_of_appointment(session: AsyncSession, appointment_id: int) -> Case | None:
    """The case opened from a booking, if one was (a booking opens one case)."""
    return await session.scalar(select(Case).where(Case.appointment_id == appointment_id))
