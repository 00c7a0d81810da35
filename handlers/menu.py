"""The main menu, leaving a flow, the language, and the service search every flow falls back on."""

from __future__ import annotations

from handlers.context import Ctx, option
from handlers.core import Choice, Reply
from handlers.flow import Flow
from handlers.i18n import Speaker, catalog
from handlers.payloads import Language, Main
from storage import services
from storage.models import Department, Service
from storage.seats import release_holds

_LANGUAGES = {"zh": "zh-CN", "zh-cn": "zh-CN", "中文": "zh-CN", "cn": "zh-CN",
              "en": "en", "english": "en", "英文": "en"}


def main_menu(ctx: Ctx) -> Reply:
    """Show the things a citizen can do."""
    return ctx.reply(
        "menu.prompt",
        [option(ctx.t("menu.book"), Main("book")), option(ctx.t("menu.my"), Main("my"))],
        [option(ctx.t("menu.guide"), Main("guide")), option(ctx.t("menu.human"), Main("human"))],
        [option(ctx.t("case.progress"), Main("progress")),
         option(ctx.t("complaint.menu"), Main("complaint"))],
        # accounts and people: 我的办事人 (and from there 我的信息, 绑定)
        [option(ctx.t("people.menu"), Main("people"))])


def back_to_menu(ctx: Ctx) -> list[Choice]:
    return [option(ctx.t("menu.back_main"), Main("menu"))]


async def leave(ctx: Ctx, key: str | None = None) -> list[Reply]:
    """Leave any flow cleanly: seats held are given back, the menu is shown. Without a
    ``key`` the message says what was cancelled: a held seat, a half-filled form, or nothing."""
    released = await release_holds(ctx.session, ctx.actor)
    flow = ctx.flow
    half_filled = flow is not None and any(not name.startswith("_") for name in ctx.data)
    ctx.end()
    if key is None:
        what = ctx.t(f"words.flow.{flow}" if f"words.flow.{flow}" in catalog(ctx.locale)
                     else "words.flow.other")
        if released:
            key = "core.cancelled"
        elif flow is None:
            key = "words.nothing_to_cancel"
        else:
            key = "words.cancelled_form" if half_filled else "words.cancelled_flow"
        return [ctx.reply(key, what=what), main_menu(ctx)]
    return [ctx.reply(key), main_menu(ctx)]


def service_name(ctx: Ctx, service: Service | services.MenuEntry) -> str:
    return service.name_en if ctx.locale == "en" else service.name_zh


def department_name(ctx: Ctx, department: Department | services.MenuEntry) -> str:
    return department.name_en if ctx.locale == "en" else department.name_zh


def unmatched_text(speaker: Ctx | Speaker, matched: services.Matched) -> str:
    """Why a service named in a staff or manager command was not found: the candidates a part
    fits, or every service (and department) to choose from, with their codes."""
    rows = matched.candidates or matched.known
    choices = "\n".join(speaker.t("match.line", code=row.code,
                                   name=row.name_en if speaker.locale == "en" else row.name_zh,
                                   kind=speaker.t("match.department")
                                   if isinstance(row, Department) else "")
                         for row in rows)
    return speaker.t("match.ambiguous" if matched.ambiguous else "match.unknown",
                     text=matched.text.strip(), choices=choices)


async def search_services(ctx: Ctx, text: str) -> list[Service]:
    """Services a citizen named: by name, synonym or phrasing ("身份证", "看牙", "dentist"),
    doctor or department, with pinyin and typo tolerance (storage.services.find_services)."""
    return await services.find_services(ctx.session, text)


# --- the commands of the menu itself --------------------------------------------------------------


async def start(ctx: Ctx, args: str) -> list[Reply]:
    """Greet the citizen and show the menu (any seat held is given back)."""
    await release_holds(ctx.session, ctx.actor)
    ctx.end()
    return [ctx.reply("core.welcome"), main_menu(ctx)]


async def menu(ctx: Ctx, args: str) -> list[Reply]:
    """Show the menu (any seat held is given back)."""
    await release_holds(ctx.session, ctx.actor)
    ctx.end()
    return [ctx.reply("core.menu_intro"), main_menu(ctx)]


async def help_command(ctx: Ctx, args: str) -> list[Reply]:
    """Say what the bot can do."""
    return [ctx.reply("core.help"), main_menu(ctx)]


async def language(ctx: Ctx, args: str) -> list[Reply]:
    """Switch the language, or offer the two."""
    chosen = _LANGUAGES.get(args.strip().lower())
    if chosen is not None:
        ctx.identity.locale = ctx.locale = chosen
        return [ctx.reply("core.language_set"), main_menu(ctx)]
    return [ctx.reply("core.pick_language", [option("中文", Language("zh")),
                                             option("English", Language("en"))])]


FLOW = Flow("menu", commands={"start": start, "menu": menu, "help": help_command, "lang": language})
