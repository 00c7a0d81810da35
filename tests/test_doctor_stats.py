"""Figures per doctor on a hand-computed week: bookings, attendance, no-shows, utilisation,
ratings, closures and late notices; ``/stats doctor NAME``; the export's doctor column."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from handlers.engine import Assistant
from storage import attendance, booking
from storage.centre import Centre
from storage.clock import ManualClock
from storage.db import Database
from storage.models import Channel, Rating, Resource, Slot
from storage.resource_closures import apply_resource_closure
from storage.settings import AccessSettings, Settings
from storage.stats.exports import appointment_rows
from storage.stats.periods import Period
from storage.stats.resources import resource_figures
from tests.dialog import Dialog
from tests.helpers import account, load_demo, local, person, slots_of, valid_id

WEEK = Period("week", dt.date(2026, 11, 23), dt.date(2026, 11, 29))
MANAGER = "900"


@pytest.fixture
def settings() -> Settings:
    return Settings(access=AccessSettings(managers=(f"terminal:{MANAGER}",)))


async def story(database: Database, centre: Centre, clock: ManualClock) -> dict[str, int]:
    """李华 works Tue and Thu, mornings (14 slots) and afternoons (12), 2 seats a slot:
    52 slots, 104 seats this week.

    P1 Tue 08:00 completed, rated 5; P2 Tue 08:15 no-show; P3 Tue 08:30 cancelled by the
    patient; P4 Thu 08:00 still booked; P5 Thu 08:15 completed, rated 3; P6 Thu 13:30 cancelled
    by a closure of 13:30-14:00 made on Wednesday (in time); P7 Thu 14:00 cancelled by a
    closure of 14:00-14:30 made on Thursday at 13:00 (late: less than 2 hours).
    """
    now = clock.now()
    async with database.session() as session:
        services = await load_demo(session, now)
        await slots_of(session, centre, services["internal_medicine"], now)
        li = await session.scalar(select(Resource).where(Resource.code == "dr_li_hua"))
        assert li is not None
        slots = {s.starts_at: s.id for s in (await session.scalars(
            select(Slot).where(Slot.resource_id == li.id))).all()}
        times = {"P1": local(2026, 11, 24, 8, 0), "P2": local(2026, 11, 24, 8, 15),
                 "P3": local(2026, 11, 24, 8, 30), "P4": local(2026, 11, 26, 8, 0),
                 "P5": local(2026, 11, 26, 8, 15), "P6": local(2026, 11, 26, 13, 30),
                 "P7": local(2026, 11, 26, 14, 0)}
        ids: dict[str, int] = {"li": li.id}
        for n, (label, when) in enumerate(times.items()):
            p = await person(session, centre, now, mobile=f"1391234{n:04d}",
                             id_number=valid_id(f"11010519800101{n:03d}"))
            a = await account(session, now, user=f"s{n}", person_id=p.id)
            made = await booking.book(session, centre, now, person_id=p.id, slot_id=slots[when],
                                      identity_id=a.id, channel=Channel.TELEGRAM,
                                      made_by=f"telegram:s{n}")
            ids[label], ids[label + "code"], ids[label + "who"] = made.id, made.code, a.id  # type: ignore[assignment]
    async with database.session() as session:
        await booking.cancel(session, centre, clock.now(), ids["P3"], actor="telegram:s2")
    clock.set(local(2026, 11, 24, 8, 5))
    async with database.session() as session:
        await attendance.check_in(session, centre, clock.now(), str(ids["P1code"]), actor="staff:1")
        await attendance.complete(session, centre, clock.now(), str(ids["P1code"]), actor="staff:1")
    clock.set(local(2026, 11, 24, 8, 50))
    async with database.session() as session:
        await attendance.mark_no_show(session, centre, clock.now(), str(ids["P2code"]), actor="staff:1")
    clock.set(local(2026, 11, 25, 12, 0))
    async with database.session() as session:
        await apply_resource_closure(session, centre, clock.now(), resource_id=li.id,
                                     starts_at=local(2026, 11, 26, 13, 30),
                                     ends_at=local(2026, 11, 26, 14, 0), reason="会诊",
                                     actor="staff:1", decisions={})
    clock.set(local(2026, 11, 26, 8, 20))
    async with database.session() as session:
        await attendance.check_in(session, centre, clock.now(), str(ids["P5code"]), actor="staff:1")
        await attendance.complete(session, centre, clock.now(), str(ids["P5code"]), actor="staff:1")
    clock.set(local(2026, 11, 26, 13, 0))
    async with database.session() as session:
        await apply_resource_closure(session, centre, clock.now(), resource_id=li.id,
                                     starts_at=local(2026, 11, 26, 14, 0),
                                     ends_at=local(2026, 11, 26, 14, 30), reason="急诊",
                                     actor="staff:1", decisions={})
        for label, level in (("P1", 5), ("P5", 3)):
            session.add(Rating(appointment_id=ids[label], identity_id=ids[label + "who"],
                               level=level, created_at=clock.now()))
    return ids


async def test_figures_of_one_doctor_on_a_hand_computed_week(database: Database, centre: Centre,
                                                              clock: ManualClock) -> None:
    ids = await story(database, centre, clock)
    async with database.read() as session:
        f = await resource_figures(session, centre, WEEK, ids["li"])
        other = await session.scalar(select(Resource.id).where(Resource.code == "dr_chen_jianguo"))
        assert other is not None
        empty = await resource_figures(session, centre, WEEK, other)
    assert (f.booked, f.attended, f.no_shows, f.cancelled) == (4, 2, 1, 3)
    # 104 seats less the 4 closed slots' 8; taken: P1, P2 (a no-show keeps its seat), P4, P5
    assert (f.seats_offered, f.seats_taken) == (96, 4)
    assert f.utilisation == pytest.approx(4 / 96)
    assert (f.ratings, f.rating_average) == (2, 4.0)
    assert (f.closures, f.closure_bookings, f.late_notices) == (2, 2, 1)
    assert f.attendance == pytest.approx(2 / 3)
    assert (empty.booked, empty.closures, empty.ratings, empty.rating_average) == (0, 0, 0, None)
    async with database.read() as session:
        rows = [row async for row in appointment_rows(session, centre, WEEK)]
    assert {row.doctor for row in rows} == {"李华"}


async def test_stats_doctor_in_the_chat(assistant: Assistant, database: Database, centre: Centre,
                                        clock: ManualClock) -> None:
    await story(database, centre, clock)
    manager = Dialog(assistant, user=MANAGER)
    await manager.command("stats", "doctor 李华 2026-11-23..2026-11-29")
    text = manager.text
    assert "【李华 副主任医师】11月23日 周一 – 11月29日 周日" in text
    assert "预约 4 个（已取消 3 个）" in text and "到诊 2 个，爽约 1 个" in text
    assert "号源使用率 4.2%（4/96）" in text and "评价 2 个，平均 4.00 分" in text
    assert "停诊 2 次，涉及预约 2 个，通知不足时限 1 个" in text
    await manager.command("stats", "doctor 王医生")
    assert "没有找到“王医生”" in manager.text and "李华（dr_li_hua）" in manager.text
    stranger = Dialog(assistant, user="901")
    await stranger.command("stats", "doctor 李华")
    assert "李华" not in stranger.text
