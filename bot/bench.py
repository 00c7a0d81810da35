"""Benchmarks behind ``yuyue bench``: the 08:00 release rush, the availability menu, and one
chat message end to end. Each runs on a throwaway database it migrates itself; figures are
medians and percentiles of one run (the machine is shared, so compare within a run).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from handlers.core import Incoming
from handlers.engine import Assistant
from storage import booking, migrate
from storage.catalog import load_catalog, parse_catalog, read_catalog
from storage.centre import Centre
from storage.clock import ManualClock
from storage.db import Database
from storage.identity import PersonDetails, find_or_create_person
from storage.models import Appointment, Base, Channel, Service, Slot
from storage.refusals import BookingRefused, Refusal
from storage.settings import Settings
from storage.slots import availability, ensure_slots

START = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))

# Bounds of `yuyue bench booking` (a benchmark is bounded in count and in processes).
MAX_USERS = 100_000
MAX_PROCESSES = 16
MAX_CONCURRENCY = 500
MAX_PGBENCH_SECONDS = 600

RUSH_CATALOG = """
[departments.hall]
name = "大厅"
address = "人民路1号"
[services.rush]
department = "hall"
name = "热门号"
place = "1号窗口"
slot_minutes = 30
capacity = {capacity}
online_share = 1.0
hours = {{ default = ["09:00-10:00"] }}
rules = {{ max_active_bookings = 1, booking_stop = "" }}
[[services.rush.materials]]
name = "身份证"
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "median_ms": statistics.median(values) * 1000 if values else 0.0,
            "p99_ms": percentile(values, 0.99) * 1000}


async def fresh_database(url: str) -> Database:
    """Empty the given database (creating it if needed) and migrate it; never real data."""
    database = Database(url, pool_size=20)
    if not database.is_sqlite:
        await _create_postgres_database(url)
    async with database.engine.begin() as connection:
        if database.is_sqlite:
            for table in reversed(Base.metadata.sorted_tables):
                await connection.execute(text(f'DROP TABLE IF EXISTS "{table.name}"'))
            await connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
        else:
            await connection.execute(text("DROP SCHEMA public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    await migrate.upgrade(database)
    return database


async def _create_postgres_database(url: str) -> None:
    parsed = make_url(url)
    admin = Database(parsed.set(database="postgres").render_as_string(hide_password=False))
    try:
        async with admin.engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            exists = await connection.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                             {"name": parsed.database})
            if not exists:
                await connection.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    finally:
        await admin.dispose()


@dataclass(frozen=True)
class RushResult:
    dialect: str
    users: int
    seats: int
    booked: int
    full: int
    errors: int
    seconds: float
    latency: dict[str, float]
    overbooked: bool
    client_cpu_ms: float = 0.0   # the booking processes' CPU per attempt (steadier than time)

    @property
    def per_second(self) -> float:
        return (self.booked + self.full) / self.seconds if self.seconds else 0.0


Outcome = tuple[list[float], dict[str, int], float, float, float]


def _rush_worker(url: str, centre: Centre, slot_ids: list[int], jobs: list[tuple[int, int]],
                 concurrency: int, ready: Any) -> Outcome:
    """One process of the rush: its own event loop and connections, like one `yuyue run`."""
    return asyncio.run(_rush_in_process(url, centre, slot_ids, jobs, concurrency, ready))


async def _rush_in_process(url: str, centre: Centre, slot_ids: list[int], jobs: list[tuple[int, int]],
                           concurrency: int, ready: Any = None) -> Outcome:
    """Returns the latencies, the outcomes, when this process began and finished (wall
    clock, comparable between processes) and the CPU time it spent."""
    database = Database(url, pool_size=concurrency)
    async with database.read() as session:   # connect and warm up before the clock starts
        await session.execute(select(func.count()).select_from(Slot))
    # Every process starts at the same moment, after all have started up: the 08:00 release.
    # (a barrier: on a loaded machine starting a process can take longer than any fixed delay,
    # and a late one would stretch the run's time while the other ran alone)
    if ready is not None:
        await asyncio.to_thread(ready.wait, 120)
    now = START
    latencies: list[float] = []
    outcomes = {"booked": 0, "full": 0, "error": 0}
    queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def worker() -> None:
        while not queue.empty():
            index, person_id = queue.get_nowait()
            began = time.perf_counter()
            try:
                async with database.session() as session:
                    await booking.book(session, centre, now, person_id=person_id,
                                       slot_id=slot_ids[index % len(slot_ids)], identity_id=None,
                                       channel=Channel.WECHAT, made_by="bench")
                outcomes["booked"] += 1
            except BookingRefused as refused:
                outcomes["full" if refused.reason == Refusal.FULL else "error"] += 1
            except Exception:  # a benchmark counts failures instead of stopping
                outcomes["error"] += 1
            latencies.append(time.perf_counter() - began)

    began, cpu = time.time(), time.process_time()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await database.dispose()
    return latencies, outcomes, began, time.time(), time.process_time() - cpu


async def booking_rush(url: str, centre: Centre, *, users: int, seats: int,
                       concurrency: int = 32, processes: int = 1) -> RushResult:
    """``users`` citizens try to book ``seats`` seats released at 08:00, ``concurrency`` at
    once in each of ``processes`` processes (several `yuyue run` share one database)."""
    database = await fresh_database(url)
    clock = ManualClock(START)
    try:
        async with database.session() as session:
            per_slot = max(1, -(-seats // 2))
            await load_catalog(session, parse_catalog(RUSH_CATALOG.format(capacity=per_slot)), clock.now())
            service = (await session.scalars(select(Service))).one()
            await ensure_slots(session, centre, service, clock.now())
            slots = (await session.scalars(select(Slot).where(
                Slot.local_date == START.date() + dt.timedelta(days=1)).order_by(Slot.starts_at))).all()
            slot_ids = [s.id for s in slots]
            capacity = sum(s.online_capacity for s in slots)
            people = [(await find_or_create_person(session, PersonDetails("市民", f"13{n:09d}"),
                                                   centre.hasher, clock.now())).id for n in range(users)]
    finally:
        await database.dispose()
    jobs = list(enumerate(people))
    shares = [jobs[i::processes] for i in range(processes)]
    if processes == 1:
        results = [await _rush_in_process(url, centre, slot_ids, jobs, concurrency)]
    else:
        context = multiprocessing.get_context("spawn")
        with context.Manager() as manager, concurrent.futures.ProcessPoolExecutor(
                processes, mp_context=context) as pool:
            ready = manager.Barrier(processes)   # passed once every process has connected
            loop = asyncio.get_running_loop()
            results = await asyncio.gather(*(loop.run_in_executor(
                pool, _rush_worker, url, centre, slot_ids, share, concurrency, ready)
                for share in shares))
    elapsed = max(r[3] for r in results) - min(r[2] for r in results)
    latencies = [x for r in results for x in r[0]]
    totals = {key: sum(r[1][key] for r in results) for key in ("booked", "full", "error")}
    database = Database(url)
    try:
        async with database.read() as session:
            stored = await session.scalar(select(func.count()).select_from(Appointment))
            over = await session.scalar(select(func.count()).select_from(Slot).where(
                Slot.booked + Slot.held > Slot.online_capacity))
    finally:
        await database.dispose()
    return RushResult(database.dialect, users, capacity, totals["booked"], totals["full"],
                      totals["error"], elapsed, summary(latencies),
                      bool(over) or stored != totals["booked"] or stored > capacity,
                      sum(r[4] for r in results) * 1000 / max(1, len(latencies)))


async def availability_bench(url: str, centre: Centre, catalog_path: Path, rounds: int = 200) -> dict[str, float]:
    """Time the 7-day availability menu of a demo service with some seats taken."""
    database = await fresh_database(url)
    clock = ManualClock(START.replace(hour=9))
    try:
        async with database.session() as session:
            await load_catalog(session, read_catalog(catalog_path), clock.now())
            service = await session.scalar(select(Service).where(Service.code == "id_card"))
            assert service is not None
            await ensure_slots(session, centre, service, clock.now())
            for slot in (await session.scalars(select(Slot).where(Slot.service_id == service.id))).all():
                slot.booked = slot.id % (slot.online_capacity + 1)
        timings = []
        for _ in range(rounds):
            began = time.perf_counter()
            async with database.read() as session:
                await availability(session, centre, service, clock.now())
            timings.append(time.perf_counter() - began)
        return summary(timings)
    finally:
        await database.dispose()


async def message_bench(url: str, centre: Centre, catalog_path: Path, settings: Settings,
                        journeys: int = 20) -> dict[str, float]:
    """Time every message of whole booking journeys through the conversation engine."""
    database = await fresh_database(url)
    clock = ManualClock(START.replace(hour=9))
    try:
        async with database.session() as session:
            await load_catalog(session, read_catalog(catalog_path), clock.now())
        assistant = Assistant(database=database, centre=centre, clock=clock, settings=settings)
        timings: list[float] = []

        async def send(user: str, **fields: Any) -> None:
            began = time.perf_counter()
            await assistant.handle(Incoming(channel="wechat", user_id=user, chat_id=user, **fields))
            timings.append(time.perf_counter() - began)

        # One journey first, not timed: the first look at each day makes its slots (once a day
        # in real use), which is not what a message costs.
        for warm in ("1", "1", "1", "1", "1"):
            await assistant.handle(Incoming(channel="wechat", user_id="warm-up", chat_id="w", text=warm))
        for n in range(journeys):
            user = f"bench-{n}"
            ids = _id_number(n)
            for step in ("1", "1", "1", "1", str(1 + n % 4), str(1 + n % 15), "1", "张三",
                         f"139{n:08d}", ids, "1"):
                await send(user, text=step)
        return summary(timings)
    finally:
        await database.dispose()


def _id_number(n: int) -> str:
    from storage.identity import id_check_digit

    first = f"110105198{n % 10}0101{n % 1000:03d}"
    return first + id_check_digit(first)


def pgbench_tps(url: str, seconds: int = 10, clients: int = 8) -> float | None:
    """PostgreSQL's own TPC-B-like rate on the same server, in a scratch database."""
    binary = shutil.which("pgbench") or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))), None)
    if binary is None:
        return None
    parsed = make_url(url)
    env = {**os.environ, "PGHOST": parsed.host or "127.0.0.1", "PGPORT": str(parsed.port or 5432),
           "PGUSER": parsed.username or "postgres", "PGPASSWORD": parsed.password or ""}
    scratch = (parsed.database or "postgres") + "_pgbench"
    subprocess.run(["psql", "-d", "postgres", "-qc", f'DROP DATABASE IF EXISTS "{scratch}"'],
                   env=env, capture_output=True, check=False)
    subprocess.run(["psql", "-d", "postgres", "-qc", f'CREATE DATABASE "{scratch}"'],
                   env=env, capture_output=True, check=True)
    subprocess.run([binary, "-i", "-q", "-s", "1", scratch], env=env, capture_output=True, check=True)
    result = subprocess.run([binary, "-c", str(clients), "-j", "2", "-T", str(seconds), scratch],
                            env=env, capture_output=True, text=True, check=True)
    subprocess.run(["psql", "-d", "postgres", "-qc", f'DROP DATABASE IF EXISTS "{scratch}"'],
                   env=env, capture_output=True, check=False)
    match = re.search(r"tps = ([\d.]+)", result.stdout)
    return float(match.group(1)) if match else None


def temporary_sqlite_url() -> str:
    folder = Path(tempfile.mkdtemp(prefix="yuyue-bench-"))
    return f"sqlite+aiosqlite:///{folder / 'bench.db'}"

