"""A ``Reply`` as WeCom app messages: a template card with buttons for an alert whose choices
work outside any conversation (their payload travels as the button's key), otherwise text with
the choices as numbered lines staff answer by typing the number.

Limits (developer.work.weixin.qq.com, 发送应用消息): a text message takes 2048 bytes; a
card's main title about 36 characters, its sub-title text about 160, a button's text about 10,
its key 1024 bytes, at most 6 buttons; a task id is at most 128 bytes of letters, digits and
"_-@", unique within the app.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from bot.wecom.robot import cut_utf8
from bot.wecom.robot import render as robot_render
from handlers.context import GLOBAL_PREFIX
from handlers.core import Reply

TEXT_LIMIT = 2048
_MENU_TOKEN = re.compile(r"^m\d+\.(\d+)$")      # a numbered choice (handlers.engine)
TITLE_LIMIT, DESC_LIMIT, BUTTON_LIMIT, KEY_LIMIT, BUTTONS = 36, 160, 10, 1024, 6


@dataclass(frozen=True)
class Card:
    """A button-interaction template card and its task id."""

    task_id: str
    body: dict[str, Any]


def short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def is_card(reply: Reply) -> bool:
    """A reply whose every choice works outside a conversation goes as a card."""
    choices = reply.flat_choices
    return bool(choices) and all(c.token.startswith(GLOBAL_PREFIX) for c in choices) \
        and all(len(c.token.encode()) <= KEY_LIMIT for c in choices)


def card(reply: Reply, *, task_id: str | None = None) -> Card:
    """The reply as a card: its first line the title, the rest the text, its choices the
    buttons (the first one primary)."""
    title, _, rest = reply.text.strip().partition("\n")
    task = task_id or "yy-" + secrets.token_hex(12)
    buttons = [{"text": short(choice.label, BUTTON_LIMIT), "style": 1 if index == 0 else 2,
                "key": choice.token}
               for index, choice in enumerate(reply.flat_choices[:BUTTONS])]
    body: dict[str, Any] = {
        "card_type": "button_interaction",
        "main_title": {"title": short(title.strip(), TITLE_LIMIT)},
        "task_id": task,
        "button_list": buttons,
    }
    if rest.strip():
        body["sub_title_text"] = short(rest.strip(), DESC_LIMIT)
    return Card(task, body)


def text(reply: Reply) -> str:
    """The reply as text: its choices one per line with the number to type (menu choices),
    or their label alone when they cannot be typed."""
    lines = [reply.text.strip()] if reply.text.strip() else []
    for choice in reply.flat_choices:
        match = _MENU_TOKEN.match(choice.token)
        if match:
            lines.append(f"{int(match.group(1)) + 1}. {choice.label}")
    return "\n".join(lines)


def texts(reply: Reply) -> list[str]:
    """``text(reply)`` in pieces WeCom takes."""
    return cut_utf8(text(reply), TEXT_LIMIT)


def copy_texts(reply: Reply) -> list[str]:
    """An alert as the app group chat's plain copy: its buttons named, to be pressed on the
    card each staff member got."""
    return cut_utf8(robot_render([reply]), TEXT_LIMIT)
