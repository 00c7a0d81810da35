"""Rosters (排班): the rules of which half-days a resource works, and the slots made from them
on the centre's working days, across the 2026 Spring Festival."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from sqlalchemy import select

from storage.catalog import CatalogError, parse_catalog
from storage.clock import ManualClock
from storage.db import Database
from storage.models import Resource, RosterException, Slot
from storage.rosters import ExceptionRow, PatternRow, Sitting, half_of, online_seats, sittings_on
from tests.helpers import load_demo, local, slots_of

MONDAY = dt.date(2026, 11, 23)


def test_half_of_cuts_at_noon() -> None:
    assert half_of(dt.time(11, 45)) == "am"
    assert half_of(dt.time(12, 0)) == "pm"


def test_online_seats_keeps_one_online_seat_of_a_small_sitting() -> None:
    assert online_seats(2, 0.5) == 1
    assert online_seats(1, 0.3) == 1
    assert online_seats(4, 0.75) == 3
    assert online_seats(0, 0.75) == 0


def test_sittings_follow_the_weekday_then_the_exceptions() -> None:
    patterns = [PatternRow(0, "am", 2, 1), PatternRow(0, "pm", 3, 2), PatternRow(2, "am", 2, 1)]
    assert sittings_on(MONDAY, patterns, []) == {"am": Sitting(2, 1), "pm": Sitting(3, 2)}
    assert sittings_on(MONDAY + dt.timedelta(days=1), patterns, []) == {}
    off_morning = [ExceptionRow(MONDAY, "am", 0, 0)]
    assert sittings_on(MONDAY, patterns, off_morning) == {"pm": Sitting(3, 2)}
    # a whole day off, but the afternoon worked with more seats: the half-day wins
    mixed = [ExceptionRow(MONDAY, "pm", 5, 4), ExceptionRow(MONDAY, "day", 0, 0)]
    assert sittings_on(MONDAY, patterns, mixed) == {"pm": Sitting(5, 4)}
    # an exception on another day changes nothing; one can open a day with no pattern
    tuesday = MONDAY + dt.timedelta(days=1)
    assert sittings_on(MONDAY, patterns, [ExceptionRow(tuesday, "day", 0, 0)])["am"] == Sitting(2, 1)
    assert sittings_on(tuesday, patterns, [ExceptionRow(tuesday, "day", 2, 1)]) == {
        "am": Sitting(2, 1), "pm": Sitting(2, 1)}


CATALOG = """
[departments.op]
kind = "hospital"
name = "门诊"
address = "健康路"
[services.im]
department = "op"
name = "内科"
place = "205"
materials = [{ name = "身份证" }]
hours = { default = ["08:00-11:30", "13:30-16:30"] }
[resources.dr_a]
name = "甲"
title = "chief"
specialty = "心内"
services = ["im"]
"""


def test_catalog_checks_resources_with_their_key_paths() -> None:
    parsed = parse_catalog(CATALOG + 'roster = [{ service = "im", days = ["mon_am"], seats = 2 }]\n')
    assert parsed.resources[0].roster[0].sessions == ((0, "am"),)
    bad = CATALOG.replace('title = "chief"', 'title = "boss"').replace('services = ["im"]', """\
services = ["im", "xx"]
roster = [{ service = "im", days = ["monday"], seats = 0 }]
exceptions = [{ service = "im", date = "soon", half = "am" }]""")
    try:
        parse_catalog(bad)
    except CatalogError as exc:
        problems = "\n".join(exc.problems)
    else:  # pragma: no cover
        raise AssertionError("accepted")
    for expected in ("resources.dr_a.title: must be one of chief", "resources.dr_a.services: must name",
                     'resources.dr_a.roster[0].days: must be weekday_half like "mon_am"',
                     "resources.dr_a.roster[0].seats: must be a positive integer",
                     "resources.dr_a.exceptions[0].date: must be a date"):
        assert expected in problems, problems


def _by_day_and_doctor(slots: list[Slot], codes: dict[int, str]) -> dict[dt.date, Counter[str]]:
    days: dict[dt.date, Counter[str]] = {}
    for slot in slots:
        days.setdefault(slot.local_date, Counter())[codes.get(slot.resource_id or 0, "-")] += 1
    return days


async def test_slots_come_from_rosters_across_the_2026_spring_festival(database: Database) -> None:
    """2026-02-14 (Sat) and 02-28 (Sat) are make-up working days, 02-15..02-23 closed. On a
    holiday no doctor works, whatever the roster says; on a make-up Saturday only a doctor with
    a dated exception does (no roster has Saturdays)."""
    clock = ManualClock(local(2026, 2, 11, 8, 0))   # Wednesday before the festival
    from tests.helpers import make_centre
    centre = make_centre()
    async with database.session() as session:
        services = await load_demo(session, clock.now())
        resources = {r.code: r for r in (await session.scalars(select(Resource))).all()}
        codes = {r.id: code for code, r in resources.items()}
        session.add(RosterException(
            resource_id=resources["dr_wu_lei"].id, service_id=services["internal_medicine"].id,
            day=dt.date(2026, 2, 28), half="am", seats=2, online_seats=1, note="调休上班",
            created_by="test", created_at=clock.now()))
        await session.flush()
        before = _by_day_and_doctor(await slots_of(session, centre, services["internal_medicine"],
                                                   clock.now()), codes)
    # each half-day is 14 slots (08:00-11:30) or 12 slots (13:30-16:30) of 15 minutes
    assert before[dt.date(2026, 2, 11)] == Counter(dr_chen_jianguo=14, dr_wu_lei=14, dr_zhou_min=12)
    assert before[dt.date(2026, 2, 12)] == Counter(dr_zhou_min=14, dr_li_hua=26, dr_wu_lei=12)
    assert before[dt.date(2026, 2, 13)] == Counter(dr_chen_jianguo=14, dr_wu_lei=14, dr_zhou_min=12)
    assert dt.date(2026, 2, 14) not in before           # make-up Saturday: no roster, no slots
    assert not [d for d in before if dt.date(2026, 2, 15) <= d <= dt.date(2026, 2, 23)]

    clock.set(local(2026, 2, 21, 8, 0))                 # a holiday weekend: release goes on
    async with database.session() as session:
        slots = await slots_of(session, centre, services["internal_medicine"], clock.now())
        after = _by_day_and_doctor(slots, codes)
        seats = {(s.local_date, s.resource_id): (s.capacity, s.online_capacity) for s in slots}
    assert not [d for d in after if dt.date(2026, 2, 15) <= d <= dt.date(2026, 2, 23)]
    assert after[dt.date(2026, 2, 24)] == Counter(dr_zhou_min=14, dr_li_hua=26, dr_wu_lei=12)
    assert after[dt.date(2026, 2, 28)] == Counter(dr_wu_lei=14)   # the exception's morning
    assert seats[(dt.date(2026, 2, 28), resources["dr_wu_lei"].id)] == (2, 1)
    # 陈建国's roster asks for half of 2 seats online; the others the service's 75 %
    assert seats[(dt.date(2026, 2, 25), resources["dr_chen_jianguo"].id)] == (2, 1)
    assert seats[(dt.date(2026, 2, 25), resources["dr_zhou_min"].id)] == (2, 2)


async def test_a_service_without_resources_keeps_its_plain_slots(database: Database,
                                                                 clock: ManualClock, centre) -> None:  # type: ignore[no-untyped-def]
    async with database.session() as session:
        services = await load_demo(session, clock.now())
        slots = await slots_of(session, centre, services["dental"], clock.now(), MONDAY)
    assert len(slots) == 13 and {s.resource_id for s in slots} == {None}
    assert {(s.capacity, s.online_capacity) for s in slots} == {(2, 1)}
