"""Cases (办件) in the chat: staff open one after /done and move it on with commands from the
staff group; the citizen follows it (办件进度) and hears about every step through the outbox;
supervisors decide extensions with a button; the scheduler reminds and escalates; the 回访 can
open a complaint. Time moves through the injected clock."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re

import pytest
from sqlalchemy import select

from bot.dispatch import Dispatcher
from handlers.engine import Assistant
from storage.centre import Centre
from storage.clock import ManualClock
from storage.db import Database
from storage.models import Appointment, Case, CaseState, Complaint
from storage.settings import Settings
from tests.dialog import Dialog
from tests.helpers import local, valid_id
from tests.staff_support import (
    STAFF_A,
    STAFF_B,
    SUPERVISOR,
    Recorder,
    Staff,
    book_telegram,
    staff_dispatcher,
    staff_settings,
)

ID_A = valid_id("11010519491231002")
ID_B = valid_id("11010519800101003")
MONDAY = dt.date(2026, 11, 23)
_NUMBER = re.compile(r"(\d{4} \d{4})")


MANAGER = 7100000001


@pytest.fixture
def settings() -> Settings:
    base = staff_settings()
    return dataclasses.replace(base, access=dataclasses.replace(
        base.access, managers=(f"telegram:{MANAGER}",)))


@pytest.fixture
def dispatcher(assistant: Assistant, settings: Settings, group: Recorder,
               citizens: Recorder) -> Dispatcher:
    return staff_dispatcher(assistant, settings, group, telegram=citizens)


@pytest.fixture
def boss(assistant: Assistant) -> Staff:
    """The supervisor, in a private chat with the bot (where extension requests reach them)."""
    return Staff(assistant, SUPERVISOR, "李主任", chat=SUPERVISOR)


async def book(assistant: Assistant, service: str, *, user: str = "51", index: int = 0,
               name: str = "张三", mobile: str = "13812345678", id_number: str = ID_A,
               day: dt.date = MONDAY) -> Appointment:
    """A booking for today made before the test starts, by the citizen's chat account."""
    return await book_telegram(assistant, service, day, index, user=user, name=name,
                               mobile=mobile, id_number=id_number)


async def served(wang: Staff, appointment: Appointment) -> str:
    """Check the citizen in and mark them served: the kind buttons follow."""
    await wang.command("checkin", appointment.code)
    return await wang.command("done", appointment.code)


def number_in(text: str) -> str:
    found = _NUMBER.search(text)
    assert found, text
    return found.group(1)


async def case_row(assistant: Assistant, number: str) -> Case:
    async with assistant.database.read() as session:
        case = await session.scalar(select(Case).where(Case.number == number.replace(" ", "")))
        assert case is not None
        return case


# --- staff: opening and moving a case -----------------------------------------------------------


async def test_done_offers_the_six_kinds_and_a_promised_case_runs_to_collection(
        assistant: Assistant, wang: Staff) -> None:
    appointment = await book(assistant, "hukou_transfer")
    done = await served(wang, appointment)
    assert "已办结" in done and "请选择办件类型（默认：承诺件）" in done
    assert wang.labels == ["即办件", "承诺件", "补办件", "退回件", "联办件", "上报件", "不立案"]
    opened = await wang.press_label("承诺件")
    assert "已立案" in opened and "承诺11月30日 周一前办结" in opened   # 5 working days
    number = number_in(opened)
    shown = await wang.command("case", number)
    assert f"【办件 {number}】户口迁移" in shown and "状态：已受理" in shown
    assert "承诺办结：11月30日 周一" in shown and "受理 王芳" in shown
    assert "办事人：张* 138****5678" in shown and "13812345678" not in shown
    assert number in await wang.command("cases")
    assert "已办结" in await wang.command("ready", number.replace(" ", ""))
    assert "已领取并结案" in await wang.command("collected", number)
    assert "不能“领取”" in await wang.command("collected", number)            # twice
    assert (await case_row(assistant, number)).state == CaseState.CLOSED
    assert "没有未办结的办件" in await wang.command("cases")
    # The booking has its case: /done again or /opencase does not open a second one.
    assert "已经立案" in await wang.command("opencase", appointment.code)


async def test_no_case_and_bad_numbers(assistant: Assistant, wang: Staff) -> None:
    appointment = await book(assistant, "hukou_transfer")
    await served(wang, appointment)
    assert "未立案" in await wang.press_label("不立案")
    assert "用法" in await wang.command("case")
    assert "有误" in await wang.command("case", "1234 5678")               # check digit
    assert "没有办件编号为 12345670" not in await wang.command("case", "1234 5678")
    assert "用法" in await wang.command("extend", "1234 5678 abc")
    assert "请选择办件类型" in await wang.command("opencase", appointment.code)


async def test_correction_picks_materials_as_toggles_and_stops_the_clock(
        assistant: Assistant, wang: Staff) -> None:
    appointment = await book(assistant, "hukou_transfer")
    await served(wang, appointment)
    menu = await wang.press_label("补办件")
    assert "请点选缺少的材料" in menu and "☐ 居民户口簿" in wang.labels
    await wang.press_label("居民身份证")
    await wang.press_label("迁入地证明材料")
    await wang.press_label("☑ 居民身份证")                                    # off again
    await wang.say("请带户主签字的同意书")
    picked = wang.text
    assert "已选：迁入地证明材料" in picked and "说明：请带户主签字的同意书" in picked
    opened = await wang.press_label("完成")
    assert "已一次性告知市民补正材料" in opened and "补正期限12月7日 周一" in opened
    number = number_in(opened)
    case = await case_row(assistant, number)
    assert case.state == CaseState.CORRECTION and case.paused_on == MONDAY
    assert "补正中" in await wang.command("case", number)
    # Materials back on Thursday: three working days were spent waiting.
    assistant.clock.set(local(2026, 11, 26, 10))
    back = await wang.command("resubmit", number)
    assert "时限顺延3个工作日" in back and "12月3日 周四" in back


async def test_returned_needs_reason_and_basis(assistant: Assistant, wang: Staff) -> None:
    appointment = await book(assistant, "hukou_transfer")
    await served(wang, appointment)
    assert "请回复不予受理的理由" in await wang.press_label("退回件")
    asked = await wang.say("不属于本镇户籍")
    assert "法律依据" in asked and any("户口登记条例" in label for label in wang.labels)
    refused = await wang.press_label("依据")
    assert "已退回" in refused
    assert (await case_row(assistant, number_in(refused))).state == CaseState.REFUSED


async def test_joint_case_waits_for_each_department(assistant: Assistant, wang: Staff) -> None:
    appointment = await book(assistant, "hukou_transfer")
    await served(wang, appointment)
    assert "协办部门" in await wang.press_label("联办件")
    assert "没看懂" in await wang.say("只有公安局")
    opened = await wang.say("公安局 3、民政局 7")
    assert "联办件" in opened and "12月2日 周三" in opened                    # the slower one
    number = number_in(opened)
    assert "还有部门未办完：公安局、民政局" in await wang.command("ready", number)
    assert "公安局 已办完" in await wang.command("partdone", f"{number} 公安局")
    await wang.command("partdone", f"{number} 民政局")
    assert "已办结" in await wang.command("ready", number)


async def test_extension_approved_and_refused_by_a_supervisor(
        assistant: Assistant, wang: Staff, boss: Staff, dispatcher: Dispatcher,
        citizens: Recorder) -> None:
    appointment = await book(assistant, "hukou_transfer")
    await served(wang, appointment)
    number = number_in(await wang.press_label("承诺件"))
    asked = await wang.command("extend", f"{number} 3 需外省公安协查")
    assert "等待负责人审批" in asked
    assert "已有一个待审批的延期申请" in await wang.command("extend", f"{number} 2 再等等")
    await dispatcher.drain()
    alert = [d for d in citizens.sent if d.chat_id == str(SUPERVISOR)]
    assert alert and "延期申请" in alert[-1].text and "需外省公安协查" in alert[-1].text
    approve = next(t for t in alert[-1].tokens if t.startswith("g:cextok:"))
    refuse = next(t for t in alert[-1].tokens if t.startswith("g:cextno:"))
    # Not a supervisor: refused; the supervisor: approved, once.
    assert "只有负责人" in await wang.press(approve)
    approved = await boss.press(approve)
    assert "已同意延期" in approved and "12月3日 周四" in approved
    assert "已经处理过了" in await boss.press(refuse)
    citizens.take()
    await dispatcher.drain()
    told = [d.text for d in citizens.sent if d.chat_id == "51"]
    assert any("延期告知" in t and "需外省公安协查" in t and "12月3日 周四" in t for t in told)
    # A second request, refused: the due date stays.
    await wang.command("extend", f"{number} 2 材料复核")
    await dispatcher.drain()
    second = [d for d in citizens.sent if d.chat_id == str(SUPERVISOR)][-1]
    assert "不同意延期申请" in await boss.press(
        next(t for t in second.tokens if t.startswith("g:cextno:")))
    assert (await case_row(assistant, number)).due_on == dt.date(2026, 12, 3)


async def test_only_staff_move_cases(assistant: Assistant, wang: Staff) -> None:
    appointment = await book(assistant, "hukou_transfer")
    await served(wang, appointment)
    number = number_in(await wang.press_label("承诺件"))
    stranger = Staff(assistant, STAFF_B + 77, "路人", chat=STAFF_B + 77)
    assert "仅供窗口工作人员使用" in await stranger.command("ready", number)
    assert (await case_row(assistant, number)).state == CaseState.ACCEPTED


# --- the citizen: notices, 办件进度, 回访 --------------------------------------------------------


def told(citizens: Recorder, user: str = "51") -> list[str]:
    return [d.text for d in citizens.sent if d.chat_id == user]


async def test_a_promised_case_from_the_window_to_the_citizens_chat(
        assistant: Assistant, wang: Staff, dispatcher: Dispatcher, citizens: Recorder,
        group: Recorder) -> None:
    appointment = await book(assistant, "hukou_transfer")
    await served(wang, appointment)
    number = number_in(await wang.press_label("承诺件"))
    await dispatcher.drain()
    receipt = next(t for t in told(citizens) if "受理回执" in t)
    assert number in receipt and "11月30日 周一前办结" in receipt and "5个工作日" in receipt
    assert "一楼 公安综合窗口 4号" in receipt
    citizen = Dialog(assistant, user="51", channel="telegram")
    await citizen.say("进度")
    assert f"【{number}】户口迁移" in citizen.text
    assert "已受理，承诺11月30日 周一前办结" in citizen.text
    await citizen.press("办件进度")                                        # the main menu's entry
    assert number in citizen.text
    await citizen.say(number.replace(" ", "-"))                            # typed as a number
    assert "已受理，承诺11月30日 周一前办结" in citizen.text
    # 办结 on Thursday: where, when, what to bring; then collected and closed.
    assistant.clock.set(local(2026, 11, 26, 15))
    await wang.command("ready", number)
    await dispatcher.drain()
    ready = next(t for t in told(citizens) if "办结通知" in t)
    assert "领取地点：一楼 公安综合窗口 4号" in ready and "周五下午不办理" in ready
    assert "受理回执和居民户口簿" in ready
    await citizen.say("进度")
    assert "已办结，请到一楼 公安综合窗口 4号领取" in citizen.text
    await wang.command("collected", number)
    await citizen.say("查询")
    assert "已办结（11月26日 周四）" in citizen.text and "已领取" in citizen.text


async def test_a_citizen_cannot_see_another_accounts_case(
        assistant: Assistant, wang: Staff) -> None:
    appointment = await book(assistant, "hukou_transfer")
    await served(wang, appointment)
    number = number_in(await wang.press_label("承诺件"))
    await book(assistant, "id_card", user="52", name="李四", mobile="13900001111", id_number=ID_B)
    other = Dialog(assistant, user="52", channel="telegram")
    await other.say(number)
    assert f"没有找到办件编号为 {number} 的办件" in other.text and "户口迁移" not in other.text
    await other.say("进度")
    assert "还没有办件" in other.text and number not in other.text
    # A number that exists nowhere reads the same; a typo is told apart by its check digit.
    digits = number.replace(" ", "")
    wrong = digits[:-1] + str((int(digits[-1]) + 1) % 10)
    await other.say(wrong)
    assert "有误" in other.text
    await other.command("progress", number)
    assert "没有找到办件编号为" in other.text


async def test_correction_notice_lists_exactly_what_to_bring_with_a_booking_button(
        assistant: Assistant, wang: Staff, dispatcher: Dispatcher, citizens: Recorder) -> None:
    appointment = await book(assistant, "hukou_transfer")
    await served(wang, appointment)
    await wang.press_label("补办件")
    await wang.press_label("迁入地证明材料")
    await wang.press_label("准予迁入证明")
    number = number_in(await wang.press_label("完成"))
    await dispatcher.drain()
    notice = next(d for d in citizens.sent if d.kind == "case_correction")
    assert "一次性补正告知" in notice.text and number in notice.text
    assert "1. 迁入地证明材料" in notice.text and "2. 准予迁入证明" in notice.text
    assert "居民户口簿" not in notice.text and "12月7日 周一前" in notice.text
    assert any(t.startswith("g:rebook:") for t in notice.tokens)           # book a 补办 slot
    citizen = Dialog(assistant, user="51", channel="telegram")
    await citizen.say("进度")
    assert "待补正材料，请在12月7日 周一前补齐" in citizen.text
    await citizen.send(choice=next(t for t in notice.tokens if t.startswith("g:rebook:")))
    assert "户口迁移" in citizen.text                                      # booking that service
    assistant.clock.set(local(2026, 11, 25, 10))
    await wang.command("resubmit", number)
    await dispatcher.drain()
    back = next(d.text for d in citizens.sent if d.kind == "case_resubmitted")
    assert "2个工作日不计入时限" in back and "12月2日 周三" in back


async def test_refusal_tells_reason_basis_and_how_to_appeal(
        assistant: Assistant, wang: Staff, dispatcher: Dispatcher, citizens: Recorder) -> None:
    appointment = await book(assistant, "hukou_transfer")
    await served(wang, appointment)
    await wang.press_label("退回件")
    await wang.say("申请人不属于本镇户籍")
    await wang.say("《户口登记条例》第十条")
    await dispatcher.drain()
    refusal = next(d.text for d in citizens.sent if d.kind == "case_refused")
    assert "不予受理" in refusal and "理由：申请人不属于本镇户籍" in refusal
    assert "依据：《户口登记条例》第十条" in refusal and "行政复议" in refusal
    assert "行政诉讼" in refusal


async def test_followup_unsatisfied_opens_a_complaint_once(
        assistant: Assistant, wang: Staff, dispatcher: Dispatcher, citizens: Recorder) -> None:
    from storage.case_jobs import request_followups

    appointment = await book(assistant, "hukou_transfer")
    await served(wang, appointment)
    number = number_in(await wang.press_label("即办件"))
    assert "即办件已办结" in wang.text
    assistant.clock.set(local(2026, 11, 24, 9, 5))                        # a working day later
    async with assistant.database.session() as session:
        assert await request_followups(session, assistant.centre, assistant.clock.now()) == 1
    await dispatcher.drain()
    ask = next(d for d in citizens.sent if d.kind == "case_followup")
    assert "回访" in ask.text and number in ask.text and len(ask.tokens) == 5
    citizen = Dialog(assistant, user="51", channel="telegram")
    unsatisfied = next(t for t in ask.tokens if t.endswith(":2"))
    await citizen.send(choice=unsatisfied)
    assert "已转为投诉" in citizen.text
    await citizen.say("等了很久，电话 13812345678 没人接")
    assert "已收到您的意见" in citizen.text
    await citizen.send(choice=ask.tokens[0])
    assert "已经评价过这个办件" in citizen.text
    stranger = Dialog(assistant, user="52", channel="telegram")
    await stranger.send(choice=ask.tokens[0])
    assert "不是您的" in stranger.text
    async with assistant.database.read() as session:
        complaints = (await session.scalars(select(Complaint))).all()
        case = await session.scalar(select(Case).where(Case.number == number.replace(" ", "")))
    assert len(complaints) == 1 and case is not None and case.complaint_id == complaints[0].id
    assert case.followup_level == 2 and "138****5678" in (complaints[0].text or "")


# --- the scheduler: 限时办结 ---------------------------------------------------------------------


async def test_owner_reminded_the_day_before_and_overdue_escalated_exactly_once(
        assistant: Assistant, settings: Settings, wang: Staff, dispatcher: Dispatcher,
        citizens: Recorder, group: Recorder) -> None:
    from bot.scheduler import Jobs
    from bot.wiring import App

    jobs = Jobs(App(settings=settings, database=assistant.database, centre=assistant.centre,
                    clock=assistant.clock), dispatcher)
    appointment = await book(assistant, "hukou_transfer")
    await served(wang, appointment)
    number = number_in(await wang.press_label("承诺件"))                # due Mon 30 Nov
    assistant.clock.set(local(2026, 11, 27, 8, 55))
    await jobs.sweep()
    await jobs.dispatch()
    assert not [d for d in citizens.sent if d.kind == "case_due_soon"]
    assistant.clock.set(local(2026, 11, 27, 9, 0))                         # a working day before
    await jobs.sweep()
    await jobs.sweep()
    await jobs.dispatch()
    reminders = [d for d in citizens.sent if d.kind == "case_due_soon"]
    assert len(reminders) == 1 and reminders[0].chat_id == str(STAFF_A)
    assert "到期提醒" in reminders[0].text and number in reminders[0].text
    assert "11月30日 周一" in reminders[0].text
    assistant.clock.set(local(2026, 11, 30, 16, 59))
    await jobs.sweep()
    await jobs.dispatch()
    assert not [d for d in citizens.sent if d.kind == "case_overdue"]
    for minute in (0, 1, 30):                                              # 17:00 and after
        assistant.clock.set(local(2026, 11, 30, 17, minute))
        await jobs.sweep()
    assistant.clock.set(local(2026, 12, 1, 9, 0))
    await jobs.sweep()
    await jobs.dispatch()
    escalated = [d for d in citizens.sent if d.kind == "case_overdue"]
    assert len(escalated) == 1 and escalated[0].chat_id == str(SUPERVISOR)
    assert "超期督办" in escalated[0].text and "负责人：王芳" in escalated[0].text
    assert "⚠" in await wang.command("cases")
    await jobs.digest()
    await jobs.dispatch()
    digest = group.of_kind("staff_digest")
    assert len(digest) == 1 and "超期未办结的办件（1 件）" in digest[0].text
    assert number in digest[0].text and "承诺11月30日 周一" in digest[0].text
    await jobs.digest()
    await jobs.dispatch()
    assert len(group.of_kind("staff_digest")) == 1                          # once a day


async def test_an_uncollected_result_is_reminded_once(
        assistant: Assistant, settings: Settings, wang: Staff, dispatcher: Dispatcher,
        citizens: Recorder) -> None:
    from bot.scheduler import Jobs
    from bot.wiring import App

    jobs = Jobs(App(settings=settings, database=assistant.database, centre=assistant.centre,
                    clock=assistant.clock), dispatcher)
    appointment = await book(assistant, "hukou_transfer")
    await served(wang, appointment)
    number = number_in(await wang.press_label("承诺件"))
    await wang.command("ready", f"{number} 二楼 综合出件窗口 | 每天 9:00-11:00")
    for day in (24, 25, 26, 27, 30):                                       # five working days on
        assistant.clock.set(local(2026, 11, day, 9, 5))
        await jobs.sweep()
    assistant.clock.set(local(2026, 12, 1, 9, 5))
    await jobs.sweep()
    await jobs.dispatch()
    reminders = [d.text for d in citizens.sent if d.kind == "case_uncollected"]
    assert len(reminders) == 1 and "领取提醒" in reminders[0]
    assert "二楼 综合出件窗口" in reminders[0] and "每天 9:00-11:00" in reminders[0]


# --- managers -----------------------------------------------------------------------------------


async def test_stats_and_export_count_cases_by_kind_and_time_limit(
        database: Database, clock: ManualClock, centre: Centre, settings: Settings) -> None:
    from openpyxl import load_workbook

    from bot.reports import FileReports
    from tests.helpers import load_demo

    async with database.session() as session:
        await load_demo(session, clock.now())
    assistant = Assistant(database=database, centre=centre, clock=clock, settings=settings,
                          reports=FileReports())
    wang = Staff(assistant, STAFF_A, "王芳")
    for index, kind in enumerate(("承诺件", "承诺件", "即办件")):
        appointment = await book(assistant, "hukou_transfer", user=f"6{index}", index=index,
                                 name="张三", id_number=ID_A)
        await served(wang, appointment)
        await wang.press_label(kind)
    promised = [line.case.number for line in await _open_lines(assistant)]
    clock.set(local(2026, 11, 26, 10))
    await wang.command("ready", promised[0])                               # on time
    await wang.command("extend", f"{promised[1]} 2 外省协查")
    clock.set(local(2026, 12, 1, 10))                                      # the other is overdue
    manager = Staff(assistant, MANAGER, "经理", chat=MANAGER)
    shown = await manager.command("stats", "2026-11-01..2026-11-30")
    assert "办件 3：即办 1 · 承诺 2 · 补办 0 · 退回 0" in shown
    assert "办结 1，按时率 100.0%" in shown and "当前超期 1" in shown
    assert "延期 申请 1 · 同意 0" in shown
    await manager.command("export", "2026-11-01..2026-11-30")
    book_file = next(r.attachment for r in manager.last if r.attachment and
                     r.attachment.filename.endswith(".xlsx"))
    sheet = load_workbook(io.BytesIO(book_file.content))["办件"]
    rows = [[cell.value for cell in row] for row in sheet.iter_rows()]
    assert rows[1][:4] == ["事项编码", "事项", "办件数", "即办件"]
    assert rows[2][1] == "合计" and rows[2][2] == 3 and rows[3][0] == "hukou_transfer"
    csv_file = next(r.attachment for r in manager.last if r.attachment and
                    r.attachment.filename.endswith(".csv"))
    assert "按时率" in csv_file.content.decode("utf-8-sig")
    await manager.command("stats", "chart 2026-11-01..2026-11-30")
    charts = [r for r in manager.last if r.attachment is not None]
    assert len(charts) == 2 and "每周办件按时率" in charts[1].text
    assert charts[1].attachment is not None and charts[1].attachment.content[:4] == b"\x89PNG"


async def _open_lines(assistant: Assistant) -> list:  # type: ignore[type-arg]
    from storage import cases

    async with assistant.database.read() as session:
        return [line for line in await cases.open_cases(session, assistant.centre,
                                                        assistant.clock.now())
                if line.case.kind.value == "promised"]


async def test_refuse_and_correct_say_at_once_when_the_state_does_not_allow(
        assistant: Assistant, wang: Staff) -> None:
    appointment = await book(assistant, "hukou_transfer")
    await served(wang, appointment)
    number = number_in(await wang.press_label("即办件"))                  # closed at once
    assert "当前状态为“已办结”，不能“不予受理”" in await wang.command("refuse", number)
    assert "不能“补正告知”" in await wang.command("correct", number)


async def test_progress_in_english(assistant: Assistant, wang: Staff) -> None:
    appointment = await book(assistant, "hukou_transfer")
    await served(wang, appointment)
    number = number_in(await wang.press_label("承诺件"))
    citizen = Dialog(assistant, user="51", channel="telegram", locale="en")
    await citizen.command("lang", "en")
    await citizen.say("progress")
    assert f"[{number}] Household registration transfer" in citizen.text
    assert "accepted, promised by Mon 30 Nov" in citizen.text
    assert "My cases" in citizen.labels
    await citizen.say("9999 9999")
    assert "not right" in citizen.text or "No case" in citizen.text


async def test_a_walk_in_case_without_a_booking(assistant: Assistant, wang: Staff,
                                                dispatcher: Dispatcher,
                                                citizens: Recorder) -> None:
    await book(assistant, "id_card")                     # the centre knows 张三 and their chat
    assert "用法" in await wang.command("walkincase", "hukou_transfer")
    assert "没有叫“nothing”的事项" in await wang.command("walkincase", "nothing 13812345678")
    assert "没有登记手机号为 139****0000" in await wang.command("walkincase",
                                                               "hukou_transfer 13900000000")
    offered = await wang.command("walkincase", "hukou_transfer 138 1234 5678")
    assert "张* 138****5678" in offered and "13812345678" not in offered
    assert "现场办理，无预约" in offered
    opened = await wang.press_label("承诺件")
    number = number_in(opened)
    case = await case_row(assistant, number)
    assert case.appointment_id is None and case.identity_id is not None
    await dispatcher.drain()
    assert any("受理回执" in t and number in t for t in told(citizens))


# --- the citizen withdraws (撤回申请) ------------------------------------------------------------


async def test_a_citizen_withdraws_an_open_case_after_confirming_and_the_owner_is_told(
        assistant: Assistant, wang: Staff, dispatcher: Dispatcher, citizens: Recorder) -> None:
    from storage.models import AuditLog

    appointment = await book(assistant, "hukou_transfer")
    await served(wang, appointment)
    number = number_in(await wang.press_label("承诺件"))
    citizen = Dialog(assistant, user="51", channel="telegram")
    await citizen.say("进度")
    assert "如需撤回申请，请发送“撤回”和办件编号" in citizen.text
    await citizen.say(number)                                 # one case: its button
    await citizen.press("撤回申请")
    assert f"确定要撤回办件【{number}】户口迁移" in citizen.text
    assert citizen.labels == ["确认撤回", "不撤回"]
    await citizen.press("不撤回")                               # changed their mind
    assert f"办件 {number} 继续办理" in citizen.text
    assert (await case_row(assistant, number)).state == CaseState.ACCEPTED
    await citizen.say(f"撤回 {number}")                         # typed, then confirmed
    await citizen.press("确认撤回")
    assert f"办件 {number} 已撤回" in citizen.text
    case = await case_row(assistant, number)
    assert case.state == CaseState.WITHDRAWN
    async with assistant.database.read() as session:
        audited = (await session.scalars(select(AuditLog).where(
            AuditLog.entity == "case", AuditLog.entity_id == case.id,
            AuditLog.action == "case_withdraw"))).all()
    assert [a.actor for a in audited] == [f"identity:{case.identity_id}"]
    await dispatcher.drain()
    [alert] = citizens.of_kind("case_withdrawn")              # to the owner, in private
    assert alert.chat_id == str(STAFF_A)
    assert f"市民撤回了办件 {number}（户口迁移" in alert.text and "撤回前状态：已受理" in alert.text
    assert not [t for t in told(citizens) if "撤回" in t]      # the citizen asked: no notice
    await citizen.say(f"撤回 {number}")
    assert f"办件 {number} 已经撤回过了" in citizen.text
    await citizen.say("撤回")
    assert "没有可以撤回的办件" in citizen.text
    assert "已撤回" in (await wang.command("case", number))


async def test_withdrawal_is_refused_once_the_result_is_ready_or_the_case_is_over(
        assistant: Assistant, wang: Staff) -> None:
    appointment = await book(assistant, "hukou_transfer")
    await served(wang, appointment)
    number = number_in(await wang.press_label("承诺件"))
    citizen = Dialog(assistant, user="51", channel="telegram")
    await citizen.command("withdraw", number)
    assert citizen.labels == ["确认撤回", "不撤回"]
    await wang.command("ready", number)                       # meanwhile, at the window
    await citizen.press("确认撤回")
    assert "已经办结，结果正等您领取，不能再撤回" in citizen.text
    assert (await case_row(assistant, number)).state == CaseState.READY
    await citizen.say(number)
    assert "撤回申请" not in citizen.labels                     # no button on a ready case
    await wang.command("collected", number)
    await citizen.say(f"撤回申请 {number}")
    assert f"办件 {number} 已经办结，不能撤回" in citizen.text
    stranger = Dialog(assistant, user="52", channel="telegram")
    await stranger.say(f"撤回 {number}")
    assert "没有找到办件编号为" in stranger.text
    english = Dialog(assistant, user="51", channel="telegram", locale="en")
    await english.command("lang", "en")
    await english.say(f"withdraw {number}")
    assert f"Case {number} is already done and cannot be withdrawn" in english.text
