"""Closing a service, a department or the whole centre for a period (停办/停诊), after the staff
member has seen how many bookings it cancels and how many of those get short notice."""

from __future__ import annotations

import datetime as dt

from handlers.context import Ctx, Event, option
from handlers.core import Reply
from handlers.menu import department_name, service_name, unmatched_text
from handlers.payloads import Button
from handlers.render import when_text
from handlers.staff import resource_closures
from handlers.staff.dates import parse_range
from handlers.staff.replies import booking_refusal
from handlers.steps import Staff
from storage import closures, services
from storage.models import Service
from storage.privacy import mask_text
from storage.refusals import BookingRefused

_WHOLE_CENTRE = {"all", "centre", "center", "全部", "全中心", "中心"}


async def _scope(ctx: Ctx, word: str) -> tuple[int | None, int | None, str] | Reply:
    """(service id, department id, name) for "all", a service or a department (named as in
    every staff command), or the reply saying which were meant or which there are."""
    if word.lower() in _WHOLE_CENTRE:
        return None, None, ctx.t("staff.whole_centre")
    matched = await services.match_service(ctx.session, word)
    found = matched.found
    if isinstance(found, Service):
        return found.id, None, service_name(ctx, found)
    if found is not None:
        return None, found.id, department_name(ctx, found)
    return Reply(unmatched_text(ctx, matched) + "\n" + ctx.t("staff.closure_whole_centre"))


async def closure(ctx: Ctx, args: str) -> list[Reply]:
    """Close a service, a department or the whole centre for a period, after confirmation:
    /closure SCOPE PERIOD REASON."""
    words = args.split()
    if len(words) < 2:
        return [ctx.reply("staff.usage_closure")]
    if (for_resource := await resource_closures.route(ctx, words)) is not None:
        return for_resource     # a doctor's or window's 停诊
    scope = await _scope(ctx, words[0])
    if isinstance(scope, Reply):
        return [scope]
    period = parse_range(ctx, words[1:])
    if period is None:
        return [ctx.reply("staff.closure_bad_period")]
    starts_at, ends_at, used = period
    reason = mask_text(" ".join(words[1 + used:]).strip())
    if ends_at <= starts_at:
        return [ctx.reply("staff.closure_backwards", start=when_text(ctx, starts_at),
                          end=when_text(ctx, ends_at))]
    if ends_at <= ctx.now:
        return [ctx.reply("staff.closure_past", end=when_text(ctx, ends_at))]
    if not reason:
        return [ctx.reply("staff.closure_reason")]
    service_id, department_id, name = scope
    plan = await closures.plan_closure(ctx.session, ctx.centre, ctx.now, starts_at=starts_at,
                                       ends_at=ends_at, service_id=service_id,
                                       department_id=department_id)
    ctx.goto(Staff.CLOSURE_CONFIRM, service=service_id, department=department_id, name=name,
             starts_at=starts_at.isoformat(), ends_at=ends_at.isoformat(), reason=reason)
    return [ctx.reply("staff.closure_plan", [option(ctx.t("staff.closure_yes"), Button.YES),
                                             option(ctx.t("staff.closure_no"), Button.NO)],
                      scope=name, start=when_text(ctx, starts_at), end=when_text(ctx, ends_at),
                      reason=reason, count=len(plan.appointments), late=plan.late,
                      hours=ctx.centre.rules.closure_notice_hours)]


async def confirm(ctx: Ctx, event: Event) -> list[Reply]:
    """Apply the closure only after an explicit yes."""
    data = ctx.data
    if event.is_enter:
        return [ctx.reply("staff.closure_pending")]
    if event.button is not Button.YES:
        ctx.end()
        return [ctx.reply("staff.closure_dropped")]
    try:
        done = await closures.apply_closure(
            ctx.session, ctx.centre, ctx.now,
            starts_at=dt.datetime.fromisoformat(data["starts_at"]),
            ends_at=dt.datetime.fromisoformat(data["ends_at"]), reason=data["reason"],
            actor=ctx.actor, service_id=data.get("service"), department_id=data.get("department"))
    except BookingRefused as refused:
        ctx.end()
        return [booking_refusal(ctx, refused)]
    ctx.end()
    return [ctx.reply("staff.closure_done", scope=data["name"], count=done.affected,
                      late=done.late_notices)]
