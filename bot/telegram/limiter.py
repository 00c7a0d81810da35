"""Outgoing messages kept inside Telegram's limits, waiting (never dropping) when needed."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from telegram.error import RetryAfter


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


def retry_seconds(error: RetryAfter) -> float:
    with warnings.catch_warnings():
        # PTB 22 warns that retry_after will become a timedelta; both are handled here.
        warnings.simplefilter("ignore")
        value = error.retry_after
    return value.total_seconds() if hasattr(value, "total_seconds") else float(value)
