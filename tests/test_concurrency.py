"""200 citizens press "book" on a slot with 20 online seats at the same moment."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import func, select

from storage import booking
from storage.catalog import load_catalog, parse_catalog
from storage.clock import ManualClock
from storage.db import Database
from storage.identity import PersonDetails, find_or_create_person
from storage.models import Appointment, Channel, Service, Slot
from storage.refusals import BookingRefused, Refusal
from storage.slots import ensure_slots
from tests.helpers import make_centre, slots_of

RUSH = """
[departments.hall]
name = "大厅"
address = "人民路1号"
[services.rush]
department = "hall"
name = "热门事项"
place = "1号窗口"
slot_minutes = 60
capacity = 40
online_share = 0.5
hours = { default = ["09:00-10:00"] }
[[services.rush.materials]]
name = "身份证"
"""

CITIZENS = 200


async def test_two_hundred_concurrent_bookings_of_twenty_seats(database: Database,
                                                                clock: ManualClock) -> None:
    centre = make_centre()
    async with database.session() as session:
        await load_catalog(session, parse_catalog(RUSH), clock.now())
        service = (await session.scalars(select(Service))).one()
        slot = (await slots_of(session, centre, service, clock.now(), dt.date(2026, 11, 24)))[0]
        people = [await find_or_create_person(session, PersonDetails("市民", f"139{n:08d}"),
                                              centre.hasher, clock.now()) for n in range(CITIZENS)]
    assert slot.online_capacity == 20
    person_ids = [p.id for p in people]

    async def press(person_id: int) -> str:
        try:
            async with database.session() as session:
                await booking.book(session, centre, clock.now(), person_id=person_id,
                                   slot_id=slot.id, identity_id=None, channel=Channel.TELEGRAM,
                                   made_by=f"p{person_id}")
            return "booked"
        except BookingRefused as refused:
            return refused.reason.value

    outcomes = await asyncio.gather(*(press(p) for p in person_ids))
    assert outcomes.count("booked") == 20
    assert outcomes.count(Refusal.FULL.value) == 180
    async with database.read() as session:
        stored = await session.get(Slot, slot.id)
        assert stored is not None and (stored.booked, stored.held) == (20, 0)
        assert await session.scalar(select(func.count()).select_from(Appointment)) == 20
        codes = (await session.scalars(select(Appointment.code))).all()
        assert len(set(codes)) == 20


async def test_two_first_looks_at_a_new_day_both_make_its_slots(database: Database,
                                                                clock: ManualClock) -> None:
    """Citizens opening a newly released day at the same moment each make its slots: the
    second skips the slots the first made (it failed on the unique slot before)."""
    centre = make_centre()
    async with database.session() as session:
        await load_catalog(session, parse_catalog(RUSH), clock.now())
    gate = asyncio.Event()

    async def look() -> None:
        async with database.session() as session:
            service = (await session.scalars(select(Service))).one()
            await gate.wait()
            await ensure_slots(session, centre, service, clock.now())

    looks = [asyncio.create_task(look()) for _ in range(4)]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*looks)
    async with database.read() as session:
        starts = (await session.scalars(select(Slot.starts_at))).all()
    assert starts and len(starts) == len(set(starts))
