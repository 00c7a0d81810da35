"""The managers' case figures on a history computed by hand (both databases).

The history, two weeks of late November 2026 (no holidays; the hukou transfer commits 5 working
days, the ID card 20):

    I  hukou, promised   opened Fri 11-20  due 11-27  ready Mon 11-23         on time, 1 day
    A  hukou, promised   opened Mon 11-23  due 11-30  ready Fri 11-27         on time, 4 days
    B  hukou, promised   opened Mon 11-23  due 11-30  补正 Tue 11-24, back Thu 11-26 (2 days
                         paused: due 12-02)            ready Thu 12-03         late, 8 - 2 = 6 days
    G  hukou, promised   opened Mon 11-23  due 11-30  extension asked 11-27, refused 11-30; open
    D  social card, 即办  opened Mon 11-23  closed at once (no committed date: not counted)
    C  ID card, promised opened Tue 11-24  due 12-22  extension asked 11-25, approved 11-26 (+5:
                         12-29); open
    F  hukou, joint (3 and 5 days) opened Tue 11-24  due 12-01  ready Tue 12-01  on time, 5 days
    E  hukou, returned   opened Wed 11-25
    H  ID card, 补办件    opened Fri 11-27  waiting for materials

Asked on Fri 12-04 at 10:00 about 11-23..12-06.
"""

from __future__ import annotations

import datetime as dt

import pytest

from storage import cases
from storage.case_stats import CaseFigures, case_report, weekly_on_time
from storage.cases import PartSpec
from storage.clock import ManualClock
from storage.db import Database
from storage.models import CaseKind, CasePart
from tests.case_support import BOSS, STAFF, SUPERVISORS, CaseWorld, case_world
from tests.helpers import local

D = dt.date
FIRST, LAST = D(2026, 11, 23), D(2026, 12, 6)


@pytest.fixture
async def world(database: Database, clock: ManualClock) -> CaseWorld:
    world = await case_world(database, clock)
    ready = cases.mark_ready

    world.at(local(2026, 11, 20, 10))
    i = await world.open(CaseKind.PROMISED)
    world.at(local(2026, 11, 23, 10))
    a = await world.open(CaseKind.PROMISED)
    b = await world.open(CaseKind.PROMISED)
    g = await world.open(CaseKind.PROMISED)
    await world.open(CaseKind.IMMEDIATE, "social_card")
    await world.do(ready, i.number, actor=STAFF)
    world.at(local(2026, 11, 24, 10))
    await world.do(cases.request_correction, b.number, actor=STAFF, missing=[0])
    c = await world.open(CaseKind.PROMISED, "id_card")
    f = await world.open(CaseKind.JOINT, parts=[PartSpec("不动产登记中心", 3), PartSpec("税务局", 5)])
    world.at(local(2026, 11, 25, 10))
    await world.open(CaseKind.RETURNED, reason="不符合迁入条件", legal_basis="《户口登记条例》第十条")
    c_extension = await world.do(cases.request_extension, c.number, actor=STAFF, days=5,
                                 reason="制证中心排期", supervisors=SUPERVISORS)
    world.at(local(2026, 11, 26, 10))
    await world.do(cases.resubmit, b.number, actor=STAFF)
    await world.do(cases.decide_extension, c_extension.id, actor=BOSS, approve=True,
                   supervisors=SUPERVISORS)
    world.at(local(2026, 11, 27, 10))
    await world.do(ready, a.number, actor=STAFF)
    await world.open(CaseKind.CORRECTION, "id_card", missing=[0])
    g_extension = await world.do(cases.request_extension, g.number, actor=STAFF, days=2,
                                 reason="等待核查", supervisors=SUPERVISORS)
    world.at(local(2026, 11, 30, 10))
    await world.do(cases.decide_extension, g_extension.id, actor=BOSS, approve=False,
                   supervisors=SUPERVISORS)
    world.at(local(2026, 12, 1, 10))
    async with world.database.read() as session:
        view = await cases.view_case(session, world.centre, world.clock.now(), f.number)
    part: CasePart
    for part in view.parts:
        await world.do(cases.mark_part_done, f.number, part.id, actor=STAFF)
    await world.do(ready, f.number, actor=STAFF)
    world.at(local(2026, 12, 3, 10))
    await world.do(ready, b.number, actor=STAFF)
    world.at(local(2026, 12, 4, 10))
    return world


HUKOU = CaseFigures(opened=5, promised=3, returned=1, joint=1, corrected=1, completed=4, on_time=3,
                    clock_days=1 + 4 + 6 + 5, extensions_requested=1, extensions_refused=1,
                    overdue_now=1)
ID_CARD = CaseFigures(opened=2, promised=1, correction=1, corrected=1, extensions_requested=1,
                      extensions_approved=1)
SOCIAL_CARD = CaseFigures(opened=1, immediate=1)


async def test_the_figures_of_a_hand_computed_history(world: CaseWorld) -> None:
    async with world.database.read() as session:
        report = await case_report(session, world.centre, world.clock.now(), FIRST, LAST)
    assert [(s.code, s.figures) for s in report.services] == [
        ("id_card", ID_CARD), ("hukou_transfer", HUKOU), ("social_card", SOCIAL_CARD)]
    total = report.total
    assert total.by_kind == {"immediate": 1, "promised": 4, "correction": 1, "returned": 1,
                             "joint": 1, "reported": 0}
    assert total.opened == 8 and total.correction_rate == 2 / 8
    assert (total.completed, total.on_time, total.on_time_rate) == (4, 3, 0.75)
    assert total.average_working_days == 4.0
    assert (total.extensions_requested, total.extensions_approved, total.extensions_refused) == (2, 1, 1)
    assert total.overdue_now == 1                   # G, due 11-30; H is waiting, its clock stopped


async def test_the_weekly_on_time_rate(world: CaseWorld) -> None:
    async with world.database.read() as session:
        weeks = await weekly_on_time(session, FIRST, LAST)
    assert [(w.monday, w.completed, w.on_time) for w in weeks] == [
        (D(2026, 11, 23), 2, 2), (D(2026, 11, 30), 2, 1)]
    assert [w.on_time_rate for w in weeks] == [1.0, 0.5]


async def test_a_period_and_a_scope_count_only_their_own(world: CaseWorld) -> None:
    hukou = world.services["hukou_transfer"]
    async with world.database.read() as session:
        scoped = await case_report(session, world.centre, world.clock.now(), FIRST, LAST,
                                   service_ids=[hukou])
        first_week = await case_report(session, world.centre, world.clock.now(), FIRST,
                                       D(2026, 11, 29))
        quiet = await case_report(session, world.centre, world.clock.now(), D(2026, 12, 7),
                                  D(2026, 12, 13))
        weeks = await weekly_on_time(session, FIRST, LAST, service_ids=[world.services["id_card"]])
    assert scoped.total == HUKOU and [s.code for s in scoped.services] == ["hukou_transfer"]
    # Opened 11-23..11-29: all but I; ready in it: I and A; extensions: both asked, C's approved.
    assert (first_week.total.opened, first_week.total.completed, first_week.total.on_time) == (8, 2, 2)
    assert (first_week.total.extensions_requested, first_week.total.extensions_approved,
            first_week.total.extensions_refused) == (2, 1, 0)
    # A quiet week still shows what is overdue now.
    assert quiet.total == CaseFigures(overdue_now=1)
    assert quiet.total.on_time_rate is None and quiet.total.average_working_days is None
    assert [(w.completed, w.on_time_rate) for w in weeks] == [(0, None), (0, None)]
