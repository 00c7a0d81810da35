"""Account figures for managers: people per account, bookings made for others (代约), ID
numbers refused for another name (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt

import pytest

from storage.account_figures import account_figures
from storage.accounts import add_person
from storage.centre import Centre
from storage.clock import ManualClock
from storage.db import Database
from storage.identity import NameMismatch, PersonDetails
from storage.models import Relation
from tests.helpers import account, make_centre, valid_id
from tests.test_accounts import DAYS, HOLDER_ID, MOTHER_ID, add, book, new_account, open_days

DAY = dt.timedelta(days=1)


@pytest.fixture
def centre() -> Centre:
    return make_centre()


async def test_people_per_account_bookings_for_others_and_refused_names(
        database: Database, centre: Centre, clock: ManualClock) -> None:
    slots = await open_days(database, centre, clock)
    family = await new_account(database, clock, "family")
    single = await new_account(database, clock, "single")
    await new_account(database, clock, "idle")
    async with database.session() as session:
        await account(session, clock.now(), user="clerk", channel="staff")   # staff: not counted
        await account(session, clock.now(), user="zhangsan", channel="wecom")   # nor WeCom staff
    me = await add(database, centre, clock, family, "张三", HOLDER_ID)
    mother = await add(database, centre, clock, family, "李秀英", MOTHER_ID, Relation.PARENT)
    child = await add(database, centre, clock, family, "张小明", valid_id("11010520150505003"),
                      Relation.CHILD)
    other = await add(database, centre, clock, single, "王五", valid_id("11010519700707004"))
    await book(database, centre, clock, family, me, slots[DAYS[0]][0])
    await book(database, centre, clock, family, mother, slots[DAYS[0]][1])
    await book(database, centre, clock, family, child, slots[DAYS[1]][0])
    await book(database, centre, clock, single, other, slots[DAYS[1]][1])
    await book(database, centre, clock, single, mother, slots[DAYS[2]][0])  # not among its people
    await book(database, centre, clock, None, other, slots[DAYS[3]][0], staff=True)
    for _ in range(2):   # answered politely, as the handlers do: the count is committed
        async with database.session() as session:
            with pytest.raises(NameMismatch):
                await add_person(session, centre, clock.now(), account_id=single, relation=Relation.OTHER,
                                 details=PersonDetails("赵六", "13900000000", HOLDER_ID),
                                 consent_version="v1")
    with pytest.raises(NameMismatch):   # a caller that lets the refusal escape loses the count
        await add(database, centre, clock, single, "赵六", HOLDER_ID)

    async with database.read() as session:
        figures = await account_figures(session, clock.now() - DAY, clock.now() + DAY)
        earlier = await account_figures(session, clock.now() - 3 * DAY, clock.now() - DAY)
    assert figures.people_per_account == {0: 1, 1: 1, 3: 1}
    assert figures.bookings_by_relation == {"self": 2, "parent": 1, "child": 1, "unlinked": 1}
    assert figures.for_others == 2
    assert figures.name_mismatches == 2
    assert (earlier.bookings_by_relation, earlier.for_others, earlier.name_mismatches) == ({}, 0, 0)
