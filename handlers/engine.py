"""The conversation engine: one incoming message in, the replies out, in one transaction.

It de-duplicates platform retries, keeps each user's conversation state in the database, turns
typed numbers and pressed buttons back into the meaning of the current menu (and recognises an
out-of-date menu), expires idle conversations, and routes everything else to the flows listed
in handlers/registry.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import secrets
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from handlers import booking, cases, elder, handoff, words
from handlers.context import GLOBAL_PREFIX, Ctx, Event, EventKind
from handlers.core import Choice, Incoming, NotAdmitted, Reply, Reports
from handlers.i18n import normalize_locale, translate
from handlers.menu import language, leave, main_menu, search_services
from handlers.payloads import Button, Language, Main, prefix_of, pressed
from handlers.registry import FLOWS
from handlers.staff.access import is_staff
from handlers.staff.control import cancel_booking
from handlers.staff.desk import desk_text, is_desk
from handlers.staff.replies import stop as stop_for_staff
from handlers.staff.requests import group_text as answer_from_staff
from storage import conversations
from storage.centre import Centre
from storage.clock import Clock
from storage.db import Database, Session, is_outage
from storage.privacy import mask_text
from storage.seats import release_holds
from storage.settings import Settings

log = logging.getLogger(__name__)

# A menu token: the menu's id and the entry's index, ASCII digits of bounded length (a forged
# token of thousands of digits would make int() refuse, or a huge number).
_MENU_TOKEN = re.compile(r"^m([0-9]{1,12})\.([0-9]{1,4})$")
# The most digits a typed menu number can have; anything longer is out of range unread.
MENU_NUMBER_DIGITS = 4
_FULL_WIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")
_CANCEL_WORDS = {"取消", "退出", "cancel", "quit", "exit", "/cancel"}
_CANCEL_COMMANDS = {"cancel", "stop"}


@dataclass(frozen=True)
class Resolved:
    """What an incoming message means once menus are looked up."""

    payload: str | None = None      # a choice's payload
    wire: bool = False              # the payload came on the wire (a notification's button)
    stale: bool = False             # a choice from a menu that is no longer shown


class Assistant:
    """Handles every incoming message of every channel the same way."""

    def __init__(self, *, database: Database, centre: Centre, clock: Clock, settings: Settings,
                 reports: Reports | None = None, staff_reachable: bool = True) -> None:
        self.database = database
        self.centre = centre
        self.clock = clock
        self.settings = settings
        self.reports = reports   # charts and spreadsheets for /stats (drawn in bot/)
        # False when no staff channel is configured: a hand-off would reach nobody.
        self.staff_reachable = staff_reachable

    async def handle(self, incoming: Incoming, *,
                     admit: Callable[[Session], Awaitable[None]] | None = None) -> list[Reply]:
        """Answer one incoming message. The same platform message id gets the same answer once
        processed, however often the platform delivers it.

        Args:
            admit: a check of the transport's own (WeChat's replay record), run first in the
                message's transaction so that a message is one transaction, not two; it raises
                ``NotAdmitted`` (passed on, nothing kept) to refuse the message.
        """
        now = self.clock.now()
        try:
            async with self.database.session() as session:
                if admit is not None:
                    await admit(session)
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
            if is_outage(exc) or isinstance(exc, NotAdmitted):
                # Let the channel answer "try later" so the platform delivers it again (or
                # refuse what its own check refused).
                raise
            # Type and place only: messages of some exceptions quote what the user typed.
            log.error("error handling %s message %s: %s at %s", incoming.channel,
                      incoming.message_id or "-", type(exc).__name__, _where(exc))
            locale = normalize_locale(incoming.locale, self.settings.general.locale)
            return [Reply(translate(locale, "error.apology"))]

    async def _handle_in(self, session: Session, incoming: Incoming, now: dt.datetime) -> list[Reply]:
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
                  locale=identity.locale, steps=FLOWS, reports=self.reports,
                  staff_reachable=self.staff_reachable)
        replies = await self._route(ctx)
        replies = _assign_menu(ctx, await elder.adapt(ctx, ctx.notes + replies))
        if incoming.choice and not incoming.choice.startswith(GLOBAL_PREFIX) and replies \
                and not replies[0].edit and not replies[0].toast \
                and replies[0].attachment is None and not ctx.notes:
            # A pressed menu button moves the flow on: the menu it belonged to becomes this
            # answer. A notification's button (g:...) leaves its message as it is: a reminder,
            # a staff answer or a shared alert keeps its content; the handler says otherwise
            # where the press changes the message by design.
            replies[0] = dataclasses.replace(replies[0], edit=True)
        ctx.save()
        return replies

    async def _route(self, ctx: Ctx) -> list[Reply]:
        incoming = ctx.incoming
        takes_photo = bool(incoming.photo) and FLOWS.photo_handler(ctx.flow, ctx.step) is not None
        if incoming.event and not takes_photo:
            return await self._event(ctx, incoming.event)
        conversation = self.settings.conversation
        flow = FLOWS.flow(ctx.flow)
        if ctx.flow and (flow is None or flow.expires) \
                and ctx.now - ctx.conversation.updated_at > dt.timedelta(minutes=conversation.idle_minutes):
            await release_holds(ctx.session, ctx.actor)
            ctx.end()
            ctx.forget("_menu")
            ctx.notes.append(ctx.reply("core.expired", minutes=conversation.idle_minutes))
        if incoming.photo and (photo_step := FLOWS.photo_handler(ctx.flow, ctx.step)) is not None:
            return await photo_step(ctx, Event(EventKind.PHOTO, incoming.photo))
        if incoming.event:      # a photo where none is taken, once the flow expired
            return await self._event(ctx, incoming.event)
        if incoming.command:
            return await self._command(ctx, incoming.command.lower(), incoming.args.strip())
        resolved = _resolve(ctx, incoming)
        if resolved.stale:
            ctx.notes.append(ctx.reply("core.stale"))
            return await self._reenter(ctx)
        if resolved.payload is not None:
            ctx.remember(_misunderstood=0)
            if resolved.wire:
                return await self._action(ctx, resolved.payload)
            return await self._choice(ctx, resolved.payload)
        return await self._text(ctx, incoming.text.strip())

    async def _event(self, ctx: Ctx, event: str) -> list[Reply]:
        if event == "subscribe":
            ctx.end()
            return [ctx.reply("core.welcome"), main_menu(ctx)]
        if event == "unsubscribe":
            ctx.identity.unreachable_at, ctx.identity.unreachable_reason = ctx.now, "unsubscribed"
            await release_holds(ctx.session, ctx.actor)
            ctx.end()
            return []
        if event.startswith("menu:"):
            key = event.removeprefix("menu:")
            if await FLOWS.command(ctx, key.lower()) is None:
                # A key of an older custom menu (or a forged one): not a command anyone typed.
                return [ctx.reply("words.menu_key_gone"), main_menu(ctx)]
            return await self._command(ctx, key.lower(), "")
        if is_desk(ctx.incoming):
            return [ctx.reply("staff.desk_unsupported")]
        kind = event.partition(":")[2]
        return [ctx.reply(f"words.unsupported.{kind}" if kind in words.UNSUPPORTED_KINDS
                          else "words.unsupported.other"), main_menu(ctx)]

    async def _command(self, ctx: Ctx, name: str, args: str) -> list[Reply]:
        if name in _CANCEL_COMMANDS:
            if name == "cancel" and args and await is_staff(ctx):
                # /cancel CODE REASON: staff cancel one booking for its citizen.
                return await cancel_booking(ctx, args)
            return await self._cancel(ctx)
        found = await FLOWS.command(ctx, name)
        if found is None:
            return [ctx.reply("core.unknown_command", command=mask_text(name)[:40]),
                    main_menu(ctx)]
        flow, command = found
        if flow.guard is not None and (refused := await flow.guard(ctx, f"/{name}")) is not None:
            return refused
        return await command(ctx, args)

    async def _cancel(self, ctx: Ctx) -> list[Reply]:
        """Leave the current flow the way it says (the staff group: staff stop), and say what
        was cancelled; a hand-off still open is never left silently: the citizen is asked
        whether to end it too."""
        if ctx.incoming.is_group or is_desk(ctx.incoming):
            return await stop_for_staff(ctx)
        flow = FLOWS.flow(ctx.flow)
        if flow is not None and flow.cancel is not None:
            replies = await flow.cancel(ctx)
        else:
            replies = await leave(ctx)
        if ctx.flow is None:
            return await handoff.ask_to_end_open(ctx, replies)
        return replies

    async def _action(self, ctx: Ctx, text: str) -> list[Reply]:
        """A notification's button: it works outside any flow, once its payload checks out."""
        found = FLOWS.action(text)
        if found is None:
            return [ctx.reply("core.stale"), main_menu(ctx)]
        flow, kind, action = found
        if flow.guard is not None and (
                refused := await flow.guard(ctx, f"button {prefix_of(text)}")) is not None:
            return refused
        payload = kind.read(text)
        if payload is None:
            return flow.stale(ctx) if flow.stale is not None else [ctx.reply("core.stale"), main_menu(ctx)]
        return await action(ctx, payload)

    async def _choice(self, ctx: Ctx, payload: str) -> list[Reply]:
        if (main := Main.read(payload)) is not None:
            return await self._command(ctx, main.command, "")
        if (chosen := Language.read(payload)) is not None:
            return await language(ctx, chosen.code)
        if pressed(payload) is Button.STOP:
            return await self._cancel(ctx)
        if pressed(payload) is Button.MORE and (page := await elder.more(ctx)) is not None:
            return page
        handler = FLOWS.handler(ctx.flow, ctx.step)
        if handler is None:
            return [ctx.reply("core.stale"), main_menu(ctx)]
        return await handler(ctx, Event(EventKind.CHOICE, payload))

    async def _text(self, ctx: Ctx, text: str) -> list[Reply]:
        if ctx.incoming.is_group or is_desk(ctx.incoming):
            return await self._group_text(ctx, text)
        word = words.global_word(text)
        if word == words.CANCEL:
            return await self._cancel(ctx)
        if word is not None:
            ctx.remember(_misunderstood=0)
            return await self._global(ctx, word, text)
        handler = FLOWS.text_handler(ctx.flow, ctx.step)
        if handler is not None:
            return await handler(ctx, Event(EventKind.TEXT, text))
        if cases.is_progress_request(text):
            return await self._command(ctx, "progress", "")
        if (withdrawn := cases.withdraw_request(text)) is not None:
            return await cases.withdraw(ctx, withdrawn)
        if cases.is_case_number(text):
            return await cases.lookup(ctx, text)
        if (count := len((ctx.data.get("_menu") or {}).get("items", []))) and _typed_number(text):
            # A number that is none of the menu's (0, 9 of 4, or thousands of digits).
            ctx.notes.append(ctx.reply("core.no_such_choice", count=count))
            return await self._reenter(ctx) if ctx.flow else [main_menu(ctx)]
        if text:
            found = await search_services(ctx, text)
            if found:
                ctx.remember(_misunderstood=0)
                return await booking.show_search(ctx, found)
        return await self._misunderstood(ctx, text)

    async def _global(self, ctx: Ctx, command: str, text: str) -> list[Reply]:
        """A global word: the command it names, from any step (the flow left is left cleanly by
        the command itself). The complaint command is told the word, so that 投诉 and 建议 go
        straight to their kind."""
        args = words.key_of(text) if command == words.COMPLAINT_COMMAND else ""
        return await self._command(ctx, command, args)

    async def _group_text(self, ctx: Ctx, text: str) -> list[Reply]:
        """Group text reaches the bot only as a reply to one of its messages (on the staff
        desk, all text does): an answer to a staff flow's question, or else an answer for a
        hand-off's citizen."""
        if text.casefold() in _CANCEL_WORDS:
            return await self._cancel(ctx)
        handler = FLOWS.text_handler(ctx.flow, ctx.step)
        if handler is not None:
            return await handler(ctx, Event(EventKind.TEXT, text))
        if is_desk(ctx.incoming):
            return await desk_text(ctx, text)
        return await answer_from_staff(ctx, text)

    async def _misunderstood(self, ctx: Ctx, text: str = "") -> list[Reply]:
        count = int(ctx.data.get("_misunderstood", 0)) + 1
        # What was not understood goes with a hand-off, so staff need not ask again: masked
        # before it is kept (citizens type ID numbers, cards and phones into anything).
        ctx.remember(_misunderstood=count,
                     _said=[*(ctx.data.get("_said") or []), mask_text(text[:300])][-3:] if text
                     else ctx.data.get("_said") or [])
        if count >= self.settings.conversation.misunderstandings_before_handoff:
            ctx.remember(_misunderstood=0)
            return [ctx.reply("core.offer_human"), handoff.offer(ctx)]
        if ctx.flow and ctx.step:
            return [ctx.reply("core.not_understood_step"), *await self._reenter(ctx)]
        return [ctx.reply("core.not_understood"), main_menu(ctx)]

    async def _reenter(self, ctx: Ctx) -> list[Reply]:
        handler = FLOWS.handler(ctx.flow, ctx.step)
        if handler is None:
            ctx.end()
            return [main_menu(ctx)]
        return await handler(ctx, Event.enter())


def _where(exc: BaseException) -> str:
    """The innermost frame of our own code an exception came from, as file:line."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/handlers/" in f.filename or "/storage/" in f.filename] or frames
    last = ours[-1] if ours else None
    return f"{last.filename.rsplit('/', 2)[-2]}/{last.filename.rsplit('/', 1)[-1]}:{last.lineno}" \
        if last else "?"


def _resolve(ctx: Ctx, incoming: Incoming) -> Resolved:
    menu = ctx.data.get("_menu") or {}
    items: list[list[str]] = menu.get("items", [])
    if incoming.choice:
        token = incoming.choice
        if token.startswith(GLOBAL_PREFIX):
            return Resolved(payload=token.removeprefix(GLOBAL_PREFIX), wire=True)
        match = _MENU_TOKEN.match(token)
        if not match or int(match.group(1)) != menu.get("id") or int(match.group(2)) >= len(items):
            return Resolved(stale=True)
        return Resolved(payload=items[int(match.group(2))][0])
    text = incoming.text.strip()
    # On the staff desk a number typed outside a flow is an answer for a citizen, not a pick
    # from a menu that is no longer on screen.
    if items and text and (ctx.flow or not is_desk(incoming)):
        digits = _menu_number(text)
        if digits is not None and 1 <= digits <= len(items):
            return Resolved(payload=items[digits - 1][0])
        for payload, label in items:
            if label.casefold() == text.casefold():
                return Resolved(payload=payload)
    return Resolved()


def _typed_number(text: str) -> bool:
    """The text is a number (ASCII or full-width digits), however long."""
    return text.translate(_FULL_WIDTH_DIGITS).isascii() and text.translate(_FULL_WIDTH_DIGITS).isdigit()


def _menu_number(text: str) -> int | None:
    """A typed menu number, or None: read only when it has at most ``MENU_NUMBER_DIGITS``
    digits (int() refuses more than 4,300 digits; no menu has that many entries)."""
    digits = text.translate(_FULL_WIDTH_DIGITS)
    if not digits.isascii() or not digits.isdigit() or len(digits) > MENU_NUMBER_DIGITS:
        return None
    return int(digits)


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
        out.append(dataclasses.replace(reply, choices=tuple(rows)))
    if items:
        ctx.remember(_menu={"id": menu_id, "items": items})
    return out
