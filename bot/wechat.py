"""The WeChat Official Account channel: verify, parse, call the conversation, render.

No business rule lives here. The webhook follows wechatpy's echo example (check the signature,
parse the message, call the core, render a reply) with what that example leaves out: a
constant-time signature check with a replay window on the timestamp, safe mode (AES) with
``msg_signature`` checked and the reply encrypted, a body-size limit, an answer within WeChat's
5 seconds (slower answers go out as customer-service messages), and message-menu links so a
citizen can tap a choice or type its number.

wechatpy is synchronous and its client fetches the access token from a fixed URL; the few
endpoints needed (stable_token, message/custom/send, message/template/send,
message/template/subscribe, menu/create) are
called here with ``httpx.AsyncClient`` at ``wechat.api_base_url`` so tests reach a fake server.
wechatpy is used for what it does well: the AES message crypto and the passive reply XML.

Wiring (``yuyue run`` / ``yuyue wechat menu``)::

    channel = build_wechat(app, assistant)        # -> WechatChannel (app: bot.wiring.App)
    routes = channel.webhook_routes()             # -> list[Route]: wechat.path (GET + POST) and
                                                  #    wechat.path + "/consent" (GET)
    channel.sender                                # WechatSender, a bot.channels.Sender
    await channel.close()                         # waits for late answers, closes the client

    # or, without keeping the channel object:
    routes = webhook_routes(app, assistant)

    async with httpx.AsyncClient(timeout=10) as http:
        await create_menu(app.settings, http)     # 预约办事 / 我的预约 / 办事指南 / 人工服务

Public names:

- ``build_wechat(app, assistant, *, http=None) -> WechatChannel``
- ``webhook_routes(app, assistant) -> list[Route]``
- ``WechatChannel``: ``webhook_routes()``, ``sender``, ``tokens``, ``webhook``, ``close()``
- ``WechatSender(settings, database, clock, http, tokens, *, timezone=..., consents=None)``:
  ``deliver(chat_id, replies, *, kind="message", fields=None)`` — customer-service message
  inside the 48-hour window, else a template message (``kind == "reminder"`` uses
  ``wechat.reminder_template_id``, other kinds except "relay" ``wechat.notice_template_id``),
  else for a reminder or closure a one-time subscription message the citizen allowed, else
  ``Unreachable``. ``fields`` gives the template values by source name (service, when, place,
  code, and the appointment's id); "summary" (the first line of the text) and "sent" (now) are
  always known.
  ``send_image(openid, attachment)`` uploads an image (a chart) and sends it as a
  customer-service message.
- ``Consents(settings, database, clock, *, key=None, locale=...)``: ``link_for(openid)``
  renders a reply's ``ConsentRequest`` as the link to WeChat's confirmation page, signed with
  ``key`` (``IdHasher.derive``); ``page`` is the route WeChat sends the citizen back to
  (``{wechat.path}/consent``).
- ``AccessTokens(settings, database, clock, http, *, owner=None)``: ``get(rejected=None)``.
- ``WechatWebhook``: the two endpoints; ``drain()`` waits for answers still being sent.
- ``create_menu(settings, http, *, tokens=None) -> None``
- ``verify_signature``, ``parse_xml``, ``to_incoming``, ``render_reply``, ``render_replies``,
  ``split_text``, ``menu_id_for``, ``WechatApiError``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import socket
import zoneinfo
from collections.abc import Awaitable, Callable, Mapping, Sequence
from html import escape
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import httpx
import xmltodict
from sqlalchemy import select
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from wechatpy.crypto import PrpCrypto, WeChatCrypto
from wechatpy.replies import TextReply

from bot.channels import TryLater, Unreachable
from handlers.context import GLOBAL_PREFIX
from handlers.core import Attachment, Choice, ConsentRequest, Incoming, Reply
from handlers.i18n import translate
from storage import conversations
from storage.clock import Clock
from storage.db import Database
from storage.models import Appointment, ChannelIdentity
from storage.reach import grant_consent, mark_unreachable, return_consent, take_consent
from storage.settings import WechatSettings
from storage.shared import read_value, release_lease, take_lease, write_value

log = logging.getLogger(__name__)

CHANNEL = "wechat"
TEXT_LIMIT = 2048                   # bytes of a text message, passive or customer-service
MAX_BODY = 64 * 1024                # WeChat's messages are a few KB; anything bigger is not WeChat
CS_WINDOW = dt.timedelta(hours=48)
# Stay clear of the window's edge: a reminder computed a minute before the end can reach
# WeChat after it.
CS_WINDOW_MARGIN = dt.timedelta(minutes=10)
TOKEN_KEY = "wechat.access_token"
TOKEN_LEASE = "wechat.access_token.lease"
# In normal mode the stable-token endpoint hands out a new token during the last 5 minutes of
# the old one (both stay valid meanwhile); earlier calls return the same token.
TOKEN_REFRESH_BEFORE = dt.timedelta(minutes=5)
TOKEN_LEASE_TIME = dt.timedelta(seconds=30)
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
MENU_KEYS = ("book", "my", "guide", "human")
# One-time subscription messages (一次性订阅消息): WeChat's confirmation page, the scenes it
# accepts (0..10000), the limits of a message, and the notices a consent may be used for.
SUBSCRIBE_CONFIRM_URL = "https://mp.weixin.qq.com/mp/subscribemsg"
CONSENT_PATH = "/consent"
SCENES = 10000
SUBSCRIBED_TITLE_LIMIT, SUBSCRIBED_TEXT_LIMIT = 15, 200
SUBSCRIBED_KINDS = {"reminder", "closure_cancelled"}
CONSENT_KEY = "wechat one-time subscription links"
IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif"}   # what media/upload takes as "image"
MENU = ((("预约办事", "book"), ("我的预约", "my")), (("办事指南", "guide"), ("人工服务", "human")))

# errcodes: https://developers.weixin.qq.com/doc/offiaccount/Getting_Started/Global_Return_Code
TOKEN_INVALID = {40001, 40014, 42001}        # invalid / expired access token
OUT_OF_WINDOW = {45015, 45047}               # past the 48 hours / too many messages in it
GONE = {40003, 43004, 43019}                 # bad openid / not following / blocked us
NO_CONSENT_LEFT = {43101}                    # a one-time subscription used up or withdrawn
BUSY = {-1, 45009, 45011, 45033}             # system busy / rate limits

_MENU_TOKEN = re.compile(r"^m(\d+)\.(\d+)$")
# WeChat has no commands of its own: a text that starts with "/" (or a full-width "／", as
# Chinese keyboards type it) followed by a word is one.
_COMMAND = re.compile(r"^\s*[/／]([A-Za-z]\w{0,31})(?:\s+(.*?))?\s*$", re.S)
_TEMPLATE_LIMITS = {"thing": 20, "character_string": 32, "phrase": 5, "name": 10, "number": 32,
                    "amount": 32, "car_number": 8, "phone_number": 17, "letter": 32,
                    "symbol": 5, "time": 30, "date": 30}


Files = dict[str, tuple[str, bytes, str]]       # multipart field -> (filename, content, type)


class Conversation(Protocol):
    async def handle(self, incoming: Incoming) -> list[Reply]: ...


class WechatApiError(Exception):
    """WeChat answered with a non-zero errcode."""

    def __init__(self, path: str, errcode: int, errmsg: str) -> None:
        super().__init__(f"{path}: errcode {errcode} ({errmsg})")
        self.errcode = errcode


class BadRequest(Exception):
    """The request is not a WeChat message we can read (answered 400)."""


class Forbidden(Exception):
    """The request is not signed by WeChat, or too old (answered 403)."""


# --- signatures ------------------------------------------------------------------------------


def _digits(text: str, most: int) -> bool:
    """``text`` is 1 to ``most`` ASCII digits (``str.isdigit`` also takes "²", which int() does
    not)."""
    return 0 < len(text) <= most and text.isascii() and text.isdigit()


def sign(*parts: str) -> str:
    """WeChat's signature: SHA-1 of the sorted parts joined (token, timestamp, nonce[, encrypt])."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def verify_signature(token: str, signature: str | None, timestamp: str | None, nonce: str | None,
                     *, now: dt.datetime, window_seconds: int, encrypt: str | None = None) -> bool:
    """Check a webhook signature in constant time and that the timestamp is recent.

    wechatpy's ``check_signature`` compares with ``!=`` and accepts any timestamp; a captured
    request could then be replayed for ever.
    """
    if not (token and signature and timestamp and nonce) or not _digits(timestamp, 12):
        return False
    if abs(now.timestamp() - int(timestamp)) > window_seconds:
        return False
    parts = (token, timestamp, nonce) if encrypt is None else (token, timestamp, nonce, encrypt)
    return hmac.compare_digest(sign(*parts).encode(), signature.strip().lower().encode())


# --- parsing ---------------------------------------------------------------------------------


def parse_xml(body: bytes) -> dict[str, str]:
    """The fields of WeChat's flat ``<xml>`` message as strings.

    Raises:
        BadRequest: not well-formed, a DTD (WeChat never sends one; it is how entity bombs
            come), not ``<xml>``, or nested where WeChat is flat.
    """
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise BadRequest("DTD not accepted")
    try:
        document = xmltodict.parse(body, disable_entities=True)
    except Exception as exc:  # expat raises ExpatError, but also ValueError/TypeError on junk
        raise BadRequest("not well-formed XML") from exc
    root = document.get("xml") if isinstance(document, dict) else None
    if not isinstance(root, dict):
        raise BadRequest("no <xml> root")
    fields: dict[str, str] = {}
    for key, value in root.items():
        if value is None:
            fields[key] = ""
        elif isinstance(value, str):
            fields[key] = value
        # Nested elements (ScanCodeInfo, SendPicsInfo...) are not needed by any event we handle.
    return fields


def menu_id_for(token: str) -> str:
    """The ``msgmenuid`` of a choice token: digits for menu tokens ("m12.3" -> "12003")."""
    match = _MENU_TOKEN.match(token)
    if match and int(match.group(2)) < 1000:
        return f"{int(match.group(1))}{int(match.group(2)):03d}"
    return token


def token_for_menu_id(menu_id: str) -> str | None:
    """The choice token behind a tapped link's ``bizmsgmenuid``, if it is one of ours."""
    menu_id = menu_id.strip()
    if _digits(menu_id, 9) and len(menu_id) >= 4:
        number = int(menu_id)
        return f"m{number // 1000}.{number % 1000}"
    if menu_id.startswith(GLOBAL_PREFIX) and menu_id.isascii() and len(menu_id) <= 64:
        return menu_id
    return None


# Events that need no answer: a menu link opened a web page, the location WeChat reports on
# its own each time the chat is opened, delivery reports of template messages, a scan by a
# follower. Answering them would spam the citizen.
_SILENT_EVENTS = {"view", "location", "templatesendjobfinish", "scan", "view_miniprogram",
                  "kf_create_session", "kf_close_session", "kf_switch_session",
                  "subscribe_msg_popup_event", "subscribe_msg_change_event",
                  "subscribe_msg_sent_event"}


def to_incoming(fields: Mapping[str, str]) -> Incoming | None:
    """The conversation's view of a WeChat message, or None when it needs no answer.

    Raises:
        BadRequest: a field every WeChat message has is missing.
    """
    openid, msg_type = fields.get("FromUserName", ""), fields.get("MsgType", "").lower()
    created = fields.get("CreateTime", "")
    if not openid or not msg_type or not _digits(created, 12) or not fields.get("ToUserName"):
        raise BadRequest("not a WeChat message")
    base = {"channel": CHANNEL, "user_id": openid, "chat_id": openid, "files": False}
    if msg_type == "event":
        event = fields.get("Event", "")
        # WeChat retries an event with the same sender and time: that is its identity.
        message_id = f"{openid}:{created}:{event}"
        kind = event.lower()
        if kind == "subscribe":          # also "subscribe" after scanning a QR code
            return Incoming(**base, event="subscribe", message_id=message_id)
        if kind == "unsubscribe":
            return Incoming(**base, event="unsubscribe", message_id=message_id)
        if kind == "click":
            # Two different buttons can be pressed within one second; a retry repeats the key.
            key = fields.get("EventKey", "").strip()
            return Incoming(**base, event=f"menu:{key}", message_id=f"{message_id}:{key}")
        if kind in _SILENT_EVENTS:
            return None
        return Incoming(**base, event="unsupported", message_id=message_id)
    message_id = fields.get("MsgId") or f"{openid}:{created}:{msg_type}"
    if msg_type == "text":
        choice = token_for_menu_id(fields.get("bizmsgmenuid", ""))
        text = fields.get("Content", "")
        command = _COMMAND.match(text) if choice is None else None
        if command:             # "/stats week", "/lang", a staff member's "/today"
            return Incoming(**base, command=command.group(1), args=command.group(2) or "",
                            message_id=message_id)
        return Incoming(**base, text=text, choice=choice, message_id=message_id)
    if msg_type == "voice" and fields.get("Recognition", "").strip():
        # With speech recognition switched on, WeChat sends what was said as text.
        return Incoming(**base, text=fields["Recognition"].strip().rstrip("。.!！"),
                        message_id=message_id)
    return Incoming(**base, event="unsupported", message_id=message_id)


# --- rendering -------------------------------------------------------------------------------


def _link(content: str, menu_id: str, label: str) -> str:
    return (f'<a href="weixin://bizmsgmenu?msgmenucontent={quote(content, safe="")}'
            f'&msgmenuid={quote(menu_id, safe=":.")}">{_plain(label)}</a>')


def _plain(text: str) -> str:
    # A label is shown inside <a>...</a>: it must not open or close a tag of its own.
    return text.replace("<", "＜").replace(">", "＞")


def render_choice(choice: Choice) -> str:
    """One choice as a tappable message-menu link with its number.

    A tap sends ``msgmenucontent`` as an ordinary text message on every kind of account, so
    for menu choices it is the number: tapping and typing "3" are the same thing. Verified
    service accounts also get ``bizmsgmenuid`` back; it carries the menu's own id, so a tap on
    an old message is recognised as such instead of meaning the third entry of today's menu.
    """
    match = _MENU_TOKEN.match(choice.token)
    if match:
        number = int(match.group(2)) + 1
        return f"{number}. " + _link(str(number), menu_id_for(choice.token), choice.label)
    return _link(choice.label, choice.token, choice.label)


ConsentLink = Callable[[ConsentRequest], str]


def render_reply(reply: Reply, consent_link: ConsentLink | None = None) -> str:
    """A reply's text, then its choices one per line, then the link asking for a later
    reminder when ``consent_link`` makes one. An attachment (.ics) cannot be sent in a text
    message; the text already carries its details, so it is left out."""
    lines = [reply.text.strip()] if reply.text.strip() else []
    lines += [render_choice(choice) for choice in reply.flat_choices]
    if reply.consent is not None and consent_link is not None:
        lines.append(f'<a href="{consent_link(reply.consent)}">{_plain(reply.consent.label)}</a>')
    return "\n".join(lines)


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Cut ``text`` into messages of at most ``limit`` UTF-8 bytes, between lines where it
    can (a choice's link is never cut), else between characters."""
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        candidate = f"{current}\n{line}" if current else line
        if len(candidate.encode()) <= limit:
            current = candidate
            continue
        if current:
            parts.append(current)
        current = ""
        while len(line.encode()) > limit:
            cut = _fit(line, limit)
            parts.append(line[:cut])
            line = line[cut:]
        current = line
    if current or not parts:
        parts.append(current)
    return [part.strip("\n") for part in parts if part.strip()] or [""]


def _fit(text: str, limit: int) -> int:
    """How many characters of ``text`` fit in ``limit`` bytes."""
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if len(text[:middle].encode()) <= limit:
            low = middle
        else:
            high = middle - 1
    return max(low, 1)


def render_replies(replies: Sequence[Reply], limit: int = TEXT_LIMIT, *,
                   consent_link: ConsentLink | None = None) -> list[str]:
    """All replies of one answer as WeChat text messages: joined (a passive reply is one
    message, and customer-service messages are counted), then split at ``limit`` bytes."""
    text = "\n\n".join(part for part in (render_reply(r, consent_link) for r in replies) if part)
    return split_text(text, limit) if text else []


def _cdata(text: str) -> str:
    # wechatpy puts the content in CDATA unescaped; "]]>" would end it early.
    return text.replace("]]>", "]]]]><![CDATA[>")


def _short(openid: str) -> str:
    """An OpenID as it may appear in logs."""
    return openid[:6] + "…" if len(openid) > 6 else openid


# --- the access token ------------------------------------------------------------------------


class AccessTokens:
    """The access token, kept in the database with its expiry and shared by every process.

    One process at a time refreshes it (a lease row); the others keep using the current token
    while it is valid, or wait for the refresher. A restart reads the stored token instead of
    asking WeChat again. The stable-token endpoint is used: in its normal mode a call while the
    token is valid returns the same token, so even a lost cache does not invalidate the token
    other processes hold; forced refresh (20 a day) is used only when WeChat rejected the very
    token the endpoint returns.
    """

    def __init__(self, settings: WechatSettings, database: Database, clock: Clock,
                 http: httpx.AsyncClient, *, owner: str | None = None,
                 wait: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 max_waits: int = 100) -> None:
        self.settings, self.database, self.clock, self.http = settings, database, clock, http
        self.owner = owner or f"{socket.gethostname()[:40]}:{os.getpid()}:{id(self):x}"[:80]
        self._wait, self._max_waits = wait, max_waits
        self._local = asyncio.Lock()    # one refresh attempt per process at a time

    async def get(self, *, rejected: str | None = None) -> str:
        """A valid access token; ``rejected`` is one WeChat just refused (40001/42001).

        Raises:
            TryLater: no token could be had (WeChat down, or the refresher takes too long).
        """
        for _ in range(self._max_waits):
            now = self.clock.now()
            async with self.database.read() as session:
                row = await read_value(session, TOKEN_KEY)
            current = None
            if row is not None and row.value and row.value != rejected and row.expires_at \
                    and row.expires_at > now:
                current = row.value
                if row.expires_at - now > TOKEN_REFRESH_BEFORE:
                    return current
            async with self._local:
                if await self._lease(take=True):
                    try:
                        return await self._refresh(rejected)
                    finally:
                        await self._lease(take=False)
            if current is not None:
                return current          # someone else is refreshing; this one is still valid
            await self._wait(0.1)
        raise TryLater("no WeChat access token: the refresher did not finish", retry_after=30)

    async def _lease(self, *, take: bool) -> bool:
        async with self.database.session() as session:
            if take:
                return await take_lease(session, TOKEN_LEASE, self.owner, self.clock.now(),
                                        TOKEN_LEASE_TIME)
            await release_lease(session, TOKEN_LEASE, self.owner, self.clock.now())
            return True

    async def _refresh(self, rejected: str | None) -> str:
        async with self.database.read() as session:
            row = await read_value(session, TOKEN_KEY)
        now = self.clock.now()
        if row is not None and row.value and row.value != rejected and row.expires_at \
                and row.expires_at - now > TOKEN_REFRESH_BEFORE:
            return row.value            # refreshed by another process while we waited
        token, expires_in = await self._fetch(force=False)
        if token == rejected:
            token, expires_in = await self._fetch(force=True)
        async with self.database.session() as session:
            await write_value(session, TOKEN_KEY, token, now,
                              expires_at=now + dt.timedelta(seconds=expires_in))
        log.info("wechat access token refreshed, valid %d s", expires_in)
        return token

    async def _fetch(self, *, force: bool) -> tuple[str, int]:
        if not (self.settings.app_id and self.settings.app_secret):
            raise Unreachable("wechat.app_id / YUYUE_WECHAT__APP_SECRET are not set")
        payload = {"grant_type": "client_credential", "appid": self.settings.app_id,
                   "secret": self.settings.app_secret, "force_refresh": force}
        data = await _post(self.http, self.settings.api_base_url, "stable_token", payload)
        if data.get("errcode"):
            raise TryLater(f"stable_token: errcode {data.get('errcode')} "
                           f"({data.get('errmsg', '')})", retry_after=60)
        try:
            return str(data["access_token"]), int(data["expires_in"])
        except (KeyError, TypeError, ValueError):
            raise TryLater("stable_token: answer without a token") from None


async def _post(http: httpx.AsyncClient, base_url: str, path: str, payload: Mapping[str, Any] | None,
                access_token: str | None = None, *, files: Files | None = None,
                query: Mapping[str, str] | None = None) -> dict[str, Any]:
    """POST JSON (or ``files`` as multipart) to ``{base_url}/cgi-bin/{path}``; network trouble
    is ``TryLater``."""
    url = f"{base_url.rstrip('/')}/cgi-bin/{path}"
    params = {**({"access_token": access_token} if access_token else {}), **(query or {})}
    try:
        if files is not None:
            response = await http.post(url, params=params, files=files)
        else:
            # ensure_ascii=False: WeChat shows "\\u4f60" escapes literally in some messages.
            response = await http.post(url, params=params, content=_json_bytes(payload or {}),
                                       headers={"Content-Type": "application/json; charset=utf-8"})
    except httpx.HTTPError as exc:
        raise TryLater(f"{path}: {type(exc).__name__}") from None
    if response.status_code >= 500 or response.status_code == 429:
        raise TryLater(f"{path}: HTTP {response.status_code}")
    try:
        data = response.json()
    except ValueError:
        raise TryLater(f"{path}: HTTP {response.status_code}, not JSON") from None
    return data if isinstance(data, dict) else {}


def _json_bytes(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def call_api(http: httpx.AsyncClient, settings: WechatSettings, tokens: AccessTokens,
                   path: str, payload: Mapping[str, Any] | None, *, files: Files | None = None,
                   query: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Call an API with the shared token; a rejected token is refreshed once and retried.

    Raises:
        WechatApiError: WeChat answered with another non-zero errcode.
        TryLater: network trouble, or WeChat busy.
    """
    token = await tokens.get()
    data = await _post(http, settings.api_base_url, path, payload, token, files=files, query=query)
    if int(data.get("errcode") or 0) in TOKEN_INVALID:
        token = await tokens.get(rejected=token)
        data = await _post(http, settings.api_base_url, path, payload, token, files=files,
                           query=query)
    errcode = int(data.get("errcode") or 0)
    if errcode in BUSY:
        raise TryLater(f"{path}: errcode {errcode}", retry_after=60)
    if errcode:
        raise WechatApiError(path, errcode, str(data.get("errmsg", "")))
    return data


# --- one-time subscription consent ------------------------------------------------------------


class Consents:
    """WeChat's one-time subscription message (一次性订阅消息), for accounts without templates.

    A booking confirmation carries a link to WeChat's confirmation page. WeChat sends the
    citizen's browser back to ``{wechat.public_url}{wechat.path}/consent`` with the answer;
    an "allow" is recorded, and a later reminder (or the notice that the centre closed) outside
    the 48-hour window uses it: one consent, one message. The link's ``reserved`` value signs
    the OpenID and the appointment, so a forged redirect records nothing.
    """

    def __init__(self, settings: WechatSettings, database: Database, clock: Clock, *,
                 key: bytes | None = None, locale: str = "zh-CN") -> None:
        self.settings, self.database, self.clock, self.locale = settings, database, clock, locale
        # Links are signed with a key of their own (``IdHasher.derive``), never with the Token:
        # a citizen sees the OpenID, the booking and the signature, and a short Token could be
        # guessed from them. Without a key (tests, a sender alone) links verify in this object.
        self._key = key or secrets.token_bytes(32)

    @property
    def asking(self) -> bool:
        """Links are offered: a subscription template, somewhere to come back to, and no
        template message for reminders (which needs no consent)."""
        wechat = self.settings
        return bool(wechat.subscribe_template_id and wechat.public_url and wechat.app_id
                    and not wechat.reminder_template_id)

    @property
    def sending(self) -> bool:
        return bool(self.settings.subscribe_template_id)

    @property
    def path(self) -> str:
        return self.settings.path.rstrip("/") + CONSENT_PATH

    @staticmethod
    def scene(appointment_id: int) -> int:
        # A scene per appointment, so that consents for different bookings add up.
        return appointment_id % SCENES

    def _signature(self, openid: str, appointment_id: int) -> str:
        message = f"{openid}\0{appointment_id}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    def link_for(self, openid: str) -> ConsentLink | None:
        """How to render a ``ConsentRequest`` for ``openid``, or None when not asking."""
        if not self.asking:
            return None

        def link(request: ConsentRequest) -> str:
            query = urlencode({
                "action": "get_confirm", "appid": self.settings.app_id,
                "scene": self.scene(request.appointment_id),
                "template_id": self.settings.subscribe_template_id,
                "redirect_url": self.settings.public_url + self.path,
                "reserved": f"{request.appointment_id}x"
                            f"{self._signature(openid, request.appointment_id)}"})
            return f"{SUBSCRIBE_CONFIRM_URL}?{query}#wechat_redirect"
        return link

    async def page(self, request: Request) -> Response:
        """Where WeChat sends the citizen after the confirmation page:
        ``?openid=…&template_id=…&action=confirm|cancel&scene=…&reserved=…``."""
        query = request.query_params
        openid, action = query.get("openid", ""), query.get("action", "")
        appointment_id, _, signature = query.get("reserved", "").partition("x")
        valid = (_digits(appointment_id, 9) and openid
                 and len(openid) <= 128 and action in ("confirm", "cancel")
                 and query.get("template_id") == self.settings.subscribe_template_id
                 and query.get("scene") == str(self.scene(int(appointment_id)))
                 and hmac.compare_digest(signature.encode(),
                                         self._signature(openid, int(appointment_id)).encode()))
        locale = self.locale
        if valid:
            async with self.database.read() as session:
                identity_locale = await session.scalar(select(ChannelIdentity.locale).where(
                    ChannelIdentity.channel == CHANNEL, ChannelIdentity.platform_user_id == openid))
                exists = await session.get(Appointment, int(appointment_id)) is not None
            locale = identity_locale or locale
            valid = exists
        if not valid:
            log.info("wechat consent: link refused")
            return _consent_page(locale, "invalid", status=403)
        if action == "cancel":
            return _consent_page(locale, "declined")
        if request.method != "GET":     # Starlette answers HEAD too; only a visit grants
            return _consent_page(locale, "granted")
        async with self.database.session() as session:
            await grant_consent(session, CHANNEL, openid, self.settings.subscribe_template_id,
                                self.scene(int(appointment_id)), int(appointment_id),
                                self.clock.now())
        log.info("wechat %s: one-time subscription granted", _short(openid))
        return _consent_page(locale, "granted")


def _consent_page(locale: str, outcome: str, *, status: int = 200) -> HTMLResponse:
    title = escape(translate(locale, "consent_page.title"))
    text = escape(translate(locale, f"consent_page.{outcome}"))
    lang = "zh-CN" if locale.startswith("zh") else "en"
    return HTMLResponse(
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title></head><body style=\"font: 17px/1.6 sans-serif; "
        f'margin: 2em 1.2em"><h1 style="font-size: 1.3em">{title}</h1><p>{text}</p>'
        f"</body></html>", status_code=status, headers={"Cache-Control": "no-store"})


# --- outgoing --------------------------------------------------------------------------------


class WechatSender:
    """Delivers messages outside a conversation: reminders, relays, notices (a ``Sender``)."""

    channel = CHANNEL

    def __init__(self, settings: WechatSettings, database: Database, clock: Clock,
                 http: httpx.AsyncClient, tokens: AccessTokens, *,
                 timezone: dt.tzinfo = SHANGHAI, consents: Consents | None = None) -> None:
        self.settings, self.database, self.clock = settings, database, clock
        self.http, self.tokens, self.timezone = http, tokens, timezone
        self.consents = consents or Consents(settings, database, clock)

    async def deliver(self, chat_id: str, replies: list[Reply], *, kind: str = "message",
                      fields: Mapping[str, str] | None = None) -> None:
        """Send ``replies`` to the citizen ``chat_id`` (an OpenID).

        Inside the 48-hour customer-service window: customer-service text messages. Outside
        it (or when WeChat says 45015): a template message if one is configured for ``kind``,
        else, for a reminder or a closure, a one-time subscription message the citizen allowed.

        Raises:
            Unreachable: unsubscribed, outside the window with no way to write, or refused.
            TryLater: network trouble or WeChat busy.
        """
        now = self.clock.now()
        async with self.database.read() as session:
            identity = await session.scalar(select(ChannelIdentity).where(
                ChannelIdentity.channel == CHANNEL, ChannelIdentity.platform_user_id == chat_id))
        if identity is not None and identity.unreachable_at is not None:
            raise Unreachable(f"wechat user unreachable: {identity.unreachable_reason or '-'}")
        last = identity.last_inbound_at if identity is not None else None
        if last is not None and now - last < CS_WINDOW - CS_WINDOW_MARGIN:
            try:
                await self.send_texts(chat_id, render_replies(
                    replies, consent_link=self.consents.link_for(chat_id)))
                return
            except _OutOfWindow:
                log.info("wechat %s: customer-service window closed early", _short(chat_id))
        template_id, mapping = self._template(kind)
        if template_id:
            await self.send_template(chat_id, template_id,
                                     self.template_data(mapping, replies, fields or {}, now))
        elif self.consents.sending and kind in SUBSCRIBED_KINDS:
            await self.send_subscribed(chat_id, replies, fields or {})
        else:
            raise Unreachable("outside WeChat's 48-hour customer-service window and no "
                              f"template message configured for {kind!r}")

    def _template(self, kind: str) -> tuple[str, tuple[str, ...]]:
        if kind == "reminder":
            return self.settings.reminder_template_id, self.settings.reminder_template_fields
        if kind == "relay":             # a staff member's answer is a conversation, not a notice
            return "", ()
        return self.settings.notice_template_id, self.settings.notice_template_fields

    def template_data(self, mapping: Sequence[str], replies: Sequence[Reply],
                      fields: Mapping[str, str], now: dt.datetime) -> dict[str, dict[str, str]]:
        """The template's ``data``: each keyword's value from its source, cut to the length
        its type allows (a "thing" keyword takes 20 characters).

        Raises:
            Unreachable: a keyword's source was not given (the template would be refused).
        """
        text = next((r.text.strip() for r in replies if r.text.strip()), "")
        known = {"summary": text.split("\n", 1)[0],
                 "sent": now.astimezone(self.timezone).strftime("%Y-%m-%d %H:%M"), **fields}
        data = {}
        for item in mapping:
            key, _, source = item.partition("=")
            value = str(known.get(source) or "").strip()
            if not value:
                raise Unreachable(f"template keyword {key} needs {source!r}, which was not given")
            limit = _TEMPLATE_LIMITS.get(re.sub(r"\d+$", "", key), 200)
            data[key] = {"value": _cut(value, limit)}
        return data

    async def send_subscribed(self, openid: str, replies: Sequence[Reply],
                              fields: Mapping[str, str]) -> None:
        """A one-time subscription message, using one consent the citizen gave (the one for
        this appointment first): title from the first line, the rest as its 200 characters.

        A consent WeChat says is gone (43101: used, or withdrawn) is dropped and the next one
        tried; one that no message used (WeChat busy or refusing for another reason, a crash
        on the way) is given back.

        Raises:
            Unreachable: no consent left, or WeChat refused.
            TryLater: network trouble or WeChat busy.
        """
        template_id = self.settings.subscribe_template_id
        appointment = fields.get("appointment", "")
        text = "\n".join(r.text.strip() for r in replies if r.text.strip())
        title, _, body = text.partition("\n")
        while True:
            async with self.database.session() as session:
                taken = await take_consent(session, CHANNEL, openid, template_id, self.clock.now(),
                                           appointment_id=int(appointment)
                                           if _digits(appointment, 9) else None)
            if taken is None:
                raise Unreachable("outside WeChat's 48-hour customer-service window, no template "
                                  "message configured, and no one-time subscription allowed")
            consent_id, scene = taken
            payload = {"touser": openid, "template_id": template_id, "scene": str(scene),
                       "title": _cut(title.strip().rstrip(":："), SUBSCRIBED_TITLE_LIMIT),
                       "data": {"content": {"value": _cut(body.strip() or title,
                                                          SUBSCRIBED_TEXT_LIMIT)}}}
            used = False
            try:
                await self._send(openid, "message/template/subscribe", payload)
                used = True
                return
            except _Refused as refused:
                used = refused.errcode in NO_CONSENT_LEFT
                if not used:
                    raise
                log.info("wechat %s: a one-time subscription was gone (%d)", _short(openid),
                         refused.errcode)
            finally:
                if not used:
                    async with self.database.session() as session:
                        await return_consent(session, consent_id)

    async def send_texts(self, openid: str, texts: Sequence[str]) -> None:
        """Customer-service text messages, in order."""
        for text in texts:
            await self._send(openid, "message/custom/send",
                             {"touser": openid, "msgtype": "text", "text": {"content": text}})

    async def send_image(self, openid: str, image: Attachment) -> None:
        """An image (a chart) as a customer-service message: uploaded as temporary media
        first, since a passive reply cannot carry one."""
        uploaded = await self._send(openid, "media/upload", None, query={"type": "image"},
                                    files={"media": (image.filename, image.content, image.mime)})
        media_id = str(uploaded.get("media_id") or "")
        if not media_id:
            raise TryLater("media/upload: answer without a media_id")
        await self._send(openid, "message/custom/send",
                         {"touser": openid, "msgtype": "image", "image": {"media_id": media_id}})

    async def send_template(self, openid: str, template_id: str,
                            data: Mapping[str, Mapping[str, str]]) -> None:
        await self._send(openid, "message/template/send",
                         {"touser": openid, "template_id": template_id, "data": dict(data)})

    async def _send(self, openid: str, path: str, payload: Mapping[str, Any] | None,
                    **upload: Any) -> dict[str, Any]:
        try:
            return await call_api(self.http, self.settings, self.tokens, path, payload, **upload)
        except WechatApiError as exc:
            if exc.errcode in OUT_OF_WINDOW and path == "message/custom/send":
                raise _OutOfWindow(str(exc)) from None
            if exc.errcode in GONE:
                async with self.database.session() as session:
                    await mark_unreachable(session, CHANNEL, openid, f"wechat {exc.errcode}",
                                           self.clock.now())
            raise _Refused(str(exc), exc.errcode) from None


class _OutOfWindow(Exception):
    pass


class _Refused(Unreachable):
    """WeChat refused the call with ``errcode``."""

    def __init__(self, reason: str, errcode: int) -> None:
        super().__init__(reason)
        self.errcode = errcode


def _cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, with "…" where it was cut."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


# --- the webhook -----------------------------------------------------------------------------


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

    def routes(self) -> list[Route]:
        return [Route(self.settings.path, self.get, methods=["GET"]),
                Route(self.settings.path, self.post, methods=["POST"]),
                Route(self.consents.path, self.consents.page, methods=["GET"])]

    async def get(self, request: Request) -> Response:
        """Answer WeChat's URL check with ``echostr`` (plain even in safe mode)."""
        query = request.query_params
        if not self._signed(query.get("signature"), query.get("timestamp"), query.get("nonce")):
            return PlainTextResponse("forbidden", status_code=403)
        return PlainTextResponse(query.get("echostr", ""))

    async def post(self, request: Request) -> Response:
        """Verify, decrypt, answer one message."""
        query = request.query_params
        timestamp, nonce = query.get("timestamp"), query.get("nonce")
        if not self._signed(query.get("signature"), timestamp, nonce):
            return PlainTextResponse("forbidden", status_code=403)
        try:
            body = await _read_body(request)
            safe = query.get("encrypt_type", "").lower() == "aes"
            fields = parse_xml(body)
            if safe:
                fields = parse_xml(self._decrypt(fields, query.get("msg_signature"),
                                                 str(timestamp), str(nonce)).encode("utf-8"))
            incoming = to_incoming(fields)
        except Forbidden:
            return PlainTextResponse("forbidden", status_code=403)
        except BadRequest as exc:
            log.info("wechat webhook: bad request (%s)", exc)
            return PlainTextResponse("bad request", status_code=400)
        if incoming is None:
            return PlainTextResponse("success")
        texts, rest = await self._answer(incoming)
        if not texts:
            return PlainTextResponse("success", background=rest)
        reply = TextReply(source=fields["ToUserName"], target=incoming.user_id,
                          content=_cdata(texts[0]), time=int(self.clock.now().timestamp()))
        xml = reply.render()
        if safe and self.crypto is not None:
            stamp = str(int(self.clock.now().timestamp()))
            xml = self.crypto.encrypt_message(xml, str(nonce), stamp)
        return Response(xml, media_type="application/xml", background=rest)

    def _signed(self, signature: str | None, timestamp: str | None, nonce: str | None) -> bool:
        return verify_signature(self.settings.token, signature, timestamp, nonce,
                                now=self.clock.now(),
                                window_seconds=self.settings.replay_window_seconds)

    def _decrypt(self, fields: Mapping[str, str], msg_signature: str | None, timestamp: str,
                 nonce: str) -> str:
        if self.crypto is None:
            raise BadRequest("safe mode message but no wechat.encoding_aes_key")
        encrypt = fields.get("Encrypt", "")
        if not encrypt:
            raise BadRequest("safe mode message without Encrypt")
        if not verify_signature(self.settings.token, msg_signature, timestamp, nonce,
                                now=self.clock.now(),
                                window_seconds=self.settings.replay_window_seconds,
                                encrypt=encrypt):
            raise Forbidden
        try:
            # The signature is checked above in constant time, so the cipher is used directly.
            return str(PrpCrypto(self.crypto.key).decrypt(encrypt, self.settings.app_id))
        except Exception as exc:  # bad base64, padding, length or app id: all "not ours"
            raise BadRequest("cannot decrypt") from exc

    async def _answer(self, incoming: Incoming) -> tuple[list[str], BackgroundTask | None]:
        """The passive text, and a task sending the rest after the HTTP answer.

        If the conversation is slower than ``wechat.reply_deadline_ms``, the answer is
        "success" now and the replies follow as customer-service messages.
        """
        task = asyncio.ensure_future(self.assistant.handle(incoming))
        try:
            replies = await asyncio.wait_for(asyncio.shield(task),
                                             self.settings.reply_deadline_ms / 1000)
        except TimeoutError:
            log.warning("wechat %s: answer slower than %d ms, sent as customer-service message",
                        _short(incoming.user_id), self.settings.reply_deadline_ms)
            late = asyncio.ensure_future(self._send_late(task, incoming))
            self._late.add(late)
            late.add_done_callback(self._late.discard)
            return [], None
        texts = render_replies(replies, consent_link=self.consents.link_for(incoming.user_id))
        images = _images(replies)
        if len(texts) <= 1 and not images:
            return texts, None
        return texts[:1], BackgroundTask(self._send_rest, incoming, texts[1:], images)

    async def _send_late(self, task: asyncio.Future[list[Reply]], incoming: Incoming) -> None:
        try:
            replies = await task
            await self._send_rest(incoming, render_replies(
                replies, consent_link=self.consents.link_for(incoming.user_id)), _images(replies))
        except Exception:  # a background task: log it here, nobody awaits its result
            log.exception("wechat %s: late answer failed", _short(incoming.user_id))

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
        except (Unreachable, TryLater, _OutOfWindow) as exc:
            # Not lost silently: logged; the citizen saw the first part and can ask again.
            log.warning("wechat %s: rest of an answer not sent: %s", _short(incoming.user_id), exc)

    async def drain(self) -> None:
        """Wait for answers that are still being sent (shutdown, tests)."""
        while self._late:
            await asyncio.gather(*list(self._late), return_exceptions=True)


def _images(replies: Sequence[Reply]) -> list[Attachment]:
    """The attachments WeChat can show: images, sent as customer-service messages. Other files
    (.ics, spreadsheets) cannot be sent; their replies say so or carry the details as text."""
    return [r.attachment for r in replies
            if r.attachment is not None and r.attachment.mime in IMAGE_TYPES]


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if _digits(declared, 20) and int(declared) > MAX_BODY:
        raise BadRequest("body too large")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                raise BadRequest("body too large")
    except ClientDisconnect:
        raise BadRequest("client went away") from None
    if not body:
        raise BadRequest("empty body")
    return bytes(body)


# --- wiring ----------------------------------------------------------------------------------


@dataclasses.dataclass
class WechatChannel:
    """The WeChat channel as ``yuyue run`` holds it."""

    webhook: WechatWebhook
    sender: WechatSender
    tokens: AccessTokens
    http: httpx.AsyncClient
    owns_http: bool = True

    def webhook_routes(self) -> list[Route]:
        return self.webhook.routes()

    async def close(self) -> None:
        await self.webhook.drain()
        if self.owns_http:
            await self.http.aclose()


class _RedactAccessToken(logging.Filter):
    """httpx logs each request's URL, and WeChat wants the access token in the query string."""

    _pattern = re.compile(r"access_token=[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(self._pattern.sub("access_token=***", str(a))
                                if "access_token=" in str(a) else a for a in record.args)
        if isinstance(record.msg, str) and "access_token=" in record.msg:
            record.msg = self._pattern.sub("access_token=***", record.msg)
        return True


def redact_access_tokens(logger_name: str = "httpx") -> None:
    """Keep access tokens out of the HTTP client's log lines (once per logger)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, _RedactAccessToken) for f in logger.filters):
        logger.addFilter(_RedactAccessToken())


def build_wechat(app: Any, assistant: Conversation, *,
                 http: httpx.AsyncClient | None = None) -> WechatChannel:
    """The channel from ``app`` (``bot.wiring.App``: settings, database, clock)."""
    settings: WechatSettings = app.settings.wechat
    if not settings.token:
        raise ValueError("wechat.token (YUYUE_WECHAT__TOKEN) is not set")
    if settings.encoding_aes_key and len(settings.encoding_aes_key) != 43:
        raise ValueError("wechat.encoding_aes_key must be the 43 characters WeChat shows")
    redact_access_tokens()
    client = http or httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
    tokens = AccessTokens(settings, app.database, app.clock, client)
    consents = Consents(settings, app.database, app.clock, key=app.centre.hasher.derive(CONSENT_KEY),
                        locale=app.settings.general.locale)
    sender = WechatSender(settings, app.database, app.clock, client, tokens,
                          timezone=app.settings.general.timezone, consents=consents)
    webhook = WechatWebhook(settings, assistant, app.clock, app.database, sender,
                            consents=consents)
    return WechatChannel(webhook=webhook, sender=sender, tokens=tokens, http=client,
                         owns_http=http is None)


def webhook_routes(app: Any, assistant: Conversation) -> list[Route]:
    """The webhook's routes, for ``build_web_app`` (the sender is built alongside)."""
    return build_wechat(app, assistant).webhook_routes()


async def create_menu(settings: Any, http: httpx.AsyncClient, *,
                      tokens: AccessTokens | None = None) -> None:
    """Create the custom menu 预约办事 / 我的预约 / 办事指南 / 人工服务 (CLICK keys book, my,
    guide, human), replacing the current one.

    ``settings`` is the whole ``Settings`` or its ``wechat`` section. Without ``tokens`` the
    token is taken from the stable-token endpoint in normal mode, which returns the token
    the running processes hold instead of replacing it.

    Raises:
        WechatApiError: WeChat refused the menu (e.g. 48001: the account may not have menus).
        TryLater: network trouble.
    """
    wechat: WechatSettings = getattr(settings, "wechat", settings)
    buttons = [{"type": "click", "name": name, "key": key} for row in MENU for name, key in row]
    payload = {"button": buttons}
    if tokens is None:
        token, _ = await _StandaloneToken(wechat, http).fetch()
        data = await _post(http, wechat.api_base_url, "menu/create", payload, token)
        if int(data.get("errcode") or 0):
            raise WechatApiError("menu/create", int(data["errcode"]), str(data.get("errmsg", "")))
        return
    await call_api(http, wechat, tokens, "menu/create", payload)


@dataclasses.dataclass
class _StandaloneToken:
    settings: WechatSettings
    http: httpx.AsyncClient

    async def fetch(self) -> tuple[str, int]:
        if not (self.settings.app_id and self.settings.app_secret):
            raise ValueError("wechat.app_id and YUYUE_WECHAT__APP_SECRET must be set")
        data = await _post(self.http, self.settings.api_base_url, "stable_token",
                                {"grant_type": "client_credential", "appid": self.settings.app_id,
                                 "secret": self.settings.app_secret, "force_refresh": False})
        if data.get("errcode"):
            raise WechatApiError("stable_token", int(data["errcode"]), str(data.get("errmsg", "")))
        return str(data["access_token"]), int(data.get("expires_in", 0))
