"""Webhook mode (``telegram.mode = "webhook"``): Telegram posts each update to our web server.

Any number of processes can answer behind a load balancer. A request must carry the secret
token given to setWebhook; the answer comes only once the update has been processed, so an
update that could not be processed now (503) is posted again by Telegram.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from telegram import Bot, Update

from bot.telegram.failures import NotProcessed, QuietLog, log_failure
from bot.telegram.parse import ALLOWED_UPDATES
from bot.telegram.shape import MAX_BODY, BadUpdate, clean_update, update_id_of
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
        self.quiet = QuietLog(log)     # refusals: at most one line a minute per reason

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
        """Process one update posted by Telegram; answer only once it has been processed.

        A body that can never be processed is not worth Telegram's retries: too large, 413;
        not JSON, 400; JSON that is not an update of the documented shape, 200 and dropped
        (logged with its update id and what is wrong, never its content).
        """
        expected = self.settings.secret_token.encode()
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not expected or not hmac.compare_digest(given, expected):
            self.quiet.log(logging.WARNING, "secret",
                      "telegram webhook: request without the right secret token refused")
            return PlainTextResponse("forbidden", status_code=403)
        if not self.ready():
            return PlainTextResponse("starting", status_code=503)
        body = await _read_body(request)
        if body is None:
            self.quiet.log(logging.WARNING, "too-large",
                      "telegram webhook: a body over %d bytes refused", MAX_BODY)
            return PlainTextResponse("too large", status_code=413)
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            # RecursionError: '[' nested a hundred thousand times; ValueError includes bad
            # UTF-8 and integers of more digits than Python converts.
            self.quiet.log(logging.WARNING, "not-json", "telegram webhook: a body that is not JSON "
                      "refused")
            return PlainTextResponse("bad update", status_code=400)
        try:
            clean = clean_update(data)
            update = Update.de_json(clean, self.bot) if clean is not None else None
        except BadUpdate as bad:
            self.quiet.log(logging.WARNING, f"shape:{bad.reason}", "telegram webhook: update %s "
                      "dropped: %s", update_id_of(data), bad.reason)
            return PlainTextResponse("dropped")
        except Exception as error:  # what the shape check let through and PTB refused
            self.quiet.log(logging.WARNING, f"ptb:{type(error).__name__}", "telegram webhook: "
                      "update %s dropped: %s", update_id_of(data), type(error).__name__)
            return PlainTextResponse("dropped")
        if update is None:
            return PlainTextResponse("ok")    # an update kind Yuyue does not read
        try:
            await self.process(update)
        except NotProcessed:
            # Telegram posts it again later; nothing was done with it this time.
            return PlainTextResponse("try again", status_code=503)
        except Exception as error:
            # A bug: the same update would fail the same way on every redelivery.
            log_failure(update.update_id, error)
            return PlainTextResponse("dropped")
        return PlainTextResponse("ok")


async def _read_body(request: Request) -> bytes | None:
    """The request body, or None when it is over ``MAX_BODY`` (refused from Content-Length
    before reading, or as soon as the bytes read pass it)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > MAX_BODY:
                return None
        except ValueError:
            return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return bytes(body)
