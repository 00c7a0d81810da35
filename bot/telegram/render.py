"""A ``Reply`` as Telegram takes it: text cut to its limits, choices as an inline keyboard."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from handlers.core import Reply
from handlers.i18n import normalize_locale, translate

TEXT_LIMIT = 4096           # characters (UTF-16 code units) of one message
CAPTION_LIMIT = 1024
CALLBACK_DATA_LIMIT = 64    # bytes


def units(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def fit(text: str, limit: int) -> int:
    """How many characters of ``text`` fit in ``limit`` UTF-16 units."""
    count = used = 0
    for char in text:
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            break
        count += 1
    return count


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Cut ``text`` into pieces Telegram accepts, at a line break or sentence end if possible.

    Nothing is dropped: the pieces joined give ``text`` back.
    """
    pieces: list[str] = []
    rest = text
    while units(rest) > limit:
        cut = fit(rest, limit)
        window = rest[:cut]
        for separator in ("\n", "。", "！", "？", ". ", " "):
            at = window.rfind(separator)
            if at >= cut // 2:
                cut = at + len(separator)
                break
        pieces.append(rest[:cut])
        rest = rest[cut:]
    pieces.append(rest)
    return pieces


def keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    """The reply's choices as an inline keyboard, one row per row of choices.

    Raises:
        ValueError: a token does not fit Telegram's 64-byte callback data (a bug in handlers/).
    """
    if not reply.choices:
        return None
    for choice in reply.flat_choices:
        if not choice.token or len(choice.token.encode()) > CALLBACK_DATA_LIMIT:
            raise ValueError(f"choice token of {len(choice.token.encode())} bytes: "
                             f"Telegram takes 1-{CALLBACK_DATA_LIMIT}")
    return InlineKeyboardMarkup([[InlineKeyboardButton(c.label, callback_data=c.token)
                                  for c in row] for row in reply.choices])


def apology(locale: str | None) -> str:
    """The short apology for a failure on our side, in the user's language."""
    return translate(normalize_locale(locale), "error.apology")
