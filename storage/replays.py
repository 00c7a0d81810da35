"""Signed webhook queries seen within the replay window, so that one cannot carry two bodies.

WeChat signs the query (timestamp, nonce) and, in safe mode, the encrypted body. Whoever sees
one signed query can post it again within the window; a genuine retry brings the same body
(and is answered from the de-duplication record), anything else is a replay. The record is in
the database, so every process behind the proxy shares it. Nothing here commits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import SignedRequest
from storage.outbox import insert_ignoring_duplicates

_TABLE = SignedRequest.__table__


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def same_body(session: AsyncSession, channel: str, signed_query: str, body: bytes,
                    now: dt.datetime) -> bool:
    """Record ``signed_query`` with ``body``; False when it was seen before with another body.

    Args:
        signed_query: what the platform signed (timestamp, nonce and the signature itself).
    """
    signed, digest = _digest(signed_query.encode("utf-8")), _digest(body)
    inserted = await session.execute(
        insert_ignoring_duplicates(session, _TABLE, ["channel", "signed"])
        .values(channel=channel, signed=signed, body_digest=digest, seen_at=now))
    if inserted.rowcount:  # type: ignore[attr-defined]
        return True
    seen = await session.scalar(select(SignedRequest.body_digest).where(
        SignedRequest.channel == channel, SignedRequest.signed == signed))
    return seen is None or hmac.compare_digest(seen, digest)


async def forget_before(session: AsyncSession, channel: str, before: dt.datetime) -> int:
    """Delete the queries seen before ``before`` (past the window, a query is refused as
    stale anyway). Returns how many were deleted."""
    result = await session.execute(delete(SignedRequest).where(
        SignedRequest.channel == channel, SignedRequest.seen_at < before))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
