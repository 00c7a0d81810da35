"""The WeCom (企业微信) group robot: an optional, notify-only extra sink for staff alerts.

A group robot has a webhook URL (with its key) that accepts ``{"msgtype": "text", ...}`` or
``{"msgtype": "markdown", ...}`` posts; it cannot receive anything, so staff act on alerts in
the WeCom app (``bot.wecom.channel``) or the Telegram staff group and the robot only tells.
WeCom allows a robot 20 messages a minute: the sender waits rather than be refused, and treats
errcode 45009 (over the limit) as "try later".

Wiring (``yuyue run``, when ``wecom.robot_webhook`` is set)::

    sender = build_wecom_sender(app)          # a bot.channels.Sender for the staff target
    Dispatcher(..., staff_senders=[telegram.sender, sender])

What citizens write during a hand-off (outbox kind "handoff_message") is not sent here: it is
a conversation for whoever owns the hand-off, who can answer only where the bot can listen.
The webhook URL contains the robot's key, so it is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from bot.channels import TryLater, Unreachable
from handlers.core import Reply

log = logging.getLogger("yuyue.wecom.robot")

CHANNEL = "wecom_robot"     # a staff sink only: never a channel citizens or staff write on
PER_MINUTE = 20
TEXT_LIMIT = 2048            # bytes of UTF-8 in a text message
MARKDOWN_LIMIT = 4096        # bytes of UTF-8 in a markdown message
RATE_LIMITED = 45009         # "api freq out of limit"
# The webhook key is wrong or the robot was removed: no retry will help.
GONE = {93000: "invalid webhook url", 93004: "robot removed", 93008: "robot not in group"}
SKIPPED_KINDS = frozenset({"handoff_message"})


def cut_utf8(text: str, limit: int) -> list[str]:
    """Pieces of ``text`` of at most ``limit`` UTF-8 bytes, cut at line ends where possible."""
    pieces: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(line.encode()) > limit:
            size = limit
            while len(line[:size].encode()) > limit:
                size -= 1
            head, line = line[:size], line[size:]
            if current:
                pieces.append(current)
                current = ""
            pieces.append(head)
        if len((current + line).encode()) > limit:
            pieces.append(current)
            current = ""
        current += line
    if current.strip():
        pieces.append(current)
    return [p.rstrip("\n") for p in pieces if p.strip()]


def render(replies: list[Reply]) -> str:
    """Replies as robot text: buttons cannot be pressed here, so their labels are listed as
    what can be done in the staff group."""
    parts = []
    for reply in replies:
        text = reply.text.strip()
        labels = [choice.label for choice in reply.flat_choices]
        if labels:
            text += "\n(" + " / ".join(labels) + ")"
        if text:
            parts.append(text)
    return "\n\n".join(parts)


class WecomRobotSender:
    """Posts staff alerts to a WeCom group robot (a ``bot.channels.Sender``)."""

    channel = CHANNEL

    def __init__(self, webhook_url: str, *, http: httpx.AsyncClient | None = None,
                 msgtype: str = "text", per_minute: int = PER_MINUTE,
                 now: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 skipped_kinds: frozenset[str] = SKIPPED_KINDS) -> None:
        if msgtype not in ("text", "markdown"):
            raise ValueError('msgtype is "text" or "markdown"')
        self.webhook_url = webhook_url
        self.http = http or httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
        self.msgtype = msgtype
        self.per_minute = per_minute
        self.now, self.sleep = now, sleep
        self.skipped_kinds = skipped_kinds
        self._sent: deque[float] = deque()
        self._turn = asyncio.Lock()

    async def deliver(self, chat_id: str, replies: list[Reply], *, kind: str = "message",
                      fields: Mapping[str, str] | None = None) -> None:
        """Post ``replies`` to the robot's group (``chat_id`` is ignored: a robot has one group;
        ``fields`` are for template messages and are ignored too).

        Raises:
            Unreachable: the webhook key is invalid or the robot was removed.
            TryLater: WeCom is over its limit, busy, or the network failed.
        """
        if kind in self.skipped_kinds:
            return
        text = render(replies)
        limit = TEXT_LIMIT if self.msgtype == "text" else MARKDOWN_LIMIT
        for piece in cut_utf8(text, limit):
            await self._post({"msgtype": self.msgtype, self.msgtype: {"content": piece}})

    async def _wait_turn(self) -> None:
        """Keep inside the robot's 20 messages a minute, waiting instead of being refused."""
        while True:
            now = self.now()
            while self._sent and self._sent[0] <= now - 60.0:
                self._sent.popleft()
            if len(self._sent) < self.per_minute:
                self._sent.append(now)
                return
            await self.sleep(self._sent[0] + 60.0 - now)

    async def _post(self, body: dict[str, Any]) -> None:
        async with self._turn:
            await self._wait_turn()
        try:
            answer = await self.http.post(self.webhook_url, json=body)
        except httpx.HTTPError as error:
            raise TryLater(f"wecom network: {type(error).__name__}") from None
        if answer.status_code >= 500:
            raise TryLater(f"wecom http {answer.status_code}")
        try:
            result = answer.json()
        except ValueError:
            raise TryLater(f"wecom answered http {answer.status_code} without JSON") from None
        errcode = int(result.get("errcode", -1))
        if errcode == 0:
            return
        if errcode == RATE_LIMITED:
            raise TryLater("wecom robot over 20 messages a minute", 60.0)
        if errcode in GONE:
            log.error("the WeCom robot refused alerts (%s %s): check wecom.robot_webhook",
                      errcode, GONE[errcode])
            raise Unreachable(f"wecom robot {errcode}")
        log.warning("the WeCom robot answered errcode %s", errcode)
        raise TryLater(f"wecom errcode {errcode}")

    async def close(self) -> None:
        await self.http.aclose()


def build_wecom_sender(app: Any) -> WecomRobotSender:
    """The robot sender for ``app`` (a bot.wiring.App) from ``wecom.robot_webhook``."""
    return WecomRobotSender(app.settings.wecom.robot_webhook)
