"""The callback WeCom calls (接收消息): verify, decrypt, call the conversation, answer within
WeCom's 5 seconds.

- GET (URL verification when the admin saves 接收消息 in the console): ``msg_signature``
  over ``echostr`` checked, ``echostr`` decrypted and answered in plain text.
- POST: every body is checked (``msg_signature`` over its ``Encrypt``, with a replay window) and
  decrypted with wechatpy's enterprise crypto (the corp id inside must be ours); a bad
  signature is answered 403 with one log line. The answer is an empty 200 as soon as the
  conversation has answered (or at ``wecom.reply_deadline_ms``, the rest following); the
  replies go out through the app's API, once per message however often WeCom retries it.
- A template-card click goes to the conversation as the pressed button's payload; afterwards
  every copy of that card shows who took it ("已由 张三 认领") in place of its buttons.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Protocol

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from wechatpy.enterprise.crypto import PrpCrypto, WeChatCrypto

from bot.channels import TryLater, Unreachable
from bot.tencent import open_signed, read_body
from bot.wechat.inbound import BadRequest, Forbidden, parse_xml
from bot.wecom.directory import Directory
from bot.wecom.inbound import CHANNEL, CardClick, card_click, to_incoming
from bot.wecom.sender import WecomSender
from handlers.core import Incoming, Reply
from handlers.staff.desk import card_label
from storage import conversations
from storage.clock import Clock
from storage.db import Database, is_outage
from storage.settings import WecomSettings

log = logging.getLogger("yuyue.wecom")

MAX_BODY = 64 * 1024


class Conversation(Protocol):
    async def handle(self, incoming: Incoming) -> list[Reply]: ...


class WecomWebhook:
    """GET (URL verification) and POST (messages and events) at ``wecom.path``."""

    def __init__(self, settings: WecomSettings, assistant: Conversation, clock: Clock,
                 database: Database, sender: WecomSender, directory: Directory, *,
                 locale: str) -> None:
        self.settings, self.assistant, self.clock = settings, assistant, clock
        self.database, self.sender, self.directory = database, sender, directory
        self.locale = locale
        self.crypto = WeChatCrypto(settings.token, settings.encoding_aes_key, settings.corp_id)
        self._late: set[asyncio.Task[None]] = set()

    def routes(self) -> list[Route]:
        return [Route(self.settings.path, self.get, methods=["GET"]),
                Route(self.settings.path, self.post, methods=["POST"])]

    async def get(self, request: Request) -> Response:
        """Answer the console's URL check with ``echostr`` decrypted."""
        query = request.query_params
        echo = query.get("echostr", "")
        try:
            plain = self._open(echo, query.get("msg_signature"), query.get("timestamp"),
                               query.get("nonce"))
        except Forbidden:
            return self._forbidden("URL check")
        except BadRequest as exc:
            log.info("wecom URL check: bad request (%s)", exc)
            return PlainTextResponse("bad request", status_code=400)
        return PlainTextResponse(plain)

    async def post(self, request: Request) -> Response:
        """Verify, decrypt and handle one message or event."""
        query = request.query_params
        try:
            outer = parse_xml(await read_body(request, MAX_BODY))
            fields = parse_xml(self._open(outer.get("Encrypt", ""), query.get("msg_signature"),
                                          query.get("timestamp"), query.get("nonce")).encode())
            incoming = to_incoming(fields)
        except Forbidden:
            return self._forbidden("callback")
        except BadRequest as exc:
            log.info("wecom callback: bad request (%s)", exc)
            return PlainTextResponse("bad request", status_code=400)
        if incoming is None:
            return PlainTextResponse("")
        task = asyncio.ensure_future(self._handle(incoming, card_click(fields)))
        try:
            await asyncio.wait_for(asyncio.shield(task), self.settings.reply_deadline_ms / 1000)
        except TimeoutError:
            log.warning("wecom: answer slower than %d ms, it follows",
                        self.settings.reply_deadline_ms)
            self._late.add(task)
            task.add_done_callback(self._late_done)
        except Exception as exc:
            if is_outage(exc):
                # Not handled: WeCom delivers it again.
                return PlainTextResponse("try later", status_code=503)
            log.error("wecom: a message failed: %s", type(exc).__name__)
        return PlainTextResponse("")

    def _forbidden(self, what: str) -> Response:
        log.warning("wecom %s refused: bad signature or stale timestamp", what)
        return PlainTextResponse("forbidden", status_code=403)

    def _open(self, encrypted: str, signature: str | None, timestamp: str | None,
              nonce: str | None) -> str:
        """The plain text of ``encrypted`` once its signature is checked.

        Raises:
            Forbidden: not signed with our Token, or too old.
            BadRequest: nothing encrypted, or not for our corp id.
        """
        if not encrypted:
            raise BadRequest("nothing encrypted")
        return open_signed(PrpCrypto(self.crypto.key), self.settings.corp_id, self.settings.token,
                           encrypted, signature, timestamp, nonce, now=self.clock.now(),
                           window_seconds=self.settings.replay_window_seconds)

    async def _handle(self, incoming: Incoming, click: CardClick | None) -> None:
        # The name may need the directory (and the database): inside the deadline, not before.
        incoming = dataclasses.replace(incoming, user_name=await self.directory.name(incoming.user_id))
        replies = await self.assistant.handle(incoming)
        if incoming.message_id:
            async with self.database.session() as session:
                if not await conversations.first_time(session, CHANNEL, "send",
                                                      incoming.message_id, self.clock.now()):
                    return              # a retry: the answer went out the first time
        try:
            await self.sender.send_replies(incoming.user_id, replies)
            if click is not None and click.response_code:
                async with self.database.read() as session:
                    label = await card_label(session, self.locale, click.key)
                if label:
                    await self.sender.update_card(click, label)
        except (Unreachable, TryLater) as exc:
            # Not lost silently: logged; the staff member can ask again.
            log.warning("wecom: an answer was not sent: %s", exc)

    def _late_done(self, task: asyncio.Task[None]) -> None:
        self._late.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("wecom: a late answer failed: %s", type(task.exception()).__name__)

    async def drain(self) -> None:
        """Wait for answers still being sent (shutdown, tests)."""
        while self._late:
            await asyncio.gather(*list(self._late), return_exceptions=True)
