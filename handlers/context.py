"""What a flow step receives: the transaction, the time, the user, their conversation state,
and helpers to translate, offer choices and move between steps."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from handlers.core import Choice, Incoming, Reply
from handlers.i18n import translate
from storage.booking import owner_key
from storage.centre import Centre
from storage.models import ChannelIdentity, Conversation
from storage.settings import Settings

GLOBAL_PREFIX = "g:"


@dataclass(frozen=True)
class Event:
    """What a step reacts to: entering it, a picked choice's payload, or typed text."""

    kind: str            # "enter", "choice" or "text"
    value: str = ""

    @property
    def is_enter(self) -> bool:
        return self.kind == "enter"


def option(label: str, payload: str) -> Choice:
    """A choice whose meaning (``payload``) stays in the conversation state, not on the wire."""
    return Choice(label, payload)


def global_option(label: str, payload: str) -> Choice:
    """A self-contained choice (for notifications) that works outside any flow."""
    return Choice(label, GLOBAL_PREFIX + payload)


@dataclass
class Ctx:
    """One incoming message being handled, inside one database transaction."""

    session: AsyncSession
    centre: Centre
    settings: Settings
    now: dt.datetime
    incoming: Incoming
    identity: ChannelIdentity
    conversation: Conversation
    locale: str
    notes: list[Reply] = field(default_factory=list)

    # --- text ---------------------------------------------------------------------------------

    def t(self, key: str, **values: Any) -> str:
        return translate(self.locale, key, **values)

    def reply(self, key: str, *rows: Sequence[Choice], edit: bool = False, **values: Any) -> Reply:
        """A translated message with rows of choices."""
        return Reply(self.t(key, **values), tuple(tuple(row) for row in rows if row), edit=edit)

    def local(self, when: dt.datetime) -> dt.datetime:
        return when.astimezone(self.centre.tz)

    @property
    def today(self) -> dt.date:
        return self.centre.today(self.now)

    @property
    def owner(self) -> str:
        return owner_key(self.incoming.channel, self.incoming.user_id)

    @property
    def actor(self) -> str:
        return owner_key(self.incoming.channel, self.incoming.user_id)

    # --- state --------------------------------------------------------------------------------

    @property
    def data(self) -> dict[str, Any]:
        return self.conversation.data

    @property
    def flow(self) -> str | None:
        return self.conversation.flow

    @property
    def step(self) -> str | None:
        return self.conversation.step

    def goto(self, flow: str | None, step: str | None = None, **data: Any) -> None:
        """Move to ``flow``/``step``; keyword values are added to the flow's data."""
        if flow != self.conversation.flow:
            keep = {k: v for k, v in self.conversation.data.items() if k.startswith("_")}
            self.conversation.data = keep
        self.conversation.flow, self.conversation.step = flow, step
        self.conversation.data = {**self.conversation.data, **data}

    def remember(self, **data: Any) -> None:
        self.conversation.data = {**self.conversation.data, **data}

    def forget(self, *keys: str) -> None:
        self.conversation.data = {k: v for k, v in self.conversation.data.items() if k not in keys}

    def end(self) -> None:
        """Leave the current flow (shared keys starting with "_" stay)."""
        self.goto(None, None)
