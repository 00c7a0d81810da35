"""Strikes and blocks (黑名单): a no-show or a late cancellation is a strike; enough strikes in
the window block the person for a while; the block ends by itself or is lifted by staff with a
reason. Nothing here commits."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.audit import SYSTEM, audit
from storage.centre import Centre
from storage.models import Appointment, Block, ChannelIdentity, Outbox, Person, Strike
from storage.outbox import enqueue
from storage.refusals import BookingRefused, Refusal
from storage.rules import block_until, next_threshold, strikes_in_window, strikes_to_block

_ACTIVE_BLOCK = (select(Block).where(Block.person_id == bindparam("person_id"),
                                     Block.lifted_at.is_(None), Block.starts_at <= bindparam("now"),
                                     Block.ends_at > bindparam("now"))
                 .order_by(Block.ends_at.desc()).limit(1))
# When that block ends, as a column another query can carry (the booking checks read it in the
# same round trip as the person's appointments); NULL when the person is not blocked.
ACTIVE_BLOCK_ENDS = _ACTIVE_BLOCK.with_only_columns(Block.ends_at).scalar_subquery().correlate(None)


async def active_block(session: AsyncSession, person_id: int, now: dt.datetime) -> Block | None:
    """The block in force for a person at ``now`` (the one ending last), if any."""
    return await session.scalar(_ACTIVE_BLOCK, {"person_id": person_id, "now": now})


@dataclass(frozen=True)
class StrikeOutcome:
    count: int                          # strikes inside the window, this one included
    blocked_until: dt.datetime | None   # set when this strike started a block
    next_threshold: int | None = None
    next_block_days: int | None = None


async def add_strike(session: AsyncSession, centre: Centre, now: dt.datetime, person_id: int,
                     reason: str, appointment: Appointment | None = None) -> StrikeOutcome:
    """Record a strike, block the person when it reaches a tier, and tell them either way."""
    strike = Strike(person_id=person_id, appointment_id=appointment.id if appointment else None,
                    reason=reason, at=now)
    session.add(strike)
    await session.flush()
    rules = centre.rules
    times = (await session.scalars(select(Strike.at).where(
        Strike.person_id == person_id, Strike.voided_at.is_(None),
        Strike.at > now - dt.timedelta(days=rules.strike_window_days)))).all()
    count = strikes_in_window(times, now, rules)
    await audit(session, now, SYSTEM, "strike", "person", person_id, reason=reason, count=count,
                appointment=appointment.id if appointment else None)
    identity_id = appointment.identity_id if appointment else None
    tier = strikes_to_block(count, rules)
    if tier is not None:
        block = Block(person_id=person_id, starts_at=now, ends_at=block_until(now, tier),
                      strikes=count, created_at=now)
        session.add(block)
        await session.flush()
        await audit(session, now, SYSTEM, "block", "person", person_id, block=block.id,
                    until=block.ends_at.isoformat(), strikes=count)
        if identity_id is not None:
            await enqueue(session, kind="blocked", now=now, identity_id=identity_id,
                          dedup_key=f"blocked:{block.id}",
                          payload={"until": block.ends_at.isoformat(), "strikes": count})
        return StrikeOutcome(count, block.ends_at)
    upcoming = next_threshold(count, rules)
    if identity_id is not None:
        await enqueue(session, kind="strike_warning", now=now, identity_id=identity_id,
                      dedup_key=f"strike:{strike.id}",
                      payload={"count": count, "reason": reason,
                               "threshold": upcoming.strikes if upcoming else None,
                               "days": upcoming.days if upcoming else None})
    return StrikeOutcome(count, None, upcoming.strikes if upcoming else None,
                         upcoming.days if upcoming else None)


async def lift(session: AsyncSession, now: dt.datetime, block: Block, actor: str,
               reason: str) -> None:
    block.lifted_at, block.lifted_by, block.lift_reason = now, actor, reason
    await audit(session, now, actor, "lift_block", "person", block.person_id, block=block.id,
                reason=reason)


async def lift_block(session: AsyncSession, now: dt.datetime, person_id: int, *, actor: str,
                     reason: str) -> int:
    """Staff lift a person's block early; a reason is required and audited. The citizen is
    told they may book again (the staff's reason is not theirs to read): on the account that
    was told of the block, else the one they last wrote from.

    Raises:
        BookingRefused: REASON_REQUIRED, NOT_BLOCKED.
    """
    if not reason or not reason.strip():
        raise BookingRefused(Refusal.REASON_REQUIRED)
    blocks = (await session.scalars(select(Block).where(
        Block.person_id == person_id, Block.lifted_at.is_(None), Block.ends_at > now)
        .order_by(Block.id))).all()
    if not blocks:
        raise BookingRefused(Refusal.NOT_BLOCKED)
    for block in blocks:
        await lift(session, now, block, actor, reason.strip())
    identity_id = await session.scalar(select(Outbox.identity_id).where(
        Outbox.dedup_key.in_([f"blocked:{b.id}" for b in blocks]),
        Outbox.identity_id.is_not(None)).order_by(Outbox.id.desc()).limit(1))
    if identity_id is None:
        identity_id = await session.scalar(
            select(ChannelIdentity.id).where(ChannelIdentity.person_id == person_id,
                                             ChannelIdentity.unreachable_at.is_(None))
            .order_by(ChannelIdentity.last_inbound_at.desc()).limit(1))
    if identity_id is not None:
        await enqueue(session, kind="unblocked", now=now, identity_id=identity_id,
                      dedup_key=f"unblocked:{blocks[0].id}")
    return len(blocks)


async def current_blocks(session: AsyncSession, now: dt.datetime) -> list[tuple[Block, Person]]:
    """The blocks in force at ``now`` with their people, the one ending first first."""
    rows = (await session.execute(
        select(Block, Person).join(Person, Person.id == Block.person_id)
        .where(Block.lifted_at.is_(None), Block.starts_at <= now, Block.ends_at > now)
        .order_by(Block.ends_at))).all()
    return [(block, person) for block, person in rows]


async def people_with_mobile(session: AsyncSession, mobile: str) -> list[Person]:
    """Everyone registered with this mobile number (a family may share one)."""
    return list((await session.scalars(select(Person).where(Person.mobile == mobile))).all())
