"""Accounts and the people they book for, against a real database (SQLite and PostgreSQL):
an ID number opens nobody's record, a relative does not take over the account, the caps
across an account's people, consent, erasure and staff corrections."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from sqlalchemy import select

from storage import attendance, booking
from storage.accounts import (
    AccountRefusal,
    AccountRefused,
    add_person,
    appointment_for,
    correct_person,
    erase_person,
    may_act_on,
    my_data,
    people_of,
    remove_person,
    visible_bookings,
)
from storage.centre import Centre
from storage.clock import ManualClock
from storage.db import Database
from storage.identity import InvalidValue, NameMismatch, PersonDetails
from storage.models import (
    AccountPerson,
    Appointment,
    AppointmentStatus,
    AuditLog,
    Channel,
    ChannelIdentity,
    Outbox,
    OutboxStatus,
    Person,
    Relation,
    Slot,
)
from storage.refusals import BookingRefused, Refusal
from tests.helpers import account, load_demo, make_centre, slots_of, valid_id

NOTICE = "2026-12"
HOLDER_ID = valid_id("11010519800101001")
MOTHER_ID = valid_id("11010519520303002")
DAYS = [dt.date(2026, 11, 24) + dt.timedelta(days=n) for n in range(4)]   # Tuesday to Friday


@pytest.fixture
def centre() -> Centre:
    return make_centre()


async def open_days(database: Database, centre: Centre, clock: ManualClock,
                    code: str = "id_card") -> dict[dt.date, list[Slot]]:
    async with database.session() as session:
        services = await load_demo(session, clock.now())
        return {day: await slots_of(session, centre, services[code], clock.now(), day)
                for day in DAYS}


async def new_account(database: Database, clock: ManualClock, user: str,
                      channel: str = "telegram") -> int:
    async with database.session() as session:
        return (await account(session, clock.now(), user=user, channel=channel)).id


async def add(database: Database, centre: Centre, clock: ManualClock, account_id: int, name: str,
              id_number: str | None, relation: Relation = Relation.SELF,
              mobile: str = "13812345678") -> int:
    async with database.session() as session:
        view = await add_person(session, centre, clock.now(), account_id=account_id,
                                details=PersonDetails(name, mobile, id_number), relation=relation,
                                consent_version=NOTICE)
        return view.person_id


async def book(database: Database, centre: Centre, clock: ManualClock, account_id: int | None,
               person_id: int, slot: Slot, *, staff: bool = False) -> Appointment:
    async with database.session() as session:
        return await booking.book(
            session, centre, clock.now(), person_id=person_id, slot_id=slot.id,
            identity_id=account_id, channel=Channel.STAFF if staff else Channel.TELEGRAM,
            made_by="staff:9" if staff else f"account:{account_id}", offline=staff)


async def seen(database: Database, account_id: int) -> dict[int, set[str]]:
    """Person id -> booking codes the account sees."""
    async with database.read() as session:
        groups = await visible_bookings(session, account_id=account_id)
    return {g.person.person_id: {a.code for a in g.appointments} for g in groups}


async def test_a_stranger_with_a_known_id_number_sees_nothing_changes_nothing_cannot_cancel(
        database: Database, centre: Centre, clock: ManualClock) -> None:
    slots = await open_days(database, centre, clock)
    holder = await new_account(database, clock, "holder")
    stranger = await new_account(database, clock, "o-stranger", "wechat")
    me = await add(database, centre, clock, holder, "张三", HOLDER_ID)
    mine = await book(database, centre, clock, holder, me, slots[DAYS[0]][0])
    # Made at the window; its reminders go to the account bound the old way, yet that
    # account does not see it until it proves it is theirs (storage.linking).
    at_window = await book(database, centre, clock, holder, me, slots[DAYS[1]][0], staff=True)

    with pytest.raises(NameMismatch):                      # another name: refused outright
        await add(database, centre, clock, stranger, "李四", HOLDER_ID, mobile="13900000000")
    typed_same_name = await add(database, centre, clock, stranger, "张三", HOLDER_ID,
                                mobile="13900000000")
    assert typed_same_name == me                           # the rules follow the person...
    async with database.read() as session:
        person = await session.get(Person, me)
        assert person is not None and (person.name, person.mobile) == ("张三", "13812345678")
        for appointment_id in (mine.id, at_window.id):     # ...but nothing of theirs opens
            assert await appointment_for(session, account_id=stranger,
                                         appointment_id=appointment_id) is None
            assert not await may_act_on(session, account_id=stranger, appointment_id=appointment_id)
        assert await appointment_for(session, account_id=stranger, code=mine.code) is None
    assert await seen(database, stranger) == {}
    assert await seen(database, holder) == {me: {mine.code}}
    async with database.read() as session:   # it is shown what it typed, not what is on record
        assert [(p.name, p.mobile) for p in await people_of(session, account_id=stranger)] == [
            ("张*", "139****0000")]

    with pytest.raises(BookingRefused) as refused:         # same person, same service, same day
        await book(database, centre, clock, stranger, me, slots[DAYS[0]][3])
    assert refused.value.reason == Refusal.DUPLICATE
    theirs = await book(database, centre, clock, stranger, me, slots[DAYS[2]][0])
    assert await seen(database, holder) == {me: {mine.code}}   # nor do they see the stranger's
    assert await seen(database, stranger) == {me: {theirs.code}}
    async with database.read() as session:
        assert (await session.get(Appointment, mine.id)).status == AppointmentStatus.BOOKED  # type: ignore[union-attr]


async def test_a_relative_does_not_take_over_the_holders_own_bookings(
        database: Database, centre: Centre, clock: ManualClock) -> None:
    slots = await open_days(database, centre, clock)
    holder = await new_account(database, clock, "holder")
    me = await add(database, centre, clock, holder, "张三", HOLDER_ID)
    async with database.session() as session:     # the handlers' old single binding
        row = await session.get(ChannelIdentity, holder)
        assert row is not None
        row.person_id = me
    own = await book(database, centre, clock, holder, me, slots[DAYS[0]][0])
    mother = await add(database, centre, clock, holder, "李秀英", MOTHER_ID, Relation.PARENT,
                       mobile="13900000001")
    for_mother = await book(database, centre, clock, holder, mother, slots[DAYS[0]][1])

    async with database.read() as session:
        groups = await visible_bookings(session, account_id=holder)
        people = await people_of(session, account_id=holder)
        assert await may_act_on(session, account_id=holder, appointment_id=own.id)
        assert await may_act_on(session, account_id=holder, appointment_id=for_mother.id)
        binding = await session.get(ChannelIdentity, holder)
        assert binding is not None and binding.person_id == me
        reminded = set((await session.scalars(select(Outbox.identity_id).where(
            Outbox.appointment_id.in_([own.id, for_mother.id])))).all())
        assert reminded == {holder}
    assert [(g.person.relation, [a.code for a in g.appointments]) for g in groups] == [
        (Relation.SELF, [own.code]), (Relation.PARENT, [for_mother.code])]
    assert [(p.relation, p.name, p.id_number, p.consent_version) for p in people] == [
        (Relation.SELF, "张*", f"110***********{HOLDER_ID[-4:]}", NOTICE),
        (Relation.PARENT, "李*英", f"110***********{MOTHER_ID[-4:]}", NOTICE)]


async def test_the_account_cap_refuses_the_seventh_upcoming_booking_across_three_people(
        database: Database, centre: Centre, clock: ManualClock) -> None:
    slots = await open_days(database, centre, clock)
    holder = await new_account(database, clock, "holder")
    people = [await add(database, centre, clock, holder, name, number, relation)
              for name, number, relation in (
                  ("张三", HOLDER_ID, Relation.SELF), ("李秀英", MOTHER_ID, Relation.PARENT),
                  ("张小明", valid_id("11010520150505003"), Relation.CHILD))]
    made = []
    for n in range(6):                                     # 3 + 2 + 1, on different days
        person_id = people[0 if n < 3 else 1 if n < 5 else 2]
        made.append(await book(database, centre, clock, holder, person_id, slots[DAYS[n % 3]][n]))
    with pytest.raises(BookingRefused) as refused:
        await book(database, centre, clock, holder, people[2], slots[DAYS[3]][0])
    assert refused.value.reason == Refusal.CAP_ACCOUNT and refused.value.details["limit"] == 6
    # The window books for them whatever the account holds (staff bookings skip the caps).
    await book(database, centre, clock, None, people[2], slots[DAYS[0]][5], staff=True)
    async with database.session() as session:
        await booking.cancel(session, centre, clock.now(), made[1].id, actor="account")
    await book(database, centre, clock, holder, people[2], slots[DAYS[3]][0])


async def test_people_limit_one_self_and_a_consent_record(database: Database, clock: ManualClock) -> None:
    centre = make_centre()
    centre = dataclasses.replace(centre, accounts=dataclasses.replace(centre.accounts,
                                                                      people_per_account=3))
    holder = await new_account(database, clock, "holder")
    with pytest.raises(AccountRefused) as refused:
        async with database.session() as session:
            await add_person(session, centre, clock.now(), account_id=holder,
                             details=PersonDetails("张三", "13812345678", HOLDER_ID),
                             relation=Relation.SELF, consent_version=" ")
    assert refused.value.reason == AccountRefusal.CONSENT_REQUIRED
    me = await add(database, centre, clock, holder, "张三", HOLDER_ID)
    with pytest.raises(AccountRefused) as refused:
        await add(database, centre, clock, holder, "李秀英", MOTHER_ID)
    assert refused.value.reason == AccountRefusal.SELF_TAKEN
    await add(database, centre, clock, holder, "李秀英", MOTHER_ID, Relation.PARENT)
    await add(database, centre, clock, holder, "王五", None, Relation.OTHER)   # no ID: kept by account+name
    again = await add(database, centre, clock, holder, "张三", HOLDER_ID)       # already held: no new place
    assert again == me
    with pytest.raises(AccountRefused) as refused:
        await add(database, centre, clock, holder, "赵六", None, Relation.RELATIVE)
    assert refused.value.reason == AccountRefusal.PEOPLE_LIMIT and refused.value.details["limit"] == 3
    async with database.read() as session:
        links = (await session.scalars(select(AccountPerson).order_by(AccountPerson.id))).all()
        assert [(link.relation, link.method, link.consent_version, link.consented_at) for link in links] == [
            (Relation.SELF, "added", NOTICE, clock.now()), (Relation.PARENT, "added", NOTICE, clock.now()),
            (Relation.OTHER, "added", NOTICE, clock.now())]


async def test_removing_a_person_waits_for_their_upcoming_bookings_by_this_account(
        database: Database, centre: Centre, clock: ManualClock) -> None:
    slots = await open_days(database, centre, clock)
    holder = await new_account(database, clock, "holder")
    other = await new_account(database, clock, "other")
    mother = await add(database, centre, clock, holder, "李秀英", MOTHER_ID, Relation.PARENT)
    await add(database, centre, clock, other, "李秀英", MOTHER_ID, Relation.PARENT)
    theirs = await book(database, centre, clock, other, mother, slots[DAYS[2]][0])
    mine = await book(database, centre, clock, holder, mother, slots[DAYS[1]][0])
    with pytest.raises(AccountRefused) as refused:
        async with database.session() as session:
            await remove_person(session, clock.now(), account_id=holder, person_id=mother)
    assert refused.value.reason == AccountRefusal.UPCOMING_BOOKINGS and refused.value.details["count"] == 1
    async with database.session() as session:
        await booking.cancel(session, centre, clock.now(), mine.id, actor="account")
    async with database.session() as session:
        await remove_person(session, clock.now(), account_id=holder, person_id=mother)
    with pytest.raises(AccountRefused) as refused:
        async with database.session() as session:
            await remove_person(session, clock.now(), account_id=holder, person_id=mother)
    assert refused.value.reason == AccountRefusal.NOT_THEIR_PERSON
    async with database.read() as session:
        assert await people_of(session, account_id=holder) == []
        assert [p.person_id for p in await people_of(session, account_id=other)] == [mother]
        assert await may_act_on(session, account_id=other, appointment_id=theirs.id)
    assert await seen(database, holder) == {mother: {mine.code}}   # its past booking stays its own


async def test_my_data_shows_what_is_kept_masked(database: Database, centre: Centre,
                                                 clock: ManualClock) -> None:
    slots = await open_days(database, centre, clock)
    holder = await new_account(database, clock, "1234567890")
    me = await add(database, centre, clock, holder, "欧阳小明", HOLDER_ID)
    await book(database, centre, clock, holder, me, slots[DAYS[0]][0])
    async with database.read() as session:
        data = await my_data(session, account_id=holder)
    assert (data.channel, data.user, data.bookings) == ("telegram", "…7890", {"booked": 1})
    assert [(p.name, p.mobile, p.id_number) for p in data.people] == [
        ("欧**明", "138****5678", f"110***********{HOLDER_ID[-4:]}")]
    shown = repr(data)
    for secret in ("欧阳小明", "13812345678", HOLDER_ID, HOLDER_ID[-6:], "1234567890"):
        assert secret not in shown


async def test_withdrawing_consent_keeps_bookings_for_the_records_but_anonymised(
        database: Database, centre: Centre, clock: ManualClock) -> None:
    slots = await open_days(database, centre, clock)
    holder = await new_account(database, clock, "holder")
    me = await add(database, centre, clock, holder, "张三", HOLDER_ID)
    appointment = await book(database, centre, clock, holder, me, slots[DAYS[0]][0])
    with pytest.raises(AccountRefused) as refused:
        async with database.session() as session:
            await erase_person(session, clock.now(), account_id=holder, person_id=me)
    assert refused.value.reason == AccountRefusal.UPCOMING_BOOKINGS
    clock.set(appointment.starts_at + dt.timedelta(minutes=5))
    async with database.session() as session:
        await attendance.check_in(session, centre, clock.now(), appointment.code, actor="staff:1")
        await attendance.complete(session, centre, clock.now(), appointment.code, actor="staff:1")
    async with database.session() as session:
        erasure = await erase_person(session, clock.now(), account_id=holder, person_id=me)
    assert erasure.anonymised and erasure.detached_bookings == 1 and erasure.kept_for == ()
    async with database.read() as session:
        person = await session.get(Person, me)
        assert person is not None and person.erased_at == clock.now()
        assert (person.name, person.mobile, person.id_hash, person.id_masked, person.id_tail_hash) == (
            "", "", None, None, None)
        kept = await session.get(Appointment, appointment.id)
        assert kept is not None and kept.status == AppointmentStatus.COMPLETED and kept.identity_id is None
        pending = (await session.scalars(select(Outbox.status).where(
            Outbox.appointment_id == appointment.id, Outbox.kind == "rating_request"))).all()
        assert pending == [OutboxStatus.DROPPED]
        assert await people_of(session, account_id=holder) == []
        actions = (await session.scalars(select(AuditLog.action).where(AuditLog.entity == "person")
                                         .order_by(AuditLog.id))).all()
        assert actions[-2:] == ["withdraw_consent", "erase_person"]
    assert await seen(database, holder) == {}
    # The number is free again: whoever registers it next starts a new record.
    again = await add(database, centre, clock, holder, "张三", HOLDER_ID)
    assert again != me


async def test_a_person_another_account_acts_for_is_kept_when_one_withdraws(
        database: Database, centre: Centre, clock: ManualClock) -> None:
    holder = await new_account(database, clock, "holder")
    sister = await new_account(database, clock, "sister")
    mother = await add(database, centre, clock, holder, "李秀英", MOTHER_ID, Relation.PARENT)
    await add(database, centre, clock, sister, "李秀英", MOTHER_ID, Relation.PARENT)
    async with database.session() as session:
        erasure = await erase_person(session, clock.now(), account_id=holder, person_id=mother)
    assert not erasure.anonymised and erasure.kept_for == ("other_accounts",)
    async with database.read() as session:
        person = await session.get(Person, mother)
        assert person is not None and person.name == "李秀英" and person.erased_at is None
        assert [p.person_id for p in await people_of(session, account_id=sister)] == [mother]


async def test_staff_correct_a_name_with_a_reason_and_the_audit_keeps_no_values(
        database: Database, centre: Centre, clock: ManualClock) -> None:
    holder = await new_account(database, clock, "holder")
    me = await add(database, centre, clock, holder, "张三", HOLDER_ID)
    for kwargs, reason in (({"name": "张叁"}, AccountRefusal.REASON_REQUIRED),
                           ({}, AccountRefusal.NOTHING_TO_CORRECT),
                           ({"name": "张三"}, AccountRefusal.NOTHING_TO_CORRECT)):
        with pytest.raises(AccountRefused) as refused:
            async with database.session() as session:
                await correct_person(session, clock.now(), person_id=me, actor="staff:7",
                                     reason="" if reason == AccountRefusal.REASON_REQUIRED else "证件核对",
                                     **kwargs)
        assert refused.value.reason == reason
    with pytest.raises(InvalidValue):
        async with database.session() as session:
            await correct_person(session, clock.now(), person_id=me, actor="staff:7",
                                 reason="证件核对", mobile="12345")
    async with database.session() as session:
        view = await correct_person(session, clock.now(), person_id=me, actor="staff:7",
                                    reason="户口簿核对，原登记错字", name="张叁")
    assert (view.name, view.mobile) == ("张*", "138****5678")
    with pytest.raises(NameMismatch):                       # the old spelling is now the wrong one
        await add(database, centre, clock, holder, "张三", HOLDER_ID)
    async with database.read() as session:
        person = await session.get(Person, me)
        assert person is not None and person.name == "张叁"
        row = await session.scalar(select(AuditLog).where(AuditLog.action == "correct_person"))
        assert row is not None and row.actor == "staff:7"
        assert row.detail == {"fields": ["name"], "reason": "户口簿核对，原登记错字"}


async def test_people_without_an_id_number_are_kept_per_account(
        database: Database, centre: Centre, clock: ManualClock) -> None:
    slots = await open_days(database, centre, clock)
    first = await new_account(database, clock, "first")
    second = await new_account(database, clock, "second")
    theirs = await add(database, centre, clock, first, "王五", None)
    other = await add(database, centre, clock, second, "王五", None)   # same name, same mobile
    assert theirs != other
    assert await add(database, centre, clock, first, "王五", None) == theirs
    made = await book(database, centre, clock, first, theirs, slots[DAYS[0]][0])
    assert await seen(database, second) == {}
    assert await seen(database, first) == {theirs: {made.code}}
