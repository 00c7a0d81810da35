"""The WeChat Official Account channel as ``yuyue run`` holds it: the webhook and the sender.

No business rule lives here. Wiring (``yuyue run`` / ``yuyue wechat menu``)::

    channel = build_wechat(app, assistant)        # -> WechatChannel (app: bot.wiring.App)
    routes = channel.webhook_routes()             # -> list[Route]: wechat.path (GET + POST) and
                                                  #    wechat.path + "/consent" (GET)
    channel.sender                                # WechatSender, a bot.channels.Sender
    await channel.close()                         # waits for late answers, closes the client

    async with httpx.AsyncClient(timeout=10) as http:
        await create_menu(tokens, locale=...)     # bot.wechat.menu

The package's other modules: ``inbound`` (signature, XML, Incoming), ``render`` (Reply ->
text with message-menu links), ``api`` (the shared access token and API calls), ``consent``
(one-time subscription consent), ``sender`` (messages outside a conversation), ``webhook``
(the endpoints WeChat calls), ``menu`` (the custom menu).
"""

from __future__ import annotations

from typing import Any

import httpx

from bot.tencent import HeldChannel, http_client
from bot.wechat.api import AccessTokens, redact_access_tokens
from bot.wechat.consent import CONSENT_KEY, Consents
from bot.wechat.sender import WechatSender
from bot.wechat.webhook import Conversation, WechatWebhook
from storage.settings import WechatSettings


class WechatChannel(HeldChannel[WechatWebhook, WechatSender, AccessTokens]):
    """The WeChat channel as ``yuyue run`` holds it."""



def build_wechat(app: Any, assistant: Conversation, *,
                 http: httpx.AsyncClient | None = None) -> WechatChannel:
    """The channel from ``app`` (``bot.wiring.App``: settings, database, clock)."""
    settings: WechatSettings = app.settings.wechat
    if not settings.token:
        raise ValueError("wechat.token (YUYUE_WECHAT__TOKEN) is not set")
    if settings.encoding_aes_key and len(settings.encoding_aes_key) != 43:
        raise ValueError("wechat.encoding_aes_key must be the 43 characters WeChat shows")
    redact_access_tokens()
    client = http_client(http)
    tokens = AccessTokens(settings, app.database, app.clock, client)
    consents = Consents(settings, app.database, app.clock, key=app.centre.hasher.derive(CONSENT_KEY),
                        locale=app.settings.general.locale)
    sender = WechatSender(settings, app.database, app.clock, tokens,
                          timezone=app.settings.general.timezone, consents=consents)
    webhook = WechatWebhook(settings, assistant, app.clock, app.database, sender,
                            consents=consents)
    return WechatChannel(webhook=webhook, sender=sender, tokens=tokens, http=client,
                         owns_http=http is None)
