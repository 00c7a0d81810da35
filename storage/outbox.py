"""The outbox: notifications written in the same transaction as the change that causes them.

A dispatcher in bot/ claims due rows, renders them in the citizen's language and sends them.
Each row has a de-duplication key, so one cause never produces two notifications.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Outbox, OutboxStatus

STAFF_TARGET = "staff"

REMINDER = "reminder"


def insert_ignoring_duplicates(session: AsyncSession, table: Any, index: list[str]) -> Any:
    """An INSERT that skips rows whose unique ``index`` columns already exist (both dialects)."""
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
