"""Citizens choose 任意医生 or a named doctor (with title and introduction) when a service has
several; a full expert offers the same doctor's nearest times, then the same specialty and
title, then the service's other doctors."""

from __future__ import annotations

from sqlalchemy import select, update

from handlers.engine import Assistant
from storage.catalog import Text
from storage.db import Database
from storage.models import Appointment, Resource, Service, Slot
from storage.resources import ResourceInfo, likeness
from tests.dialog import Dialog, verify_dialog
from tests.helpers import slots_of, valid_id

TO_DOCTORS = [
    ("/start", "预约办事"),
    ("[预约办事]", "门诊部"),
    ("[门诊部]", "内科专家门诊"),
    ("[内科专家门诊]", "一次性告知"),
    ("[材料已备齐]", "任意医生"),
]


def _doctor(id_: int, title: str, specialty: str) -> ResourceInfo:
    return ResourceInfo(id_, f"d{id_}", "doctor", Text("某", "X"), title, Text(specialty, specialty),
                        None, "")


def test_likeness_orders_same_doctor_then_specialty_and_title_then_specialty() -> None:
    wanted = _doctor(1, "chief", "心内")
    assert likeness(_doctor(1, "chief", "心内"), wanted) == 0
    assert likeness(_doctor(2, "chief", "心内"), wanted) == 1
    assert likeness(_doctor(3, "attending", "心内"), wanted) == 2
    assert likeness(_doctor(4, "chief", "内分泌"), wanted) == 3
    assert likeness(None, wanted) == 3


async def resource_ids(database: Database) -> dict[str, int]:
    async with database.read() as session:
        return {r.code: r.id for r in (await session.scalars(select(Resource))).all()}


async def test_a_citizen_books_a_named_expert_on_the_terminal(assistant: Assistant,
                                                              database: Database) -> None:
    dialog = Dialog(assistant)
    await verify_dialog(dialog, TO_DOCTORS)
    shown = dialog.text
    assert "陈建国 主任医师（心血管内科）从事心血管内科临床工作30年" in shown
    assert "李华 副主任医师（内分泌科）" in shown
    assert dialog.labels[:2] == ["任意医生", "陈建国 主任医师"]   # the chief first
    await verify_dialog(dialog, [
        ("[陈建国 主任医师]", "11月25日 周三"),
        ("[11月25日]", "08:00-08:15 陈建国"),
        ("[08:00-08:15]", "已为您保留这个号"),
        ("[同意并继续]", "真实姓名"),
        ("张三", "手机号"),
        ("13812345678", "身份证号"),
        (valid_id(), "医生：陈建国 主任医师"),
        ("[确认预约]", "预约成功"),
    ])
    assert "医生：陈建国 主任医师" in dialog.text
    # 陈建国 does not work on Tuesdays: his days are Mon, Wed, Fri mornings
    ids = await resource_ids(database)
    async with database.read() as session:
        booked = await session.scalar(select(Appointment))
        assert booked is not None and booked.resource_id == ids["dr_chen_jianguo"]
        slot = await session.get(Slot, booked.slot_id)
        assert slot is not None and slot.resource_id == ids["dr_chen_jianguo"]


async def test_only_the_chosen_doctors_days_and_any_doctor_shows_one_button_a_time(
        assistant: Assistant) -> None:
    dialog = Dialog(assistant)
    await verify_dialog(dialog, [*TO_DOCTORS, ("[陈建国 主任医师]", "11月25日 周三")])
    days = [label.split()[0] for label in dialog.labels]
    assert "11月25日" in days and "11月27日" in days
    assert "11月24日" not in days and "11月26日" not in days      # Tue, Thu: not his
    await verify_dialog(dialog, [("[返回]", "任意医生"), ("[任意医生]", "11月24日 周二"),
                                 ("[11月24日]", "上午"), ("[上午]", "08:00-08:15")])
    times = [label.split()[0] for label in dialog.labels if label[:2].isdigit()]
    assert len(times) == len(set(times))                            # one button per time
    # Tuesday morning: 周敏, 吴磊 and 李华 work; a time names the doctor it books
    assert any("周敏" in label or "李华" in label or "吴磊" in label for label in dialog.labels)


async def test_a_full_expert_offers_the_same_doctor_then_same_specialty_and_title(
        assistant: Assistant, database: Database) -> None:
    ids = await resource_ids(database)
    async with database.session() as session:
        service = await session.scalar(select(Service).where(Service.code == "internal_medicine"))
        assert service is not None
        await slots_of(session, assistant.centre, service, assistant.clock.now())
        await session.execute(update(Slot).where(Slot.resource_id == ids["dr_zhou_min"])
                              .values(booked=Slot.online_capacity))
    dialog = Dialog(assistant)
    await verify_dialog(dialog, [*TO_DOCTORS, ("[周敏 副主任医师]", "周敏副主任医师近期的号源已约满")])
    offered = [label for label in dialog.labels if "余" in label]
    assert offered and all("吴磊" in label for label in offered)   # same specialty and title
    await verify_dialog(dialog, [(f"[{offered[0]}]", "已为您保留这个号")])
    async with database.read() as session:
        held = await session.scalar(select(Slot).where(Slot.held == 1))
        assert held is not None and held.resource_id == ids["dr_wu_lei"]


async def test_a_service_with_no_doctors_goes_straight_to_the_dates(assistant: Assistant) -> None:
    dialog = Dialog(assistant)
    await verify_dialog(dialog, [
        ("/start", "预约办事"), ("[预约办事]", "门诊部"), ("[门诊部]", "口腔科门诊"),
        ("[口腔科门诊]", "一次性告知"), ("[材料已备齐]", "11月23日"),
    ])
    assert "任意医生" not in " ".join(dialog.labels)
