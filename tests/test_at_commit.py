"""Statements run last, at commit (``storage.db.at_commit``), and the confirmation of a held
seat, which moves it to booked that way: the hot slot's row is not locked while the rest of the
booking is written."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text, update

from storage import booking
from storage.clock import ManualClock
from storage.db import Database, at_commit
from storage.models import Channel, Slot
from tests.test_booking import TUESDAY, new_citizen, setup, slot_counts


def _add_seat(slot_id: int):  # type: ignore[no-untyped-def]
    return (update(Slot).where(Slot.id == slot_id).values(capacity=Slot.capacity + 1)
            .execution_options(synchronize_session=False))


async def _capacity(database: Database, slot_id: int) -> int:
    async with database.read() as session:
        return int(await session.scalar(select(Slot.capacity).where(Slot.id == slot_id)) or 0)


async def test_a_statement_at_commit_runs_last_and_only_if_the_transaction_commits(
        database: Database, centre, clock: ManualClock) -> None:  # type: ignore[no-untyped-def]
    _, slots = await setup(database, centre, clock)
    slot_id = slots[0].id
    before = await _capacity(database, slot_id)
    async with database.session() as session:
        at_commit(session, _add_seat(slot_id))
        # Not yet: it runs when the transaction commits.
        assert await session.scalar(select(Slot.capacity).where(Slot.id == slot_id)) == before
    assert await _capacity(database, slot_id) == before + 1

    class Undone(Exception):
        pass

    with pytest.raises(Undone):
        async with database.session() as session:
            at_commit(session, _add_seat(slot_id))
            raise Undone
    async with database.session() as session:    # nothing left over from the rolled-back one
        pass
    assert await _capacity(database, slot_id) == before + 1

    async with database.session() as session:
        at_commit(session, _add_seat(slot_id))            # kept
        with pytest.raises(Undone):
            async with session.begin_nested():
                at_commit(session, _add_seat(slot_id))    # its savepoint is rolled back
                raise Undone
        async with session.begin_nested():
            at_commit(session, _add_seat(slot_id))        # its savepoint is released: kept
    assert await _capacity(database, slot_id) == before + 3


async def test_confirming_a_held_seat_locks_the_slot_only_at_commit(
        database: Database, centre, clock: ManualClock) -> None:  # type: ignore[no-untyped-def]
    _, slots = await setup(database, centre, clock, "dental", TUESDAY)
    slot_id = slots[0].id
    person_id, identity_id = await new_citizen(database, centre, clock, 1)
    async with database.session() as session:
        await booking.hold_seat(session, centre, clock.now(), owner="wechat:o1", slot_id=slot_id)
    assert await slot_counts(database, slot_id) == (0, 1)
    other = Database(database.url, pool_size=1)
    try:
        async with database.session() as session:
            appointment = await booking.book(
                session, centre, clock.now(), person_id=person_id, slot_id=slot_id,
                identity_id=identity_id, channel=Channel.WECHAT, made_by="wechat:o1",
                owner="wechat:o1")
            if not database.is_sqlite:
                # The booking is written; the slot's row is still free for everyone else.
                async with other.session() as elsewhere:
                    await elsewhere.execute(text("SET LOCAL lock_timeout = '1ms'"))
                    await elsewhere.execute(text(
                        "SELECT id FROM slot WHERE id = :id FOR NO KEY UPDATE"), {"id": slot_id})
            # Until the commit the seat stays counted as held: nobody else can take it.
            assert (await session.execute(select(Slot.booked, Slot.held)
                                          .where(Slot.id == slot_id))).one() == (0, 1)
    finally:
        await other.dispose()
    assert appointment.slot_id == slot_id
    assert await slot_counts(database, slot_id) == (1, 0)
