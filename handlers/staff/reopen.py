"""The closures ahead with their numbers (/closures) and undoing one (/reopen N). The rules
and the audit live in storage.reopen."""

from __future__ import annotations

from typing import Any

from handlers.context import Ctx
from handlers.core import Reply
from handlers.doctors import name_text, title_text
from handlers.menu import department_name, service_name
from handlers.render import when_text
from storage import reopen as rules
from storage.handoffs import staff_name
from storage.models import Closure, Department, Service
from storage.reopen import ReopenRefusal, ReopenRefused
from storage.resources import resource_info


async def _scope(ctx: Ctx, closure: Closure) -> str:
    if closure.resource_id is not None:     # a doctor's or window's 停诊
        resource = await resource_info(ctx.session, closure.resource_id)
        return f"{name_text(ctx, resource)} {title_text(ctx, resource)}" if resource else "-"
    if closure.service_id is not None:
        service = await ctx.session.get(Service, closure.service_id)
        return service_name(ctx, service) if service is not None else "-"
    if closure.department_id is not None:
        department = await ctx.session.get(Department, closure.department_id)
        return department_name(ctx, department) if department is not None else "-"
    return ctx.t("staff.whole_centre")


async def _by(ctx: Ctx, actor: str) -> str:
    """Who set a closure, by the name they show on their platform; nothing when it is not
    known (an account id is not for showing)."""
    name = await staff_name(ctx.session, actor)
    return ctx.t("reopen.by", name=name) if name != actor else ""


async def list_closures(ctx: Ctx, args: str) -> list[Reply]:
    """List the closures not over yet, with the numbers /reopen takes."""
    found = await rules.closures_ahead(ctx.session, ctx.now)
    if not found:
        return [ctx.reply("reopen.none")]
    # A doctor's closure touched its bookings (替诊, 换诊 or cancelled); a service's cancelled them.
    lines = [ctx.t("reopen.line_doctor" if c.resource_id is not None else "reopen.line",
                   number=c.id, scope=await _scope(ctx, c),
                   start=when_text(ctx, c.starts_at), end=when_text(ctx, c.ends_at),
                   reason=c.reason, count=c.affected, late=c.late_notices,
                   by=await _by(ctx, c.created_by),
                   state=ctx.t("reopen.under_way" if c.starts_at <= ctx.now else "reopen.ahead"))
             for c in found]
    return [ctx.reply("reopen.list", lines="\n".join(lines))]


async def reopen(ctx: Ctx, args: str) -> list[Reply]:
    """Undo a closure that has not started and moved no booking: /reopen N."""
    number = args.strip().lstrip("#")
    if not number.isascii() or not number.isdigit() or len(number) > 9:
        return [ctx.reply("reopen.usage")]
    try:
        closure = await rules.reopen_closure(ctx.session, ctx.now, int(number), actor=ctx.actor)
    except ReopenRefused as refused:
        details = refused.details
        values: dict[str, Any] = {"number": number}
        if refused.reason == ReopenRefusal.STARTED:
            values["start"] = when_text(ctx, details["starts_at"])
        elif refused.reason == ReopenRefusal.MOVED:
            values["count"] = details["count"]
        return [ctx.reply(f"reopen.refused_{refused.reason.value}", **values)]
    return [ctx.reply("reopen.done", number=number, scope=await _scope(ctx, closure),
                      start=when_text(ctx, closure.starts_at), end=when_text(ctx, closure.ends_at),
                      count=closure.affected)]
