"""``/roster`` from the staff group: a doctor's roster shown, a weekly half-day and a dated
exception changed, audited, and the future slots following at once (booked ones kept)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from handlers.engine import Assistant
from storage import booking
from storage.db import Database
from storage.models import AuditLog, Channel, Resource, Service, Slot
from storage.settings import Settings
from tests.helpers import person, slots_of, valid_id
from tests.staff_support import Staff, staff_settings

TUESDAY, WEDNESDAY = dt.date(2026, 11, 24), dt.date(2026, 11, 25)


@pytest.fixture
def settings() -> Settings:
    return staff_settings()


async def chen_slots(database: Database, day: dt.date) -> list[Slot]:
    async with database.read() as session:
        chen = await session.scalar(select(Resource).where(Resource.code == "dr_chen_jianguo"))
        assert chen is not None
        return list((await session.scalars(select(Slot).where(
            Slot.resource_id == chen.id, Slot.local_date == day).order_by(Slot.starts_at))).all())


async def test_roster_shows_and_changes_a_weekly_half_day(assistant: Assistant, wang: Staff,
                                                          database: Database) -> None:
    listed = await wang.command("roster")
    assert "dr_chen_jianguo：陈建国 主任医师" in listed and "/roster 医生 mon_am" in listed
    shown = await wang.command("roster", "陈建国")
    assert "【排班】陈建国 主任医师" in shown and "事项：内科专家门诊" in shown
    assert "周一上午 每号2人（线上1）、周三上午 每号2人（线上1）、周五上午 每号2人（线上1）" in shown
    await wang.command("today")            # slots of the coming days are made
    assert await chen_slots(database, TUESDAY) == []
    done = await wang.command("roster", "陈建国 周二上午 3")
    assert "已修改：陈建国 主任医师 在【内科专家门诊】周二上午 出诊，每号3人" in done
    tuesday = await chen_slots(database, TUESDAY)
    assert len(tuesday) == 14 and {(s.capacity, s.online_capacity) for s in tuesday} == {(3, 2)}
    assert "周二上午 每号3人（线上2）" in await wang.command("roster", "dr_chen_jianguo")
    async with database.read() as session:
        row = await session.scalar(select(AuditLog).where(AuditLog.action == "roster"))
        assert row is not None and row.actor.endswith("6200000001")
        assert row.detail["weekday"] == 1 and row.detail["seats"] == 3 and row.detail["seats_before"] is None
    off = await wang.command("roster", "陈建国 tue_am 0")
    assert "不再出诊" in off and await chen_slots(database, TUESDAY) == []


async def test_a_day_off_keeps_the_booked_slot_and_says_to_use_closure(
        assistant: Assistant, wang: Staff, database: Database) -> None:
    async with database.session() as session:
        services = {s.code: s for s in (await session.scalars(select(Service))).all()}
        now = assistant.clock.now()
        await slots_of(session, assistant.centre, services["internal_medicine"], now)
    first = (await chen_slots(database, WEDNESDAY))[0]
    async with database.session() as session:
        citizen = await person(session, assistant.centre, now, id_number=valid_id())
        await booking.book(session, assistant.centre, now, person_id=citizen.id, slot_id=first.id,
                           identity_id=None, channel=Channel.STAFF, made_by="staff:1", offline=True)
    booked = [s for s in await chen_slots(database, WEDNESDAY) if s.offline_booked or s.booked]
    assert [s.id for s in booked] == [first.id]
    done = await wang.command("roster", "陈建国 11-25 am 0 外出会诊")
    assert "已调整：陈建国 主任医师 11月25日 周三上午 不出诊" in done
    assert "还有 1 个预约" in done and "/closure" in done
    left = await chen_slots(database, WEDNESDAY)
    assert [s.id for s in left] == [booked[0].id]
    assert left[0].online_capacity == left[0].booked + left[0].held   # takes no more online
    shown = await wang.command("roster", "陈建国")
    assert "11月25日 周三 上午：不出诊（外出会诊）" in shown
    async with database.read() as session:
        row = await session.scalar(select(AuditLog).where(AuditLog.action == "roster_exception"))
        assert row is not None and row.detail["note"] == "外出会诊"


async def test_roster_explains_every_bad_input(assistant: Assistant, wang: Staff) -> None:
    assert "没有找到医生或窗口“张三”" in await wang.command("roster", "张三")
    assert "号数请写 0 到 100 的整数" in await wang.command("roster", "陈建国 周一上午 很多")
    assert "号数请写 0 到 100 的整数" in await wang.command("roster", "陈建国 mon_am 500")
    assert "不能修改已经过去的日期" in await wang.command("roster", "陈建国 11-20 0")
    assert "用法：" in await wang.command("roster", "陈建国 whenever 2")
    assert "不在“口腔科门诊”出诊" in await wang.command("roster", "陈建国 mon_pm 2 口腔科门诊")


async def test_loading_the_catalog_again_keeps_what_staff_changed(
        assistant: Assistant, wang: Staff, database: Database) -> None:
    from storage.catalog import load_catalog, read_catalog
    from tests.helpers import ROOT
    await wang.command("roster", "陈建国 周二上午 3")
    async with database.session() as session:
        report = await load_catalog(session, read_catalog(ROOT / "catalog" / "demo.toml"),
                                    assistant.clock.now())
        assert report.resources_changed == []
    assert "周二上午 每号3人" in await wang.command("roster", "陈建国")
