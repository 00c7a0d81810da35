"""Small fake platform servers for the tests, served over real HTTP on 127.0.0.1.

``LocalServer`` runs any ASGI app on a random local port inside the test's event loop;
``FakeTime`` is a clock and sleep function for code that waits (rate limiters), so tests move
time instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import socket
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

Files = dict[str, tuple[str, bytes, str]]       # field -> (filename, content, content type)


def read_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], Files]:
    """The fields and files of a multipart/form-data body, as an HTTP client sent them."""
    parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    fields: dict[str, str] = {}
    files: Files = {}
    for part in parsed.iter_parts():
        name = str(part.get_param("name", header="content-disposition"))
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            files[name] = (filename, payload, part.get_content_type())
        else:
            fields[name] = payload.decode()
    return fields, files


class Calls:
    """What a fake API shares: a signal on every call, so tests await what they expect."""

    def __init__(self) -> None:
        self._called = asyncio.Event()   # set on every API call: tests await it, never poll

    def called(self) -> None:
        self._called.set()

    async def until(self, condition: Callable[[], bool], seconds: float) -> None:
        """Wait until ``condition()`` holds, checking after every API call (a guard of
        ``seconds``, not a pause: it returns as soon as the condition holds)."""
        async with asyncio.timeout(seconds):
            while not condition():
                self._called.clear()
                await self._called.wait()


class _QuietServer(uvicorn.Server):
    """uvicorn's server, stopped when told rather than noticed: uvicorn looks at ``should_exit``
    every 0.1 s and pauses 0.1 s more on the way out, which per fake server and test added up to
    minutes of the suite spent sleeping."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.stopping = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The test runner owns the signals; a fake server must not take Ctrl-C or SIGTERM.
        yield

    async def main_loop(self) -> None:
        await self.on_tick(0)                 # the Date and Server headers
        await self.stopping.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()             # idle ones close now, busy ones after answering
        # Done as soon as every connection has closed and every answer has gone (looked at
        # after 1 ms, then less and less often); an answer still running after the grace period
        # is cancelled, as uvicorn does.
        pause = 0.001
        try:
            async with asyncio.timeout(self.config.timeout_graceful_shutdown):
                while self.server_state.connections or self.server_state.tasks:
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 0.1)
        except TimeoutError:
            for task in self.server_state.tasks:
                task.cancel(msg="the fake server stopped")
        for server in self.servers:
            await server.wait_closed()


class LocalServer:
    """An ASGI app served on 127.0.0.1 at a random free port."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.port = 0
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        # The socket listens before uvicorn runs, so clients can connect at once: the kernel
        # queues them until the server accepts (no waiting for "started").
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Answers leave at once instead of waiting on delayed ACKs (40 ms per call otherwise).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", ws="none",
                                access_log=False, timeout_graceful_shutdown=5)
        self._server = _QuietServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            self._server.stopping.set()
            await self._task

    async def __aenter__(self) -> LocalServer:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()


class FakeTime:
    """A monotonic clock that moves only when someone sleeps on it (or the test advances it).

    A sleeper moves the clock to its wake-up time at once and lets other tasks run; code that
    waits in a loop (``while (wait := delay()) > 0: await sleep(wait)``) recomputes from the
    moved clock, so concurrent waiters do not add their waits up.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.value = start
        self.slept: list[float] = []

    def now(self) -> float:
        return self.value

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.value += max(0.0, seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.value += seconds
