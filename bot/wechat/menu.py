"""The Official Account's custom menu (自定义菜单): ``yuyue wechat menu`` creates it.

``create_menu(settings, http, *, tokens=None)``: 预约办事 / 我的预约 / 办事指南 / 人工服务,
CLICK buttons whose keys (book, my, guide, human) arrive as ``menu:<key>`` events.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx

from bot.wechat.api import AccessTokens, WechatApiError, call_api, post
from storage.settings import WechatSettings

MENU = ((("预约办事", "book"), ("我的预约", "my")), (("办事指南", "guide"), ("人工服务", "human")))


async def create_menu(settings: Any, http: httpx.AsyncClient, *,
                      tokens: AccessTokens | None = None) -> None:
    """Create the custom menu 预约办事 / 我的预约 / 办事指南 / 人工服务 (CLICK keys book, my,
    guide, human), replacing the current one.

    ``settings`` is the whole ``Settings`` or its ``wechat`` section. Without ``tokens`` the
    token is taken from the stable-token endpoint in normal mode, which returns the token
    the running processes hold instead of replacing it.

    Raises:
        WechatApiError: WeChat refused the menu (e.g. 48001: the account may not have menus).
        TryLater: network trouble.
    """
    wechat: WechatSettings = getattr(settings, "wechat", settings)
    buttons = [{"type": "click", "name": name, "key": key} for row in MENU for name, key in row]
    payload = {"button": buttons}
    if tokens is None:
        token, _ = await _StandaloneToken(wechat, http).fetch()
        data = await post(http, wechat.api_base_url, "menu/create", payload, token)
        if int(data.get("errcode") or 0):
            raise WechatApiError("menu/create", int(data["errcode"]), str(data.get("errmsg", "")))
        return
    await call_api(http, wechat, tokens, "menu/create", payload)


@dataclasses.dataclass
class _StandaloneToken:
    settings: WechatSettings
    http: httpx.AsyncClient

    async def fetch(self) -> tuple[str, int]:
        if not (self.settings.app_id and self.settings.app_secret):
            raise ValueError("wechat.app_id and YUYUE_WECHAT__APP_SECRET must be set")
        data = await post(self.http, self.settings.api_base_url, "stable_token",
                           {"grant_type": "client_credential", "appid": self.settings.app_id,
                            "secret": self.settings.app_secret, "force_refresh": False})
        if data.get("errcode"):
            raise WechatApiError("stable_token", int(data["errcode"]), str(data.get("errmsg", "")))
        return str(data["access_token"]), int(data.get("expires_in", 0))
