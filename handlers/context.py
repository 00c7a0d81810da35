"""What a flow step receives: the transaction, the time, the user, their conversation state,
and helpers to translate, offer choices and move between steps."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from handlers.core import Choice, Incoming, Reply
from handlers.i18n import translate
from storage.centre import Centre
from storage.conversations import save_conversation
from storage.db import Session
from storage.models import ChannelIdentity, Conversation
from storage.seats import owner_key
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

    session: Session
    centre: Centre
    settings: Settings
    now: dt.datetime
    incoming: Incoming
    identity: ChannelIdentity
    conversation: Conversation
    locale: str
    notes: list[Reply] = field(default_factory=list)
    # The conversation's state while the message is handled. Steps change these; ``save``
    # writes them to the row once at the end, so the queries on the way do not flush the row
    # again after every change.
    flow: str | None = field(init=False)
    step: str | None = field(init=False)
    data: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.flow, self.step = self.conversation.flow, self.conversation.step
        self.data = self.conversation.data

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

    def goto(self, flow: str | None, step: str | None = None, **data: Any) -> None:
        """Move to ``flow``/``step``; keyword values are added to the flow's data."""
        if flow != self.flow:
            self.data = {k: v for k, v in self.data.items() if k.startswith("_")}
        self.flow, self.step = flow, step
        self.data = {**self.data, **data}

    def remember(self, **data: Any) -> None:
        self.data = {**self.data, **data}

    def forget(self, *keys: str) -> None:
        self.data = {k: v for k, v in self.data.items() if k not in keys}

    def end(self) -> None:
        """Leave the current flow (shared keys starting with "_" stay)."""
        self.goto(None, None)

    def save(self) -> None:
        """Write the state to the conversation row, as of now (committed with the message)."""
        save_conversation(self.conversation, self.flow, self.step, self.data, self.now)
