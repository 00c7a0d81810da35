"""Figures per doctor on a hand-computed week: bookings, attendance, no-shows, utilisation,
ratings, closures and late notices; ``/stats doctor NAME``; the export's doctor column; the
charts ``/stats chart doctors`` and ``/stats chart doctor NAME`` drawn from the same figures."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator

import pytest
from matplotlib.figure import Figure
from sqlalchemy import event, select

from bot import charts
from bot.reports import FileReports
from handlers.doctor_stats import CHART_BARS
from handlers.engine import Assistant
from storage import attendance, booking
from storage.centre import Centre
from storage.clock import ManualClock
from storage.db import Database
from storage.models import Channel, Closure, Rating, Resource, Slot
from storage.resource_closures import apply_resource_closure
from storage.settings import AccessSettings, Settings
from storage.stats.exports import appointment_rows
from storage.stats.periods import Period
from storage.stats.resources import buckets, resource_figures, resources_figures
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


@pytest.fixture
def plotted(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """What each doctor chart drawn in the test shows, read back from the drawn figure: the
    tick labels, the three bar series, the seat use dots and the closure marks."""
    drawn: list[dict[str, object]] = []
    real = charts._draw_resources

    def spy(figure: Figure, *args: object) -> None:
        real(figure, *args)  # type: ignore[arg-type]
        counts, share = figure.axes
        booked, attended, no_shows = ([int(bar.get_height()) for bar in bars]
                                      for bars in counts.containers)
        drawn.append({"labels": [tick.get_text() for tick in counts.get_xticklabels()],
                      "booked": booked, "attended": attended, "no_shows": no_shows,
                      "utilisation": [None if value != value else round(float(value), 4)
                                      for value in share.lines[0].get_ydata()],
                      "marks": [(text.get_text(), text.xy[0]) for text in counts.texts]})

    monkeypatch.setattr(charts, "_draw_resources", spy)
    return drawn


def drawing(database: Database, centre: Centre, clock: ManualClock,
            settings: Settings) -> Assistant:
    return Assistant(database=database, centre=centre, clock=clock, settings=settings,
                     reports=FileReports())


async def test_chart_of_the_doctors_plots_their_figures(
        database: Database, centre: Centre, clock: ManualClock, settings: Settings,
        plotted: list[dict[str, object]]) -> None:
    ids = await story(database, centre, clock)
    manager = Dialog(drawing(database, centre, clock, settings), user=MANAGER)
    await manager.command("stats", "chart doctors 2026-11-23..2026-11-29")
    [reply] = manager.last
    assert reply.text.startswith("11月23日 周一 – 11月29日 周日 各医生/窗口")
    assert reply.attachment is not None and reply.attachment.content[:4] == b"\x89PNG"
    [chart] = plotted
    labels = chart["labels"]
    assert isinstance(labels, list) and "李华" in labels
    li = labels.index("李华")
    # The hand-computed week: 4 booked, 2 attended, 1 no-show, 4 of 96 seats, 2 closures, 1 late.
    assert [chart[k][li] for k in ("booked", "attended", "no_shows", "utilisation")] == [  # type: ignore[index]
        4, 2, 1, round(4 / 96, 4)]
    assert chart["marks"] == [("停诊2次\n通知不足时限1", li)]
    # Every other doctor or window drawn shows what its text figures say.
    async with database.read() as session:
        everyone = {r.name_zh: r.id for r in (await session.scalars(select(Resource))).all()}
        for n, name in enumerate(labels):
            f = await resource_figures(session, centre, WEEK, everyone[name])
            assert (f.booked or f.seats_offered or f.closures)
            assert [chart[k][n] for k in ("booked", "attended", "no_shows")] == [  # type: ignore[index]
                f.booked, f.attended, f.no_shows]
    assert ids["li"] == everyone["李华"]


async def test_chart_of_one_doctor_day_by_day(
        database: Database, centre: Centre, clock: ManualClock, settings: Settings,
        plotted: list[dict[str, object]]) -> None:
    await story(database, centre, clock)
    manager = Dialog(drawing(database, centre, clock, settings), user=MANAGER)
    await manager.command("stats", "chart doctor 李华 2026-11-23..2026-11-29")
    assert manager.text.startswith("【李华 副主任医师】11月23日 周一 – 11月29日 周日 每日")
    assert manager.last[0].attachment is not None
    [chart] = plotted
    assert chart["labels"] == ["11-23", "11-24", "11-25", "11-26", "11-27", "11-28", "11-29"]
    # Tue: P1 completed, P2 no-show (P3 cancelled); 26 slots of 2 seats, 2 taken.
    # Thu: P4 booked, P5 completed (P6, P7 cancelled by the closures); 52 seats less 8 closed.
    assert chart["booked"] == [0, 2, 0, 2, 0, 0, 0]
    assert chart["attended"] == [0, 1, 0, 1, 0, 0, 0]
    assert chart["no_shows"] == [0, 1, 0, 0, 0, 0, 0]
    assert chart["utilisation"] == [None, round(2 / 52, 4), None, round(2 / 44, 4), None, None, None]
    assert chart["marks"] == [("停诊2次\n通知不足时限1", 3)]
    english = Dialog(drawing(database, centre, clock, settings), user=MANAGER, locale="en")
    await english.command("lang", "en")
    await english.command("stats", "chart doctor dr_li_hua 2026-11-01..2026-11-30")
    assert english.text.startswith("[Li Hua") and "per week" in english.text
    assert plotted[1]["labels"] == ["11-01", "11-02", "11-09", "11-16", "11-23", "11-30"]
    assert plotted[1]["booked"] == [0, 0, 0, 0, 4, 0]
    assert plotted[1]["marks"] == [("Closed ×2\nlate notice 1", 4)]


async def test_chart_of_an_unknown_doctor_is_a_polite_message(
        database: Database, centre: Centre, clock: ManualClock, settings: Settings,
        plotted: list[dict[str, object]]) -> None:
    await story(database, centre, clock)
    assistant = drawing(database, centre, clock, settings)
    manager = Dialog(assistant, user=MANAGER)
    await manager.command("stats", "chart doctor 王医生 week")
    assert "没有找到“王医生”" in manager.text and "李华（dr_li_hua）" in manager.text
    assert all(reply.attachment is None for reply in manager.last) and plotted == []
    stranger = Dialog(assistant, user="901")
    await stranger.command("stats", "chart doctors week")
    assert all(reply.attachment is None for reply in stranger.last) and plotted == []


def test_a_long_period_is_drawn_week_by_week() -> None:
    month = Period("month", dt.date(2026, 11, 1), dt.date(2026, 11, 30))
    assert [(p.first.day, p.last.day) for p in buckets(month)] == [
        (1, 1), (2, 8), (9, 15), (16, 22), (23, 29), (30, 30)]
    assert len(buckets(WEEK)) == 7 and all(p.first == p.last for p in buckets(WEEK))


async def many_doctors(database: Database, clock: ManualClock, count: int) -> None:
    """``count`` more doctors, each with a 停诊 on the Wednesday of the week (so each is drawn)."""
    now = clock.now()
    async with database.session() as session:
        for n in range(count):
            doctor = Resource(code=f"dr_extra_{n:03d}", kind="doctor", name_zh=f"医生{n:03d}",
                              name_en=f"Doctor {n:03d}", title="attending", definition={},
                              definition_hash="-", active=True, updated_at=now, created_at=now)
            session.add(doctor)
            await session.flush()
            session.add(Closure(resource_id=doctor.id, starts_at=local(2026, 11, 25, 9, 0),
                                ends_at=local(2026, 11, 25, 10, 0), reason="会议",
                                created_by="staff:1", created_at=now))


@contextlib.contextmanager
def statements(database: Database) -> Iterator[list[str]]:
    """The SQL statements run inside the block."""
    seen: list[str] = []

    def record(*args: object) -> None:
        seen.append(str(args[2]))

    event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", record)


async def test_the_charts_take_a_bounded_number_of_statements(
        database: Database, centre: Centre, clock: ManualClock, settings: Settings,
        plotted: list[dict[str, object]]) -> None:
    """The doctors' chart reads every doctor's figures at once, and one doctor's chart every
    day or week at once: more doctors or a longer period add no statement."""
    await story(database, centre, clock)
    manager = Dialog(drawing(database, centre, clock, settings), user=MANAGER)
    await manager.command("stats", "chart doctors 2026-11-23..2026-11-29")      # the account made
    with statements(database) as few:
        await manager.command("stats", "chart doctors 2026-11-23..2026-11-29")
    await many_doctors(database, clock, 40)
    with statements(database) as many:
        await manager.command("stats", "chart doctors 2026-11-23..2026-11-29")
    assert len(many) == len(few) < 20, many
    with statements(database) as week:
        await manager.command("stats", "chart doctor 李华 2026-11-23..2026-11-29")
    with statements(database) as quarter:
        await manager.command("stats", "chart doctor 李华 2026-09-01..2026-11-30")
    assert len(quarter) == len(week) < 20, quarter
    assert plotted[-1]["booked"][-2] == 4          # type: ignore[index]  # the week of 11-23


async def test_the_doctors_chart_draws_the_most_booked_and_says_how_many_are_left_out(
        database: Database, centre: Centre, clock: ManualClock, settings: Settings,
        plotted: list[dict[str, object]]) -> None:
    await story(database, centre, clock)
    await many_doctors(database, clock, CHART_BARS + 5)
    async with database.read() as session:
        found = await resources_figures(session, centre, WEEK)
    drawable = [f for f in found.values() if f.booked or f.seats_offered or f.closures]
    assert len(drawable) > CHART_BARS
    manager = Dialog(drawing(database, centre, clock, settings), user=MANAGER)
    await manager.command("stats", "chart doctors 2026-11-23..2026-11-29")
    left = len(drawable) - CHART_BARS
    assert manager.text.startswith(
        f"11月23日 周一 – 11月29日 周日 预约最多的{CHART_BARS}个医生/窗口（另有{left}个未列出）")
    [chart] = plotted
    assert len(chart["labels"]) == CHART_BARS and chart["labels"][0] == "李华"  # type: ignore[arg-type,index]
    assert chart["booked"] == sorted(f.booked for f in drawable)[::-1][:CHART_BARS]


async def test_a_chart_of_an_unusable_period_says_why_as_stats_does(
        database: Database, centre: Centre, clock: ManualClock, settings: Settings,
        plotted: list[dict[str, object]]) -> None:
    await story(database, centre, clock)
    manager = Dialog(drawing(database, centre, clock, settings), user=MANAGER)
    for period in ("2025-01-01..2026-12-31", "2026-11-29..2026-11-23"):
        await manager.command("stats", period)
        expected = manager.text
        for asked in (f"chart doctors {period}", f"chart doctor 李华 {period}",
                      f"doctor 李华 {period}"):
            await manager.command("stats", asked)
            assert manager.text == expected, asked
    assert plotted == []
