"""The outbox dispatcher: renders the notifications storage.outbox says are due and sends them
through their channel.

What is due, how a claim is leased, when a failure is tried again and when it is given up are
storage.outbox's policy; the dispatcher renders, sends, and hands each outcome back to it.
Nothing is sent while a database transaction is open, and nothing is sent that the claim no
longer holds: right before each send the row must be one the database last confirmed as held
(by the claim or a renewal of its lease) with at least half the lease left; otherwise the lease
is renewed first (``outbox.renew_claims``), and a row that fails that check is left to whoever
holds it now.

The database is asked little per message: a batch's rows are rendered in chunks (one read
transaction each, what the notices refer to loaded together), and the outcomes that are ready
together are recorded in one write transaction; each send waits for its outcome to be recorded
before its worker takes the next row, so no more than ``concurrency`` messages are ever sent
but not yet recorded (what a crash can send twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bot.channels import GiveUp, Sender, TryLater, Unreachable
from bot.sms import SmsSender
from handlers.notices import RENDERERS, render
from handlers.notices.base import Rendered
from storage import outbox
from storage import sms as sms_store
from storage.centre import Centre
from storage.clock import Clock
from storage.complaints import SUPERVISORS, complaint_handlers
from storage.db import Database, Session, is_outage
from storage.models import ChannelIdentity, Outbox, OutboxStatus
from storage.outbox import STAFF_TARGET, DeliveryPolicy, Outcome, SmsHook
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
    lost: int = 0              # claimed, then no longer held (a stall past the lease): not sent
    outcomes: dict[int, str] = field(default_factory=dict)


class Dispatcher:
    """Sends what the outbox says is due, through ``senders`` (by channel name) and, for the
    staff group, every sender in ``staff_senders``."""

    def __init__(self, *, database: Database, centre: Centre, settings: Settings, clock: Clock,
                 senders: Mapping[str, Sender], staff_senders: Sequence[Sender] = (),
                 owner: str | None = None, concurrency: int = 16,
                 sms: SmsSender | None = None) -> None:
        self.database = database
        self.centre = centre
        self.settings = settings
        self.clock = clock
        self.senders = dict(senders)
        self.staff_senders = list(staff_senders)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.concurrency = concurrency
        self.sms = sms      # texts to the mobile on file (storage.sms says which and when)
        self.sms_hook = SmsHook(settings.sms, centre.tz)
        notifications = settings.notifications
        self.policy = DeliveryPolicy(
            batch_size=notifications.batch_size,
            lease=dt.timedelta(seconds=notifications.claim_lease_seconds),
            max_attempts=notifications.max_attempts,
            retry_base_seconds=notifications.retry_base_seconds)
        # Seconds between renewals of a slow round's claims: three can be missed in a lease.
        self.renew_every = self.policy.lease.total_seconds() / 4

    async def drain(self, max_rounds: int = 1000) -> DispatchReport:
        """Dispatch rounds until nothing due is left (bounded)."""
        total = DispatchReport()
        for _ in range(max_rounds):
            report = await self.run_once()
            for name in ("claimed", "sent", "retried", "failed", "undeliverable", "dropped",
                         "lost"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
            total.outcomes.update(report.outcomes)
            # A chat's queued replies are claimed one per round (each after the one before it
            # is out), so a round that sent something may have made more due.
            if report.claimed < self.policy.batch_size and not report.sent:
                break
        return total

    async def run_once(self) -> DispatchReport:
        """Claim one batch of due notifications and send them."""
        now = self.clock.now()
        claim = await self._claim(now)
        report = DispatchReport(claimed=len(claim.ids))
        if not claim.ids:
            return report
        lease = _Lease(claim.token, set(claim.ids), now, now + self.policy.lease)
        groups = await self._by_recipient(claim.ids)
        ahead = _Ahead(self, lease, [row_id for group in groups for row_id in group],
                       size=min(max(self.concurrency, 8), 100))
        recorder = _Recorder(self, lease)
        gate = asyncio.Semaphore(self.concurrency)

        async def one(row_id: int) -> None:
            recorder.sending += 1
            try:
                outcome = await self._send(row_id, lease, ahead)
            finally:
                recorder.sending -= 1
            if outcome is None or not await recorder.record(row_id, outcome):
                report.lost += 1
                recorder.nudge()
                return
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

        done = asyncio.Event()
        heartbeat = asyncio.create_task(self._keep_claims(lease, done))
        try:
            await asyncio.gather(*(in_order(group) for group in groups))
        finally:
            # The heartbeat is told to stop, not cancelled: a renewal under way finishes and
            # gives its connection back before the round ends (cancelled mid-statement, the
            # pool closed that connection with a CancelledError; at shutdown, after the
            # database was disposed).
            done.set()
            await ahead.aclose()
            try:
                await heartbeat
            except Exception as error:
                log.error("claims renewal failed: %s", type(error).__name__)
        if report.lost:
            log.warning("%d notification(s) were no longer held by this process (a stall past "
                        "the %ds lease): left to the process that holds them now",
                        report.lost, self.policy.lease.total_seconds())
        return report

    async def _keep_claims(self, lease: _Lease, done: asyncio.Event) -> None:
        """Renew the lease on the rows still held, a quarter of the lease at a time, while a
        slow batch (rate limits) goes out: three renewals can be missed before one runs out.
        Returns once ``done`` is set (between renewals)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.renew_every)
            if done.is_set():
                return
            try:
                await self._renew(lease)
            except Exception as error:  # the next renewal or the fence before each send decides
                if not is_outage(error):
                    raise
                log.warning("claims not renewed: %s", type(error).__name__)

    async def _renew(self, lease: _Lease) -> None:
        async with self.database.session() as session:
            now = self.clock.now()
            until = now + self.policy.lease
            held = await outbox.renew_claims(session, lease.token, now, until)
        lease.confirm(held, now, until)      # once committed: the rows are ours until then

    async def _by_recipient(self, ids: list[int]) -> list[list[int]]:
        async with self.database.read() as session:
            return await outbox.by_recipient(session, ids)

    async def _claim(self, now: dt.datetime) -> outbox.Claim:
        async with self.database.session() as session:
            return await outbox.claim_due(session, now, self.owner, self.policy)

    async def _still_held(self, row_id: int, lease: _Lease) -> bool:
        """Fence one send: the row must be one the database last confirmed as held, with at
        least half the lease that confirmation gave still left (it covers the send); when it is
        not, the lease is renewed first (the renewal may have waited for the database)."""
        if lease.covers(row_id, self.clock.now(), self.policy.lease / 2):
            return True
        await self._renew(lease)
        return lease.covers(row_id, self.clock.now(), self.policy.lease / 2)

    # --- sending --------------------------------------------------------------------------------

    async def _prepare(self, ids: list[int], token: str) -> dict[int, Prepared]:
        """Render a chunk of claimed rows in one read transaction: for each, what to send, the
        outcome when it is not to be sent (dropped), None when the claim no longer holds it, or
        the error its rendering raised (raised again when its turn comes)."""
        now = self.clock.now()
        prepared: dict[int, Prepared] = {}
        async with self.database.read() as session:
            claimed = await outbox.to_send_many(session, ids, token, now)
            for row_id in ids:
                try:
                    prepared[row_id] = await self._render(session, claimed[row_id], now)
                except Exception as error:
                    prepared[row_id] = error
        return prepared

    async def _render(self, session: Session,
                      claimed: tuple[Outbox, ChannelIdentity | None] | Outcome | None,
                      now: dt.datetime) -> _Ready | Outcome | None:
        if claimed is None or isinstance(claimed, Outcome):
            return claimed
        row, identity = claimed
        # A text needs only its template's values: a kind no chat renderer knows (codes,
        # case notices) takes them from its payload.
        rendered = Rendered() if sms_store.is_sms(row) and row.kind not in RENDERERS else \
            await render(session, self.centre, self.settings, row, identity, now)
        mobile: str | None = None
        if sms_store.is_sms(row):
            rendered.fields = {**rendered.fields, **sms_store.payload_fields(row)}
            mobile = await sms_store.number_for(session, row)   # for this send only
        if rendered.drop:
            return Outcome(OutboxStatus.DROPPED, rendered.drop)
        return _Ready(row.kind, row.target, identity, rendered, mobile)

    async def _send(self, row_id: int, lease: _Lease, ahead: _Ahead) -> Outcome | None:
        """Send one row; None when the claim no longer holds it (not sent, nothing to record)."""
        ready = await ahead.take(row_id)
        if ready is None or isinstance(ready, Outcome):
            return ready
        if not await self._still_held(row_id, lease):
            return None
        kind, target, identity, rendered = ready.kind, ready.target, ready.identity, ready.rendered
        if target and target.startswith(sms_store.SMS_PREFIX):
            return await self._send_sms(row_id, kind, rendered, ready.mobile)
        try:
            if identity is not None:
                await self._to_citizen(identity, kind, rendered)
            elif target:
                await self._to_staff(target, kind, rendered)
            else:
                return Outcome(OutboxStatus.UNDELIVERABLE, "no recipient")
        except Exception as error:
            return _failed(error, row_id, kind)
        return Outcome(OutboxStatus.SENT)

    async def _send_sms(self, row_id: int, kind: str, rendered: Rendered,
                        mobile: str | None) -> Outcome:
        """A text: storage clears it (opt-out, quiet hours, the number's limits); the number
        is held for this send only; the provider's answer is recorded with the outcome."""
        if self.sms is None:
            return Outcome(OutboxStatus.UNDELIVERABLE, "SMS not set up")
        async with self.database.session() as session:
            cleared = await sms_store.clear_to_send(session, self.centre, row_id, mobile,
                                                    self.clock.now())
        if isinstance(cleared, Outcome):
            return cleared
        try:
            sent = await self.sms.send(cleared.mobile, kind, rendered.fields)
        except Exception as error:
            return _failed(error, row_id, f"sms {kind}")
        return Outcome(OutboxStatus.SENT, reference=sent.serial_no, units=sent.fee)

    async def _to_citizen(self, identity: ChannelIdentity, kind: str, rendered: Rendered) -> None:
        if identity.unreachable_at is not None:
            raise Unreachable(identity.unreachable_reason or "unreachable")
        sender = self.senders.get(identity.channel)
        if sender is None:
            raise Unreachable(f"no {identity.channel} channel to send through")
        await _deliver(sender, identity.platform_user_id, rendered, kind)

    async def _to_staff(self, target: str, kind: str, rendered: Rendered) -> None:
        if target == SUPERVISORS:
            await self._to_supervisors(kind, rendered)
            return
        if target == STAFF_TARGET:
            if not self.staff_senders:
                raise Unreachable("no staff channel configured")
            failures: list[Exception] = []
            for staff_sender in self.staff_senders:
                try:
                    await _deliver(staff_sender, STAFF_TARGET, rendered, kind)
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

    async def _to_supervisors(self, kind: str, rendered: Rendered) -> None:
        """A complaint, to each complaint handler's private chat (never the staff group), except
        the staff member it names (``fields["exclude"]``)."""
        excluded = rendered.fields.get("exclude", "")
        targets = [t for t in complaint_handlers(self.settings.access) if t != excluded]
        if not targets:
            raise Unreachable("no supervisor to tell (access.supervisors)")
        failures: list[Exception] = []
        for target in targets:
            try:
                await self._to_staff(target, kind, rendered)
            except (Unreachable, TryLater) as failure:
                failures.append(failure)
        # Once one supervisor has it, a retry would send it twice to that one.
        if len(failures) == len(targets):
            raise failures[0]

    async def _record(self, lease: _Lease, outcomes: list[tuple[int, Outcome]]) -> list[bool]:
        async with self.database.session() as session:
            now = self.clock.now()
            renewed: tuple[set[int], dt.datetime, dt.datetime] | None = None
            if lease.until - now < self.policy.lease * 3 / 4:
                # Renewed over a quarter of the lease ago (the timer's turn may be slow on a
                # busy database): the rows still to be sent must not run out of lease while
                # they wait. (Renewing first takes the claim's row locks in id order before
                # the recorded rows': no deadlock.)
                until = now + self.policy.lease
                renewed = await outbox.renew_claims(session, lease.token, now, until), now, until
            recorded = await outbox.record_outcomes(session, lease.token, outcomes, now,
                                                    self.policy, sms=self.sms_hook)
        if renewed is not None:
            lease.confirm(*renewed)
        return recorded


@dataclass
class _Lease:
    """What the database last confirmed of a claim: the rows it held at ``confirmed_at``,
    which no other process can take before ``until``."""

    token: str
    held: set[int]
    confirmed_at: dt.datetime
    until: dt.datetime

    def confirm(self, held: set[int], now: dt.datetime, until: dt.datetime) -> None:
        """A renewal committed (one that began before the last one taken is older news)."""
        if now >= self.confirmed_at:
            self.held, self.confirmed_at, self.until = held, now, until

    def covers(self, row_id: int, now: dt.datetime, margin: dt.timedelta) -> bool:
        return row_id in self.held and now < self.until - margin


@dataclass
class _Ready:
    """A row rendered, waiting for its turn to be sent."""

    kind: str
    target: str | None
    identity: ChannelIdentity | None
    rendered: Rendered
    mobile: str | None = None     # an SMS row's number, held for its send only


# A row rendered ahead: what to send, the outcome when it is not to be sent, None when the
# claim no longer holds it, or the error rendering it raised.
Prepared = _Ready | Outcome | Exception | None


class _Ahead:
    """A claim's rows rendered in chunks of ``size``, in the order they are to go: a chunk is
    rendered (one read transaction) when the first of its rows is wanted, so a row is rendered
    at most a chunk's sends before it goes, as the appointment stands then."""

    def __init__(self, dispatcher: Dispatcher, lease: _Lease, order: list[int], size: int) -> None:
        self.dispatcher, self.lease, self.order, self.size = dispatcher, lease, order, size
        self.position = {row_id: index for index, row_id in enumerate(order)}
        self.chunks: dict[int, asyncio.Task[dict[int, Prepared]]] = {}
        self.left: dict[int, int] = {}

    async def take(self, row_id: int) -> _Ready | Outcome | None:
        index = self.position[row_id] // self.size
        chunk = self.chunks.get(index)
        if chunk is None:
            ids = self.order[index * self.size:(index + 1) * self.size]
            chunk = self.chunks[index] = asyncio.create_task(
                self.dispatcher._prepare(ids, self.lease.token))
            self.left[index] = len(ids)
        try:
            prepared = (await asyncio.shield(chunk)).pop(row_id)
        finally:
            self.left[index] -= 1
            if not self.left[index]:
                del self.chunks[index]    # every row of it taken: let it go
        if isinstance(prepared, Exception):
            raise prepared
        return prepared

    async def aclose(self) -> None:
        """Cancel the renderings nobody will take (a round cut short) and wait until they
        have given their connections back."""
        chunks = list(self.chunks.values())
        for chunk in chunks:
            chunk.cancel()
        await asyncio.gather(*chunks, return_exceptions=True)


class _Recorder:
    """Outcomes recorded together: the ones that are ready while a write transaction runs (or
    within ``linger`` seconds while other sends are under way) go in the next one."""

    linger = 0.05
    most = 100

    def __init__(self, dispatcher: Dispatcher, lease: _Lease) -> None:
        self.dispatcher, self.lease = dispatcher, lease
        self.pending: list[tuple[int, Outcome, asyncio.Future[bool]]] = []
        self.sending = 0       # rows being rendered or sent: their outcomes are on the way
        self._more = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    async def record(self, row_id: int, outcome: Outcome) -> bool:
        """Record one outcome (with others ready at the same time); False when the row was no
        longer this claim's."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.pending.append((row_id, outcome, done))
        self.nudge()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await asyncio.shield(done)

    def nudge(self) -> None:
        self._more.set()

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while self.pending:
            deadline = loop.time() + self.linger
            while self.sending and len(self.pending) < self.most and loop.time() < deadline:
                self._more.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._more.wait(), deadline - loop.time())
            batch, self.pending = self.pending[:self.most], self.pending[self.most:]
            try:
                recorded = await self.dispatcher._record(
                    self.lease, [(row_id, outcome) for row_id, outcome, _ in batch])
            except BaseException as error:
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(error)
                if isinstance(error, asyncio.CancelledError):
                    raise
                continue
            for (*_, done), ok in zip(batch, recorded, strict=True):
                if not done.done():
                    done.set_result(ok)


def _failed(error: Exception, row_id: int, what: str) -> Outcome:
    """What a send that raised comes to: the recipient gone, try later, given up (parked), or,
    for a bug in a channel or a provider (which must not stop the other notifications), a
    retry."""
    if isinstance(error, Unreachable):
        return Outcome(OutboxStatus.UNDELIVERABLE, str(error)[:300] or "unreachable")
    if isinstance(error, TryLater):
        return Outcome(OutboxStatus.PENDING, str(error)[:300], error.retry_after)
    if isinstance(error, GiveUp):
        return Outcome(OutboxStatus.FAILED, str(error)[:300] or "given up")
    log.warning("outbox %s (%s): %s", row_id, what, type(error).__name__)
    return Outcome(OutboxStatus.PENDING, type(error).__name__)


async def _deliver(sender: Sender, chat_id: str, rendered: Rendered, kind: str) -> None:
    await sender.deliver(chat_id, rendered.replies, kind=kind, fields=rendered.fields)
