"""The conversation engine's handling of one message: a platform message handled once however
it is delivered, and what one message writes."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from handlers.core import Incoming
from handlers.engine import Assistant
from storage.clock import ManualClock
from storage.db import Database
from storage.models import Appointment, ProcessedMessage
from storage.settings import Settings
from tests.dialog import Dialog
from tests.helpers import load_demo, make_centre
from tests.test_flows import ID_NUMBER, book_id_card_until_name


@pytest.fixture
async def assistant(database: Database, clock: ManualClock) -> Assistant:
    async with database.session() as session:
        await load_demo(session, clock.now())
    return Assistant(database=database, centre=make_centre(), clock=clock, settings=Settings())


async def test_concurrent_deliveries_of_one_message_book_once_and_answer_alike(
        assistant: Assistant, database: Database) -> None:
    dialog = Dialog(assistant, channel="wechat", user="openid-1")
    await book_id_card_until_name(dialog)
    for said in ("张三", "13812345678", ID_NUMBER):
        await dialog.say(said)
    confirm = dialog.choice("确认预约").token
    incoming = Incoming(channel="wechat", user_id="openid-1", chat_id="openid-1", choice=confirm,
                        message_id="m-200")
    answers = await asyncio.gather(*(assistant.handle(incoming) for _ in range(3)))
    assert all([r.text for r in a] == [r.text for r in answers[0]] for a in answers)
    assert "预约成功" in answers[0][0].text
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(Appointment)) == 1
        stored = await session.get(ProcessedMessage, ("wechat", "m-200"))
        assert stored is not None and stored.response["replies"][0]["text"] == answers[0][0].text
