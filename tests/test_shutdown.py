"""`yuyue run` stopping: the scheduler's job runs end (bounded) before the database is disposed,
so no connection is still in use, or closed while cancelled, when the engine and the event
loop go (a "Exception closing connection ... CancelledError" traceback at SIGTERM)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import pytest
from sqlalchemy import text

from bot.scheduler import Jobs, build_scheduler, stop_scheduler
from bot.wiring import App


class HoldingDispatcher:
    """A dispatch round that holds a pooled connection until ``go`` is set."""

    def __init__(self, app: App) -> None:
        self.database = app.database
        self.holding = asyncio.Event()
        self.go = asyncio.Event()
        self.rounds = 0
        self.ended = 0
        self.cancelled = 0

    async def drain(self) -> None:
        self.rounds += 1
        try:
            async with self.database.read() as session:
                await session.execute(text("SELECT 1"))
                self.holding.set()
                await self.go.wait()
                await session.execute(text("SELECT 1"))
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.ended += 1


def checked_out(app: App) -> int:
    return app.database.engine.pool.checkedout()  # type: ignore[attr-defined]


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def dispatch_now(app: App, holder: HoldingDispatcher) -> tuple[Jobs, object]:
    jobs = Jobs(app, holder)  # type: ignore[arg-type]
    scheduler = build_scheduler(app, jobs)
    scheduler.start()
    scheduler.get_job("dispatch").modify(next_run_time=dt.datetime.now(app.settings.general.timezone))
    return jobs, scheduler


async def test_a_run_in_hand_ends_before_the_scheduler_is_stopped(
        app: App, caplog: pytest.LogCaptureFixture) -> None:
    holder = HoldingDispatcher(app)
    jobs, scheduler = await dispatch_now(app, holder)
    async with asyncio.timeout(20):                    # a guard, not a wait for time to pass
        await holder.holding.wait()
    stopping = asyncio.create_task(stop_scheduler(scheduler, jobs))  # type: ignore[arg-type]
    holder.go.set()
    await stopping
    assert (holder.ended, holder.cancelled) == (1, 0)
    assert checked_out(app) == 0                       # the database can be disposed now
    assert tracebacks(caplog) == []


async def test_a_run_due_but_not_begun_is_not_cancelled_with_a_traceback(
        app: App, caplog: pytest.LogCaptureFixture) -> None:
    """A run submitted just before the stop. Before: pause() and the free job lock let the stop
    go on, the run began after it, and AsyncIOScheduler.shutdown (deferred to the next loop
    iteration) cancelled it mid-round without waiting: the database was disposed, and the
    event loop ended, with its connection still in use or being closed while cancelled."""
    holder = HoldingDispatcher(app)
    jobs, scheduler = await dispatch_now(app, holder)
    # The due run's task is created now (APScheduler does this at its next wake-up, a loop
    # iteration away), and the stop begins before that task's first step.
    scheduler._process_jobs()  # type: ignore[attr-defined]
    async with asyncio.timeout(20):
        await stop_scheduler(scheduler, jobs)  # type: ignore[arg-type]
    assert holder.rounds == 0                          # it did nothing: the process is stopping
    assert checked_out(app) == 0
    assert tracebacks(caplog) == []


async def test_a_run_stuck_past_the_grace_is_cancelled_and_awaited(
        app: App, caplog: pytest.LogCaptureFixture) -> None:
    holder = HoldingDispatcher(app)                    # ``go`` is never set: stuck
    jobs, scheduler = await dispatch_now(app, holder)
    async with asyncio.timeout(20):
        await holder.holding.wait()
        await stop_scheduler(scheduler, jobs, grace=0)  # type: ignore[arg-type]
    assert (holder.ended, holder.cancelled) == (0, 1)
    assert checked_out(app) == 0                       # its connection is back in the pool
    assert tracebacks(caplog) == []
    assert any("cut off by the shutdown" in r.getMessage() for r in caplog.records)
