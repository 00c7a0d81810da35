"""Property-based test: whatever three accounts do (add people, book, cancel, link, unlink,
attach a staff booking, type an ID number under another name), each sees exactly the bookings
it made or an account linked to it made, and staff bookings only once attached by proof."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import booking
from storage.accounts import (
    AccountRefusal,
    AccountRefused,
    add_person,
    appointment_for,
    visible_bookings,
)
from storage.catalog import load_catalog, parse_catalog
from storage.centre import Centre
from storage.clock import ManualClock
from storage.db import Database
from storage.identity import NameMismatch, PersonDetails, identity_for
from storage.linking import OneTimeCode, attach_staff_booking, link_with, unlink_accounts
from storage.models import Appointment, Channel, Person, Relation, Service, Slot
from storage.refusals import BookingRefused
from storage.slots import ensure_slots
from tests.helpers import make_centre, valid_id
from tests.test_properties import PROPERTY_SETTINGS, SMALL, START, fresh_url

ACCOUNTS = 3
NAMES = ("张三", "李秀英", "王小明")
NUMBERS = tuple(valid_id(f"1101051980010{n}00{n}") for n in range(3))
DAYS = (dt.date(2026, 11, 24), dt.date(2026, 11, 25), dt.date(2026, 11, 26))


@dataclass
class Model:
    """What each account should see, written plainly."""

    links: set[frozenset[int]] = field(default_factory=set)
    made_by: dict[int, int | None] = field(default_factory=dict)     # appointment -> account
    staff: set[int] = field(default_factory=set)
    attached: set[int] = field(default_factory=set)
    active: set[int] = field(default_factory=set)

    def sees(self, account: int, appointment: int) -> bool:
        maker = self.made_by[appointment]
        if maker is None or (appointment in self.staff and appointment not in self.attached):
            return False
        return maker == account or frozenset((account, maker)) in self.links


operation = st.one_of(
    st.tuples(st.just("add"), st.integers(0, 2), st.integers(0, 2), st.sampled_from(list(Relation))),
    st.tuples(st.just("add_other_name"), st.integers(0, 2), st.integers(0, 2), st.just(None)),
    st.tuples(st.just("book"), st.integers(0, 2), st.integers(0, 2), st.integers(0, 8)),
    st.tuples(st.just("staff_book"), st.integers(-1, 2), st.integers(0, 2), st.integers(0, 8)),
    st.tuples(st.just("cancel"), st.integers(0, 2), st.integers(0, 19), st.just(None)),
    st.tuples(st.just("link"), st.integers(0, 2), st.integers(0, 2), st.just(None)),
    st.tuples(st.just("unlink"), st.integers(0, 2), st.integers(0, 2), st.just(None)),
    st.tuples(st.just("attach"), st.integers(0, 2), st.integers(0, 19), st.just(None)),
)


async def run_operations(url: str, operations: list[tuple[str, int, int, object]]) -> None:
    database = Database(url, pool_size=2)
    clock = ManualClock(START)
    centre = make_centre(max_active_bookings=10, max_bookings_per_week=0, max_bookings_per_month=0,
                         booking_stop=None, min_lead_minutes=0)
    model = Model()
    try:
        async with database.session() as session:
            await load_catalog(session, parse_catalog(SMALL), clock.now())
            service = (await session.scalars(select(Service))).one()
            await ensure_slots(session, centre, service, clock.now())
            slots = [s.id for s in (await session.scalars(
                select(Slot).where(Slot.local_date.in_(DAYS)).order_by(Slot.starts_at))).all()]
            accounts = [(await identity_for(session, "telegram", str(n), "zh-CN", clock.now())).id
                        for n in range(ACCOUNTS)]
            people = []
            for name, number in zip(NAMES, NUMBERS, strict=True):  # known to the centre already
                made = Person(name=name, mobile="13800000000", created_at=clock.now(),
                              updated_at=clock.now(), id_hash=centre.hasher.hash(number),
                              id_masked=number[:3], id_tail_hash=centre.hasher.tail_hash(number))
                session.add(made)
                await session.flush()
                people.append(made.id)
        assert len(slots) == 9
        appointments: list[int] = []
        for name, a, b, extra in operations:
            async with database.session() as session:
                await apply(session, centre, clock.now(), model, (name, a, b, extra), accounts, people,
                            slots, appointments)
            await check_visibility(database, accounts, appointments, model)
    finally:
        await database.dispose()


async def apply(session: AsyncSession, centre: Centre, now: dt.datetime, model: Model,
                step: tuple[str, int, int, object], accounts: list[int], people: list[int],
                slots: list[int], appointments: list[int]) -> None:
    """Run one step, and the model's idea of it; a refusal must be one the model expects."""
    name, a, b, extra = step
    account = accounts[a]
    if name == "add":
        assert isinstance(extra, Relation)
        try:
            await add_person(session, centre, now, account_id=account, relation=extra,
                             details=PersonDetails(NAMES[b], "13900000000", NUMBERS[b]),
                             consent_version="v1")
        except AccountRefused as refused:
            assert refused.reason == AccountRefusal.SELF_TAKEN and extra == Relation.SELF
    elif name == "add_other_name":
        with pytest.raises(NameMismatch):
            await add_person(session, centre, now, account_id=account, relation=Relation.OTHER,
                             details=PersonDetails("赵六", "13900000000", NUMBERS[b]),
                             consent_version="v1")
    elif name in ("book", "staff_book"):
        staff = name == "staff_book"
        maker = None if a < 0 else account
        try:
            made = await booking.book(
                session, centre, now, person_id=people[b], slot_id=slots[int(str(extra))],
                identity_id=maker, channel=Channel.STAFF if staff else Channel.TELEGRAM,
                made_by="staff" if staff else f"account:{maker}", offline=staff)
        except BookingRefused:
            return
        appointments.append(made.id)
        model.made_by[made.id] = maker
        model.active.add(made.id)
        if staff:
            model.staff.add(made.id)
    elif name == "cancel" and appointments:
        target = appointments[b % len(appointments)]
        found = await appointment_for(session, account_id=account, appointment_id=target, lock=True)
        assert (found is not None) == model.sees(account, target)
        if found is not None:
            try:
                await booking.cancel(session, centre, now, target, actor=f"account:{account}")
            except BookingRefused:
                return
            model.active.discard(target)
    elif name == "link":
        verifier = OneTimeCode(centre)
        challenge = await verifier.challenge(session, now, account_id=accounts[b])
        assert challenge.code is not None
        try:
            await link_with(session, now, verifier, account_id=account, answer=challenge.code)
        except AccountRefused as refused:
            assert refused.reason == AccountRefusal.OWN_CODE and a == b
            return
        model.links.add(frozenset((account, accounts[b])))
    elif name == "unlink":
        pair = frozenset((account, accounts[b]))
        try:
            await unlink_accounts(session, now, account_id=account, other_id=accounts[b])
        except AccountRefused as refused:
            assert refused.reason == AccountRefusal.NOT_LINKED and pair not in model.links
            return
        assert pair in model.links
        model.links.discard(pair)
    elif name == "attach" and appointments:
        target = appointments[b % len(appointments)]
        row = await session.get(Appointment, target)
        assert row is not None
        number = NUMBERS[people.index(row.person_id)]
        try:
            await attach_staff_booking(session, centre, now, account_id=account, code=row.code,
                                       id_tail=number[-6:])
        except AccountRefused as refused:
            mine = target in model.attached and model.made_by[target] == account
            assert (refused.reason == AccountRefusal.NOT_ATTACHABLE and target not in model.active) \
                or (refused.reason == AccountRefusal.WRONG_ANSWER and not mine
                    and (target not in model.staff or target in model.attached)) \
                or refused.reason == AccountRefusal.LOCKED
            return
        assert target in model.staff and target in model.active
        assert target not in model.attached or model.made_by[target] == account
        model.attached.add(target)
        model.made_by[target] = account


async def check_visibility(database: Database, accounts: list[int], appointments: list[int],
                           model: Model) -> None:
    async with database.read() as session:
        for account in accounts:
            groups = await visible_bookings(session, account_id=account, limit=1000)
            shown = {a.id for group in groups for a in group.appointments}
            assert shown == {x for x in appointments if model.sees(account, x)}, account
            assert all(a.person_id == g.person.person_id for g in groups for a in g.appointments)
            for target in appointments:
                found = await appointment_for(session, account_id=account, appointment_id=target)
                assert (found is not None) == model.sees(account, target)
        names = (await session.scalars(select(Person.name).order_by(Person.id))).all()
        assert list(names[:len(NAMES)]) == list(NAMES), "typing an ID number renamed nobody"


@PROPERTY_SETTINGS
@given(st.lists(operation, min_size=1, max_size=16))
@example(operations=[("staff_book", 0, 0, 0), ("book", 1, 0, 3), ("link", 0, 1, None),
                     ("attach", 2, 0, None), ("attach", 0, 0, None), ("unlink", 1, 0, None),
                     ("add_other_name", 2, 0, None), ("cancel", 1, 0, None), ("cancel", 2, 0, None)])
def test_no_account_ever_sees_a_booking_it_should_not(migrated_template: str, tmp_path: Path,
                                                      operations: list[tuple[str, int, int, object]]) -> None:
    counter = getattr(test_no_account_ever_sees_a_booking_it_should_not, "counter", [0])
    test_no_account_ever_sees_a_booking_it_should_not.counter = counter  # type: ignore[attr-defined]
    asyncio.run(run_operations(fresh_url(migrated_template, tmp_path, counter), operations))
