"""The scheduler: APScheduler runs a few periodic jobs; what is due lives in the database.

There is no job per reminder (a pickled job store loses jobs when functions are renamed and
cannot be shared by processes): reminders are outbox rows, and the dispatcher job sends what is
due. Every job is idempotent, so several `yuyue run` processes can run them side by side.
Missed runs (the process was down) are caught up once at start instead of skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.dispatch import Dispatcher
from bot.wiring import App
from storage import attendance, case_jobs, complaints, control, conversations, jobs, resource_closures, waitlist

log = logging.getLogger("yuyue.scheduler")

SWEEP_SECONDS = 60
# At shutdown the job runs in hand get this long to finish before they are cancelled (well
# inside the ten seconds Docker and most supervisors wait between SIGTERM and SIGKILL).
SHUTDOWN_GRACE_SECONDS = 5.0
Escalate = Callable[..., Awaitable[int]]   # storage.handoffs.escalate_overdue


class Jobs:
    """The periodic jobs, each one transaction (or, for dispatch, a few)."""

    def __init__(self, app: App, dispatcher: Dispatcher, escalate: Escalate | None = None) -> None:
        self.app = app
        self.dispatcher = dispatcher
        self.escalate = escalate
        # Held while a job runs, so shutdown can let the one in hand finish (a dispatch round
        # cut off between sending and recording would send its rows again after a restart).
        self.busy = asyncio.Lock()
        self.closing = False    # shutting down: a run that has not begun yet does nothing

    async def finish(self) -> None:
        """Wait for the job in hand, if any (call after pausing the scheduler); a run that
        begins after this does nothing."""
        self.closing = True
        async with self.busy:
            pass

    async def dispatch(self) -> None:
        """Send every notification that is due."""
        async with self.busy:
            if not self.closing:
                await self.dispatcher.drain()

    async def sweep(self) -> None:
        """Move offers and holds that ran out, no-shows, ratings due, released days, unanswered
        offers of a doctor's 停诊, old message ids, overdue requests, the cases' reminders,
        escalations and 回访 (限时办结), and the month's sample of resolved complaints for the
        supervisors' 回访."""
        async with self.busy:
            if not self.closing:
                await self._sweep()

    async def _sweep(self) -> None:
        app, now = self.app, self.app.clock.now()
        settings = app.settings
        async with app.database.session() as session:
            # Staff offers to move a booking (/move) unanswered by their deadline lapse first,
            # so they are recorded and staff told, before their held seats are swept.
            await control.lapse_move_offers(session, now)
        async with app.database.session() as session:
            await waitlist.expire_holds(session, app.centre, now)
        async with app.database.session() as session:
            await attendance.sweep_no_shows(session, app.centre, now)
        async with app.database.session() as session:
            await jobs.request_ratings(session, app.centre, now,
                                       settings.notifications.rating_delay_minutes)
            await jobs.notify_releases(session, app.centre, now)
        async with app.database.session() as session:  # a doctor's 停诊: unanswered 替诊/换诊
            await resource_closures.settle_offers(session, app.centre, now)
        async with app.database.session() as session:
            await case_jobs.remind_due_cases(session, app.centre, now)
            await case_jobs.escalate_overdue_cases(session, app.centre, now,
                                                   supervisors=settings.access.supervisors)
            await case_jobs.remind_uncollected(session, app.centre, now)
            await case_jobs.request_followups(session, app.centre, now)
            # Once a month: resolved complaints picked for the supervisors' 回访.
            await complaints.sample_followups(session, app.centre, now,
                                              size=settings.complaints.followup_sample)
            # Message ids seen longer ago than the de-duplication window count no more.
            await conversations.forget_processed(session, now)
        if self.escalate is not None:
            async with app.database.session() as session:
                await self.escalate(session, app.centre, now,
                                    escalate_minutes=settings.conversation.handoff_escalate_minutes,
                                    supervisors=settings.access.supervisors)

    async def digest(self) -> None:
        """The daily staff digest."""
        async with self.busy:
            if self.closing:
                return
            async with self.app.database.session() as session:
                await jobs.staff_digest(session, self.app.centre, self.app.clock.now())


def build_scheduler(app: App, job_set: Jobs) -> AsyncIOScheduler:
    """The scheduler with its jobs, not started."""
    settings = app.settings
    tz = settings.general.timezone
    scheduler = AsyncIOScheduler(timezone=tz, executors={"default": _Runs()}, job_defaults={
        # A run missed while the process was down is made up once at start, however late
        # (APScheduler's default grace of one second would skip it).
        "coalesce": True, "max_instances": 1, "misfire_grace_time": None})
    scheduler.add_job(_guarded(job_set.dispatch), IntervalTrigger(
        seconds=settings.notifications.dispatch_interval_seconds, timezone=tz), id="dispatch")
    scheduler.add_job(_guarded(job_set.sweep), IntervalTrigger(seconds=SWEEP_SECONDS, timezone=tz),
                      id="sweep")
    if settings.notifications.staff_digest is not None:
        at = settings.notifications.staff_digest
        scheduler.add_job(_guarded(job_set.digest), CronTrigger(hour=at.hour, minute=at.minute,
                                                                 timezone=tz), id="digest")
    return scheduler


async def stop_scheduler(scheduler: AsyncIOScheduler, job_set: Jobs,
                         grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
    """Stop the scheduler in order, before the database is disposed: no new runs; the runs
    in hand finish (up to ``grace`` seconds, then they are cancelled), and every run's task
    has ended, so none still holds a pooled connection when the engine is disposed.

    AsyncIOScheduler.shutdown alone is not that: it runs at the next loop iteration and
    cancels the job runs' tasks without waiting for them; a run submitted just before the
    stop began after it and was cut off mid-statement."""
    scheduler.pause()
    job_set.closing = True     # a run due but not begun yet does nothing (it is not cancelled)
    runs = scheduler._lookup_executor("default")
    # The dispatch round in hand records what it sent.
    finishing = asyncio.ensure_future(job_set.finish())
    if isinstance(runs, _Runs):
        await runs.settle(grace, finishing)
    else:
        await asyncio.wait({finishing}, timeout=grace)
        finishing.cancel()
    await asyncio.gather(finishing, return_exceptions=True)
    scheduler.shutdown(wait=False)


class _Runs(AsyncIOExecutor):
    """APScheduler's asyncio executor, whose job runs (tasks) can be awaited at shutdown:
    its own shutdown only cancels them, without waiting."""

    async def settle(self, grace: float, finishing: asyncio.Future[None]) -> None:
        runs = {run for run in self._pending_futures if not run.done()}
        _, late = await asyncio.wait({finishing, *runs}, timeout=grace)
        if late:
            log.warning("shutdown: %d job run(s) still busy after %.0f s, cancelled",
                        len(late - {finishing}), grace)
            for run in late:
                run.cancel()
        await asyncio.gather(finishing, *runs, return_exceptions=True)


def _guarded(job: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """A job that fails logs why and runs again next time (the scheduler keeps going)."""

    async def run() -> None:
        try:
            await job()
        except Exception as error:
            log.error("job %s failed: %s", job.__name__, type(error).__name__)
        except asyncio.CancelledError:
            # Only stop_scheduler cancels a run (past its grace): it was logged there, and
            # APScheduler would log a traceback for a run that ends cancelled.
            log.warning("job %s cut off by the shutdown", job.__name__)

    run.__name__ = job.__name__
    return run
