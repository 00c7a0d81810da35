"""The citizen journeys, driven through the conversation engine with an injected clock."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import func, select

from handlers.engine import Assistant
from handlers.i18n import format_day
from storage.clock import ManualClock
from storage.db import Database
from storage.models import (
    Appointment,
    AppointmentStatus,
    AuditLog,
    Block,
    ChannelIdentity,
    Hold,
    Person,
    Service,
    Slot,
)
from tests.dialog import Dialog, verify_dialog
from tests.helpers import TZ, local, make_centre, slots_of, valid_id

ID_NUMBER = valid_id()


async def book_id_card(dialog: Dialog, *, slot: str = "09:00-09:20", id_number: str = ID_NUMBER) -> str:
    """A whole booking of the ID-card service for Tuesday; returns the booking code."""
    await verify_dialog(dialog, [
        ("/start", "预约办事"),
        ("[预约办事]", "青溪镇便民服务中心"),
        ("[便民服务中心]", "居民身份证办理"),
        ("[居民身份证]", "一次性告知"),
        ("[材料已备齐]", "11月24日 周二"),
        ("[11月24日]", "上午或下午"),                # 19 slots: the half-day first
        ("[上午]" if slot < "12" else "[下午]", slot),
        (f"[{slot}]", "已为您保留这个号10分钟（至09:10）"),
        ("[同意并继续]", "真实姓名"),
        ("张三", "手机号"),
        ("13812345678", "身份证号"),
        (id_number, "请确认预约信息"),
        ("[确认预约]", "预约成功"),
    ])
    return re.search(r"预约码：([A-Z0-9]{6})", dialog.text).group(1)  # type: ignore[union-attr]


async def test_full_booking_in_chinese(assistant: Assistant, database: Database) -> None:
    dialog = Dialog(assistant)
    code = await book_id_card(dialog)
    confirmation = dialog.last[0]
    assert "居民户口簿" in confirmation.text and "提前5分钟" in confirmation.text
    assert "一楼 公安综合窗口 3号" in confirmation.text
    assert confirmation.attachment is not None
    ics = confirmation.attachment.content.decode()
    assert "DTSTART;TZID=Asia/Shanghai:20261124T090000" in ics and code in ics
    assert "LOCATION:一楼 公安综合窗口 3号" in ics
    async with database.read() as session:
        appointment = await session.scalar(select(Appointment).where(Appointment.code == code))
        assert appointment is not None and appointment.age_at_booking == 76
        person = await session.get(Person, appointment.person_id)
        assert person is not None and person.id_masked == "110***********002X"
        assert await session.scalar(select(func.count()).select_from(Hold)) == 0


async def test_full_booking_in_english_by_numbers(assistant: Assistant) -> None:
    dialog = Dialog(assistant, locale="en-US")
    await dialog.command("start")
    assert "Book" in dialog.labels
    await dialog.say("1")                       # Book
    await dialog.press("Qingxi Central Health Centre")
    await dialog.say("dentist")                 # search, even in the middle of a flow
    assert "Dental clinic" in dialog.labels
    await dialog.press("Dental clinic")
    assert "Everything you need to bring" in dialog.text
    await dialog.press("I have everything")
    await dialog.press("Mon 23 Nov")
    await dialog.press("10:30-11:00")
    assert "held for you for 10 minutes" in dialog.text
    await verify_dialog(dialog, [
        ("[Agree]", "full name"), ("Li Lei", "mobile"), ("13900001111", "ID number"),
        (ID_NUMBER, "Please confirm"), ("[Confirm booking]", "Booked!"),
    ])
    assert "Booking code:" in dialog.text and "Please arrive 5 minutes early" in dialog.text


async def test_every_validation_error_is_explained_and_asked_again(assistant: Assistant) -> None:
    dialog = Dialog(assistant)
    await book_id_card_until_name(dialog)
    await verify_dialog(dialog, [
        ("张", "2-20个字"), ("张三3", "不能有数字"), ("张三!", "中文或英文"), ("张三", "手机号"),
        ("12345", "1开头的11位"), ("13812345678", "身份证号"),
        ("12345", "18位"), ("110105194902300021", "出生日期"), ("110105194912310021", "校验位"),
        (ID_NUMBER, "请确认预约信息"),
    ])


async def book_id_card_until_name(dialog: Dialog) -> None:
    await verify_dialog(dialog, [
        ("/book", "青溪镇便民服务中心"), ("身份证", "居民身份证办理"), ("[居民身份证]", "一次性告知"),
        ("[材料已备齐]", "余"), ("[11月24日]", "上午"), ("[上午]", "09:00"), ("[09:40-10:00]", "保留"),
        ("[同意并继续]", "真实姓名"),
    ])


async def test_saved_details_are_offered_masked(assistant: Assistant) -> None:
    dialog = Dialog(assistant)
    await book_id_card(dialog)
    await verify_dialog(dialog, [
        ("[预约办事]", "便民服务中心"), ("[便民服务中心]", "社会保障卡"), ("[社会保障卡]", "一次性告知"),
        ("[材料已备齐]", "为谁预约"),
    ])
    assert dialog.labels == ["张* · 身份证 110…002X · 本人", "添加办事人", "主菜单"]
    assert "13812345678" not in dialog.text
    await verify_dialog(dialog, [("[张*]", "11月24日"), ("[11月24日]", "上午"), ("[上午]", "09:15"),
                                 ("[09:15-09:30]", "请确认预约信息")])
    assert "138****5678" in dialog.text and "110***********002X" in dialog.text
    await verify_dialog(dialog, [("[确认预约]", "预约成功")])


async def test_full_slot_offers_alternatives(assistant: Assistant, database: Database,
                                             clock: ManualClock) -> None:
    first, second = Dialog(assistant, user="a"), Dialog(assistant, user="b")
    for dialog in (first, second):
        await verify_dialog(dialog, [("牙科", "口腔科"), ("[口腔科]", "一次性告知"), ("[材料已备齐]", "11月23日")])
        await dialog.press("11月23日")
    await first.press("10:30-11:00")
    assert "保留" in first.text
    await second.press("10:30-11:00")        # the only online seat is held by the first citizen
    assert "刚刚约满" in second.text
    assert second.labels[0] == "11月23日 周一 11:00-11:30 余1"     # nearest bookable, same day
    await second.press("11:00-11:30")
    assert "保留" in second.text


async def test_an_id_number_typed_under_another_name_is_refused_and_renames_nobody(
        assistant: Assistant, database: Database) -> None:
    await book_id_card(Dialog(assistant, user="holder"))
    stranger = Dialog(assistant, user="stranger", channel="telegram")
    await verify_dialog(stranger, [
        ("/start", "预约办事"), ("[预约办事]", "青溪镇便民服务中心"), ("[便民服务中心]", "居民身份证办理"),
        ("[居民身份证]", "一次性告知"), ("[材料已备齐]", "11月24日 周二"), ("[11月24日]", "上午"),
        ("[上午]", "09:20-09:40"),
        ("[09:20-09:40]", "保留"), ("[同意并继续]", "真实姓名"), ("李四", "手机号"),
        ("13900000000", "身份证号"), (ID_NUMBER, "姓名与证件号码不一致，请到窗口核实"),
    ])
    assert "预约办事" in stranger.labels
    async with database.read() as session:
        people = (await session.scalars(select(Person))).all()
        assert [(p.name, p.mobile) for p in people] == [("张三", "13812345678")]
        assert await session.scalar(select(func.count()).select_from(AuditLog)
                                    .where(AuditLog.action == "id_name_mismatch")) == 1
        assert await session.scalar(select(func.count()).select_from(Hold)) == 0
        assert await session.scalar(select(ChannelIdentity.person_id)
                                    .where(ChannelIdentity.platform_user_id == "stranger")) is None


async def test_hold_ran_out_and_slot_filled(assistant: Assistant, clock: ManualClock) -> None:
    slow, fast = Dialog(assistant, user="slow"), Dialog(assistant, user="fast")
    await verify_dialog(slow, [("牙科", "口腔科"), ("[口腔科]", "一次性告知"), ("[材料已备齐]", "11月23日"),
                               ("[11月23日]", "10:30"), ("[10:30-11:00]", "保留"), ("[同意并继续]", "姓名"),
                               ("张三", "手机号"), ("13812345678", "身份证")])
    clock.advance(minutes=11)
    await verify_dialog(fast, [("牙科", "口腔科"), ("[口腔科]", "一次性告知"), ("[材料已备齐]", "11月23日"),
                               ("[11月23日]", "10:30"), ("[10:30-11:00]", "保留"), ("[同意并继续]", "姓名"),
                               ("李四", "手机号"), ("13900000000", "身份证"),
                               (valid_id("11010519800101001"), "确认"), ("[确认预约]", "预约成功")])
    await slow.say(ID_NUMBER)
    await slow.press("确认预约")
    assert "为您保留的时间已过" in slow.text and slow.labels


async def test_blocked_citizen_is_told_why_until_when_and_how_to_appeal(
        assistant: Assistant, database: Database, clock: ManualClock) -> None:
    dialog = Dialog(assistant)
    await book_id_card(dialog)
    async with database.session() as session:
        person = await session.scalar(select(Person))
        assert person is not None
        session.add(Block(person_id=person.id, starts_at=clock.now(), ends_at=local(2027, 2, 21, 9),
                          strikes=3, created_at=clock.now()))
    await verify_dialog(dialog, [
        ("[预约办事]", "便民服务中心"), ("[便民服务中心]", "户口迁移"), ("[户口迁移]", "一次性告知"),
        ("[材料已备齐]", "为谁预约"), ("[张*]", "暂停至2027年2月21日 周日"),  # before a day or a seat
    ])
    assert "人工" in dialog.text and "添加办事人" in dialog.labels   # no dead end
    assert "主菜单" in dialog.labels
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(Hold)) == 0
    # someone new who gives the blocked person's details is refused as soon as they are known,
    # and the seat held meanwhile goes back at once
    newcomer = Dialog(assistant, user="u-new")
    await verify_dialog(newcomer, [
        ("/book", "便民服务中心"), ("[便民服务中心]", "户口迁移"), ("[户口迁移]", "一次性告知"),
        ("[材料已备齐]", "11月24日"), ("[11月24日]", "上午"), ("[上午]", "09:30"), ("[09:30-10:00]", "保留"),
        ("[同意并继续]", "真实姓名"), ("张三", "手机号"), ("13812345678", "身份证号"),
        (ID_NUMBER, "暂停至2027年2月21日 周日"),
    ])
    assert "请确认预约信息" not in newcomer.text
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(Hold)) == 0


async def test_a_person_at_the_cap_or_booked_that_day_holds_no_seat(
        assistant: Assistant, database: Database, clock: ManualClock) -> None:
    capped = Assistant(database=database, centre=make_centre(max_active_bookings=1), clock=clock,
                       settings=assistant.settings)
    dialog = Dialog(capped)
    await book_id_card(dialog)
    await verify_dialog(dialog, [
        ("[预约办事]", "便民服务中心"), ("[便民服务中心]", "社会保障卡"), ("[社会保障卡]", "一次性告知"),
        ("[材料已备齐]", "为谁预约"), ("[张*]", "您已有1个未完成的预约，达到上限"),
    ])
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(Hold)) == 0
    again = Dialog(assistant)                       # the usual caps: the day is the problem
    await verify_dialog(again, [
        ("/book", "便民服务中心"), ("[便民服务中心]", "居民身份证办理"), ("[居民身份证]", "一次性告知"),
        ("[材料已备齐]", "为谁预约"), ("[张*]", "11月24日"), ("[11月24日]", "上午"), ("[上午]", "09:20"),
        ("[09:20-09:40]", "您当天已有该事项的预约"),
    ])
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(Hold)) == 0


async def test_cancel_before_and_after_the_cutoff(assistant: Assistant, clock: ManualClock,
                                                  database: Database) -> None:
    dialog = Dialog(assistant)
    code = await book_id_card(dialog, slot="11:00-11:20")
    await verify_dialog(dialog, [("[我的预约]", code[:0] + "11月24日"), ("[11月24日]", code),
                                 ("[取消预约]", "确定取消"), ("[不取消]", "保持不变")])
    await verify_dialog(dialog, [("[取消预约]", "确定取消"), ("[确定取消]", f"预约 {code} 已取消")])
    second = await book_id_card(Dialog(assistant, user="u2"), slot="09:00-09:20",
                                id_number=valid_id("11010519800101001"))
    clock.set(local(2026, 11, 23, 9, 1))        # one working day before 09:00 Tuesday has passed
    late = Dialog(assistant, user="u2")
    await verify_dialog(late, [("/my", "11月24日"), ("[11月24日]", second), ("[取消预约]", "截止时间")])
    assert "11月23日 周一 09:00" in late.text and "1个工作日" in late.text
    async with database.read() as session:
        kept = await session.scalar(select(Appointment).where(Appointment.code == second))
        assert kept is not None and kept.status == AppointmentStatus.BOOKED


async def test_reschedule_to_a_full_slot_keeps_the_booking(assistant: Assistant, database: Database,
                                                           clock: ManualClock) -> None:
    dialog = Dialog(assistant)
    code = await book_id_card(dialog, slot="11:00-11:20")
    async with database.session() as session:
        slot = await session.scalar(select(Slot).where(Slot.starts_at == local(2026, 11, 24, 11, 20)))
        assert slot is not None
        slot.booked = slot.online_capacity             # someone else took every seat
    await verify_dialog(dialog, [("/my", "11月24日"), ("[11月24日]", code), ("[改约]", "选择新的时间"),
                                 ("[11月24日]", "上午"), ("[上午]", "11:20"), ("[11:20-11:40 已满]", "有号时通知我")])
    await verify_dialog(dialog, [("/my", "11月24日"), ("[11月24日]", code), ("[改约]", "选择新的时间"),
                                 ("[11月25日]", "上午"), ("[上午]", "09:00"), ("[09:00-09:20]", "请确认改约"),
                                 ("[确认预约]", "改约成功")])
    async with database.read() as session:
        moved = await session.scalar(select(Appointment).where(Appointment.code == code))
        assert moved is not None and moved.local_date == dt.date(2026, 11, 25)


async def test_idle_conversation_expires_and_releases_the_seat(assistant: Assistant, clock: ManualClock,
                                                              database: Database) -> None:
    dialog = Dialog(assistant)
    await book_id_card_until_name(dialog)
    clock.advance(minutes=31)
    await dialog.say("张三")
    assert "超过30分钟未操作" in dialog.text and "预约办事" in dialog.labels
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(Hold)) == 0


async def test_stale_choice_is_not_acted_on_twice(assistant: Assistant, database: Database) -> None:
    dialog = Dialog(assistant)
    code = await book_id_card(dialog)
    old_confirm = [r for r in dialog.last if r.choices]
    await dialog.send(choice="m3.0")            # a button from a long-gone menu
    assert "菜单已过期" in dialog.text
    await dialog.command("my")
    stale_token = dialog.choice("11月24日").token
    await dialog.press("11月24日")
    await dialog.send(choice=stale_token)        # the same button pressed twice
    assert "菜单已过期" in dialog.text
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(Appointment)) == 1
    assert old_confirm and code


async def test_retry_of_the_same_platform_message_books_once(assistant: Assistant, database: Database) -> None:
    dialog = Dialog(assistant, channel="wechat", user="openid-1")
    await book_id_card_until_name(dialog)
    await dialog.say("张三")
    await dialog.say("13812345678")
    await dialog.say(ID_NUMBER)
    confirm = dialog.choice("确认预约").token
    first = await dialog.send(choice=confirm, message_id="m-100")
    again = await dialog.send(choice=confirm, message_id="m-100")
    assert [r.text for r in first] == [r.text for r in again]
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(Appointment)) == 1


async def test_unknown_input_twice_offers_a_person(assistant: Assistant) -> None:
    dialog = Dialog(assistant)
    await verify_dialog(dialog, [("/start", "预约办事"), ("今天天气怎么样", "没有理解"),
                                 ("嗯嗯", "转接人工服务"), ("[人工服务]", "编号")])


async def test_language_switch_and_help(assistant: Assistant) -> None:
    dialog = Dialog(assistant)
    await verify_dialog(dialog, [("/lang", "Please choose a language"), ("[English]", "Switched to English"),
                                 ("/help", "type a service name"), ("/lang zh", "已切换为中文")])


async def test_guide_without_booking(assistant: Assistant) -> None:
    dialog = Dialog(assistant)
    await verify_dialog(dialog, [("/guide", "户口迁移"), ("[户口迁移]", "办理时限：5个工作日"),
                                 ("/guide", "户口迁移"), ("[户口迁移]", "周五 09:00-12:00"),
                                 ("[预约此事项]", "一次性告知")])


async def test_waitlist_from_a_full_day_and_leaving_it(assistant: Assistant, database: Database,
                                                       clock: ManualClock) -> None:
    async with database.session() as session:
        service = await session.scalar(select(Service).where(Service.code == "dental"))
        assert service is not None
        dental = await slots_of(session, make_centre(), service, clock.now(), dt.date(2026, 11, 24))
        for slot in dental:
            slot.booked = slot.online_capacity
    dialog = Dialog(assistant)
    await verify_dialog(dialog, [("口腔", "口腔科"), ("[口腔科]", "一次性告知"), ("[材料已备齐]", "已约满"),
                                 ("[11月24日 周二 · 已约满]", "有号时通知我"), ("[有号时通知我]", "已登记候补"),
                                 ("/my", "退出候补"), ("[退出候补]", "已退出候补")])


async def test_one_full_slot_is_not_a_full_day_and_the_days_other_times_come_first(
        assistant: Assistant, database: Database, clock: ManualClock) -> None:
    async with database.session() as session:
        service = await session.scalar(select(Service).where(Service.code == "dental"))
        assert service is not None
        dental = await slots_of(session, make_centre(), service, clock.now(), dt.date(2026, 11, 24))
        dental[0].booked = dental[0].online_capacity
        first = f"{dental[0].starts_at.astimezone(TZ):%H:%M}"
        second = f"{dental[1].starts_at.astimezone(TZ):%H:%M}"
    dialog = Dialog(assistant)
    await verify_dialog(dialog, [("口腔", "口腔科"), ("[口腔科]", "一次性告知"), ("[材料已备齐]", "11月24日"),
                                 ("[11月24日 周二]", "上午或下午"), ("[上午]", "请选择时段"),
                                 (f"[{first}]", "这个时段已约满")])
    assert "11月24日 周二已约满" not in dialog.text
    assert f"11月24日 周二 {first}" in dialog.text and "当天其他时段还有" in dialog.text
    labels = dialog.labels
    assert labels[0].startswith(second) and "余" in labels[0]          # the day's other times first
    assert not any(label.startswith(first) for label in labels)
    assert labels.index("这个时段有号时通知我") > labels.index(labels[0])
    await verify_dialog(dialog, [("[返回时段列表]", "请选择时段"), (f"[{first}]", "这个时段已约满"),
                                 (f"[{second}]", "已为您保留")])


async def test_home_visit_request(assistant: Assistant, database: Database) -> None:
    dialog = Dialog(assistant)
    await verify_dialog(dialog, [
        ("身份证", "居民身份证办理"), ("[居民身份证]", "申请上门服务"), ("[申请上门服务]", "年满70周岁"),
        ("[年满70周岁]", "真实姓名"), ("张三", "手机号"), ("13812345678", "身份证号"),
        (ID_NUMBER, "上门地址"), ("青溪镇人民路12号3单元201", "方便上门的时间"), ("工作日上午", "1个工作日内答复"),
    ])
    young = Dialog(assistant, user="young")
    await verify_dialog(young, [
        ("身份证", "居民身份证办理"), ("[居民身份证]", "申请上门服务"), ("[申请上门服务]", "年满70周岁"),
        ("[年满70周岁]", "真实姓名"), ("李四", "手机号"), ("13900000000", "身份证号"),
        (valid_id("11010519900101001"), "抱歉，上门服务需年满70周岁"),
    ])


async def test_unsupported_message_and_events(assistant: Assistant) -> None:
    dialog = Dialog(assistant, channel="wechat", user="o1")
    await dialog.send(event="subscribe", message_id="o1:1:subscribe")
    assert "预约服务助手" in dialog.text and "预约办事" in dialog.labels
    await dialog.send(event="unsupported")
    assert "只能处理文字消息" in dialog.text
    await dialog.send(event="menu:my")
    assert "还没有预约记录" in dialog.text


async def test_cancel_command_leaves_any_flow(assistant: Assistant, database: Database) -> None:
    dialog = Dialog(assistant)
    await book_id_card_until_name(dialog)
    await verify_dialog(dialog, [("/cancel", "已取消当前操作"), ("张三", "没有理解")])
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(Hold)) == 0


@pytest.mark.parametrize("forged", [
    "g:talk:²", "g:talk:99999999999999999999", "g:rateh:1:²", "g:rate:x:5", "g:rate:1:99999999999",
    "g:rebook:１", "g:offer:abc", "g:offer:99999999999", "g:claim:²", "g:claim:99999999999",
    "g:cancel:", "g:nonsense"])
async def test_a_forged_button_gets_a_polite_answer_not_an_apology(assistant: Assistant,
                                                                   forged: str) -> None:
    # Telegram's callback data and WeChat's bizmsgmenuid come from the client and can be made up.
    dialog = Dialog(assistant)
    await dialog.command("start")
    text = "\n".join(reply.text for reply in await dialog.send(choice=forged))
    assert text and "系统出了点问题" not in text


@pytest.mark.parametrize("typed", ["²", "１", "٣", "99999999999999999999"])
async def test_unusual_digits_at_a_menu(assistant: Assistant, typed: str) -> None:
    dialog = Dialog(assistant)
    await dialog.command("start")
    text = "\n".join(reply.text for reply in await dialog.say(typed))
    assert text and "系统出了点问题" not in text


def test_a_date_in_another_year_carries_the_year() -> None:
    today = dt.date(2026, 12, 30)
    assert format_day(dt.date(2027, 1, 4), "zh-CN", today) == "2027年1月4日 周一"
    assert format_day(dt.date(2027, 1, 4), "en", today) == "Mon 4 Jan 2027"
    assert format_day(dt.date(2026, 12, 31), "zh-CN", today) == "12月31日 周四"
    assert format_day(dt.date(2027, 1, 4), "zh-CN") == "1月4日 周一"
