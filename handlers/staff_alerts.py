"""Alerts for the staff group: hand-offs, home-visit requests, complaints, failed
notifications. Rendered in the centre's default language, with the buttons staff act on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from handlers.context import global_option
from handlers.core import Reply
from storage.identity import mask_mobile, mask_name
from storage.models import Complaint, HomeVisitRequest, Person, Service

if TYPE_CHECKING:
    from handlers.notifications import Note, Rendered


async def _handoff(note: Note) -> Rendered:
    from handlers.notifications import Rendered

    payload = note.row.payload
    text = note.t("staff.handoff_alert", number=payload["handoff"], channel=payload.get("channel", "-"),
                  flow=payload.get("flow") or "-", name=payload.get("name") or "-",
                  mobile=payload.get("mobile") or "-")
    return Rendered([Reply(text, ((global_option(note.t("staff.claim"), f"claim:{payload['handoff']}"),),))])


async def _home_visit(note: Note) -> Rendered:
    from handlers.notifications import Rendered

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
    return Rendered([Reply(text, ((global_option(note.t("staff.approve"), f"hvok:{request.id}"),
                                   global_option(note.t("staff.decline"), f"hvno:{request.id}")),))])


async def _complaint(note: Note) -> Rendered:
    from handlers.notifications import Rendered

    complaint = await note.session.get(Complaint, int(note.row.payload["complaint"]))
    if complaint is None:
        return Rendered(drop="complaint gone")
    text = note.t("staff.complaint_alert", number=complaint.id, text=complaint.text or "-",
                  due=note.when(complaint.first_answer_due))
    return Rendered([Reply(text, ((global_option(note.t("staff.claim"), f"claimc:{complaint.id}"),),))])


async def _delivery_failed(note: Note) -> Rendered:
    from handlers.notifications import Rendered

    payload = note.row.payload
    return Rendered([Reply(note.t("staff.delivery_failed", number=payload["outbox"],
                                  kind=payload.get("kind", "-"), error=payload.get("error", "-"),
                                  attempts=payload.get("attempts", "-")))])


RENDERERS: dict[str, Callable[[Note], Awaitable[Rendered]]] = {
    "handoff_alert": _handoff,
    "home_visit_alert": _home_visit,
    "complaint_alert": _complaint,
    "delivery_failed": _delivery_failed,
}
