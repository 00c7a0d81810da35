"""What WeChat posts to the webhook: its signature checked, its XML read, its meaning as an
``Incoming``. Pure functions: no network, no database.

wechatpy's ``check_signature`` compares with ``!=`` and accepts any timestamp; ours is
constant-time with a replay window. The XML is read with entities off and any DTD refused.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

import xmltodict

# The errors and the signature check are shared with WeCom (bot.tencent); named here too.
from bot.tencent import BadRequest, digits
from bot.tencent import Forbidden as Forbidden
from bot.tencent import sign as sign
from bot.tencent import signature_problem as signature_problem
from bot.tencent import verify_signature as verify_signature
from handlers.context import GLOBAL_PREFIX
from handlers.core import Incoming

CHANNEL = "wechat"
# A numbered choice's token ("m12.3": menu 12, entry 3); its link carries it as digits.
MENU_TOKEN = re.compile(r"^m([0-9]{1,12})\.([0-9]{1,4})$")
# WeChat has no commands of its own: a text that starts with "/" (or a full-width "／", as
# Chinese keyboards type it) followed by a word is one.
_COMMAND = re.compile(r"^\s*[/／]([A-Za-z]\w{0,31})(?:\s+(.*?))?\s*$", re.S)


# --- parsing ---------------------------------------------------------------------------------


def parse_xml(body: bytes) -> dict[str, str]:
    """The fields of WeChat's flat ``<xml>`` message as strings.

    Raises:
        BadRequest: not well-formed, a DTD (WeChat never sends one; it is how entity bombs
            come), not ``<xml>``, or nested where WeChat is flat.
    """
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise BadRequest("DTD not accepted")
    try:
        document = xmltodict.parse(body, disable_entities=True)
    except Exception as exc:  # expat raises ExpatError, but also ValueError/TypeError on junk
        raise BadRequest("not well-formed XML") from exc
    root = document.get("xml") if isinstance(document, dict) else None
    if not isinstance(root, dict):
        raise BadRequest("no <xml> root")
    fields: dict[str, str] = {}
    for key, value in root.items():
        if value is None:
            fields[key] = ""
        elif isinstance(value, str):
            fields[key] = value
        # Nested elements (ScanCodeInfo, SendPicsInfo...) are not needed by any event we handle.
    return fields



def menu_id_for(token: str) -> str:
    """The ``msgmenuid`` of a choice token: digits for menu tokens ("m12.3" -> "12003")."""
    match = MENU_TOKEN.match(token)
    if match and int(match.group(2)) < 1000:
        return f"{int(match.group(1))}{int(match.group(2)):03d}"
    return token


def token_for_menu_id(menu_id: str) -> str | None:
    """The choice token behind a tapped link's ``bizmsgmenuid``, if it is one of ours."""
    menu_id = menu_id.strip()
    if digits(menu_id, 9) and len(menu_id) >= 4:
        number = int(menu_id)
        return f"m{number // 1000}.{number % 1000}"
    if menu_id.startswith(GLOBAL_PREFIX) and menu_id.isascii() and len(menu_id) <= 64:
        return menu_id
    return None


# Events that need no answer: a menu link opened a web page, the location WeChat reports on
# its own each time the chat is opened, delivery reports of template messages, a scan by a
# follower. Answering them would spam the citizen.
_SILENT_EVENTS = {"view", "location", "templatesendjobfinish", "scan", "view_miniprogram",
                  "kf_create_session", "kf_close_session", "kf_switch_session",
                  "subscribe_msg_popup_event", "subscribe_msg_change_event",
                  "subscribe_msg_sent_event"}


def to_incoming(fields: Mapping[str, str]) -> Incoming | None:
    """The conversation's view of a WeChat message, or None when it needs no answer.

    Raises:
        BadRequest: a field every WeChat message has is missing.
    """
    openid, msg_type = fields.get("FromUserName", ""), fields.get("MsgType", "").lower()
    created = fields.get("CreateTime", "")
    if not openid or not msg_type or not digits(created, 12) or not fields.get("ToUserName"):
        raise BadRequest("not a WeChat message")
    incoming = functools.partial(Incoming, channel=CHANNEL, user_id=openid, chat_id=openid,
                                 files=False)
    if msg_type == "event":
        event = fields.get("Event", "")
        # WeChat retries an event with the same sender and time: that is its identity.
        message_id = f"{openid}:{created}:{event}"
        kind = event.lower()
        if kind == "subscribe":          # also "subscribe" after scanning a QR code
            return incoming(event="subscribe", message_id=message_id)
        if kind == "unsubscribe":
            return incoming(event="unsubscribe", message_id=message_id)
        if kind == "click":
            # Two different buttons can be pressed within one second; a retry repeats the key.
            key = fields.get("EventKey", "").strip()
            return incoming(event=f"menu:{key}", message_id=f"{message_id}:{key}")
        if kind in _SILENT_EVENTS:
            return None
        return incoming(event="unsupported", message_id=message_id)
    message_id = fields.get("MsgId") or f"{openid}:{created}:{msg_type}"
    if msg_type == "text":
        choice = token_for_menu_id(fields.get("bizmsgmenuid", ""))
        text = fields.get("Content", "")
        command = _COMMAND.match(text) if choice is None else None
        if command:             # "/stats week", "/lang", a staff member's "/today"
            return incoming(command=command.group(1), args=command.group(2) or "",
                            message_id=message_id)
        return incoming(text=text, choice=choice, message_id=message_id)
    if msg_type == "voice" and fields.get("Recognition", "").strip():
        # With speech recognition switched on, WeChat sends what was said as text.
        return incoming(text=fields["Recognition"].strip().rstrip("。.!！"),
                        message_id=message_id)
    # The kind names the hint: a link is not a picture ("shortvideo" is a video).
    kind = {"shortvideo": "video"}.get(msg_type, msg_type)
    if msg_type == "image" and fields.get("MediaId", "").strip():
        # A photo: a step that takes one (a complaint's) keeps its media id; elsewhere it is
        # unsupported, with the hint for a picture.
        return incoming(event=f"unsupported:{kind}", message_id=message_id,
                        photo=f"{CHANNEL}:{fields['MediaId'].strip()[:200]}")
    return incoming(event=f"unsupported:{kind}", message_id=message_id)
