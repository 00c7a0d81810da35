"""What a patient is told of a doctor's 停诊: 替诊 (who takes the same time; accept or cancel
without a strike) and 换诊 (the times offered; pick one or cancel without a strike).

Besides the chat text with its buttons, each gives the values an SMS or a WeChat template
needs (docs/sms.md, docs/wechat.md): ``doctor`` (the substitute, or the doctor of the time
offered, with the title), ``deadline`` (until when to answer), ``new_when`` (the time a 换诊
offers by text: the one held for the patient), and ``summary``/``reason`` (for a template: what
is asked and where to answer: “我的预约” in the chat, which shows the offer with its buttons).
``offer_answered`` confirms an answer given by SMS reply."""

from __future__ import annotations

import datetime as dt

from handlers.context import global_option
from handlers.core import Choice, Reply
from handlers.i18n import format_day, format_time
from handlers.notices.base import Note, Rendered, Renderer
from handlers.payloads import AcceptSubstitute, DeclineSubstitute, MoveCancel, MoveTo
from storage.models import AppointmentStatus, ClosureOffer, Slot
from storage.offer_holds import held_slot
from storage.resources import ResourceInfo, resource_info


def _title(note: Note, resource: ResourceInfo) -> str:
    if resource.kind != "doctor" or not resource.title:
        return note.t("doctor.window")
    return note.t(f"doctor.title_{resource.title}")


def _who(note: Note, resource: ResourceInfo | None) -> str:
    if resource is None:
        return "-"
    return f"{resource.name.get(note.locale)} {_title(note, resource)}"


async def _open_offer(note: Note) -> tuple[ClosureOffer, ResourceInfo | None] | str:
    """The offer still waiting for an answer, with the closed doctor; else why it is dropped."""
    if note.appointment is None or note.service is None:
        return "appointment gone"
    if note.appointment.status != AppointmentStatus.BOOKED:
        return f"appointment {note.appointment.status.value}"
    offer = await note.session.get(ClosureOffer, int(note.row.payload["offer"]))
    if offer is None or offer.status != "pending" or offer.deadline <= note.now:
        return "offer answered or expired"
    return offer, await resource_info(note.session, offer.from_resource_id)


def _when(note: Note, instant: dt.datetime) -> str:
    local = instant.astimezone(note.centre.tz)
    return f"{format_day(local.date(), note.locale)} {format_time(local)}"


async def _substitute(note: Note) -> Rendered:
    found = await _open_offer(note)
    if isinstance(found, str):
        return Rendered(drop=found)
    offer, closed = found
    assert note.appointment is not None and note.service is not None and offer.substitute_id
    substitute = await resource_info(note.session, offer.substitute_id)
    text = note.t("closure_offer.substitute", doctor=_who(note, closed),
                  reason=note.row.payload.get("reason", ""), service=note.service.name.get(note.locale),
                  when=_when(note, note.appointment.starts_at), place=note.service.place.get(note.locale),
                  code=note.appointment.code, substitute=_who(note, substitute),
                  specialty=substitute.specialty.get(note.locale) if substitute and substitute.specialty else "-",
                  deadline=note.when(offer.deadline))
    buttons = ((global_option(note.t("closure_offer.accept"), AcceptSubstitute(offer.id)),),
               (global_option(note.t("closure_offer.decline"), DeclineSubstitute(offer.id)),))
    summary = note.t("closure_offer.template_substitute",
                     name=substitute.name.get(note.locale) if substitute else "-")
    return Rendered([Reply(text, buttons)], {
        **note.fields(), "doctor": _who(note, substitute), "deadline": note.when(offer.deadline),
        "summary": summary, "reason": summary})


async def _move(note: Note) -> Rendered:
    found = await _open_offer(note)
    if isinstance(found, str):
        return Rendered(drop=found)
    offer, closed = found
    assert note.appointment is not None and note.service is not None
    rows: list[tuple[Choice, ...]] = []
    for slot_id in offer.slot_ids:
        slot = await note.session.get(Slot, slot_id)
        if slot is None or slot.starts_at <= note.now:
            continue
        label = _when(note, slot.starts_at)
        if slot.resource_id is not None:
            label += " " + _who(note, await resource_info(note.session, slot.resource_id))
        rows.append((global_option(label, MoveTo(offer.id, slot.id)),))
    rows.append((global_option(note.t("closure_offer.move_cancel"), MoveCancel(offer.id)),))
    text = note.t("closure_offer.move", doctor=_who(note, closed),
                  reason=note.row.payload.get("reason", ""), service=note.service.name.get(note.locale),
                  when=_when(note, note.appointment.starts_at), code=note.appointment.code,
                  deadline=note.when(offer.deadline))
    # By SMS one time is offered: the one whose seat is held for the answer.
    offered = await held_slot(note.session, offer.id) or next(iter(offer.slot_ids), None)
    slot = await note.session.get(Slot, offered) if offered is not None else None
    summary = note.t("closure_offer.template_move")
    fields = {**note.fields(), "deadline": note.when(offer.deadline), "summary": summary,
              "reason": summary}
    if slot is not None:
        fields.update(new_when=_when(note, slot.starts_at), doctor=_who(
            note, await resource_info(note.session, slot.resource_id) if slot.resource_id else None))
    return Rendered([Reply(text, tuple(rows))], fields)


async def _answered(note: Note) -> Rendered:
    """Confirm, by SMS, the answer a patient gave by replying to an offer's text."""
    if note.appointment is None or note.service is None:
        return Rendered(drop="appointment gone")
    answer = note.t(f"offer_answer.{note.row.payload.get('offer_kind', '')}_"
                    f"{note.row.payload.get('answer', '')}")
    fields = {**note.fields(), "summary": answer}
    return Rendered([Reply(answer)], fields)


RENDERERS: dict[str, Renderer] = {
    "closure_substitute": _substitute,
    "closure_move": _move,
    "offer_answered": _answered,
}
