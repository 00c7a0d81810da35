"""Case operations (办件) against a real database, on both SQLite and PostgreSQL, with the clock
moved by hand: every kind from the window to the result, the stopped clock during 补正, the
supervisor's approvals, and exactly the notices each step implies."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from sqlalchemy import func, select

from storage import attendance, booking, cases
from storage.case_rules import case_number, format_case_number, parse_case_number
from storage.cases import CaseRefusal, CaseRefused, PartSpec
from storage.clock import ManualClock
from storage.db import Database
from storage.models import (
    AuditLog,
    Case,
    CaseEvent,
    CaseKind,
    CasePart,
    CaseState,
    Channel,
    ExtensionStatus,
    Service,
)
from tests.case_support import (
    BOSS,
    BOSS2,
    CLERK,
    STAFF,
    SUPERVISORS,
    CaseWorld,
    case_world,
    refused,
)
from tests.helpers import local, slots_of

D = dt.date


@pytest.fixture
async def world(database: Database, clock: ManualClock) -> CaseWorld:
    return await case_world(database, clock)


# --- opening, by kind -------------------------------------------------------------------------


async def test_a_promised_case_is_due_after_national_day(world: CaseWorld) -> None:
    world.at(local(2026, 9, 30, 10))
    case = await world.open(CaseKind.PROMISED)
    assert case.due_on == D(2026, 10, 13)          # 10-08, 10-09, 10-10, 10-12, 10-13
    assert (case.state, case.committed_days, case.opened_on) == (CaseState.ACCEPTED, 5, D(2026, 9, 30))
    assert parse_case_number(format_case_number(case.number)) == case.number
    assert await world.actions(case.number) == ["accept"]
    [notice] = await world.outbox()
    assert (notice.kind, notice.identity_id, notice.dedup_key) == (
        "case_accepted", world.identity_id, f"case:{case.id}:accepted")
    assert notice.payload["number"] == case.number and notice.payload["due_on"] == "2026-10-13"
    assert notice.payload["service"] == {"code": "hukou_transfer", "name": {
        "zh": "户口迁移（迁入/迁出）", "en": "Household registration transfer (in/out)"}}
    assert notice.payload["kind"] == "promised" and notice.payload["committed_days"] == 5
    async with world.database.read() as session:
        audited = (await session.scalars(select(AuditLog.action).where(
            AuditLog.entity == "case", AuditLog.entity_id == case.id))).all()
    assert audited == ["case_accept"]


async def test_a_case_opens_from_a_served_booking_once(world: CaseWorld) -> None:
    async with world.database.session() as session:
        service = await session.get(Service, world.services["id_card"])
        assert service is not None
        slot = (await slots_of(session, world.centre, service, world.clock.now(),
                               D(2026, 11, 23)))[-1]
        appointment = await booking.book(session, world.centre, world.clock.now(),
                                         person_id=world.person_id, slot_id=slot.id,
                                         identity_id=world.identity_id, channel=Channel.STAFF,
                                         made_by=STAFF, offline=True)
    async with world.database.session() as session:
        with pytest.raises(CaseRefused) as caught:
            await cases.open_case(session, world.centre, world.clock.now(), actor=STAFF,
                                  kind=CaseKind.PROMISED, appointment_id=appointment.id)
        assert caught.value.reason == CaseRefusal.NOT_SERVED
    async with world.database.session() as session:
        await attendance.check_in(session, world.centre, world.clock.now(), appointment.code,
                                  actor=STAFF)
        await attendance.complete(session, world.centre, world.clock.now(), appointment.code, actor=STAFF)
        case = await cases.open_case(session, world.centre, world.clock.now(), actor=STAFF,
                                     kind=CaseKind.PROMISED, appointment_id=appointment.id)
    assert (case.service_id, case.person_id, case.identity_id) == (
        world.services["id_card"], world.person_id, world.identity_id)
    assert case.due_on == D(2026, 12, 21)          # 20 working days after Mon 11-23
    async with world.database.session() as session:
        with pytest.raises(CaseRefused) as again:
            await cases.open_case(session, world.centre, world.clock.now(), actor=STAFF,
                                  kind=CaseKind.PROMISED, appointment_id=appointment.id)
    assert again.value.reason == CaseRefusal.ALREADY_OPENED
    assert again.value.details["number"] == case.number


async def test_an_immediate_case_closes_at_once(world: CaseWorld) -> None:
    case = await world.open(CaseKind.IMMEDIATE, "social_card")
    assert case.state == CaseState.CLOSED and case.delivery == "window"
    assert (case.ready_on, case.clock_days, case.closed_at) == (D(2026, 11, 23), 0, world.clock.now())
    assert await world.actions(case.number) == ["accept", "ready", "collect", "close"]
    assert await world.outbox() == []


async def test_a_returned_case_needs_the_reason_and_the_legal_basis(world: CaseWorld) -> None:
    await refused(CaseRefusal.REASON_REQUIRED, world.open(CaseKind.RETURNED, legal_basis="《条例》第十条"))
    await refused(CaseRefusal.BASIS_REQUIRED, world.open(CaseKind.RETURNED, reason="不属于本中心受理范围",
                                                         legal_basis="  "))
    async with world.database.read() as session:
        assert await session.scalar(select(func.count()).select_from(Case)) == 0
    case = await world.open(CaseKind.RETURNED, reason="不属于本中心受理范围", legal_basis="《户口登记条例》第十条")
    assert case.state == CaseState.REFUSED and case.due_on is None
    async with world.database.read() as session:
        event = await session.scalar(select(CaseEvent).where(CaseEvent.case_id == case.id))
    assert event is not None and (event.action, event.state_before, event.state_after, event.reason) == (
        "refuse", None, CaseState.REFUSED, "不属于本中心受理范围")
    [notice] = await world.outbox()
    assert notice.kind == "case_refused"
    assert (notice.payload["reason"], notice.payload["legal_basis"]) == (
        "不属于本中心受理范围", "《户口登记条例》第十条")


async def test_refusing_an_accepted_case_needs_both_too(world: CaseWorld) -> None:
    case = await world.open(CaseKind.PROMISED)
    await refused(CaseRefusal.BASIS_REQUIRED, world.do(cases.refuse, case.number, actor=STAFF,
                                                       reason="材料虚假", legal_basis=""))
    await world.do(cases.refuse, case.number, actor=STAFF, reason="材料虚假", legal_basis="《条例》第五条")
    assert (await world.case(case.number)).state == CaseState.REFUSED
    await refused(CaseRefusal.NOT_ALLOWED, world.do(cases.refuse, case.number, actor=STAFF,
                                                    reason="x", legal_basis="y"))
    assert await world.notices() == [("case_accepted", "citizen"), ("case_refused", "citizen")]


async def test_a_joint_case_waits_for_every_department(world: CaseWorld) -> None:
    await refused(CaseRefusal.PARTS_REQUIRED, world.open(CaseKind.JOINT, parts=[PartSpec("税务局", 3)]))
    case = await world.open(CaseKind.JOINT, parts=[PartSpec("不动产登记中心", 3), PartSpec("税务局", 7),
                                                   PartSpec("派出所")])
    assert case.due_on == D(2026, 12, 2)           # the slowest: 7 working days after Mon 11-23
    assert case.committed_days == 7
    [notice] = await world.outbox()
    assert notice.payload["parts"] == [{"name": "不动产登记中心", "due_on": "2026-11-26"},
                                       {"name": "税务局", "due_on": "2026-12-02"},
                                       {"name": "派出所", "due_on": "2026-11-30"}]
    async with world.database.read() as session:
        parts = (await session.scalars(select(CasePart).where(CasePart.case_id == case.id)
                                       .order_by(CasePart.id))).all()
    failure = await refused(CaseRefusal.PARTS_OPEN, world.do(cases.mark_ready, case.number, actor=STAFF))
    assert failure.details["open"] == ["不动产登记中心", "税务局", "派出所"]
    for part in parts:
        await world.do(cases.mark_part_done, case.number, part.id, actor=STAFF)
    await world.do(cases.mark_part_done, case.number, parts[0].id, actor=STAFF)  # a double press
    await world.do(cases.mark_ready, case.number, actor=STAFF)
    assert await world.actions(case.number) == ["accept", "part_done", "part_done", "part_done", "ready"]


async def test_a_reported_case_is_due_when_the_answer_is_expected(world: CaseWorld) -> None:
    case = await world.open(CaseKind.REPORTED)
    assert case.due_on is None
    await refused(CaseRefusal.NO_DUE_DATE, world.do(cases.request_extension, case.number, actor=STAFF,
                                                    days=3, reason="上级未答复", supervisors=SUPERVISORS))
    await refused(CaseRefusal.BAD_DATE, world.do(cases.set_expected_answer, case.number, actor=STAFF,
                                                 expected_on=D(2026, 11, 20)))
    await world.do(cases.set_expected_answer, case.number, actor=STAFF, expected_on=D(2026, 12, 18))
    assert (await world.case(case.number)).due_on == D(2026, 12, 18)
    rows = await world.outbox()
    assert [(r.kind, r.payload.get("expected_on")) for r in rows] == [
        ("case_accepted", None), ("case_expected", "2026-12-18")]
    promised = await world.open(CaseKind.PROMISED)
    await refused(CaseRefusal.NOT_ALLOWED, world.do(cases.set_expected_answer, promised.number,
                                                    actor=STAFF, expected_on=D(2026, 12, 18)))


async def test_a_walk_in_without_an_account_gets_no_notice(world: CaseWorld) -> None:
    case = await world.open(CaseKind.PROMISED, with_account=False)
    await world.do(cases.mark_ready, case.number, actor=STAFF)
    assert case.identity_id is None and await world.outbox() == []


# --- 补正: the clock stops ----------------------------------------------------------------------


async def test_the_clock_stops_during_correction(world: CaseWorld) -> None:
    world.at(local(2026, 2, 9, 10))
    case = await world.open(CaseKind.PROMISED)
    assert case.due_on == D(2026, 2, 14)
    world.at(local(2026, 2, 12, 15))
    await refused(CaseRefusal.MISSING_ITEMS, world.do(cases.request_correction, case.number, actor=STAFF))
    await refused(CaseRefusal.BAD_ITEM, world.do(cases.request_correction, case.number, actor=STAFF,
                                                 missing=[9]))
    await world.do(cases.request_correction, case.number, actor=STAFF, missing=[2, 0],
                   note="复印件需本人签字")
    paused = await world.case(case.number)
    assert (paused.state, paused.paused_on, paused.correction_due_on) == (
        CaseState.CORRECTION, D(2026, 2, 12), D(2026, 3, 4))
    notice = (await world.outbox())[-1]
    assert notice.kind == "case_correction" and notice.dedup_key == f"case:{case.id}:correction:1"
    assert notice.payload["items"] == [
        {"zh": "居民户口簿", "en": "Household register (hukou booklet)"},
        {"zh": "迁入地证明材料（房产证、结婚证或劳动合同之一）",
         "en": "Proof for the new address (property certificate, marriage certificate or labour contract)"}]
    assert (notice.payload["note"], notice.payload["deadline"], notice.payload["book_service"]) == (
        "复印件需本人签字", "2026-03-04", "hukou_transfer")
    await refused(CaseRefusal.NOT_ALLOWED, world.do(cases.mark_ready, case.number, actor=STAFF))

    world.at(local(2026, 2, 25, 11))
    await world.do(cases.resubmit, case.number, actor=CLERK)
    resumed = await world.case(case.number)
    assert (resumed.state, resumed.due_on, resumed.paused_days, resumed.paused_on) == (
        CaseState.IN_PROGRESS, D(2026, 2, 27), 4, None)
    notice = (await world.outbox())[-1]
    assert (notice.kind, notice.payload["due_on"], notice.payload["paused_days"]) == (
        "case_resubmitted", "2026-02-27", 4)
    world.at(local(2026, 2, 26, 16))
    await world.do(cases.mark_ready, case.number, actor=STAFF)
    ready = await world.case(case.number)
    assert (ready.ready_on, ready.clock_days) == (D(2026, 2, 26), 4)


async def test_a_correction_case_opens_waiting_for_materials(world: CaseWorld) -> None:
    case = await world.open(CaseKind.CORRECTION, missing=[1])
    assert case.state == CaseState.CORRECTION and case.corrections == 1
    assert await world.actions(case.number) == ["accept", "correction"]
    assert await world.notices() == [("case_correction", "citizen")]   # no separate receipt


async def test_a_second_correction_needs_a_supervisor(world: CaseWorld) -> None:
    case = await world.open(CaseKind.CORRECTION, missing=[1])
    await world.do(cases.resubmit, case.number, actor=STAFF)
    failure = await refused(CaseRefusal.CORRECTION_LIMIT, world.do(
        cases.request_correction, case.number, actor=STAFF, missing=[0], supervisors=SUPERVISORS))
    assert failure.details["corrections"] == 1
    await refused(CaseRefusal.NOT_SUPERVISOR, world.do(
        cases.request_correction, case.number, actor=STAFF, missing=[0], approved_by=CLERK,
        supervisors=SUPERVISORS))
    assert (await world.case(case.number)).state == CaseState.IN_PROGRESS
    await world.do(cases.request_correction, case.number, actor=STAFF, missing=[0], approved_by=BOSS,
                   supervisors=SUPERVISORS)
    assert (await world.case(case.number)).corrections == 2
    assert [(r.kind, r.dedup_key) for r in await world.outbox()] == [
        ("case_correction", f"case:{case.id}:correction:1"),
        ("case_resubmitted", f"case:{case.id}:resubmitted:1"),
        ("case_correction", f"case:{case.id}:correction:2")]
    async with world.database.read() as session:
        last = await session.scalar(select(CaseEvent).where(CaseEvent.case_id == case.id)
                                    .order_by(CaseEvent.id.desc()).limit(1))
    assert last is not None and last.detail["approved_by"] == BOSS


async def test_corrections_without_approval_is_a_setting(database: Database, clock: ManualClock) -> None:
    world = await case_world(database, clock)
    world.centre = dataclasses.replace(world.centre, cases=dataclasses.replace(
        world.centre.cases, corrections_without_approval=2))
    case = await world.open(CaseKind.CORRECTION, missing=[1])
    await world.do(cases.resubmit, case.number, actor=STAFF)
    await world.do(cases.request_correction, case.number, actor=STAFF, missing=[0])
    await world.do(cases.resubmit, case.number, actor=STAFF)
    await refused(CaseRefusal.CORRECTION_LIMIT, world.do(cases.request_correction, case.number,
                                                         actor=STAFF, missing=[0]))


# --- extensions -------------------------------------------------------------------------------


async def test_an_extension_approved_and_one_refused(world: CaseWorld) -> None:
    case = await world.open(CaseKind.PROMISED)                   # due Mon 11-30
    await refused(CaseRefusal.REASON_REQUIRED, world.do(cases.request_extension, case.number, actor=STAFF,
                                                        days=3, reason=" ", supervisors=SUPERVISORS))
    await refused(CaseRefusal.BAD_DAYS, world.do(cases.request_extension, case.number, actor=STAFF,
                                                 days=31, reason="需外调", supervisors=SUPERVISORS))
    first = await world.do(cases.request_extension, case.number, actor=STAFF, days=3,
                           reason="需向原籍地核实户籍信息", supervisors=SUPERVISORS)
    await refused(CaseRefusal.EXTENSION_PENDING, world.do(cases.request_extension, case.number,
                                                          actor=STAFF, days=1, reason="再延",
                                                          supervisors=SUPERVISORS))
    await refused(CaseRefusal.NOT_SUPERVISOR, world.do(cases.decide_extension, first.id, actor=CLERK,
                                                       approve=True, supervisors=SUPERVISORS))
    assert (await world.case(case.number)).due_on == D(2026, 11, 30)
    world.clock.advance(hours=2)
    decided = await world.do(cases.decide_extension, first.id, actor=BOSS, approve=True,
                             supervisors=SUPERVISORS, note="同意")
    assert (decided.status, decided.due_before, decided.due_after) == (
        ExtensionStatus.APPROVED, D(2026, 11, 30), D(2026, 12, 3))
    assert (await world.case(case.number)).due_on == D(2026, 12, 3)
    await refused(CaseRefusal.ALREADY_DECIDED, world.do(cases.decide_extension, first.id, actor=BOSS2,
                                                        approve=False, supervisors=SUPERVISORS))

    second = await world.do(cases.request_extension, case.number, actor=BOSS, days=2, reason="再次核实",
                            supervisors=SUPERVISORS)
    await refused(CaseRefusal.SELF_APPROVAL, world.do(cases.decide_extension, second.id, actor=BOSS,
                                                      approve=True, supervisors=SUPERVISORS))
    refusal = await world.do(cases.decide_extension, second.id, actor=BOSS2, approve=False,
                             supervisors=SUPERVISORS, note="理由不充分")
    assert refusal.status == ExtensionStatus.REFUSED and refusal.due_after is None
    assert (await world.case(case.number)).due_on == D(2026, 12, 3)

    rows = await world.outbox()
    assert [(r.kind, r.target or "citizen") for r in rows] == [
        ("case_accepted", "citizen"),
        ("case_extension_request", BOSS), ("case_extension_request", BOSS2),
        ("case_extended", "citizen"), ("case_extension_decided", STAFF),
        ("case_extension_request", BOSS), ("case_extension_request", BOSS2),
        ("case_extension_decided", BOSS)]
    extended = rows[3].payload
    assert (extended["reason"], extended["days"], extended["due_before"], extended["due_on"]) == (
        "需向原籍地核实户籍信息", 3, "2026-11-30", "2026-12-03")
    assert rows[-1].payload["approved"] is False and rows[-1].payload["note"] == "理由不充分"
    assert await world.actions(case.number) == ["accept", "extension_requested", "extension_approved",
                                                "extension_requested", "extension_refused"]


# --- the result -------------------------------------------------------------------------------


async def test_ready_then_collected(world: CaseWorld) -> None:
    case = await world.open(CaseKind.PROMISED)
    await world.do(cases.start_processing, case.number, actor=STAFF)
    world.at(local(2026, 11, 26, 14))
    await world.do(cases.mark_ready, case.number, actor=STAFF)
    ready = (await world.outbox())[-1]
    assert ready.kind == "case_ready" and ready.dedup_key == f"case:{case.id}:ready:pickup"
    assert ready.payload["delivery"] == "pickup" and ready.payload["ready_on"] == "2026-11-26"
    assert ready.payload["place"] == {"zh": "一楼 公安综合窗口 4号", "en": "Ground floor, police services, window 4"}
    assert ready.payload["hours"]["zh"].startswith("工作日 9:00-12:00")
    assert ready.payload["bring"] == {"zh": "受理回执和居民户口簿",
                                      "en": "The acceptance receipt and the household register"}
    await refused(CaseRefusal.NO_MAILING, world.do(cases.mail_result, case.number, actor=STAFF,
                                                   tracking_number="EMS123"))
    await refused(CaseRefusal.NOT_ALLOWED, world.do(cases.withdraw, case.number, actor=STAFF))
    world.at(local(2026, 11, 27, 10))
    await world.do(cases.collect, case.number, actor=STAFF)
    closed = await world.case(case.number)
    assert (closed.state, closed.delivery, closed.closed_at) == (
        CaseState.CLOSED, "pickup", local(2026, 11, 27, 10))
    assert await world.actions(case.number) == ["accept", "start", "ready", "collect", "close"]
    assert await world.notices() == [("case_accepted", "citizen"), ("case_ready", "citizen")]


async def test_pickup_place_and_hours_can_be_given_for_one_case(world: CaseWorld) -> None:
    case = await world.open(CaseKind.PROMISED)
    await world.do(cases.mark_ready, case.number, actor=STAFF, pickup_place="二楼档案室",
                   pickup_hours="周三下午")
    payload = (await world.outbox())[-1].payload
    assert payload["place"] == {"zh": "二楼档案室", "en": "二楼档案室"}
    assert payload["hours"] == {"zh": "周三下午", "en": "周三下午"}


async def test_a_result_is_mailed_with_its_tracking_number(world: CaseWorld) -> None:
    case = await world.open(CaseKind.PROMISED, "id_card")
    await refused(CaseRefusal.TRACKING_REQUIRED, world.do(cases.mail_result, case.number, actor=STAFF,
                                                          tracking_number=" "))
    await world.do(cases.mail_result, case.number, actor=STAFF, tracking_number="EMS1234567890CN")
    mailed = await world.case(case.number)
    assert (mailed.state, mailed.delivery, mailed.tracking_number) == (
        CaseState.CLOSED, "mail", "EMS1234567890CN")
    assert await world.actions(case.number) == ["accept", "ready", "mail", "close"]
    notice = (await world.outbox())[-1]
    assert (notice.kind, notice.payload["delivery"], notice.payload["tracking_number"]) == (
        "case_ready", "mail", "EMS1234567890CN")


async def test_a_citizen_withdraws_only_their_own_case(world: CaseWorld) -> None:
    case = await world.open(CaseKind.CORRECTION, missing=[0])
    citizen = f"identity:{world.other_identity_id}"
    await refused(CaseRefusal.NOT_YOURS, world.do(cases.withdraw, case.number, actor=citizen,
                                                  identity_ids=[world.other_identity_id]))
    await world.do(cases.withdraw, case.number, actor=f"identity:{world.identity_id}",
                   identity_ids=[world.identity_id], reason="不办了")
    withdrawn = await world.case(case.number)
    assert (withdrawn.state, withdrawn.paused_on) == (CaseState.WITHDRAWN, None)
    # The citizen asked for it: no notice to them; the owner is told, once.
    assert await world.notices() == [("case_correction", "citizen"), ("case_withdrawn", STAFF)]
    [alert] = [row for row in await world.outbox() if row.kind == "case_withdrawn"]
    assert alert.payload["state"] == "correction" and alert.payload["by_citizen"] is True
    # Staff recording the withdrawal themselves tell nobody.
    own = await world.open(CaseKind.PROMISED)
    await world.do(cases.withdraw, own.number, actor=STAFF)
    assert [kind for kind, _ in await world.notices()].count("case_withdrawn") == 1


# --- every step's notices, in one run ---------------------------------------------------------


async def test_each_step_writes_exactly_its_notices(world: CaseWorld) -> None:
    case = await world.open(CaseKind.PROMISED, "id_card")
    expected = [("case_accepted", "citizen")]
    steps = [
        (cases.start_processing, {}, []),
        (cases.request_correction, {"missing": [2]}, [("case_correction", "citizen")]),
        (cases.resubmit, {}, [("case_resubmitted", "citizen")]),
        (cases.request_extension, {"days": 5, "reason": "制证中心排期", "supervisors": (BOSS,)},
         [("case_extension_request", BOSS)]),
    ]
    for operation, kwargs, notices in steps:
        await world.do(operation, case.number, actor=STAFF, **kwargs)
        expected += notices
        assert await world.notices() == expected, operation.__name__
    async with world.database.read() as session:
        view = await cases.view_case(session, world.centre, world.clock.now(), case.number)
    await world.do(cases.decide_extension, view.extensions[0].id, actor=BOSS, approve=True,
                   supervisors=(BOSS,))
    expected += [("case_extended", "citizen"), ("case_extension_decided", STAFF)]
    assert await world.notices() == expected
    for operation, notices in ((cases.mark_ready, [("case_ready", "citizen")]), (cases.collect, [])):
        await world.do(operation, case.number, actor=STAFF)
        expected += notices
        assert await world.notices() == expected, operation.__name__


# --- looking cases up -------------------------------------------------------------------------


async def test_numbers_are_checked_before_they_are_looked_up(world: CaseWorld) -> None:
    case = await world.open(CaseKind.PROMISED)
    spaced = format_case_number(case.number)
    assert (await world.case(spaced)).id == case.id
    wrong = case.number[:-1] + str((int(case.number[-1]) + 1) % 10)
    async with world.database.read() as session:
        with pytest.raises(CaseRefused) as typo:
            await cases.find_case(session, wrong)
        assert typo.value.reason == CaseRefusal.BAD_NUMBER
        other = case_number(9_999_999 if case.number != case_number(9_999_999) else 9_999_998)
        with pytest.raises(CaseRefused) as unknown:
            await cases.find_case(session, other)
        assert unknown.value.reason == CaseRefusal.UNKNOWN


async def test_views_for_staff_and_citizens(world: CaseWorld) -> None:
    late = await world.open(CaseKind.PROMISED)                           # due Mon 11-30
    world.at(local(2026, 11, 24, 9))
    later = await world.open(CaseKind.PROMISED, "id_card", actor=CLERK)  # due 12-22
    done = await world.open(CaseKind.IMMEDIATE, "social_card")
    waiting = await world.open(CaseKind.REPORTED)
    world.at(local(2026, 11, 30, 17))
    async with world.database.read() as session:
        lines = await cases.open_cases(session, world.centre, world.clock.now())
        assert [(line.case.number, line.overdue) for line in lines] == [
            (late.number, True), (later.number, False), (waiting.number, False)]
        mine = await cases.open_cases(session, world.centre, world.clock.now(), owner=CLERK)
        assert [line.case.number for line in mine] == [later.number]
        views = await cases.cases_of_accounts(session, world.centre, world.clock.now(),
                                              [world.identity_id])
        assert [v.case.number for v in views] == [waiting.number, later.number, late.number,
                                                  done.number]
        assert [e.action for e in views[-1].events] == ["accept", "ready", "collect", "close"]
        assert views[2].overdue and views[2].service.code == "hukou_transfer"
        assert await cases.cases_of_accounts(session, world.centre, world.clock.now(),
                                             [world.other_identity_id]) == []
