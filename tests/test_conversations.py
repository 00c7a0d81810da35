"""The one record of platform message ids every channel goes through (storage/conversations.py),
on both databases."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from sqlalchemy import func, select

from storage import conversations
from storage.clock import ManualClock
from storage.db import Database
from storage.models import ProcessedMessage


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
        assert not await conversations.was_processed(session, "telegram", "804812001",
                                                     clock.now())
        await conversations.record_delivery(session, "telegram", "804812001", clock.now())
    async with database.read() as session:
        assert await conversations.was_processed(session, "telegram", "804812001", clock.now())


async def test_something_done_once_per_message_is_apart_from_the_message_itself(
        database: Database, clock: ManualClock) -> None:
    long_id = "x" * 300   # cut to the column's length, on both databases
    async with database.session() as session:
        assert await conversations.record_delivery(session, "wechat", long_id, clock.now())
        assert await conversations.first_time(session, "wechat", "rest", long_id, clock.now())
    clock.advance(dt.timedelta(seconds=5))
    async with database.session() as session:
        assert not await conversations.first_time(session, "wechat", "rest", long_id, clock.now())
        assert await conversations.was_processed(session, "wechat", long_id, clock.now())
        assert await conversations.was_processed(session, "wechat:rest", long_id, clock.now())


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


async def test_an_id_counts_as_seen_for_an_hour_then_is_a_new_message(
        database: Database, clock: ManualClock, caplog: pytest.LogCaptureFixture) -> None:
    async with database.session() as session:
        assert await conversations.record_delivery(session, "telegram", "m5:17", clock.now())
        await conversations.store_answer(session, "telegram", "m5:17", [{"text": "好的"}])
    clock.advance(dt.timedelta(minutes=59))
    with caplog.at_level(logging.INFO, logger="yuyue.conversations"):
        async with database.session() as session:
            assert not await conversations.record_delivery(session, "telegram", "m5:17",
                                                           clock.now())
    # The drop is logged once, with how long ago, never the id.
    [line] = [r.getMessage() for r in caplog.records if r.name == "yuyue.conversations"]
    assert "3540 s after the first" in line and "m5:17" not in line
    async with database.read() as session:
        assert await conversations.was_processed(session, "telegram", "m5:17", clock.now())
    clock.advance(dt.timedelta(minutes=2))      # 61 minutes after the first delivery
    async with database.read() as session:
        assert not await conversations.was_processed(session, "telegram", "m5:17", clock.now())
    async with database.session() as session:
        assert await conversations.record_delivery(session, "telegram", "m5:17", clock.now())
        # A new message: nothing of the old answer is given to it.
        assert await conversations.stored_answer(session, "telegram", "m5:17") == []
    async with database.session() as session:
        assert not await conversations.record_delivery(session, "telegram", "m5:17",
                                                       clock.now())


async def test_the_sweep_forgets_ids_seen_longer_ago_than_the_window(
        database: Database, clock: ManualClock) -> None:
    async with database.session() as session:
        await conversations.record_delivery(session, "telegram", "old", clock.now())
    clock.advance(dt.timedelta(minutes=50))
    async with database.session() as session:
        await conversations.record_delivery(session, "wechat", "recent", clock.now())
    clock.advance(dt.timedelta(minutes=11))
    async with database.session() as session:
        assert await conversations.forget_processed(session, clock.now()) == 1
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(ProcessedMessage)) == 1
        assert await conversations.was_processed(session, "wechat", "recent", clock.now())
