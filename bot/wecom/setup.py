"""Setting the WeCom app up from the command line.

- ``create_menu(tokens, *, locale)``: the app's menu, 今日预约 / 待处理 / 统计 (labels from the
  message catalog, ``wecom_menu.<key>``): click buttons whose keys arrive as ``menu:<key>``
  events and run the staff commands /today, /open and /stats.
- ``create_group(tokens, name, users)``: an app group chat (appchat/create) of these staff, the
  first one its owner; its chat id goes into ``wecom.app_chat_id``.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.wecom.api import WecomTokens, call_api
from handlers.i18n import translate

MENU_KEYS = ("today", "open", "stats")


def menu_labels(locale: str) -> list[str]:
    return [translate(locale, f"wecom_menu.{key}") for key in MENU_KEYS]


async def create_menu(tokens: WecomTokens, *, locale: str) -> list[str]:
    """Create (replace) the app's menu in ``locale``.

    Returns:
        The buttons' labels, in order.

    Raises:
        WecomApiError: WeCom refused the menu.
        TryLater: network trouble, WeCom busy, or no access token could be had.
        Unreachable: the app's credentials are not set or refused.
    """
    labels = menu_labels(locale)
    buttons = [{"type": "click", "name": label, "key": key}
               for key, label in zip(MENU_KEYS, labels, strict=True)]
    await call_api(tokens, "POST", "menu/create", {"button": buttons},
                   query={"agentid": str(tokens.settings.agent_id)})
    return labels


async def create_group(tokens: WecomTokens, name: str, users: Sequence[str]) -> str:
    """Create an app group chat named ``name`` with ``users`` (at least two; the first owns
    it).

    Returns:
        The chat id, for ``wecom.app_chat_id``.

    Raises:
        ValueError: fewer than two members, or no name.
        WecomApiError: WeCom refused (the app's 可见范围 must be the whole company).
    """
    members = list(dict.fromkeys(u.strip() for u in users if u.strip()))
    if not name.strip() or len(members) < 2:
        raise ValueError("a group chat needs a name and at least two members")
    created = await call_api(tokens, "POST", "appchat/create", {
        "name": name.strip()[:50], "owner": members[0], "userlist": members})
    return str(created.get("chatid") or "")
