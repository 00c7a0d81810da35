"""Requests staff answer: hand-offs (首问负责: the first to claim owns it; answers are relayed to
the citizen), claiming complaints (for handlers/staff/complaints.py) and home-visit requests (approved with a
time, or declined with a reason). Diagram: docs/flows/handoff.mmd."""

from __future__ import annotations

import dataclasses
import re
from functools import partial

from handlers.context import Ctx, Event
from handlers.core import Reply
from handlers.notices.staff import complaint_text, handoff_text
from handlers.payloads import ApproveVisit, ClaimHandoff, DeclineVisit
from handlers.render import when_text
from handlers.staff.access import is_staff
from handlers.staff.dates import parse_when
from handlers.staff.replies import request_refusal
from handlers.steps import Staff
from storage import handoffs
from storage.handoffs import Request, StaffRefusal, StaffRefused
from storage.models import Complaint, Handoff

_NUMBER = re.compile(r"^#?(\d{1,9})$")
_KIND = {Handoff: "handoff", Complaint: "complaint"}


def _number(args: str) -> tuple[int | None, str]:
    """The leading request number ("12" or "#12") and the rest of the arguments."""
    head, _, rest = args.strip().partition(" ")
    match = _NUMBER.match(head)
    return (int(match.group(1)) if match else None), rest.strip()


# --- hand-offs and complaints -------------------------------------------------------------------


async def _claim(ctx: Ctx, model: type[Request], number: int, *,
                 pressed: bool = False) -> list[Reply]:
    """Claim a hand-off or a complaint for the staff member (the first claim wins).

    From the alert's button, a claim turns the alert into the claimed alert (everything it
    said, and who owns it now, without the button); a late press answers the presser alone
    and leaves the alert as it is for everyone.
    """
    try:
        claimed = await handoffs.claim(ctx.session, ctx.now, model, number, actor=ctx.actor,
                                       name=ctx.incoming.user_name)
    except StaffRefused as refused:
        answer = request_refusal(ctx, refused, _KIND[model])
        return [dataclasses.replace(answer, toast=True) if pressed else answer]
    owner = await handoffs.staff_name(ctx.session, claimed.claimed_by)
    if isinstance(claimed, Complaint):
        text = complaint_text(ctx.t, partial(when_text, ctx), claimed, owner=owner)
    else:
        text = handoff_text(ctx.t, claimed, owner=owner)
    return [Reply(text, edit=pressed)]


async def claim(ctx: Ctx, args: str) -> list[Reply]:
    """Claim a hand-off by number (the alert's button does the same)."""
    number, _ = _number(args)
    if number is None:
        return [ctx.reply("staff.usage_claim")]
    return await _claim(ctx, Handoff, number)


async def claim_button(ctx: Ctx, payload: ClaimHandoff) -> list[Reply]:
    """The claim button on a hand-off alert."""
    return await _claim(ctx, Handoff, payload.handoff, pressed=True)


async def claim_complaint_number(ctx: Ctx, number: int, *, pressed: bool = False) -> list[Reply]:
    """Claim a complaint (handlers/staff/complaints.py checked who may)."""
    return await _claim(ctx, Complaint, number, pressed=pressed)


async def _reply(ctx: Ctx, number: int, text: str) -> list[Reply]:
    try:
        await handoffs.reply_to_citizen(ctx.session, ctx.now, number, actor=ctx.actor, text=text,
                                        name=ctx.incoming.user_name,
                                        message_key=ctx.incoming.message_id)
    except StaffRefused as refused:
        return [request_refusal(ctx, refused, "handoff")]
    return [ctx.reply("staff.reply_sent", number=number)]


async def reply(ctx: Ctx, args: str) -> list[Reply]:
    """Answer the citizen of a hand-off: /reply N text."""
    number, text = _number(args)
    if number is None or not text:
        return [ctx.reply("staff.usage_reply")]
    return await _reply(ctx, number, text)


async def group_text(ctx: Ctx, text: str) -> list[Reply]:
    """Text in the staff group that is not a command (a reply to one of the bot's messages):
    an answer to the citizen of the hand-off it is about."""
    if not await is_staff(ctx):
        return []
    explicit = re.match(r"^#(\d{1,9})\s+(.+)$", text, re.S)
    if explicit:
        return await _reply(ctx, int(explicit.group(1)), explicit.group(2))
    # A reply to the bot's relayed message: that message names its hand-off ("#12").
    answered = re.search(r"#(\d{1,9})", ctx.incoming.reply_to_text)
    if answered:
        return await _reply(ctx, int(answered.group(1)), text)
    owned = await handoffs.owned_handoffs(ctx.session, ctx.actor)
    if len(owned) == 1:
        return await _reply(ctx, owned[0].id, text)
    if not owned:
        return [ctx.reply("staff.reply_which")]
    # Guessing between two citizens could send one's answer to the other: ask instead.
    return [ctx.reply("staff.reply_ambiguous", numbers=", ".join(f"#{h.id}" for h in owned))]


async def close(ctx: Ctx, args: str) -> list[Reply]:
    """Close a hand-off with a summary: /close N summary."""
    number, summary = _number(args)
    if number is None:
        return [ctx.reply("staff.usage_close")]
    try:
        await handoffs.close_handoff(ctx.session, ctx.now, number, actor=ctx.actor,
                                     summary=summary, name=ctx.incoming.user_name)
    except StaffRefused as refused:
        if refused.reason == StaffRefusal.TEXT_REQUIRED:
            return [ctx.reply("staff.usage_close")]
        return [request_refusal(ctx, refused, "handoff")]
    return [ctx.reply("staff.closed", number=number)]


async def open_requests(ctx: Ctx, args: str) -> list[Reply]:
    """List the hand-offs not closed yet, with their owners."""
    rows = await handoffs.unclosed_handoffs(ctx.session)
    if not rows:
        return [ctx.reply("staff.open_none")]
    lines = []
    for handoff in rows:
        owner = await handoffs.staff_name(ctx.session, handoff.claimed_by) \
            if handoff.claimed_by else ctx.t("staff.unclaimed")
        lines.append(ctx.t("staff.open_line", number=handoff.id,
                           since=when_text(ctx, handoff.opened_at), owner=owner))
    return [ctx.reply("staff.open_head", lines="\n".join(lines))]


# --- home visits ------------------------------------------------------------------------------


async def _approve(ctx: Ctx, number: int, text: str) -> list[Reply]:
    visit_at = parse_when(ctx, text)
    if visit_at is None:
        return [ctx.reply("staff.hv_bad_time", number=number)]
    try:
        request = await handoffs.approve_home_visit(ctx.session, ctx.now, number, actor=ctx.actor,
                                                    visit_at=visit_at, name=ctx.incoming.user_name)
    except StaffRefused as refused:
        if refused.reason == StaffRefusal.BAD_TIME:
            return [ctx.reply("staff.hv_past_time", number=number)]
        ctx.end()
        return [request_refusal(ctx, refused, "home_visit")]
    ctx.end()
    assert request.visit_at is not None
    return [ctx.reply("staff.hv_approved", number=number, when=when_text(ctx, request.visit_at))]


async def _decline(ctx: Ctx, number: int, reason: str) -> list[Reply]:
    try:
        await handoffs.decline_home_visit(ctx.session, ctx.now, number, actor=ctx.actor,
                                          reason=reason, name=ctx.incoming.user_name)
    except StaffRefused as refused:
        if refused.reason == StaffRefusal.TEXT_REQUIRED:
            return [ctx.reply("staff.hv_ask_reason", number=number)]
        ctx.end()
        return [request_refusal(ctx, refused, "home_visit")]
    ctx.end()
    return [ctx.reply("staff.hv_declined", number=number)]


async def approve(ctx: Ctx, args: str) -> list[Reply]:
    """Approve a home visit for a time: /approve N 11-25 14:00."""
    number, text = _number(args)
    if number is None:
        return [ctx.reply("staff.usage_approve")]
    return await _approve(ctx, number, text)


async def decline(ctx: Ctx, args: str) -> list[Reply]:
    """Decline a home visit with a reason: /decline N reason."""
    number, reason = _number(args)
    if number is None or not reason:
        return [ctx.reply("staff.usage_decline")]
    return await _decline(ctx, number, reason)


async def approve_button(ctx: Ctx, payload: ApproveVisit) -> list[Reply]:
    """The approve button on a home-visit alert: ask for the visit time."""
    ctx.goto(Staff.VISIT_TIME, request=payload.request)
    return [ctx.reply("staff.hv_ask_time", number=payload.request)]


async def decline_button(ctx: Ctx, payload: DeclineVisit) -> list[Reply]:
    """The decline button on a home-visit alert: ask for the reason."""
    ctx.goto(Staff.VISIT_REASON, request=payload.request)
    return [ctx.reply("staff.hv_ask_reason", number=payload.request)]


async def visit_time(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask for the visit time after the approve button was pressed."""
    number = int(ctx.data["request"])
    if not event.is_text:
        return [ctx.reply("staff.hv_ask_time", number=number)]
    return await _approve(ctx, number, event.value)


async def visit_reason(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask for the reason after the decline button was pressed."""
    number = int(ctx.data["request"])
    if not event.is_text:
        return [ctx.reply("staff.hv_ask_reason", number=number)]
    return await _decline(ctx, number, event.value)
