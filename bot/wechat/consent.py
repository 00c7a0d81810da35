"""Asking a citizen's consent for one later message (一次性订阅消息), and recording it.

``Consents(settings, database, clock, *, key=None, locale=...)``: ``link_for(openid)``
renders a reply's ``ConsentRequest`` as the link to WeChat's confirmation page, signed with
``key`` (``IdHasher.derive``); ``page`` is the route WeChat sends the citizen back to
(``{wechat.path}/consent``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from html import escape
from urllib.parse import urlencode

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from bot.wechat.inbound import CHANNEL, digits
from bot.wechat.render import ConsentLink, short_openid
from handlers.core import ConsentRequest
from handlers.i18n import translate
from storage.clock import Clock
from storage.db import Database
from storage.models import Appointment, ChannelIdentity
from storage.reach import grant_consent
from storage.settings import WechatSettings

log = logging.getLogger(__name__)

# WeChat's confirmation page and the scenes it accepts (0..10000).
SUBSCRIBE_CONFIRM_URL = "https://mp.weixin.qq.com/mp/subscribemsg"
CONSENT_PATH = "/consent"
# A scene per appointment and kind of message: reminders in 0..4999, the notice that the
# centre cancelled the booking (a closure) in 5000..9999. A reminder never uses a closure's
# permission, so the one notice that matters most is not used up by the reminders.
SCENES = 5000
REMINDER_SCENES, CLOSURE_SCENES = range(0, SCENES), range(SCENES, 2 * SCENES)
CONSENT_KEY = "wechat one-time subscription links"


class Consents:
    """WeChat's one-time subscription message (一次性订阅消息), for accounts without templates.

    A booking confirmation carries a link to WeChat's confirmation page. WeChat sends the
    citizen's browser back to ``{wechat.public_url}{wechat.path}/consent`` with the answer;
    an "allow" is recorded, and a later reminder (or the notice that the centre closed) outside
    the 48-hour window uses it: one consent, one message. The link's ``reserved`` value signs
    the OpenID and the appointment, so a forged redirect records nothing.
    """

    def __init__(self, settings: WechatSettings, database: Database, clock: Clock, *,
                 key: bytes | None = None, locale: str = "zh-CN") -> None:
        self.settings, self.database, self.clock, self.locale = settings, database, clock, locale
        # Links are signed with a key of their own (``IdHasher.derive``), never with the Token:
        # a citizen sees the OpenID, the booking and the signature, and a short Token could be
        # guessed from them. Without a key (tests, a sender alone) links verify in this object.
        self._key = key or secrets.token_bytes(32)

    @property
    def asking(self) -> bool:
        """Links are offered: a subscription template, somewhere to come back to, and no
        template message for reminders (which needs no consent)."""
        wechat = self.settings
        return bool(wechat.subscribe_template_id and wechat.public_url and wechat.app_id
                    and not wechat.reminder_template_id)

    @property
    def sending(self) -> bool:
        return bool(self.settings.subscribe_template_id)

    @property
    def path(self) -> str:
        return self.settings.path.rstrip("/") + CONSENT_PATH

    @staticmethod
    def scene(appointment_id: int, *, closure: bool = False) -> int:
        # A scene per appointment (so that consents for different bookings add up) and kind.
        return (CLOSURE_SCENES if closure else REMINDER_SCENES)[appointment_id % SCENES]

    def _signature(self, openid: str, appointment_id: int, closure: bool = False) -> str:
        message = f"{openid}\0{appointment_id}{chr(0) + 'closure' if closure else ''}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    def link_for(self, openid: str) -> ConsentLink | None:
        """How to render a ``ConsentRequest`` for ``openid`` (a link for the reminder, and one
        for the closure notice when the request offers it), or None when not asking."""
        if not self.asking:
            return None

        def url(appointment_id: int, closure: bool) -> str:
            query = urlencode({
                "action": "get_confirm", "appid": self.settings.app_id,
                "scene": self.scene(appointment_id, closure=closure),
                "template_id": self.settings.subscribe_template_id,
                "redirect_url": self.settings.public_url + self.path,
                "reserved": f"{appointment_id}x"
                            f"{self._signature(openid, appointment_id, closure)}"})
            return f"{SUBSCRIBE_CONFIRM_URL}?{query}#wechat_redirect"

        def links(request: ConsentRequest) -> list[tuple[str, str]]:
            made = [(url(request.appointment_id, False), request.label)]
            if request.closure_label:
                made.append((url(request.appointment_id, True), request.closure_label))
            return made
        return links

    async def page(self, request: Request) -> Response:
        """Where WeChat sends the citizen after the confirmation page:
        ``?openid=…&template_id=…&action=confirm|cancel&scene=…&reserved=…``."""
        query = request.query_params
        openid, action = query.get("openid", ""), query.get("action", "")
        appointment_id, _, signature = query.get("reserved", "").partition("x")
        scene = query.get("scene", "")
        closure = digits(scene, 5) and int(scene) in CLOSURE_SCENES
        valid = (digits(appointment_id, 9) and openid
                 and len(openid) <= 128 and action in ("confirm", "cancel")
                 and query.get("template_id") == self.settings.subscribe_template_id
                 and scene == str(self.scene(int(appointment_id), closure=closure))
                 and hmac.compare_digest(signature.encode(), self._signature(
                     openid, int(appointment_id), closure).encode()))
        locale = self.locale
        if valid:
            async with self.database.read() as session:
                identity_locale = await session.scalar(select(ChannelIdentity.locale).where(
                    ChannelIdentity.channel == CHANNEL, ChannelIdentity.platform_user_id == openid))
                exists = await session.get(Appointment, int(appointment_id)) is not None
            locale = identity_locale or locale
            valid = exists
        if not valid:
            log.info("wechat consent: link refused")
            return _consent_page(locale, "invalid", status=403)
        if action == "cancel":
            return _consent_page(locale, "declined")
        if request.method != "GET":     # Starlette answers HEAD too; only a visit grants
            return _consent_page(locale, "granted")
        async with self.database.session() as session:
            await grant_consent(session, CHANNEL, openid, self.settings.subscribe_template_id,
                                int(scene), int(appointment_id), self.clock.now())
        log.info("wechat %s: one-time subscription granted (%s)", short_openid(openid),
                 "closure notice" if closure else "reminder")
        return _consent_page(locale, "granted")


def _consent_page(locale: str, outcome: str, *, status: int = 200) -> HTMLResponse:
    title = escape(translate(locale, "consent_page.title"))
    text = escape(translate(locale, f"consent_page.{outcome}"))
    lang = "zh-CN" if locale.startswith("zh") else "en"
    return HTMLResponse(
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title></head><body style=\"font: 17px/1.6 sans-serif; "
        f'margin: 2em 1.2em"><h1 style="font-size: 1.3em">{title}</h1><p>{text}</p>'
        f"</body></html>", status_code=status, headers={"Cache-Control": "no-store"})
