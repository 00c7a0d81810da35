"""A small fake WeCom API server (qyapi.weixin.qq.com) over real HTTP on 127.0.0.1, and WeCom's
side of the app's callback.

``FakeWecomApi`` answers what Yuyue calls — ``gettoken`` (the same token while it is valid, a
new one once it expired), ``message/send`` (text, image, file, template_card; a
button-interaction card gets a response code), ``message/update_template_card`` (each
response code once), ``appchat/create``, ``appchat/send``, ``media/upload`` (multipart),
``menu/create``, ``user/get`` (names from ``directory``) — records every call, keeps each
card as every recipient sees it, and plays scripted errors: ``expire_token()`` (42001 for the
old token), ``fail_next(path, 40014, 45009, ...)``.

``WecomPush`` posts callbacks as WeCom does: the XML encrypted with wechatpy's enterprise
crypto, ``msg_signature``/``timestamp``/``nonce`` in the query; ``verify_url`` does the
console's GET check.

Use: ``async with FakeWecomApi() as api:`` then point ``wecom.api_base`` at ``api.url``.
"""

from __future__ import annotations

import base64
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from wechatpy.enterprise.crypto import PrpCrypto

from tests.fakes import Files, read_multipart
from tests.fakes.tencent import ApiCall, CgiFake, sign

CORP_ID = "ww5f1e4b3c2a190d87"
AGENT_ID = 1000002
SECRET = "fake-wecom-app-secret-0123456789abcdef"
# WeCom's published callback sample values (the message-crypto sample).
TOKEN = "QDG6eK"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
ERRORS = {40014: "invalid access_token", 42001: "access_token expired",
          45009: "api freq out of limit", 45033: "api concurrent out of limit",
          40013: "invalid corpid", 40001: "invalid secret", 81013: "user & party & tag all invalid",
          86003: "chat not exists", 40058: "invalid parameter", 40004: "invalid media type",
          40098: "invalid response_code", 60020: "not allow to access from your ip"}
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "wecom"


@dataclass
class SentCard:
    """A card as its recipients see it: the buttons, or the label that replaced them."""

    task_id: str
    users: list[str]
    body: dict[str, Any]
    response_code: str
    replaced: dict[str, str] = field(default_factory=dict)     # user -> label

    @property
    def title(self) -> str:
        return str(self.body.get("main_title", {}).get("title", ""))

    def key(self, label: str) -> str:
        return next(b["key"] for b in self.body["button_list"] if b["text"] == label)


class FakeWecomApi(CgiFake):
    """The fake server; ``calls`` lists every request in order."""

    def __init__(self, *, expires_in: int = 7200) -> None:
        super().__init__(expires_in=expires_in)
        self.expired: set[str] = set()
        self.directory: dict[str, str] = {}
        self.unknown_users: set[str] = set()
        self.cards: dict[str, SentCard] = {}
        self.codes: dict[str, str] = {}         # response code -> task id (unused codes)
        self.chats: dict[str, dict[str, Any]] = {}

    # --- scripting ----------------------------------------------------------------------------

    def expire_token(self) -> None:
        """The current token stops working (42001), as after 7200 s."""
        self.expired |= self.valid
        self.valid.clear()

    def click_code(self, task_id: str) -> str:
        """A fresh response code for a click on ``task_id`` (WeCom gives one per click)."""
        code = f"RC-{next(self._serial)}"
        self.codes[code] = task_id
        return code

    # --- what happened ------------------------------------------------------------------------

    def texts(self, user: str) -> list[str]:
        """Text messages ``user`` got, in order."""
        return [b["text"]["content"] for b in self.sent("message/send")
                if b.get("msgtype") == "text" and user in b.get("touser", "").split("|")]

    def cards_of(self, user: str) -> list[SentCard]:
        return [c for c in self.cards.values() if user in c.users]

    def shown(self, card: SentCard, user: str) -> str:
        """What ``user`` sees on ``card``'s button row."""
        return card.replaced.get(user) or " / ".join(b["text"] for b in card.body["button_list"])

    @property
    def chat_texts(self) -> list[str]:
        return [b["text"]["content"] for b in self.sent("appchat/send") if b.get("msgtype") == "text"]

    # --- the endpoints ------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        path = request.path_params["path"]
        query = dict(request.query_params)
        token = query.get("access_token")
        content_type = request.headers.get("content-type", "")
        files: Files = {}
        try:
            if request.method == "GET":
                body: dict[str, Any] = {k: v for k, v in query.items() if k != "access_token"}
            elif content_type.startswith("multipart/form-data"):
                fields, files = read_multipart(content_type, await request.body())
                body = {**fields, **{k: v for k, v in query.items() if k != "access_token"}}
            else:
                body = json.loads(await request.body() or b"{}")
        except ValueError:
            return self._answer(path, token, {}, 40058)
        if path == "gettoken":
            return self._gettoken(body)
        if token in self.expired:
            return self._answer(path, token, body, 42001)
        if token not in self.valid:
            return self._answer(path, token, body, 40014)
        if self.scripted[path]:
            return self._answer(path, token, body, self.scripted[path].popleft())
        handler = {"message/send": self._send, "message/update_template_card": self._update,
                   "appchat/create": self._chat_create, "appchat/send": self._chat_send,
                   "media/upload": lambda t, b: self._upload(t, b, files),
                   "menu/create": self._menu, "user/get": self._user}.get(path)
        if handler is None:
            return self._answer(path, token, body, 40058)
        return handler(token, body)

    def _gettoken(self, body: dict[str, Any]) -> Response:
        redacted = {k: ("***" if k == "corpsecret" else v) for k, v in body.items()}
        if body.get("corpid") != CORP_ID:
            return self._answer("gettoken", None, redacted, 40013)
        if body.get("corpsecret") != SECRET:
            return self._answer("gettoken", None, redacted, 40001)
        if self.scripted["gettoken"]:
            return self._answer("gettoken", None, redacted, self.scripted["gettoken"].popleft())
        if self.current not in self.valid:
            self.current = f"WECOM-TOKEN-{next(self._serial)}"
            self.valid = {self.current}
        return self._answer("gettoken", None, redacted, 0,
                            {"access_token": self.current, "expires_in": self.expires_in})

    def _send(self, token: str | None, body: dict[str, Any]) -> Response:
        if body.get("agentid") != AGENT_ID:
            return self._answer("message/send", token, body, 40058)
        users = [u for u in str(body.get("touser", "")).split("|") if u]
        invalid = [u for u in users if u in self.unknown_users]
        reached = [u for u in users if u not in invalid]
        if not reached:
            return self._answer("message/send", token, body, 81013)
        extra: dict[str, Any] = {"invaliduser": "|".join(invalid), "msgid": f"MSG{next(self._serial)}"}
        if body.get("msgtype") == "template_card":
            card = body["template_card"]
            if card.get("card_type") != "button_interaction" or not card.get("task_id") \
                    or card["task_id"] in self.cards or not card.get("button_list"):
                return self._answer("message/send", token, body, 40058)
            code = f"RC-{next(self._serial)}"
            self.cards[card["task_id"]] = SentCard(card["task_id"], reached, card, code)
            self.codes[code] = card["task_id"]
            extra["response_code"] = code
        elif body.get("msgtype") in ("image", "file"):
            if body[body["msgtype"]].get("media_id") not in self.uploads:
                return self._answer("message/send", token, body, 40058)
        elif body.get("msgtype") != "text" or not body.get("text", {}).get("content"):
            return self._answer("message/send", token, body, 40058)
        return self._answer("message/send", token, body, 0, extra)

    def _update(self, token: str | None, body: dict[str, Any]) -> Response:
        task_id = self.codes.pop(str(body.get("response_code", "")), None)
        if task_id is None or body.get("agentid") != AGENT_ID:
            return self._answer("message/update_template_card", token, body, 40098)
        card = self.cards[task_id]
        label = str(body.get("button", {}).get("replace_name", ""))
        users = card.users if body.get("atall") else list(body.get("userids", []))
        for user in users:
            card.replaced[user] = label
        return self._answer("message/update_template_card", token, body, 0,
                            {"invaliduser": []})

    def _chat_create(self, token: str | None, body: dict[str, Any]) -> Response:
        users = list(body.get("userlist") or [])
        if not body.get("name") or len(users) < 2 or body.get("owner", users[0]) not in users:
            return self._answer("appchat/create", token, body, 40058)
        chat_id = str(body.get("chatid") or f"wrk{next(self._serial):08d}")
        self.chats[chat_id] = body
        return self._answer("appchat/create", token, body, 0, {"chatid": chat_id})

    def _chat_send(self, token: str | None, body: dict[str, Any]) -> Response:
        if body.get("chatid") not in self.chats:
            return self._answer("appchat/send", token, body, 86003)
        return self._answer("appchat/send", token, body, 0)

    def _upload(self, token: str | None, body: dict[str, Any], files: Files) -> Response:
        media = files.get("media")
        if body.get("type") not in ("image", "file") or media is None:
            return self._answer("media/upload", token, body, 40004)
        media_id = f"MEDIA-{next(self._serial)}"
        self.uploads[media_id] = media
        return self._answer("media/upload", token, body | {"filename": media[0]}, 0,
                            {"type": body["type"], "media_id": media_id, "created_at": "1764633600"})

    def _menu(self, token: str | None, body: dict[str, Any]) -> Response:
        return self._answer("menu/create", token, body, 0)

    def _user(self, token: str | None, body: dict[str, Any]) -> Response:
        name = self.directory.get(str(body.get("userid")))
        if name is None:
            return self._answer("user/get", token, body, 60111)
        return self._answer("user/get", token, body, 0, {"userid": body["userid"], "name": name})

    def _answer(self, path: str, token: str | None, body: dict[str, Any], errcode: int,
                extra: dict[str, Any] | None = None) -> Response:
        self.calls.append(ApiCall(path, token, body, errcode))
        self.called()
        return JSONResponse({"errcode": errcode, "errmsg": ERRORS.get(errcode, "ok" if not errcode
                                                                      else "error"),
                             **(extra or {})})


# --- WeCom's side of the callback -------------------------------------------------------------


def sample(name: str, **fields: str | int) -> str:
    """A callback from tests/fixtures/wecom/<name>.xml with fields filled in ({Field})."""
    xml = (FIXTURES / f"{name}.xml").read_text(encoding="utf-8")
    defaults: dict[str, str | int] = {"ToUserName": CORP_ID, "AgentID": AGENT_ID}
    return xml.format(**(defaults | fields))


class WecomPush:
    """Posts callbacks to the app's URL exactly as WeCom's servers do."""

    def __init__(self, http: Any, *, path: str, now: Any, token: str = TOKEN,
                 aes_key: str = AES_KEY, corp_id: str = CORP_ID) -> None:
        self.http, self.path, self.now = http, path, now
        self.token, self.corp_id = token, corp_id
        self.crypto = PrpCrypto(base64.b64decode(aes_key + "="))
        self.last: tuple[dict[str, str], bytes] = ({}, b"")
        self._nonces = itertools.count(1372623149)

    _sign = staticmethod(sign)

    def _query(self, encrypted: str, timestamp: str | None = None) -> dict[str, str]:
        timestamp = timestamp or str(int(self.now().timestamp()))
        nonce = str(next(self._nonces))
        return {"msg_signature": self._sign(self.token, timestamp, nonce, encrypted),
                "timestamp": timestamp, "nonce": nonce}

    def encrypt(self, text: str) -> str:
        return str(self.crypto.encrypt(text, self.corp_id).decode())

    async def verify_url(self, echo: str = "1616140317555161061", *,
                         tamper: bool = False) -> Any:
        """The console's GET when the admin saves 接收消息."""
        encrypted = self.encrypt(echo)
        query = self._query(encrypted) | {"echostr": encrypted}
        if tamper:
            query["msg_signature"] = "0" * 40
        return await self.http.get(self.path, params=query)

    async def post(self, xml: str, *, tamper: bool = False, timestamp: str | None = None) -> Any:
        """POST one callback (``retry`` posts it again)."""
        encrypted = self.encrypt(xml)
        query = self._query(encrypted, timestamp)
        if tamper:
            query["msg_signature"] = "0" * 40
        body = (f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName>"
                f"<Encrypt><![CDATA[{encrypted}]]></Encrypt>"
                f"<AgentID><![CDATA[{AGENT_ID}]]></AgentID></xml>").encode()
        self.last = (query, body)
        return await self.http.post(self.path, params=query, content=body,
                                    headers={"Content-Type": "text/xml"})

    async def retry(self) -> Any:
        """Post the last callback again, byte for byte (WeCom had no answer in 5 seconds)."""
        query, body = self.last
        return await self.http.post(self.path, params=query, content=body,
                                    headers={"Content-Type": "text/xml"})
