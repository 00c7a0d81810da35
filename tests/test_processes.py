"""`yuyue run` as real processes: killed with SIGKILL in a reminder storm and started again,
and two processes sharing one database. The Telegram API is the fake server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from storage import booking
from storage.catalog import load_catalog, read_catalog
from storage.clock import ManualClock
from storage.db import Database
from storage.identity import PersonDetails, find_or_create_person, identity_for
from storage.models import Channel, ChannelIdentity, Outbox, Service
from tests.fakes.telegram_api import FakeTelegram
from tests.helpers import ROOT, make_centre, slots_of

pytestmark = pytest.mark.slow
CITIZENS = 80
FIRST_USER = 5300000000


@pytest.fixture
async def api() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def common_settings(folder: Path, database_url: str, log_level: str = "WARNING") -> str:
    """The settings every `yuyue run` of these tests shares: demo catalog, database, key."""
    return f"""
[general]
catalog = "{ROOT / 'catalog' / 'demo.toml'}"
data_dir = "{folder / 'var'}"
log_level = "{log_level}"
[database]
url = "{database_url}"
pool_size = 4
[privacy]
id_hash_key = "process-test-key-0123456789"
[notifications]
dispatch_interval_seconds = 1
claim_lease_seconds = 3
"""


def settings_file(folder: Path, database_url: str, api: FakeTelegram, name: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(common_settings(folder, database_url) + f"""
[telegram]
token = "{api.token}"
base_url = "{api.base_url}"
base_file_url = "{api.base_file_url}"
mode = "webhook"
webhook_url = "https://yuyue.example.invalid/tg/{name}"
secret_token = "process-secret"
[web]
port = {free_port()}
""", encoding="utf-8")
    return path


async def reminder_storm(database_url: str) -> int:
    """Bookings for tomorrow's working day whose reminders are all due now."""
    database = Database(database_url)
    now = dt.datetime.now(dt.UTC)
    clock = ManualClock(now)
    centre = make_centre(max_bookings_per_week=0, max_bookings_per_month=0)
    try:
        async with database.session() as session:
            await load_catalog(session, read_catalog(ROOT / "catalog" / "demo.toml"), now)
            service = await session.scalar(select(Service).where(Service.code == "internal_medicine"))
            assert service is not None
            first = centre.calendar.next_working_day(centre.today(now))
            slots = [slot for day in (first, centre.calendar.next_working_day(first))
                     for slot in await slots_of(session, centre, service, now, day)]
            for n in range(CITIZENS):
                citizen = await find_or_create_person(session, PersonDetails("市民", f"137{n:08d}"),
                                                      centre.hasher, now)
                identity = await identity_for(session, "telegram", str(FIRST_USER + n), "zh-CN", now)
                await booking.book(session, centre, clock.now(), person_id=citizen.id,
                                   slot_id=slots[n % len(slots)].id, identity_id=identity.id,
                                   channel=Channel.TELEGRAM, made_by="test", confirm=True)
            await session.execute(update(Outbox).values(due_at=now - dt.timedelta(seconds=1)))
            return int(await session.scalar(select(func.count()).select_from(Outbox)) or 0)
    finally:
        await database.dispose()


async def start(settings: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUYUE_")}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", "--settings", str(settings), "run", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)


def delivered(api: FakeTelegram) -> int:
    """Messages the fake Telegram accepted for the citizens."""
    return sum(1 for c in api.calls_to("sendMessage") if c.ok and (c.chat_id or 0) >= FIRST_USER)


async def expected_per_chat(database_url: str) -> collections.Counter[int]:
    """How many notifications the outbox holds for each citizen's chat."""
    database = Database(database_url)
    try:
        async with database.read() as session:
            rows = (await session.execute(select(ChannelIdentity.platform_user_id, func.count())
                                          .join(Outbox, Outbox.identity_id == ChannelIdentity.id)
                                          .group_by(ChannelIdentity.platform_user_id))).all()
            return collections.Counter({int(user): count for user, count in rows})
    finally:
        await database.dispose()


def received_per_chat(api: FakeTelegram) -> collections.Counter[int]:
    return collections.Counter(c.chat_id for c in api.calls_to("sendMessage")
                               if c.ok and (c.chat_id or 0) >= FIRST_USER)


async def wait_or_explain(api: FakeTelegram, process: asyncio.subprocess.Process, condition,  # type: ignore[no-untyped-def]
                          seconds: float) -> None:
    try:
        await api.until(condition, seconds)
    except TimeoutError:
        process.kill()
        _, stderr = await process.communicate()
        raise AssertionError("yuyue run did not deliver in time:\n" + stderr.decode()[-3000:]) from None


async def outbox_states(database_url: str) -> dict[str, int]:
    database = Database(database_url)
    try:
        async with database.read() as session:
            rows = (await session.execute(select(Outbox.status, func.count()).group_by(Outbox.status))).all()
            return {status.value: count for status, count in rows}
    finally:
        await database.dispose()


async def test_sigkill_in_a_reminder_storm_loses_nothing(api: FakeTelegram, database_url: str,
                                                         tmp_path: Path) -> None:
    total = await reminder_storm(database_url)
    assert total >= 2 * CITIZENS                      # confirmations and reminders still ahead
    settings = settings_file(tmp_path, database_url, api, "a")
    expected = await expected_per_chat(database_url)
    first = await start(settings)
    await wait_or_explain(api, first, lambda: delivered(api) >= total // 3, 60)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    before_kill = delivered(api)
    assert before_kill < total, "the storm was over before the kill"
    # What the killed process sent but had not yet recorded goes out once more: those in flight.
    in_flight = before_kill - (await outbox_states(database_url)).get("sent", 0)
    second = await start(settings)
    try:
        await wait_or_explain(api, second, lambda: delivered(api) >= total + in_flight, 90)
    finally:
        # SIGTERM lets the round in hand finish, so what was sent is also recorded as sent.
        second.send_signal(signal.SIGTERM)
        _, stderr = await second.communicate()
    assert second.returncode == 0, stderr.decode()[-2000:]
    received = received_per_chat(api)
    assert all(received[chat] >= count for chat, count in expected.items())   # nothing lost
    assert delivered(api) - total == in_flight <= 16    # only what was in flight at the kill
    assert await outbox_states(database_url) == {"sent": total}


async def test_two_processes_send_every_reminder_exactly_once(api: FakeTelegram, database_url: str,
                                                               tmp_path: Path) -> None:
    total = await reminder_storm(database_url)
    processes = [await start(settings_file(tmp_path, database_url, api, name)) for name in ("a", "b")]
    expected = await expected_per_chat(database_url)
    try:
        await api.until(lambda: delivered(api) >= total, 90)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        results = [await p.communicate() for p in processes]
    for process, (_, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr.decode()[-2000:]
    received = received_per_chat(api)
    duplicates = sum(max(0, received[chat] - count) for chat, count in expected.items())
    assert duplicates == 0, f"duplicates: {duplicates}\n" + "\n".join(   # scripts/stress.sh
        await rows_of([chat for chat in expected if received[chat] > expected[chat]],
                      database_url)) + "\n" + "\n".join(err.decode()[-1500:] for _, err in results)
    assert received == expected and delivered(api) == total    # each exactly once
    assert (await outbox_states(database_url)) == {"sent": total}
    claimed_by = await claimed_owners(database_url)
    assert len(claimed_by) == 2, "both processes took part"


async def claimed_owners(database_url: str) -> set[str]:
    database = Database(database_url)
    try:
        async with database.read() as session:
            return set((await session.scalars(select(Outbox.claimed_by).distinct())).all()) - {None}
    finally:
        await database.dispose()


async def rows_of(chats: list[int], database_url: str) -> list[str]:
    """What the outbox says of the notifications to these chats (to explain a duplicate)."""
    database = Database(database_url)
    try:
        async with database.read() as session:
            rows = (await session.execute(
                select(ChannelIdentity.platform_user_id, Outbox.id, Outbox.kind, Outbox.attempts,
                       Outbox.claimed_by, Outbox.last_error)
                .join(Outbox, Outbox.identity_id == ChannelIdentity.id)
                .where(ChannelIdentity.platform_user_id.in_([str(c) for c in chats])))).all()
            return [" ".join(str(v) for v in row) for row in rows]
    finally:
        await database.dispose()
