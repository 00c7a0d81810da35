"""The seats a slot keeps for the window (walk-ins and phone callers), stated once in
storage/seats.py, on both databases."""

from __future__ import annotations

import datetime as dt

from storage.clock import ManualClock
from storage.db import Database
from storage.models import Closure
from storage.seats import take_offline_seat, window_seats_left, window_slots
from tests.helpers import load_demo, make_centre, slots_of

TUESDAY = dt.date(2026, 11, 24)


async def test_the_window_keeps_its_share_until_it_is_taken(database: Database,
                                                           clock: ManualClock) -> None:
    centre = make_centre()
    async with database.session() as session:
        service = (await load_demo(session, clock.now()))["id_card"]
        first, second, third = (await slots_of(session, centre, service, clock.now(), TUESDAY))[:3]
        kept = window_seats_left(first)
        assert kept == first.capacity - first.online_capacity > 0
        for _ in range(kept):
            assert await take_offline_seat(session, first.id)
        assert not await take_offline_seat(session, first.id)       # the online share stays
        session.add(Closure(service_id=service.id, starts_at=second.starts_at,
                            ends_at=second.ends_at, reason="停电", created_by="staff:1",
                            created_at=clock.now()))
        await session.flush()
        listed = {s.id for s in await window_slots(session, centre, service, [TUESDAY], clock.now())}
    assert first.id not in listed and second.id not in listed and third.id in listed
