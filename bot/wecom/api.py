"""WeCom's server API (qyapi.weixin.qq.com): the shared access token and the calls made with it.

- ``WecomTokens(settings, database, clock, http, *, owner=None)``: ``get(rejected=None)``; the
  token lives in the database with its expiry, so every ``yuyue run`` process and the CLI use
  one token, and one process at a time asks for a new one (a lease row).
- ``call_api(tokens, method, path, payload=None, *, query=None, files=None)``: one call with the
  shared token; a token WeCom rejects (40014 invalid, 42001 expired) is refreshed once and the
  call made again; 45009/45033 (over the rate or concurrency limit) and system busy are
  ``TryLater``; any other errcode is ``WecomApiError``.

The access token travels in the query string; ``bot.wechat.api.redact_access_tokens`` keeps it
out of httpx's log lines.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from bot.channels import TryLater, Unreachable
from bot.tencent import Files, cgi_request
from storage.clock import Clock
from storage.db import Database
from storage.settings import WecomSettings
from storage.shared import read_value, release_lease, take_lease, write_value

log = logging.getLogger("yuyue.wecom")

# errcodes: https://developer.work.weixin.qq.com/document/path/90313
TOKEN_INVALID = {40014, 42001}          # invalid / expired access token
BUSY = {-1, 45009, 45033}               # system busy / over the call rate / too many at once
IP_NOT_TRUSTED = 60020                  # this server's address is not in 企业可信IP
TOKEN_REFRESH_BEFORE = dt.timedelta(minutes=5)
TOKEN_LEASE_TIME = dt.timedelta(seconds=30)



class WecomApiError(Exception):
    """WeCom answered with an errcode that a retry will not mend."""

    def __init__(self, path: str, errcode: int, errmsg: str) -> None:
        super().__init__(f"{path}: errcode {errcode} ({errmsg[:120]})")
        self.errcode = errcode


class WecomTokens:
    """The app's access token, kept in the database and shared by every process.

    WeCom's gettoken returns the same token while it is valid, so a lost cache costs one call
    and invalidates nothing; a token WeCom rejected is replaced by asking again.
    """

    def __init__(self, settings: WecomSettings, database: Database, clock: Clock,
                 http: httpx.AsyncClient, *, owner: str | None = None,
                 wait: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 max_waits: int = 100) -> None:
        self.settings, self.database, self.clock, self.http = settings, database, clock, http
        self.owner = owner or f"{socket.gethostname()[:40]}:{os.getpid()}:{id(self):x}"[:80]
        self.key = f"wecom.access_token:{settings.corp_id}:{settings.agent_id}"[:80]
        self.lease = f"wecom.access_token.lease:{settings.agent_id}"[:80]
        self._wait, self._max_waits = wait, max_waits
        self._local = asyncio.Lock()

    async def get(self, *, rejected: str | None = None) -> str:
        """A valid access token; ``rejected`` is one WeCom just refused (40014/42001).

        Raises:
            TryLater: no token could be had (WeCom down, or the refresher takes too long).
            Unreachable: corp_id or the secret is not set, or WeCom refuses them.
        """
        for _ in range(self._max_waits):
            now = self.clock.now()
            current = await self._stored(now, rejected)
            if current is not None and current[1] - now > TOKEN_REFRESH_BEFORE:
                return current[0]
            async with self._local:
                if await self._take_lease():
                    try:
                        return await self._refresh(rejected)
                    finally:
                        await self._release_lease()
            if current is not None:
                return current[0]       # someone else is refreshing; this one is still valid
            await self._wait(0.1)
        raise TryLater("no WeCom access token: the refresher did not finish", retry_after=30)

    async def _stored(self, now: dt.datetime, rejected: str | None) -> tuple[str, dt.datetime] | None:
        async with self.database.read() as session:
            row = await read_value(session, self.key)
        if row is None or not row.value or row.value == rejected or row.expires_at is None \
                or row.expires_at <= now:
            return None
        return row.value, row.expires_at

    async def _take_lease(self) -> bool:
        async with self.database.session() as session:
            return await take_lease(session, self.lease, self.owner, self.clock.now(),
                                    TOKEN_LEASE_TIME)

    async def _release_lease(self) -> None:
        async with self.database.session() as session:
            await release_lease(session, self.lease, self.owner, self.clock.now())

    async def _refresh(self, rejected: str | None) -> str:
        now = self.clock.now()
        current = await self._stored(now, rejected)
        if current is not None and current[1] - now > TOKEN_REFRESH_BEFORE:
            return current[0]           # refreshed by another process while we waited
        if not (self.settings.corp_id and self.settings.secret):
            raise Unreachable("wecom.corp_id / YUYUE_WECOM__SECRET are not set")
        data = await cgi_request(self.http, self.settings.api_base, "GET", "gettoken", None,
                                 query={"corpid": self.settings.corp_id,
                                        "corpsecret": self.settings.secret})
        errcode = int(data.get("errcode") or 0)
        if errcode in (40001, 40013, 40091):    # wrong secret / corp id: set-up, not a hiccup
            log.error("WeCom refused the app's credentials (errcode %s): check wecom.corp_id "
                      "and YUYUE_WECOM__SECRET", errcode)
            raise Unreachable(f"gettoken: errcode {errcode}")
        if errcode:
            raise TryLater(f"gettoken: errcode {errcode}", retry_after=60)
        try:
            token, expires_in = str(data["access_token"]), int(data["expires_in"])
        except (KeyError, TypeError, ValueError):
            raise TryLater("gettoken: answer without a token") from None
        async with self.database.session() as session:
            await write_value(session, self.key, token, now,
                              expires_at=now + dt.timedelta(seconds=expires_in))
        log.info("wecom access token refreshed, valid %d s", expires_in)
        return token


async def call_api(tokens: WecomTokens, method: str, path: str,
                   payload: Mapping[str, Any] | None = None, *,
                   query: Mapping[str, str] | None = None,
                   files: Files | None = None) -> dict[str, Any]:
    """Call ``path`` with the shared token; a rejected token is refreshed once.

    Raises:
        WecomApiError: WeCom answered with another non-zero errcode.
        TryLater: network trouble, or WeCom over its limits or busy.
        Unreachable: the app's credentials are not set or refused.
    """
    base = tokens.settings.api_base
    token = await tokens.get()
    data = await cgi_request(tokens.http, base, method, path, payload, token, query=query,
                             files=files)
    if int(data.get("errcode") or 0) in TOKEN_INVALID:
        token = await tokens.get(rejected=token)
        data = await cgi_request(tokens.http, base, method, path, payload, token, query=query,
                                 files=files)
    errcode = int(data.get("errcode") or 0)
    if errcode in BUSY:
        raise TryLater(f"{path}: errcode {errcode}", retry_after=60)
    if errcode == IP_NOT_TRUSTED:
        log.error("WeCom refused a call from this server's address (60020): add it to the app's "
                  "企业可信IP (docs/wecom.md)")
    if errcode:
        raise WecomApiError(path, errcode, str(data.get("errmsg", "")))
    return data
