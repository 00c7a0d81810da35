"""The WeCom (企业微信) self-built app as ``yuyue run`` holds it: the staff's interactive channel.

No business rule lives here. Wiring (``yuyue run`` / ``yuyue wecom ...``)::

    channel = build_wecom(app, assistant)         # -> WecomChannel (app: bot.wiring.App)
    routes = channel.webhook_routes()             # wecom.path (GET URL check + POST callback)
    channel.sender                                # WecomSender, a bot.channels.Sender: the
                                                  # dispatcher's "wecom" sender and a staff sender
    await channel.close()                         # waits for late answers, closes the client

The package's modules: ``api`` (the shared access token and calls), ``inbound`` (callback ->
Incoming), ``render`` (Reply -> text or template card), ``sender`` (messages to staff),
``directory`` (staff names), ``webhook`` (the callback), ``setup`` (the app menu and the app
group chat), ``robot`` (the optional notify-only group robot).
"""

from __future__ import annotations

from typing import Any

import httpx

from bot.tencent import HeldChannel, http_client
from bot.wechat.api import redact_access_tokens
from bot.wecom.api import WecomTokens
from bot.wecom.directory import Directory
from bot.wecom.sender import WecomSender
from bot.wecom.webhook import Conversation, WecomWebhook
from handlers.i18n import translate
from storage.settings import WecomSettings


class WecomChannel(HeldChannel[WecomWebhook, WecomSender, WecomTokens]):
    """The WeCom app as ``yuyue run`` holds it."""


def check_settings(settings: WecomSettings) -> None:
    """Raises ValueError naming what the app still needs."""
    missing = [name for name, value in (
        ("wecom.corp_id", settings.corp_id), ("wecom.agent_id", settings.agent_id),
        ("YUYUE_WECOM__SECRET", settings.secret),
        ("YUYUE_WECOM__ENCODING_AES_KEY", settings.encoding_aes_key)) if not value]
    if missing:
        raise ValueError("the WeCom app needs " + ", ".join(missing))
    if len(settings.encoding_aes_key) != 43:
        raise ValueError("wecom.encoding_aes_key must be the 43 characters WeCom shows")


def build_tokens(app: Any, http: httpx.AsyncClient) -> WecomTokens:
    return WecomTokens(app.settings.wecom, app.database, app.clock, http)


def build_wecom(app: Any, assistant: Conversation, *,
                http: httpx.AsyncClient | None = None) -> WecomChannel:
    """The channel from ``app`` (``bot.wiring.App``: settings, database, clock).

    Raises:
        ValueError: a setting the app needs is missing or malformed.
    """
    settings: WecomSettings = app.settings.wecom
    check_settings(settings)
    redact_access_tokens()
    client = http_client(http)
    tokens = build_tokens(app, client)
    locale = app.settings.general.locale
    sender = WecomSender(tokens, app.settings.access)
    directory = Directory(tokens, fallback=translate(locale, "staff.unnamed"))
    webhook = WecomWebhook(settings, assistant, app.clock, app.database, sender, directory,
                           locale=locale)
    return WecomChannel(webhook=webhook, sender=sender, tokens=tokens, http=client,
                        owns_http=http is None)
