"""A centre whose citizens can ask for a person (人工服务) but that has no staff channel: the
citizen is told the truth (nobody answers in the chat; the centre's phones and hours), no
hand-off nobody would see is opened, and `yuyue doctor` fails with a clear line."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot import cli
from bot.runner import run_channels
from bot.wiring import App
from handlers.engine import Assistant
from storage.models import Handoff, Outbox
from storage.settings import TelegramSettings
from tests.dialog import Dialog
from tests.fakes.telegram_api import FakeTelegram

CITIZEN = 5140000001


async def count(assistant: Assistant, model: type) -> int:
    async with assistant.database.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_without_staff_the_citizen_is_given_the_phone_not_a_promise(
        assistant: Assistant) -> None:
    assistant.staff_reachable = False
    citizen = Dialog(assistant, user=str(CITIZEN), channel="telegram")
    await citizen.command("start")
    await citizen.press("人工服务")
    assert "没有工作人员能在这里在线回复您" in citizen.text
    assert "青溪镇便民服务中心：0571-8800 1234" in citizen.text
    assert "工作日 09:00-17:00" in citizen.text
    assert "转接" not in citizen.text and "已转给" not in citizen.text
    assert "预约办事" in citizen.labels                       # no dead end
    await citizen.say("我想问一下户口迁移")                     # not kept for a staff member
    assert "已转给" not in citizen.text
    assert await count(assistant, Handoff) == 0 and await count(assistant, Outbox) == 0
    english = Dialog(assistant, user=str(CITIZEN + 1), channel="telegram", locale="en")
    await english.command("human")
    assert "no member of staff can answer you here" in english.text
    assert "Qingxi Town Service Centre: 0571-8800 1234" in english.text


async def test_with_staff_the_hand_off_opens_as_before(assistant: Assistant) -> None:
    citizen = Dialog(assistant, user=str(CITIZEN), channel="telegram")
    await citizen.command("human")
    assert "已为您转接人工服务" in citizen.text and await count(assistant, Handoff) == 1


@pytest.fixture
async def api() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.mark.parametrize("staff_chat", [0, -1001987654321])
async def test_yuyue_run_wires_whether_staff_can_be_reached(app: App, api: FakeTelegram,
                                                            staff_chat: int) -> None:
    settings = dataclasses.replace(app.settings, telegram=TelegramSettings(
        token=api.token, base_url=api.base_url, base_file_url=api.base_file_url,
        staff_chat_id=staff_chat))
    stop = asyncio.Event()
    running = asyncio.create_task(run_channels(dataclasses.replace(app, settings=settings), stop))
    try:
        api.enqueue(api.text_update(CITIZEN, "/human"))
        await api.until(lambda: bool(api.sent_to(CITIZEN)), 20)
    finally:
        stop.set()
        assert await running == 0
    text = api.sent_to(CITIZEN)[0].params["text"]
    if staff_chat:
        assert "已为您转接人工服务" in text
    else:
        assert "没有工作人员能在这里在线回复您" in text and "0571-8800 1234" in text


def test_doctor_fails_when_hand_offs_are_offered_but_no_staff_channel_is_set(
        settings_file: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli.main(["--settings", str(settings_file), "catalog", "load"]) == 0
    assert cli.main(["--settings", str(settings_file), "doctor"]) == 0      # the terminal demo
    monkeypatch.setenv("YUYUE_TELEGRAM__TOKEN", "123:doctor-token")
    capsys.readouterr()
    assert cli.main(["--settings", str(settings_file), "doctor"]) == 1
    out = capsys.readouterr().out
    assert "FIX   staff channel that can answer hand-offs (人工服务): none" in out
    assert "telegram.staff_chat_id" in out and "docs/wecom.md" in out
    # The WeCom group robot only tells: nobody can answer there, so doctor still fails.
    monkeypatch.setenv("YUYUE_WECOM__ROBOT_WEBHOOK", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k")
    assert cli.main(["--settings", str(settings_file), "doctor"]) == 1
    assert "the WeCom group robot only tells" in capsys.readouterr().out
    monkeypatch.setenv("YUYUE_TELEGRAM__STAFF_CHAT_ID", "-1001987654321")
    assert cli.main(["--settings", str(settings_file), "doctor"]) == 0
    assert "ok    staff channel that can answer hand-offs (人工服务): telegram staff group" in \
        capsys.readouterr().out


