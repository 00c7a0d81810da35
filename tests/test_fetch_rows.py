"""Hot reads run straight on the session's connection (storage.db.fetch_rows): the same rows,
values and errors as through the session, on both databases, and inside the session's
transaction once it has begun."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import (
    Integer,
    Interval,
    bindparam,
    column,
    event,
    func,
    literal,
    select,
    table,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError

from storage.clock import ManualClock
from storage.db import Database, fetch_rows, is_outage
from storage.models import Appointment, AppointmentStatus, Slot
from storage.seats import _SLOT_FOR_BOOKING, slot_for_booking
from tests.helpers import load_demo, make_centre, slots_of
from tests.test_booking import book_one

TUESDAY = dt.date(2026, 11, 24)
_ONE = select(literal(1) + bindparam("zero"))
_ACTIVE = (select(Appointment.id, Appointment.status)
           .where(Appointment.status.in_([AppointmentStatus.BOOKED, AppointmentStatus.CHECKED_IN]),
                  Appointment.starts_at > bindparam("after"))
           .order_by(Appointment.starts_at))
_INTERVAL = select(bindparam("length", type_=Interval()))
_OR_SEVEN = select(func.coalesce(bindparam("maybe", None, type_=Integer), 7))
_ANY_OF = select(literal(1)).where(literal(2).in_(bindparam("ids", expanding=True)))
_SLEEP = select(func.pg_sleep(bindparam("seconds")))
_MISSING = select(column("x")).select_from(table("no_such_table")).where(column("x") == bindparam("x"))


async def test_rows_and_values_are_those_the_session_reads(database: Database,
                                                           clock: ManualClock) -> None:
    centre = make_centre()
    async with database.session() as session:
        service = (await load_demo(session, clock.now()))["id_card"]
        first = (await slots_of(session, centre, service, clock.now(), TUESDAY))[0]
        await session.execute(update(Slot).where(Slot.id == first.id)
                              .values(booked=Slot.online_capacity))
    params = {"slot_id": first.id, "now": clock.now(), "today": centre.today(clock.now())}
    async with database.read() as session:
        through_session = [tuple(row) for row in (await session.execute(_SLOT_FOR_BOOKING, params))]
        straight = await fetch_rows(session, _SLOT_FOR_BOOKING, params)
    assert straight == through_session
    assert len(straight) > 1                      # the full slot and its alternatives
    starts = [row[5] for row in straight]
    assert all(value.utcoffset() == dt.timedelta(0) for value in starts)   # aware, in UTC


async def test_in_lists_and_enums_bound_as_the_session_binds_them(database: Database,
                                                                  clock: ManualClock) -> None:
    centre = make_centre()
    async with database.session() as session:
        service = (await load_demo(session, clock.now()))["id_card"]
        slots = (await slots_of(session, centre, service, clock.now(), TUESDAY))[:3]
    for n, slot in enumerate(slots):
        await book_one(database, centre, clock, slot.id, n=n)
    async with database.session() as session:
        await session.execute(update(Appointment).where(Appointment.slot_id == slots[1].id)
                              .values(status=AppointmentStatus.CHECKED_IN))
        await session.execute(update(Appointment).where(Appointment.slot_id == slots[2].id)
                              .values(status=AppointmentStatus.CANCELLED))
    params = {"after": clock.now()}
    async with database.read() as session:
        straight = await fetch_rows(session, _ACTIVE, params)
        assert straight == [tuple(row) for row in (await session.execute(_ACTIVE, params))]
    assert [status for _, status in straight] == [AppointmentStatus.BOOKED,
                                                  AppointmentStatus.CHECKED_IN]


async def test_a_read_in_a_begun_transaction_sees_its_writes(database: Database,
                                                            clock: ManualClock) -> None:
    centre = make_centre()
    async with database.session() as session:
        service = (await load_demo(session, clock.now()))["id_card"]
        slot = (await slots_of(session, centre, service, clock.now(), TUESDAY))[0]
    async with database.session() as session:
        await session.execute(update(Slot).where(Slot.id == slot.id)
                              .values(booked=Slot.online_capacity))
        read = await slot_for_booking(session, centre, slot.id, clock.now())
        assert read.full and read.info.slot.booked == slot.online_capacity
        await session.rollback()
    async with database.read() as session:
        read = await slot_for_booking(session, centre, slot.id, clock.now())
    assert not read.full and read.info.slot.booked == 0


async def test_a_failing_read_raises_sqlalchemys_error(database: Database) -> None:
    async with database.session() as session:
        with pytest.raises(DBAPIError) as raised:
            await fetch_rows(session, _MISSING, {"x": 1})
        assert "no_such_table" in str(raised.value).lower()
        assert not is_outage(raised.value)


async def test_a_connection_the_server_ended_is_an_outage_and_is_replaced(
        database: Database) -> None:
    if database.is_sqlite:
        pytest.skip("PostgreSQL's connections; SQLite has no server to end them")
    async with database.session() as session:
        mine = await session.scalar(text("SELECT pg_backend_pid()"))
        admin = Database(database.url, pool_size=1)
        try:
            async with admin.session() as other:
                await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": mine})
        finally:
            await admin.dispose()
        with pytest.raises(DBAPIError) as raised:
            await fetch_rows(session, _ONE, {"zero": 0})
        await session.rollback()
    assert is_outage(raised.value) and raised.value.connection_invalidated
    async with database.read() as session:           # the pool hands out a working connection
        assert await fetch_rows(session, _ONE, {"zero": 0}) == [(1,)]


async def test_values_are_bound_by_the_dialects_own_types(database: Database) -> None:
    async with database.read() as session:
        length = dt.timedelta(hours=1, minutes=30)
        assert await fetch_rows(session, _INTERVAL, {"length": length}) == [(length,)]
        assert await fetch_rows(session, _OR_SEVEN, {}) == [(7,)]     # a None given with it
        assert await fetch_rows(session, _OR_SEVEN, {"maybe": 3}) == [(3,)]


async def test_an_in_list_given_at_run_time_is_refused_on_both_databases(
        database: Database) -> None:
    """The SQL text is built once: an IN list given per call would be read as empty."""
    async with database.read() as session:
        with pytest.raises(TypeError, match="ids"):
            await fetch_rows(session, _ANY_OF, {"ids": [1, 2]})


async def test_a_read_cancelled_mid_statement_drops_its_connection(database: Database) -> None:
    if database.is_sqlite:
        pytest.skip("a PostgreSQL statement in flight")
    sent = asyncio.Event()

    def sending(*_args: object) -> None:
        sent.set()

    async with database.read() as session:
        pid = await session.scalar(text("SELECT pg_backend_pid()"))
        event.listen(database.engine.sync_engine, "before_cursor_execute", sending)
        try:
            read = asyncio.ensure_future(fetch_rows(session, _SLEEP, {"seconds": 60}))
            # The listener runs as the statement goes out; this test runs again only once the
            # read waits for the server's answer, which takes 60 s to come.
            await sent.wait()
        finally:
            event.remove(database.engine.sync_engine, "before_cursor_execute", sending)
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await read
        connection = await session.connection()
        assert connection.invalidated
    async with database.read() as session:     # a new connection, which works
        assert await session.scalar(text("SELECT pg_backend_pid()")) != pid
        assert await fetch_rows(session, _ONE, {"zero": 0}) == [(1,)]
