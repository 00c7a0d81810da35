"""The conversation core's vocabulary: what comes in from any channel and what goes back.

Transports (bot/telegram/, bot/wechat/, bot/terminal.py) turn a platform update into an
``Incoming``, call ``Assistant.handle`` and render each ``Reply`` for their platform. Nothing
here knows which platform that is.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from storage.case_stats import CaseReport, WeekPoint
from storage.stats.exports import AppointmentRow
from storage.stats.figures import Figures
from storage.stats.resources import ResourceFigures
from storage.stats.series import DayPoint


class NotAdmitted(Exception):
    """A transport's own check, run in the message's transaction, refused the message (a
    replayed WeChat request): nothing of it is kept and it gets no answer."""


class ChannelName(enum.StrEnum):
    TELEGRAM = "telegram"
    WECHAT = "wechat"
    TERMINAL = "terminal"
    WECOM = "wecom"


@dataclass(frozen=True)
class Incoming:
    """One thing a user did: typed text, pressed a choice, sent a command, or an event.

    Attributes:
        channel: "telegram", "wechat", "terminal", or "wecom" (staff in the WeCom app).
        user_id: the platform's id of the person (Telegram user id, WeChat OpenID, WeCom
            user id).
        chat_id: where the answer goes (a private chat, or the staff group).
        text: what was typed (for a choice, the label shown, if known).
        choice: the token of a pressed choice (Telegram callback data, WeChat menu id).
        command: a slash command without the slash and bot name ("start", "cancel", "lang").
        args: what followed the command.
        event: a platform event: "subscribe", "unsubscribe", "menu:book", "unsupported".
        locale: the platform's language code for the user ("zh-hans", "en-US"...), if any.
        message_id: the platform's id of this message, to process it once only.
        is_group: the message came from a group chat (the staff group).
        user_name: a display name for staff-facing messages.
        reply_to_text: the text of the bot's message this one answers (a reply in a group),
            which names the hand-off it is about ("#12").
        files: the channel can deliver documents (spreadsheets); WeChat can send images only.
        photo: a photo the user sent, as "<channel>:<the platform's media id>" (with event
            "unsupported", for the steps that take none).
    """

    channel: str
    user_id: str
    chat_id: str = ""
    text: str = ""
    choice: str | None = None
    command: str | None = None
    args: str = ""
    event: str | None = None
    locale: str | None = None
    message_id: str | None = None
    is_group: bool = False
    user_name: str = ""
    reply_to_text: str = ""
    files: bool = True
    photo: str | None = None


@dataclass(frozen=True)
class Choice:
    """A button (Telegram) or numbered menu entry (WeChat, terminal).

    ``token`` is what comes back in ``Incoming.choice`` when it is picked: at most 64 bytes,
    so it fits Telegram's callback data; the meaning behind it is kept in the conversation.
    """

    label: str
    token: str


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mime: str
    caption: str = ""


@dataclass(frozen=True)
class ConsentRequest:
    """An offer to be notified later about an appointment, for channels where the citizen must
    agree to each later message first (WeChat's one-time subscription message). ``label`` is
    the text of the link asking for it; channels that may always write ignore it."""

    label: str
    appointment_id: int
    closure_label: str = ""     # a second link: one notice if the centre cancels the booking


@dataclass(frozen=True)
class Reply:
    """One message to show. ``choices`` are rows of buttons.

    ``edit`` asks a channel that can to replace the message whose button was just pressed
    instead of sending a new one: only for what that press replaces by design (the next step
    of a menu, a staff alert whose state line changes). A notification's content (a reminder,
    a staff answer, a shared alert) is never replaced by an answer to someone's press.

    ``toast`` marks a short answer meant for the presser alone (a refusal of a late press): a
    channel with callback answers (Telegram) shows it as the button's pop-up, others send it
    as a message.
    """

    text: str
    choices: tuple[tuple[Choice, ...], ...] = ()
    attachment: Attachment | None = None
    edit: bool = False
    consent: ConsentRequest | None = None
    toast: bool = False

    @property
    def flat_choices(self) -> list[Choice]:
        return [choice for row in self.choices for choice in row]

    def to_json(self) -> dict[str, Any]:
        """A stored form (for answering a platform's retry exactly as the first time)."""
        return {"text": self.text, "edit": self.edit, "toast": self.toast,
                "choices": [[[c.label, c.token] for c in row] for row in self.choices],
                "attachment": None if self.attachment is None else {
                    "filename": self.attachment.filename, "mime": self.attachment.mime,
                    "caption": self.attachment.caption},
                "consent": None if self.consent is None else [
                    self.consent.label, self.consent.appointment_id, self.consent.closure_label]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reply:
        consent = data.get("consent")
        return cls(text=data["text"], edit=data.get("edit", False), toast=data.get("toast", False),
                   choices=tuple(tuple(Choice(label, token) for label, token in row)
                                 for row in data.get("choices", [])),
                   consent=ConsentRequest(consent[0], int(consent[1]),
                                          *(consent[2:3] or [""])) if consent else None)


@dataclass(frozen=True)
class Outgoing:
    """Replies addressed to someone other than the sender (a relay, a staff alert)."""

    channel: str
    chat_id: str
    replies: list[Reply] = field(default_factory=list)


class Reports(Protocol):
    """Files made from the manager's figures, drawn by bot/ (matplotlib, openpyxl) and handed
    to the assistant, so handlers/ stays free of those libraries."""

    def chart(self, series: Sequence[DayPoint], title: str, locale: str) -> bytes: ...

    def on_time_chart(self, weeks: Sequence[WeekPoint], title: str, locale: str) -> bytes: ...

    def resource_chart(self, bars: Sequence[tuple[str, ResourceFigures]], title: str, locale: str,
                       *, dates: str = "", over_time: bool = False) -> bytes: ...

    def csv(self, rows: Sequence[AppointmentRow], summary: Figures, locale: str,
            cases: CaseReport | None = None) -> bytes: ...

    def xlsx(self, rows: Sequence[AppointmentRow], summary: Figures, locale: str,
             cases: CaseReport | None = None) -> bytes: ...


_ID = re.compile(r"[0-9]{1,9}")


def as_id(text: str) -> int | None:
    """A row id typed or carried in a token, or None: ASCII digits only, and small enough for
    any database's integer column (a forged "g:talk:²" or a 20-digit number is not an id)."""
    return int(text) if _ID.fullmatch(text) else None
