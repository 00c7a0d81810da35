"""What WeCom posts to the app's callback: its meaning as an ``Incoming``. Pure functions: no
network, no database.

WeCom always encrypts (its "safe mode"): the signature covers the encrypted text and is checked
in constant time with a replay window (``bot.wechat.inbound.verify_signature``; WeCom signs the
same way), the XML is read with entities off and any DTD refused (``parse_xml``).

wechatpy's enterprise parser does not know the template-card click (``template_card_event``),
so its fields (EventKey, TaskId, ResponseCode) are read from the XML here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from bot.wechat.inbound import BadRequest, digits
from handlers.core import ChannelName, Incoming

CHANNEL = ChannelName.WECOM.value
# "/today", "／today" (a Chinese keyboard's slash), "/stats chart week".
_COMMAND = re.compile(r"^\s*[/／]([A-Za-z]\w{0,31})(?:\s+(.*?))?\s*$", re.S)
# Events that need no answer: the app opened, a menu link to a web page, location reports,
# the member added to or removed from the app's visible range, card menu clicks.
_SILENT_EVENTS = {"enter_agent", "view", "location", "subscribe", "unsubscribe",
                  "template_card_menu_event", "batch_job_result", "change_contact",
                  "view_miniprogram", "open_approval_change"}


@dataclass(frozen=True)
class CardClick:
    """A button pressed on one of our template cards."""

    user_id: str
    task_id: str
    response_code: str
    key: str


def card_click(fields: Mapping[str, str]) -> CardClick | None:
    """The card click in a callback, if it is one (with what updating the card needs)."""
    if fields.get("MsgType", "").lower() != "event" \
            or fields.get("Event", "").lower() != "template_card_event":
        return None
    user, task = fields.get("FromUserName", ""), fields.get("TaskId", "")
    key, code = fields.get("EventKey", "").strip(), fields.get("ResponseCode", "")
    if not (user and task and key):
        return None
    return CardClick(user_id=user, task_id=task, response_code=code, key=key)


def to_incoming(fields: Mapping[str, str], *, user_name: str = "") -> Incoming | None:
    """The conversation's view of a WeCom callback, or None when it needs no answer.

    Raises:
        BadRequest: a field every WeCom message has is missing.
    """
    user, msg_type = fields.get("FromUserName", ""), fields.get("MsgType", "").lower()
    created = fields.get("CreateTime", "")
    if not user or not msg_type or not digits(created, 12):
        raise BadRequest("not a WeCom message")
    incoming = functools.partial(Incoming, channel=CHANNEL, user_id=user, chat_id=user,
                                 user_name=user_name, files=True)
    if msg_type == "event":
        event = fields.get("Event", "").lower()
        # A retried event repeats sender, time and event: that is its identity.
        identity = f"{user}:{created}:{event}"
        if event == "click":
            key = fields.get("EventKey", "").strip()
            return incoming(event=f"menu:{key}", message_id=f"{identity}:{key}"[:128])
        click = card_click(fields)
        if click is not None:
            # The button's key is the alert's self-contained payload ("g:claim:12").
            return incoming(choice=click.key,
                            message_id=f"{identity}:{click.task_id}:{click.key}"[:128])
        if event in _SILENT_EVENTS or event == "template_card_event":
            return None
        return incoming(event="unsupported", message_id=identity)
    message_id = fields.get("MsgId") or f"{user}:{created}:{msg_type}"
    if msg_type == "text":
        text = fields.get("Content", "")
        command = _COMMAND.match(text)
        if command:
            return incoming(command=command.group(1), args=command.group(2) or "",
                            message_id=message_id)
        return incoming(text=text, message_id=message_id)
    return incoming(event="unsupported", message_id=message_id)
