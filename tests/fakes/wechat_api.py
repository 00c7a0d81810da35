"""A small fake WeChat API server (api.weixin.qq.com) over real HTTP on 127.0.0.1.

It answers the endpoints Yuyue calls — ``cgi-bin/stable_token``, ``message/custom/send``,
``message/template/send``, ``message/template/subscribe``, ``media/upload`` (multipart; the
files are kept in ``uploads``), ``menu/create`` — with real-shaped JSON, keeps the
stable-token rules (normal mode returns the current token while it is valid; forced refresh
replaces it and the old one stops working), records every call, and plays scripted errors:
40001 for an expired token (``expire_token()``), 45015 for a citizen outside the 48-hour
window (``out_of_window``), 40125 for a wrong AppSecret, 40164 for a caller missing from
``allowed_ips``, or any errcode queued for a path (``fail_next``).

Use: ``async with FakeWechatApi() as api:`` then point ``wechat.api_base_url`` at ``api.url``.
"""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import xmltodict
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from wechatpy.crypto import PrpCrypto, WeChatCrypto

from tests.fakes import Files, read_multipart
from tests.fakes.tencent import ApiCall, CgiFake, sign

APP_ID = "wx49f0ab532d5d035a"
APP_SECRET = "fake-app-secret-for-tests-0123456"
ERRORS = {40001: "invalid credential, access_token is invalid or not latest",
          40003: "invalid openid", 43004: "require subscribe",
          45015: "response out of time limit or subscription is canceled",
          45009: "reach max api daily quota limit", 40013: "invalid appid",
          43101: "user refuse to accept the msg", 40004: "invalid media type",
          48001: "api unauthorized", 40125: "invalid appsecret",
          40164: "invalid ip 127.0.0.1 ipv6 ::ffff:127.0.0.1, not in whitelist",
          47003: "argument invalid! data.time2.value invalid",
          40016: "invalid button size", 40017: "invalid button type",
          40018: "invalid button name size", 40019: "invalid button key size",
          40023: "invalid sub button size", 40055: "invalid button url domain",
          40005: "invalid file type"}
SENDS = ("message/custom/send", "message/template/send", "message/template/subscribe",
         "menu/create", "media/upload")


class FakeWechatApi(CgiFake):
    """The fake server; ``calls`` lists every request in order."""

    def __init__(self, *, expires_in: int = 7200) -> None:
        super().__init__(expires_in=expires_in)
        self.out_of_window: set[str] = set()
        self.allowed_ips: set[str] | None = None      # the IP allow-list (None: not enforced)

    # --- scripting ----------------------------------------------------------------------------

    def expire_token(self) -> None:
        """The current token stops working (as after 7200 s or a refresh elsewhere)."""
        self.valid.clear()

    # --- what happened ------------------------------------------------------------------------

    @property
    def texts(self) -> list[str]:
        """Customer-service texts delivered, in order."""
        return [b["text"]["content"] for b in self.sent("message/custom/send")
                if b.get("msgtype") == "text"]

    # --- the endpoints ------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        path = request.path_params["path"]
        token = request.query_params.get("access_token")
        content_type = request.headers.get("content-type", "")
        files: Files = {}
        try:
            if content_type.startswith("multipart/form-data"):
                body, files = read_multipart(content_type, await request.body())
                body = {**body, **request.query_params}
            else:
                body = json.loads(await request.body() or b"{}")
        except ValueError:
            return self._answer(path, token, {}, 47001)
        if path == "stable_token":
            return self._stable_token(body)
        if token not in self.valid:
            return self._answer(path, token, body, 40001)
        if self.scripted[path]:
            return self._answer(path, token, body, self.scripted[path].popleft())
        if path == "message/custom/send" and body.get("touser") in self.out_of_window:
            return self._answer(path, token, body, 45015)
        if path not in SENDS:
            return self._answer(path, token, body, 40066)
        if path == "media/upload":
            return self._upload(token, body, files)
        if path == "menu/create" and (refused := _menu_errcode(body)):
            return self._answer(path, token, body, refused)
        if path == "message/template/send" and not _template_fits(body.get("data")):
            return self._answer(path, token, body, 47003)
        extra = {"msgid": next(self._serial)} if path == "message/template/send" else {}
        return self._answer(path, token, body, 0, extra)

    def _upload(self, token: str | None, body: dict[str, Any], files: Files) -> Response:
        media = files.get("media")
        if body.get("type") != "image" or media is None:
            return self._answer("media/upload", token, body, 40004)   # invalid media type
        if not media[1].startswith((b"\x89PNG", b"\xff\xd8", b"GIF8")):
            return self._answer("media/upload", token, body, 40005)   # invalid file type
        media_id = f"MEDIA-{next(self._serial)}"
        self.uploads[media_id] = media
        return self._answer("media/upload", token, body | {"filename": media[0]}, 0,
                            {"type": "image", "media_id": media_id, "created_at": 1764633600})

    def _stable_token(self, body: dict[str, Any]) -> Response:
        if body.get("appid") != APP_ID or body.get("grant_type") != "client_credential":
            return self._answer("stable_token", None, _redacted(body), 40013)
        if body.get("secret") != APP_SECRET:
            return self._answer("stable_token", None, _redacted(body), 40125)
        if self.allowed_ips is not None and "127.0.0.1" not in self.allowed_ips:
            return self._answer("stable_token", None, _redacted(body), 40164)
        if self.scripted["stable_token"]:
            return self._answer("stable_token", None, _redacted(body),
                                self.scripted["stable_token"].popleft())
        if body.get("force_refresh") or self.current not in self.valid:
            self.current = f"TOKEN-{next(self._serial)}"
            self.valid = {self.current}
        return self._answer("stable_token", None, _redacted(body), 0,
                            {"access_token": self.current, "expires_in": self.expires_in})

    def _answer(self, path: str, token: str | None, body: dict[str, Any], errcode: int,
                extra: dict[str, Any] | None = None) -> Response:
        self.calls.append(ApiCall(path, token, body, errcode))
        self.called()
        if errcode == 0:
            payload: dict[str, Any] = {"errcode": 0, "errmsg": "ok", **(extra or {})}
            if path == "stable_token":
                payload = dict(extra or {})
            return JSONResponse(payload)
        return JSONResponse({"errcode": errcode, "errmsg": ERRORS.get(errcode, "error")})


# WeChat's keyword types (模板消息 → 关键词类型): what each value must look like.
_DAY = r"\d{4}年\d{1,2}月\d{1,2}日"
_CLOCK = r"(?:[01]?\d|2[0-3]):[0-5]\d"
_POINT = rf"(?:{_DAY} )?{_CLOCK}"
_CHINESE = r"[\u3400-\u4dbf\u4e00-\u9fff]"
TEMPLATE_RULES = {
    "time": re.compile(rf"{_POINT}(?:~{_POINT})?"),
    "date": re.compile(rf"{_DAY}(?: {_CLOCK})?(?:~{_DAY}(?: {_CLOCK})?)?"),
    "thing": re.compile(r"(?s).{1,20}"),
    "character_string": re.compile(r"[\x21-\x7e]{1,32}"),
    "phrase": re.compile(rf"{_CHINESE}{{1,5}}"),
    "number": re.compile(r"\d{1,32}(?:\.\d+)?"),
    "letter": re.compile(r"[A-Za-z]{1,32}"),
    "symbol": re.compile(r"[!-/:-@\[-`{-~]{1,5}"),
    "name": re.compile(rf"{_CHINESE}[{_CHINESE[1:-1]}·]{{0,9}}|[A-Za-z][A-Za-z .'-]{{0,19}}"),
    "amount": re.compile(r"[¥$€£]?\d{1,10}(?:\.\d{1,2})?元?"),
    "phone_number": re.compile(r"[0-9+\-]{1,17}"),
    "car_number": re.compile(r"\S{1,8}"),
}


def _template_fits(data: Any) -> bool:
    """Every value fits its keyword's type (the letters before the digits of its name)."""
    if not isinstance(data, dict) or not data:
        return False
    for keyword, item in data.items():
        value = item.get("value") if isinstance(item, dict) else None
        rule = TEMPLATE_RULES.get(re.sub(r"\d+$", "", keyword))
        if not isinstance(value, str) or (rule is not None and not rule.fullmatch(value)):
            return False
    return True


def _menu_errcode(body: dict[str, Any]) -> int:
    """WeChat's checks of a menu (自定义菜单/创建接口): 40016 button count, 40023 sub-button
    count, 40017 type, 40018 name length, 40019 key length, 40055 url length."""
    buttons = body.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        return 40016
    for button in buttons:
        subs = button.get("sub_button")
        if not 0 < len(str(button.get("name", "")).encode()) <= 16:
            return 40018
        for item, name_most in ([(button, 16)] if subs is None else [(sub, 60) for sub in subs]):
            if subs is not None and not 1 <= len(subs) <= 5:
                return 40023
            if not 0 < len(str(item.get("name", "")).encode()) <= name_most:
                return 40018
            if item.get("type") not in ("click", "view"):
                return 40017
            if item["type"] == "click" and not 0 < len(str(item.get("key", "")).encode()) <= 128:
                return 40019
            if item["type"] == "view" and not 0 < len(str(item.get("url", "")).encode()) <= 1024:
                return 40055
    return 0


def _redacted(body: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if k == "secret" else v) for k, v in body.items()}


# --- WeChat's side of the webhook ----------------------------------------------------------------

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "wechat"
# WeChat's published sample values (the WeCom/OA message-crypto sample, also in wechatpy's tests).
SAMPLE_TOKEN = "123456"
SAMPLE_AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
ACCOUNT = "gh_3f7badc0771f"


def sample(name: str, **fields: str | int) -> str:
    """A message from tests/fixtures/wechat/<name>.xml with some fields changed."""
    xml = (FIXTURES / f"{name}.xml").read_text(encoding="utf-8")
    for tag, value in fields.items():
        pattern = re.compile(rf"<{tag}>(<!\[CDATA\[.*?\]\]>|[^<]*)</{tag}>", re.S)
        text = str(value)
        node = f"<{tag}>{text}</{tag}>" if isinstance(value, int) else \
            f"<{tag}><![CDATA[{text}]]></{tag}>"
        xml, found = pattern.subn(lambda _m, node=node: node, xml)
        if not found:
            xml = xml.replace("</xml>", f"{node}\n</xml>")
    return xml


class WechatPush:
    """Posts messages to the webhook exactly as WeChat's servers do: signed query string,
    plain or safe mode (AES with ``msg_signature``), and reads the passive reply back,
    checking its signature and decrypting it with wechatpy."""

    def __init__(self, http: Any, *, path: str, token: str, aes_key: str = "",
                 app_id: str = APP_ID, now: Any) -> None:
        self.http, self.path, self.token = http, path, token
        self.crypto = WeChatCrypto(token, aes_key, app_id) if aes_key else None
        self.app_id, self.now = app_id, now
        self._nonces = itertools.count(1320562132)

    _sign = staticmethod(sign)

    def query(self, *, timestamp: str | None = None, nonce: str | None = None,
              openid: str = "") -> dict[str, str]:
        timestamp = timestamp or str(int(self.now().timestamp()))
        nonce = nonce or str(next(self._nonces))
        return {"signature": self._sign(self.token, timestamp, nonce), "timestamp": timestamp,
                "nonce": nonce, "openid": openid}

    async def post(self, xml: str, *, query: dict[str, str] | None = None,
                   tamper: str | None = None) -> Any:
        """POST ``xml``; ``tamper`` = "signature" or "msg_signature" spoils one of them."""
        query = dict(query or self.query())
        body = xml.encode("utf-8")
        if self.crypto is not None:
            encrypt = PrpCrypto(self.crypto.key).encrypt(xml, self.app_id).decode()
            query["encrypt_type"] = "aes"
            query["msg_signature"] = self._sign(self.token, query["timestamp"], query["nonce"],
                                                encrypt)
            to_user = re.search(r"<ToUserName><!\[CDATA\[(.*?)\]\]>", xml)
            body = (f"<xml>\n<ToUserName><![CDATA[{to_user.group(1) if to_user else ACCOUNT}]]>"
                    f"</ToUserName>\n<Encrypt><![CDATA[{encrypt}]]></Encrypt>\n</xml>").encode()
        if tamper:
            query[tamper] = "0" * 40
        return await self.http.post(self.path, params=query, content=body,
                                    headers={"Content-Type": "text/xml"})

    def read(self, response: Any) -> dict[str, str]:
        """The passive reply's fields ({} for "success"), decrypted and checked in safe mode."""
        assert response.status_code == 200, response.text
        if response.text in ("success", ""):
            return {}
        xml = response.text
        if self.crypto is not None:
            outer = xmltodict.parse(xml)["xml"]
            xml = self.crypto.decrypt_message(xml, outer["MsgSignature"], outer["TimeStamp"],
                                              outer["Nonce"])
        return dict(xmltodict.parse(xml)["xml"])
