"""The citizen's cases (办件进度): every case of their account (and of accounts proven to be
theirs) with its state, due date and what has happened, in plain words; a typed case number
shows that case if it is theirs and "not found" otherwise; withdrawing an open case (撤回申请,
confirmed first; the case's owner is told); and the 回访 after a case is closed (the five
levels of the rating, once per case; 不满意 or worse opens a complaint), with an optional
comment. Diagram: docs/flows/case.mmd.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from handlers.context import Ctx, Event, global_option, option
from handlers.core import Reply
from handlers.flow import Flow
from handlers.i18n import format_day
from handlers.menu import back_to_menu, main_menu
from handlers.payloads import Button, RateCase, WithdrawCase
from handlers.steps import CaseProgress
from storage import cases
from storage.accounts import linked_accounts
from storage.case_rules import OPEN_STATES, format_case_number, looks_like_case_number
from storage.cases import CaseRefusal, CaseRefused, CaseView
from storage.feedback import COMPLAINT_AT_OR_BELOW
from storage.models import Case, CaseKind, CaseState
from storage.seats import release_holds

PROGRESS_WORDS = {"进度", "查询", "办件进度", "查询进度", "查进度", "办件", "progress",
                  "my cases", "case progress"}
# What the citizen is told about; the rest (requests for extensions, refusals of them, the
# 回访 itself, closing after collection) is the centre's own business.
_TOLD = {"accept", "correction", "resubmit", "start", "part_done", "ready", "collect", "mail",
         "refuse", "withdraw", "extension_approved", "expected"}


def is_progress_request(text: str) -> bool:
    """The citizen asked how their cases are going ("进度", "查询", "progress")."""
    return text.casefold().strip() in PROGRESS_WORDS


def is_case_number(text: str) -> bool:
    """Eight digits, as a case number is typed (spaces, full-width digits allowed)."""
    return looks_like_case_number(text)


async def _accounts(ctx: Ctx) -> list[int]:
    """The asking account and the accounts proven to be the same citizen's."""
    linked = await linked_accounts(ctx.session, account_id=ctx.identity.id)
    return [ctx.identity.id, *(account.account_id for account in linked)]


def _day(ctx: Ctx, day: dt.date | str | None) -> str:
    if day is None:
        return "-"
    if isinstance(day, str):
        day = dt.date.fromisoformat(day)
    return format_day(day, ctx.locale, ctx.today)


def _text(ctx: Ctx, value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("en") if ctx.locale == "en" else value.get("zh")) or "-"
    return str(value or "-")


def _status(ctx: Ctx, view: CaseView) -> str:
    case = view.case
    state = ctx.t(f"case.state.{case.state.value}")
    if case.state in (CaseState.ACCEPTED, CaseState.IN_PROGRESS):
        if view.overdue:
            return ctx.t("case.status.running_overdue", state=state, due=_day(ctx, case.due_on))
        if case.due_on is not None:
            return ctx.t("case.status.running_due", state=state, due=_day(ctx, case.due_on))
        return ctx.t("case.status.running", state=state)
    if case.state == CaseState.CORRECTION:
        return ctx.t("case.status.correction", deadline=_day(ctx, case.correction_due_on))
    if case.state == CaseState.READY:
        pickup = (case.details or {}).get("pickup") or {}
        place = _text(ctx, pickup.get("place")) if pickup.get("place") \
            else view.service.place.get(ctx.locale)
        return ctx.t("case.status.ready", place=place)
    if case.state in (CaseState.CLOSED, CaseState.COLLECTED, CaseState.MAILED):
        closed = case.closed_at or case.updated_at
        return ctx.t("case.status.closed", day=_day(ctx, ctx.local(closed).date()))
    if case.state == CaseState.REFUSED:
        return ctx.t("case.status.refused", day=_day(ctx, ctx.local(case.updated_at).date()))
    return ctx.t("case.status.withdrawn")


def _event_text(ctx: Ctx, view: CaseView, action: str, detail: dict[str, Any],
                reason: str | None) -> str | None:
    if view.case.kind == CaseKind.IMMEDIATE:
        return ctx.t("case.event.accept_immediate") if action == "accept" else None
    if action == "accept":
        due = detail.get("due_on")
        return ctx.t("case.event.accept_due", due=_day(ctx, due)) if due \
            else ctx.t("case.event.accept")
    values: dict[str, Any] = {
        "correction": {"deadline": _day(ctx, detail.get("deadline"))},
        "resubmit": {"due": _day(ctx, detail.get("due_on"))},
        "part_done": {"part": detail.get("part", "-")},
        "mail": {"tracking": detail.get("tracking_number", "-")},
        "refuse": {"reason": reason or "-"},
        "extension_approved": {"days": detail.get("days", "-"), "reason": reason or "-",
                               "due": _day(ctx, detail.get("due_after"))},
        "expected": {"day": _day(ctx, detail.get("expected_on"))},
    }.get(action, {})
    return ctx.t(f"case.event.{action}", **values)


def render_case(ctx: Ctx, view: CaseView) -> str:
    """One case in plain words: number, service, kind, where it stands, what has happened."""
    case = view.case
    lines = [ctx.t("case.head", number=format_case_number(case.number),
                   service=view.service.name.get(ctx.locale),
                   kind=ctx.t(f"case.kind.{case.kind.value}"), status=_status(ctx, view)),
             ctx.t("case.timeline_head")]
    for event in view.events:
        if event.action not in _TOLD:
            continue
        text = _event_text(ctx, view, event.action, event.detail or {}, event.reason)
        if text:
            lines.append(ctx.t("case.timeline_line", day=_day(ctx, ctx.local(event.at).date()),
                               text=text))
    return "\n".join(lines)


async def progress(ctx: Ctx, args: str) -> list[Reply]:
    """Show every case of the citizen's account, open ones first (办件进度)."""
    if args.strip():
        return await lookup(ctx, args)
    await release_holds(ctx.session, ctx.actor)
    ctx.end()
    views = await cases.cases_of_accounts(ctx.session, ctx.centre, ctx.now, await _accounts(ctx))
    if not views:
        return [ctx.reply("case.none"), main_menu(ctx)]
    text = "\n\n".join([ctx.t("case.list_head", count=len(views)),
                        *(render_case(ctx, view) for view in views)])
    if any(view.case.state in OPEN_STATES for view in views):
        text += "\n\n" + ctx.t("case.withdraw_hint")
    return [Reply(text), main_menu(ctx)]


async def lookup(ctx: Ctx, text: str) -> list[Reply]:
    """Show the case whose number was typed, if it is the citizen's; a stranger's case is
    "not found", exactly like a number that does not exist."""
    typed = text.strip()[:20]
    await release_holds(ctx.session, ctx.actor)
    ctx.end()
    try:
        case = await cases.find_case(ctx.session, typed)
    except CaseRefused as refused:
        key = "case.bad_number" if refused.reason == CaseRefusal.BAD_NUMBER else "case.not_found"
        return [ctx.reply(key, number=typed), main_menu(ctx)]
    if case.identity_id not in await _accounts(ctx):
        return [ctx.reply("case.not_found", number=typed), main_menu(ctx)]
    view = await cases.view_case(ctx.session, ctx.centre, ctx.now, case.number)
    if case.state in OPEN_STATES:
        return [Reply(render_case(ctx, view), (
            (global_option(ctx.t("case.withdraw_button"), WithdrawCase(case.id)),),
            tuple(back_to_menu(ctx))))]
    return [Reply(render_case(ctx, view)), main_menu(ctx)]


# --- 撤回申请 -----------------------------------------------------------------------------------

WITHDRAW_WORDS = ("撤回申请", "撤回办件", "撤回", "withdraw")


def withdraw_request(text: str) -> str | None:
    """What follows "撤回" / "withdraw" when the citizen typed it (a case number, or "" for
    none); None when the text is not a withdrawal request."""
    typed = text.strip()
    for word in WITHDRAW_WORDS:
        if typed.casefold().startswith(word):
            rest = typed[len(word):].strip()
            return rest if not rest or looks_like_case_number(rest) else None
    return None


def _refused_withdrawal(ctx: Ctx, case: Case) -> list[Reply]:
    """Why this case cannot be withdrawn, by where it stands."""
    key = {CaseState.READY: "ready", CaseState.REFUSED: "refused",
           CaseState.WITHDRAWN: "withdrawn"}.get(case.state, "closed")
    return [ctx.reply(f"case_withdraw.refused_{key}", number=format_case_number(case.number)),
            main_menu(ctx)]


async def _ask(ctx: Ctx, case: Case) -> list[Reply]:
    if case.state not in OPEN_STATES:
        return _refused_withdrawal(ctx, case)
    service = await cases.view_case(ctx.session, ctx.centre, ctx.now, case.number)
    ctx.goto(CaseProgress.WITHDRAW, case=case.id, number=case.number)
    return [ctx.reply("case_withdraw.confirm",
                      [option(ctx.t("case_withdraw.yes"), Button.CONFIRM)],
                      [option(ctx.t("case_withdraw.no"), Button.BACK)],
                      number=format_case_number(case.number),
                      service=service.service.name.get(ctx.locale))]


async def withdraw(ctx: Ctx, args: str) -> list[Reply]:
    """Ask to withdraw a case: /withdraw N, or "撤回 N"; without a number, the one open case
    (with several, ask which)."""
    await release_holds(ctx.session, ctx.actor)
    ctx.end()
    mine = await _accounts(ctx)
    typed = args.strip()[:20]
    if typed:
        try:
            case = await cases.find_case(ctx.session, typed)
        except CaseRefused as refused:
            key = "case.bad_number" if refused.reason == CaseRefusal.BAD_NUMBER else "case.not_found"
            return [ctx.reply(key, number=typed), main_menu(ctx)]
        if case.identity_id not in mine:
            return [ctx.reply("case.not_found", number=typed), main_menu(ctx)]
        return await _ask(ctx, case)
    views = await cases.cases_of_accounts(ctx.session, ctx.centre, ctx.now, mine)
    still_open = [view.case for view in views if view.case.state in OPEN_STATES]
    if not still_open:
        return [ctx.reply("case_withdraw.none_open"), main_menu(ctx)]
    if len(still_open) > 1:
        return [ctx.reply("case_withdraw.which", [
            global_option(format_case_number(case.number), WithdrawCase(case.id))
            for case in still_open[:5]])]
    return await _ask(ctx, still_open[0])


async def withdraw_button(ctx: Ctx, payload: WithdrawCase) -> list[Reply]:
    """The 撤回申请 button under a case: ask for confirmation."""
    await release_holds(ctx.session, ctx.actor)
    ctx.end()
    case = await ctx.session.get(Case, payload.case)
    if case is None or case.identity_id not in await _accounts(ctx):
        return [ctx.reply("case_followup.not_yours"), main_menu(ctx)]
    return await _ask(ctx, case)


async def confirm_withdrawal(ctx: Ctx, event: Event) -> list[Reply]:
    """Withdraw the case once the citizen confirms; anything else keeps it going."""
    number = str(ctx.data.get("number", ""))
    if event.button is Button.CONFIRM:
        ctx.end()
        try:
            case = await cases.withdraw(ctx.session, ctx.centre, ctx.now, number,
                                        actor=f"identity:{ctx.identity.id}",
                                        identity_ids=await _accounts(ctx))
        except CaseRefused as refused:
            if refused.reason == CaseRefusal.NOT_ALLOWED:
                current = await cases.find_case(ctx.session, number)
                return _refused_withdrawal(ctx, current)
            return [ctx.reply("case.not_found", number=format_case_number(number)),
                    main_menu(ctx)]
        return [ctx.reply("case_withdraw.done", number=format_case_number(case.number)),
                main_menu(ctx)]
    if event.button is Button.BACK:
        ctx.end()
        return [ctx.reply("case_withdraw.kept", number=format_case_number(number)),
                main_menu(ctx)]
    shown = await ctx.session.get(Case, int(ctx.data.get("case", 0)))
    if shown is None:
        ctx.end()
        return [main_menu(ctx)]
    return await _ask(ctx, shown)


# --- 回访 ---------------------------------------------------------------------------------------


async def rate(ctx: Ctx, payload: RateCase) -> list[Reply]:
    """Record the 回访 answer (once per case) and offer to add a comment."""
    feedback = ctx.settings.conversation
    try:
        case, complaint = await cases.rate_case(
            ctx.session, ctx.centre, ctx.now, case_id=payload.case, identity_id=ctx.identity.id,
            level=payload.level, answer_days=feedback.complaint_answer_working_days,
            resolve_days=feedback.complaint_resolution_working_days)
    except CaseRefused as refused:
        key = {CaseRefusal.NOT_YOURS: "not_yours", CaseRefusal.NOT_ALLOWED: "not_closed",
               CaseRefusal.ALREADY_RATED: "already_rated"}.get(refused.reason, "bad_level")
        return [ctx.reply(f"case_followup.{key}"), main_menu(ctx)]
    ctx.goto(CaseProgress.COMMENT, case=case.id)
    low = payload.level <= COMPLAINT_AT_OR_BELOW
    return [ctx.reply("case_followup.thanks_low" if low else "case_followup.thanks",
                      [option(ctx.t("rating.no_comment"), Button.SKIP)],
                      number=complaint.id if complaint is not None else "")]


async def comment(ctx: Ctx, event: Event) -> list[Reply]:
    """Keep the citizen's words with their 回访 answer (and its complaint); asking for the
    progress instead ("进度", a case number) is answered, not kept as a comment."""
    if event.is_text and (is_progress_request(event.value) or is_case_number(event.value)):
        ctx.end()
        return await progress(ctx, "" if is_progress_request(event.value) else event.value)
    if event.is_text and event.value.strip():
        await cases.add_followup_comment(ctx.session, int(ctx.data["case"]),
                                         identity_id=ctx.identity.id, comment=event.value)
        ctx.end()
        return [ctx.reply("case_followup.comment_saved"), main_menu(ctx)]
    ctx.end()
    return [main_menu(ctx)]


FLOW = Flow("cases", steps={CaseProgress.COMMENT: comment,
                            CaseProgress.WITHDRAW: confirm_withdrawal},
            text_steps=frozenset({CaseProgress.COMMENT}),
            commands={"progress": progress, "withdraw": withdraw},
            actions={RateCase: rate, WithdrawCase: withdraw_button})
