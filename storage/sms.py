"""Text messages (短信) in the outbox: which notices go by SMS, the rows that carry them, the
checks before each send (opt-out, quiet hours, per-number limits), what the provider answered
and its delivery receipts, opt-outs, and the figures.

An SMS notice is an outbox row of the notice's own kind with ``target = "sms:<person id>"``
and no chat account: the dispatcher renders it like the chat notice (the template's
parameters come from the rendered fields) and sends it through the SMS sender. The mobile is
not kept in the outbox: it is looked up when the text goes (so a number staff corrected is
used) and only its keyed hash is written, to ``sms_message``, for the limits and receipts.
A verification code travels in the row's payload until the row is sent or given up, then it
is cleared. The rules themselves are in storage.sms_rules; docs/sms.md explains the policy.

Nothing here commits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.audit import audit
from storage.centre import Centre
from storage.identity import IdHasher, mask_mobile
from storage.models import (
    AccountPerson,
    Appointment,
    Case,
    ClosureOffer,
    Outbox,
    OutboxStatus,
    Person,
    SmsEarlyReceipt,
    SmsMessage,
    SmsOptOut,
)
from storage.offer_holds import hold_closure_seat
from storage.outbox import STAFF_TARGET, Outcome, enqueue, insert_ignoring_duplicates
from storage.settings import SmsSettings
from storage.sms_rules import CODE_KIND, NEVER, sms_gate, sms_wanted

log = logging.getLogger("yuyue.sms")

SMS_PREFIX = "sms:"
SENDING, SENT, FAILED, DELIVERED, UNDELIVERED = "sending", "sent", "failed", "delivered", "undelivered"
TERMINAL = (OutboxStatus.SENT, OutboxStatus.FAILED, OutboxStatus.UNDELIVERABLE, OutboxStatus.DROPPED)


def sms_target(person_id: int) -> str:
    return f"{SMS_PREFIX}{person_id}"


def is_sms(row: Outbox) -> bool:
    """Whether an outbox row is a text message (not a chat or staff notice)."""
    return bool(row.target) and str(row.target).startswith(SMS_PREFIX)


def mobile_hash(hasher: IdHasher, mobile: str) -> str:
    """The keyed hash a number is known by in the SMS tables (never the number itself)."""
    return hmac.new(hasher.derive("sms mobile"), mobile.strip().encode(), hashlib.sha256).hexdigest()


# --- which notices go by SMS ------------------------------------------------------------------


async def queue_sms(session: AsyncSession, centre: Centre, now: dt.datetime, *, kind: str,
                    dedup_key: str, person_id: int, via: str, account_id: int | None = None,
                    appointment_id: int | None = None, payload: dict[str, Any] | None = None,
                    due_at: dt.datetime | None = None,
                    expires_at: dt.datetime | None = None) -> bool:
    """Queue one notice as a text to a person's mobile (when SMS is set up).

    Args:
        via: why it goes by SMS ("always", "no_chat", "fallback"), for the figures.
        account_id: the chat account it is for, if any: the mobile that account gave for the
            person is used before the one on record.

    Returns:
        True when a row was written.
    """
    if not centre.sms.enabled:
        return False
    body = {**(payload or {}), "sms": {"via": via, "account": account_id}}
    return await enqueue(session, kind=kind, dedup_key=(SMS_PREFIX + dedup_key)[:160], now=now,
                         due_at=due_at, target=sms_target(person_id), appointment_id=appointment_id,
                         payload=body, expires_at=expires_at)


def sms_planned(centre: Centre, kind: str, *, account_id: int | None) -> bool:
    """Whether ``notice_by_sms`` writes a text for this notice when it is caused (an offer by
    SMS must know before it is made: a 换诊 holds a seat for it)."""
    return centre.sms.enabled and sms_wanted(centre.sms.policy_for(kind),
                                             chat_can_deliver=account_id is not None)


async def notice_by_sms(session: AsyncSession, centre: Centre, now: dt.datetime, *, kind: str,
                        dedup_key: str, person_id: int, account_id: int | None,
                        appointment_id: int | None = None, payload: dict[str, Any] | None = None,
                        due_at: dt.datetime | None = None,
                        expires_at: dt.datetime | None = None) -> bool:
    """Queue the SMS twin of a notice when the policy says so at the moment it is caused:
    always (closures), or when there is no chat account to send it to (walk-in and phone
    bookings). A chat that fails later falls back in ``after_outcome``.

    Returns:
        True when a row was written.
    """
    policy = centre.sms.policy_for(kind)
    if not sms_wanted(policy, chat_can_deliver=account_id is not None):
        return False
    return await queue_sms(session, centre, now, kind=kind, dedup_key=dedup_key,
                           person_id=person_id, account_id=account_id,
                           via=policy if account_id is not None else "no_chat",
                           appointment_id=appointment_id, payload=payload, due_at=due_at,
                           expires_at=expires_at)


async def _person_of(session: AsyncSession, row: Outbox) -> int | None:
    if row.appointment_id is not None:
        return await session.scalar(select(Appointment.person_id)
                                    .where(Appointment.id == row.appointment_id))
    case_id = (row.payload or {}).get("case")
    if case_id is not None:
        return await session.scalar(select(Case.person_id).where(Case.id == int(case_id)))
    return None


async def _fall_back(session: AsyncSession, row: Outbox, now: dt.datetime,
                     settings: SmsSettings) -> str | None:
    """Queue the SMS twin of a chat notice that could not be delivered.

    Returns:
        Why it cannot go by SMS either, or None when it was queued (or already was).
    """
    policy = settings.policy_for(row.kind)
    if policy == NEVER:
        return None if not settings.enabled else "not by SMS for this kind"
    if not settings.enabled:
        return "SMS not set up"
    person_id = await _person_of(session, row)
    if person_id is None:
        return "no person on file for SMS"
    if row.kind == "closure_move":
        # A 换诊 by text offers one time, and its seat is held for the answer.
        offer = await session.get(ClosureOffer, int((row.payload or {}).get("offer", 0)),
                                  with_for_update=True)
        if offer is None or offer.status != "pending" or offer.deadline <= now:
            return "offer answered or expired"
        later = [int(slot) for slot in (row.payload or {}).get("later") or []]
        if await hold_closure_seat(session, offer, now, later) is None:
            return "no free time left to hold for an SMS answer"
    payload = {k: v for k, v in (row.payload or {}).items() if k != "sms"}
    await enqueue(session, kind=row.kind, dedup_key=(SMS_PREFIX + row.dedup_key)[:160], now=now,
                  target=sms_target(person_id), appointment_id=row.appointment_id,
                  payload={**payload, "sms": {"via": "fallback", "account": row.identity_id,
                                              "for": row.id}},
                  expires_at=row.expires_at)
    return None


async def after_outcome(session: AsyncSession, row: Outbox, outcome: Outcome, now: dt.datetime,
                        settings: SmsSettings, tz: ZoneInfo) -> None:
    """What follows a recorded outcome, for SMS: a chat notice that could not be delivered
    falls back to SMS (or says why not); an SMS row's send log is completed, its code cleared
    once it is over, and a provider problem staff must fix (no balance left) is told once a
    day."""
    if not is_sms(row):
        if row.identity_id is not None and outcome.status == OutboxStatus.UNDELIVERABLE:
            why_not = await _fall_back(session, row, now, settings)
            if why_not:
                row.last_error = f"{row.last_error or 'undeliverable'}; {why_not}"[:500]
        return
    message = await session.scalar(select(SmsMessage).where(
        SmsMessage.outbox_id == row.id, SmsMessage.status == SENDING)
        .order_by(SmsMessage.id.desc()).limit(1))
    if message is not None:
        if outcome.status == OutboxStatus.SENT:
            message.status, message.serial_no = SENT, outcome.reference
            message.fee = max(outcome.units, 1)
            await _apply_early_receipt(session, message, row, now)
        else:
            message.status, message.error = FAILED, (outcome.error or "")[:200]
    if row.status in TERMINAL and "code" in (row.payload or {}):
        row.payload = {k: v for k, v in row.payload.items() if k != "code"}
    if outcome.status == OutboxStatus.FAILED and outcome.error:
        day = now.astimezone(tz).date().isoformat()
        await enqueue(session, kind="delivery_failed", now=now, target=STAFF_TARGET,
                      dedup_key=f"sms-parked:{day}:{outcome.error[:60]}",
                      payload={"outbox": row.id, "kind": f"sms {row.kind}",
                               "error": outcome.error[:200], "attempts": row.attempts})


# --- before each send -------------------------------------------------------------------------


@dataclass(frozen=True)
class SmsSend:
    """A text cleared to go now: the number (held only for the send) and its log row."""

    mobile: str = field(repr=False)
    message_id: int


async def number_for(session: AsyncSession, row: Outbox) -> str | None:
    """The mobile an SMS row goes to, read when it is sent: the one the chat account gave for
    the person if it gave one (never for a code: that goes to the record's), else the one on
    record; None when there is none (erased, or never given)."""
    person_id = int(str(row.target)[len(SMS_PREFIX):])
    person = await session.get(Person, person_id)
    if person is None or person.erased_at is not None:
        return None
    meta = (row.payload or {}).get("sms") or {}
    if meta.get("account") is not None and meta.get("via") != "code":
        given = await session.scalar(select(AccountPerson.mobile).where(
            AccountPerson.identity_id == int(meta["account"]), AccountPerson.person_id == person_id))
        if given:
            return str(given)
    return person.mobile or None


async def clear_to_send(session: AsyncSession, centre: Centre, row_id: int, mobile: str | None,
                        now: dt.datetime) -> SmsSend | Outcome:
    """Check a claimed SMS row against the opt-outs, the quiet hours and the number's limits,
    and reserve its place in the send log. Call it first thing in a fresh transaction: texts to
    one number are checked one at a time (an advisory lock on PostgreSQL; on SQLite the
    reservation, written first, takes the writer lock), so two processes, or two people
    sharing a number, cannot both pass a limit.

    Returns:
        ``SmsSend`` to send now; otherwise the outcome to record: undeliverable (opted out,
        no mobile), or pending until a later time (not counted as an attempt).
    """
    if not mobile:
        return Outcome(OutboxStatus.UNDELIVERABLE, "no mobile on file for SMS")
    key = mobile_hash(centre.hasher, mobile)
    if session.get_bind().dialect.name == "postgresql":
        # PostgreSQL: one transaction per number at a time, held until commit.
        await session.execute(select(func.pg_advisory_xact_lock(int(key[:15], 16))))
    message = SmsMessage(outbox_id=row_id, kind="", mobile_hash=key, status=SENDING, fee=0,
                         created_at=now)
    session.add(message)
    await session.flush()
    row = await session.get(Outbox, row_id)
    if row is None:
        await session.delete(message)
        return Outcome(OutboxStatus.DROPPED, "gone")
    message.kind = row.kind
    opted_out = await session.get(SmsOptOut, key) is not None
    sent = list((await session.scalars(select(SmsMessage.created_at).where(
        SmsMessage.mobile_hash == key, SmsMessage.id != message.id,
        SmsMessage.created_at > now - dt.timedelta(days=1), SmsMessage.status != FAILED))).all())
    start = None
    if row.appointment_id is not None:
        start = await session.scalar(select(Appointment.starts_at)
                                     .where(Appointment.id == row.appointment_id))
    gate = sms_gate(now, centre.tz, centre.sms, kind=row.kind, opted_out=opted_out, sent=sent,
                    appointment_start=start)
    if not gate.send_now:
        await session.delete(message)
    if gate.refused:
        return Outcome(OutboxStatus.UNDELIVERABLE, gate.refused)
    if gate.defer_until is not None:
        return Outcome(OutboxStatus.PENDING, "sms waits (quiet hours or number limit)",
                       defer_until=gate.defer_until)
    await session.flush()
    return SmsSend(mobile, message.id)


# --- receipts and opt-outs ----------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    """A delivery report (回执) from the provider for one text."""

    serial_no: str
    delivered: bool
    error: str = ""


async def record_receipts(session: AsyncSession, now: dt.datetime, receipts: list[Receipt]) -> int:
    """Record delivery reports; a text the operator could not deliver makes its notice
    undeliverable, with the reason.

    Returns:
        How many reports matched a text we sent.
    """
    matched = 0
    for receipt in receipts:
        message = await session.scalar(select(SmsMessage).where(
            SmsMessage.serial_no == receipt.serial_no).with_for_update())
        if message is None:
            # The provider can report before the send's own answer is recorded: keep the
            # report until it is (``after_outcome`` applies it), or for a week at most.
            await session.execute(
                insert_ignoring_duplicates(session, SmsEarlyReceipt, ["serial_no"])
                .values(serial_no=receipt.serial_no, delivered=receipt.delivered,
                        error=receipt.error[:200] or None, created_at=now))
            continue
        matched += 1
        await _apply_receipt(session, message, receipt.delivered, receipt.error, now)
    await session.execute(delete(SmsEarlyReceipt).where(
        SmsEarlyReceipt.created_at < now - EARLY_RECEIPT_KEPT))
    return matched


EARLY_RECEIPT_KEPT = dt.timedelta(days=7)


async def _apply_receipt(session: AsyncSession, message: SmsMessage, delivered: bool,
                         error: str | None, now: dt.datetime) -> None:
    message.status = DELIVERED if delivered else UNDELIVERED
    message.reported_at = now
    if not delivered:
        message.error = f"receipt: {error or ''}"[:200]
        if message.outbox_id is not None:
            await session.execute(update(Outbox).where(
                Outbox.id == message.outbox_id, Outbox.status == OutboxStatus.SENT)
                .values(status=OutboxStatus.UNDELIVERABLE,
                        last_error=f"sms receipt: {error or ''}"[:300])
                .execution_options(synchronize_session=False))


async def _apply_early_receipt(session: AsyncSession, message: SmsMessage, row: Outbox,
                               now: dt.datetime) -> None:
    """Apply a receipt that came before this send's serial number was recorded, if one did."""
    if not message.serial_no:
        return
    early = await session.get(SmsEarlyReceipt, message.serial_no, with_for_update=True)
    if early is None:
        return
    message.status = DELIVERED if early.delivered else UNDELIVERED
    message.reported_at = early.created_at
    if not early.delivered:
        message.error = f"receipt: {early.error or ''}"[:200]
        if row.status == OutboxStatus.SENT:
            row.status = OutboxStatus.UNDELIVERABLE
            row.last_error = f"sms receipt: {early.error or ''}"[:300]
    await session.delete(early)


OPT_OUT_WORDS = frozenset({"TD", "T", "N", "退订", "退", "取消", "STOP", "UNSUBSCRIBE", "0000"})


def is_opt_out_reply(text: str) -> bool:
    """Whether a citizen's reply to a text asks for no more (回复TD退订 and its usual variants)."""
    return text.strip().upper().rstrip("。.!！") in OPT_OUT_WORDS


async def opt_out(session: AsyncSession, centre: Centre, now: dt.datetime, mobile: str, *,
                  source: str, reason: str | None = None, actor: str | None = None) -> bool:
    """Record that a number wants no more texts (but the codes it asks for itself). Only the
    keyed hash and the masked form ("138****5678") are kept; with ``actor`` (a staff member)
    the change is audited.

    Returns:
        True when it was not opted out before.
    """
    masked = mask_mobile(mobile.strip())
    result = await session.execute(
        insert_ignoring_duplicates(session, SmsOptOut, ["mobile_hash"])
        .values(mobile_hash=mobile_hash(centre.hasher, mobile), source=source[:20], created_at=now,
                masked=masked, reason=(reason or "").strip()[:200] or None, actor=actor))
    changed = bool(result.rowcount)  # type: ignore[attr-defined]
    if actor is not None:
        await audit(session, now, actor, "sms_opt_out", "sms_opt_out", None, mobile=masked,
                    reason=(reason or "").strip()[:200] or None, changed=changed)
    return changed


async def opt_in(session: AsyncSession, centre: Centre, mobile: str, *,
                 now: dt.datetime | None = None, reason: str | None = None,
                 actor: str | None = None) -> bool:
    """Take a number off the opt-out list (the citizen asked at the window); with ``actor``
    and ``now`` the change is audited.

    Returns:
        True when it was on the list.
    """
    result = await session.execute(delete(SmsOptOut).where(
        SmsOptOut.mobile_hash == mobile_hash(centre.hasher, mobile)))
    changed = bool(result.rowcount)  # type: ignore[attr-defined]
    if actor is not None and now is not None:
        await audit(session, now, actor, "sms_opt_in", "sms_opt_out", None,
                    mobile=mask_mobile(mobile.strip()),
                    reason=(reason or "").strip()[:200] or None, changed=changed)
    return changed


async def opt_outs(session: AsyncSession, *, limit: int = 20) -> tuple[int, list[SmsOptOut]]:
    """The opt-out list, the latest first: how many in all, and the first ``limit``."""
    total = int(await session.scalar(select(func.count()).select_from(SmsOptOut)) or 0)
    latest = (await session.scalars(select(SmsOptOut).order_by(SmsOptOut.created_at.desc())
                                    .limit(limit))).all()
    return total, list(latest)


async def is_opted_out(session: AsyncSession, centre: Centre, mobile: str) -> bool:
    return await session.get(SmsOptOut, mobile_hash(centre.hasher, mobile)) is not None


# --- figures -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmsFigures:
    """Texts in a period: handed to the provider, failed (refused or not delivered),
    delivered per receipt, billed messages, the estimated cost in fen, and new opt-outs."""

    sent: int = 0
    failed: int = 0
    delivered: int = 0
    billed: int = 0
    cost_fen: int = 0
    opt_outs: int = 0


async def sms_figures(session: AsyncSession, start: dt.datetime, end: dt.datetime,
                      price_fen: int) -> SmsFigures:
    """The SMS figures for ``start`` <= time < ``end`` (``/stats`` and the export)."""
    rows = dict((await session.execute(
        select(SmsMessage.status, func.count()).where(
            SmsMessage.created_at >= start, SmsMessage.created_at < end)
        .group_by(SmsMessage.status))).all())
    billed = int(await session.scalar(select(func.coalesce(func.sum(SmsMessage.fee), 0)).where(
        SmsMessage.created_at >= start, SmsMessage.created_at < end,
        SmsMessage.status.in_([SENT, DELIVERED, UNDELIVERED]))) or 0)
    opt_outs = int(await session.scalar(select(func.count()).select_from(SmsOptOut).where(
        SmsOptOut.created_at >= start, SmsOptOut.created_at < end)) or 0)
    sent = sum(int(rows.get(status, 0)) for status in (SENT, DELIVERED, UNDELIVERED))
    return SmsFigures(sent=sent, failed=int(rows.get(FAILED, 0)) + int(rows.get(UNDELIVERED, 0)),
                      delivered=int(rows.get(DELIVERED, 0)), billed=billed,
                      cost_fen=billed * price_fen, opt_outs=opt_outs)




def payload_fields(row: Outbox) -> dict[str, str]:
    """Template values an SMS row carries itself: a closure's reason, a case's number (and its
    date: the 补正 deadline, the expected answer, the day it was ready or the due date in force),
    and for a verification code the code and its minutes."""
    payload = row.payload or {}
    fields = {name: str(payload[name]) for name in ("reason", "number") if payload.get(name)}
    if "case" in payload:   # a case notice's own values (docs/cases.md), in Chinese
        service, place = payload.get("service") or {}, payload.get("place") or {}
        name = (service.get("name") or {}) if isinstance(service, dict) else {}
        fields.update(service=str(name.get("zh", "")) if isinstance(name, dict) else "",
                      place=str(place.get("zh", "")) if isinstance(place, dict) else "",
                      when=str(payload.get("deadline") or payload.get("expected_on")
                               or payload.get("ready_on") or payload.get("due_on") or ""))
        fields = {key: value for key, value in fields.items() if value}
    if row.kind == CODE_KIND:
        fields.update(code=str(payload.get("code", "")), minutes=str(payload.get("minutes", "")))
    return fields


async def drop_sms_for_chat(session: AsyncSession, appointment_id: int) -> int:
    """Drop an appointment's texts queued because it had no chat account, now that it has one
    (its reminders go to the chat instead). Texts the policy sends always stay."""
    result = await session.execute(update(Outbox).where(
        Outbox.appointment_id == appointment_id, Outbox.target.like(SMS_PREFIX + "%"),
        Outbox.status == OutboxStatus.PENDING, Outbox.kind.in_(["reminder", "booking_confirmed"]))
        .values(status=OutboxStatus.DROPPED, last_error="attached to a chat account")
        .execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]


__all__ = [
    "CODE_KIND",
    "SMS_PREFIX",
    "Receipt",
    "SmsFigures",
    "SmsSend",
    "after_outcome",
    "clear_to_send",
    "drop_sms_for_chat",
    "is_opt_out_reply",
    "is_sms",
    "mobile_hash",
    "notice_by_sms",
    "number_for",
    "opt_in",
    "opt_out",
    "opt_outs",
    "payload_fields",
    "queue_sms",
    "record_receipts",
    "sms_figures",
    "sms_planned",
    "sms_target",
]
