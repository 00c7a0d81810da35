"""What a citizen is told about their appointments: confirmation, reminders (with the materials
again, and cancel / reschedule while allowed), cancellations by the centre, no-shows, strikes and
blocks, waitlist offers, released days, and the request to rate the service."""

from __future__ import annotations

import datetime as dt

from handlers.context import global_option
from handlers.core import Choice, Reply
from handlers.i18n import Speaker, format_day, format_time
from handlers.notices.base import Note, Rendered, Renderer, rating_buttons
from handlers.payloads import BookAgain, CancelBooking, Rate, Rebook, RescheduleBooking, TakeOffer
from handlers.render import materials_text
from storage.catalog import ServiceDef
from storage.models import AppointmentStatus, Service, Slot
from storage.rules import can_change


def _summary_line(note: Note) -> str:
    assert note.appointment is not None and note.service is not None
    start = note.appointment.starts_at.astimezone(note.centre.tz)
    return note.for_whom + note.t("notice.appointment_line", service=note.service.name.get(note.locale),
                  day=format_day(start.date(), note.locale), time=format_time(start),
                  place=note.service.place.get(note.locale), code=note.appointment.code)


def _change_choices(note: Note) -> tuple[tuple[Choice, ...], ...]:
    """Cancel and reschedule, offered only while the cutoff has not passed."""
    assert note.appointment is not None and note.service is not None
    decision = can_change(note.appointment.starts_at, note.now, note.centre.policy(note.service),
                          note.centre.calendar, note.centre.tz)
    if not decision.allowed or decision.late:
        return ()
    code = note.appointment.code
    return ((global_option(note.t("my.cancel"), CancelBooking(code)),
             global_option(note.t("my.reschedule"), RescheduleBooking(code))),)


def _needs_booked(note: Note) -> str | None:
    if note.appointment is None or note.service is None:
        return "appointment gone"
    if note.appointment.status != AppointmentStatus.BOOKED:
        return f"appointment {note.appointment.status.value}"
    if note.appointment.starts_at <= note.now:
        return "appointment already started"
    return None


async def _reminder(note: Note) -> Rendered:
    if reason := _needs_booked(note):
        return Rendered(drop=reason)
    assert note.service is not None
    text = "\n".join([
        note.t("notice.reminder_head"), _summary_line(note),
        note.t("my.materials", materials=materials_text(Speaker(note.locale), note.service)),
        note.t("booking.arrive_early",
               grace=note.centre.policy(note.service).no_show_grace_minutes)])
    return Rendered([Reply(text, _change_choices(note))])


async def _confirmed(note: Note) -> Rendered:
    if reason := _needs_booked(note):
        return Rendered(drop=reason)
    return Rendered([Reply(note.t("notice.confirmed") + "\n" + _summary_line(note),
                           _change_choices(note))])


async def _cancelled(note: Note) -> Rendered:
    if note.appointment is None or note.service is None:
        return Rendered(drop="appointment gone")
    reason = note.row.payload.get("reason") or note.t("notice.no_reason")
    return Rendered([Reply(note.t("notice.cancelled_by_staff", reason=reason) + "\n" + _summary_line(note),
                           ((global_option(note.t("notice.rebook"), Rebook(note.appointment.service_id)),),))])


async def _closure(note: Note) -> Rendered:
    if note.appointment is None or note.service is None:
        return Rendered(drop="appointment gone")
    return Rendered([Reply(
        note.t("notice.closure", reason=note.row.payload.get("reason", "")) + "\n" + _summary_line(note),
        ((global_option(note.t("notice.rebook"), Rebook(note.appointment.service_id)),),))])


async def _no_show(note: Note) -> Rendered:
    if note.appointment is None:
        return Rendered(drop="appointment gone")
    return Rendered([Reply(note.t("notice.no_show") + "\n" + _summary_line(note))])


async def _mark_undone(note: Note) -> Rendered:
    """A window mark the citizen was told of (completion, check-in, no-show) was undone."""
    if note.appointment is None or note.service is None:
        return Rendered(drop="appointment gone")
    undid = note.row.payload.get("undid", "complete")
    return Rendered([Reply(note.t(f"notice.undone_{undid}") + "\n" + _summary_line(note))])


async def _strike_warning(note: Note) -> Rendered:
    payload = note.row.payload
    if payload.get("threshold"):
        text = note.t("notice.strike_warning", count=payload["count"], threshold=payload["threshold"],
                      days=payload["days"], window=note.centre.rules.strike_window_days)
    else:
        text = note.t("notice.strike_count", count=payload["count"])
    return Rendered([Reply(text)])


async def _blocked(note: Note) -> Rendered:
    until = dt.datetime.fromisoformat(note.row.payload["until"])
    return Rendered([Reply(note.t("notice.blocked", strikes=note.row.payload.get("strikes", ""),
                                  until=note.when(until)))],
                    fields={"summary": note.t("notice.blocked_short", until=note.when(until))})


async def _unblocked(note: Note) -> Rendered:
    """Staff lifted a block early."""
    text = note.t("notice.unblocked")
    return Rendered([Reply(text, ((global_option(note.t("menu.book"), BookAgain()),),))],
                    fields={"summary": note.t("notice.unblocked_short")})


async def _waitlist_offer(note: Note) -> Rendered:
    slot = await note.session.get(Slot, int(note.row.payload["slot"]))
    service = await note.session.get(Service, int(note.row.payload["service"]))
    expires = dt.datetime.fromisoformat(note.row.payload["hold_expires_at"])
    if slot is None or service is None or expires <= note.now:
        return Rendered(drop="offer expired")
    definition = ServiceDef.from_json(service.definition)
    start = slot.starts_at.astimezone(note.centre.tz)
    text = note.t("notice.waitlist_offer", service=definition.name.get(note.locale),
                  day=format_day(start.date(), note.locale), time=format_time(start),
                  until=format_time(expires.astimezone(note.centre.tz)))
    return Rendered([Reply(text, ((global_option(note.t("notice.take_offer"), TakeOffer(slot.id)),),))],
                    fields={"service": definition.name.get(note.locale), "when": note.when(slot.starts_at),
                            "starts_at": slot.starts_at.isoformat(),
                            "place": definition.place.get(note.locale), "code": "-"})


async def _release_open(note: Note) -> Rendered:
    service = await note.session.get(Service, int(note.row.payload["service"]))
    if service is None or not service.active:
        return Rendered(drop="service gone")
    definition = ServiceDef.from_json(service.definition)
    day = dt.date.fromisoformat(note.row.payload["day"])
    return Rendered([Reply(note.t("notice.release_open", service=definition.name.get(note.locale),
                                  day=format_day(day, note.locale)),
                           ((global_option(note.t("menu.book"), Rebook(service.id)),),))])


async def _rating_request(note: Note) -> Rendered:
    if note.appointment is None or note.service is None:
        return Rendered(drop="appointment gone")
    text = note.for_whom + note.t("rating.request", service=note.service.name.get(note.locale),
                                  code=note.appointment.code)
    appointment_id = note.appointment.id
    return Rendered([Reply(text, rating_buttons(note, lambda level: Rate(appointment_id, level)))])


RENDERERS: dict[str, Renderer] = {
    "reminder": _reminder,
    "booking_confirmed": _confirmed,
    "cancelled": _cancelled,
    "closure_cancelled": _closure,
    "no_show": _no_show,
    "mark_undone": _mark_undone,
    "strike_warning": _strike_warning,
    "blocked": _blocked,
    "unblocked": _unblocked,
    "waitlist_offer": _waitlist_offer,
    "release_open": _release_open,
    "rating_request": _rating_request,
}
