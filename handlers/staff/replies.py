"""What staff are told: a refusal of the booking rules or of a request's state, one line per
appointment (masked), and leaving a staff flow."""

from __future__ import annotations

from typing import Any

from handlers.context import Ctx
from handlers.core import Reply
from handlers.i18n import format_day, format_time
from handlers.menu import service_name
from handlers.render import when_text
from storage.handoffs import StaffRefusal, StaffRefused
from storage.identity import mask_mobile, mask_name
from storage.models import Appointment, Person, Service
from storage.refusals import BookingRefused, Refusal

# The refusals with a staff message of their own that needs no values beyond the code.
_PLAIN = (Refusal.UNKNOWN_CODE, Refusal.ID_MISMATCH, Refusal.NOT_BLOCKED, Refusal.REASON_REQUIRED,
          Refusal.DUPLICATE, Refusal.FULL, Refusal.SUSPENDED, Refusal.TOO_LATE,
          Refusal.SERVICE_INACTIVE, Refusal.BAD_RANGE, Refusal.NOT_CHECKED_IN)


async def stop(ctx: Ctx) -> list[Reply]:
    """Leave the staff flow (its cancel button, a cancel word or /cancel in the group)."""
    ctx.end()
    return [ctx.reply("staff.stopped")]


def booking_refusal(ctx: Ctx, refused: BookingRefused, code: str = "") -> Reply:
    """Why the booking rules refused what a staff member asked, with the facts they need."""
    details = refused.details
    values: dict[str, Any] = {"code": details.get("code") or code.upper()}
    reason = refused.reason
    if reason == Refusal.WRONG_DAY:
        values["day"] = format_day(details["day"], ctx.locale)
    elif reason == Refusal.NO_SHOW_TOO_EARLY:
        values["at"], values["grace"] = when_text(ctx, details["at"]), details["grace"]
    elif reason == Refusal.NOT_CHANGEABLE or reason == Refusal.NOTHING_TO_UNDO:
        status = details.get("status")
        values["status"] = ctx.t(f"status.{status.value}") if status else "-"
    elif reason == Refusal.BLOCKED:
        values["until"] = when_text(ctx, details["until"])
    elif reason not in _PLAIN:
        return ctx.reply("staff.refused_other", reason=reason.value)
    return ctx.reply(f"staff.refused_{reason.value}", **values)


def request_refusal(ctx: Ctx, refused: StaffRefused, kind: str) -> Reply:
    """Why a hand-off, complaint or home-visit request could not be acted on (who owns it)."""
    details = refused.details
    values: dict[str, Any] = {"number": details.get("number", ""),
                                 "what": ctx.t(f"staff.kind_{kind}")}
    if refused.reason in (StaffRefusal.ALREADY_CLAIMED, StaffRefusal.NOT_OWNER,
                          StaffRefusal.ALREADY_DECIDED):
        values["owner"] = details.get("owner", "-")
    if refused.reason == StaffRefusal.WINDOW_CLOSED:
        last = details.get("last")
        values["last"] = when_text(ctx, last) if last else ctx.t("staff.never")
    # How to phone the citizen instead (/phone N), for the matters /phone knows.
    phone_arg = {"handoff": f"{values['number']}", "home_visit": f"hv{values['number']}"}.get(kind)
    values["phone"] = ctx.t("control.phone_how", arg=phone_arg) if phone_arg else ""
    return ctx.reply(f"staff.refused_{refused.reason.value}", **values)


def appointment_line(ctx: Ctx, appointment: Appointment, person: Person, service: Service, *,
                     day: bool = False) -> str:
    """One appointment in a staff list: time, code, the citizen masked, service, status."""
    start = ctx.local(appointment.starts_at)
    when = f"{format_day(start.date(), ctx.locale)} {format_time(start)}" if day \
        else format_time(start)
    return ctx.t("staff.appointment_line", when=when, code=appointment.code,
                 name=mask_name(person.name), mobile=mask_mobile(person.mobile),
                 service=service_name(ctx, service),
                 status=ctx.t(f"status.{appointment.status.value}"),
                 walkin=ctx.t("staff.walkin_mark") if appointment.offline else "")


async def done_line(ctx: Ctx, key: str, appointment: Appointment) -> Reply:
    """What was done to an appointment, with its line."""
    person = await ctx.session.get(Person, appointment.person_id)
    service = await ctx.session.get(Service, appointment.service_id)
    assert person is not None and service is not None  # foreign keys
    return ctx.reply(key, line=appointment_line(ctx, appointment, person, service, day=True))
