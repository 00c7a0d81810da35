"""The database: engine, sessions, and the column types shared by the models.

SQLite (WAL, busy timeout, foreign keys) is the embedded default; PostgreSQL via asyncpg is for
real deployments. A session is one transaction, committed by whoever opened it (the boundary of
an incoming update or a job), never by the operations it is passed to.

A SQLite file that cannot be written (its permissions, its folder's, an immutable attribute, a
read-only mount) is opened read-only by SQLite, and such a connection stays read-only after the
file becomes writable. A write that fails so is a passing outage ("try later"): it is logged
once, and while it lasts every write opens a fresh connection, so the first write after the
file is made writable succeeds without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, event, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session as SyncSession
from sqlalchemy.orm import SessionTransaction
from sqlalchemy.sql import CompoundSelect, Executable, Select
from sqlalchemy.types import TypeDecorator

JSONType = JSON().with_variant(JSONB(), "postgresql")

# What callers of the storage layer pass around: one transaction, opened by ``Database.session``
# or ``Database.read`` at the boundary and handed to every operation.
Session = AsyncSession

_READ_ONLY = "yuyue_read_only"

log = logging.getLogger("yuyue.db")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware instant, stored in UTC (SQLite keeps no zone, so it is stored naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored: give a timezone-aware one")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def is_outage(exc: BaseException) -> bool:
    """Whether an error is a passing database outage (connection lost, server down, SQLite
    busy) rather than a bug: the caller should answer "try later" and be called again."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, InterfaceError | ConnectionError | TimeoutError):
        return True
    if is_read_only(exc):
        return True
    return isinstance(exc, OperationalError) and any(
        word in str(exc.orig).lower() for word in ("locked", "connect", "timeout", "terminat"))


def is_read_only(exc: BaseException) -> bool:
    """Whether a write failed because SQLite opened the database read-only."""
    return isinstance(exc, OperationalError) and "readonly database" in str(exc.orig).lower()


def read_only_reason(path: Path) -> str:
    """Why SQLite cannot write ``path``, as far as this process can tell."""
    folder = path.parent
    if not os.access(path, os.W_OK):
        return f"the file {path} is not writable by this user"
    if not os.access(folder, os.W_OK):
        return (f"the folder {folder} is not writable by this user (SQLite keeps its -wal and "
                "-shm files beside the database)")
    return (f"{path} cannot be written although its permissions allow it: an immutable "
            "attribute (lsattr) or a read-only mount")


# --- statements run last, at commit ---------------------------------------------------------------

_AT_COMMIT = "yuyue_at_commit"


def at_commit(session: AsyncSession, statement: Executable) -> None:
    """Run ``statement`` as the transaction's last, right before it commits (after the last
    flush); never when the transaction, or the savepoint it was given in, is rolled back.

    For a write that nothing later in the transaction reads and that locks a row many
    transactions want: the row is then locked for that statement and the commit, not for the
    rest of the transaction (a confirmation moving its held seat to booked on a hot slot,
    while the conversation goes on to write the booking, the reply and its state).
    """
    sync = session.sync_session
    here = sync.get_nested_transaction() or sync.get_transaction()
    sync.info.setdefault(_AT_COMMIT, []).append((here, statement))


@event.listens_for(SyncSession, "before_commit")
def _run_at_commit(session: SyncSession) -> None:
    if session.get_nested_transaction() is not None:
        return      # a savepoint released, not the commit
    waiting = session.info.pop(_AT_COMMIT, None)
    if waiting:
        session.flush()
        for _transaction, statement in waiting:
            session.execute(statement)


@event.listens_for(SyncSession, "after_soft_rollback")
def _drop_at_commit(session: SyncSession, previous: SessionTransaction) -> None:
    waiting = session.info.get(_AT_COMMIT)
    if waiting:
        session.info[_AT_COMMIT] = [(transaction, statement) for transaction, statement in waiting
                                    if not _within(transaction, previous)]


def _within(transaction: SessionTransaction | None, outer: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False


class _Probe(Exception):
    """Ends the write probe's transaction with a rollback."""


def resolve_url(url: str, base_dir: Path) -> str:
    """Make a relative SQLite path absolute against ``base_dir`` and create its folder."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        if not path.is_absolute():
            path = base_dir / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return parsed.set(database=str(path)).render_as_string(hide_password=False)
    return url


class Database:
    """An async engine and the two kinds of session the product opens on it."""

    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10,
                 busy_timeout_ms: int = 30000) -> None:
        parsed = make_url(url)
        self.url = url
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.path = Path(parsed.database) if self.is_sqlite and parsed.database and \
            parsed.database != ":memory:" else None
        self.read_only = False   # the last write failed because the file was opened read-only
        self.pool_size = pool_size   # connections kept open (as many again may overflow)
        # hide_parameters: error messages never carry bound values (names, phones) into logs.
        options: dict[str, Any] = {"echo": echo, "hide_parameters": True}
        if self.is_sqlite:
            options["connect_args"] = {"timeout": busy_timeout_ms / 1000}
            options["pool_size"] = pool_size
            options["max_overflow"] = pool_size
        else:
            options["pool_size"] = pool_size
            options["max_overflow"] = pool_size
        self.engine: AsyncEngine = create_async_engine(url, **options)
        if self.is_sqlite:
            _configure_sqlite(self.engine, busy_timeout_ms)
        else:
            _drop_closed_connections(self.engine)
        # SQLite has one writer at a time. Waiting for it in an orderly queue here is fairer and
        # faster than every writer polling SQLite's busy handler (other processes still do).
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._readers = async_sessionmaker(self.engine.execution_options(**{_READ_ONLY: True}),
                                           expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        if self._write_lock is None:
            async with self._sessions() as session, session.begin():
                yield session
            return
        async with self._write_lock:
            if self.read_only:
                # Pooled connections were opened read-only and stay so: open a fresh one, which
                # can write as soon as the file can.
                await self.engine.dispose()
            try:
                async with self._sessions() as session, session.begin():
                    yield session
            except OperationalError as error:
                if is_read_only(error):
                    await self._went_read_only()
                raise
            if self.read_only:
                self.read_only = False
                log.warning("the database %s is writable again", self.path)

    async def _went_read_only(self) -> None:
        if not self.read_only:
            self.read_only = True
            where = read_only_reason(self.path) if self.path else "the database"
            log.error("the database is read-only: %s. Nothing can be stored (chats are asked to "
                      "try again later) until it is writable; then it recovers by itself, no "
                      "restart needed", where)
        await self.engine.dispose()

    async def write_problem(self) -> str | None:
        """Why nothing can be written now, or None when a write works (a rolled-back probe;
        SQLite only: PostgreSQL answers each write itself)."""
        if not self.is_sqlite:
            return None
        try:
            async with self.session() as session:
                version = int(await session.scalar(text("PRAGMA user_version")) or 0)
                await session.execute(text(f"PRAGMA user_version = {version}"))
                raise _Probe
        except _Probe:
            return None
        except OperationalError as error:
            if not is_read_only(error):
                raise
            return read_only_reason(self.path) if self.path else "the database is read-only"

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """One read-only transaction (on SQLite it does not take the write lock).

        It is never committed; closing it ends the transaction and leaves the loaded rows
        usable (detached, not expired)."""
        async with self._readers() as session:
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


def _drop_closed_connections(engine: AsyncEngine) -> None:
    """A pooled PostgreSQL connection the server has closed (a restart, an administrator's
    terminate, an idle timeout) is replaced by a new one before it is used.

    The server closing a connection closes its socket, which the event loop notices and
    asyncpg records, so the check costs no round trip. SQLAlchemy's ``pool_pre_ping`` asks
    the server instead, with BEGIN, an empty query and ROLLBACK before every transaction: three
    round trips of the ten or so a chat message needs. A connection that dies without the
    socket saying so (a network cut) fails at its first statement, an outage answered "try
    again later", as it would fail in the middle of a transaction anyway.
    """

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(_dbapi_connection: Any, _record: Any, proxy: Any) -> None:
        driver = proxy.driver_connection
        if driver is not None and driver.is_closed():
            raise DisconnectionError("the server closed this connection")


def _configure_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    """WAL, a busy timeout, foreign keys, and BEGIN IMMEDIATE for write transactions.

    pysqlite starts transactions lazily with a plain BEGIN; a transaction that reads and then
    writes can then fail at once with "database is locked" instead of waiting. Writers take the
    lock at BEGIN instead (the SQLAlchemy documentation's recipe), readers stay deferred.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get(_READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


# --- hot reads straight through asyncpg ----------------------------------------------------------
#
# A short read through the ORM session costs a few hundred microseconds of Python (the session's
# execute, the statement cache, result objects) around a query that PostgreSQL answers in a tenth
# of that. The hottest reads (the read every booking attempt starts with, the person's and the
# account's checks, a slot's details, the catalog stamp a menu reads) are plain Core statements
# built once: on PostgreSQL they are compiled once per process and run straight on the session's
# asyncpg connection, with the same bound values, type processing and error classes as through
# the session. On SQLite they go through the session.


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]                          # bound parameters, in $1, $2, … order
    defaults: dict[str, Any]                        # values bound when the statement was built
    binds: tuple[Callable[[Any], Any] | None, ...]
    results: tuple[Callable[[Any], Any] | None, ...]


_COMPILED: dict[int, tuple[Select[Any] | CompoundSelect, _Compiled]] = {}


def _compiled(statement: Select[Any] | CompoundSelect, dialect: Dialect) -> _Compiled:
    found = _COMPILED.get(id(statement))
    if found is not None and found[0] is statement:
        return found[1]
    compiled = statement.compile(dialect=dialect)
    given_later = {name for name, bind in compiled.binds.items() if bind.required}
    for name, bind in compiled.binds.items():
        # What is rendered into the SQL text (an IN list, a literal LIMIT) or computed per call
        # must be known now: the text is built once.
        if bind.callable is not None or (name in given_later and (
                bind.expanding or bind.literal_execute)):
            raise TypeError(f"fetch_rows cannot bind {name!r} at run time: give it with the "
                            "statement, or read through the session")
    # IN lists given with the statement are rendered now, one bound value per item.
    expanded = compiled.construct_expanded_state(dict.fromkeys(given_later))
    types = {name: bind.type for name, bind in compiled.binds.items()}
    for parent, items in (expanded.parameter_expansion or {}).items():
        types.update(dict.fromkeys(items, compiled.binds[parent].type))
    names = tuple(expanded.positiontup or ())
    made = _Compiled(   # the processors the dialect's own types use, as the session's are
        expanded.statement, names,
        {name: value for name, value in expanded.parameters.items() if name not in given_later},
        tuple(types[name].dialect_impl(dialect).bind_processor(dialect) for name in names),
        tuple(column.type.dialect_impl(dialect).result_processor(dialect, None)
              for column in statement.selected_columns))
    if len(_COMPILED) >= 256:   # statements built per call (a misuse) cannot grow it for ever
        _COMPILED.clear()
    _COMPILED[id(statement)] = (statement, made)   # the statement is kept: its id stays its own
    return made


async def fetch_rows(session: AsyncSession, statement: Select[Any] | CompoundSelect,
                     params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of a read statement built once (module level), as tuples.

    On PostgreSQL it runs on the session's connection inside its transaction when one has begun
    and on its own otherwise (a read outside the transaction sees what one first statement of it
    would: every statement takes its own snapshot at READ COMMITTED). A read that ends the
    attempt (a booking refused as full) then costs one round trip, no BEGIN and no ROLLBACK.
    Errors come as SQLAlchemy's, a lost connection invalidated (``is_outage`` sees it); the
    engine's ``before_cursor_execute`` listeners see the statement. Unlike ``session.execute``
    it does not flush the session's pending changes first: flush before a read that must see
    them. Values the SQL text depends on (IN lists, literal LIMITs) come with the statement.
    """
    if session.bind is None:
        raise TypeError("fetch_rows needs a session bound to an engine")
    plan = _compiled(statement, session.bind.dialect)   # what it cannot bind, refused on both
    if session.bind.dialect.name != "postgresql":
        return [tuple(row) for row in (await session.execute(statement, params)).all()]
    connection = await session.connection()
    values = []
    for name, bind in zip(plan.names, plan.binds, strict=True):
        value = params[name] if name in params else plan.defaults[name]
        values.append(value if bind is None else bind(value))
    fairy = await connection.get_raw_connection()
    sync = connection.sync_connection
    if sync is not None:   # what watches statements (tests, monitoring) sees this one too
        sync.dispatch.before_cursor_execute(sync, None, plan.sql, values, None, False)
    try:
        records = await fairy.driver_connection.fetch(plan.sql, *values)  # type: ignore[union-attr]
    except Exception as error:
        raise await _as_sqlalchemy_error(connection, fairy.dbapi_connection, plan.sql, error) from error
    except BaseException:
        # Cancelled mid-statement: what the connection is doing is unknown, so it is dropped
        # (as SQLAlchemy drops a connection whose statement was cancelled).
        with contextlib.suppress(Exception):
            await connection.invalidate()
        raise
    if not any(plan.results):
        return [tuple(record) for record in records]
    return [tuple(value if process is None else process(value)
                  for process, value in zip(plan.results, record, strict=True))
            for record in records]


async def _as_sqlalchemy_error(connection: AsyncConnection, adapter: Any, sql: str,
                               error: Exception) -> Exception:
    """The error SQLAlchemy raises for ``error`` from asyncpg (its DB-API translation), with the
    connection invalidated when it is lost, as a statement through the session would have it."""
    dialect = connection.dialect
    try:
        adapter._handle_exception(error)     # raises the DB-API form (IntegrityError, …)
    except dialect.loaded_dbapi.Error as translated:
        lost = dialect.is_disconnect(translated, adapter, None)
        if lost:
            await connection.invalidate()
        return DBAPIError.instance(sql, None, translated, dialect.loaded_dbapi.Error,
                                   hide_parameters=True, dialect=dialect,
                                   connection_invalidated=lost)
    except Exception as other:   # not a database error (an OSError, …): as it came
        return other
    return error
