"""What the rest of bot/ needs from a chat channel to deliver messages outside a conversation
(notifications from the outbox, relays, staff alerts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from handlers.core import Reply


class Unreachable(Exception):
    """The user cannot be reached on this channel (blocked the bot, unsubscribed, outside
    WeChat's customer-service window with no template): record it, do not retry."""


class TryLater(Exception):
    """A temporary failure (rate limit, network, server error): retry, after ``retry_after``
    seconds when the platform said how long."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Sender(Protocol):
    """A channel's outgoing side."""

    channel: str

    async def deliver(self, chat_id: str, replies: list[Reply], *, kind: str = "message",
                      fields: Mapping[str, str] | None = None) -> None:
        """Send ``replies`` to ``chat_id`` in order.

        ``kind`` is the notification kind ("reminder", "relay", "staff_alert"...) and ``fields``
        its values by name (service, when, place, code): a channel with several ways to send
        (WeChat: customer-service or template message) uses them.

        Raises:
            Unreachable: the user cannot be reached; do not retry.
            TryLater: try again later.
        """
        ...


class GiveUp(Exception):
    """A failure no retry will fix and staff must act on (the SMS account has no balance left,
    the signature or template was withdrawn): park the notification and tell staff."""
