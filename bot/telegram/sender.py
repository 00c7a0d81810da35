"""Sending replies to Telegram chats within the limits: a ``bot.channels.Sender``.

``TelegramSender(bot, database, clock, *, staff_chat_id=0)``:
``deliver(chat_id, replies, *, kind="message")`` — ``chat_id`` is a Telegram chat id as text
or ``"staff"`` for the staff group; raises ``Unreachable`` (and records the account as
unreachable) or ``TryLater``. The bot's rate limiter (``bot.telegram.limiter``) paces every
call and waits out Telegram's 429s; the sender handles what a retry cannot mend.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from telegram import CallbackQuery, InlineKeyboardMarkup, InputFile, Message
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter
from telegram.ext import ExtBot

from bot.channels import TryLater, Unreachable
from bot.telegram.failures import QuietLog
from bot.telegram.limiter import RateLimiter, Throttled, retry_seconds
from bot.telegram.parse import CHANNEL
from bot.telegram.render import CAPTION_LIMIT, TEXT_LIMIT, fit, keyboard, split_text, units
from handlers.core import Reply
from storage import reach
from storage.clock import Clock
from storage.db import Database

log = logging.getLogger("yuyue.telegram")

STAFF_TARGET = "staff"
PHOTO_TYPES = {"image/png", "image/jpeg"}     # what sendPhoto shows as a picture


def _forbidden_reason(error: Forbidden) -> str:
    text = error.message.lower()
    for words, reason in (("blocked", "blocked"), ("deactivated", "deactivated"),
                          ("kicked", "kicked"), ("initiate", "never_started")):
        if words in text:
            return reason
    return "forbidden"


T = TypeVar("T")


def _short(message: str) -> str:
    """Telegram's description of a refusal, without its "Bad Request: " prefix, cut short."""
    text = message.split(":", 1)[1].strip() if message.lower().startswith("bad request:") \
        else message
    return text[:100]


class Deferred(TryLater):
    """Part of a reply could not be sent now (Telegram's limits): ``rest`` is what was not sent,
    each a single message (text within the limit, or one file)."""

    def __init__(self, reason: str, retry_after: float | None, rest: list[Reply]) -> None:
        super().__init__(reason, retry_after)
        self.rest = rest


def messages_of(reply: Reply) -> list[Reply]:
    """A reply as the single messages it is sent as: its text in pieces within Telegram's
    limit, then its file; the buttons go on the last one."""
    pieces = [p for p in split_text(reply.text) if p.strip()]
    parts = [Reply(piece) for piece in pieces]
    if reply.attachment is not None:
        parts.append(Reply("", attachment=reply.attachment))
    if parts:
        parts[-1] = dataclasses.replace(parts[-1], choices=reply.choices)
    return parts


@dataclass
class _Batch:
    texts: list[str]
    sent: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    error: BaseException | None = None


class TelegramSender:
    """Sends replies to Telegram chats within the rate limits (a ``bot.channels.Sender``)."""

    channel = CHANNEL
    batch_separator = "\n\n— — —\n\n"
    max_batch = 10
    # An answer to a chat waits at most this long for the limits (a private chat's burst
    # window); past it, or when Telegram asks for longer, the rest goes to the outbox.
    inline_wait = 3.0

    def __init__(self, bot: ExtBot[int], database: Database, clock: Clock, *,
                 staff_chat_id: int = 0) -> None:
        if not isinstance(bot.rate_limiter, RateLimiter):
            raise TypeError("the sender needs a bot built with a RateLimiter (build_bot)")
        self.bot = bot
        self.database = database
        self.clock = clock
        self.limiter: RateLimiter = bot.rate_limiter
        self.configured_staff_chat = staff_chat_id
        self._staff_chat: int | None = None
        self._batches: dict[int, _Batch] = {}
        # Every refusal by Telegram is logged with its reason, at most once a minute per reason,
        # never with the chat or what was sent.
        self.refusals = QuietLog(log)

    async def staff_chat(self) -> int:
        """The staff group's current chat id (0 when none is configured)."""
        if self._staff_chat is None:
            async with self.database.read() as session:
                self._staff_chat = await reach.staff_chat_id(session, self.configured_staff_chat)
        return self._staff_chat

    async def follow_migration(self, old: int, new: int) -> bool:
        """Record that group ``old`` is now ``new``; True when that was the staff group."""
        async with self.database.session() as session:
            moved = await reach.record_chat_migration(session, self.configured_staff_chat, old,
                                                      new, self.clock.now())
        if moved:
            self._staff_chat = new
            log.warning("the staff group moved to a supergroup: chat %s is now %s", old, new)
        return moved

    async def deliver(self, chat_id: str, replies: list[Reply], *, kind: str = "message",
                      fields: Mapping[str, str] | None = None) -> None:
        """Send ``replies`` to ``chat_id`` (a chat id, or "staff") in order.

        Short alerts to the staff group that pile up behind its 20-a-minute limit go out
        together as one message.

        Raises:
            Unreachable: the chat blocked or removed the bot (recorded for a user).
            TryLater: Telegram kept saying "too many requests", or the network failed.
        """
        target = await self.staff_chat() if chat_id == STAFF_TARGET else int(chat_id)
        if not target:
            raise Unreachable("no staff group configured (telegram.staff_chat_id)")
        group = target < 0
        try:
            for reply in replies:
                if group and not reply.choices and reply.attachment is None \
                        and reply.text.strip():
                    await self._send_batched(target, reply.text)
                else:
                    await self.send_reply(target, reply)
        except BadRequest as error:
            # Telegram refused this message for good (too long, a file it cannot take): trying
            # again sends the same thing, so it is undeliverable (and a staff answer's author
            # is told at once).
            raise Unreachable(f"refused: {_short(error.message)}") from None

    async def send_reply(self, chat_id: int, reply: Reply) -> list[Message]:
        """Send one reply as new message(s); its keyboard goes on the last one.

        Raises:
            Deferred: a TryLater after part of it went: ``rest`` holds the part that did not.
        """
        parts = messages_of(reply)
        sent: list[Message] = []
        for index, part in enumerate(parts):
            try:
                if part.attachment is not None:
                    sent.append(await self._send_file(chat_id, part, keyboard(part)))
                else:
                    sent.append(await self.call(chat_id, functools.partial(
                        self.bot.send_message, text=part.text, reply_markup=keyboard(part))))
            except Deferred:
                raise
            except TryLater as later:
                raise Deferred(str(later), later.retry_after, parts[index:]) from None
        if not sent:
            log.warning("an empty reply to chat %s was not sent", chat_id)
        return sent

    async def _send_file(self, chat_id: int, reply: Reply,
                         markup: InlineKeyboardMarkup | None) -> Message:
        """An image (a chart) as a photo, shown in the chat; anything else (.ics, spreadsheets)
        as a document to open or save."""
        attachment = reply.attachment
        assert attachment is not None
        caption = attachment.caption
        if units(caption) > CAPTION_LIMIT:
            caption = caption[:fit(caption, CAPTION_LIMIT - 1)] + "…"

        # The content is bytes, so a retried upload (after a 429) sends the whole file again.
        upload = InputFile(attachment.content, filename=attachment.filename)
        upload.mimetype = attachment.mime
        if attachment.mime in PHOTO_TYPES:
            return await self.call(chat_id, lambda chat: self.bot.send_photo(
                chat, upload, caption=caption or None, reply_markup=markup))
        return await self.call(chat_id, lambda chat: self.bot.send_document(
            chat, upload, caption=caption or None, reply_markup=markup))

    async def edit_reply(self, chat_id: int, message_id: int, reply: Reply) -> bool:
        """Show ``reply`` in place of the menu message ``message_id``.

        Returns:
            False when the message cannot be edited (too old, gone, or the reply carries a
            file): the caller sends the reply as a new message instead.
        """
        if reply.attachment is not None or not reply.text.strip():
            # A file cannot replace text: retire the old keyboard, send the reply anew.
            await self.retire_keyboard(chat_id, message_id)
            return False
        pieces = [p for p in split_text(reply.text) if p.strip()]
        markup = keyboard(reply)
        first_markup = markup if len(pieces) == 1 else None
        edited = await self._edit(chat_id, lambda chat: self.bot.edit_message_text(
            pieces[0], chat, message_id, reply_markup=first_markup))
        if not edited:
            return False
        if len(pieces) > 1:
            await self.send_reply(chat_id, dataclasses.replace(
                reply, text="".join(pieces[1:]), edit=False))
        return True

    async def retire_keyboard(self, chat_id: int, message_id: int) -> None:
        """Remove the buttons of an old menu message (its text stays)."""
        await self._edit(chat_id, lambda chat: self.bot.edit_message_reply_markup(
            chat, message_id, reply_markup=None))

    async def _edit(self, chat_id: int, make: Callable[[int], Awaitable[Any]]) -> bool:
        try:
            await self.call(chat_id, make)
        except BadRequest as error:
            if "not modified" in error.message.lower():
                return True  # the same press twice: the message already shows this
            log.info("menu message in chat %s could not be edited (%s); sending anew",
                     chat_id, error.message)
            return False
        return True

    async def answer(self, query: CallbackQuery, text: str | None = None) -> None:
        """Stop the button's spinner; a query that is too old is not an error."""
        try:
            await query.answer(text)
        except BadRequest as error:
            log.info("callback query not answered: %s", error.message)
        except NetworkError as error:
            log.warning("callback query not answered: %s", type(error).__name__)

    async def call(self, chat_id: int, make: Callable[[int], Awaitable[T]]) -> T:
        """Run one Bot API call to ``chat_id`` (paced, 429s waited out by the rate limiter),
        following a group that became a supergroup.

        Raises:
            Unreachable: 403 (recorded for a user) or "chat not found".
            TryLater: still 429 after the limiter's retries, or a network failure.
        """
        while True:
            try:
                return await make(chat_id)
            except RetryAfter as error:
                self._refused("429", "too many requests, still after waiting as told")
                raise TryLater("Telegram flood control", retry_seconds(error)) from None
            except Throttled as throttled:
                raise TryLater("throttled", throttled.seconds) from None
            except ChatMigrated as error:
                await self.follow_migration(chat_id, error.new_chat_id)
                chat_id = error.new_chat_id
            except Forbidden as error:
                reason = _forbidden_reason(error)
                self._refused("403", reason.replace("_", " "))
                if chat_id > 0:
                    await self._mark_unreachable(chat_id, reason)
                else:
                    log.error("the bot cannot write to group %s (%s): add it to the group "
                              "again", chat_id, reason)
                raise Unreachable(reason) from None
            except BadRequest as error:
                if "not modified" not in error.message.lower():   # the same press twice
                    self._refused("400", _short(error.message))
                if "chat not found" in error.message.lower():
                    raise Unreachable("chat_not_found") from None
                raise
            except NetworkError as error:
                self._refused("network", type(error).__name__)
                raise TryLater(f"network: {type(error).__name__}") from None

    def _refused(self, status: str, reason: str) -> None:
        self.refusals.log(logging.WARNING, f"{status}:{reason}",
                          "telegram refused a message: %s %s", status, reason)

    async def _mark_unreachable(self, user_id: int, reason: str) -> None:
        async with self.database.session() as session:
            newly = await reach.mark_unreachable(session, CHANNEL, str(user_id), reason,
                                                 self.clock.now())
        if newly:
            log.info("a telegram user is now unreachable (%s): no more messages to them",
                     reason)

    async def _send_batched(self, chat_id: int, text: str) -> None:
        batch = self._batches.get(chat_id)
        if (batch is not None and len(batch.texts) < self.max_batch
                and units(self.batch_separator.join([*batch.texts, text])) <= TEXT_LIMIT):
            batch.texts.append(text)
            await batch.sent.wait()
            if batch.error is not None:
                raise batch.error
            return
        batch = _Batch([text])
        self._batches[chat_id] = batch
        try:
            # Alerts arriving while this one waits for the group's limit join it.
            while (wait := self.limiter.delay(chat_id)) > 0:
                await self.limiter.sleep(wait)
            if self._batches.get(chat_id) is batch:
                del self._batches[chat_id]
            combined = self.batch_separator.join(batch.texts)
            await self.call(chat_id, lambda chat: self.bot.send_message(chat, combined))
        except BaseException as error:
            batch.error = error
            raise
        finally:
            if self._batches.get(chat_id) is batch:
                del self._batches[chat_id]
            batch.sent.set()
