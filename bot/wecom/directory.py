"""Staff members' display names: the name configured in ``wecom.staff_names``, else the name
WeCom's directory gives (``user/get``), kept in the database for a day so every process asks
once. Staff are shown by name, never by their user id; when no name can be had they are
"工作人员" rather than an id.
"""

from __future__ import annotations

import datetime as dt
import logging

from bot.channels import TryLater, Unreachable
from bot.wecom.api import WecomApiError, WecomTokens, call_api
from storage.shared import read_value, write_value

log = logging.getLogger("yuyue.wecom")

KEPT = dt.timedelta(days=1)


class Directory:
    """Names of WeCom users, from the settings or the directory."""

    def __init__(self, tokens: WecomTokens, *, fallback: str) -> None:
        self.tokens = tokens
        self.fallback = fallback
        self.configured = dict(item.split("=", 1) for item in tokens.settings.staff_names)

    async def name(self, user_id: str) -> str:
        """The name staff know ``user_id`` by."""
        if user_id in self.configured:
            return self.configured[user_id]
        key = f"wecom.name:{user_id}"[:80]
        database, now = self.tokens.database, self.tokens.clock.now()
        async with database.read() as session:
            kept = await read_value(session, key)
        if kept is not None and kept.value and kept.expires_at and kept.expires_at > now:
            return kept.value
        try:
            found = await call_api(self.tokens, "GET", "user/get", query={"userid": user_id})
        except (WecomApiError, TryLater, Unreachable) as exc:
            # A name is a courtesy: the message is handled without it.
            log.warning("wecom: no directory name for a staff member (%s)", exc)
            return kept.value if kept is not None and kept.value else self.fallback
        name = str(found.get("name") or "").strip()[:60]
        if not name or name == user_id:
            return self.fallback
        async with database.session() as session:
            await write_value(session, key, name, now, expires_at=now + KEPT)
        return name
