"""What a flow step receives: the transaction, the time, the user, their conversation state,
and helpers to translate, offer choices and move between steps."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from handlers.core import Choice, Incoming, Reply, Reports
from handlers.i18n import catalog, translate
from handlers.payloads import WIRE_LIMIT, Button, Payload, pressed
from handlers.steps import StepName
from storage.centre import Centre
from storage.conversations import save_conversation
from storage.db import Session
from storage.models import ChannelIdentity, Conversation
from storage.seats import owner_key
from storage.settings import Settings

GLOBAL_PREFIX = "g:"

P = TypeVar("P", bound=Payload)


class EventKind(enum.StrEnum):
    ENTER = "enter"      # the step is entered (or shown again)
    CHOICE = "choice"    # a choice was picked; ``value`` is its payload
    TEXT = "text"        # text was typed (only steps that take text get it)
    PHOTO = "photo"      # a photo was sent; ``value`` is its reference (only photo steps)


@dataclass(frozen=True)
class Event:
    """What a step reacts to: entering it, a picked choice's payload, or typed text."""

    kind: EventKind
    value: str = ""

    @classmethod
    def enter(cls) -> Event:
        return cls(EventKind.ENTER)

    @property
    def is_enter(self) -> bool:
        return self.kind == EventKind.ENTER

    @property
    def is_text(self) -> bool:
        return self.kind == EventKind.TEXT

    @property
    def button(self) -> Button | None:
        """The plain button picked, if the event is one."""
        return pressed(self.value) if self.kind == EventKind.CHOICE else None

    def pick(self, kind: type[P]) -> P | None:
        """The payload of this kind that was picked, if the event is one."""
        return kind.read(self.value) if self.kind == EventKind.CHOICE else None


def option(label: str, payload: Payload | Button) -> Choice:
    """A choice whose meaning (``payload``) stays in the conversation state, not on the wire."""
    return Choice(label, payload.encode() if isinstance(payload, Payload) else payload.value)


def global_option(label: str, payload: Payload) -> Choice:
    """A self-contained choice (for notifications) that works outside any flow: its payload
    travels on the wire, so it must fit Telegram's callback data."""
    token = GLOBAL_PREFIX + payload.encode()
    if len(token.encode()) > WIRE_LIMIT:
        raise ValueError(f"a button's payload is longer than {WIRE_LIMIT} bytes: {token!r}")
    return Choice(label, token)


StepHandler = Callable[["Ctx", Event], Awaitable[list[Reply]]]


class Steps(Protocol):
    """Where ``ctx.enter`` finds the handler of a step (the registry of flows)."""

    def handler(self, flow: str | None, step: str | None) -> StepHandler | None: ...


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
    steps: Steps
    reports: Reports | None = None   # charts and spreadsheets for managers, drawn in bot/
    staff_reachable: bool = True     # a staff channel carries hand-off alerts (bot/ wires it)
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
        # 长辈 mode (handlers/elder.py): a shorter wording where the catalog has one.
        if self.data.get("_elder") and f"elder.{key}" in catalog(self.locale):
            key = f"elder.{key}"
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
    def actor(self) -> str:
        """Who is acting: one chat user on one channel (the holder of seats, the author of
        staff actions)."""
        return owner_key(self.incoming.channel, self.incoming.user_id)

    # --- state --------------------------------------------------------------------------------

    def goto(self, step: StepName, **data: Any) -> None:
        """Move to ``step`` without showing it; keyword values are added to the flow's data.
        Entering another flow starts its data afresh (shared keys starting with "_" stay); a
        sub-flow's step runs inside the current flow and keeps its data."""
        flow = step.flow or self.flow
        if flow != self.flow:
            self.data = {k: v for k, v in self.data.items() if k.startswith("_")}
        self.flow, self.step = flow, step.value
        self.data = {**self.data, **data}

    async def enter(self, step: StepName, **data: Any) -> list[Reply]:
        """Move to ``step`` and show it."""
        self.goto(step, **data)
        handler = self.steps.handler(self.flow, self.step)
        if handler is None:
            raise LookupError(f"no step {step.value!r} in flow {self.flow!r}")
        return await handler(self, Event.enter())

    def remember(self, **data: Any) -> None:
        self.data = {**self.data, **data}

    def forget(self, *keys: str) -> None:
        self.data = {k: v for k, v in self.data.items() if k not in keys}

    def end(self) -> None:
        """Leave the current flow (shared keys starting with "_" stay)."""
        if self.flow is not None:
            self.data = {k: v for k, v in self.data.items() if k.startswith("_")}
        self.flow, self.step = None, None

    def save(self) -> None:
        """Write the state to the conversation row, as of now (committed with the message)."""
        save_conversation(self.conversation, self.flow, self.step, self.data, self.now)
