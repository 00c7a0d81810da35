"""Complaint notices: for the supervisors (a new complaint, its text after a low rating, a
催办, a reopening, an overdue one, the month's 回访 sample), sent to each of them in private
except the staff member a complaint names (``fields["exclude"]``, read by the dispatcher); and
for the citizen, the outcome with the 回访 question."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from handlers.context import global_option
from handlers.core import Reply
from handlers.notices import staff as staff_notices
from handlers.notices.base import Note, Rendered, Renderer
from handlers.payloads import ClaimComplaint, ComplaintFollowup
from storage.db import Session
from storage.handoffs import staff_name
from storage.models import Appointment, Case, Complaint, RequestStatus, Service
from storage.privacy import mask_text

Translate = Callable[..., str]


async def subject_text(session: Session, t: Translate, complaint: Complaint) -> str:
    """What the complaint is about: a case, a booking, or nothing in particular."""
    service = await session.get(Service, complaint.service_id) \
        if complaint.service_id is not None else None
    name = service.name_zh if service is not None else "-"
    if complaint.case_id is not None:
        case = await session.get(Case, complaint.case_id)
        if case is not None:
            return t("complaint_staff.subject_case", number=case.number, service=name)
    if complaint.appointment_id is not None:
        appointment = await session.get(Appointment, complaint.appointment_id)
        if appointment is not None:
            return t("complaint_staff.subject_booking", code=appointment.code, service=name)
    return t("complaint_staff.subject_none")


async def complaint_card(session: Session, t: Translate, when: Callable[[dt.datetime], str],
                         complaint: Complaint) -> str:
    """A complaint as a supervisor sees it: kind, category, priority, what it is about, its
    text (masked), whether a photo came with it, and when the answer is due."""
    photo = t("complaint_staff.photo_line", channel=complaint.photo.partition(":")[0]) \
        if complaint.photo else ""
    return t("complaint_staff.alert", number=complaint.id,
             kind=t(f"complaint.kind_{complaint.kind}"),
             category=t(f"complaint.category.{complaint.category}"),
             priority=complaint.priority, subject=await subject_text(session, t, complaint),
             text=mask_text(complaint.text) if complaint.text else t("staff.complaint_no_text"),
             photo=photo, due=when(complaint.first_answer_due),
             complex=t("complaint_staff.complex_mark") if complaint.complex else "")


def _private(complaint: Complaint) -> dict[str, str]:
    """Who must not get it: the staff member the complaint names."""
    return {"exclude": complaint.staff_named or ""}


def _claim(note: Note, complaint: Complaint) -> tuple[tuple[object, ...], ...]:
    if complaint.claimed_by:
        return ()
    return ((global_option(note.t("staff.claim"), ClaimComplaint(complaint.id)),),)


async def _get(note: Note) -> Complaint | None:
    return await note.session.get(Complaint, int(note.row.payload["complaint"]))


async def _alert(note: Note) -> Rendered:
    complaint = await _get(note)
    if complaint is None:
        return Rendered(drop="complaint gone")
    text = await complaint_card(note.session, note.t, note.when, complaint)
    return Rendered([Reply(text, _claim(note, complaint))],  # type: ignore[arg-type]
                    fields=_private(complaint))


async def _details(note: Note) -> Rendered:
    """The text the citizen gave after a low rating opened the complaint."""
    complaint = await _get(note)
    if complaint is None or complaint.status == RequestStatus.CLOSED:
        return Rendered(drop="complaint gone or closed")
    text = note.t("staff.complaint_details_head", number=complaint.id) + "\n" + \
        await complaint_card(note.session, note.t, note.when, complaint)
    if complaint.claimed_by:
        text += "\n" + note.t("complaint_staff.owner_line",
                              owner=await staff_name(note.session, complaint.claimed_by))
    return Rendered([Reply(text, _claim(note, complaint))],  # type: ignore[arg-type]
                    fields=_private(complaint))


async def _urge(note: Note) -> Rendered:
    complaint = await _get(note)
    if complaint is None:
        return Rendered(drop="complaint gone")
    text = note.t("complaint_staff.urge", number=complaint.id,
                  kind=note.t(f"complaint.kind_{complaint.kind}"),
                  days=note.settings.complaints.merge_days,
                  repeat=note.row.payload.get("repeat", complaint.repeats),
                  priority=complaint.priority,
                  state=note.t(f"complaint_staff.status.{complaint.status.value}"))
    return Rendered([Reply(text)], fields=_private(complaint))


async def _reopened(note: Note) -> Rendered:
    complaint = await _get(note)
    if complaint is None:
        return Rendered(drop="complaint gone")
    owner = await staff_name(note.session, complaint.claimed_by) if complaint.claimed_by \
        else note.t("staff.unclaimed")
    return Rendered([Reply(note.t("complaint_staff.reopened", number=complaint.id, owner=owner,
                                  priority=complaint.priority))], fields=_private(complaint))


async def _overdue(note: Note) -> Rendered:
    complaint = await _get(note)
    rendered = await staff_notices.RENDERERS["complaint_overdue"](note)
    if complaint is not None and not rendered.drop:
        rendered.fields = _private(complaint)
    return rendered


async def _sample(note: Note) -> Rendered:
    """That this month's 回访 list is drawn. It names no complaint: one message goes to every
    supervisor, and each reads the list with /complaints, where none naming them is shown."""
    count = len(note.row.payload.get("complaints", []))
    if not count:
        return Rendered(drop="nothing sampled")
    return Rendered([Reply(note.t("complaint_staff.sample_head",
                                  month=note.row.payload.get("month", ""), count=count))])


async def _outcome(note: Note) -> Rendered:
    """The citizen is told the outcome and its classification, and asked the 回访 question."""
    complaint = await _get(note)
    if complaint is None or complaint.status != RequestStatus.CLOSED:
        return Rendered(drop="reopened or gone")
    classification = note.t(f"complaint.class.{complaint.classification}") \
        if complaint.classification else "-"
    buttons = ((global_option(note.t("complaint.satisfied"), ComplaintFollowup(complaint.id, 1)),
                global_option(note.t("complaint.unsatisfied"),
                              ComplaintFollowup(complaint.id, 0))),)
    return Rendered([Reply(note.t("complaint.outcome", number=complaint.id,
                                  text=complaint.outcome or "-", classification=classification),
                           buttons)])


RENDERERS: dict[str, Renderer] = {
    "complaint_alert": _alert,
    "complaint_details": _details,
    "complaint_urge": _urge,
    "complaint_reopened": _reopened,
    "complaint_overdue": _overdue,
    "complaint_sample": _sample,
    "complaint_outcome": _outcome,
}
