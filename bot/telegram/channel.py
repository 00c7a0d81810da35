"""The Telegram channel: turn updates into ``Incoming``, call the conversation, render ``Reply``.

No business rule lives here. python-telegram-bot's ``Bot`` does the HTTP calls (pointed at a
self-hosted or fake Bot API server by ``telegram.base_url``); the conversation state is ours, in
the database, so PTB's ConversationHandler and persistence are not used.

Wiring (``yuyue run``)::

    channel = build_telegram(app, assistant)          # -> TelegramChannel
    await channel.start()                             # getMe, setMyCommands; checks the settings
    # telegram.mode == "polling" (one process only):
    await channel.run_polling(stop_event)             # returns once stop_event is set and the
                                                      # updates in flight are done
    # telegram.mode == "webhook" (any number of processes):
    routes = channel.webhook_routes()                 # -> list[Route], into build_web_app(...)
    await channel.set_webhook()                       # tells Telegram telegram.webhook_url
    ...
    channel.sender                                    # TelegramSender, a bot.channels.Sender
    await channel.close()

The package's other modules: ``parse`` (update -> Incoming), ``render`` (Reply -> text and
keyboard), ``limiter`` (Telegram's rate limits), ``sender`` (sending within them),
``polling`` and ``webhook`` (the two ways updates arrive), ``commands`` (setMyCommands),
``config`` (the Bot and the settings it needs), ``failures`` (what may go wrong with an update).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol

from sqlalchemy import select
from starlette.routing import Route
from telegram import BotCommandScopeChat, Update
from telegram.error import TelegramError
from telegram.ext import ExtBot

from bot.channels import TryLater, Unreachable
from bot.telegram.commands import STAFF_COMMANDS, register_commands, set_commands
from bot.telegram.config import RedactToken, build_bot, check_settings
from bot.telegram.failures import TRANSIENT_ERRORS, NotProcessed, log_failure
from bot.telegram.limiter import RateLimiter, at_most_waiting
from bot.telegram.parse import CHANNEL, ChatMove, MemberChange, parse_update
from bot.telegram.polling import Polling
from bot.telegram.render import apology
from bot.telegram.sender import Deferred, TelegramSender, messages_of
from bot.telegram.shape import clean_update
from bot.telegram.webhook import TelegramWebhook
from handlers.core import Incoming, Reply
from handlers.i18n import normalize_locale
from handlers.notices.answers import reply_payload
from storage import conversations, outbox, reach
from storage.clock import Clock
from storage.db import Database
from storage.models import ChannelIdentity
from storage.settings import Settings

log = logging.getLogger("yuyue.telegram")
# Telegram shows at most 200 characters in a callback answer's pop-up.
TOAST_LIMIT = 200


class Conversation(Protocol):
    """What the channel needs from the conversation engine (handlers.engine.Assistant)."""

    async def handle(self, incoming: Incoming) -> list[Reply]: ...


class _ChatTurns:
    """One update at a time per chat in this process, so a chat's messages keep their order."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = defaultdict(int)

    @contextlib.asynccontextmanager
    async def turn(self, key: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] += 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]


class TelegramChannel:
    """Everything Telegram in one process: receiving (polling or webhook) and replying."""

    def __init__(self, settings: Settings, database: Database, clock: Clock,
                 assistant: Conversation, bot: ExtBot[int], sender: TelegramSender, *,
                 poll_timeout: int = 25, concurrency: int = 16) -> None:
        self.settings = settings
        self.database = database
        self.clock = clock
        self.assistant = assistant
        self.bot = bot
        self.sender = sender
        self.poll_timeout = poll_timeout
        self.repoll_seconds = 1.0
        self._slots = asyncio.Semaphore(concurrency)
        self._turns = _ChatTurns()
        self._redact = RedactToken(settings.telegram.token)
        self._started = False
        self.bot_id = 0
        self.bot_username = ""

        self._webhook = TelegramWebhook(settings.telegram, bot, self.process,
                                        lambda: self._started)

    # start and stop

    async def start(self) -> None:
        """Check the settings, meet the bot (getMe) and register its commands."""
        check_settings(self.settings.telegram)
        logging.getLogger("httpx").addFilter(self._redact)
        await self.bot.initialize()
        self.bot_id, self.bot_username = self.bot.id, self.bot.username
        self._started = True
        log.info("telegram bot @%s ready (%s mode)", self.bot_username,
                 self.settings.telegram.mode)
        await self.register_commands()

    async def close(self) -> None:
        """Close the HTTP connections (after polling or the web server has stopped)."""
        await self.bot.shutdown()
        logging.getLogger("httpx").removeFilter(self._redact)

    async def register_commands(self) -> None:
        """setMyCommands, scoped: citizens, the staff group, each allow-listed staff/manager."""
        await register_commands(self.bot, self.settings.access,
                                staff_chat=await self.sender.staff_chat(),
                                default_locale=self.settings.general.locale)

    # how updates arrive

    async def run_polling(self, stop: asyncio.Event) -> None:
        """Fetch and process updates until ``stop`` is set (``bot.telegram.polling``).

        Raises:
            PollingConflict: another process polls with this token.
        """
        if not self._started:
            raise RuntimeError("TelegramChannel.start() first")
        await Polling(self.bot, self.process, poll_timeout=self.poll_timeout,
                      repoll_seconds=self.repoll_seconds).run(stop)

    def webhook_routes(self) -> list[Route]:
        """The route Telegram posts updates to (``bot.telegram.webhook``)."""
        return self._webhook.routes()

    async def set_webhook(self) -> None:
        """Tell Telegram where to post updates, with the secret token it must send back."""
        await self._webhook.set_webhook()

    # receiving

    async def process(self, update: Update) -> None:
        """Handle one update completely: converse and send the answer.

        Raises:
            NotProcessed: a passing failure (database unavailable); deliver it again later.
        """
        try:
            parsed = parse_update(update, bot_username=self.bot_username, bot_id=self.bot_id)
        except (AttributeError, TypeError, ValueError) as error:
            log_failure(update.update_id, error)
            return
        if isinstance(parsed, Incoming):
            async with self._turns.turn(parsed.chat_id), self._slots:
                await self._converse(update, parsed)
        elif isinstance(parsed, ChatMove):
            await self._guard(update, self._move(parsed))
        elif isinstance(parsed, MemberChange):
            await self._guard(update, self._membership(parsed))
        elif update.callback_query is not None:
            await self.sender.answer(update.callback_query)

    async def process_json(self, data: dict[str, Any]) -> None:
        """``process`` for an update as Telegram sends it (webhook body, getUpdates item),
        checked first (``bot.telegram.shape``).

        Raises:
            BadUpdate: not an update of the documented shape.
        """
        clean = clean_update(data)
        if clean is not None:
            await self.process(Update.de_json(clean, self.bot))

    async def _guard(self, update: Update, work: Awaitable[None]) -> None:
        try:
            await work
        except TRANSIENT_ERRORS as error:
            raise NotProcessed(type(error).__name__) from error

    async def _move(self, move: ChatMove) -> None:
        if await self.sender.follow_migration(move.old, move.new):
            await set_commands(self.bot, BotCommandScopeChat(move.new), STAFF_COMMANDS,
                               default_locale=self.settings.general.locale)

    async def _membership(self, change: MemberChange) -> None:
        if change.is_group:
            if change.blocked and change.chat_id == await self.sender.staff_chat():
                log.error("the bot was removed from the staff group %s: staff alerts cannot "
                          "be delivered until it is added again", change.chat_id)
            return
        async with self.database.session() as session:
            if change.blocked:
                await reach.mark_unreachable(session, CHANNEL, change.user_id, "blocked",
                                             self.clock.now())
            else:
                await reach.mark_reachable(session, CHANNEL, change.user_id)

    async def _converse(self, update: Update, incoming: Incoming) -> None:
        query = update.callback_query
        try:
            if await self._already_processed(incoming):
                # Telegram redelivered an update we acted on: the answer went out then.
                log.info("telegram update %s delivered again: already processed, not acted on "
                         "twice", update.update_id)
                replies: list[Reply] = []
            else:
                replies = await self.assistant.handle(incoming)
        except TRANSIENT_ERRORS as error:
            log.warning("telegram update %s not processed now (%s); it will come again",
                        update.update_id, type(error).__name__)
            raise NotProcessed(type(error).__name__) from error
        except Exception as error:
            log_failure(update.update_id, error)
            replies = [Reply(apology(await self._locale_of(incoming)))]
        if query is not None:
            toast = replies[0] if replies and replies[0].toast else None
            if toast is not None and len(toast.text) <= TOAST_LIMIT and not toast.choices:
                # A refusal for the presser alone: the button's pop-up, nothing in the chat.
                await self.sender.answer(query, toast.text)
                replies = replies[1:]
            else:
                await self.sender.answer(query)
        await self._render(update, incoming, replies)

    async def _already_processed(self, incoming: Incoming) -> bool:
        if not incoming.message_id:
            return False
        async with self.database.read() as session:
            return await conversations.was_processed(session, CHANNEL, incoming.message_id,
                                                     self.clock.now())

    async def _locale_of(self, incoming: Incoming) -> str:
        """The user's chosen language if the database still answers, else their client's."""
        fallback = normalize_locale(incoming.locale, self.settings.general.locale)
        try:
            async with self.database.read() as session:
                chosen = await session.scalar(select(ChannelIdentity.locale).where(
                    ChannelIdentity.channel == CHANNEL,
                    ChannelIdentity.platform_user_id == incoming.user_id))
        except Exception:  # the database may be what failed; the apology must still go out
            return fallback
        return normalize_locale(chosen, fallback) if chosen else fallback

    async def _render(self, update: Update, incoming: Incoming, replies: list[Reply]) -> None:
        """Send the answer now as far as Telegram's limits allow without a long wait; what
        cannot go now (a 429, a chat or group over its budget) goes to the outbox with the
        rest of the answer after it, and the dispatcher sends it later, in order. While part
        of an earlier answer to the chat waits there, a new answer waits behind it."""
        chat_id = int(incoming.chat_id)
        target = outbox.chat_target(CHANNEL, incoming.chat_id)
        key = incoming.message_id or f"u{update.update_id}"
        query = update.callback_query
        menu = query.message if query is not None else None
        edited = False
        if replies and await self._waiting_behind(target):
            await self._defer(update, target, key, _messages(replies), 0.0)
            return
        try:
            with at_most_waiting(self.sender.inline_wait):
                for index, reply in enumerate(replies):
                    try:
                        if reply.edit and menu is not None and not edited:
                            edited = await self.sender.edit_reply(chat_id, menu.message_id, reply)
                            if edited:
                                continue
                        await self.sender.send_reply(chat_id, reply)
                    except Deferred as deferred:
                        await self._defer(update, target, key,
                                          deferred.rest + _messages(replies[index + 1:]),
                                          deferred.retry_after)
                        return
                    except TryLater as later:      # nothing of this reply went
                        await self._defer(update, target, key, _messages(replies[index:]),
                                          later.retry_after)
                        return
                if menu is not None and not edited and any(r.choices for r in replies):
                    # The answer brought a new menu, which makes the pressed one stale: take
                    # its buttons away so the chat does not fill with dead keyboards.
                    with contextlib.suppress(TryLater):
                        await self.sender.retire_keyboard(chat_id, menu.message_id)
        except Unreachable:
            pass  # recorded by the sender; nobody to tell
        except TelegramError as error:
            log.warning("telegram update %s: answer not fully sent (%s)", update.update_id,
                        type(error).__name__)
        except Exception as error:  # a reply we cannot render is a bug: log it, keep running
            log_failure(update.update_id, error)

    async def _waiting_behind(self, target: str) -> bool:
        try:
            async with self.database.read() as session:
                return await outbox.has_unsent_replies(session, target)
        except TRANSIENT_ERRORS:
            return False    # the database is what failed: send what can go now

    async def _defer(self, update: Update, target: str, key: str, rest: list[Reply],
                     retry_after: float | None) -> None:
        """Queue the messages of an answer that could not go now, to go from ``retry_after``
        seconds on."""
        now = self.clock.now()
        due = now + dt.timedelta(seconds=retry_after or 0.0)
        try:
            async with self.database.session() as session:
                queued = await outbox.enqueue_replies(
                    session, target=target, key=key, payloads=[reply_payload(r) for r in rest],
                    now=now, due_at=due)
        except TRANSIENT_ERRORS as error:
            log.error("telegram update %s: %d messages of the answer could not be sent nor "
                      "queued (%s)", update.update_id, len(rest), type(error).__name__)
            return
        log.info("telegram update %s: %d messages of the answer queued to go in %.0f s "
                 "(Telegram's limits)", update.update_id, queued, retry_after or 0.0)


def _messages(replies: list[Reply]) -> list[Reply]:
    return [message for reply in replies for message in messages_of(reply)]


def build_telegram(app: Any, assistant: Conversation, *,
                   limiter: RateLimiter | None = None) -> TelegramChannel:
    """The Telegram channel for ``app`` (a bot.wiring.App) talking to ``assistant``; its Bot
    API calls go through ``limiter`` (a default ``RateLimiter`` if none is given)."""
    settings: Settings = app.settings
    bot = build_bot(settings.telegram, limiter=limiter)
    sender = TelegramSender(bot, app.database, app.clock,
                            staff_chat_id=settings.telegram.staff_chat_id)
    return TelegramChannel(settings, app.database, app.clock, assistant, bot, sender)
