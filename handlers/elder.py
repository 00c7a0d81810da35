"""长辈 mode (适老化): fewer choices on a screen, short sentences, the centre's phone on every
screen and 人工 one step away.

Switched with the words 长辈模式 / 标准模式 (handlers/words.py) and offered by itself when the
age read from the ID number reaches ``conversation.elder_age``. The choice is kept with the
conversation ("_elder", a shared key every flow keeps). In the mode:

- ``Ctx.t`` reads ``elder.<key>`` before ``<key>`` where the catalog has a shorter wording;
- every screen shows at most ``MAX_CHOICES`` choices: the rest wait behind "更多" (dates are
  grouped by week and time slots by 上午/下午 first, in handlers/booking.py);
- every answer ends with how to reach a person: "人工" or the centre's phone.
"""

from __future__ import annotations

import dataclasses

from handlers.context import Ctx, option
from handlers.core import Choice, Reply
from handlers.flow import Flow
from handlers.menu import main_menu
from handlers.payloads import Button, Main
from storage import services

KEY = "_elder"
OFFERED = "_elder_offered"
PAGE = "_more"
MAX_CHOICES = 6


def is_on(ctx: Ctx) -> bool:
    return bool(ctx.data.get(KEY))


async def switch_on(ctx: Ctx, args: str) -> list[Reply]:
    """Switch 长辈 mode on."""
    ctx.remember(**{KEY: True, OFFERED: True})
    return [ctx.reply("elder.switched_on"), main_menu(ctx)]


async def switch_off(ctx: Ctx, args: str) -> list[Reply]:
    """Back to the standard screens."""
    ctx.forget(KEY, PAGE)
    ctx.remember(**{OFFERED: True})
    return [ctx.reply("elder.switched_off"), main_menu(ctx)]


def offer(ctx: Ctx, age: int | None) -> str:
    """A line offering 长辈 mode, once, to someone whose ID says they are old enough."""
    if age is None or age < ctx.settings.conversation.elder_age or is_on(ctx) \
            or ctx.data.get(OFFERED):
        return ""
    ctx.remember(**{OFFERED: True})
    return ctx.t("elder.offer", age=ctx.settings.conversation.elder_age)


# --- every screen ------------------------------------------------------------------------------

_NAVIGATION = {Button.BACK.value, Main("menu").encode(), Main("human").encode()}


async def adapt(ctx: Ctx, replies: list[Reply]) -> list[Reply]:
    """Fit an answer to 长辈 mode: at most ``MAX_CHOICES`` choices (the rest behind 更多), and
    a last line with how to reach a person."""
    if not is_on(ctx) or not replies:
        return replies
    out = []
    for reply in replies:
        if reply.choices:
            items = [choice for row in reply.choices for choice in row]
            if len(items) > MAX_CHOICES:
                nav = [c for c in items if c.token in _NAVIGATION]
                content = [c for c in items if c.token not in _NAVIGATION]
                ctx.remember(**{PAGE: {"text": reply.text, "items": [[c.label, c.token] for c in content],
                                       "nav": [[c.label, c.token] for c in nav], "at": 0}})
                reply = _page(ctx, reply)
            else:
                ctx.forget(PAGE)
        out.append(reply)
    last = max((i for i, r in enumerate(out) if r.text), default=None)
    if last is not None:
        out[last] = dataclasses.replace(out[last], text=out[last].text + "\n" + await _footer(ctx))
    return out


def _page(ctx: Ctx, reply: Reply) -> Reply:
    """The page of the stored long menu starting at its "at": content, 更多, navigation."""
    stored = ctx.data[PAGE]
    items, nav, at = stored["items"], stored["nav"], int(stored["at"])
    room = MAX_CHOICES - len(nav) - 1
    shown = items[at:] if len(items) - at <= room + 1 else items[at:at + room]
    rows: list[tuple[Choice, ...]] = [(Choice(label, token),) for label, token in shown]
    if at + len(shown) < len(items):
        rows.append((option(ctx.t("elder.more", left=len(items) - at - len(shown)), Button.MORE),))
    elif at:
        rows.append((option(ctx.t("elder.first_page"), Button.MORE),))   # round to the start
    if nav:
        rows.append(tuple(Choice(label, token) for label, token in nav))
    ctx.remember(**{PAGE: {**stored, "next": at + len(shown)}})
    return dataclasses.replace(reply, choices=tuple(rows))


async def more(ctx: Ctx) -> list[Reply] | None:
    """The next page of the long menu on screen (from its start after the last), or None."""
    stored = ctx.data.get(PAGE)
    if not stored:
        return None
    at = int(stored.get("next", 0))
    if at >= len(stored["items"]):
        at = 0
    ctx.remember(**{PAGE: {**stored, "at": at}})
    text = stored["text"] if at == 0 else ctx.t("elder.more_head")
    return [_page(ctx, Reply(text))]


async def _footer(ctx: Ctx) -> str:
    """How to reach a person: the word 人工, or the phone of the service's department (else
    the first department with one)."""
    phone = ""
    found = await services.active_service(ctx.session, ctx.data.get("service")) \
        if isinstance(ctx.data.get("service"), int) else None
    for department in await services.departments(ctx.session):
        number = department.definition.get("phone")
        if number and (found is None or department.id == found[0].department_id):
            phone = number
            break
    return ctx.t("elder.footer_phone", phone=phone) if phone else ctx.t("elder.footer")


FLOW = Flow("elder", commands={"elder": switch_on, "standard": switch_off})
