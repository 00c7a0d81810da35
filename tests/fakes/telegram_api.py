"""A small fake Telegram Bot API server, for python-telegram-bot to talk to over real HTTP.

It answers the methods Yuyue uses with real-shaped JSON, remembers the messages it "sent" (so a
test can press the buttons the bot sent), records every call, hands out queued updates through
getUpdates (long polling, with offsets acknowledging them), and plays scripted errors: 429 with
``parameters.retry_after``, 403 "bot was blocked by the user", 400 with ``migrate_to_chat_id``,
409 Conflict.

Use: ``async with FakeTelegram() as api:`` then point the bot at ``api.base_url``.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes import Calls, Files, LocalServer, read_multipart

TOKEN = "123456789:fake-token-for-tests"
BOT = {"id": 7000000001, "is_bot": True, "first_name": "Yuyue 预约", "username": "yuyue_test_bot",
       "can_join_groups": True, "can_read_all_group_messages": False,
       "supports_inline_queries": False}
# Parameters python-telegram-bot sends as plain strings; every other one is JSON-encoded.
_TEXT_PARAMS = {"text", "caption", "url", "secret_token", "language_code", "callback_query_id",
                "parse_mode", "ip_address"}
_METHODS = {"getme", "getupdates", "setwebhook", "deletewebhook", "getwebhookinfo", "sendmessage",
            "editmessagetext", "editmessagereplymarkup", "answercallbackquery", "senddocument",
            "sendphoto", "setmycommands", "deletemycommands", "close", "logout"}


@dataclass
class ApiCall:
    method: str
    params: dict[str, Any]
    at: float
    files: dict[str, tuple[str, bytes, str]] = field(default_factory=dict)
    status: int = 200

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        return None if value is None else int(value)

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class _Failure:
    method: str
    chat_id: int | None
    times: int
    status: int
    body: dict[str, Any]
    after: int = 0


@dataclass
class Gate:
    once: bool = False
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    chat_id: int | None = None

    def release(self) -> None:
        self.released.set()


class FakeTelegram(Calls):
    """The fake server. ``clock`` stamps each recorded call (a test's FakeTime.now)."""

    def __init__(self, *, clock: Callable[[], float] | None = None, token: str = TOKEN,
                 enforce_rate: bool = False) -> None:
        self.token = token
        # Enforce Telegram's limits (30 messages a second overall, 1 a second per private chat)
        # with 429 answers, as the real Bot API does (for benchmarks).
        self.enforce_rate = enforce_rate
        self._sent_at: collections.deque[float] = collections.deque()
        self._chat_sent_at: dict[int, float] = {}
        self.rate_refusals = 0
        self.clock = clock or time.monotonic
        self.calls: list[ApiCall] = []
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self.webhook: dict[str, Any] = {"url": ""}
        self.confirmed = 0          # updates with ids below this were acknowledged
        self.blocked: set[int] = set()
        self.migrated: dict[int, int] = {}
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(100001)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._query_ids = itertools.count(4_000_000_001)
        self._arrived = asyncio.Event()
        super().__init__()
        self._closing = asyncio.Event()
        self._failures: list[_Failure] = []
        self.conflict = False
        self._acked = asyncio.Event()
        self._gates: dict[str, Gate] = {}
        self.server = LocalServer(Starlette(routes=[
            Route("/bot{token}/{method}", self._endpoint, methods=["GET", "POST"])]))

    # -- running --------------------------------------------------------------------------

    async def __aenter__(self) -> FakeTelegram:
        await self.server.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._closing.set()
        await self.server.stop()

    @property
    def base_url(self) -> str:
        return f"{self.server.url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.server.url}/file/bot"

    # -- scripting ------------------------------------------------------------------------

    def fail(self, method: str, *, status: int = 429, description: str | None = None,
             retry_after: int | None = None, migrate_to: int | None = None,
             chat_id: int | None = None, times: int = 1, after: int = 0) -> None:
        """Answer the next ``times`` calls of ``method`` (to ``chat_id``, if given) in error,
        once ``after`` such calls have gone through."""
        parameters: dict[str, Any] = {}
        if retry_after is not None:
            parameters["retry_after"] = retry_after
        if migrate_to is not None:
            parameters["migrate_to_chat_id"] = migrate_to
        default = {429: f"Too Many Requests: retry after {retry_after}",
                   403: "Forbidden: bot was blocked by the user",
                   409: "Conflict: terminated by other getUpdates request; make sure that only "
                        "one bot instance is running",
                   400: "Bad Request: group chat was upgraded to a supergroup chat"}
        body: dict[str, Any] = {"ok": False, "error_code": status,
                                "description": description or default.get(status, "Error")}
        if parameters:
            body["parameters"] = parameters
        self._failures.append(_Failure(method.lower(), chat_id, times, status, body, after))

    def hold(self, method: str, *, once: bool = False, chat_id: int | None = None) -> Gate:
        """Make calls of ``method`` (to ``chat_id``, if given) wait until the test releases
        them (an update in flight); ``once``: only the next such call waits, the ones after it
        are answered at once."""
        gate = Gate(once=once, chat_id=chat_id)
        self._gates[method.lower()] = gate
        return gate

    async def acknowledged(self, update_id: int) -> None:
        """Wait until getUpdates has been called with an offset past ``update_id``."""
        async with asyncio.timeout(20):   # a guard against a dead poller, not a wait for it
            while self.confirmed <= update_id:
                self._acked.clear()
                await self._acked.wait()

    def block(self, chat_id: int) -> None:
        """The user blocked the bot: every message to them gets 403."""
        self.blocked.add(chat_id)

    def migrate(self, old: int, new: int) -> None:
        """The group ``old`` became the supergroup ``new``: messages to ``old`` get 400."""
        self.migrated[old] = new

    # -- updates --------------------------------------------------------------------------

    def enqueue(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates (an update_id is given if it has none)."""
        update.setdefault("update_id", next(self._update_ids))
        self._updates.append(update)
        self._arrived.set()
        return update

    @property
    def pending(self) -> list[dict[str, Any]]:
        return [u for u in self._updates if u["update_id"] >= self.confirmed]

    def user(self, user_id: int, *, language_code: str = "zh-hans",
             first_name: str = "小明") -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": first_name,
                "language_code": language_code}

    def chat_of(self, chat_id: int, title: str = "窗口工作群") -> dict[str, Any]:
        if chat_id > 0:
            return {"id": chat_id, "type": "private", "first_name": "小明"}
        kind = "supergroup" if str(chat_id).startswith("-100") else "group"
        return {"id": chat_id, "type": kind, "title": title}

    def text_update(self, user_id: int, text: str, *, chat_id: int | None = None,
                    language_code: str = "zh-hans", reply_to: dict[str, Any] | None = None,
                    update_id: int | None = None) -> dict[str, Any]:
        """What Telegram sends when a user types ``text`` (commands get their entity)."""
        chat = chat_id if chat_id is not None else user_id
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat), "date": int(time.time()),
            "from": self.user(user_id, language_code=language_code),
            "chat": self.chat_of(chat), "text": text}
        if text.startswith("/"):
            length = len(text.split()[0].encode("utf-16-le")) // 2
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        update: dict[str, Any] = {"message": message}
        if update_id is not None:
            update["update_id"] = update_id
        return update

    def photo_update(self, user_id: int, file_id: str, *,
                     language_code: str = "zh-hans") -> dict[str, Any]:
        """What Telegram sends when a user sends a photo (its sizes, the largest last)."""
        sizes = [{"file_id": f"{file_id}-{width}", "file_unique_id": f"u{width}", "width": width,
                  "height": width, "file_size": width * 100} for width in (90, 320, 1280)]
        return {"message": {
            "message_id": self._next_message_id(user_id), "date": int(time.time()),
            "from": self.user(user_id, language_code=language_code),
            "chat": self.chat_of(user_id), "photo": sizes}}

    def press_update(self, user_id: int, message: dict[str, Any], label: str, *,
                     language_code: str = "zh-hans") -> dict[str, Any]:
        """What Telegram sends when the user presses the button labelled ``label``."""
        data = button_data(message, label)
        return {"callback_query": {
            "id": str(next(self._query_ids)),
            "from": self.user(user_id, language_code=language_code),
            "message": message, "chat_instance": "-7260000000000000001", "data": data}}

    # -- what the bot sent ----------------------------------------------------------------

    def calls_to(self, method: str) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method.lower()]

    def sent_to(self, chat_id: int) -> list[ApiCall]:
        """Successful sendMessage/sendDocument/sendPhoto calls to a chat, in order."""
        return [c for c in self.calls if c.ok and c.chat_id == chat_id
                and c.method in ("sendmessage", "senddocument", "sendphoto")]

    def chat_messages(self, chat_id: int) -> list[dict[str, Any]]:
        """The messages now shown in a chat (edits applied), oldest first."""
        return [m for (chat, _), m in sorted(self.messages.items()) if chat == chat_id]

    def last_menu(self, chat_id: int) -> dict[str, Any]:
        """The newest message in the chat that has buttons."""
        for message in reversed(self.chat_messages(chat_id)):
            if message.get("reply_markup", {}).get("inline_keyboard"):
                return message
        raise AssertionError(f"no message with buttons in chat {chat_id}")

    # -- the endpoint ---------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        method = request.path_params["method"].lower()
        params, files = await _read_params(request)
        call = ApiCall(method, params, self.clock(), files)
        self.calls.append(call)
        self.called()
        if request.path_params["token"] != self.token:
            return self._error(call, 401, {"ok": False, "error_code": 401,
                                           "description": "Unauthorized"})
        if method not in _METHODS:
            return self._error(call, 404, {"ok": False, "error_code": 404,
                                           "description": "Not Found: method not found"})
        failure = self._scripted_failure(method, call.chat_id)
        if failure is not None:
            return self._error(call, failure.status, failure.body)
        if self.enforce_rate and method in ("sendmessage", "senddocument"):
            refusal = self._over_limit(call)
            if refusal is not None:
                return refusal
        if call.chat_id in self.blocked:
            return self._error(call, 403, {"ok": False, "error_code": 403,
                                           "description": "Forbidden: bot was blocked by the user"})
        if call.chat_id in self.migrated:
            return self._error(call, 400, {
                "ok": False, "error_code": 400,
                "description": "Bad Request: group chat was upgraded to a supergroup chat",
                "parameters": {"migrate_to_chat_id": self.migrated[call.chat_id]}})
        gate = self._gates.get(method)
        if gate is not None and gate.chat_id in (None, call.chat_id):
            if gate.once:
                del self._gates[method]
            gate.reached.set()
            await gate.released.wait()
        handler = getattr(self, f"_m_{method}")
        result = await handler(params, files)
        if isinstance(result, Response):
            call.status = result.status_code
            return result
        return JSONResponse({"ok": True, "result": result})

    def _over_limit(self, call: ApiCall) -> Response | None:
        now = self.clock()
        while self._sent_at and now - self._sent_at[0] >= 1.0:
            self._sent_at.popleft()
        last = self._chat_sent_at.get(call.chat_id or 0)
        if len(self._sent_at) >= 30 or (last is not None and now - last < 1.0 and (call.chat_id or 0) > 0):
            self.rate_refusals += 1
            return self._error(call, 429, {"ok": False, "error_code": 429,
                                           "description": "Too Many Requests: retry after 1",
                                           "parameters": {"retry_after": 1}})
        self._sent_at.append(now)
        self._chat_sent_at[call.chat_id or 0] = now
        return None

    def _error(self, call: ApiCall, status: int, body: dict[str, Any]) -> Response:
        call.status = status
        return JSONResponse(body, status_code=status)

    def _scripted_failure(self, method: str, chat_id: int | None) -> _Failure | None:
        for failure in self._failures:
            if failure.method == method and failure.chat_id in (None, chat_id):
                if failure.after > 0:
                    failure.after -= 1
                    continue
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.remove(failure)
                return failure
        return None

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def _store(self, chat_id: int, **content: Any) -> dict[str, Any]:
        message = {"message_id": self._next_message_id(chat_id), "date": int(time.time()),
                   "chat": self.chat_of(chat_id), "from": {k: BOT[k] for k in
                                                           ("id", "is_bot", "first_name",
                                                            "username")}}
        message.update({k: v for k, v in content.items() if v is not None})
        self.messages[(chat_id, message["message_id"])] = message
        return message

    # -- methods --------------------------------------------------------------------------

    async def _m_getme(self, _params: dict[str, Any], _files: Any) -> Any:
        return BOT

    async def _m_getupdates(self, params: dict[str, Any], _files: Any) -> Any:
        offset = int(params.get("offset") or 0)
        if offset:
            self.confirmed = max(self.confirmed, offset)
            self._acked.set()
        if self.conflict:
            return JSONResponse({"ok": False, "error_code": 409, "description":
                                 "Conflict: terminated by other getUpdates request; make sure "
                                 "that only one bot instance is running"}, status_code=409)
        if self.webhook["url"]:
            return JSONResponse({"ok": False, "error_code": 409, "description":
                                 "Conflict: can't use getUpdates method while webhook is "
                                 "active; use deleteWebhook to delete the webhook first"},
                                status_code=409)
        limit = int(params.get("limit") or 100)
        timeout = float(params.get("timeout") or 0)
        if not self.pending and timeout > 0:
            self._arrived.clear()
            waiters = [asyncio.ensure_future(self._arrived.wait()),
                       asyncio.ensure_future(self._closing.wait())]
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        return self.pending[:limit]

    async def _m_setwebhook(self, params: dict[str, Any], _files: Any) -> Any:
        self.webhook = dict(params)
        return True

    async def _m_deletewebhook(self, params: dict[str, Any], _files: Any) -> Any:
        self.webhook = {"url": ""}
        return True

    async def _m_getwebhookinfo(self, _params: dict[str, Any], _files: Any) -> Any:
        return {"url": self.webhook["url"], "has_custom_certificate": False,
                "pending_update_count": len(self.pending)}

    async def _m_sendmessage(self, params: dict[str, Any], _files: Any) -> Any:
        text = params.get("text", "")
        if not text.strip():
            return JSONResponse({"ok": False, "error_code": 400,
                                 "description": "Bad Request: message text is empty"},
                                status_code=400)
        if len(text.encode("utf-16-le")) // 2 > 4096:
            return JSONResponse({"ok": False, "error_code": 400,
                                 "description": "Bad Request: message is too long"},
                                status_code=400)
        return self._store(int(params["chat_id"]), text=text,
                           reply_markup=params.get("reply_markup"))

    async def _m_editmessagetext(self, params: dict[str, Any], _files: Any) -> Any:
        key = (int(params["chat_id"]), int(params["message_id"]))
        message = self.messages.get(key)
        if message is None:
            return JSONResponse({"ok": False, "error_code": 400,
                                 "description": "Bad Request: message to edit not found"},
                                status_code=400)
        markup = params.get("reply_markup")
        if message.get("text") == params["text"] and message.get("reply_markup") == markup:
            return JSONResponse({"ok": False, "error_code": 400, "description":
                                 "Bad Request: message is not modified: specified new message "
                                 "content and reply markup are exactly the same"},
                                status_code=400)
        message["text"] = params["text"]
        message["edit_date"] = int(time.time())
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        return message

    async def _m_editmessagereplymarkup(self, params: dict[str, Any], _files: Any) -> Any:
        message = self.messages.get((int(params["chat_id"]), int(params["message_id"])))
        if message is None:
            return JSONResponse({"ok": False, "error_code": 400,
                                 "description": "Bad Request: message to edit not found"},
                                status_code=400)
        markup = params.get("reply_markup")
        if markup and markup.get("inline_keyboard"):
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)
        return message

    async def _m_answercallbackquery(self, _params: dict[str, Any], _files: Any) -> Any:
        return True

    async def _m_senddocument(self, params: dict[str, Any], files: Any) -> Any:
        name, content, mime = files["document"]
        document = {"file_id": f"BQACAgIAAx{len(self.calls)}", "file_unique_id": "AgAD1",
                    "file_name": name, "mime_type": mime, "file_size": len(content)}
        return self._store(int(params["chat_id"]), document=document,
                           caption=params.get("caption"), reply_markup=params.get("reply_markup"))

    async def _m_sendphoto(self, params: dict[str, Any], files: Any) -> Any:
        _name, content, _mime = files["photo"]
        if content[:8] == b"\x89PNG\r\n\x1a\n":
            width, height = struct.unpack(">II", content[16:24])
        elif content[:3] == b"\xff\xd8\xff":
            width, height = 1280, 1280          # JPEG: dimensions not worth parsing here
        else:
            return JSONResponse({"ok": False, "error_code": 400,
                                 "description": "Bad Request: IMAGE_PROCESS_FAILED"},
                                status_code=400)
        if len(content) > 10 * 1024 * 1024 or width + height > 10000:
            return JSONResponse({"ok": False, "error_code": 400,
                                 "description": "Bad Request: PHOTO_INVALID_DIMENSIONS"},
                                status_code=400)
        photo = [{"file_id": f"AgACAgIAAx{len(self.calls)}", "file_unique_id": "AQAD1",
                  "width": width, "height": height, "file_size": len(content)}]
        return self._store(int(params["chat_id"]), photo=photo, caption=params.get("caption"),
                           reply_markup=params.get("reply_markup"))

    async def _m_setmycommands(self, params: dict[str, Any], _files: Any) -> Any:
        scope = params.get("scope") or {"type": "default"}
        key = (json.dumps(scope, sort_keys=True), params.get("language_code") or "")
        self.commands[key] = params["commands"]
        return True

    async def _m_deletemycommands(self, params: dict[str, Any], _files: Any) -> Any:
        scope = params.get("scope") or {"type": "default"}
        self.commands.pop((json.dumps(scope, sort_keys=True), params.get("language_code") or ""),
                          None)
        return True

    async def _m_close(self, _params: dict[str, Any], _files: Any) -> Any:
        return True

    async def _m_logout(self, _params: dict[str, Any], _files: Any) -> Any:
        return True

    def commands_for(self, scope: dict[str, Any], language_code: str = "") -> list[str]:
        """The command names registered for a scope and language."""
        entry = self.commands.get((json.dumps(scope, sort_keys=True), language_code), [])
        return [c["command"] for c in entry]


def button_data(message: dict[str, Any], label: str) -> str:
    """The callback data of the button labelled ``label`` (or whose label contains it)."""
    buttons = [b for row in message.get("reply_markup", {}).get("inline_keyboard", [])
               for b in row]
    for button in buttons:
        if button["text"] == label:
            return str(button["callback_data"])
    for button in buttons:
        if label in button["text"]:
            return str(button["callback_data"])
    raise AssertionError(f"no button {label!r} among {[b['text'] for b in buttons]}")


def button_labels(message: dict[str, Any]) -> list[str]:
    return [b["text"] for row in message.get("reply_markup", {}).get("inline_keyboard", [])
            for b in row]


async def _read_params(request: Request) -> tuple[dict[str, Any], Files]:
    """The call's parameters as python-telegram-bot sends them (form, multipart or JSON)."""
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    raw: dict[str, str] = {}
    files: Files = {}
    if content_type.startswith("application/json"):
        return (json.loads(body) if body else {}), files
    if content_type.startswith("multipart/form-data"):
        raw, files = read_multipart(content_type, body)
    else:
        raw = dict(parse_qsl(body.decode(), keep_blank_values=True))
        raw.update(request.query_params)
    params: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _TEXT_PARAMS:
            params[key] = value
        else:
            try:
                params[key] = json.loads(value)
            except ValueError:
                params[key] = value
    return params, files
