"""The booking's .ics file, read back as a calendar program would: RFC 5545 line lengths, the
event in the centre's time zone, and a VTIMEZONE that gives the zone's real offsets."""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import icalendar
import pytest
from sqlalchemy import select

from handlers.engine import Assistant
from handlers.render import zone_component
from storage.clock import ManualClock
from storage.db import Database
from storage.models import Appointment
from storage.settings import Settings
from tests.dialog import Dialog
from tests.helpers import load_demo, make_centre
from tests.test_flows import book_id_card


async def booked_file(database: Database, zone: str) -> tuple[bytes, Appointment]:
    """Book the ID-card service on Tuesday 09:00 in a centre in ``zone``; return its .ics file."""
    tz = ZoneInfo(zone)
    clock = ManualClock(dt.datetime(2026, 11, 23, 9, 0, tzinfo=tz))
    async with database.session() as session:
        await load_demo(session, clock.now())
    centre = dataclasses.replace(make_centre(), tz=tz)
    dialog = Dialog(Assistant(database=database, centre=centre, clock=clock, settings=Settings()))
    code = await book_id_card(dialog)
    attachment = dialog.last[0].attachment
    assert attachment is not None and attachment.mime == "text/calendar"
    assert attachment.filename == f"yuyue-{code}.ics"
    async with database.read() as session:
        appointment = await session.scalar(select(Appointment).where(Appointment.code == code))
    assert appointment is not None
    return attachment.content, appointment


def test_lines_are_folded_at_75_octets_and_end_in_crlf_per_rfc_5545() -> None:
    # The rule itself, on a file a hand-written writer got wrong: one long UTF-8 line.
    calendar = icalendar.Calendar()
    event = icalendar.Event()
    event.add("description", "需带材料：" + "居民户口簿原件，由户籍派出所出具；" * 10)
    calendar.add_component(event)
    assert_rfc_5545_lines(calendar.to_ical())


def assert_rfc_5545_lines(content: bytes) -> None:
    assert content.endswith(b"\r\n")
    lines = content.split(b"\r\n")[:-1]
    assert all(b"\n" not in line and b"\r" not in line for line in lines)
    assert max(len(line) for line in lines) <= 75, max(lines, key=len)
    for line in lines:
        line.decode("utf-8")      # a fold never splits a character


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Asia/Urumqi", "Europe/Berlin"])
async def test_the_calendar_file_reads_back_in_the_centres_time_zone(database: Database, zone: str) -> None:
    content, appointment = await booked_file(database, zone)
    assert_rfc_5545_lines(content)
    calendar = icalendar.Calendar.from_ical(content)
    assert calendar["VERSION"] == "2.0"
    (event,) = calendar.walk("VEVENT")
    start, end = event.decoded("DTSTART"), event.decoded("DTEND")
    assert start == appointment.starts_at and end == appointment.ends_at   # the same instants
    assert event["DTSTART"].params["TZID"] == zone
    assert (start.hour, start.minute) == (9, 0)                            # shown as local time
    assert appointment.code in event["SUMMARY"] and appointment.code in event["DESCRIPTION"]
    assert event["LOCATION"].startswith("一楼 公安综合窗口 3号")
    assert "居民户口簿" in event["DESCRIPTION"]                              # the materials, unfolded
    (alarm,) = event.walk("VALARM")
    assert alarm.decoded("TRIGGER") == -dt.timedelta(hours=1)

    (timezone,) = calendar.walk("VTIMEZONE")
    assert timezone["TZID"] == zone
    # The file's own rules give the zone's real offset on every day around the appointment,
    # summer time included (a hard-coded +0800 would be wrong for two of these zones).
    from_file, real = timezone.to_tz(), ZoneInfo(zone)
    instant = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    while instant.year == 2026:
        assert instant.astimezone(from_file).utcoffset() == instant.astimezone(real).utcoffset(), instant
        instant += dt.timedelta(days=7)


def test_a_zones_vtimezone_is_built_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building a VTIMEZONE asks the zone's offset hour by hour over the years (tens of
    milliseconds): every calendar file of a process shares one per zone and years."""
    built: list[object] = []
    build = icalendar.Timezone.from_tzinfo

    def counted(zone: ZoneInfo, **options: object) -> icalendar.Timezone:
        built.append(zone)
        return build(zone, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(icalendar.Timezone, "from_tzinfo", counted)
    zone_component.cache_clear()
    first = zone_component(ZoneInfo("Europe/Berlin"), 2025, 2027)
    assert zone_component(ZoneInfo("Europe/Berlin"), 2025, 2027) is first
    assert len(built) == 1
    other = zone_component(ZoneInfo("Asia/Urumqi"), 2025, 2027)
    assert len(built) == 2 and other is not first and "Asia/Urumqi" in other.to_ical().decode()
    zone_component.cache_clear()
