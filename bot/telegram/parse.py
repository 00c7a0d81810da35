"""What a Telegram update means for the conversation: an ``Incoming``, a chat move, a (un)block.

``parse_update(update, *, bot_username, bot_id)`` is pure: no network, no database.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from telegram import CallbackQuery, Message, MessageEntity, Update
from telegram.constants import ChatMemberStatus, ChatType

from handlers.core import ChannelName, Incoming

CHANNEL = ChannelName.TELEGRAM.value
# The kinds of update parse_update understands: the only ones Telegram is asked to send.
ALLOWED_UPDATES = ("message", "callback_query", "my_chat_member")



@dataclass(frozen=True)
class ChatMove:
    """A group became a supergroup with a new chat id."""

    old: int
    new: int


@dataclass(frozen=True)
class MemberChange:
    """A user blocked (``blocked=True``) or unblocked the bot in their private chat, or the bot
    was removed from / added to a group."""

    chat_id: int
    user_id: str
    blocked: bool
    is_group: bool


Parsed = Incoming | ChatMove | MemberChange | None


def message_key(update: Update) -> str | None:
    """A de-duplication key unique to this update for as long as it matters.

    Message ids are unique per chat and callback query ids globally, while update ids may
    restart after a quiet week; a redelivered update carries the same message or query.
    """
    if update.callback_query is not None:
        return f"q{update.callback_query.id}"
    if update.message is not None:
        return f"m{update.message.chat.id}:{update.message.message_id}"
    return f"u{update.update_id}"


def _command(message: Message, bot_username: str) -> tuple[str, str] | None:
    """("start", "args") for a message that starts with a command addressed to this bot."""
    text = message.text or ""
    entities = message.entities or ()
    if not any(e.type == MessageEntity.BOT_COMMAND and e.offset == 0 for e in entities) \
            or not text.startswith("/"):
        return None
    head, *rest = text.split(maxsplit=1)
    name, _, addressed = head[1:].partition("@")
    if addressed and addressed.lower() != bot_username.lower():
        return None  # "/today@other_bot" in a group: another bot's command
    return name.lower(), rest[0].strip() if rest else ""


def _pressed_label(query: CallbackQuery) -> str:
    markup = getattr(query.message, "reply_markup", None)
    for row in getattr(markup, "inline_keyboard", ()):
        for button in row:
            if button.callback_data == query.data:
                return str(button.text)
    return ""


def parse_update(update: Update, *, bot_username: str, bot_id: int) -> Parsed:
    """What an update means for us: something to converse about, a chat move, a (un)block."""
    if update.my_chat_member is not None:
        change = update.my_chat_member
        status = change.new_chat_member.status
        is_group = change.chat.type != ChatType.PRIVATE
        blocked = status in (ChatMemberStatus.BANNED, ChatMemberStatus.LEFT)
        return MemberChange(chat_id=change.chat.id, user_id=str(change.from_user.id),
                            blocked=blocked, is_group=is_group)
    query = update.callback_query
    if query is not None:
        if query.data is None or query.message is None:
            return None  # a game or an inline-mode message: nothing of ours
        chat = query.message.chat
        user = query.from_user
        return Incoming(channel=CHANNEL, user_id=str(user.id), chat_id=str(chat.id),
                        text=_pressed_label(query), choice=query.data,
                        locale=user.language_code, message_id=message_key(update),
                        is_group=chat.type != ChatType.PRIVATE, user_name=user.full_name)
    message = update.message
    if message is None or message.from_user is None:
        return None  # edited messages, channel posts: not part of a conversation
    if message.migrate_to_chat_id:
        # Sent by Telegram in the old group itself: only a group can move, only into a
        # supergroup (negative ids both).
        if message.chat.id < 0 and message.migrate_to_chat_id < 0 \
                and message.chat.type != ChatType.PRIVATE:
            return ChatMove(old=message.chat.id, new=message.migrate_to_chat_id)
        return None
    if message.migrate_from_chat_id:
        # The same move announced in the new supergroup: it names the old chat, which anyone
        # could name in a chat of their own, so only the old group's announcement is followed.
        return None
    user, chat = message.from_user, message.chat
    if user.is_bot:
        return None
    is_group = chat.type != ChatType.PRIVATE
    base = Incoming(channel=CHANNEL, user_id=str(user.id), chat_id=str(chat.id),
                    locale=user.language_code, message_id=message_key(update),
                    is_group=is_group, user_name=user.full_name)
    if message.text is not None:
        command = _command(message, bot_username)
        if command is not None:
            return dataclasses.replace(base, command=command[0], args=command[1],
                                       text=message.text)
        replied = message.reply_to_message
        if is_group and not (replied is not None and replied.from_user is not None
                             and replied.from_user.id == bot_id):
            # Group chatter not addressed to the bot, as with privacy mode on: staff talk to
            # the bot through commands, buttons and replies to its messages.
            return None
        answered = (replied.text or replied.caption or "") if replied is not None else ""
        return dataclasses.replace(base, text=message.text, reply_to_text=answered)
    if is_group:
        return None  # service messages and media in the group
    if message.photo:
        # A photo: a step that takes one (a complaint's) keeps the largest size's file id;
        # elsewhere it is unsupported, with the hint for a picture.
        return dataclasses.replace(base, event="unsupported:image",
                                   photo=f"{CHANNEL}:{message.photo[-1].file_id[:200]}")
    return dataclasses.replace(base, event=f"unsupported:{_kind(message)}")


def _kind(message: Message) -> str:
    """What was sent instead of text, for the hint (words.unsupported in the locales)."""
    for attribute, kind in (("photo", "image"), ("voice", "voice"), ("audio", "voice"),
                            ("location", "location"), ("venue", "location"), ("video", "video"),
                            ("video_note", "video"), ("animation", "video"),
                            ("document", "file"), ("sticker", "sticker")):
        if getattr(message, attribute, None):
            return kind
    return "other"
