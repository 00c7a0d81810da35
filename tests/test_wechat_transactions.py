"""A WeChat message's database work: one transaction (the replay record, the de-duplication
record, the conversation and its answer), and pooled PostgreSQL connections the server closed
replaced before use without a round trip of their own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event, text

from storage.clock import ManualClock
from storage.db import Database
from storage.models import ProcessedMessage, SignedRequest
from tests.fakes.wechat_api import FakeWechatApi
from tests.helpers import load_demo
from tests.test_wechat_security import api, served  # noqa: F401  (the fake API fixture)
from tests.test_wechat_webhook import Citizen, count, make_env

BUSY = "系统繁忙"


async def test_a_message_is_one_transaction_with_its_replay_record(
        database: Database, clock: ManualClock, api: FakeWechatApi) -> None:  # noqa: F811
    async with database.session() as session:
        await load_demo(session, clock.now())
    env = await make_env(database, clock, api, safe=True)
    citizen = Citizen(env)
    begun: list[object] = []

    def began(connection: Any) -> None:
        begun.append(connection)

    async with served(env) as (_http, push):
        assert "预约办事" in push.read(await push.post(citizen.message("text", Content="你好",
                                                                        MsgId=1)))["Content"]
        event.listen(database.engine.sync_engine, "begin", began)
        try:
            answer = push.read(await push.post(citizen.message("text", Content="1", MsgId=2)))
        finally:
            event.remove(database.engine.sync_engine, "begin", began)
        assert BUSY not in answer["Content"]
    assert len(begun) == 1, f"{len(begun)} transactions for one message"
    assert await count(database, SignedRequest) == 2
    assert await count(database, ProcessedMessage) == 2


async def test_pooled_connections_the_server_closed_are_replaced_before_use(
        database: Database, clock: ManualClock, api: FakeWechatApi) -> None:  # noqa: F811
    if database.is_sqlite:
        pytest.skip("PostgreSQL's connections; SQLite has no server to close them")
    async with database.session() as session:
        await load_demo(session, clock.now())
    env = await make_env(database, clock, api, safe=True)
    citizen = Citizen(env)
    pooled: dict[int, Any] = {}

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        if record.driver_connection is not None:
            pooled[id(record.driver_connection)] = record.driver_connection

    event.listen(database.engine.sync_engine, "checkin", checked_in)
    async with served(env) as (_http, push):
        assert "预约办事" in push.read(await push.post(citizen.message("text", Content="你好",
                                                                        MsgId=1)))["Content"]
        event.remove(database.engine.sync_engine, "checkin", checked_in)
        assert pooled
        ended = {key: asyncio.Event() for key in pooled}
        for key, connection in pooled.items():
            connection.add_termination_listener(lambda _c, done=ended[key]: done.set())
        # The server ends every connection of the pool (as a restart does), from outside it.
        admin = Database(database.url, pool_size=1)
        try:
            async with admin.session() as session:
                await session.execute(text("SELECT pg_terminate_backend(pid) FROM "
                                           "pg_stat_activity WHERE pid = ANY(:pids)"),
                                      {"pids": [c.get_server_pid() for c in pooled.values()]})
        finally:
            await admin.dispose()
        # The closing sockets reach this event loop: asyncpg tells each connection's listener.
        for done in ended.values():
            await done.wait()
        assert all(c.is_closed() for c in pooled.values())
        answer = push.read(await push.post(citizen.message("text", Content="1", MsgId=2)))
        assert BUSY not in answer["Content"]
        assert "便民服务中心" in answer["Content"]


async def test_messages_worked_on_at_once_are_bounded_by_the_pool(
        database: Database, clock: ManualClock, api: FakeWechatApi) -> None:  # noqa: F811
    """A burst of three times the pool's size: at most the pool's size of connections are in
    use at once (the rest of the messages wait outside the pool), and every message, and a
    retry of one sent during the burst, is answered once."""
    async with database.session() as session:
        await load_demo(session, clock.now())
    env = await make_env(database, clock, api, safe=True)
    citizens = [Citizen(env, openid=f"oBurst{index:02d}") for index in range(3 * database.pool_size)]
    in_use, most = 0, 0

    def checked_out(*_args: Any) -> None:
        nonlocal in_use, most
        in_use += 1
        most = max(most, in_use)

    def checked_in(*_args: Any) -> None:
        nonlocal in_use
        in_use -= 1

    async with served(env) as (_http, push):
        event.listen(database.engine.sync_engine, "checkout", checked_out)
        event.listen(database.engine.sync_engine, "checkin", checked_in)
        try:
            messages = [c.message("text", Content="你好", MsgId=100 + i) for i, c in enumerate(citizens)]
            answers = await asyncio.gather(*(push.post(xml) for xml in [*messages, messages[0]]))
        finally:
            event.remove(database.engine.sync_engine, "checkout", checked_out)
            event.remove(database.engine.sync_engine, "checkin", checked_in)
        for response in answers:
            assert "预约办事" in push.read(response)["Content"]
    assert 1 <= most <= database.pool_size, f"{most} connections for a pool of {database.pool_size}"
    assert await count(database, ProcessedMessage) == len(citizens)
