"""Fuzzing the Telegram webhook: generated updates posted over HTTP to the real route.

The product's web app (the real webhook route, update checks, conversation engine, a fresh
database with the demo catalog) is served on 127.0.0.1; the bot talks to the fake Bot API of the
tests (nothing leaves the machine). From a fixed seed, ``--count`` bodies are made and posted
one after another: malformed JSON, deep nesting, wrong types, huge numbers, huge digit strings
in texts, unicode of every kind, button presses with forged data, edited messages, unknown
update kinds, group and service messages, and plain valid messages and commands in between so
conversations move on. The run counts what must never happen:

- ``5xx``: an answer of 500 or more (Telegram would deliver the update again, forever);
- ``tracebacks``: a log record of a failure while handling (an exception's traceback, a
  "handling failed" or "error handling" line);
- ``apologies``: the generic apology ("Sorry, something went wrong...") sent to a chat.

    .venv/bin/python bench/fuzz_telegram.py [--count 10000] [--seed 20261203]
        [--database-url postgresql+asyncpg://...]      (default: a temporary SQLite file)

Prints a markdown table and exits 1 unless all three are 0.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import datetime as dt
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

SECRET = "fuzz-secret-token"
STAFF_GROUP = -1001987654321
STAFF_USER = 6200000001
BOT_NAME = "yuyue_test_bot"
USERS = [5100000000 + n for n in range(1, 41)]
GROUPS = [STAFF_GROUP, -1002000000001, -4000000001]
COMMANDS = ["/start", "/book", "/my", "/guide", "/human", "/lang", "/help", "/cancel", "/today",
            "/find", "/checkin", "/done", "/noshow", "/undo", "/closure", "/blocks", "/claim",
            "/stats", "/export", "/unblock"]
WORDS = ["你好", "菜单", "预约", "身份证", "1", "2", "0", "人工", "取消", "help", "book", "menu",
         "张三", "13812345678", "明天", "牙科", "是", "否", "返回", "hi"]
TOKENS = ["m1.0", "m3.1", "g.my", "g.book", "m999999999.9", "x", "", "g.", "m-1.-1", "b:1:2",
          "🙂", "m1.0" * 16, "../../etc", "' OR 1=1 --", "null", "m1.99999999999999999999"]
STRANGE = ["\u202e\u202dabc", "\u200b\u200c\u200d", "𝕳𝖊𝖑𝖑𝖔", "👨‍👩‍👧‍👦" * 50, "\x00\x01\x7f",
           "ﷺ" * 100, "Z̴̡̧̛̛͓̫͎a̷l̷g̷o̷", "\ufeff/start", "／ｓｔａｒｔ", "\ud800", "𠀀" * 500,
           "\u0301" * 300, "\n" * 200, " " * 1000, "%s%n%x{0}{{}}", "<b>x</b>", "$(reboot)"]


@dataclasses.dataclass
class Report:
    count: int = 0
    statuses: collections.Counter[int] = dataclasses.field(default_factory=collections.Counter)
    kinds: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    server_errors: int = 0
    tracebacks: int = 0
    apologies: int = 0
    replies: int = 0
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return self.server_errors == 0 and self.tracebacks == 0 and self.apologies == 0

    def table(self) -> str:
        rows = ["| updates | 2xx | 4xx | 5xx | tracebacks | apologies | replies sent | seconds |",
                "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
                f"| {self.count:,} | {sum(n for s, n in self.statuses.items() if s < 300):,} "
                f"| {sum(n for s, n in self.statuses.items() if 400 <= s < 500):,} "
                f"| {self.server_errors} | {self.tracebacks} | {self.apologies} "
                f"| {self.replies:,} | {self.seconds:.0f} |", "",
                "| kind | bodies |", "| --- | ---: |"]
        rows += [f"| {kind} | {n:,} |" for kind, n in sorted(self.kinds.items())]
        return "\n".join(rows)


class _Failures(logging.Handler):
    """Counts log records that say handling failed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.samples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info or "Traceback" in text or "handling failed" in text \
                or "error handling" in text or "Exception in ASGI" in text:
            self.count += 1
            if len(self.samples) < 5:
                self.samples.append(text[:300])


# --- what is posted ------------------------------------------------------------------------------


class Maker:
    """Makes bodies from one seeded random generator."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.update_id = 100_000_000
        self.message_ids: dict[int, int] = collections.defaultdict(int)

    def _user(self, user_id: int | None = None) -> dict[str, Any]:
        rng = self.rng
        return {"id": user_id or rng.choice(USERS), "is_bot": False,
                "first_name": rng.choice(["小明", "Li", "Ана", "𝕏", ""]),
                "language_code": rng.choice(["zh-hans", "en", "ru", "", "xx-YY"])}

    def _chat(self, chat_id: int) -> dict[str, Any]:
        if chat_id > 0:
            return {"id": chat_id, "type": "private", "first_name": "小明"}
        return {"id": chat_id, "type": "supergroup" if str(chat_id).startswith("-100")
                else "group", "title": "群"}

    def _message(self, chat_id: int, user: dict[str, Any], text: str | None) -> dict[str, Any]:
        self.message_ids[chat_id] += 1
        message: dict[str, Any] = {"message_id": self.message_ids[chat_id],
                                   "date": 1795395600 + self.update_id % 100000,
                                   "from": user, "chat": self._chat(chat_id)}
        if text is not None:
            message["text"] = text
            if text.startswith("/"):
                length = len(text.split()[0].encode("utf-16-le")) // 2 if text.split() else 1
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        return message

    def _update(self, **kinds: Any) -> dict[str, Any]:
        self.update_id += 1
        return {"update_id": self.update_id, **kinds}

    def _text(self) -> str:
        rng = self.rng
        pick = rng.random()
        if pick < 0.35:
            return rng.choice(COMMANDS) + rng.choice(["", " ", " 1", " K7P2QX", " week",
                                                      f"@{BOT_NAME}", " " + "9" * 50])
        if pick < 0.7:
            return rng.choice(WORDS)
        if pick < 0.85:
            return rng.choice(STRANGE)
        return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(1, 60)))

    def valid(self) -> tuple[str, dict[str, Any]]:
        user = self._user()
        return "valid message", self._update(message=self._message(user["id"], user, self._text()))

    def digits(self) -> tuple[str, dict[str, Any]]:
        user = self._user()
        size = self.rng.choice([20, 500, 4300, 4400, 8000])
        text = self.rng.choice(["", "/find ", "/checkin ", "/cancel "]) + "7" * size
        return "huge digit string in text", self._update(
            message=self._message(user["id"], user, text))

    def press(self) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        user = self._user()
        chat = user["id"] if rng.random() < 0.8 else rng.choice(GROUPS)
        menu = self._message(chat, {"id": 7000000001, "is_bot": True, "first_name": "Yuyue"},
                             "请选择")
        data = rng.choice(TOKENS) if rng.random() < 0.7 else "".join(
            chr(rng.randrange(0x20, 0x7f)) for _ in range(rng.randrange(1, 64)))
        menu["reply_markup"] = {"inline_keyboard": [[{"text": "按钮", "callback_data": data}]]}
        query: dict[str, Any] = {"id": str(rng.randrange(10 ** 18)), "from": user,
                                 "chat_instance": "-1", "data": data}
        if rng.random() < 0.9:
            query["message"] = menu
        return "button press, forged data", self._update(callback_query=query)

    def group(self) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        chat = rng.choice(GROUPS)
        user = self._user(STAFF_USER if rng.random() < 0.5 else None)
        message = self._message(chat, user, None)
        service = rng.choice([
            {"text": rng.choice(COMMANDS) + f"@{BOT_NAME}" + rng.choice(["", " 1", " K7P2QX"])},
            {"text": rng.choice(WORDS)},
            {"new_chat_members": [self._user()]}, {"left_chat_member": self._user()},
            {"new_chat_title": "新名字"}, {"group_chat_created": True},
            {"migrate_from_chat_id": STAFF_GROUP}, {"pinned_message": {"message_id": 1}},
            {"text": "回复", "reply_to_message": self._message(
                chat, {"id": 7000000001, "is_bot": True, "first_name": "Yuyue"},
                "[人工服务 #1] 市民：你好")}])
        message.update(service)
        if "text" in service and service["text"].startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0,
                                    "length": len(service["text"].split()[0])}]
        return "group or service message", self._update(message=message)

    def other_kind(self) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        user = self._user()
        message = self._message(user["id"], user, self._text())
        kind = rng.choice(["edited_message", "channel_post", "edited_channel_post",
                           "inline_query", "poll", "chat_join_request", "message_reaction",
                           "future_kind_" + str(rng.randrange(100))])
        return "edited message or unknown kind", self._update(**{kind: message})

    def member(self) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        user = self._user()
        chat = user["id"] if rng.random() < 0.7 else rng.choice(GROUPS)
        bot = {"id": 7000000001, "is_bot": True, "first_name": "Yuyue"}
        status = rng.choice(["member", "kicked", "left", "administrator", "restricted", "boss"])
        return "my_chat_member", self._update(my_chat_member={
            "chat": self._chat(chat), "from": user, "date": 1795395600,
            "old_chat_member": {"user": bot, "status": "member"},
            "new_chat_member": {"user": bot, "status": status, "until_date": 0}})

    def wrong_type(self) -> tuple[str, dict[str, Any]]:
        _, update = self.rng.choice([self.valid, self.press, self.group, self.member])()
        self._spoil(update)
        return "wrong types", update

    def _spoil(self, value: Any) -> None:
        rng = self.rng
        path: list[tuple[Any, Any]] = []
        node = value
        while isinstance(node, dict) and node:
            key = rng.choice(list(node))
            path.append((node, key))
            node = node[key]
            if rng.random() < 0.3:
                break
        parent, key = path[-1]
        parent[key] = rng.choice(["abc", "", None, True, 1.5, -1, 0, [], {}, [1, "a"],
                                  {"id": "x"}, "9" * 30, 2 ** 63, -(2 ** 63), 1e308])

    def huge_number(self) -> tuple[str, dict[str, Any]]:
        _, update = self.rng.choice([self.valid, self.press])()
        body = json.dumps(update)
        number = self.rng.choice(["1" + "0" * 400, "-" + "9" * 5000, "1e400", "-1e-400",
                                  "12345678901234567890", "3.0", "NaN", "Infinity"])
        target = self.rng.choice(['"update_id": ', '"message_id": ', '"id": ', '"date": '])
        if target in body:
            head, _, tail = body.partition(target)
            number_end = 0
            while number_end < len(tail) and tail[number_end] in "-0123456789.e":
                number_end += 1
            if number_end:
                body = head + target + number + tail[number_end:]
        return "huge numbers", body

    def malformed(self) -> tuple[str, bytes | str]:
        rng = self.rng
        _, update = self.valid()
        body = json.dumps(update, ensure_ascii=False)
        choice = rng.randrange(7)
        if choice == 0:
            return "malformed JSON", body[:rng.randrange(len(body))]
        if choice == 1:
            return "malformed JSON", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        if choice == 2:
            return "malformed JSON", rng.choice(["", "null", "[]", "1", '"x"', "true", "{}",
                                                 "[{}]", '{"update_id": 1}{"update_id": 2}'])
        if choice == 3:
            return "malformed JSON", body.encode("utf-16", "surrogatepass")
        if choice == 4:
            return "malformed JSON", body.replace('"', "'")
        if choice == 5:
            return "malformed JSON", body + "," * rng.randrange(1, 5)
        return "malformed JSON", b"\xff\xfe" + body.encode("utf-8", "surrogatepass")

    def nested(self) -> tuple[str, str]:
        rng = self.rng
        depth = rng.choice([10, 100, 990, 1100, 20_000, 100_000])
        opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
        inner = opener * depth + "1" + closer * (depth if rng.random() < 0.7 else 0)
        _, update = self.valid()
        if rng.random() < 0.5:
            return "nested", inner
        where = rng.choice(["message", "extra", "callback_query"])
        return "nested", json.dumps(update)[:-1] + f', "{where}_x": ' + inner + "}" \
            if where == "extra" else json.dumps({"update_id": update["update_id"], where: "@"}
                                                ).replace('"@"', inner)

    def make(self) -> tuple[str, Any]:
        makers = [(self.valid, 22), (self.press, 14), (self.group, 10), (self.other_kind, 6),
                  (self.member, 5), (self.wrong_type, 15), (self.huge_number, 7),
                  (self.digits, 7), (self.malformed, 8), (self.nested, 6)]
        maker = self.rng.choices([m for m, _ in makers], [w for _, w in makers])[0]
        return maker()


def encode(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")
    return json.dumps(body, ensure_ascii=True).encode()


# --- the run ------------------------------------------------------------------------------------


async def run_fuzz(count: int, seed: int, database_url: str | None = None) -> Report:
    """Post ``count`` generated bodies to the real webhook over HTTP; what happened."""
    from bot.reports import FileReports
    from bot.telegram import build_telegram
    from bot.telegram.limiter import RateLimiter
    from bot.telegram.webhook import SECRET_HEADER
    from bot.web import build_web_app
    from bot.wiring import App
    from handlers.engine import Assistant
    from handlers.i18n import translate
    from storage import migrate
    from storage.catalog import load_catalog, read_catalog
    from storage.clock import ManualClock
    from storage.db import Database
    from storage.settings import AccessSettings, Settings, TelegramSettings
    from tests.fakes import FakeTime, LocalServer
    from tests.fakes.telegram_api import FakeTelegram
    from tests.helpers import make_centre

    report = Report(count=count)
    failures = _Failures()
    logging.getLogger().addHandler(failures)
    apologies = {translate(locale, "error.apology") for locale in ("zh-CN", "en")}
    workdir = tempfile.TemporaryDirectory(prefix="yuyue-fuzz-")
    url = database_url or f"sqlite+aiosqlite:///{workdir.name}/fuzz.db"
    fake_time = FakeTime()
    clock = ManualClock(dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=8))))
    database = Database(url, pool_size=5)
    try:
        await migrate.upgrade(database)
        async with database.session() as session:
            await load_catalog(session, read_catalog(ROOT / "catalog" / "demo.toml"), clock.now())
        async with FakeTelegram(clock=fake_time.now) as api:
            settings = dataclasses.replace(
                Settings(),
                telegram=TelegramSettings(
                    token=api.token, base_url=api.base_url, base_file_url=api.base_file_url,
                    staff_chat_id=STAFF_GROUP, mode="webhook",
                    webhook_url="https://yuyue.example.org/tg/hook", secret_token=SECRET),
                access=AccessSettings(staff=(f"telegram:{STAFF_USER}",)))
            centre = make_centre()
            app = App(settings=settings, database=database, centre=centre, clock=clock)
            assistant = Assistant(database=database, centre=centre, clock=clock,
                                  settings=settings, reports=FileReports())
            channel = build_telegram(app, assistant, limiter=RateLimiter(
                now=fake_time.now, sleep=fake_time.sleep))
            await channel.start()
            maker = Maker(seed)
            started = time.perf_counter()
            try:
                async with LocalServer(build_web_app(channel.webhook_routes())) as server, \
                        httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                    for _ in range(count):
                        kind, body = maker.make()
                        report.kinds[kind] += 1
                        answer = await client.post("/tg/hook", content=encode(body), headers={
                            SECRET_HEADER: SECRET, "content-type": "application/json"})
                        report.statuses[answer.status_code] += 1
                        if answer.status_code >= 500 or "Traceback" in answer.text:
                            report.server_errors += 1
                        clock.advance(seconds=3)          # time moves on between messages
                        fake_time.advance(3)
            finally:
                report.seconds = time.perf_counter() - started
                await channel.close()
            sent = [c for c in api.calls if c.ok and c.method in ("sendmessage", "editmessagetext")]
            report.replies = len(sent)
            report.apologies = sum(1 for c in sent if c.params.get("text") in apologies)
    finally:
        await database.dispose()
        logging.getLogger().removeHandler(failures)
        workdir.cleanup()
    report.tracebacks = failures.count
    if failures.samples:
        print("\n".join(failures.samples), file=sys.stderr)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    report = asyncio.run(run_fuzz(args.count, args.seed, args.database_url))
    print(f"Telegram webhook fuzz: {args.count:,} bodies, seed {args.seed}\n")
    print(report.table())
    sys.exit(0 if report.clean else 1)


if __name__ == "__main__":
    main()
