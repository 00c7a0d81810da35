"""Outgoing messages kept inside Telegram's limits, waiting (never dropping) when needed.

``RateLimiter`` is a python-telegram-bot ``BaseRateLimiter``: ``build_bot`` gives it to the
``ExtBot``, and every Bot API call passes through ``process_request`` (getUpdates excepted, by
the library). PTB's own ``AIORateLimiter`` limits overall and per group only and, on a 429,
halts every chat; ours also limits each private chat and holds only the chat Telegram named.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
import warnings
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

log = logging.getLogger("yuyue.telegram")

JSONResult = bool | dict[str, Any] | list[dict[str, Any]]

# Set (to the longest wait allowed) while a chat's answer is sent: a call that would wait
# longer, or that Telegram asks to wait longer, raises Throttled instead of waiting.
_max_wait: contextvars.ContextVar[float | None] = contextvars.ContextVar("max_wait", default=None)


class Throttled(Exception):
    """A call that would have to wait ``seconds`` (more than allowed): it was not made."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"would wait {seconds:.1f} s")
        self.seconds = seconds


@contextlib.contextmanager
def at_most_waiting(seconds: float) -> Iterator[None]:
    """Within this block (this task and what it awaits), a call to a chat waits at most
    ``seconds`` for the limits or a 429; one that would wait longer raises ``Throttled``
    (``RetryAfter`` is not retried past it either)."""
    token = _max_wait.set(seconds)
    try:
        yield
    finally:
        _max_wait.reset(token)


@dataclass(frozen=True)
class Limit:
    """At most ``count`` messages in any ``period`` seconds."""

    count: int
    period: float


class RateLimiter(BaseRateLimiter[int]):
    """Keeps messages to chats inside Telegram's limits, waiting (never dropping) when needed.

    Defaults: 30 messages per second overall, as Telegram counts them: any one second holds
    at most 30 arrivals. A message is counted from when it is allowed to go and, once Telegram
    has answered, from that answer instead: it arrived before it was answered, so a message
    waits a full second after the answer to the one 30 before it and no reordering on the way
    can put 31 arrivals in one second (the margin is one round trip). The messages are also
    spread evenly, one every 1/30 s at most: a second's 30 let go at once would queue behind
    each other on the way (and in this process), and each answer, so the next second, would come
    later by that queue; one at a time, the margin stays one message's round trip (a turn
    taken late is made up by the next ones, so lateness does not add up). A private
    chat averages 1 per second with
    bursts of 3 (an answer is often two or three messages, which Telegram tolerates); a group
    20 per minute. A 429 (``RetryAfter``) holds that chat for the time Telegram asked and the
    call is made again, up to ``max_retries`` times (``rate_limit_args`` of a Bot call may give
    another number); then the ``RetryAfter`` is raised. Calls without a chat (getMe,
    setMyCommands, answerCallbackQuery) are not messages and go straight through.
    ``now`` and ``sleep`` are injectable so tests move time instead of waiting.
    """

    def __init__(self, *, overall: Limit = Limit(30, 1.0), private: Limit = Limit(3, 3.0),
                 group: Limit = Limit(20, 60.0), max_retries: int = 5,
                 now: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.overall, self.private, self.group = overall, private, group
        self.max_retries = max_retries
        self.now, self.sleep = now, sleep
        # Per chat (None: overall) the messages of the window, oldest first: each a one-item
        # list holding when it counts from, shared by the overall and the chat's window.
        self._sent: dict[int | None, deque[list[float]]] = defaultdict(deque)
        self._paused_until: dict[int, float] = {}
        self._next = 0.0            # the earliest the next message may go (even spacing)
        self._turn = asyncio.Lock()
        self._acquired = 0

    async def initialize(self) -> None:
        """Nothing to set up: the counts live in this object."""

    async def shutdown(self) -> None:
        """Nothing to release."""

    async def process_request(self, callback: Callable[..., Coroutine[Any, Any, JSONResult]],
                              args: Any, kwargs: dict[str, Any], endpoint: str,
                              data: dict[str, Any], rate_limit_args: int | None) -> JSONResult:
        """Make one Bot API call when its chat's limits allow, waiting out 429s.

        Raises:
            RetryAfter: Telegram still said "too many requests" after the last retry.
        """
        chat_id = _chat_of(data)
        if chat_id is None:
            return await callback(*args, **kwargs)
        retries = self.max_retries if rate_limit_args is None else rate_limit_args
        max_wait = _max_wait.get()
        attempt = 0
        while True:
            if max_wait is not None and (wait := self.delay(chat_id)) > max_wait:
                raise Throttled(wait)
            stamp = await self.acquire(chat_id)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as error:
                seconds = retry_seconds(error)
                self.pause(chat_id, seconds)
                attempt += 1
                if attempt > retries:
                    raise
                if max_wait is not None and seconds > max_wait:
                    raise Throttled(seconds) from None
                log.info("Telegram asked to wait %.0f s before %s to chat %s", seconds,
                         endpoint, chat_id)
            finally:
                stamp[0] = max(stamp[0], self.now())   # answered: it arrived before now

    def _limit_for(self, chat_id: int) -> Limit:
        # Telegram gives users positive ids and groups negative ones.
        return self.private if chat_id > 0 else self.group

    def _wait(self, key: int | None, limit: Limit, now: float) -> float:
        sent = self._sent[key]
        while sent and sent[0][0] <= now - limit.period:
            sent.popleft()
        return 0.0 if len(sent) < limit.count else sent[0][0] + limit.period - now

    def delay(self, chat_id: int) -> float:
        """How long a message to ``chat_id`` would have to wait now."""
        now = self.now()
        return max(self._wait(None, self.overall, now), self._next - now,
                   self._own_delay(chat_id, now))

    def _own_delay(self, chat_id: int, now: float) -> float:
        """The wait for the chat's own limit and pause."""
        return max(self._wait(chat_id, self._limit_for(chat_id), now),
                   self._paused_until.get(chat_id, 0.0) - now)

    async def acquire(self, chat_id: int) -> list[float]:
        """Wait until a message to ``chat_id`` may go, and count it from now.

        Returns:
            Its stamp in the windows (a one-item list): ``process_request`` moves it to the
            time of Telegram's answer.
        """
        while True:
            while (wait := self._own_delay(chat_id, self.now())) > 0:
                await self.sleep(wait)
            # The overall limit is waited for by one message at a time, in the order they
            # came: the others wait their turn instead of all waking at every message.
            async with self._turn:
                while (wait := self.delay(chat_id)) > 0 \
                        and self._own_delay(chat_id, self.now()) <= 0:
                    await self.sleep(wait)
                if self._own_delay(chat_id, self.now()) <= 0:   # else its chat was paused
                    return self._count(chat_id)

    def _count(self, chat_id: int) -> list[float]:
        now = self.now()
        stamp = [now]
        # One interval after the last one's turn, not after it actually went: a wake-up that
        # came late is made up (by at most a tenth of the period) instead of adding up.
        interval = self.overall.period / self.overall.count
        self._next = max(self._next, now - self.overall.period / 10) + interval
        self._sent[None].append(stamp)
        self._sent[chat_id].append(stamp)
        self._acquired += 1
        if self._acquired % 1000 == 0:
            self._forget_quiet_chats(now)
        return stamp

    def pause(self, chat_id: int, seconds: float) -> None:
        """Hold every message to ``chat_id`` for ``seconds`` (Telegram's retry_after)."""
        until = self.now() + seconds
        self._paused_until[chat_id] = max(self._paused_until.get(chat_id, 0.0), until)

    def _forget_quiet_chats(self, now: float) -> None:
        longest = max(self.private.period, self.group.period)
        for key in [k for k, sent in self._sent.items()
                    if k is not None and (not sent or sent[-1][0] <= now - longest)]:
            del self._sent[key]
        for key in [k for k, until in self._paused_until.items() if until <= now]:
            del self._paused_until[key]


def _chat_of(data: dict[str, Any]) -> int | None:
    """The numeric chat a call writes to, if it names one."""
    with contextlib.suppress(TypeError, ValueError):
        return int(data["chat_id"]) if "chat_id" in data else None
    return None  # "@channelname": not a chat of ours


def retry_seconds(error: RetryAfter) -> float:
    """How long Telegram asked to wait, in seconds."""
    with warnings.catch_warnings():
        # PTB 22 warns that retry_after will become a timedelta; both are handled here.
        warnings.simplefilter("ignore")
        value = error.retry_after
    return value.total_seconds() if hasattr(value, "total_seconds") else float(value)
