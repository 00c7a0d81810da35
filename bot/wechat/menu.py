"""The Official Account's custom menu (自定义菜单): ``yuyue wechat menu`` creates it.

``create_menu(tokens, *, locale)``: 预约办事 / 我的预约 / 办事指南 / 人工服务 (the labels from
the message catalog, ``wechat_menu.<key>``), CLICK buttons whose keys arrive as
``menu:<key>`` events.
"""

from __future__ import annotations

from bot.wechat.api import AccessTokens, call_api
from handlers.i18n import translate

MENU_KEYS = ("book", "my", "guide", "human")


def menu_labels(locale: str) -> list[str]:
    """The buttons' labels in ``locale``, in order."""
    return [translate(locale, f"wechat_menu.{key}") for key in MENU_KEYS]


async def create_menu(tokens: AccessTokens, *, locale: str) -> list[str]:
    """Create the custom menu in ``locale`` (one menu for every follower: the centre's
    language), replacing the current one, with the shared access token (``tokens``: the
    running processes' token, which stays valid).

    Returns:
        The buttons' labels, in order.

    Raises:
        WechatApiError: WeChat refused the menu (e.g. 48001: the account may not have menus).
        TryLater: network trouble, or no access token could be had.
        Unreachable: wechat.app_id or the app secret is not set.
    """
    labels = menu_labels(locale)
    buttons = [{"type": "click", "name": label, "key": key}
               for key, label in zip(MENU_KEYS, labels, strict=True)]
    await call_api(tokens, "menu/create", {"button": buttons})
    return labels
