"""Staff control of one booking: ``/cancel CODE REASON`` (cancelled for the citizen, without
a strike, with an apology and a way to rebook) and ``/move CODE`` (staff pick a day and a slot
as the citizen's booking shows them; the citizen is asked to accept or decline, and nothing
changes until they accept). The rules and the audit live in storage.control; this module
parses and answers."""

from __future__ import annotations

import datetime as dt
from typing import Any

from handlers.context import Ctx, Event, StepHandler, option
from handlers.core import Reply
from handlers.i18n import format_day
from handlers.menu import service_name
from handlers.payloads import Button, DayPick, SlotPick
from handlers.render import slot_label, when_text
from handlers.staff.replies import done_line
from handlers.steps import StaffMove, StepName
from storage import contact, control
from storage.contact import PhoneRefused
from storage.control import ControlRefusal, ControlRefused
from storage.models import Appointment, Service, Slot
from storage.privacy import mask_text
from storage.slots import DayState, availability


def control_refusal(ctx: Ctx, refused: ControlRefused, command: str) -> Reply:
    """Why staff could not act on one booking, with the facts they need."""
    details = refused.details
    values: dict[str, Any] = {"code": details.get("code", ""), "command": command}
    if refused.reason == ControlRefusal.NOT_BOOKED:
        values["status"] = ctx.t(f"status.{details['status'].value}")
    elif refused.reason == ControlRefusal.PAST:
        values["at"] = when_text(ctx, details["starts_at"])
    elif refused.reason == ControlRefusal.OFFER_OPEN:
        values["until"] = when_text(ctx, details["expires_at"])
    return ctx.reply(f"control.refused_{refused.reason.value}", **values)


async def cancel_booking(ctx: Ctx, args: str) -> list[Reply]:
    """Cancel one booking for its citizen: /cancel CODE REASON."""
    code, _, reason = args.strip().partition(" ")
    if not code:
        return [ctx.reply("control.usage_cancel")]
    try:
        result = await control.staff_cancel(ctx.session, ctx.centre, ctx.now, code,
                                            actor=ctx.actor, reason=mask_text(reason.strip()))
    except ControlRefused as refused:
        return [control_refusal(ctx, refused, "cancel")]
    line = await done_line(ctx, "control.cancelled", result.appointment)
    return [line]


SHOWN_DAYS = 7


def _cancel_row(ctx: Ctx) -> list:  # type: ignore[type-arg]
    return [option(ctx.t("common.cancel"), Button.STOP)]


async def move(ctx: Ctx, args: str) -> list[Reply]:
    """Start moving one booking: /move CODE; then its new day and slot."""
    code = args.strip().partition(" ")[0]
    if not code:
        return [ctx.reply("control.usage_move")]
    try:
        appointment = await control.movable(ctx.session, ctx.now, code, centre=ctx.centre)
    except ControlRefused as refused:
        return [control_refusal(ctx, refused, "move")]
    return await ctx.enter(StaffMove.DAY, appointment=appointment.id, code=appointment.code)


async def _moving(ctx: Ctx) -> tuple[Appointment, Service] | None:
    appointment = await ctx.session.get(Appointment, int(ctx.data["appointment"]))
    if appointment is None:
        return None
    service = await ctx.session.get(Service, appointment.service_id)
    return (appointment, service) if service is not None else None


async def move_day(ctx: Ctx, event: Event) -> list[Reply]:
    """Offer the days with online seats left, as the citizen's booking shows them."""
    if (day := event.pick(DayPick)) is not None:
        return await ctx.enter(StaffMove.SLOT, day=day.day.isoformat())
    found = await _moving(ctx)
    if found is None:
        ctx.end()
        return [ctx.reply("core.stale")]
    appointment, service = found
    views = await availability(ctx.session, ctx.centre, service, ctx.now, SHOWN_DAYS)
    rows = [[option(format_day(v.day, ctx.locale) + ctx.t("booking.day_open", left=v.remaining),
                    DayPick(v.day))] for v in views if v.state == DayState.OPEN]
    line = await done_line(ctx, "control.move_which_day", appointment)
    if not rows:
        ctx.end()
        return [ctx.reply("control.move_no_days", code=appointment.code,
                          service=service_name(ctx, service))]
    return [Reply(line.text, (*(tuple(r) for r in rows), tuple(_cancel_row(ctx))))]


async def move_slot(ctx: Ctx, event: Event) -> list[Reply]:
    """Offer the day's slots with seats left; picking one sends the citizen the offer."""
    found = await _moving(ctx)
    if found is None:
        ctx.end()
        return [ctx.reply("core.stale")]
    appointment, service = found
    if event.button is Button.BACK:
        return await ctx.enter(StaffMove.DAY)
    if (picked := event.pick(SlotPick)) is not None:
        try:
            offer = await control.offer_move(ctx.session, ctx.centre, ctx.now, appointment.code,
                                             picked.slot, actor=ctx.actor)
        except ControlRefused as refused:
            ctx.end()
            return [control_refusal(ctx, refused, "move")]
        ctx.end()
        new = await ctx.session.get(Slot, offer.slot_id)
        assert new is not None  # foreign key
        start = ctx.local(new.starts_at)
        # A citizen with no chat account is asked by SMS (they reply 1 or 2).
        key = "control.move_offered" if appointment.identity_id is not None \
            else "control.move_offered_sms"
        return [ctx.reply(key, code=appointment.code,
                          new=f"{format_day(start.date(), ctx.locale)} "
                              f"{slot_label(ctx, new.starts_at, new.ends_at)}",
                          until=when_text(ctx, offer.expires_at))]
    day = dt.date.fromisoformat(ctx.data["day"])
    views = await availability(ctx.session, ctx.centre, service, ctx.now, SHOWN_DAYS)
    view = next((v for v in views if v.day == day and v.state == DayState.OPEN), None)
    buttons = [option(slot_label(ctx, s.starts_at, s.ends_at)
                      + ctx.t("booking.slot_left", left=s.remaining), SlotPick(s.slot_id))
               for s in (view.slots if view is not None else ())
               if s.bookable and s.remaining and s.slot_id != appointment.slot_id]
    if not buttons:
        return [ctx.reply("control.move_day_gone"), *await ctx.enter(StaffMove.DAY)]
    rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
    return [ctx.reply("control.move_pick_slot", *rows,
                      [option(ctx.t("common.back"), Button.BACK), *_cancel_row(ctx)],
                      code=appointment.code, day=format_day(day, ctx.locale))]


STEPS: dict[StepName, StepHandler] = {StaffMove.DAY: move_day, StaffMove.SLOT: move_slot}


# --- /phone N ---------------------------------------------------------------------------------


async def phone(ctx: Ctx, args: str) -> list[Reply]:
    """Show the full mobile behind a hand-off, home visit, case or booking to its owner, in a
    private chat only: /phone N."""
    if ctx.incoming.is_group:
        # Never in a group: everyone there would see the number.
        return [ctx.reply("control.phone_private")]
    if not args.strip():
        return [ctx.reply("control.usage_phone")]
    try:
        shown = await contact.show_mobile(ctx.session, ctx.now, args, actor=ctx.actor)
    except PhoneRefused as refused:
        details = refused.details
        what = ctx.t(f"control.matter_{details['matter'].value}") if "matter" in details else ""
        return [ctx.reply(f"control.phone_{refused.reason.value}", what=what,
                          number=details.get("number", details.get("text", "")))]
    return [ctx.reply("control.phone_shown", what=ctx.t(f"control.matter_{shown.matter.value}"),
                      number=shown.label, name=shown.name, mobile=shown.mobile)]
