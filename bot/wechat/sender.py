"""Messages to a citizen outside a conversation: reminders, relays, notices (a ``Sender``).

``WechatSender(settings, database, clock, tokens, *, timezone=..., consents=None)``:
``deliver(chat_id, replies, *, kind="message", fields=None)`` — customer-service message
inside the 48-hour window, else a template message (``kind == "reminder"`` uses
``wechat.reminder_template_id``, other kinds except "relay" ``wechat.notice_template_id``),
else for a reminder or closure a one-time subscription message the citizen allowed, else
``Unreachable``. ``fields`` gives the template values by source name (service, when, place,
code, person, and the appointment's id); "summary" (the first line of the text) and "sent" (now) are
always known. ``send_image(openid, attachment)`` uploads an image (a chart) and sends it as a
customer-service message.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select

from bot.channels import TryLater, Unreachable
from bot.wechat.api import (
    GONE,
    NO_CONSENT_LEFT,
    OUT_OF_WINDOW,
    AccessTokens,
    TokenRefused,
    WechatApiError,
    call_api,
)
from bot.wechat.consent import CLOSURE_SCENES, REMINDER_SCENES, Consents
from bot.wechat.failures import FailureLog
from bot.wechat.inbound import CHANNEL, digits
from bot.wechat.render import render_replies, short_openid
from bot.wechat.templates import template_value
from handlers.core import Attachment, Reply
from storage.clock import Clock
from storage.db import Database
from storage.models import ChannelIdentity
from storage.reach import in_wechat_window, mark_unreachable, return_consent, take_consent
from storage.settings import WechatSettings

log = logging.getLogger(__name__)

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
# One-time subscription messages: the limits of one, and the notices a consent may be used for.
SUBSCRIBED_TITLE_LIMIT, SUBSCRIBED_TEXT_LIMIT = 15, 200
SUBSCRIBED_KINDS = {"reminder", "closure_cancelled"}
# What a refusal means for whoever reads the log.
REFUSAL_HINTS = {
    47003: "a template field's value is not of its keyword's type (wechat.*_template_fields)",
    40037: "the template id is wrong (wechat.*_template_id)",
    48001: "the account lacks this API permission (接口权限)",
}


class WechatSender:
    """Delivers messages outside a conversation: reminders, relays, notices (a ``Sender``)."""

    channel = CHANNEL

    def __init__(self, settings: WechatSettings, database: Database, clock: Clock,
                 tokens: AccessTokens, *, timezone: dt.tzinfo = SHANGHAI,
                 consents: Consents | None = None) -> None:
        self.settings, self.database, self.clock = settings, database, clock
        self.tokens, self.timezone = tokens, timezone
        self.consents = consents or Consents(settings, database, clock)
        self.failures = FailureLog(log, clock)

    async def deliver(self, chat_id: str, replies: list[Reply], *, kind: str = "message",
                      fields: Mapping[str, str] | None = None) -> None:
        """Send ``replies`` to the citizen ``chat_id`` (an OpenID).

        Inside the 48-hour customer-service window: customer-service text messages. Outside
        it (or when WeChat says 45015): a template message if one is configured for ``kind``,
        else, for a reminder or a closure, a one-time subscription message the citizen allowed.

        Raises:
            Unreachable: unsubscribed, outside the window with no way to write, or refused.
            TryLater: network trouble or WeChat busy.
        """
        now = self.clock.now()
        async with self.database.read() as session:
            identity = await session.scalar(select(ChannelIdentity).where(
                ChannelIdentity.channel == CHANNEL, ChannelIdentity.platform_user_id == chat_id))
        if identity is not None and identity.unreachable_at is not None:
            raise Unreachable(f"wechat user unreachable: {identity.unreachable_reason or '-'}")
        last = identity.last_inbound_at if identity is not None else None
        if in_wechat_window(last, now):
            try:
                await self.send_texts(chat_id, render_replies(
                    replies, consent_link=self.consents.link_for(chat_id)))
                return
            except OutOfWindow:
                log.info("wechat %s: customer-service window closed early", short_openid(chat_id))
        template_id, mapping = self._template(kind)
        if template_id:
            await self.send_template(chat_id, template_id, self.template_data(
                mapping, replies, fields or {}, now, kind=kind))
        elif self.consents.sending and kind in SUBSCRIBED_KINDS:
            await self.send_subscribed(chat_id, replies, fields or {}, kind=kind)
        else:
            raise Unreachable("outside WeChat's 48-hour customer-service window and no "
                              f"template message configured for {kind!r}")

    def _template(self, kind: str) -> tuple[str, tuple[str, ...]]:
        if kind == "reminder":
            return self.settings.reminder_template_id, self.settings.reminder_template_fields
        if kind == "relay":             # a staff member's answer is a conversation, not a notice
            return "", ()
        return self.settings.notice_template_id, self.settings.notice_template_fields

    def template_data(self, mapping: Sequence[str], replies: Sequence[Reply],
                      fields: Mapping[str, str], now: dt.datetime, *,
                      kind: str = "reminder") -> dict[str, dict[str, str]]:
        """The template's ``data``: each keyword's value from its source, written as its
        keyword's type requires (``bot.wechat.templates``: a ``time`` keyword gets
        "2026年11月24日 09:00", a ``thing`` at most 20 characters).

        A notice that is not about one appointment (a block) has no service or time of its
        own: its first line stands for the service and the reason, and the time of sending
        for the time; a reminder always has them.

        Raises:
            Unreachable: a keyword's source was not given, or nothing of it fits the type
                (the template would be refused).
        """
        text = next((r.text.strip() for r in replies if r.text.strip()), "")
        summary = text.split("\n", 1)[0]
        local_now = now.astimezone(self.timezone)
        known = {"summary": summary, "sent": local_now.strftime("%Y-%m-%d %H:%M"), **fields}
        if fields.get("service_for") and not any(item.partition("=")[2] == "person"
                                                 for item in mapping):
            # Booked for someone else, and the template has no keyword for the person: the
            # service names them ("为父母 李*华：居民身份证…"), as the chat notice does.
            known["service"] = fields["service_for"]
        instants = {"sent": local_now}
        if starts := _instant(fields.get("starts_at", "")):
            instants["when"] = starts.astimezone(self.timezone)
        if kind != "reminder":
            fallback = {"service": summary, "reason": summary, "place": "-", "code": "-",
                        "person": "-", "when": known["sent"]}
            known = {**fallback, **{k: v for k, v in known.items() if str(v or "").strip()}}
            instants.setdefault("when", local_now)
        data = {}
        for item in mapping:
            key, _, source = item.partition("=")
            value = str(known.get(source) or "").strip()
            if not value:
                raise Unreachable(f"template keyword {key} needs {source!r}, which was not given")
            data[key] = {"value": template_value(key, value, instants.get(source))}
        return data

    async def send_subscribed(self, openid: str, replies: Sequence[Reply],
                              fields: Mapping[str, str], *, kind: str = "reminder") -> None:
        """A one-time subscription message, using one consent the citizen gave (the one for
        this appointment first): title from the first line, the rest as its 200 characters.
        A reminder uses only consents given for reminders, so the one given for a closure
        notice is kept for it; a closure notice uses its own first, then any.

        A consent WeChat says is gone (43101: used, or withdrawn) is dropped and the next one
        tried; one that no message used (WeChat busy or refusing for another reason, a crash
        on the way) is given back.

        Raises:
            Unreachable: no consent left, or WeChat refused.
            TryLater: network trouble or WeChat busy.
        """
        template_id = self.settings.subscribe_template_id
        appointment = fields.get("appointment", "")
        text = "\n".join(r.text.strip() for r in replies if r.text.strip())
        title, _, body = text.partition("\n")
        while True:
            async with self.database.session() as session:
                taken = await take_consent(
                    session, CHANNEL, openid, template_id, self.clock.now(),
                    appointment_id=int(appointment) if digits(appointment, 9) else None,
                    scenes=REMINDER_SCENES if kind == "reminder" else None,
                    preferred=None if kind == "reminder" else CLOSURE_SCENES)
            if taken is None:
                raise Unreachable("outside WeChat's 48-hour customer-service window, no template "
                                  "message configured, and no one-time subscription allowed")
            consent_id, scene = taken
            payload = {"touser": openid, "template_id": template_id, "scene": str(scene),
                       "title": _cut(title.strip().rstrip(":："), SUBSCRIBED_TITLE_LIMIT),
                       "data": {"content": {"value": _cut(body.strip() or title,
                                                          SUBSCRIBED_TEXT_LIMIT)}}}
            used = False
            try:
                await self._send(openid, "message/template/subscribe", payload)
                used = True
                return
            except _Refused as refused:
                used = refused.errcode in NO_CONSENT_LEFT
                if not used:
                    raise
                log.info("wechat %s: a one-time subscription was gone (%d)", short_openid(openid),
                         refused.errcode)
            finally:
                if not used:
                    async with self.database.session() as session:
                        await return_consent(session, consent_id)

    async def send_texts(self, openid: str, texts: Sequence[str]) -> None:
        """Customer-service text messages, in order."""
        for text in texts:
            await self._send(openid, "message/custom/send",
                             {"touser": openid, "msgtype": "text", "text": {"content": text}})

    async def send_image(self, openid: str, image: Attachment) -> None:
        """An image (a chart) as a customer-service message: uploaded as temporary media
        first, since a passive reply cannot carry one."""
        uploaded = await self._send(openid, "media/upload", None, query={"type": "image"},
                                    files={"media": (image.filename, image.content, image.mime)})
        media_id = str(uploaded.get("media_id") or "")
        if not media_id:
            raise TryLater("media/upload: answer without a media_id")
        await self._send(openid, "message/custom/send",
                         {"touser": openid, "msgtype": "image", "image": {"media_id": media_id}})

    async def send_template(self, openid: str, template_id: str,
                            data: Mapping[str, Mapping[str, str]]) -> None:
        await self._send(openid, "message/template/send",
                         {"touser": openid, "template_id": template_id, "data": dict(data)})

    async def _send(self, openid: str, path: str, payload: Mapping[str, Any] | None,
                    **upload: Any) -> dict[str, Any]:
        try:
            return await call_api(self.tokens, path, payload, **upload)
        except TokenRefused:
            raise                       # logged where the token is fetched, with what to do
        except TryLater as later:
            self.failures.warn(f"{path} later", f"wechat {path} not sent, will retry: {later}")
            raise
        except WechatApiError as exc:
            if exc.errcode in OUT_OF_WINDOW and path == "message/custom/send":
                raise OutOfWindow(str(exc)) from None
            # Each refusal once per reason and period, without the OpenID or the text.
            self.failures.warn(f"{path} {exc.errcode}", f"wechat refused: {exc}"
                               + (f"; {REFUSAL_HINTS[exc.errcode]}"
                                  if exc.errcode in REFUSAL_HINTS else ""))
            if exc.errcode in GONE:
                async with self.database.session() as session:
                    await mark_unreachable(session, CHANNEL, openid, f"wechat {exc.errcode}",
                                           self.clock.now())
            raise _Refused(str(exc), exc.errcode) from None


class OutOfWindow(Exception):
    pass


class _Refused(Unreachable):
    """WeChat refused the call with ``errcode``."""

    def __init__(self, reason: str, errcode: int) -> None:
        super().__init__(reason)
        self.errcode = errcode


def _instant(text: str) -> dt.datetime | None:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else None


def _cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, with "…" where it was cut."""
    return text if len(text) <= limit else text[:limit - 1] + "…"
