"""The conversation engine's handling of one message: a platform message handled once however
it is delivered, and what one message writes."""

from __future__ import annotations

import asyncio

from sqlalchemy import event, func, select

from handlers.core import Incoming
from handlers.engine import Assistant
from storage.clock import ManualClock
from storage.db import Database
from storage.models import Appointment, ChannelIdentity, Conversation, ProcessedMessage
from tests.dialog import Dialog
from tests.test_flows import ID_NUMBER, book_id_card_until_name


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


async def test_one_message_writes_its_state_and_arrival_time_once(
        assistant: Assistant, database: Database, clock: ManualClock) -> None:
    dialog = Dialog(assistant, channel="wechat", user="openid-2")
    await dialog.say("你好")
    clock.advance(minutes=1)
    statements: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _many) -> None:  # type: ignore[no-untyped-def]
        statements.append(_verb_and_table(statement))

    event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    try:
        await dialog.send(text="1", message_id="m-1")     # the main menu's first item: book
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", record)
    assert "青溪镇便民服务中心" in dialog.labels[0]
    assert statements.count("UPDATE conversation") == 1
    assert statements.count("UPDATE channel_identity") == 1
    assert "SELECT channel_identity" not in statements
    async with database.read() as session:
        conversation = await session.get(Conversation, ("wechat", "openid-2"))
        identity = await session.scalar(select(ChannelIdentity).where(
            ChannelIdentity.platform_user_id == "openid-2"))
    assert conversation is not None and conversation.flow == "booking"
    assert conversation.updated_at == clock.now()
    assert identity is not None and identity.last_inbound_at == clock.now()


def _verb_and_table(statement: str) -> str:
    """"UPDATE conversation", "SELECT department"... for a statement sent to the database."""
    words = statement.split()
    verb = words[0].upper()
    after = {"UPDATE": "UPDATE", "INSERT": "INTO", "DELETE": "FROM", "SELECT": "FROM"}.get(verb)
    if after is None or after not in words:
        return verb
    return f"{verb} {words[words.index(after) + 1]}"
