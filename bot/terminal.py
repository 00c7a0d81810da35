"""The terminal chat: the same flows as WeChat and Telegram, in a shell.

Choices are numbered; type the number, the label, or anything else you would type in a chat.
Attachments (the .ics calendar file) are saved to a folder and their path printed. In scripted
mode, lines are read from standard input and the whole transcript is written out, so a journey
can be replayed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TextIO

from handlers.core import Incoming, Reply
from handlers.engine import Assistant

QUIT = {"/quit", "/exit", ":q"}


def render(reply: Reply, attachments_dir: Path) -> str:
    """A reply as terminal text: the message, its numbered choices, a saved attachment."""
    lines = [reply.text]
    for number, choice in enumerate(reply.flat_choices, start=1):
        lines.append(f"  {number}) {choice.label}")
    if reply.attachment is not None:
        attachments_dir.mkdir(parents=True, exist_ok=True)
        path = attachments_dir / reply.attachment.filename
        path.write_bytes(reply.attachment.content)
        lines.append(f"  [{reply.attachment.caption or 'file'}] {path}")
    return "\n".join(lines)


async def run_terminal(assistant: Assistant, *, user: str, locale: str | None,
                       source: TextIO, out: TextIO, attachments_dir: Path, scripted: bool) -> int:
    """Chat until the input ends or the user types /quit; returns an exit code."""

    def show(replies: list[Reply]) -> None:
        for reply in replies:
            out.write(render(reply, attachments_dir) + "\n\n")
        out.flush()

    show(await assistant.handle(Incoming(channel="terminal", user_id=user, chat_id=user,
                                         command="start", locale=locale)))
    while True:
        if not scripted:
            out.write("> ")
            out.flush()
        line = await asyncio.to_thread(source.readline)
        if not line:
            return 0
        text = line.rstrip("\n")
        if scripted:
            out.write(f"> {text}\n")
        if text.strip() in QUIT:
            return 0
        show(await assistant.handle(_incoming(user, text, locale)))


def _incoming(user: str, text: str, locale: str | None) -> Incoming:
    stripped = text.strip()
    if stripped.startswith("/") and len(stripped) > 1:
        command, _, args = stripped[1:].partition(" ")
        return Incoming(channel="terminal", user_id=user, chat_id=user, command=command,
                        args=args, locale=locale)
    return Incoming(channel="terminal", user_id=user, chat_id=user, text=text, locale=locale)
