"""Complaints for the supervisors who handle them (``access.supervisors``; with none, the
managers), in their private chat with the bot or the WeCom app, never in the staff group: the
list, one complaint with its history and the citizen's last 30 days, claiming, the
classification with its reason, marking it complex, and the answer the citizen is told (with
the 回访 question). A complaint naming a staff member is never shown to them."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from handlers.context import Ctx
from handlers.core import Reply
from handlers.notices.complaints import complaint_card
from handlers.payloads import ClaimComplaint
from handlers.render import when_text
from handlers.staff import requests
from storage import complaints
from storage.complaints import ComplaintRefusal, ComplaintRefused, may_handle
from storage.handoffs import staff_name
from storage.models import Complaint
from storage.privacy import mask_text

_NUMBER = re.compile(r"^#?(\d{1,9})$")
Command = Callable[[Ctx, str], Awaitable[list[Reply]]]


def _number(args: str) -> tuple[int | None, str]:
    head, _, rest = args.strip().partition(" ")
    match = _NUMBER.match(head)
    return (int(match.group(1)) if match else None), rest.strip()


def _allowed(ctx: Ctx) -> bool:
    """A complaint handler, not in a group chat (everyone there would read it)."""
    return not ctx.incoming.is_group and may_handle(ctx.settings.access, ctx.actor)


def supervisors_only(command: Command) -> Command:
    """Refuse a complaint command to anyone but a supervisor in private."""

    async def guarded(ctx: Ctx, args: str) -> list[Reply]:
        if not _allowed(ctx):
            return [ctx.reply("complaint_staff.only_supervisors")]
        return await command(ctx, args)

    guarded.__doc__ = command.__doc__
    return guarded


def refusal(ctx: Ctx, refused: ComplaintRefused, number: int | None) -> Reply:
    reason = refused.reason
    if reason == ComplaintRefusal.NAMED:       # they must not learn it exists
        reason = ComplaintRefusal.UNKNOWN
    return ctx.reply(f"complaint_staff.refused_{reason.value}", number=number or "")


def _owner(ctx: Ctx, name: str | None) -> str:
    return name or ctx.t("staff.unclaimed")


async def list_complaints(ctx: Ctx, args: str) -> list[Reply]:
    """The complaints not closed, by priority, and this month's 回访 list."""
    rows = await complaints.open_list(ctx.session, actor=ctx.actor)
    replies = []
    if rows:
        lines = [ctx.t("complaint_staff.list_line", number=c.id,
                       kind=ctx.t(f"complaint.kind_{c.kind}"),
                       category=ctx.t(f"complaint.category.{c.category}"), priority=c.priority,
                       due=when_text(ctx, c.first_answer_due),
                       owner=_owner(ctx, await staff_name(ctx.session, c.claimed_by)
                                    if c.claimed_by else None))
                 for c in rows]
        replies.append(ctx.reply("complaint_staff.list_head", count=len(rows),
                                 lines="\n".join(lines)))
    else:
        replies.append(ctx.reply("complaint_staff.list_none"))
    sampled = await complaints.followup_list(ctx.session, ctx.centre, ctx.now, actor=ctx.actor)
    if sampled:
        replies.append(ctx.reply("complaint_staff.followup_head", lines="\n".join(
            ctx.t("complaint_staff.sample_line", number=c.id,
                  category=ctx.t(f"complaint.category.{c.category}"),
                  classification=_classification(ctx, c), followup=_followup(ctx, c))
            for c in sampled)))
    return replies


def _classification(ctx: Ctx, complaint: Complaint) -> str:
    return ctx.t(f"complaint.class.{complaint.classification}") if complaint.classification \
        else ctx.t("complaint_staff.not_classified_yet")


def _followup(ctx: Ctx, complaint: Complaint) -> str:
    if complaint.followup_satisfied is None:
        return ctx.t("complaint_staff.followup_none")
    return ctx.t("complaint.satisfied" if complaint.followup_satisfied else "complaint.unsatisfied")


async def show(ctx: Ctx, args: str) -> list[Reply]:
    """One complaint: what it says, its history (催办 included), and the citizen's complaints
    and hand-offs of the last 30 days."""
    number, _ = _number(args)
    if number is None:
        return [ctx.reply("complaint_staff.usage_show")]
    try:
        complaint = await complaints.visible(ctx.session, number, actor=ctx.actor)
    except ComplaintRefused as refused:
        return [refusal(ctx, refused, number)]
    owner = await staff_name(ctx.session, complaint.claimed_by) if complaint.claimed_by else None
    text = await complaint_card(ctx.session, ctx.t, lambda when: when_text(ctx, when), complaint)
    lines = [text, ctx.t("complaint_staff.state_line", owner=_owner(ctx, owner),
                         classification=_classification(ctx, complaint),
                         reason=mask_text(complaint.classification_reason or "-"),
                         followup=_followup(ctx, complaint))]
    lines.append(ctx.t("complaint_staff.history_head"))
    for event in await complaints.history(ctx.session, complaint.id):
        lines.append(ctx.t("complaint_staff.history_said" if event.text
                           else "complaint_staff.history_line", when=when_text(ctx, event.at),
                           action=ctx.t(f"complaint_staff.action.{event.action}"),
                           text=mask_text(event.text or "")))
    others, handoffs = await complaints.person_history(ctx.session, ctx.now, complaint)
    lines.append(ctx.t("complaint_staff.person_head", days=complaints.HISTORY_DAYS,
                       complaints=len(others), handoffs=len(handoffs)))
    for other in others:
        # One naming this supervisor is counted, not shown.
        if other.staff_named == ctx.actor:
            continue
        lines.append(ctx.t("complaint_staff.person_complaint", number=other.id,
                           when=when_text(ctx, other.opened_at),
                           category=ctx.t(f"complaint.category.{other.category}"),
                           status=ctx.t(f"complaint_staff.status.{other.status.value}")))
    for handoff in handoffs:
        lines.append(ctx.t("complaint_staff.person_handoff", number=handoff.id,
                           when=when_text(ctx, handoff.opened_at),
                           status=ctx.t(f"complaint_staff.status.{handoff.status.value}")))
    return [Reply("\n".join(lines))]


async def claim(ctx: Ctx, args: str) -> list[Reply]:
    """Take responsibility for a complaint: /claimc N (the alert's button does the same)."""
    number, _ = _number(args)
    if number is None:
        return [ctx.reply("staff.usage_claimc")]
    return await _claim(ctx, number)


async def _claim(ctx: Ctx, number: int, *, pressed: bool = False) -> list[Reply]:
    try:
        await complaints.visible(ctx.session, number, actor=ctx.actor)
    except ComplaintRefused as refused:
        return [refusal(ctx, refused, number)]
    return await requests.claim_complaint_number(ctx, number, pressed=pressed)


async def claim_button(ctx: Ctx, payload: ClaimComplaint) -> list[Reply]:
    """The claim button on a complaint alert."""
    if not _allowed(ctx):
        return [ctx.reply("complaint_staff.only_supervisors")]
    return await _claim(ctx, payload.complaint, pressed=True)


async def classify(ctx: Ctx, args: str) -> list[Reply]:
    """Classify a complaint with the reason: /classify N 有效|无效|部分有效 reason."""
    number, rest = _number(args)
    word, _, reason = rest.partition(" ")
    if number is None or not word:
        return [ctx.reply("complaint_staff.usage_classify")]
    try:
        complaint = await complaints.classify(ctx.session, ctx.now, number, actor=ctx.actor,
                                              classification=word, reason=reason)
    except ComplaintRefused as refused:
        return [refusal(ctx, refused, number)]
    return [ctx.reply("complaint_staff.classified", number=number,
                      classification=_classification(ctx, complaint))]


async def mark_complex(ctx: Ctx, args: str) -> list[Reply]:
    """Mark a complaint complex: its answer is due within a week (/complex N)."""
    number, _ = _number(args)
    if number is None:
        return [ctx.reply("complaint_staff.usage_complex")]
    try:
        complaint = await complaints.mark_complex(
            ctx.session, ctx.centre, ctx.now, number, actor=ctx.actor,
            working_days=ctx.settings.complaints.complex_working_days)
    except ComplaintRefused as refused:
        return [refusal(ctx, refused, number)]
    return [ctx.reply("complaint_staff.complexed", number=number,
                      due=when_text(ctx, complaint.first_answer_due))]


async def answer(ctx: Ctx, args: str) -> list[Reply]:
    """Tell the citizen the outcome and close the complaint: /answer N outcome (after
    /classify); the citizen is asked whether they are satisfied (回访)."""
    number, text = _number(args)
    if number is None or not text:
        return [ctx.reply("complaint_staff.usage_answer")]
    try:
        await complaints.answer(ctx.session, ctx.now, number, actor=ctx.actor, text=text)
    except ComplaintRefused as refused:
        return [refusal(ctx, refused, number)]
    return [ctx.reply("complaint_staff.answered", number=number)]


async def list_or_show(ctx: Ctx, args: str) -> list[Reply]:
    """/complaints: the list; /complaints N: one complaint."""
    return await (show(ctx, args) if args.strip() else list_complaints(ctx, args))


COMMANDS: dict[str, Command] = {
    "complaints": supervisors_only(list_or_show),
    "claimc": supervisors_only(claim), "classify": supervisors_only(classify),
    "complex": supervisors_only(mark_complex), "answer": supervisors_only(answer),
    "resolve": supervisors_only(answer),
}

