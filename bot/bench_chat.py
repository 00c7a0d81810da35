"""``yuyue bench rush-chat``: the release rush as citizens meet it, through the real WeChat webhook.

A child process serves the product's web app (the real WeChat route in safe mode, the real
conversation engine, a fresh database) on 127.0.0.1. N simulated citizens each walk a booking
journey to the confirmation question (greeting, service, date, slot, consent, name, mobile, ID
number), messages signed and encrypted as WeChat does; nothing of that is timed. Then all of
them answer "1" (confirm) at the same moment, and each confirm reply is timed. WeChat waits
5 seconds for a reply; the webhook answers "success" after ``wechat.reply_deadline_ms``
(4 s) and sends the reply as a customer-service message, which is counted here as late.

Bounded: at most 2,000 citizens, a time limit on the whole run, 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import itertools
import os
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import httpx
from wechatpy.crypto import PrpCrypto, WeChatCrypto
from wechatpy.utils import WeChatSigner

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from storage.clock import Clock
    from storage.settings import Settings

TOKEN = "123456"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
APP_ID = "wx49f0ab532d5d035a"
ACCOUNT = "gh_3f7badc0771f"
MAX_CITIZENS = 2000
LATE_SECONDS = 4.0          # a reply slower than this would miss WeChat's 5 s with any margin


# --- messages as WeChat sends them ----------------------------------------------------------------


def sign(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return str(signer.signature)


def encrypted_request(openid: str, text: str, msg_id: int, nonce: str,
                      offset: float = 0.0) -> tuple[dict[str, str], bytes]:
    """Query string and body of a safe-mode text message, as WeChat sends it (stamped
    ``offset`` seconds from now: the time the server's clock shows)."""
    now = str(int(time.time() + offset))
    plain = (f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA["
             f"{openid}]]></FromUserName><CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]>"
             f"</MsgType><Content><![CDATA[{text}]]></Content><MsgId>{msg_id}</MsgId></xml>")
    key = WeChatCrypto(TOKEN, AES_KEY, APP_ID).key
    encrypt = PrpCrypto(key).encrypt(plain, APP_ID).decode()
    query = {"signature": sign(TOKEN, now, nonce), "timestamp": now, "nonce": nonce,
             "openid": openid, "encrypt_type": "aes",
             "msg_signature": sign(TOKEN, now, nonce, encrypt)}
    body = (f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]>"
            f"</Encrypt></xml>").encode()
    return query, body


def reply_text(response: httpx.Response) -> str | None:
    """The decrypted passive reply (its XML), or None when there is none ("success": the
    answer goes later as a customer-service message)."""
    xml = response.text
    if response.status_code != 200 or "<Encrypt>" not in xml:
        return None
    start = xml.index("<Encrypt><![CDATA[") + len("<Encrypt><![CDATA[")
    encrypt = xml[start:xml.index("]]>", start)]
    return str(PrpCrypto(WeChatCrypto(TOKEN, AES_KEY, APP_ID).key).decrypt(encrypt, APP_ID))


# --- the server (a child process) -------------------------------------------------------------


RUSH_HOURS = '["09:00-10:00"]'


class OffsetClock:
    """The system clock moved by ``offset`` seconds: the rush happens at a fixed moment of the
    calendar (a Monday morning), whatever the day it is run."""

    def __init__(self, offset: float) -> None:
        self.offset = dt.timedelta(seconds=offset)

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC) + self.offset


def bench_settings(database_url: str) -> Settings:
    """The settings of a benchmark server: the WeChat account in safe mode with the test keys,
    its API on a port where nothing listens (no call leaves the host), ``database_url`` with a
    pool of 20, and a scratch data folder."""
    from storage.settings import Settings, WechatSettings

    settings = dataclasses.replace(Settings(), wechat=WechatSettings(
        app_id=APP_ID, app_secret="bench", token=TOKEN, encoding_aes_key=AES_KEY,
        api_base_url="http://127.0.0.1:9"))   # nothing listens there: no call leaves the host
    settings = dataclasses.replace(settings, database=dataclasses.replace(
        settings.database, url=database_url, pool_size=20))
    return dataclasses.replace(settings, general=dataclasses.replace(
        settings.general, data_dir=tempfile.mkdtemp(prefix="yuyue-bench-")))


async def serve_wechat(settings: Settings, port: int, routes: Sequence[BaseRoute] = (), *,
                       clock: Clock | None = None, backlog: int = 2048) -> None:
    """Serve the product's web app on 127.0.0.1:``port`` until stopped: the real WeChat route
    and conversation engine (``settings``, ``clock`` or the system's), plus ``routes``; one
    uvicorn worker, no access log. Both benchmark servers (``yuyue bench rush-chat`` and
    bench/wechat_webhook.py) run in it; everything stays in one event loop, as the database
    pool and the HTTP client belong to it."""
    import uvicorn

    from bot.web import build_web_app
    from bot.wechat import build_wechat
    from bot.wiring import build_app
    from handlers.engine import Assistant

    app = await build_app(settings, clock)
    assistant = Assistant(database=app.database, centre=app.centre, clock=app.clock,
                          settings=settings)
    channel = build_wechat(app, assistant)
    web = build_web_app([*channel.webhook_routes(), *routes])
    config = uvicorn.Config(web, host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, lifespan="off", ws="none", backlog=backlog)
    try:
        await uvicorn.Server(config).serve()
    finally:
        await channel.close()
        await app.close()


def serve(port: int, database_url: str, seats: int, offset: float) -> None:
    """Serve the web app with the real WeChat route on 127.0.0.1:``port`` (a fresh database
    with one service whose two slots on each released day hold ``seats`` online seats), its
    clock ``offset`` seconds from the system's."""
    from bot import bench
    from storage.catalog import load_catalog, parse_catalog

    settings = bench_settings(database_url)
    clock = OffsetClock(offset)

    async def main() -> None:
        database = await bench.fresh_database(database_url)
        try:
            async with database.session() as session:
                await load_catalog(session, parse_catalog(bench.RUSH_CATALOG.format(
                    capacity=max(1, -(-seats // 2)))), clock.now())
        finally:
            await database.dispose()
        await serve_wechat(settings, port, clock=clock, backlog=4096)

    asyncio.run(main())


# --- the citizens -------------------------------------------------------------------------------


@dataclasses.dataclass
class ChatRushResult:
    citizens: int
    seats: int
    ready: int              # citizens who reached the confirmation question
    confirmed: int          # confirm replies that gave a booking code
    late: int               # answered "success" (the reply went later as a message)
    failed: int             # no answer, an HTTP error, or a reply without a booking
    seconds: float          # first confirm sent to last reply
    latencies: list[float]
    over_limit: int         # replies that took more than LATE_SECONDS
    seats_taken: int
    overbooked: bool

    @property
    def per_second(self) -> float:
        return self.ready / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


def journey(n: int) -> tuple[str, ...]:
    """What citizen ``n`` types up to the confirmation question: hello, book, the service,
    book it, the first released day, one of its two slots, consent, name, mobile, ID number."""
    from bot.bench import _id_number

    return ("你好", "1", "1", "1", "1", str(1 + n % 2), "1", "市民", f"139{n:08d}", _id_number(n))


# The moment of the rush on the server's clock: Monday 2026-11-23 10:00 in Shanghai, two hours
# after the next day's seats were released (as in ``yuyue bench booking``).
RUSH_AT = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))


async def chat_rush(url: str, *, citizens: int, seats: int | None = None,
                    time_limit: float = 300.0, prepare_concurrency: int = 8) -> ChatRushResult:
    """Run the rush against a server in a child process on a scratch database ``url``."""
    if not 1 <= citizens <= MAX_CITIZENS:
        raise ValueError(f"citizens must be between 1 and {MAX_CITIZENS}")
    seats = citizens if seats is None else seats
    offset = RUSH_AT.timestamp() - time.time()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.bench_chat", "--serve", str(port), url, str(seats), repr(offset),
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    try:
        result = await asyncio.wait_for(
            _rush(base, child, citizens, seats, prepare_concurrency, offset), time_limit)
        # Late answers finish in the server (as customer-service messages): count the seats
        # once they are in, while the server still runs.
        return await count_seats(url, result, settle=15.0)
    finally:
        if child.returncode is None:
            child.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(child.wait(), 10)


async def _rush(base: str, child: asyncio.subprocess.Process, citizens: int, seats: int,
                prepare_concurrency: int, offset: float) -> ChatRushResult:
    await wait_ready(base, child)
    ids = itertools.count(int(time.time() * 1000) * 100)
    nonces = itertools.count(1_000_000)
    limits = httpx.Limits(max_connections=citizens + 8, max_keepalive_connections=citizens + 8)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:

        async def say(n: int, text: str) -> httpx.Response:
            query, body = encrypted_request(f"oRush{n:05d}", text, next(ids), str(next(nonces)),
                                            offset)
            return await http.post("/wechat", params=query, content=body)

        gate = asyncio.Semaphore(prepare_concurrency)

        async def prepare(n: int) -> bool:
            """Whether the citizen was asked to confirm: a late last answer ("success") counts
            as asked, the conversation having moved on (a busy machine is not a failed run)."""
            async with gate:
                response = None
                for text in journey(n):
                    response = await say(n, text)
                reply = reply_text(response) if response is not None else None
                return ("确认预约" in reply) if reply is not None else (
                    response is not None and response.text == "success")

        ready = [n for n, ok in zip(range(citizens), await asyncio.gather(
            *(prepare(n) for n in range(citizens))), strict=True) if ok]
        latencies: list[float] = []
        outcome = {"confirmed": 0, "late": 0, "failed": 0}

        async def confirm(n: int) -> None:
            began = time.perf_counter()
            try:
                response = await say(n, "1")
            except httpx.HTTPError:
                outcome["failed"] += 1
                return
            latencies.append(time.perf_counter() - began)
            reply = reply_text(response)
            if reply is None:
                outcome["late" if response.text == "success" else "failed"] += 1
            elif "预约成功" in reply:
                outcome["confirmed"] += 1
            else:
                outcome["failed"] += 1

        began = time.perf_counter()
        await asyncio.gather(*(confirm(n) for n in ready))
        seconds = time.perf_counter() - began
    return ChatRushResult(citizens, seats, len(ready), outcome["confirmed"], outcome["late"],
                          outcome["failed"], seconds, latencies,
                          sum(1 for x in latencies if x > LATE_SECONDS), 0, False)


async def count_seats(url: str, result: ChatRushResult, settle: float = 0.0) -> ChatRushResult:
    """Fill in the seats taken and whether any slot holds more than its seats (waiting up to
    ``settle`` seconds for the late answers' bookings)."""
    from sqlalchemy import func, select

    from storage.db import Database
    from storage.models import Appointment, Slot

    database = Database(url)
    try:
        end = time.perf_counter() + settle
        while True:
            async with database.read() as session:
                taken = int(await session.scalar(select(func.count()).select_from(Appointment)) or 0)
                over = await session.scalar(select(func.count()).select_from(Slot).where(
                    Slot.booked + Slot.held > Slot.online_capacity))
            if taken >= result.confirmed + result.late or time.perf_counter() > end:
                break
            await asyncio.sleep(0.5)
    finally:
        await database.dispose()
    return dataclasses.replace(result, seats_taken=taken,
                               overbooked=bool(over) or taken > result.seats)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_ready(base: str, child: asyncio.subprocess.Process, limit: float = 90) -> None:
    end = time.perf_counter() + limit
    async with httpx.AsyncClient(base_url=base, timeout=2) as http:
        while time.perf_counter() < end:
            if child.returncode is not None:
                raise RuntimeError("the benchmark server did not start")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError("the benchmark server did not answer /healthz")


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "--serve":
    serve(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]))
