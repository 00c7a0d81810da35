"""The Official Account's custom menu (自定义菜单): ``yuyue wechat menu`` creates it.

``create_menu(tokens)``: 预约办事 / 我的预约 / 办事指南 / 人工服务, CLICK buttons whose keys
(book, my, guide, human) arrive as ``menu:<key>`` events.
"""

from __future__ import annotations

from bot.wechat.api import AccessTokens, call_api

MENU = ((("预约办事", "book"), ("我的预约", "my")), (("办事指南", "guide"), ("人工服务", "human")))


async def create_menu(tokens: AccessTokens) -> list[str]:
    """Create the custom menu, replacing the current one, with the shared access token
    (``tokens``: the running processes' token, which stays valid).

    Returns:
        The buttons' labels, in order.

    Raises:
        WechatApiError: WeChat refused the menu (e.g. 48001: the account may not have menus).
        TryLater: network trouble, or no access token could be had.
        Unreachable: wechat.app_id or the app secret is not set.
    """
    buttons = [{"type": "click", "name": name, "key": key} for row in MENU for name, key in row]
    await call_api(tokens, "menu/create", {"button": buttons})
    return [button["name"] for button in buttons]
