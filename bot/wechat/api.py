"""WeChat's server API: the shared access token and the calls made with it.

wechatpy is synchronous and its client fetches the access token from a fixed URL; the few
endpoints needed (stable_token, message/custom/send, message/template/send,
message/template/subscribe, media/upload, menu/create) are called here with
``httpx.AsyncClient`` at ``wechat.api_base_url`` so tests reach a fake server.

- ``AccessTokens(settings, database, clock, http, *, owner=None)``: ``get(rejected=None)``.
- ``call_api(tokens, path, payload)``: one call with the shared token (and the tokens' HTTP
  client and settings); a rejected token is refreshed once.
- ``redact_access_tokens()``: keeps tokens out of httpx's log lines.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import re
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from bot.channels import TryLater, Unreachable
from bot.tencent import Files, cgi_request
from bot.wechat.failures import FailureLog
from storage.clock import Clock
from storage.db import Database
from storage.settings import WechatSettings
from storage.shared import read_value, release_lease, take_lease, write_value

log = logging.getLogger(__name__)

TOKEN_KEY = "wechat.access_token"
TOKEN_LEASE = "wechat.access_token.lease"
# In normal mode the stable-token endpoint hands out a new token during the last 5 minutes of
# the old one (both stay valid meanwhile); earlier calls return the same token.
TOKEN_REFRESH_BEFORE = dt.timedelta(minutes=5)
TOKEN_LEASE_TIME = dt.timedelta(seconds=30)

# errcodes: https://developers.weixin.qq.com/doc/offiaccount/Getting_Started/Global_Return_Code
TOKEN_INVALID = {40001, 40014, 42001}        # invalid / expired access token
OUT_OF_WINDOW = {45015, 45047}               # past the 48 hours / too many messages in it
GONE = {40003, 43004, 43019}                 # bad openid / not following / blocked us
NO_CONSENT_LEFT = {43101}                    # a one-time subscription used up or withdrawn
BUSY = {-1, 45009, 45011, 45033}             # system busy / rate limits
# What is wrong when WeChat refuses the access token, and what to do about it.
TOKEN_FIXES = {
    40125: "the AppSecret is wrong: set YUYUE_WECHAT__APP_SECRET to the one in 基本配置",
    40013: "the AppID is wrong: set wechat.app_id to the one in 基本配置",
    40164: "this server's outgoing IP address is not in 基本配置 → IP白名单: add it",
    40243: "the AppSecret is frozen: unfreeze it in 基本配置",
    89503: "WeChat wants an administrator to confirm this IP address: add it to IP白名单",
}




class WechatApiError(Exception):
    """WeChat answered with a non-zero errcode."""

    def __init__(self, path: str, errcode: int, errmsg: str) -> None:
        super().__init__(f"{path}: errcode {errcode} ({errmsg})")
        self.errcode = errcode



class TokenRefused(TryLater):
    """WeChat refused the access token (``errcode``: 40125 wrong AppSecret, 40164 IP not
    allowed...); tried again later, as the fix is a setting someone may be making now."""

    def __init__(self, reason: str, errcode: int) -> None:
        super().__init__(reason, retry_after=60)
        self.errcode = errcode


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
        self.failures = FailureLog(log, clock)

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

    async def check(self) -> int:
        """Fetch a token from WeChat to prove the AppID, AppSecret and IP allow-list (the
        stable-token endpoint returns the token the processes hold: nothing is invalidated).

        Returns:
            How many seconds the token is valid.

        Raises:
            TryLater: WeChat refused (its errcode and what to do in the message) or was not
                reached.
            Unreachable: the AppID or AppSecret is not set.
        """
        return (await self._fetch(force=False))[1]

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
        try:
            data = await cgi_request(self.http, self.settings.api_base_url, "POST",
                                     "stable_token", payload)
        except TryLater as failure:
            self.failures.warn("stable_token network", f"wechat access token not fetched: {failure}")
            raise
        try:
            errcode = int(data.get("errcode") or 0)
        except (TypeError, ValueError):
            errcode = -1
        if errcode:
            # Nothing reaches a citizen outside a conversation until this is fixed: say so
            # loudly, once per reason and period, with what to do.
            reason = f"stable_token: errcode {errcode} ({str(data.get('errmsg', ''))[:200]})"
            self.failures.warn(f"stable_token {errcode}",
                               f"wechat access token refused: {reason}"
                               + (f"; {TOKEN_FIXES[errcode]}" if errcode in TOKEN_FIXES else ""))
            raise TokenRefused(reason, errcode)
        try:
            return str(data["access_token"]), int(data["expires_in"])
        except (KeyError, TypeError, ValueError):
            raise TryLater("stable_token: answer without a token") from None


async def call_api(tokens: AccessTokens, path: str, payload: Mapping[str, Any] | None, *,
                   files: Files | None = None,
                   query: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Call an API with the shared token; a rejected token is refreshed once and retried.

    Raises:
        WechatApiError: WeChat answered with another non-zero errcode.
        TryLater: network trouble, or WeChat busy.
    """
    base_url = tokens.settings.api_base_url
    token = await tokens.get()
    data = await cgi_request(tokens.http, base_url, "POST", path, payload, token,
                             files=files, query=query)
    if int(data.get("errcode") or 0) in TOKEN_INVALID:
        token = await tokens.get(rejected=token)
        data = await cgi_request(tokens.http, base_url, "POST", path, payload, token,
                             files=files, query=query)
    errcode = int(data.get("errcode") or 0)
    if errcode in BUSY:
        raise TryLater(f"{path}: errcode {errcode}", retry_after=60)
    if errcode:
        raise WechatApiError(path, errcode, str(data.get("errmsg", "")))
    return data



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
