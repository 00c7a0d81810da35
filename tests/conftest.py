"""Test set-up: a clean, migrated database per test (SQLite by default, PostgreSQL when
YUYUE_TEST_DATABASE_URL says so), an injected clock, no way out to the internet, and the
fixtures many test files share (a test file overrides one by defining the same name)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.dispatch import Dispatcher
from bot.telegram import TelegramChannel
from bot.telegram.limiter import RateLimiter
from bot.wiring import App
from handlers.engine import Assistant
from storage import migrate
from storage.centre import Centre
from storage.clock import ManualClock
from storage.db import Database
from storage.models import Base
from storage.settings import Settings, SmsSettings, TelegramSettings
from tests.fakes import FakeTime
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.tencent_sms import FakeTencentSms
from tests.fakes.wechat_api import FakeWechatApi
from tests.helpers import load_demo, make_centre, running_telegram
from tests.staff_support import STAFF_A, Recorder, Staff, staff_settings

ROOT = Path(__file__).resolve().parent.parent

# No property test may depend on the machine's speed: a busy machine is not a failing test.
hypothesis_settings.register_profile("yuyue", deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.register_profile("ci", parent=hypothesis_settings.get_profile("yuyue"),
                                    derandomize=True)
hypothesis_settings.load_profile("ci" if os.environ.get("CI") else "yuyue")
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
T = TypeVar("T")


def postgres_url() -> str | None:
    if _RUNS_ONCE:
        raise AssertionError(
            f"{_RUNS_ONCE[0]} reads the test database setting but uses no database fixture, so the "
            "PostgreSQL pass of scripts/test.sh leaves it out: request database_url (or a fixture "
            "built on it) or mark it @pytest.mark.database")
    return os.environ.get("YUYUE_TEST_DATABASE_URL") or None


# --- what runs once and what runs on both databases ---------------------------------------------
#
# scripts/test.sh runs the suite on SQLite, then with --database-tests-only on PostgreSQL: the
# second pass keeps only the tests that use the test database (through ``migrated_template``, which
# every database fixture is built on, or marked ``database`` when they read its URL themselves).
# The others (rules, parsing, catalogs, lint gates, the terminal on its own SQLite file) would run
# the same code the same way twice.

_RUNS_ONCE: list[str] = []      # the test running now, when it is one that runs once


def uses_test_database(item: pytest.Item) -> bool:
    return ("migrated_template" in getattr(item, "fixturenames", ())
            or item.get_closest_marker("database") is not None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--database-tests-only", action="store_true",
                     help="run only the tests that use the test database (the PostgreSQL pass of "
                          "scripts/test.sh; the others ran in the SQLite pass)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "database: reaches the test database through its URL "
                            "(postgres_url()) instead of a database fixture: runs on both databases")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--database-tests-only"):
        return
    keep = [item for item in items if uses_test_database(item)]
    dropped = [item for item in items if not uses_test_database(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """Note a test that runs once, so that reading the database setting fails it (a tripwire)."""
    if not uses_test_database(item):
        _RUNS_ONCE[:] = [item.nodeid]
    try:
        return (yield)
    finally:
        _RUNS_ONCE.clear()


@pytest.fixture(scope="session", autouse=True)
def _one_certificate_store() -> Iterator[None]:
    """Every HTTP client (each bot, each API client of a test) loads the same CA bundle: load it
    once. No test speaks TLS (everything is plain HTTP on 127.0.0.1), so sharing the context
    changes nothing but the 30-odd ms each client spends reading certificates."""
    from httpx._transports import default

    make = default.create_ssl_context
    made: list[ssl.SSLContext] = []

    def shared(verify: object = True, cert: object = None, trust_env: bool = True) -> ssl.SSLContext:
        if verify is not True or cert is not None or not trust_env:
            return make(verify=verify, cert=cert, trust_env=trust_env)  # type: ignore[arg-type]
        if not made:
            made.append(make())
        return made[0]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(default, "create_ssl_context", shared)
        yield


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


class _PostgresCleaner:
    """Empties every table and restarts every sequence between tests, over one connection kept
    for the whole run (on its own thread, as each test has its own event loop): a few
    milliseconds, where a new connection and a TRUNCATE of every table took a tenth of a second.

    DELETE in reverse dependency order rather than TRUNCATE: on tables that hold a few rows or
    none it is far cheaper (TRUNCATE makes new files for each table and index)."""

    def __init__(self, url: str) -> None:
        tables = ", ".join(f"'{t.name}'" for t in reversed(Base.metadata.sorted_tables))
        self._statement = f"""DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY[{tables}] LOOP
    EXECUTE format('DELETE FROM %I', t);
  END LOOP;
  PERFORM setval(format('%I.%I', schemaname, sequencename), start_value, false)
     FROM pg_sequences WHERE schemaname = 'public' AND last_value IS NOT NULL;
END $$"""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-db-cleaner",
                                        daemon=True)
        self._thread.start()
        import asyncpg

        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._connection = self._run(asyncpg.connect(dsn))

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    def clean(self) -> None:
        # A guard, not a wait: a test that left a transaction holding rows makes this fail.
        self._run(self._connection.execute(self._statement, timeout=60))

    def close(self) -> None:
        self._run(self._connection.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


_CLEANER: list[_PostgresCleaner] = []


def clean_postgres() -> None:
    """Leave the PostgreSQL test database as migrated: no row in any table, sequences at 1."""
    _CLEANER[0].clean()


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database made once per run: a SQLite file to copy, or the PostgreSQL URL."""
    url = postgres_url()
    if url:
        asyncio.run(_migrate_fresh(url))
        _CLEANER.append(_PostgresCleaner(url))
        try:
            yield url
        finally:
            _CLEANER.pop().close()
        return
    path = tmp_path_factory.mktemp("template") / "template.db"
    asyncio.run(_migrate_fresh(f"sqlite+aiosqlite:///{path}"))
    yield str(path)


@pytest.fixture
def database_url(migrated_template: str, tmp_path: Path) -> str:
    """The URL of a clean, migrated database for this test."""
    if postgres_url():
        clean_postgres()
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


@pytest.fixture
async def sms_api() -> AsyncIterator[FakeTencentSms]:
    """The fake Tencent Cloud SMS API on 127.0.0.1 (tests/fakes/tencent_sms.py)."""
    async with FakeTencentSms() as fake:
        yield fake


@pytest.fixture
def sms_settings(sms_api: FakeTencentSms) -> SmsSettings:
    """[sms] settings that point the SDK at the fake API."""
    return sms_api.settings()


# --- Telegram with the staff group, over real HTTP: a test file takes these with
# ``def settings(telegram_staff_settings)`` returning it ----------------------------------------


@pytest.fixture
async def telegram_api() -> AsyncIterator[FakeTelegram]:
    """The fake Telegram Bot API on 127.0.0.1 (tests/fakes/telegram_api.py)."""
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
def telegram_staff_settings(telegram_api: FakeTelegram) -> Settings:
    """Settings with the bot on the fake API and the staff group and roles of staff_support."""
    return staff_settings(Settings(telegram=TelegramSettings(
        token=telegram_api.token, base_url=telegram_api.base_url,
        base_file_url=telegram_api.base_file_url)))


@pytest.fixture
async def telegram_channel(app: App, fake_time: FakeTime) -> AsyncIterator[TelegramChannel]:
    """The started Telegram channel of ``app``, its limiter on the fake time."""
    async with running_telegram(app, RateLimiter(now=fake_time.now, sleep=fake_time.sleep)) as channel:
        yield channel


@pytest.fixture
def telegram_dispatcher(app: App, telegram_channel: TelegramChannel) -> Dispatcher:
    """The outbox dispatcher sending citizens' and staff notices over ``telegram_channel``."""
    return Dispatcher(database=app.database, centre=app.centre, settings=app.settings,
                      clock=app.clock, senders={"telegram": telegram_channel.sender},
                      staff_senders=[telegram_channel.sender])
