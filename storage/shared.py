"""Small values every process shares (``SharedValue`` rows) and leases on them.

A lease is a row whose ``owner`` holds it until ``expires_at``: the first process to take it does
a job that only one may do at a time (refreshing the WeChat access token), and a holder that
dies simply lets it expire. Nothing here commits; the caller's transaction does.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import SharedValue
from storage.outbox import insert_ignoring_duplicates


async def read_value(session: AsyncSession, key: str) -> SharedValue | None:
    """The shared row ``key``, or None."""
    return await session.scalar(select(SharedValue).where(SharedValue.key == key))


async def write_value(session: AsyncSession, key: str, value: str, now: dt.datetime, *,
                      expires_at: dt.datetime | None = None, owner: str | None = None) -> None:
    """Create or replace the shared row ``key`` (portable: insert-if-missing, then update)."""
    await session.execute(insert_ignoring_duplicates(session, SharedValue, ["key"]).values(
        key=key, value=value, owner=owner, expires_at=expires_at, updated_at=now))
    await session.execute(
        update(SharedValue).where(SharedValue.key == key)
        .values(value=value, owner=owner, expires_at=expires_at, updated_at=now)
        .execution_options(synchronize_session=False))


async def take_lease(session: AsyncSession, key: str, owner: str, now: dt.datetime,
                     duration: dt.timedelta) -> bool:
    """Take (or extend) the lease ``key`` for ``owner`` unless someone else holds it.

    The conditional UPDATE is the whole race: on PostgreSQL a second taker waits on the row
    lock and then re-checks the condition against the first taker's committed row; on SQLite
    writers are serialised anyway.

    Returns:
        True when ``owner`` holds the lease until ``now + duration``.
    """
    await session.execute(insert_ignoring_duplicates(session, SharedValue, ["key"]).values(
        key=key, value="", owner=None, expires_at=None, updated_at=now))
    result = await session.execute(
        update(SharedValue)
        .where(SharedValue.key == key,
               or_(SharedValue.owner.is_(None), SharedValue.owner == owner,
                   SharedValue.expires_at.is_(None), SharedValue.expires_at <= now))
        .values(owner=owner, expires_at=now + duration, updated_at=now)
        .execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release_lease(session: AsyncSession, key: str, owner: str, now: dt.datetime) -> None:
    """Give the lease ``key`` back, if ``owner`` still holds it."""
    await session.execute(
        update(SharedValue).where(SharedValue.key == key, SharedValue.owner == owner)
        .values(owner=None, expires_at=None, updated_at=now)
        .execution_options(synchronize_session=False))
