"""The audit trail: who did what to which record, and when, written with the change itself."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditLog

SYSTEM = "system"   # the actor of what the scheduler does


async def audit(session: AsyncSession, now: dt.datetime, actor: str, action: str, entity: str,
                entity_id: int | None, **detail: Any) -> None:
    session.add(AuditLog(at=now, actor=actor, action=action, entity=entity, entity_id=entity_id,
                         detail=detail))
