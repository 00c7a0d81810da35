"""Alerts for the staff group and supervisors, in the centre's default language with the buttons
staff act on: hand-offs (and what their citizens write), home-visit requests, complaints,
escalations of overdue ones, and notifications that could not be delivered."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from handlers.context import global_option
from handlers.core import Choice, Reply
from handlers.notices.base import Note, Rendered, Renderer
from handlers.payloads import ApproveVisit, ClaimComplaint, ClaimHandoff, DeclineVisit
from storage.handoffs import staff_name
from storage.identity import mask_mobile, mask_name
from storage.models import Complaint, Handoff, HomeVisitRequest, Person, RequestStatus, Service
from storage.privacy import mask_text

Translate = Callable[..., str]
_FLOWS = frozenset({"booking", "my", "guide", "handoff", "home_visit", "rating", "menu"})
_CHANNELS = frozenset({"telegram", "wechat", "terminal"})


def said_lines(t: Translate, handoff: Handoff, last: int = 3) -> str:
    """What the citizen wrote (masked for the group), the latest ``last`` messages."""
    messages = handoff.context.get("messages") or []
    if not messages:
        return t("staff.no_messages")
    return "\n".join(f"» {mask_text(m)}" for m in messages[-last:])


def handoff_text(t: Translate, handoff: Handoff, *, payload: dict[str, Any] | None = None,
                 owner: str | None = None) -> str:
    """A hand-off as staff see it in the group: channel, where the citizen came from, the
    contact (masked), their language and their words (masked); with its owner once claimed.
    Hand-offs opened before the context kept the contact read it from the alert's payload."""
    context, payload = handoff.context, payload or {}
    contact = context.get("contact") or {"name": payload.get("name"),
                                         "mobile": payload.get("mobile")}
    channel = context.get("channel") or payload.get("channel") or ""
    flow = context.get("flow") or "menu"
    locale = context.get("locale") or ""
    text = t("staff.handoff_alert", number=handoff.id,
             channel=t(f"staff.channel_{channel}") if channel in _CHANNELS else channel or "-",
             flow=t(f"staff.flow_{flow}") if flow in _FLOWS else t("staff.flow_other"),
             contact=" ".join(v for v in (contact.get("name"), contact.get("mobile")) if v)
             or t("staff.not_given"),
             language=t("staff.language_en" if locale.startswith("en") else "staff.language_zh"))
    text += "\n" + t("staff.alert_said", messages=said_lines(t, handoff))
    if owner is not None:
        text += "\n" + t("staff.claimed_line", owner=owner, number=handoff.id)
    return text


def complaint_text(t: Translate, when: Callable[[dt.datetime], str], complaint: Complaint, *,
                   owner: str | None = None) -> str:
    """A complaint as staff see it: its text (masked), the first-answer due time and, once
    claimed, its owner."""
    text = t("staff.complaint_alert", number=complaint.id,
             text=mask_text(complaint.text) if complaint.text else t("staff.complaint_no_text"),
             due=when(complaint.first_answer_due))
    if owner is not None:
        text += "\n" + t("staff.complaint_claimed_line", owner=owner, number=complaint.id)
    return text


def _said(note: Note, handoff: Handoff | None) -> str:
    if handoff is None or not handoff.context.get("messages"):
        return ""
    return "\n" + note.t("staff.alert_said", messages=said_lines(note.t, handoff))


def _claim_button(note: Note, number: int) -> tuple[tuple[Choice, ...], ...]:
    return ((global_option(note.t("staff.claim"), ClaimHandoff(number)),),)


async def _handoff(note: Note) -> Rendered:
    payload = note.row.payload
    handoff = await note.session.get(Handoff, int(payload["handoff"]))
    if handoff is None:
        return Rendered(drop="hand-off gone")
    if payload.get("again") and handoff.status != RequestStatus.OPEN:
        return Rendered(drop="claimed before the reminder")
    text = handoff_text(note.t, handoff, payload=payload)
    if payload.get("again"):
        text = note.t("staff.handoff_again", number=payload["handoff"],
                      minutes=payload["again"]) + _said(note, handoff)
    return Rendered([Reply(text, _claim_button(note, int(payload["handoff"])))])


async def _handoff_message(note: Note) -> Rendered:
    """What the citizen wrote, for the owner of the hand-off (in the staff group); while
    nobody owns it, for everyone, with the claim button."""
    handoff = await note.session.get(Handoff, int(note.row.payload["handoff"]))
    if handoff is None or handoff.status == RequestStatus.CLOSED:
        return Rendered(drop="hand-off closed")
    if handoff.claimed_by is None:
        return Rendered([Reply(note.t("staff.citizen_says_unclaimed", number=handoff.id,
                                      text=mask_text(note.row.payload.get("text", ""))),
                               _claim_button(note, handoff.id))])
    owner = await staff_name(note.session, handoff.claimed_by)
    # "owner": the owner's account, for a channel that tells only them (the WeCom app).
    return Rendered([Reply(note.t("staff.citizen_says", number=handoff.id, owner=owner,
                                  text=mask_text(note.row.payload.get("text", ""))))],
                    fields={"owner": handoff.claimed_by or "", "handoff": str(handoff.id)})


async def _handoff_private(note: Note) -> Rendered:
    """What the citizen wrote, as written (a phone number to call back), to the owner alone in
    their private chat with the bot."""
    handoff = await note.session.get(Handoff, int(note.row.payload["handoff"]))
    if handoff is None or handoff.status == RequestStatus.CLOSED:
        return Rendered(drop="hand-off closed")
    return Rendered([Reply(note.t("staff.citizen_says_private", number=handoff.id,
                                  text=note.row.payload.get("text", "")))])


async def _handoff_withdrawn(note: Note) -> Rendered:
    """The citizen withdrew the hand-off: nobody needs to answer it."""
    number = note.row.payload.get("handoff", "?")
    owner = note.row.payload.get("owner")
    if owner:
        return Rendered([Reply(note.t("staff.handoff_withdrawn_owned", number=number,
                                      owner=await staff_name(note.session, owner)))])
    return Rendered([Reply(note.t("staff.handoff_withdrawn", number=number))])


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
                                  text=mask_text(complaint.text or "-")), buttons)])


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
                  address=mask_text(request.address), times=mask_text(request.preferred_times),
                  due=note.when(request.due_at))
    return Rendered([Reply(text, ((
        global_option(note.t("staff.approve"), ApproveVisit(request.id)),
        global_option(note.t("staff.decline"), DeclineVisit(request.id))),))])


async def _complaint(note: Note) -> Rendered:
    complaint = await note.session.get(Complaint, int(note.row.payload["complaint"]))
    if complaint is None:
        return Rendered(drop="complaint gone")
    return Rendered([Reply(complaint_text(note.t, note.when, complaint),
                           ((global_option(note.t("staff.claim"), ClaimComplaint(complaint.id)),),))])


async def _complaint_details(note: Note) -> Rendered:
    """The text the citizen gave after opening a complaint (a low rating), for staff: the
    complaint again with it, and its owner or a claim button."""
    complaint = await note.session.get(Complaint, int(note.row.payload["complaint"]))
    if complaint is None or complaint.status == RequestStatus.CLOSED:
        return Rendered(drop="complaint gone or closed")
    owner = await staff_name(note.session, complaint.claimed_by) if complaint.claimed_by else None
    text = note.t("staff.complaint_details_head", number=complaint.id) + "\n" + complaint_text(
        note.t, note.when, complaint, owner=owner)
    buttons = () if owner is not None else (
        (global_option(note.t("staff.claim"), ClaimComplaint(complaint.id)),),)
    return Rendered([Reply(text, buttons)])


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
    "handoff_private": _handoff_private,
    "handoff_withdrawn": _handoff_withdrawn,
    "relay_failed": _relay_failed,
    "handoff_overdue": _handoff_overdue,
    "complaint_overdue": _complaint_overdue,
    "home_visit_overdue": _home_visit_overdue,
    "home_visit_alert": _home_visit,
    "complaint_alert": _complaint,
    "complaint_details": _complaint_details,
    "delivery_failed": _delivery_failed,
}
