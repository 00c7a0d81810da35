"""Test set-up: a clean, migrated database per test (SQLite by default, PostgreSQL when
YUYUE_TEST_DATABASE_URL says so), an injected clock, no way out to the internet, and the
fixtures many test files share (a test file overrides one by defining the same name)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy import text

from bot.wiring import App
from handlers.engine import Assistant
from storage import migrate
from storage.centre import Centre
from storage.clock import ManualClock
from storage.db import Database
from storage.models import Base
from storage.settings import Settings
from tests.fakes import FakeTime
from tests.fakes.wechat_api import FakeWechatApi
from tests.helpers import load_demo, make_centre
from tests.staff_support import STAFF_A, Recorder, Staff

ROOT = Path(__file__).resolve().parent.parent

# No property test may depend on the machine's speed: a busy machine is not a failing test.
hypothesis_settings.register_profile("yuyue", deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.register_profile("ci", parent=hypothesis_settings.get_profile("yuyue"),
                                    derandomize=True)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "yuyue")
SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def postgres_url() -> str | None:
    return os.environ.get("YUYUE_TEST_DATABASE_URL") or None


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection to a host other than this machine fails the test (a tripwire)."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and self.family in (socket.AF_INET, socket.AF_INET6) and not (
                host.startswith("127.") or host in ("::1", "localhost")):
            raise AssertionError(f"test tried to reach {host}: only 127.0.0.1 is allowed")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


async def _migrate_fresh(url: str) -> None:
    database = Database(url)
    try:
        if not database.is_sqlite:
            async with database.engine.begin() as connection:
                await connection.execute(text("DROP SCHEMA public CASCADE"))
                await connection.execute(text("CREATE SCHEMA public"))
        await migrate.upgrade(database)
    finally:
        await database.dispose()


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database made once per run: a SQLite file to copy, or the PostgreSQL URL."""
    url = postgres_url()
    if url:
        asyncio.run(_migrate_fresh(url))
        return url
    path = tmp_path_factory.mktemp("template") / "template.db"
    asyncio.run(_migrate_fresh(f"sqlite+aiosqlite:///{path}"))
    return str(path)


async def _truncate_all(url: str) -> None:
    database = Database(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    try:
        async with database.engine.begin() as connection:
            await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await database.dispose()


@pytest.fixture
def database_url(migrated_template: str, tmp_path: Path) -> str:
    """The URL of a clean, migrated database for this test."""
    if postgres_url():
        asyncio.run(_truncate_all(migrated_template))
        return migrated_template
    path = tmp_path / "yuyue.db"
    shutil.copyfile(migrated_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=5)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def clock() -> ManualClock:
    """Monday 2026-11-23 09:00 in Shanghai, a working day."""
    return ManualClock(dt.datetime(2026, 11, 23, 9, 0, tzinfo=SHANGHAI))


@pytest.fixture
def demo_catalog_path() -> Path:
    return ROOT / "catalog" / "demo.toml"


@pytest.fixture
def settings_file(tmp_path: Path, database_url: str) -> Iterator[Path]:
    """A settings file pointing at this test's database, with everything else default."""
    path = tmp_path / "settings.toml"
    path.write_text(
        f'[general]\ncatalog = "{ROOT / "catalog" / "demo.toml"}"\ndata_dir = "{tmp_path / "var"}"\n'
        f'[database]\nurl = "{database_url}"\n'
        f'[conversation]\nattachments_dir = "{tmp_path / "attachments"}"\n', encoding="utf-8")
    yield path


@pytest.fixture
def settings() -> Settings:
    """All defaults; a test file with channels or staff overrides this fixture."""
    return Settings()


@pytest.fixture
def centre() -> Centre:
    return make_centre()


@pytest.fixture
async def assistant(database: Database, clock: ManualClock, centre: Centre,
                    settings: Settings) -> Assistant:
    """The conversation engine over the demo catalog."""
    async with database.session() as session:
        await load_demo(session, clock.now())
    return Assistant(database=database, centre=centre, clock=clock, settings=settings)


@pytest.fixture
async def app(database: Database, clock: ManualClock, centre: Centre, settings: Settings) -> App:
    """What ``yuyue run`` wires together, over the demo catalog."""
    async with database.session() as session:
        await load_demo(session, clock.now())
    return App(settings=settings, database=database, centre=centre, clock=clock)


# --- the staff side: shared by the staff, case and privacy tests --------------------------------


@pytest.fixture
def group() -> Recorder:
    return Recorder("staff")


@pytest.fixture
def citizens() -> Recorder:
    return Recorder("telegram")


@pytest.fixture
def wang(assistant: Assistant) -> Staff:
    return Staff(assistant, STAFF_A, "王芳")


@pytest.fixture
def fake_time() -> FakeTime:
    """Time for the transports' limiters and the fake platforms, moved by sleeping."""
    return FakeTime()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


@pytest.fixture
async def wechat_api() -> AsyncIterator[FakeWechatApi]:
    async with FakeWechatApi() as fake:
        yield fake
