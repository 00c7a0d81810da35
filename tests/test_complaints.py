"""Complaints and suggestions (投诉/建议): filed from the main menu with a category, one of the
citizen's own bookings or cases, the text and a photo; a repeat within 30 days merged as a 催办
(and not after); confidential routing to the supervisors only, never to the staff group or the
clerk the complaint names; classification, the answer, and the 回访 that reopens once; the
monthly sample. Time moves through the injected clock."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from sqlalchemy import func, select

from bot.dispatch import Dispatcher
from bot.scheduler import Jobs
from bot.wiring import App
from handlers.engine import Assistant
from storage import complaints
from storage.clock import ManualClock
from storage.db import Database
from storage.models import Appointment, Complaint, ComplaintEvent, RequestStatus
from storage.settings import AccessSettings, Settings
from tests.dialog import Dialog
from tests.helpers import local, make_centre, valid_id
from tests.staff_support import (
    STAFF_A,
    STAFF_PRIVATE,
    SUPERVISOR,
    Recorder,
    Staff,
    book_telegram,
    staff_dispatcher,
    staff_settings,
)

ID_A = valid_id("11010519491231002")
TODAY = dt.date(2026, 11, 23)
CITIZEN = "7100000001"


@pytest.fixture
def settings() -> Settings:
    base = staff_settings()
    # The clerk 王芳 (STAFF_A) is a supervisor too: a complaint naming her must still not
    # reach her.
    return dataclasses.replace(base, access=AccessSettings(
        staff=(f"telegram:{STAFF_PRIVATE}",),
        supervisors=(f"telegram:{SUPERVISOR}", f"telegram:{STAFF_A}"),
        managers=(f"telegram:{SUPERVISOR}",)))


@pytest.fixture
def dispatcher(assistant: Assistant, settings: Settings, group: Recorder,
               citizens: Recorder) -> Dispatcher:
    return staff_dispatcher(assistant, settings, group, telegram=citizens)


@pytest.fixture
def boss(assistant: Assistant) -> Staff:
    """The supervisor, in a private chat with the bot."""
    return Staff(assistant, SUPERVISOR, "赵主任", chat=SUPERVISOR)


async def served(assistant: Assistant, wang: Staff) -> Appointment:
    """The citizen's booking today, checked in and completed by 王芳 at the window."""
    appointment = await book_telegram(assistant, "id_card", TODAY, 0, user=CITIZEN, name="张三",
                                      mobile="13812345678", id_number=ID_A)
    await wang.command("checkin", appointment.code)
    await wang.command("done", appointment.code)
    return appointment


async def file_complaint(citizen: Dialog, *, booking: str | None, text: str,
                         photo: str | None = None) -> None:
    await citizen.command("menu")
    await citizen.press("投诉建议")
    assert "保密" in citizen.text
    await citizen.press("投诉")
    assert "服务态度" in citizen.labels and "环境设施" in citizen.labels
    await citizen.press("服务态度")
    if booking is not None:
        await citizen.press(booking)
    elif any("不涉及" in label for label in citizen.labels):
        await citizen.press("不涉及")
    assert "具体情况" in citizen.text
    await citizen.say(text)
    assert "照片" in citizen.text
    if photo is not None:
        await citizen.send(event="unsupported", photo=photo)
    else:
        await citizen.press("跳过")


async def test_a_complaint_reaches_the_supervisor_alone_never_the_group_or_the_clerk_named(
        assistant: Assistant, wang: Staff, boss: Staff, dispatcher: Dispatcher, group: Recorder,
        citizens: Recorder, database: Database) -> None:
    code = (await served(assistant, wang)).code
    citizen = Dialog(assistant, user=CITIZEN, channel="telegram")
    await file_complaint(citizen, booking=code, text="窗口人员态度很差，电话 13812345678",
                         photo="telegram:AgACAgUAAxkBAAIB")
    assert "投诉已登记，编号 1" in citizen.text and "11月24日" in citizen.text   # next working day
    await dispatcher.drain()
    assert group.sent == []                                    # nothing in the staff group
    [alert] = [d for d in citizens.sent if d.kind == "complaint_alert"]
    assert alert.chat_id == str(SUPERVISOR)                    # not 王芳, whom it names
    assert not [d for d in citizens.sent if d.chat_id == str(STAFF_A)]
    assert "服务态度" in alert.text and f"预约 {code}" in alert.text and "附照片" in alert.text
    assert "138****5678" in alert.text and "13812345678" not in alert.text
    # 王芳 is a supervisor, yet she neither sees it listed nor can open it.
    alone = Staff(assistant, STAFF_A, "王芳", chat=STAFF_A)
    assert "没有未办结" in await alone.command("complaints")
    assert "没有编号为 1 的投诉" in await alone.command("complaints", "1")
    assert "没有编号为 1 的投诉" in await alone.command("classify", "1 无效 我没错")
    # In the staff group nobody may work on complaints.
    assert "私聊" in await wang.command("complaints")
    async with database.read() as session:
        stored = await session.get(Complaint, 1)
        assert stored is not None and stored.staff_named == f"telegram:{STAFF_A}"
        assert stored.photo == "telegram:AgACAgUAAxkBAAIB" and stored.category == "attitude"
    listing = await boss.command("complaints")
    assert "#1 投诉·服务态度" in listing
    detail = await boss.command("complaints", "1")
    assert "市民提交" in detail and "近 30 天" in detail


async def test_classify_answer_and_a_followup_that_reopens_once(
        assistant: Assistant, boss: Staff, dispatcher: Dispatcher, citizens: Recorder,
        database: Database, clock: ManualClock) -> None:
    citizen = Dialog(assistant, user=CITIZEN, channel="telegram")
    await file_complaint(citizen, booking=None, text="大厅太冷，没有开空调")
    assert "编号 1" in citizen.text
    assert "请先认定" in await boss.command("answer", "1 已开空调")
    assert "只能是" in await boss.command("classify", "1 差不多 冷")
    assert "有效" in await boss.command("classify", "1 有效 当天空调故障")
    assert "已把处理结果告知市民" in await boss.command("answer", "1 空调已修好，向您致歉。")
    await dispatcher.drain()
    [outcome] = [d for d in citizens.sent if d.kind == "complaint_outcome"]
    assert outcome.chat_id == CITIZEN and "空调已修好" in outcome.text and "有效" in outcome.text
    assert "是否满意" in outcome.text and len(outcome.tokens) == 2
    await citizen.send(choice=outcome.tokens[1])                 # 不满意
    assert "重新办理" in citizen.text
    await citizen.send(choice=outcome.tokens[1])
    assert "还没有处理结果" in citizen.text                       # reopened: no outcome yet
    await dispatcher.drain()
    reopened = [d for d in citizens.sent if d.kind == "complaint_reopened"]
    assert {d.chat_id for d in reopened} == {str(SUPERVISOR), str(STAFF_A)}   # both supervisors
    assert "不满意" in reopened[0].text
    async with database.read() as session:
        stored = await session.get(Complaint, 1)
        assert stored is not None and stored.status != RequestStatus.CLOSED
        assert stored.reopened == 1 and stored.priority == 1
    clock.advance(dt.timedelta(hours=2))
    assert "已把处理结果告知市民" in await boss.command("answer", "1 已加装备用空调。")
    await dispatcher.drain()
    second = [d for d in citizens.sent if d.kind == "complaint_outcome"][-1]
    assert "备用空调" in second.text
    await citizen.send(choice=second.tokens[1])                  # 不满意 again
    assert "不再重新办理" in citizen.text
    async with database.read() as session:
        stored = await session.get(Complaint, 1)
        assert stored is not None and stored.status == RequestStatus.CLOSED
        assert stored.reopened == 1 and stored.followup_satisfied is False
    figures = await boss.command("stats")
    assert "投诉 1（服务态度 0、办事效率 0、材料要求 0、环境设施 0、其他 0）" not in figures
    assert "投诉 1（服务态度 1、办事效率 0、材料要求 0、环境设施 0、其他 0）" in figures
    assert "按时答复 1/1" in figures and "回访满意 0、不满意 2（满意率 0.0%），重新办理 1" in figures


async def test_a_repeat_within_30_days_is_a_reminder_and_after_30_days_a_new_complaint(
        assistant: Assistant, wang: Staff, boss: Staff, dispatcher: Dispatcher,
        citizens: Recorder, database: Database, clock: ManualClock) -> None:
    code = (await served(assistant, wang)).code
    citizen = Dialog(assistant, user=CITIZEN, channel="telegram")
    await file_complaint(citizen, booking=code, text="窗口人员态度很差")
    assert "编号 1" in citizen.text
    await boss.command("claimc", "1")
    clock.advance(dt.timedelta(days=29))
    await file_complaint(citizen, booking=code, text="还是没人联系我")
    assert "不再重复登记" in citizen.text and "编号 1" in citizen.text
    await dispatcher.drain()
    [urge] = [d for d in citizens.sent if d.kind == "complaint_urge"]     # to its owner
    assert urge.chat_id == str(SUPERVISOR) and "催办" in urge.text and "优先级升为 1" in urge.text
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(Complaint)) == 1
        stored = await session.get(Complaint, 1)
        assert stored is not None and stored.repeats == 1 and stored.priority == 1
        actions = (await session.scalars(select(ComplaintEvent.action)
                                          .order_by(ComplaintEvent.id))).all()
        assert list(actions) == ["opened", "urge"]
    assert "市民催办：还是没人联系我" in await boss.command("complaints", "1")
    assert "合并催办 1" in await boss.command("stats", "month")
    clock.advance(dt.timedelta(days=2))                          # 31 days after the first
    await file_complaint(citizen, booking=code, text="又遇到同样的问题")
    assert "投诉已登记，编号 2" in citizen.text
    assert "其他投诉 0 件" in await boss.command("complaints", "2")   # #1 is 31 days old
    await file_complaint(citizen, booking=None, text="大厅没有热水")        # about nothing booked
    assert "投诉已登记，编号 3" in citizen.text
    detail = await boss.command("complaints", "3")
    assert "其他投诉 1 件" in detail and "投诉 #2" in detail


async def test_a_suggestion_is_never_merged_and_bad_input_is_asked_again(
        assistant: Assistant, dispatcher: Dispatcher, group: Recorder) -> None:
    citizen = Dialog(assistant, user=CITIZEN, channel="telegram")
    await citizen.command("complaint", "建议")
    assert "建议的类别" in citizen.text
    await citizen.press("环境设施")
    assert "建议" in citizen.text
    await citizen.send(event="unsupported", photo="telegram:photo-first")
    assert "照片已收到" in citizen.text
    await citizen.say("   ")
    await citizen.say("希望增加座椅")
    assert "感谢您的建议，编号 1" in citizen.text
    await dispatcher.drain()
    assert group.sent == []


async def test_the_monthly_sample_lists_resolved_complaints_for_the_supervisors(
        app: App, assistant: Assistant, boss: Staff, database: Database, clock: ManualClock,
        dispatcher: Dispatcher, citizens: Recorder) -> None:
    citizen = Dialog(assistant, user=CITIZEN, channel="telegram")
    for text in ("大厅太冷", "排队太久", "指示牌不清楚"):
        await citizen.command("complaint", "投诉")
        await citizen.press("环境设施")
        await citizen.say(text)
        await citizen.press("跳过")
    for number in (1, 2, 3):
        await boss.command("classify", f"{number} 部分有效 核实属实")
        await boss.command("answer", f"{number} 已整改")
    jobs = Jobs(app, dispatcher)
    await jobs.sweep()                                           # November: nothing to draw yet
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(Complaint).where(
            Complaint.sampled_on.is_not(None))) == 0
    clock.set(local(2026, 12, 1, 9))
    await jobs.sweep()
    await jobs.sweep()                                           # once a month
    async with database.read() as session:
        sampled = (await session.scalars(select(Complaint.id).where(
            Complaint.sampled_on.is_not(None)))).all()
    assert len(sampled) == 3                                     # all, under the sample size of 5
    await dispatcher.drain()
    [sample, _] = [d for d in citizens.sent if d.kind == "complaint_sample"]
    assert sample.chat_id == str(SUPERVISOR) and "2026-11" in sample.text and "3 件" in sample.text
    assert "本月回访名单" in await boss.command("complaints")
    centre = make_centre()
    async with database.session() as session:                    # a smaller sample is a setting
        clock.set(local(2027, 1, 1, 9))
        assert await complaints.sample_followups(session, centre, clock.now(), size=2) == []


async def test_low_ratings_still_open_complaints_for_the_supervisors_only(
        assistant: Assistant, wang: Staff, dispatcher: Dispatcher, group: Recorder,
        citizens: Recorder, database: Database) -> None:
    appointment = await served(assistant, wang)
    citizen = Dialog(assistant, user=CITIZEN, channel="telegram")
    await citizen.send(choice=f"g:rate:{appointment.id}:1")
    assert "已转为投诉（编号 1）" in citizen.text
    await citizen.say("等了一个小时")
    await dispatcher.drain()
    assert not [d for d in group.sent if d.kind.startswith("complaint")]
    kinds = {(d.kind, d.chat_id) for d in citizens.sent if d.kind.startswith("complaint")}
    assert kinds == {("complaint_alert", str(SUPERVISOR)), ("complaint_details", str(SUPERVISOR))}
    async with database.read() as session:
        stored = await session.get(Complaint, 1)
        assert stored is not None and stored.service_id == appointment.service_id
        assert stored.staff_named == f"telegram:{STAFF_A}"


async def test_in_english_every_step_and_refusal_speaks_english(
        assistant: Assistant, wang: Staff) -> None:
    code = (await served(assistant, wang)).code
    citizen = Dialog(assistant, user=CITIZEN, channel="telegram", locale="en")
    await citizen.command("lang", "en")
    await citizen.command("complaint")
    assert "complaint or a suggestion" in citizen.text and "confidential" in citizen.text
    await citizen.press("Complaint")
    assert "Staff attitude" in citizen.labels and "Premises and facilities" in citizen.labels
    await citizen.press("Speed of service")
    assert any(code in label for label in citizen.labels)
    await citizen.send(choice=citizen.choice(code).token)
    assert "what happened" in citizen.text
    await citizen.say("  ")
    assert "cannot be empty" in citizen.text
    await citizen.say("Waited two hours")
    await citizen.say("what?")
    assert "send a photo, or press" in citizen.text
    await citizen.press("Skip")
    assert "registered as number 1" in citizen.text and "confidential" in citizen.text
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in citizen.text)      # no Chinese left
