"""Complaints and suggestions (投诉/建议), from the main menu (or the command ``complaint``,
which other flows call for the words 投诉, 举报, 建议...): complaint or suggestion, category,
optionally one of the citizen's own bookings or cases, the text, optionally a photo; answered
with its number and the answer deadline, or, for a repeat about the same service or case within
``complaints.merge_days``, told it was passed on as a 催办 of the first. The 回访 answer to a
complaint's outcome arrives as a self-contained button. Diagram: docs/flows/complaint.mmd."""

from __future__ import annotations

from handlers.context import Ctx, Event, EventKind, option
from handlers.core import Reply
from handlers.flow import Flow
from handlers.i18n import format_day
from handlers.menu import main_menu, service_name
from handlers.payloads import (
    AppointmentPick,
    Button,
    ComplaintCasePick,
    ComplaintCategoryPick,
    ComplaintFollowup,
    ComplaintKindPick,
)
from handlers.render import when_text
from handlers.steps import Complaining
from storage import complaints
from storage.accounts import linked_accounts
from storage.complaints import (
    CATEGORIES,
    ComplaintRefusal,
    ComplaintRefused,
    FollowupOutcome,
)
from storage.models import Service
from storage.seats import release_holds

SUGGESTION_WORDS = frozenset({"suggestion", "建议", "意见", "提建议", "提意见"})
PHOTO_SKIP_WORDS = frozenset({"跳过", "没有", "无", "不用", "skip", "no", "none"})


async def _accounts(ctx: Ctx) -> list[int]:
    linked = await linked_accounts(ctx.session, account_id=ctx.identity.id)
    return [ctx.identity.id, *(account.account_id for account in linked)]


async def start(ctx: Ctx, args: str) -> list[Reply]:
    """Start a complaint or a suggestion ("suggestion"/"建议" as the argument says which)."""
    await release_holds(ctx.session, ctx.actor)
    ctx.end()
    if args.strip().casefold() in SUGGESTION_WORDS:
        return await ctx.enter(Complaining.CATEGORY, kind="suggestion")
    if args.strip().casefold() in {"complaint", "投诉", "举报"}:
        return await ctx.enter(Complaining.CATEGORY, kind="complaint")
    return await ctx.enter(Complaining.KIND)


async def kind_step(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask whether it is a complaint or a suggestion (both kept confidential)."""
    picked = event.pick(ComplaintKindPick)
    if picked is not None and picked.kind in complaints.KINDS:
        return await ctx.enter(Complaining.CATEGORY, kind=picked.kind)
    return [ctx.reply("complaint.ask_kind",
                      [option(ctx.t("complaint.kind_complaint"), ComplaintKindPick("complaint")),
                       option(ctx.t("complaint.kind_suggestion"), ComplaintKindPick("suggestion"))],
                      [option(ctx.t("menu.back_main"), Button.STOP)])]


async def category_step(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask which category it falls in (服务态度, 办事效率, 材料要求, 环境设施, 其他)."""
    picked = event.pick(ComplaintCategoryPick)
    if picked is not None and picked.category in CATEGORIES:
        ctx.remember(category=picked.category)
        return await ctx.enter(Complaining.SUBJECT)
    options = [option(ctx.t(f"complaint.category.{c}"), ComplaintCategoryPick(c))
               for c in CATEGORIES]
    return [ctx.reply(f"complaint.ask_category_{ctx.data.get('kind', 'complaint')}",
                      options[:3], options[3:], [option(ctx.t("menu.back_main"), Button.STOP)])]


async def subject_step(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask whether it is about one of the citizen's own recent bookings or cases."""
    booking, case = event.pick(AppointmentPick), event.pick(ComplaintCasePick)
    if booking is not None or case is not None:
        try:
            await complaints.subject_of(
                ctx.session, account_ids=await _accounts(ctx),
                appointment_id=booking.appointment if booking else None,
                case_id=case.case if case else None)
        except ComplaintRefused:
            return [ctx.reply("complaint.not_yours"), *await ctx.enter(Complaining.SUBJECT)]
        ctx.forget("appointment", "case")
        if booking is not None:
            ctx.remember(appointment=booking.appointment)
        elif case is not None:
            ctx.remember(case=case.case)
        return await ctx.enter(Complaining.TEXT)
    if event.button is Button.SKIP:
        ctx.forget("appointment", "case")
        return await ctx.enter(Complaining.TEXT)
    appointments, cases = await complaints.recent_subjects(ctx.session, ctx.now,
                                                            account_ids=await _accounts(ctx))
    if not appointments and not cases:
        return await ctx.enter(Complaining.TEXT)
    rows = []
    for appointment in appointments:
        service = await ctx.session.get(Service, appointment.service_id)
        rows.append([option(ctx.t("complaint.subject_booking", code=appointment.code,
                                  service=service_name(ctx, service) if service else "-",
                                  day=format_day(appointment.local_date, ctx.locale)),
                            AppointmentPick(appointment.id))])
    for case_row in cases:
        service = await ctx.session.get(Service, case_row.service_id)
        rows.append([option(ctx.t("complaint.subject_case", number=case_row.number,
                                  service=service_name(ctx, service) if service else "-"),
                            ComplaintCasePick(case_row.id))])
    rows.append([option(ctx.t("complaint.subject_none"), Button.SKIP)])
    return [ctx.reply("complaint.ask_subject", *rows)]


async def text_step(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask what happened (a photo sent first is kept, and the text still asked)."""
    if event.kind == EventKind.PHOTO:
        ctx.remember(photo=event.value[:255])
        return [ctx.reply("complaint.photo_kept_ask_text")]
    if event.is_text and event.value.strip():
        ctx.remember(text=event.value.strip()[:complaints.MAX_TEXT])
        if ctx.data.get("photo"):
            return await _file(ctx)
        return await ctx.enter(Complaining.PHOTO)
    if event.is_text:
        return [ctx.reply("complaint.text_required")]
    return [ctx.reply(f"complaint.ask_text_{ctx.data.get('kind', 'complaint')}",
                      [option(ctx.t("menu.back_main"), Button.STOP)])]


async def photo_step(ctx: Ctx, event: Event) -> list[Reply]:
    """Offer to add one photo, or skip it; then file the complaint."""
    if event.kind == EventKind.PHOTO:
        ctx.remember(photo=event.value[:255])
        return await _file(ctx)
    if event.button is Button.SKIP or (event.is_text
                                       and event.value.strip().casefold() in PHOTO_SKIP_WORDS):
        return await _file(ctx)
    if event.is_text:
        return [ctx.reply("complaint.photo_or_skip",
                          [option(ctx.t("complaint.photo_skip"), Button.SKIP)])]
    return [ctx.reply("complaint.ask_photo", [option(ctx.t("complaint.photo_skip"), Button.SKIP)])]


async def _file(ctx: Ctx) -> list[Reply]:
    """Register it (or merge it into the citizen's earlier complaint as a 催办) and say so."""
    data = ctx.data
    kind = str(data.get("kind", "complaint"))
    try:
        subject = await complaints.subject_of(
            ctx.session, account_ids=await _accounts(ctx),
            appointment_id=data.get("appointment"), case_id=data.get("case"))
    except ComplaintRefused:
        subject = complaints.Subject()
    conversation, rules = ctx.settings.conversation, ctx.settings.complaints
    filed = await complaints.submit(
        ctx.session, ctx.centre, ctx.now, identity_id=ctx.identity.id,
        text=str(data.get("text", "")), subject=subject, kind=kind,
        category=str(data.get("category", "other")), photo=data.get("photo"),
        answer_days=conversation.complaint_answer_working_days,
        resolve_days=conversation.complaint_resolution_working_days,
        merge_days=rules.merge_days)
    ctx.end()
    complaint = filed.complaint
    if filed.merged:
        return [ctx.reply("complaint.merged", number=complaint.id, days=rules.merge_days,
                          due=when_text(ctx, complaint.first_answer_due)), main_menu(ctx)]
    return [ctx.reply(f"complaint.received_{kind}", number=complaint.id,
                      due=when_text(ctx, complaint.first_answer_due)), main_menu(ctx)]


async def followup(ctx: Ctx, payload: ComplaintFollowup) -> list[Reply]:
    """The citizen's answer to "您对投诉处理结果是否满意"."""
    try:
        complaint, outcome = await complaints.followup(
            ctx.session, ctx.now, payload.complaint, identity_id=ctx.identity.id,
            satisfied=bool(payload.satisfied))
    except ComplaintRefused as refused:
        key = {ComplaintRefusal.ALREADY_ANSWERED: "complaint.followup_already",
               ComplaintRefusal.NOT_RESOLVED: "complaint.followup_not_resolved"}.get(
            refused.reason, "complaint.followup_not_yours")
        return [ctx.reply(key, number=payload.complaint), main_menu(ctx)]
    key = {FollowupOutcome.SATISFIED: "complaint.followup_thanks",
           FollowupOutcome.REOPENED: "complaint.followup_reopened",
           FollowupOutcome.RECORDED: "complaint.followup_recorded"}[outcome]
    return [ctx.reply(key, number=complaint.id), main_menu(ctx)]


FLOW = Flow(
    "complaint",
    steps={Complaining.KIND: kind_step, Complaining.CATEGORY: category_step,
           Complaining.SUBJECT: subject_step, Complaining.TEXT: text_step,
           Complaining.PHOTO: photo_step},
    text_steps=frozenset({Complaining.TEXT, Complaining.PHOTO}),
    photo_steps=frozenset({Complaining.TEXT, Complaining.PHOTO}),
    commands={"complaint": start},
    actions={ComplaintFollowup: followup})
