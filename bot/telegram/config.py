"""The Bot API client and the settings it needs: checked before anything starts."""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from telegram.ext import ExtBot
from telegram.request import HTTPXRequest

from bot.telegram.limiter import RateLimiter
from storage.settings import TelegramSettings

# What Telegram accepts as a webhook's secret token.
_SECRET_SHAPE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class TelegramConfigError(ValueError):
    """The [telegram] settings cannot work as they are."""


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


def build_bot(telegram: TelegramSettings, *, limiter: RateLimiter | None = None,
              poll_timeout: int = 25) -> ExtBot[int]:
    """A Bot for the configured (or self-hosted) Bot API server, every call to a chat passing
    through ``limiter`` (python-telegram-bot's rate-limiter hook)."""
    # Opt in to PTB's coming timedelta durations now: otherwise every 429 it parses emits a
    # deprecation warning (and fails tests that treat warnings as errors).
    os.environ.setdefault("PTB_TIMEDELTA", "true")
    urls: dict[str, Any] = {}
    if telegram.base_url:
        urls["base_url"] = telegram.base_url
    if telegram.base_file_url:
        urls["base_file_url"] = telegram.base_file_url
    return ExtBot(telegram.token,
                  request=HTTPXRequest(connection_pool_size=64, read_timeout=20.0,
                                       write_timeout=20.0, connect_timeout=10.0,
                                       pool_timeout=30.0),
                  get_updates_request=HTTPXRequest(connection_pool_size=2,
                                                   read_timeout=poll_timeout + 10.0),
                  rate_limiter=limiter or RateLimiter(), **urls)



class RedactToken(logging.Filter):
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
