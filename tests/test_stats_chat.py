"""/stats and /export in the chat: managers get figures, a chart and files; others are refused."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import logging

import openpyxl
import pytest

from bot.reports import FileReports
from handlers.engine import Assistant
from storage import booking
from storage.clock import ManualClock
from storage.db import Database
from storage.models import Channel
from storage.settings import AccessSettings, Settings
from tests.dialog import Dialog
from tests.helpers import account, load_demo, make_centre, person, slots_of

MANAGER = "900001"


@pytest.fixture
async def assistant(database: Database, clock: ManualClock) -> Assistant:
    centre = make_centre()
    async with database.session() as session:
        services = await load_demo(session, clock.now())
        slot = (await slots_of(session, centre, services["id_card"], clock.now(), dt.date(2026, 11, 24)))[3]
        citizen = await person(session, centre, clock.now())
        identity = await account(session, clock.now(), user="42", person_id=citizen.id)
        await booking.book(session, centre, clock.now(), person_id=citizen.id, slot_id=slot.id,
                           identity_id=identity.id, channel=Channel.TELEGRAM, made_by="telegram:42")
    settings = dataclasses.replace(Settings(), access=AccessSettings(managers=(f"telegram:{MANAGER}",)))
    return Assistant(database=database, centre=centre, clock=clock, settings=settings,
                     reports=FileReports())


async def test_a_manager_gets_the_figures_in_their_language(assistant: Assistant) -> None:
    dialog = Dialog(assistant, user=MANAGER, channel="telegram")
    await dialog.command("stats", "week")
    assert "预约量 1" in dialog.text and "Telegram 1" in dialog.text and "11月23日 周一" in dialog.text
    english = Dialog(assistant, user=MANAGER, channel="telegram", locale="en")
    await english.command("lang", "en")
    await english.command("stats", "week id_card")
    assert "Bookings 1" in english.text and "Resident ID card" in english.text


async def test_a_service_is_named_as_staff_name_it_and_its_figures_are_its_own(
        assistant: Assistant) -> None:
    dialog = Dialog(assistant, user=MANAGER, channel="telegram")
    await dialog.command("stats", "month 身份证")
    assert "居民身份证办理" in dialog.text and "预约量 1" in dialog.text
    assert "人工服务和限制预约名单不分事项" in dialog.text and "人工服务 " not in dialog.text
    await dialog.command("stats", "month 口腔")
    assert "口腔科门诊" in dialog.text and "预约量 0" in dialog.text
    await dialog.command("stats", "month")
    assert "人工服务 0" in dialog.text and "当前限制预约 0 人" in dialog.text


async def test_chart_and_exports_are_sent_as_files(assistant: Assistant) -> None:
    dialog = Dialog(assistant, user=MANAGER, channel="telegram")
    await dialog.command("stats", "chart week")
    chart = dialog.last[0].attachment
    assert chart is not None and chart.mime == "image/png" and chart.content[:4] == b"\x89PNG"
    await dialog.command("export", "week")
    xlsx, csv = (r.attachment for r in dialog.last)
    assert xlsx is not None and csv is not None
    book = openpyxl.load_workbook(io.BytesIO(xlsx.content))
    rows = list(book.worksheets[0].iter_rows(values_only=True))
    assert len(rows) == 2 and "张*" in [str(v) for v in rows[1]]
    assert "13812345678" not in csv.content.decode("utf-8-sig")


async def test_period_errors_are_explained(assistant: Assistant) -> None:
    dialog = Dialog(assistant, user=MANAGER, channel="telegram")
    for args, words in (("2026-02-30", "不是有效日期"), ("2026-11-30..2026-11-01", "日期范围反了"),
                        ("sometime id_card", "看不懂"), ("month nosuch", "没有叫“nosuch”的事项"),
                        ("month nosuch", "dental：口腔科门诊"), ("month 门诊", "对得上好几个")):
        await dialog.command("stats", args)
        assert words in dialog.text, args


async def test_everyone_else_is_refused_politely_and_logged(assistant: Assistant,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    citizen = Dialog(assistant, user="42", channel="telegram")
    with caplog.at_level(logging.WARNING, logger="yuyue.stats"):
        await citizen.command("stats", "month")
    assert "仅对授权的中心负责人开放" in citizen.text and "预约量" not in citizen.text
    assert "refused /stats" in caplog.text and "42" not in caplog.text
    in_group = Dialog(assistant, user=MANAGER, channel="telegram")
    replies = await in_group.send(command="export", is_group=True, chat_id="-100123")
    assert "私聊" in replies[0].text
