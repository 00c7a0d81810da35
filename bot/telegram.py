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

Public names:

- ``build_telegram(app, assistant, *, limiter=None, bot=None) -> TelegramChannel``
- ``TelegramChannel(settings, database, clock, assistant, bot, sender)``: ``start()``,
  ``register_commands()``, ``process(update)``, ``run_polling(stop_event)``,
  ``webhook_routes()``, ``set_webhook()``, ``close()``.
- ``TelegramSender(bot, database, clock, *, staff_chat_id=0, limiter=None)``:
  ``deliver(chat_id, replies, *, kind="message")`` — ``chat_id`` is a Telegram chat id as text
  or ``"staff"`` for the staff group; raises ``Unreachable`` (and records the account as
  unreachable) or ``TryLater``.
- ``RateLimiter(*, overall, private, group, now, sleep)``, ``Limit(count, period)``.
- ``parse_update(update, *, bot_username, bot_id)``, ``split_text(text)``, ``keyboard(reply)``.
- ``CITIZEN_COMMANDS``, ``STAFF_COMMANDS``, ``MANAGER_COMMANDS``: what setMyCommands registers.
- ``PollingConflict``: another process polls with this token (Telegram's 409).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import logging
import os
import re
import time
import traceback
import warnings
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from telegram import (
    Bot,
    BotCommand,
    BotCommandScope,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeChat,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    MessageEntity,
    Update,
)
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.request import HTTPXRequest

from bot.channels import TryLater, Unreachable
from handlers.core import ChannelName, Incoming, Reply
from handlers.i18n import normalize_locale, translate
from storage import conversations, reach
from storage.clock import Clock
from storage.db import Database
from storage.models import ChannelIdentity
from storage.settings import Settings, TelegramSettings

log = logging.getLogger("yuyue.telegram")

CHANNEL = ChannelName.TELEGRAM.value
STAFF_TARGET = "staff"
TEXT_LIMIT = 4096           # characters (UTF-16 code units) of one message
CAPTION_LIMIT = 1024
CALLBACK_DATA_LIMIT = 64    # bytes
ALLOWED_UPDATES = ("message", "callback_query", "my_chat_member")
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_SECRET_SHAPE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


# --- commands shown in Telegram's menu (setMyCommands) ----------------------------------------


@dataclass(frozen=True)
class CommandSpec:
    name: str
    zh: str
    en: str

    def describe(self, locale: str) -> str:
        return self.en if locale == "en" else self.zh


CITIZEN_COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("start", "开始 / 主菜单", "Start / main menu"),
    CommandSpec("book", "预约办事", "Book an appointment"),
    CommandSpec("my", "我的预约（查看、取消、改期）", "My bookings (view, cancel, change)"),
    CommandSpec("guide", "办事指南与所需材料", "Service guide and what to bring"),
    CommandSpec("human", "人工服务", "Talk to a person"),
    CommandSpec("lang", "切换语言 / Language", "Language / 切换语言"),
    CommandSpec("help", "帮助", "Help"),
    CommandSpec("cancel", "退出当前操作", "Stop what you are doing"),
)

STAFF_COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("today", "今日预约 [事项]", "Today's appointments [service]"),
    CommandSpec("find", "查询预约：预约码或手机号", "Find bookings: code or mobile"),
    CommandSpec("checkin", "签到：预约码 [证件后4位]", "Check in: code [ID last 4]"),
    CommandSpec("done", "办结：预约码", "Mark done: code"),
    CommandSpec("noshow", "标记爽约：预约码", "Mark no-show: code"),
    CommandSpec("undo", "撤销上一次标记：预约码", "Undo the last mark: code"),
    CommandSpec("book", "代办预约（现场/电话）", "Book for a walk-in or caller"),
    CommandSpec("closure", "停办/停诊", "Close a service for a period"),
    CommandSpec("blocks", "当前限制预约名单", "Current blacklist"),
    CommandSpec("unblock", "解除限制：人员 原因", "Lift a block: person reason"),
    CommandSpec("claim", "认领人工服务：编号", "Claim a hand-off: number"),
    CommandSpec("reply", "答复市民：编号 内容", "Answer a citizen: number text"),
    CommandSpec("close", "结束人工服务：编号 小结", "Close a hand-off: number summary"),
    CommandSpec("open", "未结的人工服务、投诉和申请", "Open hand-offs, complaints, requests"),
    CommandSpec("claimc", "认领投诉：编号", "Claim a complaint: number"),
    CommandSpec("answer", "答复投诉：编号 内容", "Answer a complaint: number text"),
    CommandSpec("resolve", "办结投诉：编号 结果", "Resolve a complaint: number outcome"),
    CommandSpec("approve", "同意上门服务：编号 时间", "Approve a home visit: number time"),
    CommandSpec("decline", "不同意上门服务：编号 原因", "Decline a home visit: number reason"),
    CommandSpec("walkin", "代办预约（私聊）", "Book for a walk-in (private chat)"),
    CommandSpec("staffhelp", "工作人员命令说明", "Staff commands"),
)

MANAGER_COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec("stats", "运行统计", "Figures"),
    CommandSpec("export", "导出数据", "Export data"),
)

class Conversation(Protocol):
    """What the channel needs from the conversation engine (handlers.engine.Assistant)."""

    async def handle(self, incoming: Incoming) -> list[Reply]: ...


class PollingConflict(RuntimeError):
    """Telegram answered 409 Conflict to getUpdates: another process polls with this token."""


class TelegramConfigError(ValueError):
    """The [telegram] settings cannot work as they are."""


class NotProcessed(Exception):
    """An update could not be processed for a passing reason (database down): do not ack it."""


# Failures that say nothing was done and a later try may work; anything else is a bug.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, ConnectionError,
    TimeoutError)


# --- parsing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChatMove:
    """A group became a supergroup with a new chat id."""

    old: int
    new: int


@dataclass(frozen=True)
class MemberChange:
    """A user blocked (``blocked=True``) or unblocked the bot in their private chat, or the bot
    was removed from / added to a group."""

    chat_id: int
    user_id: str
    blocked: bool
    is_group: bool


Parsed = Incoming | ChatMove | MemberChange | None


def message_key(update: Update) -> str | None:
    """A de-duplication key unique to this update for as long as it matters.

    Message ids are unique per chat and callback query ids globally, while update ids may
    restart after a quiet week; a redelivered update carries the same message or query.
    """
    if update.callback_query is not None:
        return f"q{update.callback_query.id}"
    if update.message is not None:
        return f"m{update.message.chat.id}:{update.message.message_id}"
    return f"u{update.update_id}"


def _command(message: Message, bot_username: str) -> tuple[str, str] | None:
    """("start", "args") for a message that starts with a command addressed to this bot."""
    text = message.text or ""
    entities = message.entities or ()
    if not any(e.type == MessageEntity.BOT_COMMAND and e.offset == 0 for e in entities):
        return None
    head, *rest = text.split(maxsplit=1)
    name, _, addressed = head[1:].partition("@")
    if addressed and addressed.lower() != bot_username.lower():
        return None  # "/today@other_bot" in a group: another bot's command
    return name.lower(), rest[0].strip() if rest else ""


def _pressed_label(query: CallbackQuery) -> str:
    markup = getattr(query.message, "reply_markup", None)
    for row in getattr(markup, "inline_keyboard", ()):
        for button in row:
            if button.callback_data == query.data:
                return str(button.text)
    return ""


def parse_update(update: Update, *, bot_username: str, bot_id: int) -> Parsed:
    """What an update means for us: something to converse about, a chat move, a (un)block."""
    if update.my_chat_member is not None:
        change = update.my_chat_member
        status = change.new_chat_member.status
        is_group = change.chat.type != ChatType.PRIVATE
        blocked = status in (ChatMemberStatus.BANNED, ChatMemberStatus.LEFT)
        return MemberChange(chat_id=change.chat.id, user_id=str(change.from_user.id),
                            blocked=blocked, is_group=is_group)
    query = update.callback_query
    if query is not None:
        if query.data is None or query.message is None:
            return None  # a game or an inline-mode message: nothing of ours
        chat = query.message.chat
        user = query.from_user
        return Incoming(channel=CHANNEL, user_id=str(user.id), chat_id=str(chat.id),
                        text=_pressed_label(query), choice=query.data,
                        locale=user.language_code, message_id=message_key(update),
                        is_group=chat.type != ChatType.PRIVATE, user_name=user.full_name)
    message = update.message
    if message is None or message.from_user is None:
        return None  # edited messages, channel posts: not part of a conversation
    if message.migrate_to_chat_id:
        return ChatMove(old=message.chat.id, new=message.migrate_to_chat_id)
    if message.migrate_from_chat_id:
        return ChatMove(old=message.migrate_from_chat_id, new=message.chat.id)
    user, chat = message.from_user, message.chat
    if user.is_bot:
        return None
    is_group = chat.type != ChatType.PRIVATE
    base = Incoming(channel=CHANNEL, user_id=str(user.id), chat_id=str(chat.id),
                    locale=user.language_code, message_id=message_key(update),
                    is_group=is_group, user_name=user.full_name)
    if message.text is not None:
        command = _command(message, bot_username)
        if command is not None:
            return dataclasses.replace(base, command=command[0], args=command[1],
                                       text=message.text)
        replied = message.reply_to_message
        if is_group and not (replied is not None and replied.from_user is not None
                             and replied.from_user.id == bot_id):
            # Group chatter not addressed to the bot, as with privacy mode on: staff talk to
            # the bot through commands, buttons and replies to its messages.
            return None
        answered = (replied.text or replied.caption or "") if replied is not None else ""
        return dataclasses.replace(base, text=message.text, reply_to_text=answered)
    if is_group:
        return None  # service messages and media in the group
    return dataclasses.replace(base, event="unsupported")


# --- rendering --------------------------------------------------------------------------------


def _units(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def _fit(text: str, limit: int) -> int:
    """How many characters of ``text`` fit in ``limit`` UTF-16 units."""
    count = used = 0
    for char in text:
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            break
        count += 1
    return count


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Cut ``text`` into pieces Telegram accepts, at a line break or sentence end if possible.

    Nothing is dropped: the pieces joined give ``text`` back.
    """
    pieces: list[str] = []
    rest = text
    while _units(rest) > limit:
        cut = _fit(rest, limit)
        window = rest[:cut]
        for separator in ("\n", "。", "！", "？", ". ", " "):
            at = window.rfind(separator)
            if at >= cut // 2:
                cut = at + len(separator)
                break
        pieces.append(rest[:cut])
        rest = rest[cut:]
    pieces.append(rest)
    return pieces


def keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    """The reply's choices as an inline keyboard, one row per row of choices.

    Raises:
        ValueError: a token does not fit Telegram's 64-byte callback data (a bug in handlers/).
    """
    if not reply.choices:
        return None
    for choice in reply.flat_choices:
        if not choice.token or len(choice.token.encode()) > CALLBACK_DATA_LIMIT:
            raise ValueError(f"choice token of {len(choice.token.encode())} bytes: "
                             f"Telegram takes 1-{CALLBACK_DATA_LIMIT}")
    return InlineKeyboardMarkup([[InlineKeyboardButton(c.label, callback_data=c.token)
                                  for c in row] for row in reply.choices])


def apology(locale: str | None) -> str:
    """The short apology for a failure on our side, in the user's language."""
    return translate(normalize_locale(locale), "error.apology")


def webhook_path(webhook_url: str) -> str:
    """The path this server answers Telegram on: the path of ``telegram.webhook_url``."""
    path = urlsplit(webhook_url).path if webhook_url else ""
    return path if path and path != "/" else "/telegram"


# --- rate limiting ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """At most ``count`` messages in any ``period`` seconds."""

    count: int
    period: float


class RateLimiter:
    """Keeps outgoing messages inside Telegram's limits, waiting (never dropping) when needed.

    Defaults: 29 messages per second overall (Telegram allows about 30: one less keeps clear
    of its 429s); a private chat averages 1 per second with
    bursts of 3 (an answer is often two or three messages, which Telegram tolerates); a group
    20 per minute. ``now`` and ``sleep`` are injectable so tests move time instead of waiting.
    """

    def __init__(self, *, overall: Limit = Limit(29, 1.0), private: Limit = Limit(3, 3.0),
                 group: Limit = Limit(20, 60.0), now: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.overall, self.private, self.group = overall, private, group
        self.now, self.sleep = now, sleep
        self._sent: dict[int | None, deque[float]] = defaultdict(deque)
        self._paused_until: dict[int, float] = {}
        self._acquired = 0

    def _limit_for(self, chat_id: int) -> Limit:
        # Telegram gives users positive ids and groups negative ones.
        return self.private if chat_id > 0 else self.group

    def _wait(self, key: int | None, limit: Limit, now: float) -> float:
        sent = self._sent[key]
        while sent and sent[0] <= now - limit.period:
            sent.popleft()
        return 0.0 if len(sent) < limit.count else sent[0] + limit.period - now

    def delay(self, chat_id: int) -> float:
        """How long a message to ``chat_id`` would have to wait now."""
        now = self.now()
        return max(self._wait(None, self.overall, now),
                   self._wait(chat_id, self._limit_for(chat_id), now),
                   self._paused_until.get(chat_id, 0.0) - now)

    async def acquire(self, chat_id: int) -> None:
        """Wait until a message to ``chat_id`` may go, and count it."""
        while (wait := self.delay(chat_id)) > 0:
            await self.sleep(wait)
        now = self.now()
        self._sent[None].append(now)
        self._sent[chat_id].append(now)
        self._acquired += 1
        if self._acquired % 1000 == 0:
            self._forget_quiet_chats(now)

    def pause(self, chat_id: int, seconds: float) -> None:
        """Hold every message to ``chat_id`` for ``seconds`` (Telegram's retry_after)."""
        until = self.now() + seconds
        self._paused_until[chat_id] = max(self._paused_until.get(chat_id, 0.0), until)

    def _forget_quiet_chats(self, now: float) -> None:
        longest = max(self.private.period, self.group.period)
        for key in [k for k, sent in self._sent.items()
                    if k is not None and (not sent or sent[-1] <= now - longest)]:
            del self._sent[key]
        for key in [k for k, until in self._paused_until.items() if until <= now]:
            del self._paused_until[key]


def _retry_seconds(error: RetryAfter) -> float:
    with warnings.catch_warnings():
        # PTB 22 warns that retry_after will become a timedelta; both are handled here.
        warnings.simplefilter("ignore")
        value = error.retry_after
    return value.total_seconds() if hasattr(value, "total_seconds") else float(value)


def _forbidden_reason(error: Forbidden) -> str:
    text = error.message.lower()
    for words, reason in (("blocked", "blocked"), ("deactivated", "deactivated"),
                          ("kicked", "kicked"), ("initiate", "never_started")):
        if words in text:
            return reason
    return "forbidden"


# --- sending ----------------------------------------------------------------------------------

T = TypeVar("T")


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

    def __init__(self, bot: Bot, database: Database, clock: Clock, *, staff_chat_id: int = 0,
                 limiter: RateLimiter | None = None, max_retries: int = 5) -> None:
        self.bot = bot
        self.database = database
        self.clock = clock
        self.limiter = limiter or RateLimiter()
        self.max_retries = max_retries
        self.configured_staff_chat = staff_chat_id
        self._staff_chat: int | None = None
        self._batches: dict[int, _Batch] = {}

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
        for reply in replies:
            if group and not reply.choices and reply.attachment is None and reply.text.strip():
                await self._send_batched(target, reply.text)
            else:
                await self.send_reply(target, reply)

    async def send_reply(self, chat_id: int, reply: Reply) -> list[Message]:
        """Send one reply as new message(s); its keyboard goes on the last one."""
        markup = keyboard(reply)
        pieces = [p for p in split_text(reply.text) if p.strip()]
        sent: list[Message] = []
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1 and reply.attachment is None
            sent.append(await self.call(chat_id, lambda chat, piece=piece, last=last:
                                        self.bot.send_message(
                                            chat, piece, reply_markup=markup if last else None)))
        if reply.attachment is not None:
            sent.append(await self._send_document(chat_id, reply, markup))
        if not sent:
            log.warning("an empty reply to chat %s was not sent", chat_id)
        return sent

    async def _send_document(self, chat_id: int, reply: Reply,
                             markup: InlineKeyboardMarkup | None) -> Message:
        attachment = reply.attachment
        assert attachment is not None
        caption = attachment.caption
        if _units(caption) > CAPTION_LIMIT:
            caption = caption[:_fit(caption, CAPTION_LIMIT - 1)] + "…"

        def upload(chat: int) -> Awaitable[Message]:
            # A fresh InputFile per try: a retried upload must send the whole file again.
            document = InputFile(attachment.content, filename=attachment.filename)
            document.mimetype = attachment.mime
            return self.bot.send_document(chat, document, caption=caption or None,
                                          reply_markup=markup)

        return await self.call(chat_id, upload)

    async def edit_reply(self, chat_id: int, message_id: int, reply: Reply) -> bool:
        """Show ``reply`` in place of the menu message ``message_id``.

        Returns:
            False when the message cannot be edited (too old, gone, or the reply is a
            document): the caller sends the reply as a new message instead.
        """
        if reply.attachment is not None or not reply.text.strip():
            # A document cannot replace text: retire the old keyboard, send the reply anew.
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
        """Run one Bot API call to ``chat_id`` within the limits, waiting out 429s.

        Raises:
            Unreachable: 403 (recorded for a user) or "chat not found".
            TryLater: still 429 after ``max_retries`` waits, or a network failure.
        """
        retries = 0
        while True:
            await self.limiter.acquire(chat_id)
            try:
                return await make(chat_id)
            except RetryAfter as error:
                seconds = _retry_seconds(error)
                self.limiter.pause(chat_id, seconds)
                retries += 1
                if retries > self.max_retries:
                    raise TryLater("Telegram flood control", seconds) from None
                log.info("Telegram asked to wait %.0f s before writing to chat %s",
                         seconds, chat_id)
            except ChatMigrated as error:
                await self.follow_migration(chat_id, error.new_chat_id)
                chat_id = error.new_chat_id
            except Forbidden as error:
                reason = _forbidden_reason(error)
                if chat_id > 0:
                    await self._mark_unreachable(chat_id, reason)
                else:
                    log.error("the bot cannot write to group %s (%s): add it to the group "
                              "again", chat_id, reason)
                raise Unreachable(reason) from None
            except BadRequest as error:
                if "chat not found" in error.message.lower():
                    raise Unreachable("chat_not_found") from None
                raise
            except NetworkError as error:
                raise TryLater(f"network: {type(error).__name__}") from None

    async def _mark_unreachable(self, user_id: int, reason: str) -> None:
        async with self.database.session() as session:
            newly = await reach.mark_unreachable(session, CHANNEL, str(user_id), reason,
                                                 self.clock.now())
        if newly:
            log.info("telegram user %s is unreachable (%s): no more messages to them",
                     user_id, reason)

    async def _send_batched(self, chat_id: int, text: str) -> None:
        batch = self._batches.get(chat_id)
        if (batch is not None and len(batch.texts) < self.max_batch
                and _units(self.batch_separator.join([*batch.texts, text])) <= TEXT_LIMIT):
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


# --- the channel ------------------------------------------------------------------------------


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


class _RedactToken(logging.Filter):
    """httpx logs every request URL, and Bot API URLs contain the token."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if self.token:
            message = record.getMessage()
            if self.token in message:
                record.msg, record.args = message.replace(self.token, "<token>"), ()
        return True


def _log_failure(update_id: int, error: BaseException) -> None:
    # The exception's message may quote SQL parameters or user input: only its type and
    # where it happened are logged.
    frames = "".join(traceback.format_tb(error.__traceback__))
    log.error("telegram update %s: handling failed with %s\n%s", update_id,
              type(error).__name__, frames.rstrip())


class TelegramChannel:
    """Everything Telegram in one process: receiving (polling or webhook) and replying."""

    def __init__(self, settings: Settings, database: Database, clock: Clock,
                 assistant: Conversation, bot: Bot, sender: TelegramSender, *,
                 poll_timeout: int = 25, concurrency: int = 16) -> None:
        self.settings = settings
        self.database = database
        self.clock = clock
        self.assistant = assistant
        self.bot = bot
        self.sender = sender
        self.poll_timeout = poll_timeout
        self._slots = asyncio.Semaphore(concurrency)
        self._turns = _ChatTurns()
        self._redact = _RedactToken(settings.telegram.token)
        self._started = False
        self.bot_id = 0
        self.bot_username = ""

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
        access = self.settings.access
        scopes: list[tuple[BotCommandScope, Sequence[CommandSpec]]] = [
            (BotCommandScopeAllPrivateChats(), CITIZEN_COMMANDS)]
        staff_chat = await self.sender.staff_chat()
        if staff_chat:
            scopes.append((BotCommandScopeChat(staff_chat), STAFF_COMMANDS))
        staff = set(_telegram_ids(access.staff)) | set(_telegram_ids(access.supervisors))
        managers = set(_telegram_ids(access.managers))
        for user in sorted(staff | managers):
            specs = list(CITIZEN_COMMANDS)
            if user in staff:
                specs += STAFF_COMMANDS
            if user in managers:
                specs += MANAGER_COMMANDS
            scopes.append((BotCommandScopeChat(user), _unique(specs)))
        for scope, specs in scopes:
            await self._set_commands(scope, specs)

    async def _set_commands(self, scope: BotCommandScope, specs: Sequence[CommandSpec]) -> None:
        default = self.settings.general.locale
        for language, locale in ((None, default), ("zh", "zh-CN"), ("en", "en")):
            commands = [BotCommand(s.name, s.describe(locale)) for s in specs]
            try:
                await self.bot.set_my_commands(commands, scope=scope, language_code=language)
            except BadRequest as error:
                # A manager who never opened a chat with the bot: their menu comes later.
                log.warning("commands for %s not registered: %s", scope.type, error.message)
                return

    # receiving

    async def process(self, update: Update) -> None:
        """Handle one update completely: converse and send the answer.

        Raises:
            NotProcessed: a passing failure (database unavailable); deliver it again later.
        """
        try:
            parsed = parse_update(update, bot_username=self.bot_username, bot_id=self.bot_id)
        except (AttributeError, TypeError, ValueError) as error:
            _log_failure(update.update_id, error)
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
        """``process`` for an update as Telegram sends it (webhook body, getUpdates item)."""
        update = Update.de_json(data, self.bot)
        await self.process(update)

    async def _guard(self, update: Update, work: Awaitable[None]) -> None:
        try:
            await work
        except TRANSIENT_ERRORS as error:
            raise NotProcessed(type(error).__name__) from error

    async def _move(self, move: ChatMove) -> None:
        if await self.sender.follow_migration(move.old, move.new):
            await self._set_commands(BotCommandScopeChat(move.new), STAFF_COMMANDS)

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
                log.info("telegram update %s already processed", update.update_id)
                replies: list[Reply] = []
            else:
                replies = await self.assistant.handle(incoming)
        except TRANSIENT_ERRORS as error:
            log.warning("telegram update %s not processed now (%s); it will come again",
                        update.update_id, type(error).__name__)
            raise NotProcessed(type(error).__name__) from error
        except Exception as error:
            _log_failure(update.update_id, error)
            replies = [Reply(apology(await self._locale_of(incoming)))]
        if query is not None:
            await self.sender.answer(query)
        await self._render(update, incoming, replies)

    async def _already_processed(self, incoming: Incoming) -> bool:
        if not incoming.message_id:
            return False
        async with self.database.read() as session:
            return await conversations.was_processed(session, CHANNEL, incoming.message_id)

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
        chat_id = int(incoming.chat_id)
        query = update.callback_query
        menu = query.message if query is not None else None
        edited = False
        try:
            for reply in replies:
                if reply.edit and menu is not None and not edited:
                    edited = await self.sender.edit_reply(chat_id, menu.message_id, reply)
                    if edited:
                        continue
                await self.sender.send_reply(chat_id, reply)
            if menu is not None and not edited and any(r.choices for r in replies):
                # The answer brought a new menu, which makes the pressed one stale: take its
                # buttons away so the chat does not fill with dead keyboards.
                await self.sender.retire_keyboard(chat_id, menu.message_id)
        except Unreachable:
            pass  # recorded by the sender; nobody to tell
        except (TryLater, TelegramError) as error:
            log.warning("telegram update %s: answer not fully sent (%s)", update.update_id,
                        type(error).__name__)
        except Exception as error:  # a reply we cannot render is a bug: log it, keep running
            _log_failure(update.update_id, error)

    # polling

    async def run_polling(self, stop: asyncio.Event) -> None:
        """Fetch and process updates until ``stop`` is set; ack each batch once processed.

        Raises:
            PollingConflict: another process polls with this token.
        """
        if not self._started:
            raise RuntimeError("TelegramChannel.start() first")
        # A webhook left over from webhook mode would make every getUpdates fail.
        await self.bot.delete_webhook(drop_pending_updates=False)
        offset: int | None = None
        failures = 0
        while not stop.is_set():
            updates = await self._fetch(offset, stop)
            if updates is None:
                break
            if isinstance(updates, Exception):
                failures += 1
                await _wait_or_stop(stop, min(60.0, 2.0 ** failures))
                continue
            failures = 0
            if not updates:
                continue
            if await self._process_batch(updates):
                # Not acked: getUpdates returns the batch again; what was done is not redone.
                failures += 1
                await _wait_or_stop(stop, min(60.0, 2.0 ** failures))
                continue
            offset = updates[-1].update_id + 1
        if offset is not None:
            with contextlib.suppress(TelegramError):
                # getUpdates with a newer offset is how Telegram learns what we have done.
                await self.bot.get_updates(offset=offset, timeout=0, limit=1,
                                           allowed_updates=ALLOWED_UPDATES)
        log.info("telegram polling stopped")

    async def _fetch(self, offset: int | None,
                     stop: asyncio.Event) -> Sequence[Update] | Exception | None:
        """The next updates, an error to back off from, or None when stopping."""
        fetch = asyncio.ensure_future(self.bot.get_updates(
            offset=offset, timeout=self.poll_timeout, allowed_updates=ALLOWED_UPDATES))
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not fetch.done():
            # Nothing fetched is lost: unacknowledged updates come again on the next start.
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError, TelegramError):
                await fetch
            return None
        try:
            return fetch.result()
        except Conflict:
            message = ("another process is already polling Telegram with this bot token "
                       "(409 Conflict): Telegram allows one poller. Stop the other `yuyue "
                       "run`, or use telegram.mode = \"webhook\" to run several processes.")
            log.error(message)
            raise PollingConflict(message) from None
        except NetworkError as error:
            log.warning("getUpdates failed (%s); trying again", type(error).__name__)
            return error

    async def _process_batch(self, updates: Sequence[Update]) -> bool:
        """Process a batch, chats in parallel, each chat in order; True if any must come again."""
        by_chat: dict[str, list[Update]] = defaultdict(list)
        for update in updates:
            chat = update.effective_chat
            by_chat[str(chat.id) if chat else f"u{update.update_id}"].append(update)

        async def one_chat(chat_updates: list[Update]) -> bool:
            for update in chat_updates:
                try:
                    await self.process(update)
                except NotProcessed:
                    return True
                except Exception as error:
                    # A bug on one update must not stop the bot or block the queue behind it.
                    _log_failure(update.update_id, error)
            return False

        results = await asyncio.gather(*(one_chat(u) for u in by_chat.values()))
        return any(results)

    # webhook

    def webhook_routes(self) -> list[Route]:
        """The route Telegram posts updates to (the path of ``telegram.webhook_url``)."""
        return [Route(webhook_path(self.settings.telegram.webhook_url), self._webhook,
                      methods=["POST"])]

    async def set_webhook(self) -> None:
        """Tell Telegram where to post updates, with the secret token it must send back."""
        telegram = self.settings.telegram
        await self.bot.set_webhook(telegram.webhook_url, secret_token=telegram.secret_token,
                                   allowed_updates=ALLOWED_UPDATES, max_connections=40)
        log.info("telegram webhook set")

    async def _webhook(self, request: Request) -> Response:
        """Process one update posted by Telegram; answer only once it has been processed."""
        expected = self.settings.telegram.secret_token.encode()
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not expected or not hmac.compare_digest(given, expected):
            log.warning("telegram webhook: request without the right secret token refused")
            return PlainTextResponse("forbidden", status_code=403)
        if not self._started:
            return PlainTextResponse("starting", status_code=503)
        try:
            data = await request.json()
            update = Update.de_json(data, self.bot)
        except (ValueError, KeyError, TypeError, AttributeError):
            return PlainTextResponse("bad update", status_code=400)
        try:
            await self.process(update)
        except NotProcessed:
            # Telegram posts it again later; nothing was done with it this time.
            return PlainTextResponse("try again", status_code=503)
        return PlainTextResponse("ok")


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _telegram_ids(entries: Iterable[str]) -> list[int]:
    ids = []
    for entry in entries:
        channel, _, user = entry.partition(":")
        if channel == CHANNEL and user.lstrip("-").isdecimal():
            ids.append(int(user))
    return ids


def _unique(specs: Iterable[CommandSpec]) -> list[CommandSpec]:
    seen: dict[str, CommandSpec] = {}
    for spec in specs:
        seen.setdefault(spec.name, spec)
    return list(seen.values())


def check_settings(telegram: TelegramSettings) -> None:
    """Refuse settings that cannot work, with a message saying what to set.

    Raises:
        TelegramConfigError: no token; webhook mode without a URL or a valid secret token.
    """
    if not telegram.token:
        raise TelegramConfigError("telegram.token is empty: set YUYUE_TELEGRAM__TOKEN")
    if telegram.mode == "webhook":
        if not telegram.webhook_url:
            raise TelegramConfigError("telegram.mode is \"webhook\" but telegram.webhook_url "
                                      "is empty")
        if not _SECRET_SHAPE.match(telegram.secret_token):
            raise TelegramConfigError(
                "telegram.secret_token must be set in webhook mode: 1-256 characters of "
                "A-Z, a-z, 0-9, _ and - (set YUYUE_TELEGRAM__SECRET_TOKEN)")


def build_bot(telegram: TelegramSettings, *, poll_timeout: int = 25) -> Bot:
    """A Bot for the configured (or self-hosted) Bot API server."""
    # Opt in to PTB's coming timedelta durations now: otherwise every 429 it parses emits a
    # deprecation warning (and fails tests that treat warnings as errors).
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    urls = {}
    if telegram.base_url:
        urls["base_url"] = telegram.base_url
    if telegram.base_file_url:
        urls["base_file_url"] = telegram.base_file_url
    return Bot(telegram.token,
               request=HTTPXRequest(connection_pool_size=64, read_timeout=20.0,
                                    write_timeout=20.0, connect_timeout=10.0, pool_timeout=30.0),
               get_updates_request=HTTPXRequest(connection_pool_size=2,
                                                read_timeout=poll_timeout + 10.0),
               **urls)


def build_telegram(app: Any, assistant: Conversation, *, limiter: RateLimiter | None = None,
                   bot: Bot | None = None) -> TelegramChannel:
    """The Telegram channel for ``app`` (a bot.wiring.App) talking to ``assistant``."""
    settings: Settings = app.settings
    bot = bot or build_bot(settings.telegram)
    sender = TelegramSender(bot, app.database, app.clock,
                            staff_chat_id=settings.telegram.staff_chat_id, limiter=limiter)
    return TelegramChannel(settings, app.database, app.clock, assistant, bot, sender)
