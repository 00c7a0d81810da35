"""The outbox dispatcher: claims due notifications, renders them, sends them through their
channel, and records what happened.

Claiming is safe with several processes: on PostgreSQL ``SELECT ... FOR UPDATE SKIP LOCKED``
(a row claimed by one process is skipped by the others); on SQLite, where SQLAlchemy drops FOR
UPDATE, one ``UPDATE ... RETURNING`` claims the batch under SQLite's single writer lock. A
claim is a lease: a process killed mid-send leaves rows in "sending" that go back to "pending"
when the lease runs out, so nothing is lost (the one in flight may be sent twice).
Nothing is sent while a database transaction is open.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.channels import Sender, TryLater, Unreachable
from handlers.notifications import Rendered, render
from storage.centre import Centre
from storage.clock import Clock
from storage.db import Database
from storage.models import ChannelIdentity, Outbox, OutboxStatus
from storage.outbox import STAFF_TARGET, enqueue
from storage.settings import Settings

log = logging.getLogger("yuyue.dispatch")


@dataclass
class DispatchReport:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    undeliverable: int = 0
    dropped: int = 0
    outcomes: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Outcome:
    status: OutboxStatus
    error: str | None = None
    retry_after: float | None = None


class Dispatcher:
    """Sends what the outbox says is due, through ``senders`` (by channel name) and, for the
    staff group, every sender in ``staff_senders``."""

    def __init__(self, *, database: Database, centre: Centre, settings: Settings, clock: Clock,
                 senders: Mapping[str, Sender], staff_senders: Sequence[Sender] = (),
                 owner: str | None = None, concurrency: int = 16) -> None:
        self.database = database
        self.centre = centre
        self.settings = settings
        self.clock = clock
        self.senders = dict(senders)
        self.staff_senders = list(staff_senders)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.concurrency = concurrency

    async def drain(self, max_rounds: int = 1000) -> DispatchReport:
        """Dispatch rounds until nothing due is left (bounded)."""
        total = DispatchReport()
        for _ in range(max_rounds):
            report = await self.run_once()
            for name in ("claimed", "sent", "retried", "failed", "undeliverable", "dropped"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
            total.outcomes.update(report.outcomes)
            if report.claimed < self.settings.notifications.batch_size:
                break
        return total

    async def run_once(self) -> DispatchReport:
        """Claim one batch of due notifications and send them."""
        now = self.clock.now()
        ids = await self._claim(now)
        report = DispatchReport(claimed=len(ids))
        if not ids:
            return report
        gate = asyncio.Semaphore(self.concurrency)

        async def one(row_id: int) -> None:
            outcome = await self._send(row_id)
            await self._record(row_id, outcome)
            report.outcomes[row_id] = outcome.status.value
            name = {OutboxStatus.SENT: "sent", OutboxStatus.PENDING: "retried",
                    OutboxStatus.FAILED: "failed", OutboxStatus.UNDELIVERABLE: "undeliverable",
                    OutboxStatus.DROPPED: "dropped"}[outcome.status]
            setattr(report, name, getattr(report, name) + 1)

        async def in_order(row_ids: list[int]) -> None:
            # One recipient's notifications go out one after another, in the order they were
            # queued (a no-show notice before the strike warning it caused).
            async with gate:
                for row_id in row_ids:
                    await one(row_id)

        heartbeat = asyncio.create_task(self._keep_claims())
        try:
            await asyncio.gather(*(in_order(group) for group in await self._by_recipient(ids)))
        finally:
            heartbeat.cancel()
        return report

    async def _keep_claims(self) -> None:
        """Renew the lease on the rows still being sent, so a slow batch (rate limits) is
        not taken over by another process; a process that dies stops renewing."""
        lease = self.settings.notifications.claim_lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            async with self.database.session() as session:
                await session.execute(update(Outbox).where(
                    Outbox.claimed_by == self.owner, Outbox.status == OutboxStatus.SENDING)
                    .values(claimed_until=self.clock.now() + dt.timedelta(seconds=lease))
                    .execution_options(synchronize_session=False))

    async def _by_recipient(self, ids: list[int]) -> list[list[int]]:
        async with self.database.read() as session:
            rows = (await session.execute(select(Outbox.id, Outbox.identity_id, Outbox.target)
                                          .where(Outbox.id.in_(ids)).order_by(Outbox.id))).all()
        groups: dict[tuple[int | None, str | None], list[int]] = {}
        for row_id, identity_id, target in rows:
            groups.setdefault((identity_id, target), []).append(row_id)
        return list(groups.values())

    # --- claiming -------------------------------------------------------------------------------

    async def _claim(self, now: dt.datetime) -> list[int]:
        batch = self.settings.notifications.batch_size
        async with self.database.session() as session:
            # Rows left "sending" by a process that died go back in the queue.
            await session.execute(update(Outbox).where(
                Outbox.status == OutboxStatus.SENDING, Outbox.claimed_until < now)
                .values(status=OutboxStatus.PENDING).execution_options(synchronize_session=False))
            due = select(Outbox.id).where(Outbox.status == OutboxStatus.PENDING,
                                          Outbox.due_at <= now).order_by(Outbox.due_at, Outbox.id)
            lease = dt.timedelta(seconds=self.settings.notifications.claim_lease_seconds)
            claim = dict(status=OutboxStatus.SENDING, claimed_by=self.owner,
                         claimed_until=now + lease, attempts=Outbox.attempts + 1)
            if self.database.is_sqlite:
                # SQLite: one UPDATE ... RETURNING under the writer lock (FOR UPDATE is dropped).
                rows = await session.execute(update(Outbox).where(
                    Outbox.id.in_(due.limit(batch).scalar_subquery())).values(**claim)
                    .returning(Outbox.id).execution_options(synchronize_session=False))
                return sorted(rows.scalars().all())
            # PostgreSQL: rows another dispatcher has locked are skipped, not waited for.
            ids = list((await session.scalars(due.limit(batch).with_for_update(skip_locked=True))).all())
            if ids:
                await session.execute(update(Outbox).where(Outbox.id.in_(ids)).values(**claim)
                                      .execution_options(synchronize_session=False))
            return ids

    # --- sending --------------------------------------------------------------------------------

    async def _send(self, row_id: int) -> _Outcome:
        now = self.clock.now()
        async with self.database.read() as session:
            row = await session.get(Outbox, row_id)
            if row is None or row.status != OutboxStatus.SENDING or row.claimed_by != self.owner:
                return _Outcome(OutboxStatus.DROPPED, "claimed elsewhere")
            if row.expires_at is not None and row.expires_at <= now:
                return _Outcome(OutboxStatus.DROPPED, "too late")
            identity = await session.get(ChannelIdentity, row.identity_id) if row.identity_id else None
            rendered = await render(session, self.centre, self.settings, row, identity, now)
            kind, target = row.kind, row.target
        if rendered.drop:
            return _Outcome(OutboxStatus.DROPPED, rendered.drop)
        try:
            if identity is not None:
                await self._to_citizen(identity, kind, rendered)
            elif target:
                await self._to_staff(target, kind, rendered)
            else:
                return _Outcome(OutboxStatus.UNDELIVERABLE, "no recipient")
        except Unreachable as gone:
            return _Outcome(OutboxStatus.UNDELIVERABLE, str(gone)[:300] or "unreachable")
        except TryLater as later:
            return _Outcome(OutboxStatus.PENDING, str(later)[:300], later.retry_after)
        except Exception as error:  # a channel bug must not stop the other notifications
            log.warning("outbox %s (%s): %s", row_id, kind, type(error).__name__)
            return _Outcome(OutboxStatus.PENDING, type(error).__name__)
        return _Outcome(OutboxStatus.SENT)

    async def _to_citizen(self, identity: ChannelIdentity, kind: str, rendered: Rendered) -> None:
        if identity.unreachable_at is not None:
            raise Unreachable(identity.unreachable_reason or "unreachable")
        sender = self.senders.get(identity.channel)
        if sender is None:
            raise Unreachable(f"no {identity.channel} channel to send through")
        await _deliver(sender, identity.platform_user_id, rendered, kind)

    async def _to_staff(self, target: str, kind: str, rendered: Rendered) -> None:
        if target == STAFF_TARGET:
            if not self.staff_senders:
                raise Unreachable("no staff channel configured")
            failures: list[Exception] = []
            for sender in self.staff_senders:
                try:
                    await _deliver(sender, STAFF_TARGET, rendered, kind)
                except (Unreachable, TryLater) as failure:
                    failures.append(failure)
            # Once one staff channel has it, a retry would post it twice there: only when
            # every channel failed is the alert tried again (or given up).
            if len(failures) == len(self.staff_senders):
                raise failures[0]
            return
        channel, _, chat_id = target.partition(":")
        sender = self.senders.get(channel)
        if sender is None or not chat_id:
            raise Unreachable(f"no channel for {channel}")
        await _deliver(sender, chat_id, rendered, kind)

    # --- recording ------------------------------------------------------------------------------

    async def _record(self, row_id: int, outcome: _Outcome) -> None:
        now = self.clock.now()
        settings = self.settings.notifications
        async with self.database.session() as session:
            row = await session.get(Outbox, row_id, with_for_update=True)
            if row is None or row.claimed_by != self.owner:
                return
            row.last_error = outcome.error
            row.claimed_until = None
            if outcome.status != OutboxStatus.PENDING:
                row.status = outcome.status
                row.sent_at = now if outcome.status == OutboxStatus.SENT else None
                if outcome.status == OutboxStatus.UNDELIVERABLE and row.kind == "relay":
                    # A staff answer that cannot reach the citizen: its author must know.
                    await enqueue(session, kind="relay_failed", now=now, target=STAFF_TARGET,
                                  dedup_key=f"relay-failed:{row.id}",
                                  payload={**row.payload, "error": (outcome.error or "")[:200]})
                return
            if row.attempts >= settings.max_attempts:
                row.status = OutboxStatus.FAILED
                await _alert_staff_once(session, row, now)
                return
            backoff = settings.retry_base_seconds * 2 ** (row.attempts - 1)
            row.status = OutboxStatus.PENDING
            row.due_at = now + dt.timedelta(seconds=max(backoff, outcome.retry_after or 0))


async def _deliver(sender: Sender, chat_id: str, rendered: Rendered, kind: str) -> None:
    await sender.deliver(chat_id, rendered.replies, kind=kind, fields=rendered.fields)


async def _alert_staff_once(session: AsyncSession, row: Outbox, now: dt.datetime) -> None:
    """Tell staff a notification was given up on (once; never about a staff alert itself)."""
    if row.target == STAFF_TARGET:
        log.error("staff alert %s (%s) could not be delivered", row.id, row.kind)
        return
    await enqueue(session, kind="delivery_failed", now=now, target=STAFF_TARGET,
                  dedup_key=f"failed:{row.id}",
                  payload={"outbox": row.id, "kind": row.kind, "error": (row.last_error or "")[:200],
                           "attempts": row.attempts})
