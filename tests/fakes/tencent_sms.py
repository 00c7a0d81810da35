"""A fake Tencent Cloud SMS API (sms.tencentcloudapi.com, SendSms 2021-01-11) on 127.0.0.1.

The real SDK talks to it (``sms.endpoint`` = its host:port, ``sms.protocol = "http"``). It
checks that the Authorization header is a well-formed TC3-HMAC-SHA256 one and recomputes the
signature with the secret key it was given, so a request the real service would refuse is
refused here too (``AuthFailure.SignatureFailure``). It records each text and answers a
``SendStatusSet``; ``fail_next(code)`` makes the next texts' status that code (as the real
service does per number), ``fail_call_next(code)`` makes the next whole call an error.
``report_first(url, status)`` makes it post each accepted text's delivery receipt (短信回执) to
``url`` before it answers the send, as the real callback can arrive before the sender has
recorded the answer.

Use: ``async with FakeTencentSms() as fake:`` then ``fake.settings()`` for the ``[sms]`` section.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from storage.settings import SmsSettings, SmsTemplate
from tests.fakes import Calls, LocalServer

SECRET_ID = "AKIDfakefakefakefakefakefakefake1234"
SECRET_KEY = "fakeSecretKey0123456789abcdefghij"
APP_ID = "1400000001"
SIGN = "某某市政务服务中心"
AUTH = re.compile(r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/,\s]+)/(?P<date>\d{4}-\d{2}-\d{2})/"
                  r"(?P<service>[a-z]+)/tc3_request, SignedHeaders=(?P<headers>[a-z;-]+), "
                  r"Signature=(?P<signature>[0-9a-f]{64})$")

TEMPLATES = {
    "booking_confirmed": SmsTemplate("2000001", ("service", "when", "code")),
    "reminder": SmsTemplate("2000002", ("service", "when", "place", "code")),
    "closure_cancelled": SmsTemplate("2000003", ("service", "when", "reason")),
    "cancelled": SmsTemplate("2000004", ("service", "when")),
    "sms_code": SmsTemplate("2000005", ("code", "minutes")),
    "case_accepted": SmsTemplate("2000010", ("number", "service", "when")),
    "case_ready": SmsTemplate("2000011", ("number", "place")),
    "case_correction": SmsTemplate("2000012", ("number", "service", "when")),
    "case_extended": SmsTemplate("2000013", ("number", "when")),
    "closure_substitute": SmsTemplate("2000020", ("service", "when", "doctor", "deadline")),
    "closure_move": SmsTemplate("2000021", ("service", "when", "new_when", "doctor", "deadline")),
    "move_offer": SmsTemplate("2000022", ("service", "when", "new_when", "deadline")),
    "offer_answered": SmsTemplate("2000023", ("summary", "service", "when", "code")),
    "offer_unmatched": SmsTemplate("2000024", ()),
    "offer_ambiguous": SmsTemplate("2000025", ()),
}


@dataclass
class Text:
    mobile: str
    template_id: str
    params: list[str]
    sign: str
    app_id: str
    serial_no: str


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


class FakeTencentSms(Calls):
    def __init__(self, *, secret_id: str = SECRET_ID, secret_key: str = SECRET_KEY) -> None:
        super().__init__()
        self.secret_id, self.secret_key = secret_id, secret_key
        self.texts: list[Text] = []
        self.refused: list[str] = []
        self.authorizations: list[str] = []
        self.status_codes: deque[str] = deque()
        self.call_errors: deque[str] = deque()
        self.receipt_url = ""
        self.receipt_status = ("SUCCESS", "")
        self.receipts_posted: list[int] = []        # the HTTP status of each early receipt
        self.server = LocalServer(Starlette(routes=[Route("/", self._api, methods=["POST"])]))

    async def __aenter__(self) -> FakeTencentSms:
        await self.server.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.server.stop()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def settings(self, **overrides: Any) -> SmsSettings:
        values: dict[str, Any] = dict(
            provider="tencent", secret_id=self.secret_id, secret_key=self.secret_key,
            sdk_app_id=APP_ID, sign_name=SIGN, endpoint=self.endpoint, protocol="http",
            templates=dict(TEMPLATES))
        values.update(overrides)
        return SmsSettings(**values)

    def fail_next(self, code: str, times: int = 1) -> None:
        self.status_codes.extend([code] * times)

    def fail_call_next(self, code: str, times: int = 1) -> None:
        self.call_errors.extend([code] * times)

    def report_first(self, url: str, status: str = "SUCCESS", errmsg: str = "") -> None:
        """Post each accepted text's receipt to ``url`` before answering the send."""
        self.receipt_url, self.receipt_status = url, (status, errmsg)

    async def _post_receipts(self, accepted: list[Text]) -> None:
        status, errmsg = self.receipt_status
        async with httpx.AsyncClient(timeout=5) as client:
            for text in accepted:
                answer = await client.post(self.receipt_url, json=[{
                    "user_receive_time": "2026-11-23 09:00:01", "nationcode": "86",
                    "mobile": text.mobile.removeprefix("+86"), "report_status": status,
                    "errmsg": errmsg, "description": errmsg, "sid": text.serial_no}])
                self.receipts_posted.append(answer.status_code)

    def _error(self, code: str, message: str) -> JSONResponse:
        self.refused.append(code)
        return JSONResponse({"Response": {"Error": {"Code": code, "Message": message},
                                          "RequestId": str(uuid.uuid4())}})

    def _signature_ok(self, request: Request, body: bytes, match: re.Match[str]) -> bool:
        headers = (f"content-type:{request.headers.get('content-type', '')}\n"
                   f"host:{request.headers.get('host', '')}\n")
        canonical = "\n".join([request.method, "/", "", headers, match["headers"],
                               hashlib.sha256(body).hexdigest()])
        scope = f"{match['date']}/{match['service']}/tc3_request"
        to_sign = "\n".join(["TC3-HMAC-SHA256", request.headers.get("x-tc-timestamp", ""), scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key = _hmac(_hmac(_hmac(("TC3" + self.secret_key).encode(), match["date"]),
                          match["service"]), "tc3_request")
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, match["signature"])

    async def _api(self, request: Request) -> JSONResponse:
        try:
            return await self._answer(request)
        finally:
            self.called()       # after the text is recorded: a waiting test sees it

    async def _answer(self, request: Request) -> JSONResponse:
        body = await request.body()
        authorization = request.headers.get("authorization", "")
        self.authorizations.append(authorization)
        match = AUTH.match(authorization)
        if match is None or match["headers"] != "content-type;host" or match["service"] != "sms":
            return self._error("AuthFailure.InvalidAuthorization", "Authorization malformed")
        if match["id"] != self.secret_id or not self._signature_ok(request, body, match):
            return self._error("AuthFailure.SignatureFailure", "signature mismatch")
        if request.headers.get("x-tc-action") != "SendSms" or \
                request.headers.get("x-tc-version") != "2021-01-11":
            return self._error("InvalidAction", "unknown action")
        if self.call_errors:
            code = self.call_errors.popleft()
            return self._error(code, code)
        data = json.loads(body)
        statuses = []
        for number in data.get("PhoneNumberSet", []):
            code = self.status_codes.popleft() if self.status_codes else "Ok"
            serial = f"2433:{uuid.uuid4().int % 10**20}"
            if code == "Ok":
                self.texts.append(Text(number, data.get("TemplateId", ""),
                                       list(data.get("TemplateParamSet", [])),
                                       data.get("SignName", ""), data.get("SmsSdkAppId", ""), serial))
            else:
                self.refused.append(code)
            statuses.append({"SerialNo": serial if code == "Ok" else "", "PhoneNumber": number,
                             "Fee": 1 if code == "Ok" else 0, "SessionContext": "",
                             "Code": code, "Message": "send success" if code == "Ok" else code,
                             "IsoCode": "CN"})
        if self.receipt_url:
            await self._post_receipts([t for t in self.texts
                                       if t.serial_no in {s["SerialNo"] for s in statuses}])
        return JSONResponse({"Response": {"SendStatusSet": statuses,
                                          "RequestId": str(uuid.uuid4())}})
