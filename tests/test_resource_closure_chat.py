"""A doctor's 停诊 from the staff group, booking by booking (替诊, 换诊, cancel), and the
patients answering the notices' buttons; 停诊查询 for citizens."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from bot.dispatch import Dispatcher
from handlers.engine import Assistant
from storage import booking
from storage.db import Database
from storage.models import Appointment, AppointmentStatus, Channel, Resource, Service, Slot
from storage.settings import Settings
from tests.dialog import Dialog
from tests.helpers import account, person, slots_of, valid_id
from tests.staff_support import Recorder, Staff, staff_dispatcher, staff_settings

WEDNESDAY = dt.date(2026, 11, 25)


@pytest.fixture
def settings() -> Settings:
    return staff_settings()


@pytest.fixture
def dispatcher(assistant: Assistant, settings: Settings, group: Recorder,
               citizens: Recorder) -> Dispatcher:
    return staff_dispatcher(assistant, settings, group, telegram=citizens)


async def book_chen(assistant: Assistant, users: list[str]) -> list[Appointment]:
    async with assistant.database.session() as session:
        now = assistant.clock.now()
        service = await session.scalar(select(Service).where(Service.code == "internal_medicine"))
        assert service is not None
        await slots_of(session, assistant.centre, service, now)
        chen = await session.scalar(select(Resource).where(Resource.code == "dr_chen_jianguo"))
        assert chen is not None
        slots = (await session.scalars(select(Slot).where(
            Slot.resource_id == chen.id, Slot.local_date == WEDNESDAY).order_by(Slot.starts_at))).all()
        booked = []
        for n, user in enumerate(users):
            p = await person(session, assistant.centre, now, name="张三", mobile=f"1381234{n:04d}",
                             id_number=valid_id(f"11010519800101{n:03d}"))
            a = await account(session, now, user=user, person_id=p.id)
            booked.append(await booking.book(session, assistant.centre, now, person_id=p.id,
                                             slot_id=slots[n].id, identity_id=a.id,
                                             channel=Channel.TELEGRAM, made_by=f"telegram:{user}"))
        return booked


def delivered(citizens: Recorder, kind: str, user: str) -> tuple[str, list[str]]:
    [delivery] = [d for d in citizens.of_kind(kind) if d.chat_id == user]
    return delivery.text, delivery.tokens


async def test_a_doctors_closure_booking_by_booking_and_the_patients_answers(
        assistant: Assistant, wang: Staff, dispatcher: Dispatcher, citizens: Recorder,
        database: Database) -> None:
    sub, moved, cancelled = await book_chen(assistant, ["71", "72", "73"])
    assert "请写明停诊原因" in await wang.command("closure", "陈建国 11-25 am")
    assert "医生停诊用法" in await wang.command("closure", "陈建国 下周 外出会诊")
    plan = await wang.command("closure", "陈建国 11-25 am 外出会诊")
    assert "停诊【陈建国 主任医师】11月25日 周三 00:00 至 11月25日 周三 12:00" in plan
    assert "影响 3 个预约，其中 0 个通知不足2小时" in plan
    assert "第1/3个预约：11月25日 周三 08:00 张*" in plan and sub.code in plan
    assert "替诊：周敏 副主任医师" in wang.labels and "替诊：吴磊 副主任医师" in wang.labels
    assert "李华" not in " ".join(wang.labels)            # another specialty
    assert "第2/3个预约" in await wang.press_label("替诊：周敏")
    assert "第3/3个预约" in await wang.press_label("换诊")
    summary = await wang.press_label("取消并致歉")
    assert "替诊 1 个，换诊 1 个，取消 1 个" in summary
    async with database.read() as session:      # nothing happens before the yes
        assert (await session.get(Appointment, cancelled.id)).status == AppointmentStatus.BOOKED  # type: ignore[union-attr]
    assert "处理并通知了 3 个预约" in await wang.press_label("确认停诊")

    await dispatcher.drain()
    text, tokens = delivered(citizens, "closure_substitute", "71")
    assert "陈建国 主任医师 因外出会诊停诊" in text and "由 周敏 副主任医师（心血管内科）替诊" in text
    assert "视为接受替诊" in text and [t.split(":")[1] for t in tokens] == ["subok", "subno"]
    patient = Dialog(assistant, user="71", channel="telegram")
    await patient.send(choice=tokens[0])
    assert "已确认：由 周敏 副主任医师 为您替诊" in patient.text
    await patient.send(choice=tokens[1])                # answered already
    assert "已处理或已过答复期限" in patient.text

    text, tokens = delivered(citizens, "closure_move", "72")
    assert "需要换诊" in text and tokens[-1].startswith("g:mvno:")
    other = Dialog(assistant, user="72", channel="telegram")
    stranger = Dialog(assistant, user="71", channel="telegram")
    await stranger.send(choice=tokens[0])               # not the stranger's booking
    assert "已处理或已过答复期限" in stranger.text
    await other.send(choice=tokens[0])
    assert "已为您换诊" in other.text and "陈建国 主任医师" in other.text

    text, tokens = delivered(citizens, "closure_cancelled", "73")
    assert "外出会诊" in text and tokens[0].startswith("g:rebook:")
    async with database.read() as session:
        rows = {a.id: a for a in (await session.scalars(select(Appointment))).all()}
        assert rows[sub.id].status == AppointmentStatus.BOOKED and rows[sub.id].resource_id != sub.resource_id
        assert rows[moved.id].status == AppointmentStatus.BOOKED and rows[moved.id].slot_id != moved.slot_id
        assert rows[cancelled.id].status == AppointmentStatus.CANCELLED

    # 停诊查询
    asking = Dialog(assistant, user="90", channel="telegram")
    await asking.command("doctor", "陈建国")
    assert "陈建国 主任医师（心血管内科）" in asking.text
    assert "停诊：11月25日 周三 00:00 至 11月25日 周三 12:00（外出会诊）" in asking.text
    await asking.command("doctor", "周敏")
    assert "近期没有停诊安排" in asking.text
    await asking.command("doctor", "王医生")
    assert "没有找到“王医生”医生" in asking.text and "陈建国（主任医师）" in asking.text


async def test_a_doctors_closure_declined_by_staff_changes_nothing(
        assistant: Assistant, wang: Staff, database: Database) -> None:
    [only] = await book_chen(assistant, ["75"])
    await wang.command("closure", "陈建国 11-25 外出会诊")
    assert "已放弃" in await wang.press_label("不停办")
    async with database.read() as session:
        assert (await session.get(Appointment, only.id)).status == AppointmentStatus.BOOKED  # type: ignore[union-attr]
