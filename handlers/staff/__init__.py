"""Staff at work, by subject: ``access`` (who is staff), ``window`` (today's list, check-in,
completion, no-shows, blocks), ``requests`` (hand-offs, home visits), ``complaints`` (for supervisors), ``closures``
(停办/停诊), ``walkin`` (booking for walk-ins and callers, 代办), ``cases`` (办件 after the
visit), ``sms`` (opt-outs of texts recorded at the window), the staff-only chat of the WeCom
app (``desk``), and what staff are told (``replies``). The staff flow is declared here.
Diagrams: docs/flows/handoff.mmd, docs/flows/staff_book.mmd.
"""

from __future__ import annotations

from handlers.context import Ctx
from handlers.core import Reply
from handlers.flow import Command, Flow
from handlers.payloads import ApproveVisit, ClaimComplaint, ClaimHandoff, DeclineVisit
from handlers.staff import (
    cases,
    closures,
    complaints,
    control,
    desk,
    people,
    reopen,
    requests,
    resource_closures,
    rosters,
    sms,
    window,
)
from handlers.staff.access import guard, in_staff_group
from handlers.staff.replies import stop
from handlers.staff.walkin import walk_in
from handlers.steps import Staff


async def help_command(ctx: Ctx, args: str) -> list[Reply]:
    """List what staff can do here."""
    help_text = [ctx.reply("staff.help"), ctx.reply("case_staff.help"), ctx.reply("control.help"),
                 ctx.reply("control.move_help"), ctx.reply("control.phone_help"),
                 ctx.reply("reopen.help"), ctx.reply("sms_staff.help"), ctx.reply("staff_people.help"),
                 ctx.reply("roster.help")]
    if complaints.may_handle(ctx.settings.access, ctx.actor):
        help_text.append(ctx.reply("complaint_staff.help"))
    if desk.is_desk(ctx.incoming):
        help_text.append(ctx.reply("staff.desk_help"))
    return help_text


COMMANDS: dict[str, Command] = {
    "today": window.today, "find": window.find, "checkin": window.checkin, "done": window.done,
    "noshow": window.noshow, "undo": window.undo, "blocks": window.blocked,
    "unblock": window.unblock, "walkin": walk_in, "closure": closures.closure,
    "claim": desk.claim, "reply": requests.reply, "close": requests.close,
    "open": requests.open_requests, "approve": requests.approve, "decline": requests.decline,
    "staffhelp": help_command, **cases.COMMANDS, **complaints.COMMANDS, **rosters.COMMANDS,
    "sms": sms.sms_command,
    "person": people.correct,   # the accounts model: correct a person's name or mobile
    "move": control.move, "phone": control.phone,
    "closures": reopen.list_closures, "reopen": reopen.reopen,
}
DESK_COMMANDS: dict[str, Command] = {"use": desk.use}


async def group_command(ctx: Ctx, name: str) -> Command | None:
    """In the staff group and on the staff desk (the WeCom app) every command is a staff
    command: ``/book`` books for a walk-in there, and one staff do not have shows their help.
    Elsewhere None."""
    if desk.is_desk(ctx.incoming):
        return COMMANDS.get(name) or DESK_COMMANDS.get(name) or (
            walk_in if name == "book" else help_command)
    if not await in_staff_group(ctx):
        return None
    return COMMANDS.get(name) or (walk_in if name == "book" else help_command)


def _stale(ctx: Ctx) -> list[Reply]:
    return [ctx.reply("core.stale")]


FLOW = Flow(
    "staff",
    steps={Staff.CLOSURE_CONFIRM: closures.confirm, Staff.VISIT_TIME: requests.visit_time,
           Staff.VISIT_REASON: requests.visit_reason, **cases.STEPS, **resource_closures.STEPS,
           **control.STEPS},
    text_steps=frozenset({Staff.VISIT_TIME, Staff.VISIT_REASON}) | cases.TEXT_STEPS,
    commands=COMMANDS,
    actions={ClaimHandoff: desk.claim_button, ClaimComplaint: complaints.claim_button,
             ApproveVisit: requests.approve_button, DeclineVisit: requests.decline_button,
             **cases.ACTIONS},
    guard=guard, stale=_stale, cancel=stop, group_commands=group_command)
