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

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import SignedRequest

_TABLE = SignedRequest.__table__
# Built once per dialect (every webhook message runs it): INSERT ... ON CONFLICT DO NOTHING.
_RECORD = {module.dialect.name: module.insert(_TABLE)
           .values(channel=bindparam("on_channel"), signed=bindparam("signed"),
                   body_digest=bindparam("digest"), seen_at=bindparam("now"))
           .on_conflict_do_nothing(index_elements=["channel", "signed"])
           for module in (postgresql, sqlite)}
_SEEN = select(SignedRequest.body_digest).where(SignedRequest.channel == bindparam("on_channel"),
                                                SignedRequest.signed == bindparam("signed"))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def same_body(session: AsyncSession, channel: str, signed_query: str, body: bytes,
                    now: dt.datetime) -> bool:
    """Record ``signed_query`` with ``body``; False when it was seen before with another body.

    Args:
        signed_query: what the platform signed (timestamp, nonce and the signature itself).
    """
    signed, digest = _digest(signed_query.encode("utf-8")), _digest(body)
    keys = {"on_channel": channel, "signed": signed}
    inserted = await session.execute(_RECORD[session.get_bind().dialect.name],
                                     {**keys, "digest": digest, "now": now})
    if inserted.rowcount:  # type: ignore[attr-defined]
        return True
    seen = await session.scalar(_SEEN, keys)
    return seen is None or hmac.compare_digest(seen, digest)


async def forget_before(session: AsyncSession, channel: str, before: dt.datetime) -> int:
    """Delete the queries seen before ``before`` (past the window, a query is refused as
    stale anyway). Returns how many were deleted."""
    result = await session.execute(delete(SignedRequest).where(
        SignedRequest.channel == channel, SignedRequest.seen_at < before))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
