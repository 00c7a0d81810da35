"""What the WeChat Official Account and the WeCom app channels share: both are Tencent
platforms with the same callback crypto, body limits and ``cgi-bin`` JSON API.

- ``verify_signature`` / ``signature_problem``: the callback signature, checked in constant
  time with a replay window (wechatpy's ``check_signature`` compares with ``!=`` and accepts
  any timestamp).
- ``read_body``: a callback body, refused when over a limit, empty, or cut off.
- ``open_signed``: an ``Encrypt`` field's plain text once its ``msg_signature`` is checked.
- ``cgi_request``: one call to ``{base_url}/cgi-bin/{path}``; network trouble is ``TryLater``.
- ``HeldChannel`` and ``http_client``: the channel as ``yuyue run`` holds it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any, Generic, Protocol, TypeVar

import httpx
from starlette.requests import ClientDisconnect, Request
from starlette.routing import Route

from bot.channels import TryLater

Files = dict[str, tuple[str, bytes, str]]       # multipart field -> (filename, content, type)


class BadRequest(Exception):
    """The request is not a WeChat message we can read (answered 400)."""


class Forbidden(Exception):
    """The request is not signed by WeChat, or too old (answered 403)."""


# --- signatures ------------------------------------------------------------------------------


def digits(text: str, most: int) -> bool:
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
    return signature_problem(token, signature, timestamp, nonce, now=now,
                             window_seconds=window_seconds, encrypt=encrypt) is None


def signature_problem(token: str, signature: str | None, timestamp: str | None,
                      nonce: str | None, *, now: dt.datetime, window_seconds: int,
                      encrypt: str | None = None) -> str | None:
    """Why a webhook signature is refused ("unsigned", "stale timestamp", "bad signature"),
    or None when it is WeChat's and recent (checked in constant time)."""
    if not (token and signature and timestamp and nonce):
        return "unsigned"
    if not digits(timestamp, 12) or abs(now.timestamp() - int(timestamp)) > window_seconds:
        return "stale timestamp"
    parts = (token, timestamp, nonce) if encrypt is None else (token, timestamp, nonce, encrypt)
    if not hmac.compare_digest(sign(*parts).encode(), signature.strip().lower().encode()):
        return "bad signature"
    return None


# --- callbacks -------------------------------------------------------------------------------


class Cipher(Protocol):
    """wechatpy's ``PrpCrypto`` (Official Account) or its enterprise one (WeCom)."""

    def decrypt(self, text: str, receiver_id: str) -> Any: ...


async def read_body(request: Request, limit: int) -> bytes:
    """The request body.

    Raises:
        BadRequest: over ``limit`` bytes (declared or sent), empty, or the client went away.
    """
    declared = request.headers.get("content-length", "")
    if digits(declared, 20) and int(declared) > limit:
        raise BadRequest("body too large")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise BadRequest("body too large")
    except ClientDisconnect:
        raise BadRequest("client went away") from None
    if not body:
        raise BadRequest("empty body")
    return bytes(body)


def open_signed(cipher: Cipher, receiver_id: str, token: str, encrypted: str,
                signature: str | None, timestamp: str | None, nonce: str | None, *,
                now: dt.datetime, window_seconds: int) -> str:
    """The plain text of ``encrypted`` once ``signature`` (``msg_signature``) is checked.

    Raises:
        Forbidden: not signed with ``token``, or too old.
        BadRequest: not decryptable, or not for ``receiver_id`` (app id or corp id).
    """
    if not verify_signature(token, signature, timestamp, nonce, now=now,
                            window_seconds=window_seconds, encrypt=encrypted):
        raise Forbidden("bad msg_signature")
    try:
        # The signature is checked above in constant time, so the cipher is used directly.
        return str(cipher.decrypt(encrypted, receiver_id))
    except Exception as exc:  # bad base64, padding, length or receiver id: all "not ours"
        raise BadRequest("cannot decrypt") from exc


async def cgi_request(http: httpx.AsyncClient, base_url: str, method: str, path: str,
                      payload: Mapping[str, Any] | None, access_token: str | None = None, *,
                      query: Mapping[str, str] | None = None,
                      files: Files | None = None) -> dict[str, Any]:
    """GET, or POST JSON (or ``files`` as multipart), to ``{base_url}/cgi-bin/{path}``.

    Raises:
        TryLater: network trouble, HTTP 5xx or 429, or an answer that is not JSON.
    """
    url = f"{base_url.rstrip('/')}/cgi-bin/{path}"
    params = {**({"access_token": access_token} if access_token else {}), **(query or {})}
    try:
        if method == "GET":
            response = await http.get(url, params=params)
        elif files is not None:
            response = await http.post(url, params=params, files=files)
        else:
            # ensure_ascii=False: WeChat shows "\\u4f60" escapes literally in some messages.
            body = json.dumps(payload or {}, ensure_ascii=False, separators=(",", ":"))
            response = await http.post(url, params=params, content=body.encode("utf-8"),
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


# --- the channel -----------------------------------------------------------------------------


class Webhook(Protocol):
    def routes(self) -> list[Route]: ...

    async def drain(self) -> None: ...


W = TypeVar("W", bound=Webhook)
S = TypeVar("S")
T = TypeVar("T")


@dataclasses.dataclass
class HeldChannel(Generic[W, S, T]):
    """A channel's webhook, sender, access tokens and HTTP client, as ``yuyue run`` holds them."""

    webhook: W
    sender: S
    tokens: T
    http: httpx.AsyncClient
    owns_http: bool = True

    def webhook_routes(self) -> list[Route]:
        return self.webhook.routes()

    async def close(self) -> None:
        """Wait for late answers, then close the HTTP client (when the channel made it)."""
        await self.webhook.drain()
        if self.owns_http:
            await self.http.aclose()


def http_client(http: httpx.AsyncClient | None) -> httpx.AsyncClient:
    """``http``, or a new client with the APIs' timeouts."""
    return http or httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
