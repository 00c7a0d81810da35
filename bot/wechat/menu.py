"""The Official Account's custom menu (自定义菜单): ``yuyue wechat menu`` creates it.

``create_menu(tokens, *, locale)``: three top-level buttons, WeChat's most — 预约 (with 预约办事,
我的预约, 办件进度 and 我的办事人 under it; five at most) / 办事指南 / 人工服务 — the labels from the message catalog
(``wechat_menu.<key>``), CLICK buttons whose keys arrive as ``menu:<key>`` events.
``menu_problems(menu)`` checks any menu against WeChat's limits before it is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.wechat.api import AccessTokens, call_api
from handlers.i18n import translate

# (group label key, its CLICK keys) or (None, (key,)) for a button of its own.
LAYOUT: tuple[tuple[str | None, tuple[str, ...]], ...] = (
    ("bookings", ("book", "my", "progress", "people")), (None, ("guide",)), (None, ("human",)))
MENU_KEYS = tuple(key for _, keys in LAYOUT for key in keys)

# WeChat's limits (自定义菜单 → 创建接口): 1-3 buttons, 1-5 under each, names in UTF-8 bytes.
TOP_MOST, SUB_MOST = 3, 5
TOP_NAME_BYTES, SUB_NAME_BYTES, KEY_BYTES, URL_BYTES = 16, 60, 128, 1024
_KEYED = {"click", "scancode_push", "scancode_waitmsg", "pic_sysphoto", "pic_photo_or_album",
          "pic_weixin", "location_select"}
_TYPES = _KEYED | {"view", "miniprogram", "media_id", "article_id", "article_view_limited"}


class MenuError(ValueError):
    """A menu WeChat would refuse; the message lists every problem."""


def menu_problems(menu: Mapping[str, Any]) -> list[str]:
    """Every way ``menu`` breaks WeChat's limits (empty when it may be sent)."""
    buttons = menu.get("button")
    if not isinstance(buttons, list) or not TOP_MOST >= len(buttons) >= 1:
        count = len(buttons) if isinstance(buttons, list) else 0
        return [f"{count} top-level buttons: WeChat takes 1 to {TOP_MOST} (errcode 40016)"]
    problems: list[str] = []
    for place, button in enumerate(buttons, 1):
        subs = button.get("sub_button")
        problems += _name_problems(f"button {place}", button, TOP_NAME_BYTES)
        if subs is None:
            problems += _action_problems(f"button {place}", button)
            continue
        if not isinstance(subs, list) or not SUB_MOST >= len(subs) >= 1:
            problems.append(f"button {place} has {len(subs) if isinstance(subs, list) else 0} "
                            f"sub-buttons: WeChat takes 1 to {SUB_MOST} (errcode 40023)")
            continue
        for number, sub in enumerate(subs, 1):
            where = f"button {place}.{number}"
            problems += _name_problems(where, sub, SUB_NAME_BYTES)
            problems += _action_problems(where, sub)
    return problems


def _name_problems(where: str, button: Mapping[str, Any], most: int) -> list[str]:
    size = len(str(button.get("name") or "").encode("utf-8"))
    if not 0 < size <= most:
        return [f"{where}: name of {size} bytes, WeChat takes 1 to {most} (errcode 40018)"]
    return []


def _action_problems(where: str, button: Mapping[str, Any]) -> list[str]:
    kind = button.get("type")
    if kind not in _TYPES:
        return [f"{where}: type {kind!r} is not a WeChat button type (errcode 40017)"]
    if kind in _KEYED and not 0 < len(str(button.get("key") or "").encode()) <= KEY_BYTES:
        return [f"{where}: key must be 1 to {KEY_BYTES} bytes (errcode 40019)"]
    if kind == "view" and not 0 < len(str(button.get("url") or "").encode()) <= URL_BYTES:
        return [f"{where}: url must be 1 to {URL_BYTES} bytes (errcode 40055)"]
    return []


def build_menu(locale: str) -> dict[str, Any]:
    """The menu in ``locale``: WeChat's ``{"button": [...]}``."""
    def click(key: str) -> dict[str, str]:
        return {"type": "click", "name": translate(locale, f"wechat_menu.{key}"), "key": key}

    buttons: list[dict[str, Any]] = []
    for group, keys in LAYOUT:
        if group is None:
            buttons += [click(key) for key in keys]
        else:
            buttons.append({"name": translate(locale, f"wechat_menu.{group}"),
                            "sub_button": [click(key) for key in keys]})
    return {"button": buttons}


def describe(menu: Mapping[str, Any]) -> str:
    """The menu in one line: "预约 (预约办事 · 我的预约 · …) / 办事指南 / 人工服务"."""
    return " / ".join(
        f"{b['name']} ({' · '.join(s['name'] for s in b['sub_button'])})" if "sub_button" in b
        else str(b["name"]) for b in menu["button"])


def menu_labels(locale: str) -> list[str]:
    """The CLICK buttons' labels in ``locale``, in the order of ``MENU_KEYS``."""
    return [translate(locale, f"wechat_menu.{key}") for key in MENU_KEYS]


async def create_menu(tokens: AccessTokens, *, locale: str,
                      menu: Mapping[str, Any] | None = None) -> str:
    """Create the custom menu in ``locale`` (one menu for every follower: the centre's
    language), replacing the current one, with the shared access token (``tokens``: the
    running processes' token, which stays valid).

    Returns:
        The menu in one line (``describe``).

    Raises:
        MenuError: the menu breaks WeChat's limits (nothing is sent).
        WechatApiError: WeChat refused the menu (e.g. 48001: the account may not have menus).
        TryLater: network trouble, or no access token could be had.
        Unreachable: wechat.app_id or the app secret is not set.
    """
    menu = dict(menu or build_menu(locale))
    problems = menu_problems(menu)
    if problems:
        raise MenuError("; ".join(problems))
    await call_api(tokens, "menu/create", menu)
    return describe(menu)

