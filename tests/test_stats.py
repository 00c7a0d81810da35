"""Manager figures against a small history built with the booking operations, every number
computed by hand from the story below."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from sqlalchemy import select

from storage import attendance, booking, closures
from storage.centre import Centre
from storage.clock import ManualClock
from storage.db import Database
from storage.models import (
    Appointment,
    Block,
    Channel,
    Complaint,
    Handoff,
    Outbox,
    OutboxStatus,
    Rating,
    RequestStatus,
    Service,
    Slot,
)
from storage.slots import ensure_slots
from storage.stats.exports import appointment_rows
from storage.stats.figures import figures
from storage.stats.periods import Period, StatsError, StatsErrorCode, parse_period, resolve_scope
from storage.stats.series import daily_series
from tests.helpers import TZ, account, load_demo, local, make_centre, person, valid_id

NOW = local(2026, 11, 25, 18, 0)  # Wednesday evening
WEEK = Period("week", dt.date(2026, 11, 23), dt.date(2026, 11, 29))

# Online seats per working day, from the demo catalog: id_card 19 slots x 3 online seats
# (capacity 6, half online); internal_medicine 26 slots x 3 (capacity 4, 75% online).
ID_CARD_DAY, MEDICINE_DAY = 19 * 3, 26 * 3


@pytest.fixture
def centre() -> Centre:
    return make_centre(late_cancel="strike")


class Story:
    """The history: appointments P1..P12, ratings, complaints, hand-offs, blocks, outbox rows."""

    def __init__(self, database: Database, centre: Centre, clock: ManualClock) -> None:
        self.database, self.centre, self.clock = database, centre, clock
        self.services: dict[str, Service] = {}
        self.codes: dict[str, str] = {}
        self.ids: dict[str, int] = {}
        self.identities: dict[str, int] = {}
        self.citizens = 0

    def at(self, when: dt.datetime) -> dt.datetime:
        self.clock.set(when)
        return when

    async def ensure(self) -> None:
        async with self.database.session() as session:
            for code in ("id_card", "internal_medicine"):
                service = await session.get(Service, self.services[code].id)
                assert service is not None
                await ensure_slots(session, self.centre, service, self.clock.now())

    async def book(self, label: str, service: str, starts: dt.datetime, channel: Channel,
                   offline: bool = False) -> None:
        self.citizens += 1
        n = self.citizens
        now = self.clock.now()
        async with self.database.session() as session:
            p = await person(session, self.centre, now, name="欧阳小明", mobile=f"1391234{n:04d}",
                             id_number=valid_id(f"110105198001{n:02d}123"))
            a = await account(session, now, user=f"u{n}", person_id=p.id)
            slot = await session.scalar(select(Slot).where(
                Slot.service_id == self.services[service].id, Slot.starts_at == starts))
            assert slot is not None, (label, starts)
            appointment = await booking.book(
                session, self.centre, now, person_id=p.id, slot_id=slot.id,
                identity_id=None if offline else a.id, channel=channel,
                made_by="staff:7" if channel == Channel.STAFF else f"{channel}:u{n}",
                offline=offline)
            self.codes[label], self.ids[label] = appointment.code, appointment.id
            self.identities[label] = a.id

    async def run(self, operation, *args, **kwargs):  # type: ignore[no-untyped-def]
        async with self.database.session() as session:
            return await operation(session, self.centre, self.clock.now(), *args, **kwargs)

    async def add(self, *rows: object) -> None:
        async with self.database.session() as session:
            session.add_all(rows)


async def build_story(database: Database, centre: Centre, clock: ManualClock) -> Story:
    s = Story(database, centre, clock)
    s.at(local(2026, 11, 16, 9, 0))
    async with database.session() as session:  # seats from opening hours, not doctors' rosters
        s.services = await load_demo(session, clock.now(), resources=False)
    await s.ensure()
    # --- previous week (16..22 November) ---
    await s.book("P1", "id_card", local(2026, 11, 17, 9, 0), Channel.TELEGRAM)
    await s.book("P2", "id_card", local(2026, 11, 23, 9, 0), Channel.WECHAT)
    s.at(local(2026, 11, 17, 9, 10))
    await s.run(attendance.check_in, s.codes["P1"], actor="staff:7")
    await s.run(attendance.complete, s.codes["P1"], actor="staff:7")
    s.at(local(2026, 11, 18, 10, 0))
    await s.ensure()
    await s.book("P3", "id_card", local(2026, 11, 24, 9, 0), Channel.WECHAT)
    await s.book("P4", "id_card", local(2026, 11, 24, 9, 20), Channel.TERMINAL)
    s.at(local(2026, 11, 19, 10, 0))
    await s.run(booking.cancel, s.ids["P4"], actor="terminal:u4")  # before the cutoff
    # --- this week ---
    s.at(local(2026, 11, 23, 9, 10))
    await s.run(attendance.check_in, s.codes["P2"], actor="staff:7")
    await s.run(attendance.complete, s.codes["P2"], actor="staff:7")
    s.at(local(2026, 11, 23, 10, 0))
    await s.ensure()
    await s.book("P5", "id_card", local(2026, 11, 25, 9, 0), Channel.TELEGRAM)
    await s.book("P6", "internal_medicine", local(2026, 11, 25, 8, 0), Channel.STAFF)
    await s.book("P7", "id_card", local(2026, 11, 23, 14, 10), Channel.STAFF, offline=True)
    await s.book("P8", "internal_medicine", local(2026, 11, 26, 8, 0), Channel.WECHAT)
    await s.book("P12", "id_card", local(2026, 11, 25, 10, 0), Channel.TELEGRAM)
    s.at(local(2026, 11, 23, 11, 0))
    await s.book("P9", "id_card", local(2026, 11, 27, 9, 0), Channel.TELEGRAM)
    s.at(local(2026, 11, 23, 14, 20))
    await s.run(attendance.check_in, s.codes["P7"], actor="staff:7")
    await s.run(attendance.complete, s.codes["P7"], actor="staff:7")
    s.at(local(2026, 11, 24, 10, 0))
    assert await s.run(attendance.sweep_no_shows) == [s.ids["P3"]]
    await s.ensure()
    await s.book("P10", "id_card", local(2026, 11, 27, 10, 0), Channel.WECHAT)
    await s.book("P11", "id_card", local(2026, 11, 25, 13, 30), Channel.TERMINAL)
    s.at(local(2026, 11, 24, 16, 0))
    result = await s.run(booking.cancel, s.ids["P11"], actor="terminal:u11")
    assert result.late
    s.at(local(2026, 11, 25, 8, 40))
    await s.run(attendance.mark_no_show, s.codes["P6"], actor="staff:7")
    s.at(local(2026, 11, 25, 9, 20))
    await s.run(attendance.check_in, s.codes["P5"], actor="staff:7")
    await s.run(attendance.complete, s.codes["P5"], actor="staff:7")
    s.at(local(2026, 11, 25, 9, 55))
    await s.run(attendance.check_in, s.codes["P12"], actor="staff:7")
    s.at(local(2026, 11, 25, 10, 0))
    await s.run(closures.apply_closure, starts_at=local(2026, 11, 26, 8, 0),
                ends_at=local(2026, 11, 26, 12, 0), reason="设备检修", actor="staff:7",
                service_id=s.services["internal_medicine"].id)
    s.at(local(2026, 11, 25, 11, 0))
    await s.run(booking.cancel, s.ids["P9"], actor="staff:7", by_staff=True)
    s.at(NOW)

    # Ratings, complaints and hand-offs are written directly: their flows live elsewhere.
    who = s.identities["P1"]
    handoffs = [  # (opened, minutes to claim or None)
        (local(2026, 11, 19, 10, 0), 6), (local(2026, 11, 20, 11, 0), 2),
        (local(2026, 11, 23, 10, 0), 4), (local(2026, 11, 24, 14, 0), 10),
        (local(2026, 11, 25, 9, 0), 30), (local(2026, 11, 25, 17, 0), None)]
    await s.add(*(Handoff(identity_id=who, status=RequestStatus.CLAIMED if minutes else
                          RequestStatus.OPEN, context={}, opened_at=opened,
                          claimed_at=opened + dt.timedelta(minutes=minutes) if minutes else None,
                          claimed_by="staff:7" if minutes else None)
                  for opened, minutes in handoffs))
    async with database.read() as session:
        first_this_week = (await session.scalars(select(Handoff.id).order_by(Handoff.id))).all()[2]
    await s.add(
        Rating(appointment_id=s.ids["P1"], identity_id=who, level=5,
               created_at=local(2026, 11, 17, 10, 0)),
        Rating(appointment_id=s.ids["P2"], identity_id=who, level=2,
               created_at=local(2026, 11, 23, 9, 30)),
        Rating(handoff_id=first_this_week, identity_id=who, level=5,
               created_at=local(2026, 11, 24, 10, 0)),
        Rating(appointment_id=s.ids["P5"], identity_id=who, level=4,
               created_at=local(2026, 11, 25, 10, 0)))

    def complaint(opened: dt.datetime, due: dt.datetime, answered: dt.datetime | None,
                  appointment: str | None) -> Complaint:
        about = s.ids[appointment] if appointment else None
        return Complaint(identity_id=who, appointment_id=about,
                         text="等候时间太长", status=RequestStatus.ANSWERED if answered
                         else RequestStatus.OPEN, opened_at=opened, first_answer_due=due,
                         resolution_due=due + dt.timedelta(days=21), answered_at=answered)

    await s.add(
        complaint(local(2026, 11, 20, 9), local(2026, 11, 20, 17), local(2026, 11, 20, 16), "P1"),
        complaint(local(2026, 11, 23, 10), local(2026, 11, 24, 17), local(2026, 11, 24, 9), "P2"),
        complaint(local(2026, 11, 23, 9, 30), local(2026, 11, 23, 17), local(2026, 11, 24, 10),
                  "P3"),
        complaint(local(2026, 11, 24, 11), local(2026, 11, 25, 17), None, None),
        complaint(local(2026, 11, 25, 12), local(2026, 11, 26, 17), None, "P6"))

    blocked = [await _person_id(s, n) for n in (91, 92, 93)]
    await s.add(
        Block(person_id=blocked[0], starts_at=local(2026, 11, 20), ends_at=local(2027, 2, 18),
              strikes=3, created_at=local(2026, 11, 20)),
        Block(person_id=blocked[0], starts_at=local(2026, 11, 22), ends_at=local(2027, 3, 1),
              strikes=4, created_at=local(2026, 11, 22)),
        Block(person_id=blocked[1], starts_at=local(2026, 11, 20), ends_at=local(2027, 2, 18),
              strikes=3, created_at=local(2026, 11, 20), lifted_at=local(2026, 11, 21),
              lifted_by="staff:7", lift_reason="误判"),
        Block(person_id=blocked[2], starts_at=local(2026, 8, 20), ends_at=local(2026, 11, 24),
              strikes=3, created_at=local(2026, 8, 20)))

    def note(key: str, status: OutboxStatus, due: dt.datetime) -> Outbox:
        return Outbox(kind="reminder", dedup_key=key, identity_id=who, payload={}, due_at=due,
                      status=status, attempts=5, created_at=due)

    await s.add(note("t1", OutboxStatus.FAILED, local(2026, 11, 24, 12)),
                note("t2", OutboxStatus.UNDELIVERABLE, local(2026, 11, 25, 12)),
                note("t3", OutboxStatus.FAILED, local(2026, 11, 18, 12)),
                note("t4", OutboxStatus.SENT, local(2026, 11, 24, 12)))
    return s


async def _person_id(s: Story, n: int) -> int:
    async with s.database.session() as session:
        p = await person(session, s.centre, s.clock.now(), name="李四", mobile=f"1370000{n:04d}",
                         id_number=valid_id(f"110105197001{n % 28 + 1:02d}999"))
        return p.id


@pytest.fixture
async def story(database: Database, centre: Centre, clock: ManualClock) -> Story:
    return await build_story(database, centre, clock)


async def week_figures(story: Story, scope: str | None = None):  # type: ignore[no-untyped-def]
    async with story.database.read() as session:
        return await figures(session, story.centre, NOW, WEEK, await resolve_scope(session, scope))


async def test_every_figure_of_the_week(story: Story) -> None:
    f = await week_figures(story)
    cur, prev = f.current, f.previous
    assert cur.period == WEEK and prev.period == Period("week", dt.date(2026, 11, 16),
                                                        dt.date(2026, 11, 22))
    # Bookings made this week: P5 P9 P12 on Telegram, P8 P10 on WeChat, P11 at the terminal,
    # P6 by staff and P7 a walk-in.
    assert dataclasses.astuple(cur.bookings) == (8, 2, 3, 2, 1)
    # Last week: P1 Telegram, P2 P3 WeChat, P4 terminal.
    assert dataclasses.astuple(prev.bookings) == (4, 2, 1, 0, 1)

    a = cur.appointments
    # Scheduled this week: P2..P12 = 11; cancelled P4 (citizen), P8 (centre), P9 (staff),
    # P11 (late); held 7: completed P2 P5 P7, no-shows P3 P6, checked in P12, booked P10.
    assert (a.scheduled, a.held) == (11, 7)
    assert (a.booked, a.checked_in, a.completed, a.no_shows) == (1, 1, 3, 2)
    assert (a.online, a.offline) == (6, 1)  # P7 sat on a walk-in seat
    assert a.due == 6  # all held but P10 (Friday)
    assert a.no_show_rate == pytest.approx(2 / 6)
    assert dataclasses.astuple(cur.cancellations) == (4, 1, 1, 1, 1)
    before = prev.appointments
    assert (before.scheduled, before.completed, before.due) == (1, 1, 1)
    assert prev.appointments.no_show_rate == 0.0
    assert prev.cancellations.total == 0

    # Seats: five working days of both services; the closure took Thursday morning's 14
    # internal-medicine slots out of the offer. Online seats booked: P2 P3 P5 P6 P10 P12.
    assert cur.seats.offered == 5 * (ID_CARD_DAY + MEDICINE_DAY) - 14 * 3
    assert (cur.seats.booked, cur.seats.booked_all, cur.seats.closed_slots) == (6, 6, 14)
    assert cur.seats.utilisation == pytest.approx(6 / 633)
    assert (prev.seats.offered, prev.seats.booked) == (5 * (ID_CARD_DAY + MEDICINE_DAY), 1)

    # Ratings: 2 (P2), 5 (a hand-off), 4 (P5); last week 5 (P1).
    r = cur.ratings
    assert (r.count, r.satisfied, r.levels) == (3, 2, (0, 1, 0, 1, 1))
    assert r.average == pytest.approx(11 / 3)
    assert r.satisfied_share == pytest.approx(2 / 3)
    assert (prev.ratings.count, prev.ratings.average, prev.ratings.satisfied_share) == (1, 5.0, 1.0)

    # Complaints: one answered on time, one late, one past due without answer, one in time.
    assert dataclasses.astuple(cur.complaints) == (4, 1, 1, 1, 1)
    assert cur.complaints.overdue == 2
    assert dataclasses.astuple(prev.complaints) == (1, 1, 0, 0, 0)

    # Hand-offs: claimed after 4, 10 and 30 minutes, one unclaimed; last week 6 and 2.
    h = cur.handoffs
    assert (h.opened, h.claimed, h.unclaimed) == (4, 3, 1)
    assert h.median_minutes_to_claim == pytest.approx(10)
    assert prev.handoffs.median_minutes_to_claim == pytest.approx(4)

    assert dataclasses.astuple(cur.notifications) == (1, 1)
    assert dataclasses.astuple(prev.notifications) == (1, 0)

    # Now: one citizen blocked (twice over); one block lifted, one over.
    assert f.blocked_now == 1
    # Bookable at Wednesday 18:00: id_card on Friday, Monday, Tuesday (Thursday's stop was
    # Wednesday 15:00; P10 has a Friday seat); internal medicine has no stop time, so Thursday
    # afternoon (12 slots, the morning is closed) is bookable too.
    assert f.remaining_seats == 3 * ID_CARD_DAY - 1 + 3 * MEDICINE_DAY + 12 * 3
    assert f.problems() == []


async def test_figures_of_one_service_and_one_department(story: Story) -> None:
    # a failed notice about an id_card appointment belongs to it; the others to no service
    await story.add(Outbox(kind="reminder", dedup_key="t5", appointment_id=story.ids["P5"],
                           payload={}, due_at=local(2026, 11, 24, 12),
                           status=OutboxStatus.FAILED, attempts=5, created_at=local(2026, 11, 24, 12)))
    f = await week_figures(story, "id_card")
    assert f.scope is not None and f.scope.kind == "service"
    cur = f.current
    assert dataclasses.astuple(cur.bookings) == (6, 1, 3, 1, 1)
    a = cur.appointments
    assert (a.scheduled, a.held, a.completed, a.no_shows, a.due) == (9, 6, 3, 1, 5)
    assert dataclasses.astuple(cur.cancellations) == (3, 1, 1, 0, 1)
    assert (cur.seats.offered, cur.seats.booked) == (5 * ID_CARD_DAY, 5)
    # The hand-off's rating is not the service's.
    assert (cur.ratings.count, cur.ratings.average) == (2, 3.0)
    assert dataclasses.astuple(cur.complaints) == (2, 1, 1, 0, 0)
    assert f.remaining_seats == 3 * ID_CARD_DAY - 1
    # hand-offs and blocks have no service: not in the service's figures at all
    assert cur.handoffs.opened == 0 and f.blocked_now is None
    assert not {key for key, _, _ in f.items()} & {"handoffs.opened", "blocked_now"}
    assert dataclasses.astuple(cur.notifications) == (1, 0)
    assert f.problems() == []
    whole = await week_figures(story)
    assert whole.current.handoffs.opened == 4 and whole.blocked_now == 1
    assert dataclasses.astuple(whole.current.notifications) == (2, 1)
    # named as staff name it: the code, the name in either language, or a part of it
    for named in ("id_card", "居民身份证办理（首次申领/换领/补领）", "resident id CARD", "身份证"):
        assert (await week_figures(story, named)).scope == f.scope, named

    d = await week_figures(story, "outpatient")
    assert d.scope is not None and d.scope.kind == "department"
    assert (d.current.appointments.scheduled, d.current.appointments.no_shows) == (2, 1)
    assert d.current.cancellations.centre == 1
    assert d.current.seats.offered == 5 * MEDICINE_DAY - 14 * 3
    assert d.remaining_seats == 3 * MEDICINE_DAY + 12 * 3
    assert d.problems() == []


async def test_unknown_and_ambiguous_scope(story: Story) -> None:
    async with story.database.read() as session:
        with pytest.raises(StatsError) as caught:
            await resolve_scope(session, "no_such_service")
        assert caught.value.code == StatsErrorCode.UNKNOWN_SCOPE
        assert caught.value.details["code"] == "no_such_service"
        assert "dental" in {row.code for row in caught.value.details["matched"].known}
        with pytest.raises(StatsError) as caught:
            await resolve_scope(session, "门诊")
        assert caught.value.code == StatsErrorCode.AMBIGUOUS_SCOPE
        assert {row.code for row in caught.value.details["matched"].candidates} == {
            "internal_medicine", "dental", "outpatient"}


async def test_problems_names_a_part_that_does_not_add_up(story: Story) -> None:
    f = await week_figures(story)
    broken = dataclasses.replace(f, current=dataclasses.replace(
        f.current, bookings=dataclasses.replace(f.current.bookings, wechat=3)))
    assert broken.problems() == ["current bookings: 8 != 3 + 3 + 2 + 1"]


async def test_items_list_every_figure_with_the_previous_value(story: Story) -> None:
    items = {key: (now, before) for key, now, before in (await week_figures(story)).items()}
    assert items["bookings.total"] == (8, 4)
    assert items["appointments.no_show_rate"][0] == pytest.approx(1 / 3)
    assert items["ratings.level_2"] == (1, 0)
    assert items["blocked_now"] == (1, None)
    assert items["remaining_seats"][1] is None
    assert len(items) == len((await week_figures(story)).items())  # keys are unique


async def test_daily_series_matches_the_figures(story: Story) -> None:
    async with story.database.read() as session:
        series = await daily_series(session, story.centre, WEEK)
    assert [p.day for p in series] == [WEEK.first + dt.timedelta(days=n) for n in range(7)]
    by_day = {p.day: p for p in series}
    assert by_day[dt.date(2026, 11, 23)].bookings == 6  # P5..P9 (P7 a walk-in) and P12
    assert by_day[dt.date(2026, 11, 24)].bookings == 2
    assert by_day[dt.date(2026, 11, 24)].no_shows == 1
    assert by_day[dt.date(2026, 11, 25)].no_shows == 1
    assert by_day[dt.date(2026, 11, 26)].offered == ID_CARD_DAY + MEDICINE_DAY - 14 * 3
    saturday = by_day[dt.date(2026, 11, 28)]
    assert saturday.offered == 0 and saturday.utilisation is None
    f = await week_figures(story)
    assert sum(p.bookings for p in series) == f.current.bookings.total
    assert sum(p.no_shows for p in series) == f.current.appointments.no_shows
    assert sum(p.offered for p in series) == f.current.seats.offered
    assert sum(p.booked for p in series) == f.current.seats.booked


async def test_booking_made_just_before_local_midnight_counts_on_its_local_day(
        database: Database, centre: Centre, clock: ManualClock) -> None:
    # 23:59 in Shanghai is 15:59 UTC: the day must be the local one.
    story = Story(database, centre, clock)
    story.at(local(2026, 11, 23, 23, 59))
    async with database.session() as session:
        story.services = await load_demo(session, clock.now())
    await story.ensure()
    await story.book("late", "id_card", local(2026, 11, 26, 9, 0), Channel.WECHAT)
    async with database.read() as session:
        series = await daily_series(session, centre, Period("range", dt.date(2026, 11, 23),
                                                            dt.date(2026, 11, 24)))
        day = await figures(session, centre, local(2026, 11, 24, 9), parse_period(
            "2026-11-24", local(2026, 11, 24, 9), TZ))
    assert [p.bookings for p in series] == [1, 0]
    assert day.current.bookings.total == 0 and day.previous.bookings.total == 1


async def test_empty_database_gives_zeros_not_errors(database: Database, centre: Centre) -> None:
    async with database.read() as session:
        f = await figures(session, centre, NOW, WEEK)
    assert f.current.bookings.total == 0 and f.current.appointments.no_show_rate is None
    assert f.current.seats.utilisation is None and f.current.ratings.average is None
    assert f.current.handoffs.median_minutes_to_claim is None
    assert (f.remaining_seats, f.blocked_now) == (0, 0)
    assert f.problems() == []


async def test_export_rows_are_masked(story: Story) -> None:
    async with story.database.read() as session:
        rows = [row async for row in appointment_rows(session, story.centre, WEEK)]
        stored = (await session.scalars(select(Appointment.code).where(
            Appointment.local_date >= WEEK.first, Appointment.local_date <= WEEK.last))).all()
    assert sorted(r.code for r in rows) == sorted(stored) and len(rows) == 11
    assert [r.starts_at for r in rows] == sorted(r.starts_at for r in rows)
    for row in rows:
        assert row.name == "欧**明"
        assert row.mobile.startswith("139****") and "1234" not in row.mobile[:7]
        assert row.id_number.startswith("110") and "*" * 11 in row.id_number
        assert row.starts_at.utcoffset() == dt.timedelta(hours=8)
    p5 = next(r for r in rows if r.code == story.codes["P5"])
    assert (p5.status, p5.channel, p5.rating) == ("completed", "telegram", 4)
    assert p5.service_code == "id_card"
    assert p5.service_name.startswith("居民身份证")
    p7 = next(r for r in rows if r.code == story.codes["P7"])
    assert p7.offline and p7.channel == "staff"
    p11 = next(r for r in rows if r.code == story.codes["P11"])
    assert (p11.status, p11.cancel_kind) == ("cancelled", "late")
