"""Conversations: who is writing, where they are in a flow, and each platform message handled once.

A conversation is a row per (channel, user): flow, step and data, locked while one message is
handled so two messages of one user never interleave, written once at the end of it.

Platforms deliver a message again when they are unsure it arrived (WeChat retries after 5
seconds, Telegram redelivers an update that was not acknowledged). Every channel goes through
the one record of platform message ids here: the engine records a delivery and keeps its answer
to give a retry, a transport asks whether a message was already processed, and a transport
that does something of its own once per message (the rest of a long WeChat answer) marks it
done under a purpose of its own. Nothing here commits.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.identity import identity_for
from storage.models import Base, ChannelIdentity, Conversation

MESSAGE_ID_LENGTH = 128     # the column's length; longer platform ids are cut to it
# How long a platform message id counts as seen. Platforms redeliver within minutes (WeChat
# after 5 seconds, Telegram while an update is not acknowledged); ids are not unique forever
# (Telegram's update ids may start anew, at random, after a week without updates), so an id
# seen longer ago than this is a new message, processed again, and the row can go.
DEDUP_WINDOW = dt.timedelta(hours=1)

log = logging.getLogger("yuyue.conversations")

# The statements every message runs, built once: building one and working out its cache key
# costs about as much as running it on PostgreSQL. The processed-message statements go to the
# table, as nothing of them is loaded into the session (the ORM's bookkeeping is pure overhead).
_PROCESSED = Base.metadata.tables["processed_message"]
_MARK_INBOUND = (
    update(ChannelIdentity)
    .where(ChannelIdentity.channel == bindparam("on_channel"),
           ChannelIdentity.platform_user_id == bindparam("sender"))
    .values(last_inbound_at=bindparam("now"), unreachable_at=None, unreachable_reason=None)
    .returning(ChannelIdentity)
    .execution_options(synchronize_session=False))
_CONVERSATION = (
    select(Conversation)
    .where(Conversation.channel == bindparam("on_channel"), Conversation.user_id == bindparam("key"))
    .with_for_update())
_ANSWER = (select(_PROCESSED.c.response)
           .where(_PROCESSED.c.channel == bindparam("on_channel"),
                  _PROCESSED.c.message_id == bindparam("message")))
_RECORDED = (select(_PROCESSED.c.message_id)
             .where(_PROCESSED.c.channel == bindparam("on_channel"),
                    _PROCESSED.c.message_id == bindparam("message"),
                    _PROCESSED.c.processed_at > bindparam("since")))
_FIRST_SEEN = (select(_PROCESSED.c.processed_at)
               .where(_PROCESSED.c.channel == bindparam("on_channel"),
                      _PROCESSED.c.message_id == bindparam("message")))
# An id seen before the window is a new message: it takes the row over (one writer wins; a
# concurrent one finds the row renewed and is the duplicate).
_RENEW = (update(_PROCESSED)
          .where(_PROCESSED.c.channel == bindparam("on_channel"),
                 _PROCESSED.c.message_id == bindparam("message"),
                 _PROCESSED.c.processed_at <= bindparam("since"))
          .values(processed_at=bindparam("now"), response={}))
# The delivery record, per dialect (both spell INSERT ... ON CONFLICT DO NOTHING).
_RECORD = {module.dialect.name: module.insert(_PROCESSED)
           .values(channel=bindparam("on_channel"), message_id=bindparam("message"),
                   processed_at=bindparam("now"), response=bindparam("answer"))
           .on_conflict_do_nothing(index_elements=["channel", "message_id"])
           for module in (postgresql, sqlite)}
_STORE_ANSWER = (
    update(_PROCESSED)
    .where(_PROCESSED.c.channel == bindparam("on_channel"),
           _PROCESSED.c.message_id == bindparam("message"))
    .values(response=bindparam("answer")))


# --- the sender and their conversation ----------------------------------------------------------


async def sender(session: AsyncSession, channel: str, user_id: str, locale: str,
                 now: dt.datetime, *, writing: bool = True) -> ChannelIdentity:
    """The sender's channel identity, created on first contact with ``locale``.

    Args:
        writing: the sender is writing now (not leaving): their last message is ``now``, which
            also makes them reachable again. For a known sender that is one UPDATE ...
            RETURNING instead of a read and a write, as it runs for every message.
    """
    if writing:
        known = await session.scalar(_MARK_INBOUND, {"on_channel": channel, "sender": user_id,
                                                     "now": now})
        if known is not None:
            return known
    identity = await identity_for(session, channel, user_id, locale, now)
    if writing:
        identity.last_inbound_at = now
        identity.unreachable_at = identity.unreachable_reason = None
    return identity


async def lock_conversation(session: AsyncSession, channel: str, key: str, now: dt.datetime, *,
                            initial: dict[str, Any]) -> Conversation:
    """The conversation of ``key`` on ``channel``, locked until the transaction ends (on
    PostgreSQL; SQLite has one writer anyway), or a new one outside any flow with ``initial``
    data."""
    conversation = await session.scalar(_CONVERSATION, {"on_channel": channel, "key": key})
    if conversation is None:
        conversation = Conversation(channel=channel, user_id=key, flow=None, step=None,
                                    data=initial, updated_at=now)
        session.add(conversation)
    return conversation


def save_conversation(conversation: Conversation, flow: str | None, step: str | None,
                      data: dict[str, Any], now: dt.datetime) -> None:
    """Write where the conversation is now (once per message, committed with it)."""
    conversation.flow, conversation.step, conversation.data = flow, step, data
    conversation.updated_at = now


# --- each platform message once -----------------------------------------------------------------


async def record_delivery(session: AsyncSession, channel: str, message_id: str,
                          now: dt.datetime, *, window: dt.timedelta = DEDUP_WINDOW) -> bool:
    """Record a platform message id as being handled; False when it was recorded less than
    ``window`` ago (a redelivery: logged once here, with the channel and how long ago, never
    the id or the content). An id recorded longer ago is a new message and True.

    A concurrent delivery of the same id waits here for the first one's transaction, and then
    sees its row (PostgreSQL), or comes after it altogether (SQLite's single writer).
    """
    message_id = message_id[:MESSAGE_ID_LENGTH]
    keys = {"on_channel": channel, "message": message_id}
    inserted = await session.execute(_RECORD[session.get_bind().dialect.name],
                                     {**keys, "now": now, "answer": {}})
    if inserted.rowcount:  # type: ignore[attr-defined]
        return True
    renewed = await session.execute(_RENEW, {**keys, "since": now - window, "now": now})
    if renewed.rowcount:  # type: ignore[attr-defined]
        return True
    first = await session.scalar(_FIRST_SEEN, keys)
    log_duplicate(channel, now, first)
    return False


def log_duplicate(channel: str, now: dt.datetime, first: dt.datetime | None) -> None:
    """Say that a message was dropped as a duplicate: the channel and how long after the first
    delivery, nothing about the message or who sent it."""
    age = "" if first is None else f" {(_aware(now) - _aware(first)).total_seconds():.0f} s after the first"
    log.info("%s message delivered again%s: answered as before, not acted on twice", channel, age)


def _aware(instant: dt.datetime) -> dt.datetime:
    # SQLite gives naive datetimes back (stored as UTC)
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=dt.UTC)


async def stored_answer(session: AsyncSession, channel: str, message_id: str) -> list[dict[str, Any]]:
    """The answer given to a message the first time, as stored by ``store_answer`` (empty
    when none was stored)."""
    response = await session.scalar(_ANSWER, {"on_channel": channel,
                                              "message": message_id[:MESSAGE_ID_LENGTH]})
    return list((response or {}).get("replies", []))


async def store_answer(session: AsyncSession, channel: str, message_id: str,
                       answer: list[dict[str, Any]]) -> None:
    """Keep the answer to a recorded message, to give its retries exactly the same."""
    await session.execute(_STORE_ANSWER, {"on_channel": channel,
                                          "message": message_id[:MESSAGE_ID_LENGTH],
                                          "answer": {"replies": answer}})


async def was_processed(session: AsyncSession, channel: str, message_id: str,
                        now: dt.datetime, *, window: dt.timedelta = DEDUP_WINDOW) -> bool:
    """Whether a platform message id was recorded (and so acted on) less than ``window`` ago."""
    return await session.scalar(_RECORDED, {"on_channel": channel,
                                            "message": message_id[:MESSAGE_ID_LENGTH],
                                            "since": now - window}) is not None


async def forget_processed(session: AsyncSession, now: dt.datetime, *,
                           window: dt.timedelta = DEDUP_WINDOW) -> int:
    """Delete the records of message ids seen longer ago than ``window`` (they no longer count
    as seen); a periodic job.

    Returns:
        How many were deleted.
    """
    result = await session.execute(delete(_PROCESSED).where(
        _PROCESSED.c.processed_at <= now - window))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def first_time(session: AsyncSession, channel: str, purpose: str, message_id: str,
                     now: dt.datetime) -> bool:
    """Mark that something a transport does once per message (``purpose``: "rest", the rest of
    a long WeChat answer) is done for this message; False when it was done before."""
    return await record_delivery(session, f"{channel}:{purpose}", message_id, now)
