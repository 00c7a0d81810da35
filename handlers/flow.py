"""A flow, declared once: its steps, which of them take typed text, the commands and the
notification buttons it answers, and what cancelling it does (PTB's ``ConversationHandler``:
entry points, states, fallbacks). handlers/registry.py lists every flow.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from handlers.context import Ctx, StepHandler
from handlers.core import Reply
from handlers.payloads import Payload
from handlers.steps import StepName

Command = Callable[[Ctx, str], Awaitable[list[Reply]]]
Action = Callable[[Ctx, Any], Awaitable[list[Reply]]]       # called with its payload
Guard = Callable[[Ctx, str], Awaitable[list[Reply] | None]]
Leave = Callable[[Ctx], Awaitable[list[Reply]]]


@dataclass(frozen=True)
class Flow:
    """One flow of the conversation.

    Attributes:
        name: stored in the conversation row while the user is in the flow.
        steps: the step handlers by name; a step is entered with ``ctx.enter(name)`` and
            handles the events that reach it (an "enter" re-shows it, e.g. after a stale menu).
        text_steps: the steps that take typed text; anywhere else typed text is a menu number,
            a search or a question.
        commands: slash commands (and main-menu entries) that start the flow or act in it.
        actions: the self-contained buttons of notifications this flow answers, by payload.
        guard: who may use the commands and actions (None: everyone); given ctx and what was
            tried ("/today", "button claim"), it answers the refusal, or None to go ahead.
        stale: the answer to one of its actions that no longer (or never) made sense; None:
            "that menu is out of date" and the main menu.
        cancel: what cancelling the flow does (a cancel word, /cancel, its cancel button);
            None: leave it, give back any seat held, show the main menu.
        group_commands: in a group chat the flow owns (the staff group), the command for any
            name, or None when the chat is not its own.
        expires: an idle conversation in it is ended after ``conversation.idle_minutes``
            (a citizen waiting for staff may wait longer than a menu stays open).
        photo_steps: the steps that take a photo (anywhere else a photo is unsupported).
    """

    name: str
    steps: Mapping[StepName, StepHandler] = field(default_factory=dict)
    text_steps: frozenset[StepName] = frozenset()
    commands: Mapping[str, Command] = field(default_factory=dict)
    actions: Mapping[type[Payload], Action] = field(default_factory=dict)
    guard: Guard | None = None
    stale: Callable[[Ctx], list[Reply]] | None = None
    cancel: Leave | None = None
    group_commands: Callable[[Ctx, str], Awaitable[Command | None]] | None = None
    expires: bool = True
    photo_steps: frozenset[StepName] = frozenset()

    def step(self, name: str | None) -> tuple[StepName, StepHandler] | None:
        """The step stored as ``name`` in a conversation row, with its handler."""
        for step, handler in self.steps.items():
            if step.value == name:
                return step, handler
        return None
