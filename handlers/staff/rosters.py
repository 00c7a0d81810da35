"""Doctors' and windows' rosters (排班) from the staff chat: ``/roster NAME`` shows one,
``/roster NAME mon_am SEATS [SERVICE]`` changes a weekly half-day, ``/roster NAME DATE [am|pm|day]
SEATS [note]`` makes a dated exception (0 seats: off). Audited in storage/roster_changes.py."""

from __future__ import annotations

import datetime as dt
import re

from handlers.context import Ctx
from handlers.core import Reply
from handlers.doctors import name_text, title_text
from handlers.flow import Command
from handlers.i18n import format_day
from handlers.menu import service_name
from handlers.staff.dates import parse_day
from storage import services
from storage.models import Service
from storage.privacy import mask_text
from storage.resources import ResourceInfo, all_resources, find_resources, services_of_resource
from storage.roster_changes import RosterRefused, roster_views, set_exception, set_pattern
from storage.rosters import ExceptionRow, PatternRow

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ZH_WEEKDAYS = "一二三四五六日"
_SESSION = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun)_(am|pm)$")
_SESSION_ZH = re.compile(r"^(?:周|星期)([一二三四五六日天])(上午|下午)$")


def _session(word: str) -> tuple[int, str] | None:
    """"mon_am" or "周一上午" → (0, "am")."""
    if match := _SESSION.match(word.lower()):
        return _WEEKDAYS.index(match.group(1)), match.group(2)
    if match := _SESSION_ZH.match(word):
        day = "日" if match.group(1) == "天" else match.group(1)
        return _ZH_WEEKDAYS.index(day), "am" if match.group(2) == "上午" else "pm"
    return None


def _half(ctx: Ctx, half: str) -> str:
    return ctx.t(f"roster.half_{half}")


def _session_text(ctx: Ctx, weekday: int, half: str) -> str:
    return ctx.t(f"roster.weekday_{weekday}") + _half(ctx, half)


def _who(ctx: Ctx, resource: ResourceInfo) -> str:
    return f"{name_text(ctx, resource)} {title_text(ctx, resource)}"


async def _resource(ctx: Ctx, word: str) -> ResourceInfo | Reply:
    found = await find_resources(ctx.session, word)
    if len(found) == 1:
        return found[0]
    if found:
        return ctx.reply("roster.ambiguous", word=word, names=_listed(ctx, found))
    return Reply(ctx.t("roster.unknown", word=word) + "\n" + await _everyone(ctx))


def _listed(ctx: Ctx, resources: list[ResourceInfo]) -> str:
    return "\n".join(f"• {r.code}：{_who(ctx, r)}" for r in resources) or "-"


async def _everyone(ctx: Ctx) -> str:
    return _listed(ctx, await all_resources(ctx.session))


async def roster(ctx: Ctx, args: str) -> list[Reply]:
    """Show or change a doctor's or window's roster."""
    words = args.split()
    if not words:
        return [ctx.reply("roster.usage", names=await _everyone(ctx))]
    resource = await _resource(ctx, words[0])
    if isinstance(resource, Reply):
        return [resource]
    if len(words) == 1:
        return [await _show(ctx, resource)]
    if (session := _session(words[1])) is not None:
        return [await _change_pattern(ctx, resource, session, words[2:])]
    if (day := parse_day(ctx, words[1])) is not None:
        return [await _change_day(ctx, resource, day, words[2:])]
    return [ctx.reply("roster.usage", names=await _everyone(ctx))]


async def _show(ctx: Ctx, resource: ResourceInfo) -> Reply:
    lines = [ctx.t("roster.head", who=_who(ctx, resource))]
    for view in await roster_views(ctx.session, ctx.now, ctx.centre, resource.id):
        service = await ctx.session.get(Service, view.service_id)
        lines.append(ctx.t("roster.service", service=service_name(ctx, service) if service else "-"))
        lines.append(ctx.t("roster.weekly", sessions=_patterns_text(ctx, view.patterns)))
        for exception, note in view.exceptions:
            lines.append(_exception_text(ctx, exception, note))
        if not view.exceptions:
            lines.append(ctx.t("roster.no_exceptions"))
    lines.append(ctx.t("roster.how"))
    return Reply("\n".join(lines))


def _patterns_text(ctx: Ctx, patterns: tuple[PatternRow, ...]) -> str:
    if not patterns:
        return ctx.t("roster.none")
    return "、".join(ctx.t("roster.sitting", when=_session_text(ctx, p.weekday, p.half),
                          seats=p.seats, online=p.online) for p in patterns)


def _exception_text(ctx: Ctx, exception: ExceptionRow, note: str) -> str:
    what = ctx.t("roster.off") if exception.seats == 0 else ctx.t(
        "roster.seats", seats=exception.seats, online=exception.online)
    return ctx.t("roster.exception", day=format_day(exception.day, ctx.locale),
                 half=_half(ctx, exception.half), what=what, note=note or "-")


def _seats(word: str | None) -> int | None:
    return int(word) if word is not None and word.isascii() and word.isdigit() and len(word) <= 3 else None


async def _pick_service(ctx: Ctx, resource: ResourceInfo, word: str | None) -> Service | Reply:
    """The service a weekly change is for: the resource's only one, or the one named."""
    served = await services_of_resource(ctx.session, resource.id)
    if word is None:
        if len(served) == 1:
            return served[0]
        return ctx.reply("roster.need_service", services="、".join(service_name(ctx, s) for s in served))
    found = (await services.match_service(ctx.session, word, departments=False)).found
    if not isinstance(found, Service) or found.id not in {s.id for s in served}:
        return ctx.reply("roster.not_served", who=_who(ctx, resource), word=word)
    return found


async def _change_pattern(ctx: Ctx, resource: ResourceInfo, session: tuple[int, str],
                          rest: list[str]) -> Reply:
    seats = _seats(rest[0] if rest else None)
    if seats is None:
        return ctx.reply("roster.bad_seats")
    service = await _pick_service(ctx, resource, " ".join(rest[1:]) or None)
    if isinstance(service, Reply):
        return service
    weekday, half = session
    try:
        change = await set_pattern(ctx.session, ctx.centre, ctx.now, resource_id=resource.id,
                                   service_id=service.id, weekday=weekday, half=half, seats=seats,
                                   actor=ctx.actor)
    except RosterRefused as refused:
        return ctx.reply(f"roster.{refused.reason}", who=_who(ctx, resource), word="")
    text = ctx.t("roster.done_weekly" if seats else "roster.done_weekly_off", who=_who(ctx, resource),
                 service=service_name(ctx, service), when=_session_text(ctx, weekday, half), seats=seats)
    return Reply(text + _kept(ctx, change.kept_bookings))


async def _change_day(ctx: Ctx, resource: ResourceInfo, day: dt.date, rest: list[str]) -> Reply:
    half = "day"
    if rest and rest[0].lower() in ("am", "pm", "day", "上午", "下午", "全天"):
        half = {"上午": "am", "下午": "pm", "全天": "day"}.get(rest[0], rest[0].lower())
        rest = rest[1:]
    seats = _seats(rest[0] if rest else None)
    if seats is None:
        return ctx.reply("roster.bad_seats")
    note = mask_text(" ".join(rest[1:]).strip())
    kept = 0
    served = await services_of_resource(ctx.session, resource.id)
    try:
        for service_id in [s.id for s in served]:   # a day off is off for every service it serves
            change = await set_exception(ctx.session, ctx.centre, ctx.now, resource_id=resource.id,
                                         service_id=service_id, day=day, half=half, seats=seats,
                                         note=note, actor=ctx.actor)
            kept += change.kept_bookings
    except RosterRefused as refused:
        return ctx.reply(f"roster.{refused.reason}", who=_who(ctx, resource), word="")
    text = ctx.t("roster.done_day_off" if seats == 0 else "roster.done_day", who=_who(ctx, resource),
                 day=format_day(day, ctx.locale), half=_half(ctx, half), seats=seats)
    return Reply(text + _kept(ctx, kept))


def _kept(ctx: Ctx, bookings: int) -> str:
    return "\n" + ctx.t("roster.kept", count=bookings) if bookings else ""


COMMANDS: dict[str, Command] = {"roster": roster}
