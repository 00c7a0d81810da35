"""Messages from the WeCom app to staff: a ``bot.channels.Sender``.

``WecomSender(settings, tokens, access)``:

- ``deliver("staff", replies, kind=..., fields=...)``: a staff alert. An alert with buttons
  (claim, approve...) goes as a button-interaction template card to the staff on duty
  (``wecom.on_duty``, else every "wecom:" entry of ``access.staff``), others as text; the app
  group chat (``wecom.app_chat_id``), when set, gets a plain text copy. What a citizen writes
  during a hand-off (kind "handoff_message"), and an answer that could not reach them
  ("relay_failed"), go only to the hand-off's owner, when the owner works in WeCom
  (``fields["owner"]`` is "wecom:<user id>").
- ``deliver(user_id, replies, ...)``: to one staff member (a supervisor's escalation).
- ``send_replies(user_id, replies)``: a conversation's answer, with charts as images and
  spreadsheets as files.
- ``update_card(click, label)``: every copy of a clicked card shows ``label`` in place of its
  buttons ("已由 张三 认领"), with the click's response code.

45009/45033 (over WeCom's limits) are ``TryLater``; an errcode naming nobody reachable is
``Unreachable``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from bot.channels import TryLater, Unreachable
from bot.wecom import render
from bot.wecom.api import WecomApiError, WecomTokens, call_api
from bot.wecom.inbound import CHANNEL, CardClick
from handlers.core import Attachment, Reply
from storage.outbox import STAFF_TARGET
from storage.settings import AccessSettings

log = logging.getLogger("yuyue.wecom")

# A hand-off's conversation (and an answer that did not reach its citizen) is for its owner.
OWN_KINDS = frozenset({"handoff_message", "relay_failed"})
IMAGE_TYPES = {"image/png", "image/jpeg"}


class WecomSender:
    """Sends the app's messages to staff (a ``bot.channels.Sender``)."""

    channel = CHANNEL

    def __init__(self, tokens: WecomTokens, access: AccessSettings) -> None:
        self.tokens = tokens
        self.settings = tokens.settings
        self.access = access

    @property
    def on_duty(self) -> list[str]:
        """Who gets alert cards: ``wecom.on_duty``, else the WeCom staff of ``access.staff``."""
        if self.settings.on_duty:
            return list(self.settings.on_duty)
        prefix = CHANNEL + ":"
        return [entry.removeprefix(prefix) for entry in self.access.staff
                if entry.startswith(prefix) and len(entry) > len(prefix)]

    async def deliver(self, chat_id: str, replies: list[Reply], *, kind: str = "message",
                      fields: Mapping[str, str] | None = None) -> None:
        """Send ``replies`` to ``chat_id``: "staff" (the staff on duty and the app chat) or one
        WeCom user id.

        Raises:
            Unreachable: nobody to send to, or WeCom refused the recipients.
            TryLater: network trouble, or WeCom over its limits or busy.
        """
        if chat_id != STAFF_TARGET:
            await self._to_users([chat_id], replies)
            return
        if kind in OWN_KINDS:
            owner = (fields or {}).get("owner", "")
            if owner.startswith(CHANNEL + ":"):
                await self._to_users([owner.removeprefix(CHANNEL + ":")], replies)
            return                      # owned in another channel: it is told there
        users = self.on_duty
        if not users and not self.settings.app_chat_id:
            raise Unreachable("no WeCom staff to alert (wecom.on_duty / access.staff)")
        if users:
            await self._to_users(users, replies)
        if self.settings.app_chat_id:
            try:
                for reply in replies:
                    for piece in render.copy_texts(reply):
                        await self._call("appchat/send", {
                            "chatid": self.settings.app_chat_id, "msgtype": "text",
                            "text": {"content": piece}})
            except (Unreachable, TryLater) as exc:
                if not users:
                    raise
                # The cards went out; a retry would send them twice for want of a copy.
                log.warning("wecom: the app chat did not get its copy (%s)", exc)

    async def _to_users(self, users: Sequence[str], replies: Sequence[Reply]) -> None:
        for reply in replies:
            if render.is_card(reply):
                await self.send_card(users, reply)
            else:
                for piece in render.texts(reply):
                    await self._message(users, {"msgtype": "text", "text": {"content": piece}})

    async def send_card(self, users: Sequence[str], reply: Reply) -> str:
        """Send ``reply`` as a template card to ``users``; returns its task id."""
        made = render.card(reply)
        await self._message(users, {"msgtype": "template_card", "template_card": made.body})
        return made.task_id

    async def send_replies(self, user_id: str, replies: Sequence[Reply]) -> None:
        """A conversation's answer: each reply as text or card, then its attachment."""
        for reply in replies:
            if reply.text.strip() or reply.choices:
                await self._to_users([user_id], [reply])
            if reply.attachment is not None:
                await self.send_file(user_id, reply.attachment)

    async def send_file(self, user_id: str, attachment: Attachment) -> None:
        """A chart as an image, a spreadsheet or calendar file as a file (uploaded first)."""
        kind = "image" if attachment.mime in IMAGE_TYPES else "file"
        uploaded = await self._call("media/upload", None, query={"type": kind}, files={
            "media": (attachment.filename, attachment.content, attachment.mime)})
        media_id = str(uploaded.get("media_id") or "")
        if not media_id:
            raise TryLater("media/upload: answer without a media_id")
        await self._message([user_id], {"msgtype": kind, kind: {"media_id": media_id}})

    async def update_card(self, click: CardClick, label: str) -> None:
        """Show ``label`` in place of the buttons on every copy of the clicked card."""
        await self._call("message/update_template_card", {
            "atall": 1, "agentid": self.settings.agent_id, "response_code": click.response_code,
            "button": {"replace_name": render.short(label, render.BUTTON_LIMIT * 2)}})

    async def _message(self, users: Sequence[str], body: Mapping[str, Any]) -> None:
        answer = await self._call("message/send", {"touser": "|".join(users),
                                                   "agentid": self.settings.agent_id, **body})
        missed = [u for u in str(answer.get("invaliduser") or "").split("|") if u]
        if missed and len(missed) >= len(users):
            raise Unreachable("wecom: no recipient could be reached (outside the app's 可见范围?)")
        if missed:
            log.warning("wecom: %d of %d staff not reached (outside the app's 可见范围?)",
                        len(missed), len(users))

    async def _call(self, path: str, payload: Mapping[str, Any] | None, **extra: Any) -> dict[str, Any]:
        try:
            return await call_api(self.tokens, "POST", path, payload, **extra)
        except WecomApiError as exc:
            raise Unreachable(str(exc)) from None
