"""What a Telegram update must look like before anything is done with it.

``clean_update(data)`` checks a decoded update against the shapes Telegram documents and keeps
only the fields Yuyue reads: ids are integers within Telegram's bounds, texts are strings of
bounded length, and so on. What is left is safe for python-telegram-bot's ``Update.de_json``
and for the parser: a body that passed cannot fail later in a way a redelivery would repeat
(a chat id "abc" stored, then failing on every retry). Anything else raises ``BadUpdate``,
whose reason names the field, never its value.

Unknown fields and update kinds Yuyue does not ask for are left out, not refused: Telegram adds
fields over time.
"""

from __future__ import annotations

from typing import Any

MAX_BODY = 1024 * 1024          # bytes: a real update is a few kilobytes at most
ID_BOUND = 2 ** 53              # Telegram ids fit in 52 bits (a double without loss)
UPDATE_ID_BOUND = 2 ** 31
MESSAGE_ID_BOUND = 2 ** 31
DATE_BOUND = 2 ** 32
TEXT_LIMIT = 4096 * 2           # characters; Telegram's own limit is 4096 UTF-16 units
NAME_LIMIT = 256
CALLBACK_DATA_BYTES = 64        # Telegram's limit for callback_data
ENTITY_LIMIT = 200
CHAT_TYPES = {"private", "group", "supergroup", "channel", "sender"}
MEMBER_STATUSES = {"creator", "administrator", "member", "restricted", "left", "kicked"}
# The update kinds Yuyue reads; the others (edited messages, channel posts...) are dropped.
KINDS = ("message", "callback_query", "my_chat_member")


class BadUpdate(ValueError):
    """The body is not an update Telegram could have sent; ``reason`` names what is wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _int(value: Any, where: str, low: int, high: int) -> int:
    # bool is an int in Python, but never an id in JSON
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < high:
        raise BadUpdate(f"{where}: not an integer in range")
    return value


def _id(value: Any, where: str, *, positive: bool = False) -> int:
    value = _int(value, where, 1 if positive else -ID_BOUND + 1, ID_BOUND)
    if value == 0:
        raise BadUpdate(f"{where}: zero")
    return value


def _str(value: Any, where: str, limit: int = NAME_LIMIT) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise BadUpdate(f"{where}: not a string of at most {limit} characters")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise BadUpdate(f"{where}: not a boolean")
    return value


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadUpdate(f"{where}: not an object")
    return value


def _optional(source: dict[str, Any], target: dict[str, Any], key: str, check: Any,
              where: str) -> None:
    if source.get(key) is not None:
        target[key] = check(source[key], f"{where}.{key}")


def _user(value: Any, where: str) -> dict[str, Any]:
    data = _dict(value, where)
    user = {"id": _id(data.get("id"), f"{where}.id", positive=True),
            "is_bot": _bool(data.get("is_bot", False), f"{where}.is_bot"),
            "first_name": _str(data.get("first_name", ""), f"{where}.first_name")}
    for key in ("last_name", "username", "language_code"):
        _optional(data, user, key, _str, where)
    return user


def _chat(value: Any, where: str) -> dict[str, Any]:
    data = _dict(value, where)
    kind = data.get("type")
    if kind not in CHAT_TYPES:
        raise BadUpdate(f"{where}.type: unknown")
    chat = {"id": _id(data.get("id"), f"{where}.id"), "type": kind}
    for key in ("title", "username", "first_name", "last_name"):
        _optional(data, chat, key, _str, where)
    return chat


def _entities(value: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or len(value) > ENTITY_LIMIT:
        raise BadUpdate(f"{where}: not a list of at most {ENTITY_LIMIT}")
    entities = []
    for index, item in enumerate(value):
        data = _dict(item, f"{where}[{index}]")
        entities.append({"type": _str(data.get("type"), f"{where}[{index}].type", 64),
                         "offset": _int(data.get("offset"), f"{where}[{index}].offset", 0,
                                        TEXT_LIMIT * 2),
                         "length": _int(data.get("length"), f"{where}[{index}].length", 0,
                                        TEXT_LIMIT * 2)})
    return entities


FILE_ID_LIMIT = 200             # characters; Telegram's file ids are about 80
PHOTO_SIZES = 20


def _photo(value: Any, where: str) -> list[dict[str, Any]]:
    """A photo's sizes (a complaint keeps the largest one's file id)."""
    if not isinstance(value, list) or not value or len(value) > PHOTO_SIZES:
        raise BadUpdate(f"{where}: not a list of 1 to {PHOTO_SIZES} sizes")
    sizes = []
    for index, item in enumerate(value):
        data = _dict(item, f"{where}[{index}]")
        sizes.append({"file_id": _str(data.get("file_id"), f"{where}[{index}].file_id",
                                      FILE_ID_LIMIT),
                      "file_unique_id": _str(data.get("file_unique_id", ""),
                                             f"{where}[{index}].file_unique_id", FILE_ID_LIMIT),
                      "width": _int(data.get("width", 0), f"{where}[{index}].width", 0, 100000),
                      "height": _int(data.get("height", 0), f"{where}[{index}].height", 0,
                                     100000)})
    return sizes


def _message(value: Any, where: str, *, depth: int = 0) -> dict[str, Any]:
    data = _dict(value, where)
    message: dict[str, Any] = {
        "message_id": _int(data.get("message_id"), f"{where}.message_id", 0, MESSAGE_ID_BOUND),
        "date": _int(data.get("date"), f"{where}.date", 0, DATE_BOUND),
        "chat": _chat(data.get("chat"), f"{where}.chat")}
    _optional(data, message, "from", _user, where)
    _optional(data, message, "text", lambda v, w: _str(v, w, TEXT_LIMIT), where)
    _optional(data, message, "caption", lambda v, w: _str(v, w, TEXT_LIMIT), where)
    _optional(data, message, "entities", _entities, where)
    _optional(data, message, "photo", _photo, where)
    _optional(data, message, "migrate_to_chat_id", _id, where)
    _optional(data, message, "migrate_from_chat_id", _id, where)
    if data.get("reply_to_message") is not None and depth == 0:
        # Telegram sends one level: a reply's own reply_to_message is not read.
        message["reply_to_message"] = _message(data["reply_to_message"],
                                               f"{where}.reply_to_message", depth=1)
    if data.get("reply_markup") is not None:
        message["reply_markup"] = _markup(data["reply_markup"], f"{where}.reply_markup")
    return message


def _markup(value: Any, where: str) -> dict[str, Any]:
    """An inline keyboard (the bot's own menu, echoed back with a press)."""
    data = _dict(value, where)
    rows = data.get("inline_keyboard", [])
    if not isinstance(rows, list) or len(rows) > 100:
        raise BadUpdate(f"{where}.inline_keyboard: not a list")
    keyboard = []
    for row in rows:
        if not isinstance(row, list) or len(row) > 100:
            raise BadUpdate(f"{where}.inline_keyboard: a row is not a list")
        buttons = []
        for button in row:
            button = _dict(button, f"{where}.inline_keyboard[]")
            text = _str(button.get("text"), f"{where}.inline_keyboard[].text")
            data_ = button.get("callback_data")
            if data_ is None:
                continue        # a link button: nothing pressed comes back from it
            buttons.append({"text": text, "callback_data": _str(
                data_, f"{where}.inline_keyboard[].callback_data", CALLBACK_DATA_BYTES)})
        keyboard.append(buttons)
    return {"inline_keyboard": keyboard}


def _callback_query(value: Any, where: str) -> dict[str, Any]:
    data = _dict(value, where)
    query: dict[str, Any] = {"id": _str(data.get("id"), f"{where}.id", 64),
                             "from": _user(data.get("from"), f"{where}.from"),
                             "chat_instance": _str(data.get("chat_instance", ""),
                                                   f"{where}.chat_instance", 64)}
    if data.get("data") is not None:
        pressed = _str(data["data"], f"{where}.data", CALLBACK_DATA_BYTES)
        if len(pressed.encode("utf-8", "surrogatepass")) > CALLBACK_DATA_BYTES:
            raise BadUpdate(f"{where}.data: longer than {CALLBACK_DATA_BYTES} bytes")
        query["data"] = pressed
    if data.get("message") is not None:
        query["message"] = _message(data["message"], f"{where}.message")
    return query


def _member(value: Any, where: str) -> dict[str, Any]:
    data = _dict(value, where)
    status = data.get("status")
    if status not in MEMBER_STATUSES:
        raise BadUpdate(f"{where}.status: unknown")
    member: dict[str, Any] = {"status": status, "user": _user(data.get("user"), f"{where}.user")}
    # The fields each status requires (python-telegram-bot builds a class per status): flags
    # and dates, kept when they are of the right type.
    for key, item in data.items():
        if key in member:
            continue
        if key.startswith(("can_", "is_")) or key == "is_anonymous":
            member[key] = _bool(item, f"{where}.{key}")
        elif key == "until_date":
            member[key] = _int(item, f"{where}.{key}", 0, DATE_BOUND)
        elif key == "custom_title":
            member[key] = _str(item, f"{where}.{key}")
    return member


def _chat_member_update(value: Any, where: str) -> dict[str, Any]:
    data = _dict(value, where)
    return {"chat": _chat(data.get("chat"), f"{where}.chat"),
            "from": _user(data.get("from"), f"{where}.from"),
            "date": _int(data.get("date"), f"{where}.date", 0, DATE_BOUND),
            "old_chat_member": _member(data.get("old_chat_member"), f"{where}.old_chat_member"),
            "new_chat_member": _member(data.get("new_chat_member"), f"{where}.new_chat_member")}


_KIND_CHECKS = {"message": _message, "callback_query": _callback_query,
                "my_chat_member": _chat_member_update}


def update_id_of(data: Any) -> int | None:
    """The update id of a decoded body, if it has a valid one (for logging a refusal)."""
    if isinstance(data, dict):
        value = data.get("update_id")
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < UPDATE_ID_BOUND:
            return value
    return None


def clean_update(data: Any) -> dict[str, Any] | None:
    """The update with only the fields Yuyue reads, each checked; None for a valid update of a
    kind Yuyue does not read (an edited message, a channel post).

    Raises:
        BadUpdate: the body is not an update Telegram could have sent.
    """
    data = _dict(data, "update")
    clean: dict[str, Any] = {"update_id": _int(data.get("update_id"), "update_id", 0,
                                               UPDATE_ID_BOUND)}
    present = [kind for kind in KINDS if data.get(kind) is not None]
    if len(present) > 1:
        raise BadUpdate("more than one kind of update")
    if not present:
        return None
    kind = present[0]
    clean[kind] = _KIND_CHECKS[kind](data[kind], kind)
    return clean
