"""Staff control of one booking: ``/cancel CODE REASON`` (cancelled for the citizen, without
a strike, with an apology and a way to rebook). The rules and the audit live in
storage.control; this module parses and answers."""

from __future__ import annotations

from typing import Any

from handlers.context import Ctx
from handlers.core import Reply
from handlers.render import when_text
from handlers.staff.replies import done_line
from storage import control
from storage.control import ControlRefusal, ControlRefused
from storage.privacy import mask_text


def control_refusal(ctx: Ctx, refused: ControlRefused, command: str) -> Reply:
    """Why staff could not act on one booking, with the facts they need."""
    details = refused.details
    values: dict[str, Any] = {"code": details.get("code", ""), "command": command}
    if refused.reason == ControlRefusal.NOT_BOOKED:
        values["status"] = ctx.t(f"status.{details['status'].value}")
    elif refused.reason == ControlRefusal.PAST:
        values["at"] = when_text(ctx, details["starts_at"])
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
