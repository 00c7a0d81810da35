"""Benchmark of the manager figures: seed a million appointments once, then time /stats month.

    .venv/bin/python -m bench.stats_bench --url sqlite+aiosqlite:////tmp/yuyue_stats_bench.db
    .venv/bin/python -m bench.stats_bench \
        --url postgresql+asyncpg://postgres@127.0.0.1:55432/yuyue_bench_stats

The database is migrated and seeded (demo catalog, ``storage.seed.seed_history``) only when it
holds no appointments yet; later runs reuse it. "Now" is fixed (Friday 2026-11-20 16:00,
Shanghai) so every run asks the same question. Each figure is timed ``--runs`` times in a fresh
read transaction; the median and the 90th percentile are printed (the machine is shared: compare
within a run).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from storage import migrate
from storage.catalog import load_catalog, read_catalog
from storage.centre import Centre
from storage.db import Database
from storage.identity import IdHasher
from storage.models import Appointment, Service
from storage.seed import seed_history
from storage.settings import RuleSettings
from storage.stats.exports import appointment_rows
from storage.stats.figures import figures
from storage.stats.periods import parse_period, resolve_scope
from storage.stats.series import daily_series
from storage.workdays import WorkCalendar

ROOT = Path(__file__).resolve().parent.parent
TZ = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 11, 20, 16, 0, tzinfo=TZ)
TARGETS = {"postgresql": 1.0, "sqlite": 3.0}


def bench_centre() -> Centre:
    return Centre(calendar=WorkCalendar(), tz=TZ, rules=RuleSettings(),
                  hasher=IdHasher(b"benchmark-only-key-0123456789"))


async def ensure_seeded(database: Database, centre: Centre, appointments: int, seed: int) -> None:
    await migrate.upgrade(database)
    async with database.session() as session:
        if not await session.scalar(select(func.count()).select_from(Service)):
            await load_catalog(session, read_catalog(ROOT / "catalog" / "demo.toml"), NOW)
        present = await session.scalar(select(func.count()).select_from(Appointment))
    if present:
        print(f"already seeded: {present} appointments")
        return
    started = time.perf_counter()
    report = await seed_history(database, centre, NOW, appointments, seed,
                                progress=lambda line: print(
                                    f"  {time.perf_counter() - started:6.1f} s  {line}",
                                    flush=True))
    print("seeded:", report.summary())


async def timed(database: Database, runs: int,
                work: Callable[[Any], Awaitable[object]]) -> list[float]:
    times = []
    for _ in range(runs):
        async with database.read() as session:
            started = time.perf_counter()
            await work(session)
            times.append(time.perf_counter() - started)
    return times


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


async def main(url: str, appointments: int, runs: int, seed: int) -> int:
    database = Database(url)
    centre = bench_centre()
    try:
        await ensure_seeded(database, centre, appointments, seed)
        month = parse_period("month", NOW, TZ)
        checks = {}

        async def month_figures(session: Any) -> object:
            result = await figures(session, centre, NOW, month)
            checks["month"] = result
            return result

        async def export_month(session: Any) -> object:
            return sum([1 async for _ in appointment_rows(session, centre, month)])

        cases: list[tuple[str, Callable[[Any], Awaitable[object]], int]] = [
            ("figures month", month_figures, runs),
            ("figures week", lambda s: figures(s, centre, NOW, parse_period("week", NOW, TZ)),
             runs),
            ("figures month, one service", lambda s: _scoped(s, centre, month, "id_card"), runs),
            ("daily series month (chart)", lambda s: daily_series(s, centre, month), runs),
            ("export rows month", export_month, max(1, runs // 3)),
        ]
        print(f"database: {database.dialect}; now {NOW.isoformat()}; month {month.label}")
        target = TARGETS.get(database.dialect, 1.0)
        medians = {}
        for name, work, count in cases:
            times = await timed(database, count, work)
            medians[name] = statistics.median(times)
            print(f"{name:30s} median {statistics.median(times) * 1000:8.1f} ms   "
                  f"p90 {p90(times) * 1000:8.1f} ms   ({count} runs)", flush=True)
        result = checks["month"]
        cur = result.current  # type: ignore[attr-defined]
        print(f"month: {cur.bookings.total} bookings, {cur.appointments.scheduled} scheduled, "
              f"no-show rate {cur.appointments.no_show_rate:.1%}, utilisation "
              f"{cur.seats.utilisation:.1%}; parts add up: "
              f"{not result.problems()}")  # type: ignore[attr-defined]
        ok = medians["figures month"] < target
        print(f"target: figures month under {target:.0f} s on {database.dialect}: "
              f"{'met' if ok else 'NOT met'}")
        return 0 if ok else 1
    finally:
        await database.dispose()


async def _scoped(session: Any, centre: Centre, period: Any, code: str) -> object:
    return await figures(session, centre, NOW, period, await resolve_scope(session, code))


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="database URL (SQLite file or PostgreSQL)")
    parser.add_argument("--appointments", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    return asyncio.run(main(args.url, args.appointments, args.runs, args.seed))


if __name__ == "__main__":
    raise SystemExit(run())
