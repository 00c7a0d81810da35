"""A fake WeCom group robot webhook (qyapi.weixin.qq.com/cgi-bin/webhook/send) on 127.0.0.1.

It records each message, answers ``{"errcode": 0, "errmsg": "ok"}``, refuses a wrong key with
93000, enforces the robot's 20 messages a minute with 45009 (on the clock it is given), and
plays errcodes queued with ``fail_next``.

Use: ``async with FakeWecomRobot() as robot:`` then set ``wecom.robot_webhook = robot.webhook``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes import LocalServer

KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
ERRORS = {93000: "invalid webhook url", 45009: "api freq out of limit",
          40008: "invalid message type"}


class FakeWecomRobot:
    def __init__(self, *, clock: Callable[[], float] | None = None, key: str = KEY) -> None:
        self.key = key
        self.clock = clock or time.monotonic
        self.messages: list[dict[str, Any]] = []
        self.refused: list[int] = []
        self.scripted: deque[int] = deque()
        self._accepted: deque[float] = deque()
        self.server = LocalServer(Starlette(routes=[
            Route("/cgi-bin/webhook/send", self._send, methods=["POST"])]))

    async def __aenter__(self) -> FakeWecomRobot:
        await self.server.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.server.stop()

    @property
    def webhook(self) -> str:
        return f"{self.server.url}/cgi-bin/webhook/send?key={self.key}"

    def fail_next(self, errcode: int, times: int = 1) -> None:
        self.scripted.extend([errcode] * times)

    @property
    def texts(self) -> list[str]:
        return [m[m["msgtype"]]["content"] for m in self.messages]

    def _error(self, errcode: int) -> JSONResponse:
        self.refused.append(errcode)
        return JSONResponse({"errcode": errcode, "errmsg": ERRORS.get(errcode, "error")})

    async def _send(self, request: Request) -> JSONResponse:
        if request.query_params.get("key") != self.key:
            return self._error(93000)
        if self.scripted:
            return self._error(self.scripted.popleft())
        body = await request.json()
        kind = body.get("msgtype")
        if kind not in ("text", "markdown") or not isinstance(body.get(kind), dict):
            return self._error(40008)
        now = self.clock()
        while self._accepted and self._accepted[0] <= now - 60.0:
            self._accepted.popleft()
        if len(self._accepted) >= 20:
            return self._error(45009)
        self._accepted.append(now)
        self.messages.append(body)
        return JSONResponse({"errcode": 0, "errmsg": "ok"})
