"""Alerts for the staff group and supervisors, in the centre's default language with the buttons
staff act on: hand-offs (and what their citizens write), home-visit requests, complaints,
escalations of overdue ones, and notifications that could not be delivered."""

from __future__ import annotations

from handlers.context import global_option
from handlers.core import Choice, Reply
from handlers.notices.base import Note, Rendered, Renderer
from handlers.payloads import ApproveVisit, ClaimComplaint, ClaimHandoff, DeclineVisit
from storage.handoffs import staff_name
from storage.identity import mask_mobile, mask_name
from storage.models import Complaint, Handoff, HomeVisitRequest, Person, RequestStatus, Service


def _said(note: Note, handoff: Handoff | None) -> str:
    messages = (handoff.context.get("messages") if handoff is not None else None) or []
    if not messages:
        return ""
    return "\n" + note.t("staff.alert_said", messages="\n".join(f"» {m}" for m in messages[-3:]))


def _claim_button(note: Note, number: int) -> tuple[tuple[Choice, ...], ...]:
    return ((global_option(note.t("staff.claim"), ClaimHandoff(number)),),)


async def _handoff(note: Note) -> Rendered:
    payload = note.row.payload
    handoff = await note.session.get(Handoff, int(payload["handoff"]))
    if payload.get("again") and (handoff is None or handoff.status != RequestStatus.OPEN):
        return Rendered(drop="claimed before the reminder")
    text = note.t("staff.handoff_alert", number=payload["handoff"],
                  channel=payload.get("channel", "-"),
                  flow=payload.get("flow") or "-", name=payload.get("name") or "-",
                  mobile=payload.get("mobile") or "-") + _said(note, handoff)
    if payload.get("again"):
        text = note.t("staff.handoff_again", number=payload["handoff"],
                      minutes=payload["again"]) + _said(note, handoff)
    return Rendered([Reply(text, _claim_button(note, int(payload["handoff"])))])


async def _handoff_message(note: Note) -> Rendered:
    """What the citizen wrote, for the owner of the hand-off (in the staff group)."""
    handoff = await note.session.get(Handoff, int(note.row.payload["handoff"]))
    if handoff is None or handoff.status == RequestStatus.CLOSED:
        return Rendered(drop="hand-off closed")
    owner = await staff_name(note.session, handoff.claimed_by)
    # "owner": the owner's account, for a channel that tells only them (the WeCom app).
    return Rendered([Reply(note.t("staff.citizen_says", number=handoff.id, owner=owner,
                                  text=note.row.payload.get("text", "")))],
                    fields={"owner": handoff.claimed_by or "", "handoff": str(handoff.id)})


async def _handoff_overdue(note: Note) -> Rendered:
    handoff = await note.session.get(Handoff, int(note.row.payload["handoff"]))
    if handoff is None or handoff.status != RequestStatus.OPEN:
        return Rendered(drop="claimed meanwhile")
    return Rendered([Reply(note.t("staff.handoff_overdue", number=handoff.id,
                                  minutes=note.row.payload.get("minutes", "-"),
                                  since=note.when(handoff.opened_at)) + _said(note, handoff),
                           _claim_button(note, handoff.id))])


async def _complaint_overdue(note: Note) -> Rendered:
    complaint = await note.session.get(Complaint, int(note.row.payload["complaint"]))
    answer = note.row.payload.get("due") == "answer"
    if complaint is None or complaint.status == RequestStatus.CLOSED or (
            answer and complaint.answered_at is not None):
        return Rendered(drop="dealt with meanwhile")
    owner = await staff_name(note.session, complaint.claimed_by) if complaint.claimed_by \
        else note.t("staff.unclaimed")
    due = complaint.first_answer_due if answer else complaint.resolution_due
    key = "staff.complaint_overdue_answer" if answer else "staff.complaint_overdue_resolution"
    buttons = () if complaint.claimed_by else (
        (global_option(note.t("staff.claim"), ClaimComplaint(complaint.id)),),)
    return Rendered([Reply(note.t(key, number=complaint.id, due=note.when(due), owner=owner,
                                  text=complaint.text or "-"), buttons)])


async def _home_visit_overdue(note: Note) -> Rendered:
    request = await note.session.get(HomeVisitRequest, int(note.row.payload["request"]))
    if request is None or request.status != RequestStatus.OPEN:
        return Rendered(drop="decided meanwhile")
    return Rendered([Reply(note.t("staff.home_visit_overdue", number=request.id,
                                  due=note.when(request.due_at)),
                           ((global_option(note.t("staff.approve"), ApproveVisit(request.id)),
                             global_option(note.t("staff.decline"), DeclineVisit(request.id))),))])


async def _home_visit(note: Note) -> Rendered:
    request = await note.session.get(HomeVisitRequest, int(note.row.payload["request"]))
    if request is None:
        return Rendered(drop="request gone")
    person = await note.session.get(Person, request.person_id)
    service = await note.session.get(Service, request.service_id)
    text = note.t("staff.home_visit_alert", number=request.id,
                  service=service.name_zh if service else "-",
                  name=mask_name(person.name) if person else "-",
                  mobile=mask_mobile(person.mobile) if person else "-",
                  ground=note.t(f"staff.ground_{request.eligibility}"), age=request.age or "-",
                  address=request.address, times=request.preferred_times,
                  due=note.when(request.due_at))
    return Rendered([Reply(text, ((
        global_option(note.t("staff.approve"), ApproveVisit(request.id)),
        global_option(note.t("staff.decline"), DeclineVisit(request.id))),))])


async def _complaint(note: Note) -> Rendered:
    complaint = await note.session.get(Complaint, int(note.row.payload["complaint"]))
    if complaint is None:
        return Rendered(drop="complaint gone")
    text = note.t("staff.complaint_alert", number=complaint.id, text=complaint.text or "-",
                  due=note.when(complaint.first_answer_due))
    return Rendered([Reply(text, ((global_option(note.t("staff.claim"),
                                                 ClaimComplaint(complaint.id)),),))])


async def _delivery_failed(note: Note) -> Rendered:
    payload = note.row.payload
    return Rendered([Reply(note.t("staff.delivery_failed", number=payload["outbox"],
                                  kind=payload.get("kind", "-"), error=payload.get("error", "-"),
                                  attempts=payload.get("attempts", "-")))])


async def _relay_failed(note: Note) -> Rendered:
    """A staff answer that could not reach the citizen (they blocked the bot, the WeChat
    window closed while it was on its way)."""
    number = note.row.payload.get("handoff")
    handoff = await note.session.get(Handoff, int(number)) if number is not None else None
    return Rendered([Reply(note.t("staff.relay_failed", number=number or "?",
                                  error=note.row.payload.get("error") or "-"))],
                    fields={"owner": (handoff.claimed_by or "") if handoff else ""})


RENDERERS: dict[str, Renderer] = {
    "handoff_alert": _handoff,
    "handoff_message": _handoff_message,
    "relay_failed": _relay_failed,
    "handoff_overdue": _handoff_overdue,
    "complaint_overdue": _complaint_overdue,
    "home_visit_overdue": _home_visit_overdue,
    "home_visit_alert": _home_visit,
    "complaint_alert": _complaint,
    "delivery_failed": _delivery_failed,
}
