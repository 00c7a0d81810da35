"""The outbox: notifications written in the same transaction as the change that causes them,
and the policy of working through them.

Each row has a de-duplication key, so one cause never produces two notifications. A dispatcher
in bot/ claims due rows here, renders and sends them, and records here what happened; when to
try again, when to give up and whom to tell is decided here, not by the dispatcher.

Claiming is safe with several processes: on PostgreSQL ``SELECT ... FOR UPDATE SKIP LOCKED``
(a row claimed by one process is skipped by the others); on SQLite, where SQLAlchemy drops FOR
UPDATE, one ``UPDATE ... RETURNING`` claims the batch under SQLite's single writer lock.

A claim is a lease with a token. Each renewal (``renew_claims``: one conditional UPDATE
that extends the lease of the rows still carrying the token of its claim and an unexpired
lease) tells the process which rows are its own and until when no other process can take them.
Right before each send the process fences it: a row is sent only while the last renewal
(or the claim) confirmed it and at least half the lease is left of what that renewal gave;
otherwise it renews first, and a row that is no longer held is not sent. A process that
stalled past its lease (a busy machine, a long pause) finds the row taken or the lease gone and
does not send it; the process that claimed it since does. So while processes live each
notification is sent once. A process killed (or frozen longer than the lease) in the middle of a send leaves
that one row to be sent again by another: nothing is lost, the message in flight may arrive
twice. Leases are compared with each process's clock: the machines' clocks must agree (NTP) to
well within the lease.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import exists, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.accounts import prefetch_links
from storage.models import Appointment, ChannelIdentity, Outbox, OutboxStatus, Person, Service
from storage.settings import SmsSettings

log = logging.getLogger("yuyue.dispatch")

STAFF_TARGET = "staff"

REMINDER = "reminder"
# The rest of a chat's answer that could not be sent at once (the platform's limits): sent
# later by the dispatcher, one chat's in the order queued, none before an earlier one is out.
REPLY = "reply"
_UNSENT = (OutboxStatus.PENDING, OutboxStatus.SENDING)


def insert_ignoring_duplicates(session: AsyncSession, table: Any, index: list[str] | None) -> Any:
    """An INSERT that skips rows whose unique ``index`` columns already exist (both dialects);
    with ``index`` None, rows that would break any unique constraint or index."""
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table).on_conflict_do_nothing(index_elements=index)


async def enqueue(session: AsyncSession, *, kind: str, dedup_key: str, now: dt.datetime,
                  due_at: dt.datetime | None = None, identity_id: int | None = None,
                  target: str | None = None, appointment_id: int | None = None,
                  payload: dict[str, Any] | None = None,
                  expires_at: dt.datetime | None = None) -> bool:
    """Queue one notification unless one with the same ``dedup_key`` exists.

    Args:
        identity_id: the citizen's chat account, or None with ``target`` for staff alerts.
        expires_at: after this the notification is dropped instead of sent late.

    Returns:
        True when a new row was written.
    """
    statement = insert_ignoring_duplicates(session, Outbox, ["dedup_key"]).values(
        kind=kind, dedup_key=dedup_key, identity_id=identity_id, target=target,
        appointment_id=appointment_id, payload=payload or {}, due_at=due_at or now,
        expires_at=expires_at, status=OutboxStatus.PENDING.value, attempts=0, created_at=now)
    result = await session.execute(statement)
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def enqueue_many(session: AsyncSession, *, now: dt.datetime, rows: list[dict[str, Any]],
                       identity_id: int | None = None, appointment_id: int | None = None,
                       expires_at: dt.datetime | None = None) -> int:
    """Queue several notifications of one cause in one statement (each row: kind, dedup_key,
    due_at, payload); rows whose de-duplication key exists are skipped.

    Returns:
        How many rows were written.
    """
    if not rows:
        return 0
    values = [{"kind": row["kind"], "dedup_key": row["dedup_key"], "identity_id": identity_id,
               "target": None, "appointment_id": appointment_id, "payload": row.get("payload", {}),
               "due_at": row.get("due_at", now), "expires_at": expires_at,
               "status": OutboxStatus.PENDING.value, "attempts": 0, "created_at": now}
              for row in rows]
    result = await session.execute(insert_ignoring_duplicates(session, Outbox, ["dedup_key"])
                                   .values(values))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def drop_pending(session: AsyncSession, appointment_id: int, kinds: Iterable[str],
                       reason: str) -> int:
    """Drop an appointment's notifications of these kinds that have not gone out yet."""
    result = await session.execute(
        update(Outbox).where(Outbox.appointment_id == appointment_id, Outbox.kind.in_(list(kinds)),
                             Outbox.status == OutboxStatus.PENDING)
        .values(status=OutboxStatus.DROPPED, last_error=reason)
        .execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]


def chat_target(channel: str, chat_id: str) -> str:
    """The target of an outbox row for a chat on a channel (not a citizen's account)."""
    return f"{channel}:{chat_id}"


async def has_unsent_replies(session: AsyncSession, target: str) -> bool:
    """Whether part of an earlier answer to ``target`` waits in the outbox: a new answer goes
    after it, not before."""
    return await session.scalar(select(Outbox.id).where(
        Outbox.kind == REPLY, Outbox.target == target, Outbox.status.in_(_UNSENT)).limit(1)) \
        is not None


async def enqueue_replies(session: AsyncSession, *, target: str, key: str,
                          payloads: list[dict[str, Any]], now: dt.datetime,
                          due_at: dt.datetime) -> int:
    """Queue the rest of an answer to ``target`` (one row per message, in order) to be sent
    from ``due_at``; ``key`` names the message answered, so a second try queues nothing.

    Returns:
        How many rows were written.
    """
    rows = [{"kind": REPLY, "dedup_key": f"{REPLY}:{target}:{key}:{index}"[:160],
             "identity_id": None, "target": target, "appointment_id": None, "payload": payload,
             "due_at": due_at, "expires_at": None, "status": OutboxStatus.PENDING.value,
             "attempts": 0, "created_at": now} for index, payload in enumerate(payloads)]
    if not rows:
        return 0
    result = await session.execute(insert_ignoring_duplicates(session, Outbox, ["dedup_key"])
                                   .values(rows))
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- working through the outbox ---------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryPolicy:
    """How the outbox is worked through (the ``notifications`` settings)."""

    batch_size: int = 100                               # rows claimed at once
    lease: dt.timedelta = dt.timedelta(seconds=120)     # a claim runs out unless renewed
    max_attempts: int = 6                               # then the row is given up on
    retry_base_seconds: float = 30                      # the first back-off, doubled each time


@dataclass(frozen=True)
class Outcome:
    """What became of one row: sent, to be tried again (``PENDING``, after ``retry_after``
    seconds if the platform said so), dropped, or undeliverable; ``error`` says why."""

    status: OutboxStatus
    error: str | None = None
    retry_after: float | None = None
    # A row that must wait (an SMS in the quiet hours or over its number's limit) is due again
    # then, and the wait is not counted as an attempt.
    defer_until: dt.datetime | None = None
    reference: str | None = None     # the provider's id of what was sent (SMS serial number)
    units: int = 0                   # billed messages (a long SMS is several)


def retry_delay(attempts: int, policy: DeliveryPolicy,
                retry_after: float | None = None) -> dt.timedelta:
    """The back-off after the ``attempts``-th failed attempt: the base doubled each time, or
    longer if the platform asked for it."""
    backoff = policy.retry_base_seconds * 2 ** (attempts - 1)
    return dt.timedelta(seconds=max(backoff, retry_after or 0))


@dataclass(frozen=True)
class Claim:
    """A batch of rows claimed together under one token."""

    token: str
    ids: list[int]


async def claim_due(session: AsyncSession, now: dt.datetime, owner: str,
                    policy: DeliveryPolicy) -> Claim:
    """Claim a batch of due rows for ``owner`` until ``now + lease``, under a new token; rows
    left "sending" by a process whose lease ran out go back in the queue first.

    Returns:
        The claim: its token and the ids, oldest due first.
    """
    await session.execute(update(Outbox).where(
        Outbox.status == OutboxStatus.SENDING, Outbox.claimed_until < now)
        .values(status=OutboxStatus.PENDING).execution_options(synchronize_session=False))
    earlier = aliased(Outbox)
    # A chat's queued replies go one at a time, in order: one waits while an earlier one to
    # the same chat is unsent (being retried after a 429, or being sent now).
    waits = exists().where(earlier.kind == REPLY, earlier.target == Outbox.target,
                           earlier.id < Outbox.id, earlier.status.in_(_UNSENT))
    due = select(Outbox.id).where(Outbox.status == OutboxStatus.PENDING, Outbox.due_at <= now,
                                  or_(Outbox.kind != REPLY, ~waits)
                                  ).order_by(Outbox.due_at, Outbox.id)
    token = secrets.token_hex(16)
    claim = dict(status=OutboxStatus.SENDING, claimed_by=owner, claim_token=token,
                 claimed_until=now + policy.lease, attempts=Outbox.attempts + 1)
    if session.get_bind().dialect.name == "sqlite":
        # SQLite: one UPDATE ... RETURNING under the writer lock (FOR UPDATE is dropped).
        rows = await session.execute(update(Outbox).where(
            Outbox.id.in_(due.limit(policy.batch_size).scalar_subquery())).values(**claim)
            .returning(Outbox.id).execution_options(synchronize_session=False))
        return Claim(token, sorted(rows.scalars().all()))
    # PostgreSQL: rows another dispatcher has locked are skipped, not waited for.
    ids = list((await session.scalars(
        due.limit(policy.batch_size).with_for_update(skip_locked=True))).all())
    if ids:
        await session.execute(update(Outbox).where(Outbox.id.in_(ids)).values(**claim)
                              .execution_options(synchronize_session=False))
    return Claim(token, ids)


def _held(token: str, now: dt.datetime) -> tuple[Any, ...]:
    """The rows still held under ``token`` at ``now``: claimed with it, not taken since (a new
    claim changes the token), not finished, and the lease not run out."""
    return (Outbox.claim_token == token, Outbox.status == OutboxStatus.SENDING,
            Outbox.claimed_until > now)


async def renew_claims(session: AsyncSession, token: str, now: dt.datetime,
                       until: dt.datetime) -> set[int]:
    """Extend to ``until`` the lease on the rows of claim ``token`` still held at ``now`` (a
    slow batch is not taken over by another process; a process that dies stops renewing, and
    a lease that ran out is not revived).

    Returns:
        The ids still held.
    """
    # PostgreSQL: the rows are locked in id order (FOR UPDATE under ORDER BY), so the
    # dispatcher's concurrent renewals, fences and records of one claim never deadlock.
    held = select(Outbox.id).where(*_held(token, now)).order_by(Outbox.id).with_for_update()
    result = await session.execute(update(Outbox).where(Outbox.id.in_(held.scalar_subquery()))
                                   .values(claimed_until=until).returning(Outbox.id)
                                   .execution_options(synchronize_session=False))
    return set(result.scalars().all())


async def by_recipient(session: AsyncSession, ids: list[int]) -> list[list[int]]:
    """The claimed ids grouped by recipient, each group in the order it was queued: one
    recipient's notifications go out one after another (a no-show notice before the strike
    warning it caused)."""
    rows = (await session.execute(select(Outbox.id, Outbox.identity_id, Outbox.target)
                                  .where(Outbox.id.in_(ids)).order_by(Outbox.id))).all()
    groups: dict[tuple[int | None, str | None], list[int]] = {}
    for row_id, identity_id, target in rows:
        groups.setdefault((identity_id, target), []).append(row_id)
    return list(groups.values())


async def to_send(session: AsyncSession, row_id: int, token: str,
                  now: dt.datetime) -> tuple[Outbox, ChannelIdentity | None] | Outcome | None:
    """A row claimed under ``token``, with the citizen account it goes to (None: a staff
    target); the outcome when it is not to be sent any more (too late); or None when the claim
    no longer holds it (another process took it: nothing is to be recorded)."""
    return (await to_send_many(session, [row_id], token, now))[row_id]


async def to_send_many(session: AsyncSession, ids: list[int], token: str, now: dt.datetime
                       ) -> dict[int, tuple[Outbox, ChannelIdentity | None] | Outcome | None]:
    """``to_send`` for several rows, in a few statements whatever their number: the rows, their
    accounts, and what their notices refer to (the appointments, their services and persons,
    and the accounts' links to those persons) are loaded into ``session`` together, so the
    notices rendered in it ask the database for little more."""
    rows = {row.id: row for row in (await session.scalars(
        select(Outbox).where(Outbox.id.in_(ids)))).all()}
    loaded: list[Any] = list(rows.values())      # the session keeps what is loaded while referenced
    identity_ids = {row.identity_id for row in rows.values() if row.identity_id is not None}
    if identity_ids:
        loaded += (await session.scalars(select(ChannelIdentity).where(
            ChannelIdentity.id.in_(identity_ids)))).all()
    appointment_ids = {row.appointment_id for row in rows.values() if row.appointment_id}
    if appointment_ids:
        appointments = (await session.scalars(select(Appointment).where(
            Appointment.id.in_(appointment_ids)))).all()
        loaded += appointments
        loaded += (await session.scalars(select(Service).where(
            Service.id.in_({a.service_id for a in appointments})))).all()
        loaded += (await session.scalars(select(Person).where(
            Person.id.in_({a.person_id for a in appointments})))).all()
        by_id = {a.id: a for a in appointments}
        await prefetch_links(session, {
            (row.identity_id, by_id[row.appointment_id].person_id) for row in rows.values()
            if row.identity_id is not None and row.appointment_id in by_id})
    session.info.setdefault("prefetched", []).extend(loaded)
    claimed: dict[int, tuple[Outbox, ChannelIdentity | None] | Outcome | None] = {}
    for row_id in ids:
        row = rows.get(row_id)
        if row is None or row.status != OutboxStatus.SENDING or row.claim_token != token:
            claimed[row_id] = None
        elif row.expires_at is not None and row.expires_at <= now:
            claimed[row_id] = Outcome(OutboxStatus.DROPPED, "too late")
        else:
            claimed[row_id] = row, (await session.get(ChannelIdentity, row.identity_id)
                                    if row.identity_id else None)
    return claimed


async def record_outcome(session: AsyncSession, row_id: int, token: str, outcome: Outcome,
                         now: dt.datetime, policy: DeliveryPolicy,
                         sms: SmsHook | None = None) -> bool:
    """Record what became of a row claimed under ``token``, unless another claim took it
    since (it is then that claim's to record).

    A failed attempt is tried again after ``retry_delay``; after ``max_attempts`` the row is
    given up ("failed") and staff are told once. A staff answer that cannot reach its citizen
    is told to staff at once when refused, and when given up (its author must know). With
    ``sms`` (the SMS settings and the centre's zone), storage.sms follows up: an undeliverable
    chat notice falls back to SMS.

    Returns:
        False when the row was no longer this claim's.
    """
    return (await record_outcomes(session, token, [(row_id, outcome)], now, policy, sms))[0]


async def record_outcomes(session: AsyncSession, token: str, outcomes: list[tuple[int, Outcome]],
                          now: dt.datetime, policy: DeliveryPolicy,
                          sms: SmsHook | None = None) -> list[bool]:
    """``record_outcome`` for several rows of one claim in one transaction (their rows locked
    by one statement, in id order).

    Returns:
        For each outcome, False when its row was no longer this claim's.
    """
    rows = {row.id: row for row in (await session.scalars(
        select(Outbox).where(Outbox.id.in_({row_id for row_id, _ in outcomes}))
        .order_by(Outbox.id).with_for_update())).all()}
    recorded = []
    for row_id, outcome in outcomes:
        row = rows.get(row_id)
        # A lease that ran out puts the row back to "pending" with its token; until someone
        # claims it anew, what this claim did with it is still the truth to record.
        if row is None or row.claim_token != token or row.status not in (OutboxStatus.SENDING,
                                                                          OutboxStatus.PENDING):
            recorded.append(False)
            continue
        row.last_error = outcome.error
        row.claimed_until = None
        await _apply_outcome(session, row, outcome, now, policy)
        if sms is not None:
            from storage import sms as sms_outbox  # storage.sms builds on this module

            await sms_outbox.after_outcome(session, row, outcome, now, sms.settings, sms.tz)
        recorded.append(True)
    return recorded


@dataclass(frozen=True)
class SmsHook:
    """What ``record_outcome`` needs to follow an outcome up for SMS."""

    settings: SmsSettings
    tz: ZoneInfo


async def _apply_outcome(session: AsyncSession, row: Outbox, outcome: Outcome, now: dt.datetime,
                         policy: DeliveryPolicy) -> None:
    if outcome.defer_until is not None:
        row.status, row.due_at = OutboxStatus.PENDING, outcome.defer_until
        row.attempts = max(row.attempts - 1, 0)
        return
    if outcome.status != OutboxStatus.PENDING:
        row.status = outcome.status
        row.sent_at = now if outcome.status == OutboxStatus.SENT else None
        if outcome.status == OutboxStatus.UNDELIVERABLE and row.kind == "relay":
            await _relay_failed(session, row, now, outcome.error)
        return
    if row.attempts >= policy.max_attempts:
        row.status = OutboxStatus.FAILED
        if row.kind == "relay":
            # A staff answer given up on (a wrong AppSecret, a platform down for long): its
            # author is told it did not arrive.
            await _relay_failed(session, row, now, row.last_error)
            return
        await _alert_staff_once(session, row, now)
        return
    row.status = OutboxStatus.PENDING
    row.due_at = now + retry_delay(row.attempts, policy, outcome.retry_after)
    return


async def _relay_failed(session: AsyncSession, row: Outbox, now: dt.datetime,
                        error: str | None) -> None:
    """Tell staff (the hand-off's owner is named by its number) that their answer did not
    reach the citizen; once per answer."""
    await enqueue(session, kind="relay_failed", now=now, target=STAFF_TARGET,
                  dedup_key=f"relay-failed:{row.id}",
                  payload={**row.payload, "error": (error or "")[:200]})


async def _alert_staff_once(session: AsyncSession, row: Outbox, now: dt.datetime) -> None:
    """Tell staff a notification was given up on (once; never about a staff alert itself)."""
    if row.target == STAFF_TARGET:
        log.error("staff alert %s (%s) could not be delivered", row.id, row.kind)
        return
    await enqueue(session, kind="delivery_failed", now=now, target=STAFF_TARGET,
                  dedup_key=f"failed:{row.id}",
                  payload={"outbox": row.id, "kind": row.kind, "error": (row.last_error or "")[:200],
                           "attempts": row.attempts})
