"""The main menu and the service search every flow can fall back on."""

from __future__ import annotations

from sqlalchemy import select

from handlers.context import Ctx, option
from handlers.core import Reply
from storage.catalog import ServiceDef
from storage.models import Department, Service


def main_menu(ctx: Ctx) -> Reply:
    """Show the four things a citizen can do."""
    return ctx.reply(
        "menu.prompt",
        [option(ctx.t("menu.book"), "main:book"), option(ctx.t("menu.my"), "main:my")],
        [option(ctx.t("menu.guide"), "main:guide"), option(ctx.t("menu.human"), "main:human")])


def back_to_menu(ctx: Ctx) -> list:  # type: ignore[type-arg]
    return [option(ctx.t("menu.back_main"), "main:menu")]


async def active_services(ctx: Ctx, department_id: int | None = None) -> list[Service]:
    query = select(Service).where(Service.active.is_(True)).order_by(Service.id)
    if department_id is not None:
        query = query.where(Service.department_id == department_id)
    return list((await ctx.session.scalars(query)).all())


async def departments(ctx: Ctx) -> list[Department]:
    return list((await ctx.session.scalars(select(Department).order_by(Department.id))).all())


def service_name(ctx: Ctx, service: Service) -> str:
    return service.name_en if ctx.locale == "en" else service.name_zh


async def search_services(ctx: Ctx, text: str) -> list[Service]:
    """Services whose name or keywords contain what the citizen typed ("身份证", "dentist")."""
    needle = text.casefold().strip()
    if len(needle) < 2 or needle.isdigit():
        return []
    found = []
    for service in await active_services(ctx):
        definition = ServiceDef.from_json(service.definition)
        haystack = [service.name_zh, service.name_en, *definition.keywords]
        if any(needle in h.casefold() or (len(h) >= 2 and h.casefold() in needle) for h in haystack):
            found.append(service)
    return found
