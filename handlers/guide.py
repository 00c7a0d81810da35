"""Service guide (办事指南): materials, place, hours and processing time of any service,
without booking. Diagram: docs/flows/guide.mmd."""

from __future__ import annotations

from handlers import booking
from handlers.context import Ctx, Event, option
from handlers.core import Reply
from handlers.menu import active_services, back_to_menu, departments, service_name
from handlers.render import service_details
from storage.catalog import ServiceDef
from storage.models import Department, Service

FLOW = "guide"
TEXT_STEPS: tuple[str, ...] = ()


async def start(ctx: Ctx, event: Event) -> list[Reply]:
    """List every service, grouped by department."""
    ctx.goto(FLOW, "pick")
    return await pick(ctx, Event("enter"))


async def pick(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask which service to explain."""
    if event.kind == "choice" and event.value.startswith("svc:"):
        ctx.goto(FLOW, "show", service=int(event.value[4:]))
        return await show(ctx, Event("enter"))
    rows = []
    for department in await departments(ctx):
        for service in await active_services(ctx, department.id):
            rows.append([option(service_name(ctx, service), f"svc:{service.id}")])
    return [ctx.reply("guide.pick", *rows, back_to_menu(ctx))]


async def show(ctx: Ctx, event: Event) -> list[Reply]:
    """Show the full guide of one service, with a way to book it."""
    service = await ctx.session.get(Service, ctx.data.get("service"))
    if service is None or not service.active:
        return await start(ctx, Event("enter"))
    if event.value == "book":
        ctx.goto(booking.FLOW, "notice", service=service.id)
        return await booking.notice(ctx, Event("enter"))
    if event.value == "back":
        return await start(ctx, Event("enter"))
    definition = ServiceDef.from_json(service.definition)
    department = await ctx.session.get(Department, service.department_id)
    return [Reply(service_details(ctx, definition, department),
                  ((option(ctx.t("guide.book_this"), "book"),),
                   (option(ctx.t("common.back"), "back"), *back_to_menu(ctx))))]


STEPS = {"pick": pick, "show": show}
