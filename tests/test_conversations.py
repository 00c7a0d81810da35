"""The one record of platform message ids every channel goes through (storage/conversations.py),
on both databases."""

from __future__ import annotations

import datetime as dt

from storage import conversations
from storage.clock import ManualClock
from storage.db import Database


async def test_a_delivery_is_recorded_once_and_its_answer_kept(database: Database,
                                                               clock: ManualClock) -> None:
    async with database.session() as session:
        assert await conversations.record_delivery(session, "wechat", "m-1", clock.now())
        await conversations.store_answer(session, "wechat", "m-1", [{"text": "好的"}])
    async with database.session() as session:
        assert not await conversations.record_delivery(session, "wechat", "m-1", clock.now())
        assert await conversations.stored_answer(session, "wechat", "m-1") == [{"text": "好的"}]
        # The same id on another channel is another message.
        assert await conversations.record_delivery(session, "telegram", "m-1", clock.now())
        assert await conversations.stored_answer(session, "telegram", "m-1") == []


async def test_a_transport_asks_whether_a_message_was_processed(database: Database,
                                                                clock: ManualClock) -> None:
    async with database.session() as session:
        assert not await conversations.was_processed(session, "telegram", "804812001")
        await conversations.record_delivery(session, "telegram", "804812001", clock.now())
    async with database.read() as session:
        assert await conversations.was_processed(session, "telegram", "804812001")


async def test_something_done_once_per_message_is_apart_from_the_message_itself(
        database: Database, clock: ManualClock) -> None:
    long_id = "x" * 300   # cut to the column's length, on both databases
    async with database.session() as session:
        assert await conversations.record_delivery(session, "wechat", long_id, clock.now())
        assert await conversations.first_time(session, "wechat", "rest", long_id, clock.now())
    clock.advance(dt.timedelta(seconds=5))
    async with database.session() as session:
        assert not await conversations.first_time(session, "wechat", "rest", long_id, clock.now())
        assert await conversations.was_processed(session, "wechat", long_id)
        assert await conversations.was_processed(session, "wechat:rest", long_id)


async def test_a_conversation_is_made_once_and_saved_where_it_is(database: Database,
                                                                 clock: ManualClock) -> None:
    async with database.session() as session:
        conversation = await conversations.lock_conversation(session, "terminal", "u1", clock.now(),
                                                             initial={"_menu": {"id": 7}})
        conversations.save_conversation(conversation, "booking", "date", {"service": 1}, clock.now())
    clock.advance(dt.timedelta(minutes=1))
    async with database.session() as session:
        again = await conversations.lock_conversation(session, "terminal", "u1", clock.now(),
                                                      initial={})
        assert (again.flow, again.step, again.data) == ("booking", "date", {"service": 1})
        assert again.updated_at == clock.now() - dt.timedelta(minutes=1)
