"""The webhook WeChat calls: verify, decrypt, call the conversation, answer within 5 seconds.

It follows wechatpy's echo example (check the signature, parse the message, call the core,
render a reply) with what that example leaves out: a constant-time signature check with a
replay window on the timestamp, safe mode (AES) with ``msg_signature`` checked and the reply
encrypted, a body-size limit, and an answer within WeChat's 5 seconds (slower answers, and
what does not fit in the one passive reply, go out as customer-service messages).
wechatpy is used for what it does well: the AES message crypto and the passive reply XML.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from wechatpy.crypto import PrpCrypto, WeChatCrypto
from wechatpy.replies import TextReply

from bot.channels import TryLater, Unreachable
from bot.tencent import open_signed, read_body
from bot.wechat.consent import Consents
from bot.wechat.failures import FailureLog
from bot.wechat.inbound import (
    CHANNEL,
    BadRequest,
    Forbidden,
    parse_xml,
    signature_problem,
    to_incoming,
)
from bot.wechat.render import cdata, render_replies, short_openid
from bot.wechat.sender import OutOfWindow, WechatSender
from handlers.core import Attachment, Incoming, NotAdmitted, Reply
from handlers.i18n import translate
from storage import conversations, replays
from storage.clock import Clock
from storage.db import Database, Session, is_outage
from storage.settings import WechatSettings

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024                # WeChat's messages are a few KB; anything bigger is not WeChat
IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif"}   # what media/upload takes as "image"


class Conversation(Protocol):
    async def handle(self, incoming: Incoming, *,
                     admit: Callable[[Session], Awaitable[None]] | None = None) -> list[Reply]: ...


class WechatWebhook:
    """GET (URL check) and POST (messages) at ``wechat.path``."""

    def __init__(self, settings: WechatSettings, assistant: Conversation, clock: Clock,
                 database: Database, sender: WechatSender | None, *,
                 consents: Consents | None = None) -> None:
        self.settings, self.assistant, self.clock = settings, assistant, clock
        self.database, self.sender = database, sender
        self.consents = consents or Consents(settings, database, clock)
        self.crypto = (WeChatCrypto(settings.token, settings.encoding_aes_key, settings.app_id)
                       if settings.encoding_aes_key else None)
        self._late: set[asyncio.Task[None]] = set()
        self.failures = FailureLog(log, clock)
        self._cleaned: dt.datetime | None = None
        self._outage_since: dt.datetime | None = None
        self._busy_answers = 0
        # Messages worked on at once, at most the connections the pool keeps: in a rush the
        # rest wait here, holding nothing, instead of queueing for a connection (which fails
        # after the pool's 30 s) while the pool's overflow stays for the other work.
        self._in_flight = asyncio.Semaphore(database.pool_size)

    def routes(self) -> list[Route]:
        return [Route(self.settings.path, self.get, methods=["GET"]),
                Route(self.settings.path, self.post, methods=["POST"]),
                Route(self.consents.path, self.consents.page, methods=["GET"])]

    async def get(self, request: Request) -> Response:
        """Answer WeChat's URL check with ``echostr`` (plain even in safe mode)."""
        query = request.query_params
        problem = self._signature_problem(query.get("signature"), query.get("timestamp"),
                                          query.get("nonce"))
        if problem:
            return self._forbidden(f"URL check: {problem}")
        return PlainTextResponse(query.get("echostr", ""))

    async def post(self, request: Request) -> Response:
        """Verify, decrypt, answer one message.

        With an EncodingAESKey set, only safe-mode requests (``encrypt_type=aes`` and a
        ``msg_signature`` over the encrypted body; WeChat's 兼容模式 sends both) are taken. The
        plain ``signature`` covers only the timestamp and nonce, which stand in the URL (and so
        in every proxy's access log), not the body: accepting it alone would let anyone who saw
        one URL post as anyone for the replay window.
        """
        query = request.query_params
        timestamp, nonce = query.get("timestamp"), query.get("nonce")
        problem = self._signature_problem(query.get("signature"), timestamp, nonce)
        if problem:
            return self._forbidden(problem)
        safe = query.get("encrypt_type", "").lower() == "aes"
        if self.crypto is not None and not (safe and query.get("msg_signature")):
            return self._forbidden("not encrypted, but safe mode is on (EncodingAESKey set)")
        try:
            body = await read_body(request, MAX_BODY)
            fields = parse_xml(body)
            if safe:
                fields = parse_xml(self._decrypt(fields, query.get("msg_signature"),
                                                 str(timestamp), str(nonce)).encode("utf-8"))
            incoming = to_incoming(fields)
        except Forbidden as refused:
            return self._forbidden(str(refused) or "bad msg_signature")
        except BadRequest as exc:
            self.failures.warn(f"400 {exc}", f"wechat webhook: bad request refused ({exc})")
            return PlainTextResponse("bad request", status_code=400)
        # The replay check and the conversation together get WeChat's deadline: a slow
        # database means a late answer (as a customer-service message), an unreachable one a
        # "busy" answer; neither an HTTP 500 (WeChat does not deliver a message again after an
        # error, so the citizen would never know to send it again).
        task = asyncio.ensure_future(self._process(query, body, incoming))
        # asyncio.wait, not wait_for: a task that ends just as the deadline passes is answered
        # with its result (wait_for then raised its own TimeoutError, which read as an outage:
        # "busy" for a message that had been handled).
        await asyncio.wait({task}, timeout=self.settings.reply_deadline_ms / 1000)
        if not task.done():
            self._finish_late(task, incoming)
            return PlainTextResponse("success")
        try:
            replies = task.result()
        except _Replayed:
            return self._forbidden("signed query used again with another body (replay)")
        except Exception as exc:
            if not is_outage(exc):
                raise
            self._outage_began(exc)
            if incoming is None:
                return PlainTextResponse("success")
            texts, rest = [busy_text()], None
        else:
            if incoming is None or replies is None:
                return PlainTextResponse("success")
            texts, rest = self._rendered(incoming, replies)
        if not texts:
            return PlainTextResponse("success", background=rest)
        reply = TextReply(source=fields["ToUserName"], target=incoming.user_id,
                          content=cdata(texts[0]), time=int(self.clock.now().timestamp()))
        xml = reply.render()
        if safe and self.crypto is not None:
            stamp = str(int(self.clock.now().timestamp()))
            xml = self.crypto.encrypt_message(xml, str(nonce), stamp)
        return Response(xml, media_type="application/xml", background=rest)

    def _signature_problem(self, signature: str | None, timestamp: str | None,
                           nonce: str | None) -> str | None:
        return signature_problem(self.settings.token, signature, timestamp, nonce,
                                 now=self.clock.now(),
                                 window_seconds=self.settings.replay_window_seconds)

    async def _first_body(self, session: Session, query: Mapping[str, str], body: bytes) -> bool:
        """Whether this signed query comes with the body it first came with (a true retry
        does); old records are deleted once per window."""
        now = self.clock.now()
        window = dt.timedelta(seconds=self.settings.replay_window_seconds)
        signed = "\0".join(query.get(name, "").strip().lower()
                            for name in ("timestamp", "nonce", "signature", "msg_signature"))
        # A timestamp may be up to a window ahead, so a query stays acceptable for two.
        if self._cleaned is None or now - self._cleaned >= window:
            await replays.forget_before(session, CHANNEL, now - 2 * window)
            self._cleaned = now
        return await replays.same_body(session, CHANNEL, signed, body, now)

    def _forbidden(self, reason: str) -> Response:
        """403, and one log line per reason and period (a scan is one line, not thousands)."""
        self.failures.warn(f"403 {reason}", f"wechat webhook: request refused (403): {reason}")
        return PlainTextResponse("forbidden", status_code=403)

    def _decrypt(self, fields: Mapping[str, str], msg_signature: str | None, timestamp: str,
                 nonce: str) -> str:
        if self.crypto is None:
            raise BadRequest("safe mode message but no wechat.encoding_aes_key")
        encrypt = fields.get("Encrypt", "")
        if not encrypt:
            raise BadRequest("safe mode message without Encrypt")
        return open_signed(PrpCrypto(self.crypto.key), self.settings.app_id, self.settings.token,
                           encrypt, msg_signature, timestamp, nonce, now=self.clock.now(),
                           window_seconds=self.settings.replay_window_seconds)

    async def _process(self, query: Mapping[str, str], body: bytes,
                       incoming: Incoming | None) -> list[Reply] | None:
        """Check for a replay, then let the conversation answer (None: nothing to answer).

        Raises:
            _Replayed: the signed query came before with another body.
        """
        async def admit(session: Session) -> None:
            if not await self._first_body(session, query, body):
                raise _Replayed

        async with self._in_flight:
            if incoming is None:
                async with self.database.session() as session:
                    await admit(session)
                replies = None
            else:
                # The replay record goes in the message's own transaction (one transaction a
                # message): a replay is refused before anything of it is done or kept.
                replies = await self.assistant.handle(incoming, admit=admit)
        self._outage_over()
        return replies

    def _finish_late(self, task: asyncio.Future[list[Reply] | None],
                     incoming: Incoming | None) -> None:
        """The answer is slower than ``wechat.reply_deadline_ms``: WeChat gets "success" now
        and the replies follow as customer-service messages."""
        if incoming is not None:
            log.warning("wechat %s: answer slower than %d ms, sent as customer-service message",
                        short_openid(incoming.user_id), self.settings.reply_deadline_ms)
        late = asyncio.ensure_future(self._send_late(task, incoming))
        self._late.add(late)
        late.add_done_callback(self._late.discard)

    def _rendered(self, incoming: Incoming,
                  replies: list[Reply]) -> tuple[list[str], BackgroundTask | None]:
        """The passive text, and a task sending the rest after the HTTP answer."""
        texts = render_replies(replies, consent_link=self.consents.link_for(incoming.user_id))
        images = _images(replies)
        if len(texts) <= 1 and not images:
            return texts, None
        return texts[:1], BackgroundTask(self._send_rest, incoming, texts[1:], images)

    async def _send_late(self, task: asyncio.Future[list[Reply] | None],
                         incoming: Incoming | None) -> None:
        try:
            replies = await task
            if incoming is not None and replies is not None:
                await self._send_rest(incoming, render_replies(
                    replies, consent_link=self.consents.link_for(incoming.user_id)),
                    _images(replies))
        except _Replayed:
            self.failures.warn("403 replay", "wechat webhook: signed query used again with "
                                             "another body (replay), found after the answer")
        except Exception as exc:  # a background task: log it here, nobody awaits its result
            if not is_outage(exc):
                log.exception("wechat %s: late answer failed",
                              short_openid(incoming.user_id if incoming else "-"))
                return
            self._outage_began(exc)
            if self.sender is not None and incoming is not None:
                try:
                    await self.sender.send_texts(incoming.user_id, [busy_text()])
                except (Unreachable, TryLater, OutOfWindow) as failure:
                    log.warning("wechat %s: busy notice not sent: %s",
                                short_openid(incoming.user_id), failure)

    def _outage_began(self, exc: BaseException) -> None:
        """One line when the database goes away (not a traceback per message)."""
        self._busy_answers += 1
        if self._outage_since is None:
            self._outage_since = self.clock.now()
            log.error("wechat webhook: database unreachable (%s): messages are answered "
                      "\"系统繁忙，请稍后再发\" until it is back", type(exc).__name__)

    def _outage_over(self) -> None:
        if self._outage_since is not None:
            seconds = (self.clock.now() - self._outage_since).total_seconds()
            log.warning("wechat webhook: database reachable again after %d s; %d message(s) "
                        "were answered busy", seconds, self._busy_answers)
            self._outage_since, self._busy_answers = None, 0

    async def _send_rest(self, incoming: Incoming, texts: list[str],
                         images: Sequence[Attachment] = ()) -> None:
        """Send what did not fit in the passive reply, then any image (a chart), once per
        message however often WeChat delivers it (its retry gets the same first part again,
        not the rest twice)."""
        if not (texts or images) or self.sender is None:
            return
        if incoming.message_id:
            async with self.database.session() as session:
                first = await conversations.first_time(session, CHANNEL, "rest",
                                                       incoming.message_id, self.clock.now())
            if not first:
                return
        try:
            await self.sender.send_texts(incoming.user_id, texts)
            for image in images:
                await self.sender.send_image(incoming.user_id, image)
        except (Unreachable, TryLater, OutOfWindow) as exc:
            # Not lost silently: logged; the citizen saw the first part and can ask again.
            log.warning("wechat %s: rest of an answer not sent: %s", short_openid(incoming.user_id), exc)

    async def drain(self) -> None:
        """Wait for answers that are still being sent (shutdown, tests)."""
        while self._late:
            await asyncio.gather(*list(self._late), return_exceptions=True)


class _Replayed(NotAdmitted):
    """A signed query came again with another body."""


def busy_text() -> str:
    """The answer while the database is unreachable: the citizen's language cannot be looked
    up, so Chinese first and English after."""
    return f"{translate('zh-CN', 'error.busy')}\n{translate('en', 'error.busy')}"


def _images(replies: Sequence[Reply]) -> list[Attachment]:
    """The attachments WeChat can show: images, sent as customer-service messages. Other files
    (.ics, spreadsheets) cannot be sent; their replies say so or carry the details as text."""
    return [r.attachment for r in replies
            if r.attachment is not None and r.attachment.mime in IMAGE_TYPES]
