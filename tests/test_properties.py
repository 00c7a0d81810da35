"""Property-based tests: the seat counts and the blacklist stay right for any sequence of
operations (hypothesis generates the sequences)."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from storage import blocks, booking, closures, seats, waitlist
from storage.catalog import ServiceDef, load_catalog, parse_catalog
from storage.clock import ManualClock
from storage.db import Database
from storage.identity import PersonDetails, find_or_create_person
from storage.models import Appointment, AppointmentStatus, Block, Channel, Hold, Service, Slot
from storage.refusals import BookingRefused
from storage.settings import RuleSettings
from storage.slots import ensure_slots, slot_times
from tests.conftest import clean_postgres, postgres_url
from tests.helpers import TZ, examples, make_centre

SMALL = """
[departments.hall]
name = "大厅"
address = "人民路1号"
[services.small]
department = "hall"
name = "小事项"
place = "1号窗口"
slot_minutes = 30
capacity = 4
online_share = 0.5
hours = { default = ["09:00-10:30"] }
[[services.small.materials]]
name = "身份证"
"""
START = dt.datetime(2026, 11, 23, 9, 0, tzinfo=TZ)
PROPERTY_SETTINGS = settings(max_examples=examples(25, on_postgres=10), deadline=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                    HealthCheck.too_slow])


def fresh_url(template: str, folder: Path, counter: list[int]) -> str:
    if postgres_url():
        clean_postgres()
        return template
    counter[0] += 1
    path = folder / f"example-{counter[0]}.db"
    shutil.copyfile(template, path)
    return f"sqlite+aiosqlite:///{path}"


operation = st.one_of(
    st.tuples(st.just("hold"), st.integers(0, 3), st.integers(0, 2)),
    st.tuples(st.just("book"), st.integers(0, 3), st.integers(0, 2)),
    st.tuples(st.just("book_held"), st.integers(0, 3), st.integers(0, 2)),
    st.tuples(st.just("cancel"), st.integers(0, 9), st.just(0)),
    st.tuples(st.just("reschedule"), st.integers(0, 9), st.integers(0, 2)),
    st.tuples(st.just("release"), st.integers(0, 3), st.just(0)),
    st.tuples(st.just("wait"), st.integers(0, 3), st.just(0)),
    st.tuples(st.just("time"), st.integers(1, 12), st.just(0)),
    st.tuples(st.just("closure"), st.integers(0, 2), st.just(0)),
)


async def run_operations(url: str, operations: list[tuple[str, int, int]]) -> None:
    database = Database(url, pool_size=2)
    clock = ManualClock(START)
    centre = make_centre(max_active_bookings=10, max_bookings_per_week=0, max_bookings_per_month=0,
                         booking_stop=None, min_lead_minutes=0)
    try:
        async with database.session() as session:
            await load_catalog(session, parse_catalog(SMALL), clock.now())
            service = (await session.scalars(select(Service))).one()
            await ensure_slots(session, centre, service, clock.now())
            day = dt.date(2026, 11, 24)
            slots = (await session.scalars(select(Slot).where(Slot.local_date == day)
                                           .order_by(Slot.starts_at))).all()
            people = [(await find_or_create_person(session, PersonDetails("市民", f"1390000000{n}"),
                                                   centre.hasher, clock.now())).id for n in range(4)]
            identities = []
            for n in range(4):
                from storage.identity import identity_for
                identities.append((await identity_for(session, "telegram", str(n), "zh-CN", clock.now())).id)
        slot_ids = [s.id for s in slots]
        assert len(slot_ids) == len(slot_times(ServiceDef.from_json(service.definition), day)) == 3
        appointments: list[int] = []
        for name, a, b in operations:
            try:
                async with database.session() as session:
                    now = clock.now()
                    owner = f"telegram:{a}"
                    if name == "hold":
                        await booking.hold_seat(session, centre, now, owner=owner, slot_id=slot_ids[b])
                    elif name in ("book", "book_held"):
                        made = await booking.book(
                            session, centre, now, person_id=people[a], slot_id=slot_ids[b],
                            identity_id=identities[a], channel=Channel.TELEGRAM, made_by=owner,
                            owner=owner if name == "book_held" else None)
                        appointments.append(made.id)
                    elif name == "cancel" and appointments:
                        await booking.cancel(session, centre, now, appointments[a % len(appointments)],
                                             actor="t")
                    elif name == "reschedule" and appointments:
                        await booking.reschedule(session, centre, now, appointments[a % len(appointments)],
                                                 slot_ids[b], actor="t")
                    elif name == "release":
                        await seats.release_holds(session, owner)
                    elif name == "wait":
                        await waitlist.join_waitlist(session, centre, now, identity_id=identities[a],
                                                    service_id=service.id, day=day)
                    elif name == "time":
                        clock.advance(minutes=a)
                        await waitlist.expire_holds(session, centre, clock.now())
                    elif name == "closure":
                        start = slots[a].starts_at
                        await closures.apply_closure(session, centre, now, starts_at=start,
                                                    ends_at=start + dt.timedelta(minutes=30),
                                                    reason="检修", actor="staff", service_id=service.id)
            except BookingRefused:
                pass
            await check_seat_invariants(database, slot_ids)
    finally:
        await database.dispose()


async def check_seat_invariants(database: Database, slot_ids: list[int]) -> None:
    async with database.read() as session:
        for slot_id in slot_ids:
            slot = await session.get(Slot, slot_id)
            assert slot is not None
            active = await session.scalar(select(func.count()).select_from(Appointment).where(
                Appointment.slot_id == slot_id, Appointment.offline.is_(False),
                Appointment.status.in_([AppointmentStatus.BOOKED, AppointmentStatus.CHECKED_IN])))
            holds = await session.scalar(select(func.count()).select_from(Hold).where(Hold.slot_id == slot_id))
            assert slot.booked == active, "booked seats match the appointments"
            assert slot.held == holds, "held seats match the holds"
            assert 0 <= slot.booked + slot.held <= slot.online_capacity, "never overbooked"


@PROPERTY_SETTINGS
@given(st.lists(operation, min_size=1, max_size=14))
# Found by hypothesis: a citizen on the waitlist who was holding the freed slot in a chat was
# offered it again (a second hold of the same seat for the same person).
@example(operations=[("wait", 0, 0), ("wait", 0, 0), ("hold", 2, 0), ("book", 3, 2), ("hold", 0, 2),
                     ("closure", 0, 0), ("book", 3, 1), ("cancel", 5, 0), ("time", 12, 0), ("book", 0, 2)])
def test_seat_counts_hold_for_any_sequence(migrated_template: str, tmp_path: Path,
                                           operations: list[tuple[str, int, int]]) -> None:
    counter = getattr(test_seat_counts_hold_for_any_sequence, "counter", [0])
    test_seat_counts_hold_for_any_sequence.counter = counter  # type: ignore[attr-defined]
    asyncio.run(run_operations(fresh_url(migrated_template, tmp_path, counter), operations))


def expected_blocks(days: list[int], rules: RuleSettings) -> list[tuple[int, int]]:
    """The blacklist rule written plainly: (day of the strike that blocks, block length)."""
    blocks = []
    for index, day in enumerate(days):
        count = sum(1 for earlier in days[:index + 1] if day - earlier < rules.strike_window_days)
        lengths = {tier.strikes: tier.days for tier in rules.block_tiers}
        top = rules.block_tiers[-1]
        if count in lengths:
            blocks.append((day, lengths[count]))
        elif count > top.strikes:
            blocks.append((day, top.days))
    return blocks


async def run_strikes(url: str, days: list[int]) -> list[tuple[int, int]]:
    database = Database(url, pool_size=2)
    centre = make_centre()
    try:
        async with database.session() as session:
            person = await find_or_create_person(session, PersonDetails("市民", "13900000000"),
                                                 centre.hasher, START)
        for day in days:
            async with database.session() as session:
                await blocks.add_strike(session, centre, START + dt.timedelta(days=day), person.id, "no_show")
        async with database.read() as session:
            rows = (await session.scalars(select(Block).order_by(Block.id))).all()
            return [((b.starts_at - START).days, (b.ends_at - b.starts_at).days) for b in rows]
    finally:
        await database.dispose()


@PROPERTY_SETTINGS
@given(st.lists(st.integers(0, 900), min_size=1, max_size=9).map(sorted))
def test_strikes_and_blocks_follow_the_rules(migrated_template: str, tmp_path: Path, days: list[int]) -> None:
    counter = getattr(test_strikes_and_blocks_follow_the_rules, "counter", [0])
    test_strikes_and_blocks_follow_the_rules.counter = counter  # type: ignore[attr-defined]
    got = asyncio.run(run_strikes(fresh_url(migrated_template, tmp_path, counter), days))
    assert got == expected_blocks(days, RuleSettings())
