"""Benchmark: the WeChat webhook in safe mode, next to a bare endpoint on the same server.

The server (a child process, uvicorn, one worker) serves the product's web app with the real
WeChat route and conversation engine on a fresh database, plus ``/bare``: an endpoint that only
decrypts the message and encrypts a fixed reply with wechatpy. N concurrent clients on
127.0.0.1 post safe-mode messages built as WeChat builds them (each client is one citizen going
round the menus); the same clients then do the same against ``/bare``. The ratio between the
two is the figure: what verification, parsing, the conversation and its database transaction
cost on top of the unavoidable crypto. The run is bounded by a message count and a time limit.

    .venv/bin/python bench/wechat_webhook.py [--clients 8] [--messages 400] [--seconds 30]
        [--database-url postgresql+asyncpg://...]      (default: a temporary SQLite file)

Prints a markdown table. Its "server CPU" column is the server process's CPU time (all threads)
per answered message: on a shared machine it moves much less than the latencies do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from wechatpy.crypto import WeChatCrypto  # noqa: E402

# Messages are built as WeChat builds them by the same code as `yuyue bench rush-chat`.
from bot.bench_chat import (  # noqa: E402
    AES_KEY,
    APP_ID,
    TOKEN,
    bench_settings,
    encrypted_request,
    free_port,
    serve_wechat,
    wait_ready,
)

# One citizen's round: greet (main menu), 1 (book: departments), 1 (services), back to the menu.
ROUND = ("你好", "1", "1", "菜单")


# --- the server (child process) ------------------------------------------------------------------


def serve(port: int, database_url: str) -> None:
    """Run the web app with the WeChat route and /bare on 127.0.0.1:``port``."""
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    from bot.wiring import build_app
    from storage import migrate
    from storage.catalog import load_catalog, read_catalog

    settings = bench_settings(database_url)

    async def prepare() -> None:
        app = await build_app(settings)
        await migrate.upgrade(app.database)
        async with app.database.session() as session:
            await load_catalog(session, read_catalog(ROOT / "catalog" / "demo.toml"),
                               app.clock.now())
        await app.close()

    asyncio.run(prepare())
    crypto = WeChatCrypto(TOKEN, AES_KEY, APP_ID)
    reply = ("<xml><ToUserName><![CDATA[o]]></ToUserName><FromUserName><![CDATA[gh]]>"
             "</FromUserName><CreateTime>0</CreateTime><MsgType><![CDATA[text]]></MsgType>"
             "<Content><![CDATA[ok]]></Content></xml>")

    async def bare(request: Request) -> Response:
        query = request.query_params
        body = await request.body()
        try:
            crypto.decrypt_message(body, query["msg_signature"], query["timestamp"],
                                   query["nonce"])
        except Exception:  # the bare endpoint only needs to tell good from bad
            return PlainTextResponse("bad", status_code=400)
        return Response(crypto.encrypt_message(reply, query["nonce"], query["timestamp"]),
                        media_type="application/xml")

    async def cpu(_request: Request) -> Response:
        # CPU seconds of this process, every thread (SQLite's run in threads): what the server
        # spent, which a busy shared machine changes less than it changes latency.
        return PlainTextResponse(repr(time.process_time()))

    asyncio.run(serve_wechat(settings, port, [Route("/bare", bare, methods=["POST"]),
                                              Route("/cpu", cpu, methods=["GET"])]))


# --- the clients ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    name: str
    latencies: list[float]
    errors: int
    elapsed: float
    server_cpu: float = 0.0      # CPU seconds the server process spent during the run

    def row(self) -> str:
        ordered = sorted(self.latencies)
        if not ordered:
            return f"| {self.name} | 0 | - | - | - | - | {self.errors} |"
        p50 = statistics.median(ordered) * 1000
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        cpu = self.server_cpu / len(ordered) * 1000
        return (f"| {self.name} | {len(ordered)} | {len(ordered) / self.elapsed:.0f} | "
                f"{p50:.1f} | {p99:.1f} | {cpu:.1f} | {self.errors} |")

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


async def load(base: str, path: str, clients: int, messages: int, seconds: float,
               name: str) -> Result:
    """``clients`` concurrent citizens post until ``messages`` are answered or time is up."""
    ids = itertools.count(int(time.time() * 1000) * 100)
    nonces = itertools.count(1000000)
    latencies: list[float] = []
    errors = 0
    left = messages

    async def citizen(index: int, http: httpx.AsyncClient) -> None:
        nonlocal errors, left
        openid = f"oBench{index:04d}{name[:1]}"
        for text in itertools.cycle(ROUND):
            if left <= 0 or time.perf_counter() > deadline:
                return
            left -= 1
            query, body = encrypted_request(openid, text, next(ids), str(next(nonces)))
            started = time.perf_counter()
            try:
                response = await http.post(path, params=query, content=body)
                ok = response.status_code == 200 and "<Encrypt>" in response.text
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

    async with contextlib.AsyncExitStack() as stack:
        # Every client is made before the first request: making one takes tens of milliseconds
        # (its TLS context), which would otherwise count in the first answers' latency.
        connections = [await stack.enter_async_context(httpx.AsyncClient(base_url=base, timeout=10))
                 for _ in range(clients)]
        cpu_before = await server_cpu(base)
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(citizen(i, http) for i, http in enumerate(connections)))
        elapsed = time.perf_counter() - started
    return Result(name, latencies, errors, elapsed, await server_cpu(base) - cpu_before)


async def server_cpu(base: str) -> float:
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        return float((await http.get("/cpu")).text)


async def run(args: argparse.Namespace) -> None:
    workdir = tempfile.mkdtemp(prefix="yuyue-bench-")
    url = args.database_url or f"sqlite+aiosqlite:///{workdir}/bench.db"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", str(port), url, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        try:
            await wait_ready(base, child)
        except RuntimeError as problem:   # the server did not start or answer: say so, no traceback
            raise SystemExit(str(problem)) from None
        # As many clients as the run: the database connections it needs are open before it starts.
        await load(base, "/wechat", args.clients, 4 * args.clients, 10, "warmup")
        bare = await load(base, "/bare", args.clients, args.messages, args.seconds, "bare")
        full = await load(base, "/wechat", args.clients, args.messages, args.seconds, "wechat")
    finally:
        child.terminate()
        await asyncio.wait_for(child.wait(), 10)
    database = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"WeChat webhook, safe mode, {args.clients} concurrent clients on 127.0.0.1, "
          f"{database}, {os.cpu_count()} CPUs\n")
    print("| endpoint | messages | msgs/s | p50 ms | p99 ms | server CPU ms/msg | errors |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(bare.row().replace("| bare |", "| bare: wechatpy decrypt + encrypt |"))
    print(full.row().replace("| wechat |", "| /wechat: verify, decrypt, engine, DB, encrypt |"))
    if bare.rate and full.rate:
        print(f"\nRatio /wechat : bare = {full.rate / bare.rate:.2f} of the throughput.")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--messages", type=int, default=400, help="per endpoint")
    parser.add_argument("--seconds", type=float, default=30, help="time limit per endpoint")
    parser.add_argument("--database-url", default="")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
