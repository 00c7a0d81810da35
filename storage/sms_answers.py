"""A citizen's answer, by replying to a text (上行短信), to an offer that was texted to them: a
替诊 (accept, or cancel without a strike), a 换诊 (the time held for them, or cancel without a
strike), a staff /move (move, or keep the booking as it is).

A reply answers the offer of the newest text to the number it comes from, if that offer is
still waiting for an answer, and only that one: if it cannot be answered after all (the booking
was cancelled meanwhile, the time held is gone), nothing changes, never an older offer (mum and
dad may share a mobile). When more than one offer waits for the number, or the newest text's
offer has ended while an older one still waits, a bare 1 or 2 cannot say which it answers:
nothing changes, and the number is asked (``offer_ambiguous``, per the policy) to call the
centre or come to the window. The send log (``sms_message``) knows each text only by the keyed
hash of its number and its outbox row, and the row names the offer and the person. The number
itself is never stored or logged. The answer goes through the same rules as in the chat
(storage.resource_closures, storage.control), audited with the actor ``sms:<person id>``, and
never gives a strike. A reply that matches no waiting offer (none was texted to that number, it
was answered already, or its deadline passed) changes nothing; the person it was texted to is
told so only when the policy sends ``offer_unmatched`` texts (never, by default). A reply that
is not an answer (anything but the words below) is left to the opt-out check, where "N" and
"取消" count only when no offer was texted to the number lately. The same reply delivered again
(number, provider's time and text) is acted on once only.
Nothing here commits. docs/sms.md explains it for the centre.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import control
from storage.centre import Centre
from storage.control import ControlRefused
from storage.conversations import record_delivery
from storage.models import ClosureOffer, MoveOffer, MoveStatus, Outbox, SmsMessage
from storage.offer_holds import held_slot
from storage.resource_closures import OfferGone, TimeGone, answer_move, answer_substitute
from storage.sms import DELIVERED, SENT, SMS_PREFIX, is_opt_out_reply, mobile_hash, queue_sms
from storage.sms_rules import NEVER

OFFER_KINDS = ("closure_substitute", "closure_move", "move_offer")
ANSWERED_KIND, UNMATCHED_KIND = "offer_answered", "offer_unmatched"
AMBIGUOUS_KIND = "offer_ambiguous"      # several offers wait for one number: call or come in
ACCEPT_WORDS = frozenset({"1", "Y", "YES", "接受", "同意", "确认", "是"})
DECLINE_WORDS = frozenset({"2", "N", "NO", "取消", "不接受", "不同意", "否"})
TIME_GONE = "time_gone"     # the answer to a 换诊 accepted when its held time is gone
RECENT_TEXTS = 20       # the offers texted to one number that are looked at, latest first
REPLY_CHANNEL = "sms"   # replies seen (processed_message), known by a keyed hash only
# While an offer texted to a number may still be answered (and a day after), "N" and "取消"
# answer it, or are a late answer: only these ask for no more texts then.
CLEAR_OPT_OUT_WORDS = frozenset({"TD", "T", "退订", "STOP", "UNSUBSCRIBE"})


def offer_answer(text: str) -> bool | None:
    """True for an acceptance (1, Y, 接受...), False for a refusal (2, N, 取消...), None for
    anything else."""
    word = text.strip().upper().rstrip("。.!！")
    if word in ACCEPT_WORDS:
        return True
    if word in DECLINE_WORDS:
        return False
    return None


class ReplyOutcome(enum.StrEnum):
    ANSWERED = "answered"           # a waiting offer was answered
    NO_OFFER = "no_offer"           # an answer word, but no offer waits for this number
    AMBIGUOUS = "ambiguous"         # several offers wait for this number: none is answered
    TIME_GONE = "time_gone"         # a 换诊 accepted, but the time held for it is gone
    NOT_AN_ANSWER = "not_an_answer"  # not 1/2/接受/取消...: left to the opt-out check


@dataclass(frozen=True)
class ReplyResult:
    """What became of a reply: the outcome and, when an offer was answered, its kind and the
    offer's status afterwards (accepted, declined, moved, cancelled)."""

    outcome: ReplyOutcome
    kind: str | None = None
    status: str | None = None


def reply_key(centre: Centre, mobile: str, sent_at: object, text: str) -> str:
    """What a reply is known by to find it delivered again: a keyed hash of the number, the
    provider's time of the reply and its text (never any of them in clear)."""
    key = centre.hasher.derive("sms reply")
    message = f"{mobile.strip()}\x1f{sent_at}\x1f{text.strip()}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


async def first_delivery(session: AsyncSession, centre: Centre, now: dt.datetime, mobile: str,
                         sent_at: object, text: str) -> bool:
    """Record a reply as handled; False when the same reply (number, provider's time, text)
    was handled already: a redelivery, acted on once only."""
    return await record_delivery(session, REPLY_CHANNEL, reply_key(centre, mobile, sent_at, text), now)


async def offer_texted_recently(session: AsyncSession, centre: Centre, now: dt.datetime,
                                mobile: str) -> bool:
    """Whether an offer was texted to ``mobile`` within an offer's lifetime and a day: then
    only a clear "TD"/"退订"/"T"/"STOP" is an opt-out, not "N"/"取消" (an answer, or a late
    or repeated one)."""
    hours = max(centre.rules.closure_answer_hours, centre.rules.move_answer_hours) + 24
    return await session.scalar(select(SmsMessage.id).where(
        SmsMessage.mobile_hash == mobile_hash(centre.hasher, mobile),
        SmsMessage.kind.in_(OFFER_KINDS), SmsMessage.status.in_([SENT, DELIVERED]),
        SmsMessage.created_at >= now - dt.timedelta(hours=hours)).limit(1)) is not None


def is_clear_opt_out(text: str) -> bool:
    """A reply that asks for no more texts even while an offer is recent (TD, 退订, T, STOP)."""
    return text.strip().upper().rstrip("。.!！") in CLEAR_OPT_OUT_WORDS


async def opts_out(session: AsyncSession, centre: Centre, now: dt.datetime, mobile: str,
                   text: str) -> bool:
    """Whether a reply that answered no offer asks for no more texts: "TD", "退订", "T" or
    "STOP" always; "N" and "取消" only when no offer was texted to the number lately (then
    they are a late or repeated answer, never a reason to fall silent for good)."""
    if not is_opt_out_reply(text):
        return False
    if is_clear_opt_out(text):
        return True
    return not await offer_texted_recently(session, centre, now, mobile)


async def _standing(session: AsyncSession, kind: str, offer_id: int,
                    now: dt.datetime) -> tuple[bool, bool]:
    """Whether the offer waits for an answer, and whether it is still in play for a reply:
    waiting, or withdrawn by the centre before its deadline (its text still reads as a
    question to whoever holds the phone)."""
    if kind == "move_offer":
        move = await session.get(MoveOffer, offer_id)
        if move is None or move.expires_at <= now:
            return False, False
        return move.status == MoveStatus.OFFERED, move.status in (MoveStatus.OFFERED,
                                                                  MoveStatus.WITHDRAWN)
    offer = await session.get(ClosureOffer, offer_id)
    if offer is None or offer.deadline <= now:
        return False, False
    return offer.status == "pending", offer.status in ("pending", "withdrawn")


async def answer_by_reply(session: AsyncSession, centre: Centre, now: dt.datetime, mobile: str,
                          text: str) -> ReplyResult:
    """Answer the newest (and only) waiting offer texted to ``mobile`` with the reply ``text``.

    Returns:
        What became of it (see ``ReplyOutcome``); nothing changes unless it is ANSWERED.
    """
    accept = offer_answer(text)
    if accept is None:
        return ReplyResult(ReplyOutcome.NOT_AN_ANSWER)
    texted = (await session.execute(
        select(Outbox.id, Outbox.kind, Outbox.target, Outbox.payload, Outbox.appointment_id)
        .join(SmsMessage, SmsMessage.outbox_id == Outbox.id)
        .where(SmsMessage.mobile_hash == mobile_hash(centre.hasher, mobile),
               SmsMessage.kind.in_(OFFER_KINDS), SmsMessage.status.in_([SENT, DELIVERED]))
        .order_by(SmsMessage.id.desc()).limit(RECENT_TEXTS))).all()
    offers: list[tuple[str, int, int, int | None]] = []     # newest first, each offer once
    waiting: list[tuple[str, int, int, int | None]] = []
    live = 0                   # offers a reply could be meant for (waiting, or withdrawn in time)
    for _row_id, kind, target, payload, appointment_id in texted:
        offer_id = int((payload or {}).get("offer", 0))
        person_id = int(str(target)[len(SMS_PREFIX):])
        if any((kind, offer_id) == (k, o) for k, o, _p, _a in offers):
            continue
        offers.append((kind, offer_id, person_id, appointment_id))
        waits, in_play = await _standing(session, kind, offer_id, now)
        if waits:
            waiting.append(offers[-1])
        live += in_play
    day = now.astimezone(centre.tz).date().isoformat()
    if live > 1 or (waiting and waiting[0] != offers[0]):
        # Two people share the mobile (or one has two offers), one of them perhaps withdrawn
        # since its text went, or the newest text's offer ended and an older one still waits:
        # a bare 1 or 2 cannot say which offer it answers (nor can the order the texts went
        # in, sent at the same moment), so none is answered; they are asked to call or come
        # to the window.
        person_id = offers[0][2]
        await _tell(session, centre, now, AMBIGUOUS_KIND, person_id, None,
                    dedup_key=f"{AMBIGUOUS_KIND}:{person_id}:{day}", payload={})
        return ReplyResult(ReplyOutcome.AMBIGUOUS)
    if waiting:
        # Only the newest offer that waits: if it cannot be answered after all, nothing
        # changes (never an older offer, which may be someone else's on the same mobile).
        kind, offer_id, person_id, appointment_id = waiting[0]
        status = await _answer(session, centre, now, kind, offer_id, person_id, accept)
        if status == TIME_GONE:
            # The 换诊's held time is gone: the booking stays as it is, the offer waits (a "2"
            # still cancels it; silence, the deadline rule); they are told so.
            await _tell(session, centre, now, ANSWERED_KIND, person_id, appointment_id,
                        dedup_key=f"{ANSWERED_KIND}:{kind}:{offer_id}:{TIME_GONE}",
                        payload={"offer": offer_id, "offer_kind": kind, "answer": TIME_GONE})
            return ReplyResult(ReplyOutcome.TIME_GONE, kind, status)
        if status is not None:
            await _tell(session, centre, now, ANSWERED_KIND, person_id, appointment_id,
                        dedup_key=f"{ANSWERED_KIND}:{kind}:{offer_id}",
                        payload={"offer": offer_id, "offer_kind": kind, "answer": status})
            return ReplyResult(ReplyOutcome.ANSWERED, kind, status)
    if texted:      # a number we texted an offer to: told only if the policy says so
        _row_id, _kind, target, _payload, _appointment = texted[0]
        person_id = int(str(target)[len(SMS_PREFIX):])
        await _tell(session, centre, now, UNMATCHED_KIND, person_id, None,
                    dedup_key=f"{UNMATCHED_KIND}:{person_id}:{day}", payload={})
    return ReplyResult(ReplyOutcome.NO_OFFER)


async def _answer(session: AsyncSession, centre: Centre, now: dt.datetime, kind: str,
                  offer_id: int, person_id: int, accept: bool) -> str | None:
    """Answer one offer as the person; its status afterwards, or None when it could not be
    answered after all (it is no longer theirs, or the time held for it is gone)."""
    actor = f"{SMS_PREFIX}{person_id}"
    try:
        if kind == "move_offer":
            move = await control.answer_move(session, centre, now, offer_id, accept=accept,
                                             identity_id=None, person_id=person_id, actor=actor)
            return move.status.value
        if kind == "closure_substitute":
            view = await answer_substitute(session, centre, now, offer_id=offer_id,
                                           account_id=None, person_id=person_id, accept=accept,
                                           actor=actor)
            return view.offer.status
        slot_id = None
        if accept:
            # The text named the held time, and only that one: with no hold left (a closure
            # of that time took it, or it was swept), it is gone, not another time.
            slot_id = await held_slot(session, offer_id)
            if slot_id is None:
                return TIME_GONE
        view = await answer_move(session, centre, now, offer_id=offer_id, account_id=None,
                                 person_id=person_id, slot_id=slot_id, actor=actor)
        return view.offer.status
    except TimeGone:
        return TIME_GONE
    except (OfferGone, ControlRefused):
        return None


async def _tell(session: AsyncSession, centre: Centre, now: dt.datetime, kind: str,
                person_id: int, appointment_id: int | None, *, dedup_key: str,
                payload: dict[str, object]) -> None:
    """Answer a reply by text, when the policy sends this kind (the answer came by SMS, so it
    goes by SMS whether or not the person has a chat account)."""
    if centre.sms.policy_for(kind) == NEVER:
        return
    await queue_sms(session, centre, now, kind=kind, dedup_key=dedup_key, person_id=person_id,
                    via="reply", appointment_id=appointment_id, payload=payload)


__all__ = ["ReplyOutcome", "ReplyResult", "answer_by_reply", "first_delivery", "is_clear_opt_out",
           "offer_answer", "offer_texted_recently", "opts_out", "reply_key"]
