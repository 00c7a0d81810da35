"""A SQLite file that cannot be written when Yuyue starts, made writable while it runs.

SQLite opens such a file read-only and its connection stays read-only afterwards; the tests run
as root, for whom file permissions do not stop writes, so the file is made immutable
(``chattr +i``), which stops root too and makes SQLite open it read-only, as a read-only file
does for any other user."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from bot import cli
from handlers.core import Incoming
from handlers.engine import Assistant
from storage.centre import Centre
from storage.clock import ManualClock
from storage.db import Database, is_outage
from storage.models import ProcessedMessage
from storage.settings import Settings
from tests.conftest import postgres_url

pytestmark = pytest.mark.skipif(bool(postgres_url()), reason="a SQLite file's permissions")


class Immutable:
    """The database file made unwritable (and writable again) for everyone, root included."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, on: bool) -> None:
        subprocess.run(["chattr", "+i" if on else "-i", str(self.path)], check=True,
                       capture_output=True)


@pytest.fixture
def immutable(database_url: str) -> Iterator[Immutable]:
    path = Path(make_url(database_url).database or "")
    lock = Immutable(path)
    try:
        lock(True)
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"chattr cannot make {path} immutable here: {error}")
    lock(False)
    try:
        yield lock
    finally:
        lock(False)


def message(number: int) -> Incoming:
    return Incoming(channel="telegram", user_id="5123000001", chat_id="5123000001", text="你好",
                    message_id=f"ro-{number}")


async def stored(database: Database, number: int) -> int:
    async with database.read() as session:
        return int(await session.scalar(select(func.count()).select_from(ProcessedMessage)
                                        .where(ProcessedMessage.message_id == f"ro-{number}")) or 0)


async def test_read_only_at_start_then_writable_the_next_message_is_stored(
        assistant: Assistant, database: Database, database_url: str, immutable: Immutable,
        centre: Centre, clock: ManualClock, settings: Settings,
        caplog: pytest.LogCaptureFixture) -> None:
    await database.dispose()              # the demo is loaded; nothing else has the file open
    immutable(True)
    started = Database(database_url, pool_size=3)      # `yuyue run` starting now
    try:
        engine = Assistant(database=started, centre=centre, clock=clock, settings=settings)
        assert await started.write_problem() is not None
        for number in (1, 2):
            with pytest.raises(OperationalError) as failed:
                await engine.handle(message(number))
            assert is_outage(failed.value)       # the channel answers "try later": resent
        said = [r for r in caplog.records if r.name == "yuyue.db" and r.levelno == logging.ERROR]
        assert len(said) == 1 and "read-only" in said[0].getMessage()      # said once
        immutable(False)                          # an operator fixes the file
        replies = await engine.handle(message(3))   # the next message: no restart
        assert replies and await stored(started, 3) == 1
        assert not started.read_only and await started.write_problem() is None
        assert any("writable again" in r.getMessage() for r in caplog.records)
    finally:
        immutable(False)
        await started.dispose()


def test_doctor_names_a_read_only_database_file(settings_file: Path, immutable: Immutable,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    immutable(True)
    code = cli.main(["--settings", str(settings_file), "doctor"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FIX   database read-only: the file" in out and str(immutable.path) in out
    assert "chmod" in out
    immutable(False)
    cli.main(["--settings", str(settings_file), "doctor"])
    assert "ok    database writable" in capsys.readouterr().out
