"""Text messages (短信): the outbox's SMS sender and the provider's callbacks.

One small interface, ``SmsProvider.send(mobile, template, params) -> SmsSent``, stands between
the outbox and a provider. ``TencentSms`` is the one shipped: the Tencent Cloud SDK's
``SendSms`` (API 2021-01-11), signed with TC3-HMAC-SHA256 by the SDK itself. Tencent because
its console is where most government and hospital accounts in China already are, its SDK is
on PyPI under a permissive licence, and its delivery receipts and reply callbacks are plain
JSON posts. An Alibaba Cloud (阿里云短信 ``SendSms``) provider would be another class with the
same ``send``: it takes the same sign name, template code and parameters (as a JSON object
keyed by variable name instead of a list), and maps its error codes (``isv.BUSINESS_LIMIT_CONTROL``
→ ``TryLater``, ``isv.MOBILE_NUMBER_ILLEGAL`` → ``Unreachable``, ``isv.AMOUNT_NOT_ENOUGH`` →
``GiveUp``) as ``TencentSms`` does; ``build_sms`` picks it by ``sms.provider``.

``SmsSender`` is what the dispatcher uses: it turns a notice's kind and rendered fields into
the kind's template and parameters (``sms.templates``) and calls the provider. The SDK call
blocks, so it runs in a worker thread (``asyncio.to_thread``) and the event loop never waits.

Numbers never reach a log: errors name the provider's code only.

The callbacks (``sms_routes``): Tencent posts delivery receipts (短信回执) and replies (上行短信)
as JSON lists to the URL set in its console; ``sms.callback_path`` serves both, with
``?token=<sms.callback_token>`` in the configured URL so strangers cannot post to it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.channels import GiveUp, TryLater, Unreachable
from handlers.core import Reply
from storage import sms as sms_store
from storage import sms_answers
from storage.centre import Centre
from storage.clock import Clock
from storage.db import Database
from storage.settings import SmsSettings, SmsTemplate

log = logging.getLogger("yuyue.sms")

CHANNEL = "sms"
PARAM_CHARS = 20        # template variables are kept short to pass the provider's length rule
OK = "Ok"


@dataclass(frozen=True)
class SmsSent:
    """What the provider said about one accepted text: its serial number and billed count."""

    serial_no: str
    fee: int = 1


class SmsProvider(Protocol):
    """A provider's send call."""

    name: str

    async def send(self, mobile: str, template_id: str, params: Sequence[str]) -> SmsSent:
        """Send one templated text to a mainland mobile (11 digits).

        Raises:
            TryLater: over a provider limit, or a network or server error.
            Unreachable: the number is wrong or cannot take texts.
            GiveUp: the account cannot send at all (no balance, signature or template
                withdrawn): staff must act.
        """
        ...


def classify(code: str) -> Exception:
    """The channel error for a Tencent error code (for the per-number status and whole-call
    errors alike)."""
    reason = f"sms {code}"
    if code.startswith("LimitExceeded.PhoneNumber") or code.startswith("LimitExceeded.DeliveryFrequency"):
        return TryLater(reason, retry_after=3600)
    if code.startswith("LimitExceeded") or code.startswith("RequestLimitExceeded"):
        return TryLater(reason, retry_after=60)
    if code in ("InvalidParameterValue.IncorrectPhoneNumber", "FailedOperation.PhoneNumberInBlacklist",
                "FailedOperation.PhoneNumberParseFail"):
        return Unreachable(reason)
    if code.startswith("FailedOperation.InsufficientBalance") or code in (
            "FailedOperation.SignatureIncorrectOrUnapproved",
            "FailedOperation.TemplateIncorrectOrUnapproved",
            "UnauthorizedOperation.SerivceSuspendDueToArrears",
            "AuthFailure.SecretIdNotFound", "AuthFailure.SignatureFailure"):
        return GiveUp(reason)
    return TryLater(reason)     # InternalError.*, network errors, anything new: try again


class TencentSms:
    """Tencent Cloud SMS through its SDK (``tencentcloud-sdk-python-sms``)."""

    name = "tencent"

    def __init__(self, settings: SmsSettings) -> None:
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.sms.v20210111 import sms_client

        # The SDK logs whole responses at debug level, numbers included: never let it.
        logging.getLogger("tencentcloud_sdk_common").setLevel(logging.WARNING)
        self.settings = settings
        http = HttpProfile(endpoint=settings.endpoint or None, reqMethod="POST",
                           reqTimeout=settings.timeout_seconds)
        http.protocol = http.scheme = settings.protocol
        profile = ClientProfile(signMethod="TC3-HMAC-SHA256", httpProfile=http)
        self._client = sms_client.SmsClient(
            credential.Credential(settings.secret_id, settings.secret_key), settings.region, profile)

    def __repr__(self) -> str:
        return "TencentSms(secret=<hidden>)"

    def _send_blocking(self, mobile: str, template_id: str, params: Sequence[str]) -> SmsSent:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
            TencentCloudSDKException,
        )
        from tencentcloud.sms.v20210111 import models

        request = models.SendSmsRequest()
        request.PhoneNumberSet = [f"+86{mobile}"]
        request.SmsSdkAppId = self.settings.sdk_app_id
        request.SignName = self.settings.sign_name
        request.TemplateId = template_id
        request.TemplateParamSet = list(params)
        try:
            response = self._client.SendSms(request)
        except TencentCloudSDKException as error:
            raise classify(str(error.get_code() or "ClientNetworkError")) from None
        statuses = response.SendStatusSet or []
        if not statuses:
            raise TryLater("sms no status in answer")
        status = statuses[0]
        if status.Code != OK:
            raise classify(str(status.Code))
        return SmsSent(serial_no=str(status.SerialNo or ""), fee=int(status.Fee or 1))

    async def send(self, mobile: str, template_id: str, params: Sequence[str]) -> SmsSent:
        return await asyncio.to_thread(self._send_blocking, mobile, template_id, params)


def template_params(template: SmsTemplate, fields: Mapping[str, str]) -> list[str]:
    """The template's parameters in order, each from its field, kept short."""
    return [str(fields.get(source, "") or "-")[:PARAM_CHARS] for source in template.params]


class SmsSender:
    """The outbox's SMS channel: a notice kind's template filled from its fields."""

    channel = CHANNEL

    def __init__(self, settings: SmsSettings, provider: SmsProvider) -> None:
        self.settings = settings
        self.provider = provider

    async def send(self, mobile: str, kind: str, fields: Mapping[str, str]) -> SmsSent:
        """Send notice ``kind`` to ``mobile``.

        Raises:
            Unreachable: no template for this kind (set up ``sms.templates``), or a bad number.
            TryLater, GiveUp: as the provider says.
        """
        template = self.settings.templates.get(kind)
        if template is None:
            raise Unreachable(f"no SMS template for {kind}")
        return await self.provider.send(mobile, template.template_id, template_params(template, fields))

    async def deliver(self, chat_id: str, replies: list[Reply], *, kind: str = "message",
                      fields: Mapping[str, str] | None = None) -> None:
        """``Sender`` for an SMS: ``chat_id`` is the mobile; the text is the template's, so
        ``replies`` are not used."""
        await self.send(chat_id, kind, fields or {})


def build_sms(settings: SmsSettings) -> SmsSender | None:
    """The SMS sender for ``sms.provider``, or None when SMS is not set up."""
    if settings.provider == "tencent":
        return SmsSender(settings, TencentSms(settings))
    return None


# --- callbacks --------------------------------------------------------------------------------


def _receipts(items: list[Any]) -> list[sms_store.Receipt]:
    receipts = []
    for item in items:
        if isinstance(item, dict) and item.get("sid"):
            receipts.append(sms_store.Receipt(
                serial_no=str(item["sid"])[:80],
                delivered=str(item.get("report_status", "")).upper() == "SUCCESS",
                error=str(item.get("errmsg") or item.get("description") or "")[:100]))
    return receipts


def sms_routes(database: Database, centre: Centre, clock: Clock,
               settings: SmsSettings) -> list[Route]:
    """The route Tencent posts delivery receipts and replies to (JSON, one object or a list).

    A receipt has ``sid`` and ``report_status``; a reply (上行) has ``mobile`` and ``text``:
    "1"/"接受"/"Y" or "2"/"取消"/"N" answers the newest offer texted to that number that is
    still waiting, if only one waits (storage.sms_answers), and otherwise "TD"/"退订" records an
    opt-out ("N"/"取消" too, when no offer was texted to the number lately). A reply delivered
    again (same number, time and text) is acted on once. It always answers ``{"result": 0}``
    once the body is read, as Tencent expects; a wrong token gets 403.
    """

    async def callback(request: Request) -> Response:
        token = request.query_params.get("token", "")
        if settings.callback_token and not hmac.compare_digest(token, settings.callback_token):
            return JSONResponse({"result": 1, "errmsg": "forbidden"}, status_code=403)
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return JSONResponse({"result": 1, "errmsg": "bad json"}, status_code=400)
        items = body if isinstance(body, list) else [body]
        now = clock.now()
        try:
            async with database.session() as session:
                matched = await sms_store.record_receipts(session, now, _receipts(items))
                opted = answered = 0
                for item in items:
                    if not isinstance(item, dict) or not item.get("mobile"):
                        continue
                    mobile, text = str(item["mobile"])[-11:], str(item.get("text", ""))
                    # The provider retries a callback it thinks failed: the same reply
                    # (number, its time, text) is acted on once.
                    if not await sms_answers.first_delivery(session, centre, now, mobile,
                                                            item.get("time", ""), text):
                        continue
                    # An answer to a waiting offer first: "N"/"取消" then declines it and
                    # is not an opt-out.
                    result = await sms_answers.answer_by_reply(session, centre, now, mobile, text)
                    if result.outcome == sms_answers.ReplyOutcome.ANSWERED:
                        answered += 1
                    elif await sms_answers.opts_out(session, centre, now, mobile, text):
                        opted += await sms_store.opt_out(session, centre, now, mobile,
                                                         source="reply")
        except Exception as error:
            log.warning("sms callback failed: %s", type(error).__name__)
            return JSONResponse({"result": 1, "errmsg": "error"}, status_code=500)
        log.info("sms callback: %d receipts matched, %d offers answered, %d opt-outs",
                 matched, answered, opted)
        return JSONResponse({"result": 0, "errmsg": "OK"})

    return [Route(settings.callback_path, callback, methods=["POST"])]


__all__ = ["SmsProvider", "SmsSender", "SmsSent", "TencentSms", "build_sms", "classify",
           "sms_routes", "template_params"]
