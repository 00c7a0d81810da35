"""Service guide (办事指南): materials, place, hours and processing time of any service,
without booking. Diagram: docs/flows/guide.mmd."""

from __future__ import annotations

from handlers.context import Ctx, Event, option
from handlers.core import Reply
from handlers.flow import Flow
from handlers.menu import back_to_menu, service_name
from handlers.payloads import Button, ServicePick
from handlers.render import service_details
from handlers.steps import Booking, Guide
from storage import services
from storage.models import Department
from storage.seats import release_holds


async def guide(ctx: Ctx, args: str) -> list[Reply]:
    """Open the guide (a seat held before is given back)."""
    await release_holds(ctx.session, ctx.actor)
    return await ctx.enter(Guide.PICK)


async def pick(ctx: Ctx, event: Event) -> list[Reply]:
    """List every service, grouped by department, and ask which one to explain."""
    if (picked := event.pick(ServicePick)) is not None:
        return await ctx.enter(Guide.SHOW, service=picked.service)
    rows = []
    for department in await services.departments(ctx.session):
        for service in await services.active_services(ctx.session, department.id):
            rows.append([option(service_name(ctx, service), ServicePick(service.id))])
    return [ctx.reply("guide.pick", *rows, back_to_menu(ctx))]


async def show(ctx: Ctx, event: Event) -> list[Reply]:
    """Show the full guide of one service, with a way to book it."""
    found = await services.active_service(ctx.session, ctx.data.get("service"))
    if found is None or event.button is Button.BACK:
        return await ctx.enter(Guide.PICK)
    service, definition = found
    if event.button is Button.BOOK:
        return await ctx.enter(Booking.NOTICE, service=service.id)
    department = await ctx.session.get(Department, service.department_id)
    return [Reply(service_details(ctx, definition, department),
                  ((option(ctx.t("guide.book_this"), Button.BOOK),),
                   (option(ctx.t("common.back"), Button.BACK), *back_to_menu(ctx))))]


FLOW = Flow("guide", steps={Guide.PICK: pick, Guide.SHOW: show}, commands={"guide": guide})
