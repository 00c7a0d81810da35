"""Benchmark: 10,000 reminders due at once, sent through the real dispatcher and Telegram sender
to the fake Bot API on 127.0.0.1, which answers 429 above 30 messages a second (and above one a
second per chat), as Telegram does.

The figure is the total time against the 10,000 / 30 s bound, with duplicates and losses, and the
CPU the storm took per 1,000 messages (this process: the dispatcher and the sender; the fake
Bot API runs in a process of its own, as Telegram is not on our machine, unless
``--same-process``), which says whether a machine with a core to spare would keep to the bound
when this one (shared, loaded) does not.

    python -m bench.reminder_storm [--reminders 10000] [--url DATABASE-URL] [--same-process]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import multiprocessing
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select

from bot.dispatch import Dispatcher
from bot.telegram import build_telegram
from bot.wiring import App
from handlers.engine import Assistant
from storage import migrate
from storage.catalog import load_catalog, read_catalog
from storage.clock import SystemClock
from storage.db import Database
from storage.models import (
    Appointment,
    AppointmentStatus,
    Channel,
    ChannelIdentity,
    Outbox,
    OutboxStatus,
    Person,
    Service,
    Slot,
)
from storage.settings import NotificationSettings, Settings, TelegramSettings
from storage.slots import ensure_slots
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import ROOT, make_centre

FIRST_CHAT = 7_000_000_000


async def prepare(url: str, reminders: int) -> None:
    """One appointment per citizen tomorrow, each with a reminder due now (bulk inserts)."""
    database = Database(url)
    now = dt.datetime.now(dt.UTC)
    centre = make_centre()
    try:
        await migrate.upgrade(database)
        async with database.session() as session:
            await load_catalog(session, read_catalog(ROOT / "catalog" / "demo.toml"), now)
            service = await session.scalar(select(Service).where(Service.code == "internal_medicine"))
            assert service is not None
            await ensure_slots(session, centre, service, now)
            target = await session.scalar(select(Slot).where(Slot.service_id == service.id,
                                                             Slot.starts_at > now + dt.timedelta(hours=3))
                                          .order_by(Slot.starts_at))
            assert target is not None
            people = [{"name": "市民", "mobile": f"13{n:09d}", "created_at": now, "updated_at": now}
                      for n in range(reminders)]
            await session.execute(insert(Person), people)
            person_ids = (await session.scalars(select(Person.id).order_by(Person.id))).all()
            await session.execute(insert(ChannelIdentity), [
                {"channel": Channel.TELEGRAM, "platform_user_id": str(FIRST_CHAT + n),
                 "person_id": person_ids[n], "locale": "zh-CN", "created_at": now}
                for n in range(reminders)])
            identity_ids = (await session.scalars(select(ChannelIdentity.id).order_by(ChannelIdentity.id))).all()
            await session.execute(insert(Appointment), [
                {"code": f"B{n:05d}", "person_id": person_ids[n], "service_id": service.id,
                 "slot_id": target.id, "identity_id": identity_ids[n], "local_date": target.local_date,
                 "starts_at": target.starts_at, "ends_at": target.ends_at,
                 "status": AppointmentStatus.BOOKED, "channel": Channel.TELEGRAM, "offline": False,
                 "made_by": "bench", "reschedules": 0, "created_at": now, "updated_at": now}
                for n in range(reminders)])
            appointment_ids = (await session.scalars(select(Appointment.id).order_by(Appointment.id))).all()
            await session.execute(insert(Outbox), [
                {"kind": "reminder", "dedup_key": f"bench:{n}", "identity_id": identity_ids[n],
                 "appointment_id": appointment_ids[n], "payload": {"label": "120m"}, "due_at": now,
                 "expires_at": target.starts_at, "status": OutboxStatus.PENDING, "attempts": 0,
                 "created_at": now} for n in range(reminders)])
    finally:
        await database.dispose()


@dataclasses.dataclass
class FakeApi:
    """What the benchmark needs of the fake Bot API, wherever it runs."""

    token: str
    base_url: str
    base_file_url: str


def _fake_process(pipe: Connection) -> None:
    """The fake Bot API in a process of its own (as Telegram is not in ours): it says where it
    listens, serves until told to stop, then says what it received."""

    async def serve() -> None:
        async with FakeTelegram(enforce_rate=True) as api:
            pipe.send(FakeApi(api.token, api.base_url, api.base_file_url))
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
            pipe.send((_received(api), api.rate_refusals))

    asyncio.run(serve())


def _received(api: FakeTelegram) -> dict[int, int]:
    return dict(collections.Counter(c.chat_id for c in api.calls_to("sendMessage") if c.ok))


@contextlib.asynccontextmanager
async def fake_api(same_process: bool) -> AsyncIterator[tuple[FakeApi, Callable[[], Any]]]:
    """The fake Bot API and a call that stops it and returns (messages per chat, 429s)."""
    if same_process:
        async with FakeTelegram(enforce_rate=True) as api:
            yield (FakeApi(api.token, api.base_url, api.base_file_url),
                   lambda: (_received(api), api.rate_refusals))
        return
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_fake_process, args=(theirs,))
    process.start()
    try:
        where = await asyncio.get_running_loop().run_in_executor(None, ours.recv)

        def stop() -> Any:
            ours.send("stop")
            return ours.recv()

        yield where, stop
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.kill()


async def run(url: str, reminders: int, same_process: bool = False) -> dict[str, float]:
    await prepare(url, reminders)
    async with fake_api(same_process) as (api, stop):
        settings = dataclasses.replace(
            Settings(), telegram=TelegramSettings(token=api.token, base_url=api.base_url,
                                                  base_file_url=api.base_file_url),
            notifications=NotificationSettings(batch_size=500))
        database = Database(url, pool_size=10)
        centre = make_centre()
        app = App(settings=settings, database=database, centre=centre, clock=SystemClock())
        assistant = Assistant(database=database, centre=centre, clock=app.clock, settings=settings)
        channel = build_telegram(app, assistant)
        await channel.start()
        dispatcher = Dispatcher(database=database, centre=centre, settings=settings, clock=app.clock,
                                senders={"telegram": channel.sender}, concurrency=64)
        began, cpu_began = time.perf_counter(), time.process_time()
        while True:
            report = await dispatcher.drain()
            async with database.read() as session:
                left = await session.scalar(select(func.count()).select_from(Outbox).where(
                    Outbox.status.in_([OutboxStatus.PENDING, OutboxStatus.SENDING])))
            if not left:
                break
            if not report.claimed:
                await asyncio.sleep(0.2)   # retries wait for their back-off time
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu_began
        async with database.read() as session:
            sent = await session.scalar(select(func.count()).select_from(Outbox).where(
                Outbox.status == OutboxStatus.SENT))
        await channel.close()
        await database.dispose()
        chats, refused = stop()
        bound = reminders / 30
        return {"reminders": reminders, "seconds": elapsed, "bound": bound,
                "over_bound": elapsed / bound - 1, "sent": sent or 0,
                "delivered": sum(chats.values()), "duplicates": sum(n - 1 for n in chats.values()),
                "lost": reminders - len(chats), "refused_429": refused,
                "cpu_per_1000": cpu / reminders * 1000, "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reminders", type=int, default=10_000)
    parser.add_argument("--url", help="scratch database (default: a temporary SQLite file)")
    parser.add_argument("--same-process", action="store_true",
                        help="run the fake Bot API in this process (its CPU then counts as ours)")
    args = parser.parse_args()
    url = args.url or f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp()) / 'storm.db'}"
    result = asyncio.run(run(url, args.reminders, args.same_process))
    print(f"| {result['reminders']} reminders | {result['seconds']:.1f} s | bound {result['bound']:.1f} s | "
          f"{result['over_bound'] * 100:+.1f}% | delivered {result['delivered']} | duplicates "
          f"{result['duplicates']} | lost {result['lost']} | 429 answers {result['refused_429']} | "
          f"CPU {result['cpu_per_1000']:.1f} s per 1,000 | load {result['load']:.1f} |")


if __name__ == "__main__":
    main()
