"""What a citizen is told when staff act: a relayed answer (with a way to write back), a closed
hand-off (with a rating of the help), a complaint's answer and outcome, a home-visit decision;
and the rest of a conversation's answer that a channel could not send at once ("reply")."""

from __future__ import annotations

import base64
from typing import Any

from handlers.context import global_option
from handlers.core import Attachment, Choice, Reply
from handlers.i18n import format_when
from handlers.notices.base import Note, Rendered, Renderer, rating_buttons
from handlers.payloads import RateHelp, Rebook, Talk
from storage.models import HomeVisitRequest, RequestStatus


async def _relay(note: Note) -> Rendered:
    """A staff member's answer, with a button to write back."""
    number = int(note.row.payload["handoff"])
    return Rendered([Reply(note.t("relay.from_staff", number=number,
                                  text=note.row.payload.get("text", "")),
                           ((global_option(note.t("relay.write_back"), Talk(number)),),))])


async def _handoff_closed(note: Note) -> Rendered:
    number = int(note.row.payload["handoff"])
    return Rendered([Reply(note.t("relay.closed", number=number),
                           rating_buttons(note, lambda level: RateHelp(number, level)))])


async def _complaint_answer(note: Note) -> Rendered:
    return Rendered([Reply(note.t("relay.complaint_answer", number=note.row.payload["complaint"],
                                  text=note.row.payload.get("text", "")))])


async def _complaint_resolved(note: Note) -> Rendered:
    return Rendered([Reply(note.t("relay.complaint_resolved", number=note.row.payload["complaint"],
                                  text=note.row.payload.get("text", "")))])


async def _home_visit_decided(note: Note) -> Rendered:
    request = await note.session.get(HomeVisitRequest, int(note.row.payload["request"]))
    if request is None:
        return Rendered(drop="request gone")
    if request.status == RequestStatus.APPROVED and request.visit_at is not None:
        text = note.t("relay.home_visit_approved", number=request.id,
                      when=format_when(request.visit_at.astimezone(note.centre.tz), note.locale),
                      address=request.address)
        return Rendered([Reply(text)])
    text = note.t("relay.home_visit_declined", number=request.id,
                  reason=request.decline_reason or "-")
    return Rendered([Reply(text, ((global_option(note.t("menu.book"),
                                                 Rebook(request.service_id)),),))])


def reply_payload(reply: Reply) -> dict[str, Any]:
    """A reply as kept in an outbox row ("reply"), its file included."""
    payload: dict[str, Any] = {
        "text": reply.text, "choices": [[[c.label, c.token] for c in row] for row in reply.choices]}
    if reply.attachment is not None:
        attachment = reply.attachment
        payload["attachment"] = {"filename": attachment.filename, "mime": attachment.mime,
                                 "caption": attachment.caption,
                                 "content": base64.b64encode(attachment.content).decode()}
    return payload


def reply_from_payload(payload: dict[str, Any]) -> Reply:
    file = payload.get("attachment")
    return Reply(text=payload.get("text", ""),
                 choices=tuple(tuple(Choice(label, token) for label, token in row)
                               for row in payload.get("choices", [])),
                 attachment=None if not file else Attachment(
                     file["filename"], base64.b64decode(file["content"]), file["mime"],
                     file.get("caption", "")))


async def _reply(note: Note) -> Rendered:
    # Made when the conversation answered, in the user's language then: sent as it was.
    return Rendered([reply_from_payload(note.row.payload)])


RENDERERS: dict[str, Renderer] = {
    "reply": _reply,
    "relay": _relay,
    "handoff_closed": _handoff_closed,
    "complaint_answer": _complaint_answer,
    "complaint_resolved": _complaint_resolved,
    "home_visit_approved": _home_visit_decided,
    "home_visit_declined": _home_visit_decided,
}
