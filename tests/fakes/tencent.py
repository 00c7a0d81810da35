"""What the fake WeChat and WeCom API servers share: the ``cgi-bin`` route, the call log,
the access tokens and the scripted errcodes."""

from __future__ import annotations

import itertools
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any, Self

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from wechatpy.utils import WeChatSigner

from tests.fakes import Calls, LocalServer


@dataclass
class ApiCall:
    path: str
    access_token: str | None
    body: dict[str, Any]
    errcode: int


def sign(*parts: str) -> str:
    """A callback signature as the platform computes it (wechatpy's signer)."""
    signer = WeChatSigner()
    signer.add_data(*parts)
    return str(signer.signature)


class CgiFake(Calls):
    """A fake ``/cgi-bin/<path>`` server; ``calls`` lists every request in order. A subclass
    answers in ``_endpoint``."""

    def __init__(self, *, expires_in: int = 7200) -> None:
        super().__init__()
        self.expires_in = expires_in
        self.calls: list[ApiCall] = []
        self.valid: set[str] = set()
        self.current: str | None = None
        self.scripted: dict[str, deque[int]] = defaultdict(deque)
        self.uploads: dict[str, tuple[str, bytes, str]] = {}     # media_id -> the file
        self._serial = itertools.count(1)
        self.server = LocalServer(Starlette(routes=[
            Route("/cgi-bin/{path:path}", self._endpoint, methods=["POST", "GET"])]))

    async def __aenter__(self) -> Self:
        await self.server.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    async def _endpoint(self, request: Request) -> Response:
        raise NotImplementedError

    def fail_next(self, path: str, *errcodes: int) -> None:
        """Answer the next calls to ``path`` ("message/send") with these errcodes."""
        self.scripted[path].extend(errcodes)

    def sent(self, path: str) -> list[dict[str, Any]]:
        """Bodies of the successful calls to ``path``."""
        return [c.body for c in self.calls if c.path == path and c.errcode == 0]

    def count(self, path: str) -> int:
        return sum(1 for c in self.calls if c.path == path)
