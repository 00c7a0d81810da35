"""A ``Reply`` as WeChat text: choices as tappable message-menu links, cut at WeChat's limit.

WeChat shows no buttons in a chat, so each choice is a numbered line the citizen can tap
or answer by typing its number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from urllib.parse import quote

from bot.wechat.inbound import MENU_TOKEN, menu_id_for
from handlers.core import Choice, ConsentRequest, Reply

TEXT_LIMIT = 2048                   # bytes of a text message, passive or customer-service


def _link(content: str, menu_id: str, label: str) -> str:
    return (f'<a href="weixin://bizmsgmenu?msgmenucontent={quote(content, safe="")}'
            f'&msgmenuid={quote(menu_id, safe=":.")}">{_plain(label)}</a>')


def _plain(text: str) -> str:
    # A label is shown inside <a>...</a>: it must not open or close a tag of its own.
    return text.replace("<", "＜").replace(">", "＞")


def render_choice(choice: Choice) -> str:
    """One choice as a tappable message-menu link with its number.

    A tap sends ``msgmenucontent`` as an ordinary text message on every kind of account, so
    for menu choices it is the number: tapping and typing "3" are the same thing. Verified
    service accounts also get ``bizmsgmenuid`` back; it carries the menu's own id, so a tap on
    an old message is recognised as such instead of meaning the third entry of today's menu.
    """
    match = MENU_TOKEN.match(choice.token)
    if match:
        number = int(match.group(2)) + 1
        return f"{number}. " + _link(str(number), menu_id_for(choice.token), choice.label)
    return _link(choice.label, choice.token, choice.label)


# The links (address, label) asking for a later message: one per kind of message offered.
ConsentLink = Callable[[ConsentRequest], list[tuple[str, str]]]


def render_reply(reply: Reply, consent_link: ConsentLink | None = None) -> str:
    """A reply's text, then its choices one per line, then the links asking for a later
    reminder and closure notice when ``consent_link`` makes them. An attachment (.ics) cannot
    be sent in a text message; the text already carries its details, so it is left out."""
    lines = [reply.text.strip()] if reply.text.strip() else []
    lines += [render_choice(choice) for choice in reply.flat_choices]
    if reply.consent is not None and consent_link is not None:
        lines += [f'<a href="{url}">{_plain(label)}</a>' for url, label in consent_link(reply.consent)]
    return "\n".join(lines)


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Cut ``text`` into messages of at most ``limit`` UTF-8 bytes, between lines where it
    can (a choice's link is never cut), else between characters."""
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        candidate = f"{current}\n{line}" if current else line
        if len(candidate.encode()) <= limit:
            current = candidate
            continue
        if current:
            parts.append(current)
        current = ""
        while len(line.encode()) > limit:
            cut = _fit(line, limit)
            parts.append(line[:cut])
            line = line[cut:]
        current = line
    if current or not parts:
        parts.append(current)
    return [part.strip("\n") for part in parts if part.strip()] or [""]


def _fit(text: str, limit: int) -> int:
    """How many characters of ``text`` fit in ``limit`` bytes."""
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if len(text[:middle].encode()) <= limit:
            low = middle
        else:
            high = middle - 1
    return max(low, 1)


def render_replies(replies: Sequence[Reply], limit: int = TEXT_LIMIT, *,
                   consent_link: ConsentLink | None = None) -> list[str]:
    """All replies of one answer as WeChat text messages: joined (a passive reply is one
    message, and customer-service messages are counted), then split at ``limit`` bytes."""
    text = "\n\n".join(part for part in (render_reply(r, consent_link) for r in replies) if part)
    return split_text(text, limit) if text else []


def cdata(text: str) -> str:
    # wechatpy puts the content in CDATA unescaped; "]]>" would end it early.
    return text.replace("]]>", "]]]]><![CDATA[>")


def short_openid(openid: str) -> str:
    """An OpenID as it may appear in logs."""
    return openid[:6] + "…" if len(openid) > 6 else openid
