"""Window commands from the staff group: today's list, find, check-in/done/no-show/undo,
blocks, closures with confirmation, bookings for walk-ins (代办), complaints and home-visit
decisions, and polite refusals for everyone who is not staff."""

from __future__ import annotations

import datetime as dt
import logging
import re

import pytest
from sqlalchemy import func, select

from bot.dispatch import Dispatcher
from handlers.engine import Assistant
from storage.clock import ManualClock
from storage.db import Database
from storage.models import (
    Appointment,
    AppointmentStatus,
    AuditLog,
    Block,
    Complaint,
    HomeVisitRequest,
    Outbox,
    Person,
    RequestStatus,
    Slot,
)
from storage.outbox import STAFF_TARGET, enqueue
from storage.settings import Settings
from tests.dialog import Dialog
from tests.helpers import account, local, person, valid_id
from tests.staff_support import (
    OTHER_GROUP,
    STAFF_A,
    STAFF_B,
    STAFF_PRIVATE,
    SUPERVISOR,
    Recorder,
    Staff,
    staff_dispatcher,
    staff_settings,
)
from tests.staff_support import (
    book_telegram as book,
)

ID_A = valid_id("11010519491231002")
ID_B = valid_id("11010519800101003")


@pytest.fixture
def settings() -> Settings:
    return staff_settings()


@pytest.fixture
def dispatcher(assistant: Assistant, settings: Settings, group: Recorder,
               citizens: Recorder) -> Dispatcher:
    return staff_dispatcher(assistant, settings, group, telegram=citizens)


TODAY, TUESDAY = dt.date(2026, 11, 23), dt.date(2026, 11, 24)


async def test_today_and_find_show_bookings_masked(assistant: Assistant, wang: Staff) -> None:
    first = await book(assistant, "id_card", TODAY, 0, user="51", name="张三",
                       mobile="13812345678", id_number=ID_A)
    dental = await book(assistant, "dental", TODAY, 5, user="52", name="李四",
                        mobile="13900001111", id_number=ID_B)
    later = await book(assistant, "id_card", TUESDAY, 3, user="51", name="张三",
                       mobile="13812345678", id_number=ID_A)
    listing = await wang.command("today")
    assert "共 2 个预约" in listing and first.code in listing and dental.code in listing
    assert later.code not in listing
    assert "张* 138****5678" in listing and "13812345678" not in listing and "已预约" in listing
    assert listing.index("09:00") < listing.index("10:30")           # by time
    only = await wang.command("today", "id_card")
    assert first.code in only and dental.code not in only
    assert "没有预约" in await wang.command("today", "health_check")
    found = await wang.command("find", later.code.lower())
    assert "找到 1 个预约" in found and "11月24日 周二 10:00" in found
    both = await wang.command("find", "138 1234 5678")
    assert first.code in both and later.code in both and "13812345678" not in both
    assert "没有预约码为 ZZZZZZ" in await wang.command("find", "ZZZZZZ")
    assert "请输入预约码" in await wang.command("find", "张三")
    assert "近30天没有预约" in await wang.command("find", "13700000000")


async def test_window_marks_with_precise_refusals(assistant: Assistant, wang: Staff,
                                                  clock: ManualClock, database: Database) -> None:
    first = await book(assistant, "id_card", TODAY, 0, user="51", name="张三",
                       mobile="13812345678", id_number=ID_A)
    dental = await book(assistant, "dental", TODAY, 5, user="52", name="李四",
                        mobile="13900001111", id_number=ID_B)
    tomorrow = await book(assistant, "social_card", TUESDAY, 0, user="51", name="张三",
                          mobile="13812345678", id_number=ID_A)
    assert "是11月24日 周二的预约，不是今天的" in await wang.command("checkin", tomorrow.code)
    assert "没有预约码为 ZZZZZZ 的预约" in await wang.command("checkin", "ZZZZZZ")
    assert "证件后4位不符" in await wang.command("checkin", f"{first.code} 1234")
    assert "用法" in await wang.command("checkin")
    assert "已签到" in await wang.command("checkin", f"{first.code} {ID_A[-4:]}")
    assert "不能这样操作" in await wang.command("checkin", first.code)      # twice
    assert "已办结" in await wang.command("done", first.code)
    early = await wang.command("noshow", dental.code)
    assert "开始后30分钟未签到才视为主动放弃" in early and "11月23日 周一 11:00 以后" in early
    clock.set(local(2026, 11, 23, 10, 30) + dt.timedelta(seconds=10))  # just after the start
    assert "11:00 以后才能标记爽约" in await wang.command("noshow", dental.code)
    clock.set(local(2026, 11, 23, 11, 0) - dt.timedelta(seconds=1))
    assert "11:00 以后才能标记爽约" in await wang.command("noshow", dental.code)
    clock.set(local(2026, 11, 23, 11, 0))
    shown = await wang.command("noshow", dental.code)
    assert "已标记爽约" in shown and "累计失约1次" in shown
    undone = await wang.command("undo", f"{dental.code} 市民其实到了")
    assert "已撤销" in undone and "已预约" in undone
    assert "没有可撤销的窗口标记" in await wang.command("undo", dental.code)
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(Outbox).where(
            Outbox.kind == "rating_request")) == 1
        actions = (await session.scalars(select(AuditLog.action).where(
            AuditLog.actor == f"telegram:{STAFF_A}").order_by(AuditLog.id))).all()
        assert actions == ["check_in", "complete", "no_show", "void_strike", "undo"]


async def test_blocks_are_listed_masked_and_lifted_with_a_reason(
        assistant: Assistant, wang: Staff, database: Database, clock: ManualClock,
        dispatcher: Dispatcher, citizens: Recorder) -> None:
    appointment = await book(assistant, "id_card", TUESDAY, 0, user="51", name="张三",
                             mobile="13812345678", id_number=ID_A)
    assert "没有被限制预约" in await wang.command("blocks")
    async with database.session() as session:
        session.add(Block(person_id=appointment.person_id, starts_at=clock.now(),
                          ends_at=clock.now() + dt.timedelta(days=90), strikes=3,
                          created_at=clock.now()))
    listing = await wang.command("blocks")
    assert "张* 138****5678" in listing and "2月21日" in listing and "3次失约" in listing
    assert "请写明原因" in await wang.command("unblock", "13812345678")
    assert "用法" in await wang.command("unblock", "张三 误判")
    lifted = await wang.command("unblock", f"{appointment.code} 系统误判")
    assert "已解除限制：张* 138****5678" in lifted
    assert "没有被限制预约" in await wang.command("blocks")
    assert "没有被限制预约" in await wang.command("unblock", "13812345678 再来一次")
    await dispatcher.drain()
    [told] = citizens.of_kind("unblocked")
    assert told.chat_id == "51" and "预约资格已由工作人员恢复" in told.text
    assert "系统误判" not in told.text                   # the staff's reason stays with staff
    citizen = Dialog(assistant, user="51", channel="telegram")
    await citizen.send(choice=told.tokens[0])
    assert "青溪镇便民服务中心" in citizen.labels            # straight into booking


async def test_a_closure_is_confirmed_then_applied_and_citizens_told(
        assistant: Assistant, wang: Staff, dispatcher: Dispatcher, citizens: Recorder,
        database: Database) -> None:
    first = await book(assistant, "id_card", TUESDAY, 0, user="51", name="张三",
                       mobile="13812345678", id_number=ID_A)
    await book(assistant, "id_card", TUESDAY, 2, user="52", name="李四", mobile="13900001111",
               id_number=ID_B)
    assert "用法" in await wang.command("closure")
    assert "时间范围反了" in await wang.command("closure", "id_card 11-24 12:00-09:00 系统升级")
    assert "已经过去了" in await wang.command("closure", "id_card 11-20 系统升级")
    assert "请写明停办原因" in await wang.command("closure", "id_card 11-24 09:00-12:00")
    unknown = await wang.command("closure", "护照 11-24 系统升级")
    assert "没有叫“护照”" in unknown and "id_card：居民身份证办理" in unknown and "all" in unknown
    assert "没看懂时间" in await wang.command("closure", "id_card 下周二 系统升级")
    plan = await wang.command("closure", "id_card 11-24 09:00-12:00 系统升级")
    assert "将取消 2 个预约" in plan and "11月24日 周二 09:00 至 11月24日 周二 12:00" in plan
    assert "确认停办" in [c.label for r in wang.last for c in r.flat_choices]
    async with database.read() as session:      # nothing happens before the yes
        assert (await session.get(Appointment, first.id)).status == AppointmentStatus.BOOKED
    done = await wang.press_label("确认停办")
    assert "已停办【居民身份证办理" in done and "通知了 2 个预约" in done
    await dispatcher.drain()
    notices = citizens.of_kind("closure_cancelled")
    assert {d.chat_id for d in notices} == {"51", "52"} and "系统升级" in notices[0].text
    assert any(t.startswith("g:rebook:") for t in notices[0].tokens)
    dropped = await wang.command("closure", "all 11-25 停电")
    assert "全中心" in dropped
    assert "已放弃" in await wang.press_label("不停办")


async def test_a_walk_in_is_booked_from_the_window_seats(
        assistant: Assistant, wang: Staff, database: Database) -> None:
    await wang.command("book")
    assert "代办预约" in wang.text
    await wang.press_label("居民身份证")
    assert "留给窗口的号" in wang.text
    assert any(label.startswith("11月23日 周一（窗口号余") for label in wang.labels)  # today too
    await wang.press_label("11月24日")
    await wang.press_label("09:40-10:00")
    assert "真实姓名" in wang.text
    assert "2-20个字" in await wang.say("王")
    assert "手机号" in await wang.say("王小二")
    assert "1开头的11位" in await wang.say("12345")
    assert "身份证号" in await wang.say("13655556666")
    summary = await wang.say(valid_id("11010519600505001"))
    assert "王** " not in summary and "王*二 136****6666" in summary and "09:40-10:00" in summary
    booked = await wang.press_label("确认预约")
    assert "代办成功" in booked and "（代办）" in booked and "不会收到提醒" in booked
    code = re.search(r"预约码 ([A-Z0-9]{6})", booked).group(1)  # type: ignore[union-attr]
    async with database.read() as session:
        appointment = await session.scalar(select(Appointment).where(Appointment.code == code))
        assert appointment is not None and appointment.offline and appointment.channel == "staff"
        assert appointment.made_by == f"telegram:{STAFF_A}" and appointment.identity_id is None
        slot = await session.get(Slot, appointment.slot_id)
        assert slot is not None and slot.offline_booked == 1 and slot.booked == 0


async def walk_in_of_a_bot_user(assistant: Assistant, wang: Staff, name: str, mobile: str) -> str:
    """A walk-in for a citizen who booked by chat before (ID_A, 张三), as far as the ID number;
    what staff were answered then."""
    await book(assistant, "social_card", TUESDAY, 0, user="51", name="张三",
               mobile="13812345678", id_number=ID_A)
    await wang.command("book")
    await wang.press_label("居民身份证")
    await wang.press_label("11月25日")
    await wang.press_label("09:00-09:20")
    await wang.say(name)
    await wang.say(mobile)
    return await wang.say(ID_A)


async def test_a_walk_in_already_using_the_bot_gets_reminders_there(
        assistant: Assistant, wang: Staff, database: Database) -> None:
    await walk_in_of_a_bot_user(assistant, wang, "张三", "13812345678")
    assert "提醒会发到市民的聊天账号" in await wang.press_label("确认预约")
    assert "该市民当天已有" not in wang.text


async def test_a_walk_in_whose_id_number_is_on_record_under_another_name_is_not_booked(
        assistant: Assistant, wang: Staff, database: Database) -> None:
    assert "登记的姓名与输入的不一致" in await walk_in_of_a_bot_user(assistant, wang, "李四", "13900000000")
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(Appointment)) == 1
        assert (await session.scalars(select(Person.name))).all() == ["张三"]


async def test_staff_commands_refuse_everyone_else_politely(
        assistant: Assistant, caplog: pytest.LogCaptureFixture) -> None:
    stranger = Dialog(assistant, user="5300000001", channel="telegram")
    with caplog.at_level(logging.WARNING, logger="yuyue.staff"):
        await stranger.command("today")
    assert "仅供窗口工作人员使用" in stranger.text
    assert "5300000001" not in caplog.text and "/today refused" in caplog.text
    english = Dialog(assistant, user="5300000002", channel="telegram", locale="en")
    await english.command("checkin", "ABC234")
    assert "for the centre's staff only" in english.text
    await stranger.send(choice="g:claim:1")
    assert "仅供窗口工作人员使用" in stranger.text
    outsider = Staff(assistant, 5300000003, "外人", chat=OTHER_GROUP)
    assert "仅供窗口工作人员使用" in await outsider.command("noshow", "ABC234")
    private = Staff(assistant, STAFF_PRIVATE, "赵六", chat=STAFF_PRIVATE)
    assert "没有预约" in await private.command("today")       # allow-listed, private chat
    await private.command("book")                              # a private /book is their own
    assert "代办预约" not in private.text
    await stranger.command("book")
    assert "青溪镇便民服务中心" in stranger.labels                # citizens book as before
    in_group = Staff(assistant, STAFF_B, "李强")
    assert "/checkin" in await in_group.command("start")      # the staff group gets staff help


async def test_a_bad_rating_becomes_a_complaint_the_supervisor_claims_classifies_and_answers(
        assistant: Assistant, wang: Staff, dispatcher: Dispatcher, group: Recorder,
        citizens: Recorder, database: Database) -> None:
    appointment = await book(assistant, "id_card", TODAY, 0, user="51", name="张三",
                             mobile="13812345678", id_number=ID_A)
    await wang.command("checkin", appointment.code)
    await wang.command("done", appointment.code)
    citizen = Dialog(assistant, user="51", channel="telegram")
    await citizen.send(choice=f"g:rate:{appointment.id}:2")
    assert "已转为投诉（编号 1）" in citizen.text
    await citizen.say("窗口人员态度很差")
    await dispatcher.drain()
    assert not group.of_kind("complaint_alert")                # never in the staff group
    [alert] = citizens.of_kind("complaint_alert")
    assert alert.chat_id == str(SUPERVISOR) and "投诉 #1" in alert.text
    assert alert.tokens == ["g:claimc:1"]
    boss = Staff(assistant, SUPERVISOR, "赵主任", chat=SUPERVISOR)
    claimed = await boss.press(alert.tokens[0])
    assert "投诉 #1" in claimed and "已由 赵主任 负责" in claimed and boss.last[0].edit
    assert "窗口人员态度很差" in claimed and "首次答复期限：11月24日" in claimed   # nothing lost
    assert "负责人" in await wang.press(alert.tokens[0])         # staff may not claim it
    assert "负责人" in await wang.command("answer", "1 不关我事")
    assert "请先认定" in await boss.command("answer", "1 非常抱歉。")
    assert "部分有效" in await boss.command("classify", "1 部分有效 窗口确有不耐烦")
    assert "已把处理结果告知市民" in await boss.command("answer", "1 已对窗口人员培训，并向您致歉。")
    assert "已办结" in await boss.command("answer", "1 再来一次")
    await dispatcher.drain()
    [told] = [d.text for d in citizens.sent if d.kind == "complaint_outcome"]
    assert "培训" in told and "部分有效" in told and "是否满意" in told
    async with database.read() as session:
        complaint = await session.get(Complaint, 1)
        assert complaint is not None and complaint.status == RequestStatus.CLOSED
        assert complaint.text == "窗口人员态度很差" and complaint.answered_at is not None
        assert complaint.claimed_by == f"telegram:{SUPERVISOR}" and complaint.resolved_at is not None


async def home_visit(assistant: Assistant, user: str) -> int:
    async with assistant.database.session() as session:
        now = assistant.clock.now()
        citizen = await person(session, assistant.centre, now)
        identity = await account(session, now, user=user, person_id=citizen.id)
        request = HomeVisitRequest(identity_id=identity.id, person_id=citizen.id, service_id=1,
                                   address="青溪镇人民路1号3单元", preferred_times="工作日上午",
                                   eligibility="age", age=80, status=RequestStatus.OPEN,
                                   created_at=now, due_at=now + dt.timedelta(days=1))
        session.add(request)
        await session.flush()
        await enqueue(session, kind="home_visit_alert", now=now, target=STAFF_TARGET,
                      dedup_key=f"home:{request.id}:open", payload={"request": request.id})
        return request.id


async def test_home_visits_are_approved_with_a_time_or_declined_with_a_reason(
        assistant: Assistant, wang: Staff, dispatcher: Dispatcher, group: Recorder,
        citizens: Recorder, database: Database) -> None:
    first, second = await home_visit(assistant, "61"), await home_visit(assistant, "62")
    await dispatcher.drain()
    alerts = group.of_kind("home_visit_alert")
    assert alerts[0].tokens == [f"g:hvok:{first}", f"g:hvno:{first}"]
    assert "输入上门时间" in await wang.press(f"g:hvok:{first}")
    assert "没看懂这个时间" in await wang.say("明天下午")
    assert "已经过去了" in await wang.say("11-20 10:00")
    assert "上门时间 11月25日 周三 14:00" in await wang.say("11-25 14:00")
    li = Staff(assistant, STAFF_B, "李强")
    assert "已由 王芳 处理过了" in await li.command("approve", f"{first} 11-26 10:00")
    assert "写明不同意的原因" in await li.press(f"g:hvno:{second}")
    assert "已告知市民不同意" in await li.say("地址不在本镇服务范围")
    await dispatcher.drain()
    [approved] = citizens.of_kind("home_visit_approved")
    [declined] = citizens.of_kind("home_visit_declined")
    assert approved.chat_id == "61" and "11月25日 周三 14:00" in approved.text
    assert "青溪镇人民路1号3单元" in approved.text
    assert "地址不在本镇服务范围" in declined.text and declined.tokens == ["g:rebook:1"]
    async with database.read() as session:
        request = await session.get(HomeVisitRequest, first)
        assert request is not None and request.status == RequestStatus.APPROVED
        assert request.visit_at == local(2026, 11, 25, 14)
        assert request.decided_by == f"telegram:{STAFF_A}"


async def test_staff_texts_follow_the_staff_members_language(assistant: Assistant) -> None:
    english = Staff(assistant, STAFF_B, "Li", locale="en")
    assert "Nobody is blocked" in await english.command("blocks")
    assert "backwards" in await english.command("closure", "all 11-24 12:00-09:00 power cut")


def test_every_refusal_has_a_message_in_both_languages() -> None:
    from handlers.i18n import LOCALES, catalog
    from storage.handoffs import StaffRefusal

    booking_reasons = {"unknown_code", "wrong_day", "not_changeable", "id_mismatch",
                       "nothing_to_undo", "not_blocked", "reason_required", "blocked",
                       "duplicate", "full", "suspended", "too_late", "service_inactive",
                       "bad_range"}
    keys = {f"staff.refused_{r}" for r in booking_reasons | {r.value for r in StaffRefusal}}
    keys |= {f"staff.kind_{k}" for k in ("handoff", "complaint", "home_visit")}
    for locale in LOCALES:
        assert keys <= set(catalog(locale)), keys - set(catalog(locale))


async def test_done_needs_a_checked_in_booking_of_today_and_an_undo_the_citizen_saw_is_told(
        assistant: Assistant, wang: Staff, dispatcher: Dispatcher, citizens: Recorder,
        database: Database) -> None:
    tomorrow = await book(assistant, "social_card", TUESDAY, 0, user="51", name="张三",
                          mobile="13812345678", id_number=ID_A)
    today = await book(assistant, "id_card", TODAY, 0, user="52", name="李四",
                       mobile="13900001111", id_number=ID_B)
    assert "是11月24日 周二的预约，不是今天的" in await wang.command("done", tomorrow.code)
    refused = await wang.command("done", today.code)
    assert "还没有签到" in refused and f"/checkin {today.code}" in refused
    await dispatcher.drain()
    assert citizens.of_kind("rating_request") == []
    async with database.read() as session:
        assert (await session.get(Appointment, tomorrow.id)).status == AppointmentStatus.BOOKED
    # done, told, undone: the citizen hears that the completion was withdrawn
    await wang.command("checkin", today.code)
    assert "已办结" in await wang.command("done", today.code)
    await dispatcher.drain()
    [asked] = citizens.of_kind("rating_request")
    assert asked.chat_id == "52" and "您已办结" in asked.text
    assert "现在：" in await wang.command("undo", f"{today.code} 点错了")
    await dispatcher.drain()
    [withdrawn] = citizens.of_kind("mark_undone")
    assert withdrawn.chat_id == "52" and "办结状态已撤回" in withdrawn.text
    assert today.code in withdrawn.text
    # done again, undone before anything went out: nothing to withdraw, nothing said
    citizens.take()
    assert "已办结" in await wang.command("done", today.code)
    await wang.command("undo", today.code)
    await dispatcher.drain()
    assert citizens.take() == []
    # done for real: asked again
    await wang.command("done", today.code)
    await dispatcher.drain()
    assert [d.kind for d in citizens.take()] == ["rating_request"]


async def test_an_undone_no_show_the_citizen_was_told_of_is_withdrawn_to_them(
        assistant: Assistant, wang: Staff, dispatcher: Dispatcher, citizens: Recorder,
        clock: ManualClock) -> None:
    dental = await book(assistant, "dental", TODAY, 5, user="52", name="李四",
                        mobile="13900001111", id_number=ID_B)
    clock.set(local(2026, 11, 23, 11, 0))
    await wang.command("noshow", dental.code)
    await dispatcher.drain()
    assert {d.kind for d in citizens.take()} == {"no_show", "strike_warning"}
    await wang.command("undo", f"{dental.code} 市民其实到了")
    await dispatcher.drain()
    [withdrawn] = citizens.take()
    assert withdrawn.kind == "mark_undone" and "失约记录已撤销" in withdrawn.text


async def test_every_staff_command_names_a_service_the_same_way(
        assistant: Assistant, wang: Staff, database: Database) -> None:
    dental = await book(assistant, "dental", TODAY, 5, user="52", name="李四",
                        mobile="13900001111", id_number=ID_B)
    await book(assistant, "id_card", TODAY, 0, user="51", name="张三", mobile="13812345678",
               id_number=ID_A)
    for named in ("dental", "口腔", "口腔科门诊", "DENTAL clinic", "ｄｅｎｔａｌ"):
        listing = await wang.command("today", named)
        assert "共 1 个预约" in listing and dental.code in listing and "口腔科门诊" in listing, named
    assert "共 1 个预约" in await wang.command("today", "outpatient")      # a department: its services
    ambiguous = await wang.command("today", "门诊")
    assert "对得上好几个" in ambiguous and "dental：口腔科门诊" in ambiguous
    assert "internal_medicine：内科专家门诊" in ambiguous and "id_card" not in ambiguous
    unknown = await wang.command("today", "护照")
    assert "没有叫“护照”" in unknown and "health_check：健康体检" in unknown
    plan = await wang.command("closure", "口腔 11-24 设备检修")
    assert "口腔科门诊" in plan and "确认停办" in wang.labels
    assert "已放弃" in await wang.press_label("不停办")
    assert "对得上好几个" in await wang.command("closure", "门诊 11-24 设备检修")


async def test_the_matcher_prefers_an_exact_name_and_a_service(database: Database,
                                                               assistant: Assistant) -> None:
    from storage.models import Department
    from storage.services import match_service

    async with database.read() as session:
        assert (await match_service(session, " Dental ")).found.code == "dental"  # type: ignore[union-attr]
        outpatient = (await match_service(session, "outpatient")).found
        assert isinstance(outpatient, Department)
        assert (await match_service(session, "outpatient", departments=False)).found is None
        assert (await match_service(session, "卫生院")).found is outpatient
        matched = await match_service(session, "身份")
        assert matched.found is not None and matched.found.code == "id_card"
        nothing = await match_service(session, "护照", departments=False)
        assert nothing.found is None and not nothing.ambiguous and len(nothing.known) == 8
        assert not any(isinstance(row, Department) for row in nothing.known)
