"""Fuzz corpus for the WeChat webhook: thousands of generated requests, over real HTTP, against
the real web app, conversation engine and database, in plain mode and in safe mode.

The inputs come from a seeded generator (the same seed gives the same corpus): messages with
odd text (unicode, emoji, control and zero-width characters, huge digit strings, ID-number-like
and mobile-like strings, commands, menu numbers), every menu key, odd or unknown MsgTypes and
events, missing or malformed fields, malformed XML, entity bombs and external entities, bodies
over and just under the size limit, bad, stale and missing signatures, safe-mode requests with
a bad ``msg_signature`` or a garbled ``Encrypt``, plain requests to the safe-mode endpoint, and
signed queries replayed with another body. Citizens, a staff member and a manager write.

Three things are counted and must all be 0: answers with a 5xx status, log records carrying a
traceback, and answers that are the generic apology (catalog key ``error.apology``, "抱歉，系统
出了点问题…"), in the passive reply or in a customer-service message that followed it.

    .venv/bin/python -m bench.fuzz_wechat [--inputs 10000] [--seed 20261203]
        [--database-url postgresql+asyncpg://...]      (default: a temporary SQLite file)

Exits 1 when any of the three counts is not 0. The WeChat API the answers go to (customer-service
messages, media uploads) is a stub on the same server: no call leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import datetime as dt
import itertools
import logging
import random
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import xmltodict  # noqa: E402
from wechatpy.crypto import PrpCrypto, WeChatCrypto  # noqa: E402
from wechatpy.utils import WeChatSigner  # noqa: E402

TOKEN = "123456"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
APP_ID = "wx49f0ab532d5d035a"
ACCOUNT = "gh_3f7badc0771f"
MANAGER, STAFF = "oManager_fuzz_000000000000001", "oStaff_fuzz_00000000000000001"
CITIZENS = [f"oFuzz_{n:024d}" for n in range(40)]
PATHS = {"plain": "/wechat-plain", "safe": "/wechat"}
START = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
MENU_KEYS = ("book", "my", "guide", "human", "bookings", "", "unknown", "g:talk:1",
             "x" * 200, "预约", "<xml>", "m1.1")
COMMANDS = ("/start", "/help", "/lang", "/lang en", "/lang zh", "/cancel", "/book", "/my",
            "/guide", "/human", "/stats", "/stats week", "/stats month", "/stats 2026-11",
            "/stats chart", "/stats chart month", "/export month", "/today", "/today 身份证",
            "/find ABC234", "/checkin ABC234", "/done ABC234", "/noshow ABC234", "/undo ABC234",
            "/open", "/claim 1", "/reply 1 你好", "/close 1 已处理", "/blocks", "/unblock 1 x",
            "/closure 身份证 明天 设备检修", "/approve 1 11-25 14:00", "/decline 1 no",
            "/nosuchcommand", "/", "／stats", "/stats " + "9" * 300, "/reply 99999999999999 x")
WORDS = ("你好", "预约", "身份证", "社保", "人工", "菜单", "取消", "改期", "我的预约", "办事指南",
         "返回", "1", "2", "3", "0", "-1", "99", "1.5", "一", "是", "否", "确认", "同意并继续",
         "hello", "book", "menu", "back", "English", "中文", "张三", "13812345678",
         "+86 138 1234 5678", "110105194912310021", "11010519491231002X", "11010519491231002x",
         "ABC234", "abc234", "2026-11-24", "明天上午", "11月24日 09:00")
ODD_TYPES = ("image", "voice", "video", "shortvideo", "location", "link", "file", "music",
             "news", "miniprogrampage", "transfer_customer_service", "TEXT", "Text", "", "unknown",
             "text\x00", "文本", "x" * 300)
EVENTS = ("subscribe", "unsubscribe", "CLICK", "click", "VIEW", "LOCATION", "SCAN",
          "TEMPLATESENDJOBFINISH", "subscribe_msg_popup_event", "kf_create_session", "", "nope",
          "view_miniprogram", "scancode_push", "pic_sysphoto", "location_select", "MASSSENDJOBFINISH")


@dataclasses.dataclass(frozen=True)
class Case:
    """One generated request: which endpoint, how it is signed, and its XML (or raw body)."""

    mode: str                       # "plain" or "safe"
    kind: str                       # what the generator meant to test
    xml: str = ""                   # the message, encrypted in safe mode
    raw: bytes | None = None        # a body sent as it is
    signing: str = "good"           # good, bad, stale, missing, future, odd, bad_msg, no_aes...
    replay: bool = False            # send again with the same query and another body


@dataclasses.dataclass
class FuzzResult:
    inputs: int = 0
    server_errors: int = 0
    tracebacks: int = 0
    apologies: int = 0
    busy: int = 0
    statuses: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    kinds: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    seconds: float = 0.0
    examples: list[str] = dataclasses.field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.server_errors or self.tracebacks or self.apologies)


# --- the corpus ------------------------------------------------------------------------------------


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _message(fields: dict[str, str | int]) -> str:
    parts = [f"<{k}>{v}</{k}>" if isinstance(v, int) else f"<{k}>{_cdata(v)}</{k}>"
             for k, v in fields.items()]
    return "<xml>" + "".join(parts) + "</xml>"


def _odd_text(rng: random.Random) -> str:
    choice = rng.randrange(16)
    if choice == 0:
        points = (rng.randrange(0x20, 0x2FFFF) for _ in range(rng.randrange(1, 60)))
        return "".join(chr(p + 0x800 if 0xD800 <= p <= 0xDFFF else p) for p in points)
    if choice == 1:
        return "9" * rng.choice((19, 20, 40, 309, 4000, 20000))
    if choice == 2:
        return rng.choice(("\u200b", "\u202e", "\ufeff", "\u3000", " ")) * rng.randrange(1, 50) \
            + rng.choice(WORDS)
    if choice == 3:
        return "".join(rng.choice("0123456789X") for _ in range(rng.choice((15, 17, 18, 19))))
    if choice == 4:
        return "😀🙏🏽👨‍👩‍👧" * rng.randrange(1, 30)
    if choice == 5:
        return rng.choice(WORDS) * rng.randrange(50, 400)
    if choice == 6:
        return rng.choice(("<a href='x'>1</a>", "&lt;b&gt;", "]]>", "%s%n%x", "{name}", "{{0}}",
                           "'; DROP TABLE appointment; --", "\\u0000", "${jndi:ldap://x}"))
    if choice == 7:
        return rng.choice(COMMANDS)
    if choice == 8:
        return str(rng.randrange(-5, 30))
    if choice == 9:
        return "".join(rng.choice("一二三四五六七八九十百千万亿零") for _ in range(rng.randrange(1, 20)))
    if choice == 10:
        return f"{rng.choice(WORDS)} {rng.choice(WORDS)}"
    if choice == 11:
        return ""
    if choice == 12:
        return "\t\n \r\n" * rng.randrange(1, 5)
    return rng.choice(WORDS)


def generate(seed: int, count: int) -> Iterator[Case]:
    """``count`` cases, the same for the same ``seed``."""
    rng = random.Random(seed)
    msg_ids = itertools.count(8_100_000_000_000_000)
    for number in range(count):
        mode = "safe" if number % 2 else "plain"
        openid = rng.choice([*CITIZENS, MANAGER, STAFF])
        created = "{now}"           # filled in when sent, from the server's clock
        base: dict[str, str | int] = {"ToUserName": ACCOUNT, "FromUserName": openid,
                                      "CreateTime": created}
        roll = rng.random()
        if roll < 0.40:
            fields = base | {"MsgType": "text", "Content": _odd_text(rng), "MsgId": next(msg_ids)}
            if rng.random() < 0.15:
                fields["bizmsgmenuid"] = rng.choice(("1001", "99999999", "²²²²", "g:talk:1",
                                                     "g:cancel:ABC234", "0" * 40, "m1.1", ""))
            yield Case(mode, "text", _message(fields))
        elif roll < 0.52:
            key = rng.choice(MENU_KEYS)
            event = rng.choice(EVENTS) if rng.random() < 0.4 else "CLICK"
            yield Case(mode, "event", _message(base | {"MsgType": "event", "Event": event,
                                                       "EventKey": key}))
        elif roll < 0.58:
            fields = base | {"MsgType": rng.choice(ODD_TYPES), "MsgId": next(msg_ids),
                             "MediaId": "m" * rng.randrange(1, 100)}
            if rng.random() < 0.5:
                fields["Recognition"] = _odd_text(rng)
            yield Case(mode, "odd type", _message(fields))
        elif roll < 0.66:
            fields = base | {"MsgType": "text", "Content": rng.choice(WORDS), "MsgId": next(msg_ids)}
            for name in rng.sample(list(fields), rng.randrange(1, 3)):
                if rng.random() < 0.5:
                    del fields[name]
                else:
                    fields[name] = rng.choice(("", "²", "9" * 40, "-1", "<x/>", "abc"))
            yield Case(mode, "missing or odd field", _message(fields))
        elif roll < 0.76:
            yield Case(mode, "malformed body", raw=_malformed(rng))
        elif roll < 0.88:
            signing = rng.choice(("bad", "stale", "future", "missing", "odd", "no_nonce")
                                 + (("bad_msg", "no_aes", "garbled", "wrong_app") if mode == "safe"
                                    else ("aes_on_plain",)))
            fields = base | {"MsgType": "text", "Content": "/stats week", "MsgId": next(msg_ids)}
            yield Case(mode, f"signature {signing}", _message(fields), signing=signing)
        elif roll < 0.93:
            fields = base | {"MsgType": "text", "Content": rng.choice(WORDS), "MsgId": next(msg_ids)}
            yield Case(mode, "replay", _message(fields), replay=True)
        else:
            # Conversations that go somewhere: book by numbers, staff and manager commands.
            content = rng.choice(("预约办事", "1", "1", "1", "1", "1", "同意并继续", "张三",
                                  "13812345678", "110105194912310021", "确认预约", *COMMANDS))
            fields = base | {"MsgType": "text", "Content": content, "MsgId": next(msg_ids)}
            yield Case(mode, "conversation", _message(fields))


def _malformed(rng: random.Random) -> bytes:
    choice = rng.randrange(14)
    message = _message({"ToUserName": ACCOUNT, "FromUserName": "oX", "CreateTime": 1,
                        "MsgType": "text", "Content": "hi", "MsgId": 1}).encode()
    if choice == 0:
        return message[:rng.randrange(1, len(message))]
    if choice == 1:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
    if choice == 2:
        laughs = "".join(f'<!ENTITY l{i} "{"&l" + str(i - 1) + ";" * 10 if i else "lol"}">'
                         for i in range(10))
        return f'<?xml version="1.0"?><!DOCTYPE x [{laughs}]><xml><Content>&l9;</Content></xml>'.encode()
    if choice == 3:
        return (b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                b"<xml><Content>&e;</Content></xml>")
    if choice == 4:
        return b"<xml><a>" + b"x" * rng.choice((65 * 1024, 200 * 1024)) + b"</a></xml>"
    if choice == 5:
        return b"<xml><Content><![CDATA[" + "是".encode() * 21000 + b"]]></Content></xml>"
    if choice == 6:
        return b'{"ToUserName": "gh", "MsgType": "text"}'
    if choice == 7:
        return b"<xml>" + b"<a>" * 5000 + b"</a>" * 5000 + b"</xml>"
    if choice == 8:
        return b"<notxml><MsgType>text</MsgType></notxml>"
    if choice == 9:
        return b"<xml><MsgType>text</MsgType><MsgType>image</MsgType></xml>"
    if choice == 10:
        return b"<xml><Content>\xff\xfe\x00bad utf-8</Content></xml>"
    if choice == 11:
        return b"<xml><Encrypt>" + b"A" * rng.randrange(1, 3000) + b"</Encrypt></xml>"
    if choice == 12:
        return b"<?xml version='1.0' encoding='gbk'?><xml><Content>\xc4\xe3\xba\xc3</Content></xml>"
    return b"<xml><Content>&amp;&lt;&#0;&#x110000;</Content></xml>"


# --- the run ------------------------------------------------------------------------------------


def _sign(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return str(signer.signature)


class _Counter(logging.Handler):
    """Counts log records that carry a traceback, and keeps the first few."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.tracebacks = 0
        self.examples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or "Traceback" in record.getMessage():
            self.tracebacks += 1
            if len(self.examples) < 5:
                self.examples.append(f"{record.name}: {record.getMessage()[:200]}")


def _stub_api() -> tuple[Any, list[str]]:
    """WeChat's API as far as the answers need it: a token, and every send accepted."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    texts: list[str] = []

    async def endpoint(request: Request) -> JSONResponse:
        path = request.path_params["path"]
        if path == "stable_token":
            return JSONResponse({"access_token": "FUZZ-TOKEN", "expires_in": 7200})
        if path == "message/custom/send":
            try:
                body = await request.json()
                texts.append(str(body.get("text", {}).get("content", "")))
            except ValueError:
                pass
        if path == "media/upload":
            return JSONResponse({"errcode": 0, "type": "image", "media_id": "M", "created_at": 1})
        return JSONResponse({"errcode": 0, "errmsg": "ok"})

    return Route("/cgi-bin/{path:path}", endpoint, methods=["POST"]), texts


async def run_fuzz(database_url: str | None = None, *, inputs: int = 10000,
                   seed: int = 20261203, workers: int = 4) -> FuzzResult:
    """Send ``inputs`` generated requests to the webhook in both modes; the counts."""
    import uvicorn

    from bot.web import build_web_app
    from bot.wechat import build_wechat
    from bot.wiring import App, build_app
    from handlers.engine import Assistant
    from handlers.i18n import translate
    from storage import migrate
    from storage.catalog import load_catalog, read_catalog
    from storage.clock import ManualClock
    from storage.settings import AccessSettings, Settings, WechatSettings

    folder = tempfile.mkdtemp(prefix="yuyue-fuzz-")
    database_url = database_url or f"sqlite+aiosqlite:///{folder}/fuzz.db"
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    sock.setblocking(False)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    base = Settings()
    base = dataclasses.replace(
        base, database=dataclasses.replace(base.database, url=database_url, pool_size=10),
        general=dataclasses.replace(base.general, data_dir=folder),
        access=AccessSettings(managers=(f"wechat:{MANAGER}",), staff=(f"wechat:{STAFF}",)))
    clock = ManualClock(START)
    app = await build_app(base, clock)
    if not app.database.is_sqlite:
        from sqlalchemy import text

        async with app.database.engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    await migrate.upgrade(app.database)
    async with app.database.session() as session:
        await load_catalog(session, read_catalog(ROOT / "catalog" / "demo.toml"), clock.now())
    assistant = Assistant(database=app.database, centre=app.centre, clock=clock, settings=base)
    channels = {}
    for mode, path in PATHS.items():
        wechat = WechatSettings(app_id=APP_ID, app_secret="fuzz", token=TOKEN, path=path,
                                encoding_aes_key=AES_KEY if mode == "safe" else "",
                                api_base_url=url, reply_deadline_ms=4800)
        mode_app = App(settings=dataclasses.replace(base, wechat=wechat), database=app.database,
                       centre=app.centre, clock=clock)
        channels[mode] = build_wechat(mode_app, assistant)
    stub, texts = _stub_api()
    web = build_web_app([*channels["plain"].webhook_routes(), *channels["safe"].webhook_routes(),
                         stub])
    # A long keep-alive: on a busy machine a connection can sit idle past uvicorn's 5 s, and a
    # request sent as the server closes it fails with a read error that is no fault of ours.
    server = uvicorn.Server(uvicorn.Config(web, log_level="warning", lifespan="off", ws="none",
                                           access_log=False, timeout_keep_alive=600))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    counter = _Counter()
    logging.getLogger().addHandler(counter)
    apologies = {translate(locale, "error.apology") for locale in ("zh-CN", "en")}
    busy = {translate(locale, "error.busy") for locale in ("zh-CN", "en")}
    crypto = WeChatCrypto(TOKEN, AES_KEY, APP_ID)
    nonces = itertools.count(1_000_000)
    result = FuzzResult()
    cases = list(generate(seed, inputs))
    queue: asyncio.Queue[Case] = asyncio.Queue()
    for case in cases:
        queue.put_nowait(case)

    def request(case: Case) -> tuple[dict[str, str], bytes]:
        now = int(clock.now().timestamp())
        stamp = {"stale": now - 301, "future": now + 400}.get(case.signing, now)
        nonce = str(next(nonces))
        query = {"signature": _sign(TOKEN, str(stamp), nonce), "timestamp": str(stamp),
                 "nonce": nonce, "openid": "o"}
        if case.signing == "bad":
            query["signature"] = "0" * 40
        elif case.signing == "missing":
            query.pop("signature")
        elif case.signing == "odd":
            query["timestamp"] = "²" * 5
        elif case.signing == "no_nonce":
            query.pop("nonce")
        body = case.raw if case.raw is not None else \
            case.xml.replace("<CreateTime>{now}</CreateTime>", f"<CreateTime>{now}</CreateTime>") \
            .replace("<CreateTime><![CDATA[{now}]]></CreateTime>", f"<CreateTime>{now}</CreateTime>") \
            .encode("utf-8")
        if case.mode == "safe" and case.signing != "no_aes":
            plain = body.decode("utf-8", "replace")
            app_id = "wx0000000000000000" if case.signing == "wrong_app" else APP_ID
            encrypt = PrpCrypto(crypto.key).encrypt(plain, app_id).decode()
            if case.signing == "garbled":
                encrypt = encrypt[:-8] + "AAAAAAA="
            query["encrypt_type"] = "aes"
            query["msg_signature"] = "0" * 40 if case.signing == "bad_msg" else \
                _sign(TOKEN, query.get("timestamp", ""), query.get("nonce", ""), encrypt)
            body = (f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
                    f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>").encode()
        elif case.signing == "aes_on_plain":
            query["encrypt_type"] = "aes"
        return query, body

    def read(mode: str, response: httpx.Response) -> str:
        if response.status_code != 200 or not response.text.startswith("<xml>"):
            return ""
        xml = response.text
        if mode == "safe":
            outer = xmltodict.parse(xml)["xml"]
            xml = crypto.decrypt_message(xml, outer["MsgSignature"], outer["TimeStamp"],
                                         outer["Nonce"])
        return str(xmltodict.parse(xml)["xml"].get("Content") or "")

    async def work(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            case = queue.get_nowait()
            clock.advance(seconds=1)
            query, body = request(case)
            sent_before = len(texts)
            response = await http.post(PATHS[case.mode], params=query, content=body,
                                       headers={"Content-Type": "text/xml"})
            answers = [read(case.mode, response)]
            if case.replay and response.status_code == 200:
                again = await http.post(PATHS[case.mode], params=query,
                                        content=body.replace(b"</xml>", b"<X>1</X></xml>"))
                result.statuses[again.status_code] += 1
                if again.status_code >= 500:
                    result.server_errors += 1
            answers += texts[sent_before:]
            result.inputs += 1
            result.kinds[case.kind] += 1
            result.statuses[response.status_code] += 1
            if response.status_code >= 500:
                result.server_errors += 1
                if len(result.examples) < 5:
                    result.examples.append(f"{case.kind}: HTTP {response.status_code}")
            if any(a in answer for answer in answers for a in apologies):
                result.apologies += 1
                if len(result.examples) < 5:
                    result.examples.append(f"{case.kind}: apology for {(case.xml or repr(case.raw))[:300]}")
            if any(b in answer for answer in answers for b in busy):
                result.busy += 1

    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            await asyncio.gather(*(work(http) for _ in range(workers)))
        for channel in channels.values():
            await channel.webhook.drain()
    finally:
        result.seconds = time.perf_counter() - started
        logging.getLogger().removeHandler(counter)
        server.should_exit = True
        await serving
        for channel in channels.values():
            await channel.close()
        await app.close()
    result.tracebacks = counter.tracebacks
    result.examples += counter.examples
    return result


def report(result: FuzzResult, seed: int) -> str:
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(result.statuses.items()))
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(result.kinds.items()))
    lines = [f"WeChat webhook fuzz, seed {seed}: {result.inputs} inputs in {result.seconds:.0f} s "
             f"({result.inputs / max(result.seconds, 1e-9):.0f}/s)",
             f"  statuses: {statuses}",
             f"  inputs: {kinds}",
             f"  server errors (5xx): {result.server_errors}",
             f"  tracebacks in the log: {result.tracebacks}",
             f"  apology replies: {result.apologies}   (busy replies: {result.busy})"]
    lines += [f"  example: {example}" for example in result.examples]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--database-url", default=None,
                        help="a scratch database: it is emptied (default: a temporary SQLite file)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = asyncio.run(run_fuzz(args.database_url, inputs=args.inputs, seed=args.seed,
                                  workers=args.workers))
    print(report(result, args.seed), flush=True)
    return 0 if result.clean else 1


if __name__ == "__main__":
    sys.exit(main())
