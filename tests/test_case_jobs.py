"""The case jobs the scheduler runs, with the clock moved by hand: the owner's reminder, the
overdue escalation (exactly once), the uncollected reminder, and the 回访 that can open a
complaint."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from storage import case_jobs, cases
from storage.cases import CaseRefusal
from storage.clock import ManualClock
from storage.db import Database
from storage.models import Case, CaseKind, CaseState, Complaint
from storage.outbox import STAFF_TARGET
from tests.case_support import BOSS, BOSS2, STAFF, SUPERVISORS, CaseWorld, case_world, refused
from tests.helpers import local


@pytest.fixture
async def world(database: Database, clock: ManualClock) -> CaseWorld:
    return await case_world(database, clock)


async def run(world: CaseWorld, job, **kw) -> int:  # type: ignore[no-untyped-def]
    async with world.database.session() as session:
        return int(await job(session, world.centre, world.clock.now(), **kw))


async def test_the_owner_is_reminded_one_working_day_before(world: CaseWorld) -> None:
    world.at(local(2026, 9, 30, 10))
    case = await world.open(CaseKind.PROMISED)                     # due Tue 10-13
    world.at(local(2026, 10, 12, 8, 59))
    assert await run(world, case_jobs.remind_due_cases) == 0
    world.at(local(2026, 10, 12, 9, 0))
    assert await run(world, case_jobs.remind_due_cases) == 1
    world.at(local(2026, 10, 12, 9, 5))
    assert await run(world, case_jobs.remind_due_cases) == 0
    reminder = (await world.outbox())[-1]
    assert (reminder.kind, reminder.target, reminder.identity_id) == ("case_due_soon", STAFF, None)
    assert (reminder.payload["number"], reminder.payload["due_on"], reminder.payload["owner"]) == (
        case.number, "2026-10-13", STAFF)

    # An approved extension gives the case a new date, and a new reminder before it.
    extension = await world.do(cases.request_extension, case.number, actor=STAFF, days=2,
                               reason="等待外省回函", supervisors=SUPERVISORS)
    await world.do(cases.decide_extension, extension.id, actor=BOSS, approve=True,
                   supervisors=SUPERVISORS)
    assert (await world.case(case.number)).due_on.isoformat() == "2026-10-15"
    assert await run(world, case_jobs.remind_due_cases) == 0
    world.at(local(2026, 10, 14, 9, 0))
    assert await run(world, case_jobs.remind_due_cases) == 1


async def test_no_reminder_for_a_case_already_overdue_or_waiting(world: CaseWorld) -> None:
    world.at(local(2026, 9, 30, 10))
    late = await world.open(CaseKind.PROMISED)                     # due 10-13
    waiting = await world.open(CaseKind.CORRECTION, missing=[0])   # clock stopped
    assert waiting.state == CaseState.CORRECTION
    world.at(local(2026, 10, 13, 17, 0))
    assert await run(world, case_jobs.remind_due_cases) == 0
    assert (await world.case(late.number)).reminded_due_on is None


async def test_an_overdue_case_is_escalated_exactly_once(world: CaseWorld) -> None:
    world.at(local(2026, 9, 30, 10))
    case = await world.open(CaseKind.PROMISED)                     # due Tue 10-13
    paused = await world.open(CaseKind.CORRECTION, missing=[0])    # never overdue while paused
    world.at(local(2026, 10, 13, 16, 59))
    assert await run(world, case_jobs.escalate_overdue_cases, supervisors=SUPERVISORS) == 0
    for when in (local(2026, 10, 13, 17, 0), local(2026, 10, 13, 17, 0), local(2026, 10, 14, 9),
                 local(2026, 10, 20, 9)):
        world.at(when)
        await run(world, case_jobs.escalate_overdue_cases, supervisors=SUPERVISORS)
    rows = [r for r in await world.outbox() if r.kind == "case_overdue"]
    assert [(r.target, r.payload["number"]) for r in rows] == [(BOSS, case.number), (BOSS2, case.number)]
    assert (await world.case(paused.number)).escalated_due_on is None
    async with world.database.read() as session:
        overdue = await case_jobs.overdue_cases(session, world.centre, world.clock.now())
    assert [line.case.number for line in overdue] == [case.number]

    # Extended past its date, the case gets one escalation at the new date, no more.
    extension = await world.do(cases.request_extension, case.number, actor=STAFF, days=1,
                               reason="系统故障", supervisors=SUPERVISORS)
    await world.do(cases.decide_extension, extension.id, actor=BOSS, approve=True,
                   supervisors=SUPERVISORS)                         # 10-13 + 1 = 10-14
    assert await run(world, case_jobs.escalate_overdue_cases, supervisors=()) == 1
    assert await run(world, case_jobs.escalate_overdue_cases, supervisors=()) == 0
    last = (await world.outbox())[-1]
    assert (last.kind, last.target, last.payload["due_on"]) == ("case_overdue", STAFF_TARGET, "2026-10-14")


async def test_two_processes_escalating_at_once_escalate_once(world: CaseWorld) -> None:
    case = await world.open(CaseKind.PROMISED)                     # due Mon 11-30
    world.at(local(2026, 11, 30, 17, 30))
    made = await asyncio.gather(*(run(world, case_jobs.escalate_overdue_cases, supervisors=SUPERVISORS)
                                  for _ in range(3)))
    assert sorted(made) == [0, 0, 1]
    assert [(r.kind, r.target) for r in await world.outbox()][1:] == [
        ("case_overdue", BOSS), ("case_overdue", BOSS2)]
    assert (await world.case(case.number)).escalated_due_on.isoformat() == "2026-11-30"


async def test_a_ready_case_is_not_escalated(world: CaseWorld) -> None:
    case = await world.open(CaseKind.PROMISED)                     # due Mon 11-30
    world.at(local(2026, 11, 30, 16))
    await world.do(cases.mark_ready, case.number, actor=STAFF)
    world.at(local(2026, 12, 1, 9))
    assert await run(world, case_jobs.escalate_overdue_cases, supervisors=SUPERVISORS) == 0


async def test_an_uncollected_result_is_reminded_once(world: CaseWorld) -> None:
    collected = await world.open(CaseKind.PROMISED)
    forgotten = await world.open(CaseKind.PROMISED)
    world.at(local(2026, 11, 25, 15))
    for case in (collected, forgotten):
        await world.do(cases.mark_ready, case.number, actor=STAFF)
    world.at(local(2026, 11, 26, 10))
    await world.do(cases.collect, collected.number, actor=STAFF)
    # Five working days after Wed 11-25: 11-26, 11-27, 11-30, 12-01, 12-02.
    world.at(local(2026, 12, 2, 8, 59))
    assert await run(world, case_jobs.remind_uncollected) == 0
    world.at(local(2026, 12, 2, 9))
    assert await run(world, case_jobs.remind_uncollected) == 1
    world.at(local(2026, 12, 9, 9))
    assert await run(world, case_jobs.remind_uncollected) == 0
    reminder = (await world.outbox())[-1]
    assert (reminder.kind, reminder.identity_id, reminder.dedup_key) == (
        "case_uncollected", world.identity_id, f"case:{forgotten.id}:uncollected")
    assert reminder.payload["ready_on"] == "2026-11-25"
    assert reminder.payload["place"]["zh"] == "一楼 公安综合窗口 4号"
    assert reminder.payload["bring"]["zh"] == "受理回执和居民户口簿"


async def test_a_result_made_ready_on_a_weekend_is_reminded_on_time(world: CaseWorld) -> None:
    case = await world.open(CaseKind.PROMISED)
    world.at(local(2026, 11, 28, 11))                              # Saturday: staff came in
    await world.do(cases.mark_ready, case.number, actor=STAFF)
    world.at(local(2026, 12, 4, 9))                                # 11-30 .. 12-04: 5 working days
    assert await run(world, case_jobs.remind_uncollected) == 1


async def test_followup_after_closing_and_a_complaint_when_unsatisfied(world: CaseWorld) -> None:
    happy = await world.open(CaseKind.IMMEDIATE, "social_card")
    unhappy = await world.open(CaseKind.PROMISED)
    await world.do(cases.mark_ready, unhappy.number, actor=STAFF)
    await world.do(cases.collect, unhappy.number, actor=STAFF)
    pending = await world.open(CaseKind.PROMISED)
    answer = {"answer_days": 1, "resolve_days": 15}
    await refused(CaseRefusal.NOT_ALLOWED, world.do(cases.rate_case, case_id=pending.id,
                                                    identity_id=world.identity_id, level=5, **answer))

    # Closed Mon 11-23: asked on the next working day at nine.
    world.at(local(2026, 11, 24, 8, 59))
    assert await run(world, case_jobs.request_followups) == 0
    world.at(local(2026, 11, 24, 9))
    assert await run(world, case_jobs.request_followups) == 2
    assert await run(world, case_jobs.request_followups) == 0
    asks = [r for r in await world.outbox() if r.kind == "case_followup"]
    assert sorted(r.payload["number"] for r in asks) == sorted([happy.number, unhappy.number])
    assert {r.payload["closed_on"] for r in asks} == {"2026-11-23"}

    await refused(CaseRefusal.BAD_LEVEL, world.do(cases.rate_case, case_id=happy.id,
                                                  identity_id=world.identity_id, level=6, **answer))
    await refused(CaseRefusal.NOT_YOURS, world.do(cases.rate_case, case_id=happy.id,
                                                  identity_id=world.other_identity_id, level=5,
                                                  **answer))
    case, complaint = await world.do(cases.rate_case, case_id=happy.id,
                                     identity_id=world.identity_id, level=5, **answer)
    assert complaint is None and case.followup_level == 5
    case, complaint = await world.do(cases.rate_case, case_id=unhappy.id,
                                     identity_id=world.identity_id, level=2, **answer)
    assert complaint is not None and case.complaint_id == complaint.id
    await refused(CaseRefusal.ALREADY_RATED, world.do(cases.rate_case, case_id=unhappy.id,
                                                      identity_id=world.identity_id, level=1,
                                                      **answer))
    async with world.database.session() as session:
        assert await cases.add_followup_comment(session, unhappy.id, identity_id=world.identity_id,
                                                comment="等了很久，电话13812345678也没人接")
        assert not await cases.add_followup_comment(session, pending.id,
                                                    identity_id=world.identity_id, comment="x")
    async with world.database.read() as session:
        stored = await session.get(Complaint, complaint.id)
        assert stored is not None and stored.text == "等了很久，电话138****5678也没人接"
        assert await session.scalar(select(func.count()).select_from(Complaint)) == 1
        rated = await session.get(Case, unhappy.id)
        assert rated is not None and rated.followup_comment == stored.text
    assert [r.kind for r in await world.outbox()][-1] == "complaint_alert"
    assert (await world.actions(unhappy.number))[-1] == "followup"

