"""The conversation engine: one incoming message in, the replies out, in one transaction.

It de-duplicates platform retries, keeps each user's conversation state in the database, turns
typed numbers and pressed buttons back into the meaning of the current menu (and recognises an
out-of-date menu), expires idle conversations, and routes everything else to the flows.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from handlers import booking, guide, handoff, home_visit, my_bookings, rating, staff, stats
from handlers.context import GLOBAL_PREFIX, Ctx, Event
from handlers.core import Choice, Incoming, Reply
from handlers.i18n import normalize_locale, translate
from handlers.menu import main_menu, search_services
from storage import conversations
from storage.centre import Centre
from storage.clock import Clock
from storage.db import Database, is_outage
from storage.seats import release_holds
from storage.settings import Settings

log = logging.getLogger(__name__)

Step = Callable[[Ctx, Event], Awaitable[list[Reply]]]

# Each flow: its steps by name. A flow's "enter" event re-renders the step (after a stale menu).
FLOWS: dict[str, dict[str, Step]] = {
    booking.FLOW: booking.STEPS,
    my_bookings.FLOW: my_bookings.STEPS,
    guide.FLOW: guide.STEPS,
    handoff.FLOW: handoff.STEPS,
    home_visit.FLOW: home_visit.STEPS,
    rating.FLOW: rating.STEPS,
    staff.FLOW: staff.STEPS,
}

_MENU_TOKEN = re.compile(r"^m(\d+)\.(\d+)$")
_CANCEL_WORDS = {"取消", "退出", "cancel", "quit", "exit", "/cancel"}
_HUMAN_WORDS = {"人工", "转人工", "人工服务", "客服", "human", "agent", "talk to staff"}
_MENU_WORDS = {"菜单", "主菜单", "menu", "开始", "start", "你好", "您好", "hi", "hello"}


@dataclass(frozen=True)
class Resolved:
    """What an incoming message means once menus are looked up."""

    payload: str | None = None      # a choice's payload
    stale: bool = False             # a choice from a menu that is no longer shown


class Assistant:
    """Handles every incoming message of every channel the same way."""

    def __init__(self, *, database: Database, centre: Centre, clock: Clock, settings: Settings,
                 reports: stats.Reports | None = None) -> None:
        self.database = database
        self.centre = centre
        self.clock = clock
        self.settings = settings
        self.reports = reports   # charts and spreadsheets for /stats (drawn in bot/)

    async def handle(self, incoming: Incoming) -> list[Reply]:
        """Answer one incoming message. The same platform message id gets the same answer once
        processed, however often the platform delivers it."""
        now = self.clock.now()
        try:
            async with self.database.session() as session:
                message_id = incoming.message_id
                if message_id and not await conversations.record_delivery(
                        session, incoming.channel, message_id, now):
                    stored = await conversations.stored_answer(session, incoming.channel, message_id)
                    return [Reply.from_json(reply) for reply in stored]
                replies = await self._handle_in(session, incoming, now)
                if message_id:
                    await conversations.store_answer(session, incoming.channel, message_id,
                                                     [reply.to_json() for reply in replies])
                return replies
        except Exception as exc:
            if is_outage(exc):
                # Let the channel answer "try later" so the platform delivers it again.
                raise
            # Type and place only: messages of some exceptions quote what the user typed.
            log.error("error handling %s message %s: %s at %s", incoming.channel,
                      incoming.message_id or "-", type(exc).__name__, _where(exc))
            locale = normalize_locale(incoming.locale, self.settings.general.locale)
            return [Reply(translate(locale, "error.apology"))]

    async def _handle_in(self, session, incoming: Incoming, now: dt.datetime) -> list[Reply]:  # type: ignore[no-untyped-def]
        identity = await conversations.sender(
            session, incoming.channel, incoming.user_id,
            normalize_locale(incoming.locale, self.settings.general.locale), now,
            writing=incoming.event != "unsubscribe")
        # In a group each member has a conversation of their own there, apart from their
        # private chat with the bot (a staff member may also be a citizen).
        key = f"{incoming.user_id}@{incoming.chat_id}" if incoming.is_group else incoming.user_id
        # Group members see each other's menus: start each one's menu numbers somewhere else,
        # so a button pressed on a colleague's menu is stale, not someone else's pick.
        initial = {"_menu": {"id": secrets.randbelow(10**6) * 1000, "items": []}} \
            if incoming.is_group else {}
        conversation = await conversations.lock_conversation(session, incoming.channel, key, now,
                                                             initial=initial)
        ctx = Ctx(session=session, centre=self.centre, settings=self.settings, now=now,
                  incoming=incoming, identity=identity, conversation=conversation,
                  locale=identity.locale)
        replies = await self._route(ctx)
        replies = _assign_menu(ctx, ctx.notes + replies)
        if incoming.choice and replies and not replies[0].edit and replies[0].attachment is None \
                and not ctx.notes:
            # A pressed button moves the flow on: the menu it belonged to becomes this answer.
            first = replies[0]
            replies[0] = Reply(first.text, first.choices, first.attachment, edit=True)
        ctx.save()
        return replies

    async def _route(self, ctx: Ctx) -> list[Reply]:
        incoming = ctx.incoming
        if incoming.event:
            return await self._event(ctx, incoming.event)
        idle = dt.timedelta(minutes=self.settings.conversation.idle_minutes)
        # A citizen waiting for staff may wait longer than a menu stays open.
        if ctx.flow and ctx.flow != handoff.FLOW and ctx.now - ctx.conversation.updated_at > idle:
            await release_holds(ctx.session, ctx.owner)
            ctx.end()
            ctx.forget("_menu")
            ctx.notes.append(ctx.reply("core.expired", minutes=self.settings.conversation.idle_minutes))
        if incoming.command:
            return await self._command(ctx, incoming.command.lower(), incoming.args.strip())
        resolved = _resolve(ctx, incoming)
        if resolved.stale:
            ctx.notes.append(ctx.reply("core.stale"))
            return await self._reenter(ctx)
        if resolved.payload is not None:
            ctx.remember(_misunderstood=0)
            return await self._choice(ctx, resolved.payload)
        return await self._text(ctx, incoming.text.strip())

    async def _event(self, ctx: Ctx, event: str) -> list[Reply]:
        if event == "subscribe":
            ctx.end()
            return [ctx.reply("core.welcome"), main_menu(ctx)]
        if event == "unsubscribe":
            ctx.identity.unreachable_at, ctx.identity.unreachable_reason = ctx.now, "unsubscribed"
            await release_holds(ctx.session, ctx.owner)
            ctx.end()
            return []
        if event.startswith("menu:"):
            return await self._command(ctx, event.removeprefix("menu:"), "")
        return [ctx.reply("core.unsupported"), main_menu(ctx)]

    async def _command(self, ctx: Ctx, command: str, args: str) -> list[Reply]:
        if command in stats.COMMANDS:
            return await stats.command(ctx, command, args, self.reports)
        if command in ("cancel", "stop") and ctx.incoming.is_group:
            return await staff.stopped(ctx)
        if command not in ("cancel", "stop"):
            answer = await staff.command(ctx, command, args)
            if answer is not None:
                return answer
        if command in ("cancel", "stop"):
            return await self.leave(ctx, "core.cancelled")
        if command in ("start", "menu"):
            await release_holds(ctx.session, ctx.owner)
            ctx.end()
            return [ctx.reply("core.welcome") if command == "start" else ctx.reply("core.menu_intro"),
                    main_menu(ctx)]
        if command == "help":
            return [ctx.reply("core.help"), main_menu(ctx)]
        if command == "lang":
            return _language(ctx, args)
        starters = {"book": booking.start, "my": my_bookings.start, "guide": guide.start,
                    "human": handoff.start}
        if command in starters:
            await release_holds(ctx.session, ctx.owner)
            return await starters[command](ctx, Event("enter", args))
        return [ctx.reply("core.unknown_command", command=command), main_menu(ctx)]

    async def leave(self, ctx: Ctx, key: str) -> list[Reply]:
        """Leave any flow cleanly: seats held are given back, the menu is shown."""
        await release_holds(ctx.session, ctx.owner)
        ctx.end()
        return [ctx.reply(key), main_menu(ctx)]

    async def _choice(self, ctx: Ctx, payload: str) -> list[Reply]:
        head, _, rest = payload.partition(":")
        if head == "main":
            return await self._command(ctx, rest, "")
        if head == "lang":
            return _language(ctx, rest)
        if head == "global":
            action = rest.partition(":")[0]
            if action in staff.GLOBAL_ACTIONS:
                return await staff.global_action(ctx, rest)
            if action in handoff.CITIZEN_ACTIONS:
                return await handoff.global_action(ctx, rest)
            return await my_bookings.global_action(ctx, rest)
        steps = FLOWS.get(ctx.flow or "")
        if steps is None or ctx.step not in steps:
            return [ctx.reply("core.stale"), main_menu(ctx)]
        return await steps[ctx.step](ctx, Event("choice", payload))

    async def _text(self, ctx: Ctx, text: str) -> list[Reply]:
        lowered = text.casefold()
        if ctx.incoming.is_group:
            return await self._group_text(ctx, text)
        if lowered in _CANCEL_WORDS:
            return await self.leave(ctx, "core.cancelled")
        if lowered in _HUMAN_WORDS:
            await release_holds(ctx.session, ctx.owner)
            return await handoff.start(ctx, Event("enter"))
        if lowered in _MENU_WORDS:
            return await self._command(ctx, "menu", "")
        steps = FLOWS.get(ctx.flow or "")
        if steps is not None and ctx.step in steps and ctx.step in _TEXT_STEPS.get(ctx.flow or "", ()):
            return await steps[ctx.step](ctx, Event("text", text))
        if text:
            found = await search_services(ctx, text)
            if found:
                ctx.remember(_misunderstood=0)
                return await booking.show_search(ctx, found)
        return await self._misunderstood(ctx, text)

    async def _group_text(self, ctx: Ctx, text: str) -> list[Reply]:
        """Group text reaches the bot only as a reply to one of its messages: an answer to a
        staff flow's question, or else an answer for a hand-off's citizen."""
        if text.casefold() in _CANCEL_WORDS:
            return await staff.stopped(ctx)
        steps = FLOWS.get(ctx.flow or "", {})
        if ctx.step in steps and ctx.step in _TEXT_STEPS.get(ctx.flow or "", ()):
            return await steps[ctx.step](ctx, Event("text", text))
        return await staff.group_text(ctx, text)

    async def _misunderstood(self, ctx: Ctx, text: str = "") -> list[Reply]:
        count = int(ctx.data.get("_misunderstood", 0)) + 1
        # What was not understood goes with a hand-off, so staff need not ask again.
        ctx.remember(_misunderstood=count,
                     _said=[*(ctx.data.get("_said") or []), text[:300]][-3:] if text else
                     ctx.data.get("_said") or [])
        if count >= self.settings.conversation.misunderstandings_before_handoff:
            ctx.remember(_misunderstood=0)
            return [ctx.reply("core.offer_human"), handoff.offer(ctx)]
        if ctx.flow and ctx.step:
            return [ctx.reply("core.not_understood_step"), *await self._reenter(ctx)]
        return [ctx.reply("core.not_understood"), main_menu(ctx)]

    async def _reenter(self, ctx: Ctx) -> list[Reply]:
        steps = FLOWS.get(ctx.flow or "")
        if steps is None or ctx.step not in steps:
            ctx.end()
            return [main_menu(ctx)]
        return await steps[ctx.step](ctx, Event("enter"))


def _where(exc: BaseException) -> str:
    """The innermost frame of our own code an exception came from, as file:line."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/handlers/" in f.filename or "/storage/" in f.filename] or frames
    last = ours[-1] if ours else None
    return f"{last.filename.rsplit('/', 2)[-2]}/{last.filename.rsplit('/', 1)[-1]}:{last.lineno}" \
        if last else "?"


# Steps that take typed text; anywhere else, text is a search, a menu number or a question.
_TEXT_STEPS: dict[str, tuple[str, ...]] = {
    booking.FLOW: booking.TEXT_STEPS,
    my_bookings.FLOW: my_bookings.TEXT_STEPS,
    guide.FLOW: guide.TEXT_STEPS,
    handoff.FLOW: handoff.TEXT_STEPS,
    home_visit.FLOW: home_visit.TEXT_STEPS,
    rating.FLOW: rating.TEXT_STEPS,
    staff.FLOW: staff.TEXT_STEPS,
}


def _language(ctx: Ctx, args: str) -> list[Reply]:
    chosen = args.strip().lower()
    if chosen in ("zh", "zh-cn", "中文", "cn", "en", "english", "英文"):
        ctx.identity.locale = "en" if chosen in ("en", "english", "英文") else "zh-CN"
        ctx.locale = ctx.identity.locale
        return [ctx.reply("core.language_set"), main_menu(ctx)]
    return [ctx.reply("core.pick_language", [Choice("中文", "lang:zh"), Choice("English", "lang:en")])]


def _resolve(ctx: Ctx, incoming: Incoming) -> Resolved:
    menu = ctx.data.get("_menu") or {}
    items: list[list[str]] = menu.get("items", [])
    if incoming.choice:
        token = incoming.choice
        if token.startswith(GLOBAL_PREFIX):
            return Resolved(payload="global:" + token.removeprefix(GLOBAL_PREFIX))
        match = _MENU_TOKEN.match(token)
        if not match or int(match.group(1)) != menu.get("id") or int(match.group(2)) >= len(items):
            return Resolved(stale=True)
        return Resolved(payload=items[int(match.group(2))][0])
    text = incoming.text.strip()
    if items and text:
        digits = text.translate(str.maketrans("０１２３４５６７８９", "0123456789"))
        if digits.isdecimal() and 1 <= int(digits) <= len(items):
            return Resolved(payload=items[int(digits) - 1][0])
        for payload, label in items:
            if label.casefold() == text.casefold():
                return Resolved(payload=payload)
    return Resolved()


def _assign_menu(ctx: Ctx, replies: list[Reply]) -> list[Reply]:
    """Give the choices of this answer short tokens and remember what each one means.

    Only the last menu of an answer is live; a token from an earlier answer is stale.
    """
    menu_id = int((ctx.data.get("_menu") or {}).get("id", 0)) + 1
    items: list[list[str]] = []
    out = []
    for reply in replies:
        if not reply.choices:
            out.append(reply)
            continue
        rows = []
        for row in reply.choices:
            new_row = []
            for choice in row:
                if choice.token.startswith(GLOBAL_PREFIX):
                    new_row.append(choice)
                    continue
                new_row.append(Choice(choice.label, f"m{menu_id}.{len(items)}"))
                items.append([choice.token, choice.label])
            rows.append(tuple(new_row))
        out.append(Reply(reply.text, tuple(rows), reply.attachment, reply.edit))
    if items:
        ctx.remember(_menu={"id": menu_id, "items": items})
    return out
