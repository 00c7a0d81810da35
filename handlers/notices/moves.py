"""A staff offer to move a booking (/move): the citizen's question with accept and decline
buttons, and the staff group's note of the answer (or of the deadline passing)."""

from __future__ import annotations

import datetime as dt

from handlers.context import global_option
from handlers.core import Reply
from handlers.i18n import format_day, format_time
from handlers.notices.base import Note, Rendered, Renderer
from handlers.payloads import AcceptMove, DeclineMove
from storage.handoffs import staff_name
from storage.models import AppointmentStatus, MoveOffer, MoveStatus, Slot


def _slot_text(note: Note, starts_at: dt.datetime) -> str:
    start = starts_at.astimezone(note.centre.tz)
    return f"{format_day(start.date(), note.locale)} {format_time(start)}"


async def _offer(note: Note) -> Rendered:
    """Ask the citizen whether the booking may move; nothing changes until they accept."""
    offer = await note.session.get(MoveOffer, int(note.row.payload["offer"]))
    if offer is None or offer.status != MoveStatus.OFFERED or offer.expires_at <= note.now:
        return Rendered(drop="offer closed")
    if note.appointment is None or note.service is None \
            or note.appointment.status != AppointmentStatus.BOOKED:
        return Rendered(drop="appointment changed")
    slot = await note.session.get(Slot, offer.slot_id)
    if slot is None:
        return Rendered(drop="slot gone")
    text = note.t("move.offer", service=note.service.name.get(note.locale),
                  code=note.appointment.code, old=_slot_text(note, note.appointment.starts_at),
                  new=_slot_text(note, slot.starts_at), place=note.service.place.get(note.locale),
                  until=note.when(offer.expires_at))
    summary = note.t("move.template")
    fields = {**note.fields(), "new_when": _slot_text(note, slot.starts_at),
              "deadline": note.when(offer.expires_at), "summary": summary, "reason": summary}
    return Rendered([Reply(text, ((global_option(note.t("move.accept"), AcceptMove(offer.id)),
                                   global_option(note.t("move.decline"), DeclineMove(offer.id))),))],
                    fields)


async def _answered(note: Note) -> Rendered:
    """Tell the staff group how a move offer ended."""
    offer = await note.session.get(MoveOffer, int(note.row.payload["offer"]))
    if offer is None or note.appointment is None:
        return Rendered(drop="offer gone")
    status = note.row.payload.get("status", offer.status.value)
    text = note.t(f"move.staff_{status}", code=note.appointment.code,
                  owner=await staff_name(note.session, offer.offered_by))
    if note.row.payload.get("by_sms"):
        text += note.t("move.staff_by_sms")
    return Rendered([Reply(text)])


RENDERERS: dict[str, Renderer] = {"move_offer": _offer, "move_answered": _answered}
