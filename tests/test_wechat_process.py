"""`yuyue run` as a real process with only WeChat configured: a citizen books by number replies
over real HTTP in safe mode, allows a reminder on the consent page, and the process's
dispatcher sends it through the fake WeChat API on 127.0.0.1 as a one-time subscription
message."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, select, update

from storage.catalog import load_catalog, read_catalog
from storage.db import Database
from storage.models import Appointment, NotificationConsent, Outbox, OutboxStatus
from tests.fakes.wechat_api import SAMPLE_AES_KEY, SAMPLE_TOKEN, FakeWechatApi, WechatPush, sample
from tests.helpers import ROOT, valid_id, wechat_toml
from tests.test_processes import common_settings, free_port, start

pytestmark = pytest.mark.slow
OPENID = "oProcess_12AbCdEfGhIjKlMnOpQr"
LINK = re.compile(r'(\d+)\. <a href="weixin://bizmsgmenu\?[^"]*">([^<]*)</a>')
CONSENT = re.compile(r'<a href="(https://mp\.weixin\.qq\.com/mp/subscribemsg\?[^"]+)">')


@pytest.fixture
async def api() -> AsyncIterator[FakeWechatApi]:
    async with FakeWechatApi() as server:
        yield server


def wechat_only_settings(folder: Path, database_url: str, api: FakeWechatApi, port: int) -> Path:
    path = folder / "wechat.toml"
    path.write_text(common_settings(folder, database_url, log_level="INFO") + "\n"
                    + wechat_toml(api.url) + f"""
subscribe_template_id = "SUBS-TPL"
public_url = "https://yuyue.example.gov.cn"
[web]
port = {port}
""", encoding="utf-8")
    return path


async def load_demo_catalog(database_url: str) -> None:
    database = Database(database_url)
    try:
        async with database.session() as session:
            await load_catalog(session, read_catalog(ROOT / "catalog" / "demo.toml"),
                               dt.datetime.now(dt.UTC))
    finally:
        await database.dispose()


class Follower:
    """A WeChat user whose messages WeChat posts to the running server."""

    def __init__(self, push: WechatPush) -> None:
        self.push, self.text, self._ids = push, "", iter(range(7100000000000000, 7200000000000000))

    async def send(self, name: str, **fields: str | int) -> str:
        now = int(dt.datetime.now(dt.UTC).timestamp())
        xml = sample(name, FromUserName=OPENID, CreateTime=now, **fields)
        self.text = self.push.read(await self.push.post(xml)).get("Content", "")
        return self.text

    async def say(self, text: str) -> str:
        return await self.send("text", Content=text, MsgId=next(self._ids))

    def number(self, label: str) -> str:
        """The number of the last choice whose label matches ``label`` (a regular expression)."""
        return [number for number, text in LINK.findall(self.text) if re.search(label, text)][-1]


async def test_yuyue_run_serves_a_wechat_citizen_end_to_end(api: FakeWechatApi, database_url: str,
                                                            tmp_path: Path) -> None:
    await load_demo_catalog(database_url)
    port = free_port()
    process = await start(wechat_only_settings(tmp_path, database_url, api, port))
    output = ProcessLog(process)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        try:
            await output.until("running: channels wechat, web server listening", 60)
            citizen = Follower(WechatPush(http, path="/wechat", token=SAMPLE_TOKEN,
                                          aes_key=SAMPLE_AES_KEY, now=lambda: dt.datetime.now(dt.UTC)))
            assert "预约办事" in await citizen.send("event_subscribe")
            await citizen.say(citizen.number("预约办事"))
            await citizen.say(citizen.number("便民服务中心"))
            assert "一次性告知" in await citizen.say(citizen.number("居民身份证"))
            await citizen.say(citizen.number("材料已备齐"))
            day = await citizen.say(citizen.number(r"月.*余\d+个号"))     # the furthest date open
            if "上午或下午" in day:                             # many slots: the half-day first
                await citizen.say("1")
            assert "保留" in await citizen.say("1")               # its first time slot
            assert "真实姓名" in await citizen.say(citizen.number("同意并继续"))
            await citizen.say("张三")
            await citizen.say("13812345678")
            assert "请确认预约信息" in await citizen.say(valid_id())
            booked = await citizen.say(citizen.number("确认预约"))
            assert "预约成功" in booked
            consent = CONSENT.search(booked)
            assert consent is not None
            asked = {k: v[0] for k, v in parse_qs(urlsplit(consent.group(1)).query).items()}
            page = await http.get("/wechat/consent", params={
                "openid": OPENID, "template_id": asked["template_id"], "action": "confirm",
                "scene": asked["scene"], "reserved": asked["reserved"]})
            assert page.status_code == 200 and "已开启" in page.text
            assert await count(database_url, NotificationConsent) == 1

            # The reminders fall due now, and WeChat says the customer-service window is closed:
            # the process's dispatcher sends the first as the one-time subscription message.
            api.out_of_window.add(OPENID)
            assert await reminders_due_now(database_url) >= 1
            await api.until(lambda: bool(api.sent("message/template/subscribe")), 60)
            [sent] = api.sent("message/template/subscribe")
            assert sent["touser"] == OPENID and sent["title"] == "预约提醒"
            assert sent["scene"] == asked["scene"] and api.texts == []
        finally:
            process.send_signal(signal.SIGTERM)
            await process.wait()
    stderr = await output.text()
    assert process.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr
    assert await count(database_url, Appointment) == 1


class ProcessLog:
    """The process's log (standard error), read as it comes so the pipe never fills."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.lines: list[str] = []
        self._line = asyncio.Event()
        self._reader = asyncio.create_task(self._read(process))

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            self.lines.append(line.decode(errors="replace"))
            self._line.set()
        self._line.set()

    async def until(self, part: str, seconds: float) -> None:
        """Wait for a line containing ``part``, awaiting each new line (a guard of
        ``seconds``); the process ending first is a failure that shows its log."""
        async with asyncio.timeout(seconds):
            while not any(part in line for line in self.lines):
                if self._reader.done():
                    raise AssertionError("yuyue run stopped:\n" + "".join(self.lines)[-3000:])
                self._line.clear()
                await self._line.wait()

    async def text(self) -> str:
        await self._reader
        return "".join(self.lines)


async def reminders_due_now(database_url: str) -> int:
    database = Database(database_url)
    try:
        async with database.session() as session:
            due = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
            result = await session.execute(update(Outbox).where(
                Outbox.kind == "reminder", Outbox.status == OutboxStatus.PENDING).values(due_at=due))
            return int(result.rowcount)  # type: ignore[attr-defined]
    finally:
        await database.dispose()


async def count(database_url: str, model: type) -> int:
    database = Database(database_url)
    try:
        async with database.read() as session:
            return int(await session.scalar(select(func.count()).select_from(model)) or 0)
    finally:
        await database.dispose()
