"""Every flow of the conversation, in one table, and the lookups the engine makes in it.

The order is the order commands are looked up in: the manager's figures first, then staff
(which in the staff group take every command), then the menu and the citizen's flows.
"""

from __future__ import annotations

from collections.abc import Iterable

from handlers import (
    booking,
    cases,
    closure_offers,
    complaints,
    elder,
    guide,
    handoff,
    home_visit,
    menu,
    moves,
    my_bookings,
    people,
    rating,
    staff,
    stats,
)
from handlers.context import Ctx, StepHandler
from handlers.flow import Action, Command, Flow
from handlers.payloads import Payload, prefix_of


class Registry:
    """The flows by name, their steps, commands and notification buttons."""

    def __init__(self, flows: Iterable[Flow]) -> None:
        self.flows = tuple(flows)
        self._by_name = {flow.name: flow for flow in self.flows}
        self._actions: dict[str, tuple[Flow, type[Payload], Action]] = {}
        for flow in self.flows:
            for kind, action in flow.actions.items():
                if kind.prefix in self._actions:
                    raise ValueError(f"two flows answer the button {kind.prefix!r}")
                self._actions[kind.prefix] = (flow, kind, action)
            if not flow.text_steps <= set(flow.steps):
                raise ValueError(f"flow {flow.name!r} has text steps it does not have")
        if len(self._by_name) != len(self.flows):
            raise ValueError("two flows have the same name")

    def flow(self, name: str | None) -> Flow | None:
        return self._by_name.get(name or "")

    def handler(self, flow: str | None, step: str | None) -> StepHandler | None:
        """The handler of the step a conversation is at, or None (no flow, or a step that is
        gone)."""
        found = self.flow(flow)
        named = found.step(step) if found is not None else None
        return named[1] if named is not None else None

    def text_handler(self, flow: str | None, step: str | None) -> StepHandler | None:
        """The handler of the step a conversation is at if that step takes typed text."""
        found = self.flow(flow)
        named = found.step(step) if found is not None else None
        if named is None or named[0] not in found.text_steps:  # type: ignore[union-attr]
            return None
        return named[1]

    def photo_handler(self, flow: str | None, step: str | None) -> StepHandler | None:
        """The handler of the step a conversation is at if that step takes a photo."""
        found = self.flow(flow)
        named = found.step(step) if found is not None else None
        if named is None or named[0] not in found.photo_steps:  # type: ignore[union-attr]
            return None
        return named[1]

    async def command(self, ctx: Ctx, name: str) -> tuple[Flow, Command] | None:
        """The flow answering a command, and how; None for an unknown command."""
        for flow in self.flows:
            command = flow.commands.get(name)
            if command is None and flow.group_commands is not None:
                command = await flow.group_commands(ctx, name)
            if command is not None:
                return flow, command
        return None

    def action(self, payload: str) -> tuple[Flow, type[Payload], Action] | None:
        """The flow answering a notification's button, the payload's kind and the action."""
        return self._actions.get(prefix_of(payload))


FLOWS = Registry([stats.FLOW, staff.FLOW, menu.FLOW, booking.FLOW, my_bookings.FLOW, guide.FLOW,
                  handoff.FLOW, home_visit.FLOW, rating.FLOW, cases.FLOW, people.FLOW, elder.FLOW,
                  closure_offers.FLOW, moves.FLOW, complaints.FLOW])
