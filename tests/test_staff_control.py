"""Staff control of one booking through the handlers: /cancel CODE REASON (no strike, the seat
back to the waitlist first, the citizen told with an apology and a rebook button)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import func, select

from bot.dispatch import Dispatcher
from bot.wiring import App
from handlers.engine import Assistant
from storage import booking, control, waitlist
from storage.control import ControlRefused
from storage.db import Database
from storage.models import (
    Appointment,
    AppointmentStatus,
    AuditLog,
    CancelKind,
    Channel,
    Hold,
    MoveOffer,
    MoveStatus,
    Outbox,
    Service,
    Slot,
    Strike,
)
from storage.refusals import BookingRefused
from storage.settings import Settings
from tests.dialog import Dialog
from tests.helpers import account, person, slots_of, valid_id
from tests.staff_support import (
    STAFF_A,
    STAFF_PRIVATE,
    SUPERVISOR,
    Recorder,
    Staff,
    staff_dispatcher,
    staff_settings,
)
from tests.staff_support import (
    book_telegram as book_at_window,
)

ID_A = valid_id("11010519491231002")
ID_B = valid_id("11010519800101003")
TODAY, TUESDAY = dt.date(2026, 11, 23), dt.date(2026, 11, 24)


@pytest.fixture
def settings() -> Settings:
    return staff_settings()


@pytest.fixture
def dispatcher(assistant: Assistant, settings: Settings, group: Recorder,
               citizens: Recorder) -> Dispatcher:
    return staff_dispatcher(assistant, settings, group, telegram=citizens)


async def book_online(assistant: Assistant | App, service: str, day: dt.date, index: int, *,
                      user: str, name: str = "张三", mobile: str = "13812345678",
                      id_number: str = ID_A) -> Appointment:
    """A booking a citizen made online (from the online seats, so a freed seat goes to the
    waitlist)."""
    async with assistant.database.session() as session:
        services = {s.code: s for s in (await session.scalars(select(Service))).all()}
        now = assistant.clock.now()
        slot = (await slots_of(session, assistant.centre, services[service], now, day))[index]
        citizen = await person(session, assistant.centre, now, name=name, mobile=mobile,
                               id_number=id_number)
        identity = await account(session, now, user=user, person_id=citizen.id)
        return await booking.book(session, assistant.centre, now, person_id=citizen.id,
                                  slot_id=slot.id, identity_id=identity.id,
                                  channel=Channel.TELEGRAM, made_by=f"telegram:{user}",
                                  confirm=False)


async def test_staff_cancel_one_booking_without_a_strike(
        assistant: Assistant, wang: Staff, database: Database, dispatcher: Dispatcher,
        citizens: Recorder) -> None:
    mine = await book_online(assistant, "id_card", TUESDAY, 0, user="51")
    async with database.session() as session:
        waiting = await account(session, assistant.clock.now(), user="52")
        await waitlist.join_waitlist(session, assistant.centre, assistant.clock.now(),
                                     identity_id=waiting.id, service_id=mine.service_id,
                                     day=TUESDAY)
    assert "没有预约码为 ZZZZZZ" in await wang.command("cancel", "ZZZZZZ 设备故障")
    missing = await wang.command("cancel", mine.code.lower())
    assert "请写明原因" in missing and f"/cancel {mine.code}" in missing
    done = await wang.command("cancel", f"{mine.code.lower()} 窗口设备故障")
    assert "已取消（不计失约）" in done and mine.code in done and "张* 138****5678" in done
    assert "13812345678" not in done
    again = await wang.command("cancel", f"{mine.code} 再取消一次")
    assert "当前状态为「已取消」" in again

    async with database.read() as session:
        row = await session.get(Appointment, mine.id)
        assert row is not None and row.status == AppointmentStatus.CANCELLED
        assert row.cancel_kind == CancelKind.STAFF and row.cancel_reason == "窗口设备故障"
        assert await session.scalar(select(func.count()).select_from(Strike)) == 0
        slot = await session.get(Slot, mine.slot_id)
        assert slot is not None and slot.booked == 0 and slot.held == 1   # offered to the waitlist
        audit = await session.scalar(select(AuditLog).where(AuditLog.action == "cancel"))
        assert audit is not None and audit.actor == f"telegram:{STAFF_A}"
        assert audit.detail["kind"] == "staff" and audit.detail["reason"] == "窗口设备故障"
        assert await session.scalar(select(func.count()).select_from(Outbox).where(
            Outbox.kind == "waitlist_offer")) == 1
    await dispatcher.drain()
    [told] = [d for d in citizens.sent if d.chat_id == "51"]
    assert "非常抱歉" in told.text and "窗口设备故障" in told.text and "不计失约" in told.text
    assert mine.code in told.text
    citizen = Dialog(assistant, user="51", channel="telegram")
    await citizen.send(choice=told.tokens[0])                       # 重新预约
    assert "一次性告知" in citizen.text and "居民身份证" in citizen.text


async def test_staff_cancel_refuses_a_past_booking_and_non_staff(
        assistant: Assistant, wang: Staff, database: Database) -> None:
    started = await book_at_window(assistant, "id_card", TODAY, 0, user="51", name="张三",
                                   mobile="13812345678", id_number=ID_A)
    refused = await wang.command("cancel", f"{started.code} 设备故障")
    assert f"预约 {started.code} 已于" in refused and "09:00 开始，不能再取消或改约" in refused
    later = await book_online(assistant, "id_card", TUESDAY, 2, user="52", name="李四",
                              mobile="13900001111", id_number=ID_B)
    # A citizen's /cancel with words only leaves what they were doing.
    stranger = Dialog(assistant, user="53", channel="telegram")
    await stranger.send(command="cancel", args=f"{later.code} 不想去了",
                        text=f"/cancel {later.code} 不想去了")
    async with database.read() as session:
        row = await session.get(Appointment, later.id)
        assert row is not None and row.status == AppointmentStatus.BOOKED
    # Allow-listed staff may do it in a private chat too.
    private = Staff(assistant, STAFF_PRIVATE, "赵六", chat=STAFF_PRIVATE)
    assert "已取消（不计失约）" in await private.command("cancel", f"{later.code} 人员调整")
    assert "/cancel 预约码 原因" in await wang.command("staffhelp")


# --- /move CODE ---------------------------------------------------------------------------


async def _offer_move(wang: Staff, code: str, day_label: str, slot_label: str) -> str:
    """Staff pick the new day and slot of /move; the answer names the offer's deadline."""
    shown = await wang.command("move", code)
    assert "请选择新日期" in shown and "张* 138****5678" in shown and "13812345678" not in shown
    await wang.press_label(day_label)
    assert "请选择时段" in wang.text
    return await wang.press_label(slot_label)


async def _seats(database: Database, slot_id: int) -> tuple[int, int]:
    async with database.read() as session:
        slot = await session.get(Slot, slot_id)
        assert slot is not None
        return slot.booked, slot.held


async def test_move_accepted_moves_the_booking_onto_the_held_seat(
        assistant: Assistant, wang: Staff, database: Database, dispatcher: Dispatcher,
        citizens: Recorder, group: Recorder) -> None:
    mine = await book_online(assistant, "id_card", TUESDAY, 0, user="51")
    offered = await _offer_move(wang, mine.code, "11月25日", "10:00-")
    assert "已向市民发出改约邀请" in offered and "11月25日 周三 10:00" in offered
    assert "11月24日 周二 09:00" in offered                      # until the old start at the latest
    async with database.read() as session:
        new_slot = (await session.scalars(select(Slot).where(
            Slot.service_id == mine.service_id, Slot.local_date == dt.date(2026, 11, 25))
            .order_by(Slot.starts_at))).all()
        target = next(s for s in new_slot
                      if s.starts_at.astimezone(assistant.centre.tz).strftime("%H:%M") == "10:00")
    assert await _seats(database, target.id) == (0, 1)            # held for the offer
    assert await _seats(database, mine.slot_id) == (1, 0)         # nothing changed yet
    assert "已有一个改约邀请在等市民答复" in await wang.command("move", mine.code)
    await dispatcher.drain()
    [asked] = [d for d in citizens.sent if d.chat_id == "51"]
    assert "工作人员想为您改约" in asked.text and "11月25日 周三 10:00" in asked.text
    citizen = Dialog(assistant, user="51", channel="telegram")
    await citizen.send(choice=asked.tokens[0])                    # 同意改约
    assert "已改约" in citizen.text and "11月25日 周三 10:00" in citizen.text
    assert await _seats(database, target.id) == (1, 0)
    assert await _seats(database, mine.slot_id) == (0, 0)
    async with database.read() as session:
        row = await session.get(Appointment, mine.id)
        assert row is not None and row.slot_id == target.id and row.reschedules == 1
        assert row.status == AppointmentStatus.BOOKED
        assert await session.scalar(select(func.count()).select_from(Strike)) == 0
        actions = (await session.scalars(select(AuditLog.action).where(
            AuditLog.entity_id == mine.id).order_by(AuditLog.id))).all()
        assert actions == ["book", "move_offered", "reschedule", "move_accepted"]
    await citizen.send(choice=asked.tokens[1])                    # a second answer
    assert "改约邀请已经结束" in citizen.text
    await dispatcher.drain()
    assert any("市民已同意改约" in d.text and mine.code in d.text for d in group.sent)


async def test_move_declined_leaves_the_booking_untouched(
        assistant: Assistant, wang: Staff, database: Database, dispatcher: Dispatcher,
        citizens: Recorder, group: Recorder) -> None:
    mine = await book_online(assistant, "id_card", TUESDAY, 0, user="51")
    async with database.read() as session:
        before = await session.get(Appointment, mine.id)
        assert before is not None
        kept = (before.slot_id, before.starts_at, before.reschedules, before.updated_at)
    await _offer_move(wang, mine.code, "11月25日", "10:00-")
    await dispatcher.drain()
    [asked] = [d for d in citizens.sent if d.chat_id == "51"]
    stranger = Dialog(assistant, user="59", channel="telegram")
    await stranger.send(choice=asked.tokens[0])                   # a forwarded button
    assert "改约邀请已经结束" in stranger.text
    citizen = Dialog(assistant, user="51", channel="telegram")
    await citizen.send(choice=asked.tokens[1])                    # 保留原预约
    assert "已为您保留原预约" in citizen.text and "11月24日 周二 09:00" in citizen.text
    async with database.read() as session:
        after = await session.get(Appointment, mine.id)
        assert after is not None and after.status == AppointmentStatus.BOOKED
        assert (after.slot_id, after.starts_at, after.reschedules, after.updated_at) == kept
        held = await session.scalar(select(func.sum(Slot.held)))
        assert held == 0
    await dispatcher.drain()
    assert any("市民不同意改约" in d.text for d in group.sent)


async def test_move_lapses_at_its_deadline_and_frees_the_seat(
        assistant: Assistant, wang: Staff, database: Database, dispatcher: Dispatcher,
        citizens: Recorder, group: Recorder, settings: Settings) -> None:
    from bot.scheduler import Jobs

    jobs = Jobs(App(settings=settings, database=assistant.database, centre=assistant.centre,
                    clock=assistant.clock), dispatcher)
    later = dt.date(2026, 11, 26)
    mine = await book_online(assistant, "id_card", later, 0, user="51")
    offered = await _offer_move(wang, mine.code, "11月27日", "10:00-")
    assert "11月24日 周二 09:00 前同意" in offered                 # 24 hours (rules.move_answer_hours)
    await dispatcher.drain()
    [asked] = [d for d in citizens.sent if d.chat_id == "51"]
    assistant.clock.advance(dt.timedelta(hours=24) - dt.timedelta(seconds=1))
    await jobs.sweep()
    async with database.read() as session:
        assert await session.scalar(select(func.sum(Slot.held))) == 1   # not yet
    assistant.clock.advance(dt.timedelta(seconds=1))
    await jobs.sweep()
    async with database.read() as session:
        assert await session.scalar(select(func.sum(Slot.held))) == 0
        row = await session.get(Appointment, mine.id)
        assert row is not None and row.slot_id == mine.slot_id
        assert await session.scalar(select(AuditLog.actor).where(
            AuditLog.action == "move_lapsed")) == "system"
    citizen = Dialog(assistant, user="51", channel="telegram")
    await citizen.send(choice=asked.tokens[0])
    assert "改约邀请已过期" in citizen.text
    await dispatcher.drain()
    assert any("改约邀请已过期" in d.text and mine.code in d.text for d in group.sent)


async def test_move_refusals(assistant: Assistant, wang: Staff, database: Database) -> None:
    assert "用法：/move 预约码" in await wang.command("move")
    assert "没有预约码为 ZZZZZZ" in await wang.command("move", "ZZZZZZ")
    walk_in = await book_at_window(assistant, "id_card", TUESDAY, 1, user="x", name="李四",
                                   mobile="13900001111", id_number=ID_B)
    async with database.session() as session:   # a walk-in with no chat account
        row = await session.get(Appointment, walk_in.id)
        assert row is not None
        row.identity_id = None
    assert "没有可联系的聊天账号" in await wang.command("move", walk_in.code)
    mine = await book_online(assistant, "id_card", TUESDAY, 0, user="51")
    assert "已取消" in await wang.command("cancel", f"{mine.code} 设备故障")
    assert "不能再取消或改约" in await wang.command("move", mine.code)


async def _seats_consistent(database: Database) -> None:
    """Every slot's counters equal the bookings and holds it has."""
    async with database.read() as session:
        for slot in (await session.scalars(select(Slot))).all():
            booked = await session.scalar(select(func.count()).select_from(Appointment).where(
                Appointment.slot_id == slot.id, Appointment.offline.is_(False),
                Appointment.status == AppointmentStatus.BOOKED))
            held = await session.scalar(select(func.count()).select_from(Hold).where(
                Hold.slot_id == slot.id))
            assert (slot.booked, slot.held) == (booked, held), slot.id


async def test_move_accept_and_citizen_cancel_at_once_one_wins(
        assistant: Assistant, database: Database) -> None:
    centre, now = assistant.centre, assistant.clock.now()
    thursday, friday = dt.date(2026, 11, 26), dt.date(2026, 11, 27)
    outcomes = []
    for round_ in range(6):
        mine = await book_online(assistant, "id_card", thursday, round_, user=f"6{round_}",
                                 mobile=f"139000022{round_:02d}",
                                 id_number=valid_id(f"110105194912310{round_:02d}"))
        async with database.session() as session:
            target = (await slots_of(session, centre, await session.get(Service, mine.service_id),
                                     now, friday))[round_]
            offer = await control.offer_move(session, centre, now, mine.code, target.id,
                                             actor="telegram:1")
            offer_id = offer.id
        assert mine.identity_id is not None

        async def accept(identity_id: int = mine.identity_id, offer_id: int = offer_id) -> str:
            try:
                async with database.session() as session:
                    await control.answer_move(session, centre, now, offer_id, accept=True,
                                              identity_id=identity_id, actor="telegram:c")
                return "moved"
            except ControlRefused as refused:
                return refused.reason.value

        async def cancel(appointment_id: int = mine.id) -> str:
            try:
                async with database.session() as session:
                    await booking.cancel(session, centre, now, appointment_id, actor="telegram:c")
                return "cancelled"
            except BookingRefused as refused:
                return refused.reason.value

        # The cancel always applies (before the move, or to the moved booking); the accept
        # either moves the booking first or finds the offer withdrawn.
        first, second = await asyncio.gather(accept(), cancel()) if round_ % 2 \
            else reversed(await asyncio.gather(cancel(), accept()))
        assert second == "cancelled" and first in ("moved", "offer_gone")
        outcomes.append(first)
        async with database.read() as session:
            row = await session.get(Appointment, mine.id)
            assert row is not None and row.status == AppointmentStatus.CANCELLED
            stored = await session.get(MoveOffer, offer_id)
            assert stored is not None
            assert stored.status == (MoveStatus.ACCEPTED if first == "moved"
                                     else MoveStatus.WITHDRAWN)
        await _seats_consistent(database)
    async with database.read() as session:
        assert await session.scalar(select(func.sum(Slot.booked))) == 0
        assert await session.scalar(select(func.sum(Slot.held))) == 0


# --- /phone N -----------------------------------------------------------------------------


def test_phone_numbers_are_read_as_their_matter() -> None:
    from storage.contact import Matter, parse_matter

    assert parse_matter("12") == (Matter.HANDOFF, "12")
    assert parse_matter("#12") == (Matter.HANDOFF, "12")
    assert parse_matter("上门 3") == (Matter.HOME_VISIT, "3")
    assert parse_matter("HV3") == (Matter.HOME_VISIT, "3")
    assert parse_matter("k7m2qx") == (Matter.BOOKING, "K7M2QX")
    assert parse_matter("张三") is None and parse_matter("12345678") is None   # bad check digit


async def test_phone_shows_the_full_mobile_to_the_owner_in_private_only(
        assistant: Assistant, wang: Staff, database: Database) -> None:
    from storage.models import HomeVisitRequest, RequestStatus

    mine = await book_online(assistant, "id_card", TUESDAY, 0, user="51")
    citizen = Dialog(assistant, user="51", channel="telegram")
    await citizen.command("human")
    owner = Staff(assistant, STAFF_PRIVATE, "赵六", chat=STAFF_PRIVATE)
    assert "不是由您负责的" in await owner.command("phone", "1")          # nobody claimed it yet
    await owner.command("claim", "1")
    refused = await wang.command("phone", "1")
    assert "只能在与机器人的私聊中查看" in refused and "13812345678" not in refused
    shown = await owner.command("phone", "1")
    assert "【人工服务 1】张三 13812345678" in shown and "已记录" in shown
    assert "13812345678" in await owner.command("phone", mine.code.lower())  # their booking
    supervisor = Staff(assistant, SUPERVISOR, "钱七", chat=SUPERVISOR)
    assert "不是由您负责的" in await supervisor.command("phone", "1")
    assert "没有编号为 99 的人工服务" in await owner.command("phone", "99")
    assert "不是人工服务编号" in await owner.command("phone", "张三")
    assert "用法：/phone 编号" in await owner.command("phone")
    async with database.session() as session:
        session.add(HomeVisitRequest(
            identity_id=mine.identity_id, person_id=mine.person_id, service_id=mine.service_id,
            address="青溪镇1号", preferred_times="上午", eligibility="age", age=77,
            status=RequestStatus.APPROVED, due_at=assistant.clock.now(),
            decided_by=f"telegram:{STAFF_PRIVATE}", decided_at=assistant.clock.now(),
            created_at=assistant.clock.now()))
    assert "【上门服务申请 1】张三 13812345678" in await owner.command("phone", "上门1")
    async with database.read() as session:
        looks = (await session.execute(select(AuditLog.actor, AuditLog.entity, AuditLog.detail)
                                       .where(AuditLog.action == "phone_shown")
                                       .order_by(AuditLog.id))).all()
    assert [(a, e) for a, e, _ in looks] == [(f"telegram:{STAFF_PRIVATE}", "handoff"),
                                            (f"telegram:{STAFF_PRIVATE}", "booking"),
                                            (f"telegram:{STAFF_PRIVATE}", "home_visit")]
    assert all("13812345678" not in str(d) for _, _, d in looks)


def test_the_texts_that_say_phone_them_say_how() -> None:
    from handlers.i18n import translate

    for locale in ("zh-CN", "en"):
        assert "/phone 3" in translate(locale, "staff.relay_failed", number=3, error="x")
        assert "/phone K7M2QX" in translate(locale, "control.refused_no_chat", code="K7M2QX")
        how = translate(locale, "control.phone_how", arg="hv3")
        assert how in translate(locale, "staff.refused_unreachable", what="-", number=3, phone=how)


# --- /closures and /reopen N --------------------------------------------------------------


async def test_closures_listed_and_a_future_one_reopened(
        assistant: Assistant, wang: Staff, database: Database) -> None:
    from storage.audit import audit
    from storage.refusals import Refusal

    mine = await book_online(assistant, "id_card", dt.date(2026, 11, 25), 0, user="51")
    assert "没有未结束的停办" in await wang.command("closures")
    await wang.command("closure", "id_card 11-25 设备检修")
    await wang.press_label("确认停办")
    await wang.command("closure", "all 11-26 停电")
    await wang.press_label("确认停办")
    listing = await wang.command("closures")
    assert "#1【居民身份证办理" in listing and "11月25日 周三 00:00" in listing
    assert "设备检修" in listing and "取消 1 个预约" in listing and "#2【全中心】" in listing
    assert "设置" not in listing and str(STAFF_A) not in listing    # no name known, no id shown

    async with database.session() as session:       # closed: the day cannot be booked
        with pytest.raises(BookingRefused) as closed:
            await booking.hold_seat(session, assistant.centre, assistant.clock.now(),
                                    owner="telegram:70", slot_id=mine.slot_id)
        assert closed.value.reason == Refusal.SUSPENDED

    assert "用法：/reopen 编号" in await wang.command("reopen", "一")
    assert "没有编号为 9 的停办" in await wang.command("reopen", "9")
    async with database.session() as session:       # a booking moved because of closure 2
        await audit(session, assistant.clock.now(), "telegram:1", "substitute", "appointment",
                    mine.id, closure=2)
    assert "已有 1 个预约因此改到其他时间或医生" in await wang.command("reopen", "2")
    done = await wang.command("reopen", "#1")
    assert "已撤销停办 #1【居民身份证办理" in done and "1 个预约不会恢复" in done
    assert "没有编号为 1 的停办" in await wang.command("reopen", "1")
    async with database.session() as session:       # bookable again
        held = await booking.hold_seat(session, assistant.centre, assistant.clock.now(),
                                       owner="telegram:70", slot_id=mine.slot_id)
        assert held.slot_id == mine.slot_id
    async with database.read() as session:
        row = await session.get(Appointment, mine.id)
        assert row is not None and row.status == AppointmentStatus.CANCELLED   # stays cancelled
        reopened = await session.scalar(select(AuditLog).where(AuditLog.action == "reopen"))
        assert reopened is not None and reopened.actor == f"telegram:{STAFF_A}"
        assert reopened.entity_id == 1 and reopened.detail["reason"] == "设备检修"
    listing = await wang.command("closures")
    assert "#1" not in listing and "#2" in listing
    assistant.clock.set(assistant.clock.now() + dt.timedelta(days=3))   # Thu 26 Nov, 09:00
    started = await wang.command("reopen", "2")
    assert "停办 #2 已于" in started and "开始，不能撤销" in started
    assert "进行中" in await wang.command("closures")


async def test_a_cancel_withdraws_an_open_move_and_frees_its_seat_at_once(
        assistant: Assistant, wang: Staff, database: Database, dispatcher: Dispatcher,
        group: Recorder) -> None:
    mine = await book_online(assistant, "id_card", dt.date(2026, 11, 26), 0, user="51")
    await _offer_move(wang, mine.code, "11月27日", "10:00-")
    async with database.session() as session:
        await booking.cancel(session, assistant.centre, assistant.clock.now(), mine.id,
                             actor="telegram:51")
    async with database.read() as session:
        assert await session.scalar(select(func.sum(Slot.held))) == 0
        assert await session.scalar(select(MoveOffer.status)) == MoveStatus.WITHDRAWN
    await dispatcher.drain()
    assert any("改约邀请已作废" in d.text for d in group.sent)
