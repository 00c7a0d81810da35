"""Drive the conversation engine like a person would, and read what it answered."""

from __future__ import annotations

from handlers.core import Choice, Incoming, Reply
from handlers.engine import Assistant


class Dialog:
    """One user talking to the assistant on one channel."""

    def __init__(self, assistant: Assistant, *, user: str = "u1", channel: str = "terminal",
                 locale: str | None = "zh-CN") -> None:
        self.assistant = assistant
        self.user, self.channel, self.locale = user, channel, locale
        self.last: list[Reply] = []
        self.count = 0

    async def send(self, **fields: object) -> list[Reply]:
        self.count += 1
        values: dict[str, object] = {"channel": self.channel, "user_id": self.user,
                                     "chat_id": self.user, "locale": self.locale, **fields}
        incoming = Incoming(**values)  # type: ignore[arg-type]
        self.last = await self.assistant.handle(incoming)
        menus = [r for r in self.last if r.choices]
        assert len(menus) <= 1, "an answer shows at most one menu"
        return self.last

    async def say(self, text: str) -> list[Reply]:
        return await self.send(text=text)

    async def command(self, name: str, args: str = "") -> list[Reply]:
        return await self.send(command=name, args=args)

    def choice(self, label_part: str) -> Choice:
        for reply in self.last:
            for choice in reply.flat_choices:
                if label_part in choice.label:
                    return choice
        raise AssertionError(f"no choice containing {label_part!r} in {self.labels}")

    async def press(self, label_part: str) -> list[Reply]:
        """Press the first button whose label contains ``label_part``."""
        return await self.send(choice=self.choice(label_part).token)

    async def press_number(self, number: int) -> list[Reply]:
        return await self.say(str(number))

    @property
    def text(self) -> str:
        return "\n".join(r.text for r in self.last)

    @property
    def labels(self) -> list[str]:
        return [c.label for r in self.last for c in r.flat_choices]


async def verify_dialog(dialog: Dialog, steps: list[tuple[str, str]]) -> None:
    """Say each thing and check the answer contains the expected words.

    A step's "said" is sent as text, except "[label]" presses a button and "/cmd" is a command.
    """
    for said, expected in steps:
        if said.startswith("[") and said.endswith("]"):
            await dialog.press(said[1:-1])
        elif said.startswith("/"):
            name, _, args = said[1:].partition(" ")
            await dialog.command(name, args)
        else:
            await dialog.say(said)
        assert expected in dialog.text + "\n" + "\n".join(dialog.labels), (
            f"after {said!r} expected {expected!r} in:\n{dialog.text}\n{dialog.labels}")
