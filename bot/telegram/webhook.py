"""Webhook mode (``telegram.mode = "webhook"``): Telegram posts each update to our web server.

Any number of processes can answer behind a load balancer. A request must carry the secret
token given to setWebhook; the answer comes only once the update has been processed, so an
update that could not be processed now (503) is posted again by Telegram.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from telegram import Bot, Update

from bot.telegram.failures import NotProcessed
from bot.telegram.parse import ALLOWED_UPDATES
from storage.settings import TelegramSettings

log = logging.getLogger("yuyue.telegram")

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def webhook_path(webhook_url: str) -> str:
    """The path this server answers Telegram on: the path of ``telegram.webhook_url``."""
    path = urlsplit(webhook_url).path if webhook_url else ""
    return path if path and path != "/" else "/telegram"


class TelegramWebhook:
    """The route Telegram posts to, and the setWebhook call that tells it where that is."""

    def __init__(self, settings: TelegramSettings, bot: Bot,
                 process: Callable[[Update], Awaitable[None]],
                 ready: Callable[[], bool]) -> None:
        self.settings = settings
        self.bot = bot
        self.process = process
        self.ready = ready

    def routes(self) -> list[Route]:
        """The route Telegram posts updates to (the path of ``telegram.webhook_url``)."""
        return [Route(webhook_path(self.settings.webhook_url), self.receive, methods=["POST"])]

    async def set_webhook(self) -> None:
        """Tell Telegram where to post updates, with the secret token it must send back."""
        await self.bot.set_webhook(self.settings.webhook_url,
                                   secret_token=self.settings.secret_token,
                                   allowed_updates=ALLOWED_UPDATES, max_connections=40)
        log.info("telegram webhook set")

    async def receive(self, request: Request) -> Response:
        """Process one update posted by Telegram; answer only once it has been processed."""
        expected = self.settings.secret_token.encode()
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not expected or not hmac.compare_digest(given, expected):
            log.warning("telegram webhook: request without the right secret token refused")
            return PlainTextResponse("forbidden", status_code=403)
        if not self.ready():
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
