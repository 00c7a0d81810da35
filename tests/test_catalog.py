import datetime as dt
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from handlers.engine import Assistant
from storage.catalog import CatalogError, ServiceDef, load_catalog, parse_catalog, read_catalog
from storage.db import Database
from storage.models import Appointment, Service, Slot

NOW = dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC)

GOOD = """
[departments.hall]
name = { zh = "服务大厅", en = "Service hall" }
address = "人民路1号"

[services.id_card]
department = "hall"
name = { zh = "身份证", en = "ID card" }
place = "3号窗口"
slot_minutes = 30
capacity = 4
hours = { default = ["09:00-12:00"] }
[[services.id_card.materials]]
name = "户口簿"
"""


def test_demo_catalog_is_valid_and_complete(demo_catalog_path: Path) -> None:
    catalog = read_catalog(demo_catalog_path)
    codes = {s.code for s in catalog.services}
    assert {"id_card", "hukou_transfer", "social_card", "senior_card", "medical_reimburse",
            "internal_medicine", "dental", "health_check"} <= codes
    assert {d.kind for d in catalog.departments} == {"service_centre", "hospital"}
    for service in catalog.services:
        assert service.materials, service.code
        assert service.name.en and service.name.zh
        assert ServiceDef.from_json(service.to_json()) == service


def test_every_problem_is_reported_at_once_with_its_key_path() -> None:
    bad = GOOD.replace("slot_minutes = 30", "slot_minutes = -5").replace(
        'department = "hall"', 'department = "nowhere"').replace(
        '["09:00-12:00"]', '["12:00-09:00"]') + '\n[services.id_card.rules]\nhold_minutes = 0\nbogus = 1\n'
    with pytest.raises(CatalogError) as caught:
        parse_catalog(bad)
    problems = caught.value.problems
    assert "services.id_card.slot_minutes: must be a positive integer and at most 480, got -5" in problems
    assert any(p.startswith("services.id_card.department: must name a department") for p in problems)
    assert any(p.startswith("services.id_card.hours.default[0]:") for p in problems)
    assert any(p.startswith("services.id_card.rules.hold_minutes:") for p in problems)
    assert any(p.startswith("services.id_card.rules.bogus: unknown setting") for p in problems)
    assert len(problems) >= 5


@pytest.mark.parametrize(("edit", "path"), [
    (lambda t: t.replace('[[services.id_card.materials]]\nname = "户口簿"', ""), "services.id_card.materials"),
    (lambda t: "surprise = 1\n" + t, "(top level).surprise"),
    (lambda t: t.replace("capacity = 4", "capacity = 1\nonline_share = 0.2"), "services.id_card.online_share"),
    (lambda t: t.replace("capacity = 4", 'capacity = 4\nrelease_time = "25:99"'), "services.id_card.release_time"),
    (lambda t: t.replace("[services.id_card]", "[services.ID-card]"), "services.ID-card"),
    (lambda t: t + "\n[services.x", "(file)"),
])
def test_single_problems(edit, path: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CatalogError) as caught:
        parse_catalog(edit(GOOD))
    assert any(p.startswith(path) for p in caught.value.problems), caught.value.problems


async def test_load_is_idempotent_and_updates_without_touching_appointments(
        database: Database, demo_catalog_path: Path) -> None:
    catalog = read_catalog(demo_catalog_path)
    async with database.session() as session:
        first = await load_catalog(session, catalog, NOW)
    assert len(first.created) == len(catalog.services)
    async with database.session() as session:
        again = await load_catalog(session, catalog, NOW)
    assert again.created == again.updated == [] and len(again.unchanged) == len(catalog.services)

    changed = parse_catalog(GOOD.replace("capacity = 4", "capacity = 8"))
    base = parse_catalog(GOOD)
    async with database.session() as session:
        narrowed = await load_catalog(session, base, NOW)
        assert sorted(narrowed.deactivated) == sorted(
            s.code for s in catalog.services if s.code != "id_card")
        service = await session.scalar(select(Service).where(Service.code == "id_card"))
        assert service is not None
        slot = Slot(service_id=service.id, local_date=dt.date(2026, 11, 24),
                    starts_at=NOW + dt.timedelta(days=1), ends_at=NOW + dt.timedelta(days=1, minutes=30),
                    capacity=4, online_capacity=2, booked=1)
        session.add(slot)
    async with database.session() as session:
        report = await load_catalog(session, changed, NOW)
        assert report.updated == ["id_card"]
        assert report.deactivated == []
        refreshed = await session.get(Slot, slot.id)
        assert refreshed is not None
        assert (refreshed.capacity, refreshed.online_capacity, refreshed.booked) == (8, 4, 1)
        assert await session.scalar(select(func.count()).select_from(Appointment)) == 0


def test_materials_keep_every_detail(demo_catalog_path: Path) -> None:
    catalog = read_catalog(demo_catalog_path)
    hukou = next(s for s in catalog.services if s.code == "hukou_transfer")
    proof = hukou.materials[2]
    assert proof.form == "original_and_copy" and proof.copies == 2
    assert proof.notes is not None and re.search("A4", proof.notes.zh)


def _renamed(path: Path) -> str:
    """The demo catalog with the dental clinic and the outpatients' department renamed."""
    return path.read_text(encoding="utf-8").replace(
        'en = "Dental clinic"', 'en = "Dental surgery"').replace(
        'en = "Qingxi Central Health Centre, Outpatients"', 'en = "Qingxi Health Centre, Clinics"')


async def test_a_catalog_load_reaches_the_next_menu_message(assistant: Assistant, database_url: str,
                                                            demo_catalog_path: Path) -> None:
    """The booking menus are kept per process, stamped by the catalog load: a load made by
    another process (here through a Database of its own, as `yuyue catalog load` opens one,
    with nothing in this process told) shows in this process's very next menu message."""
    from storage import services
    from tests.dialog import Dialog

    dialog = Dialog(assistant, locale="en-US")
    await dialog.command("start")
    await dialog.say("1")                                   # Book: the departments
    await dialog.press("Qingxi Central Health Centre")
    assert "Dental clinic" in dialog.labels
    await dialog.press("Back")                               # the departments, from the copy
    kept = services._menus
    assert kept is not None

    changed = _renamed(demo_catalog_path)
    other = Database(database_url)
    try:
        async with other.session() as session:
            await load_catalog(session, parse_catalog(changed), NOW)
    finally:
        await other.dispose()
    assert services._menus is kept                           # this process was not told

    await dialog.press("Main menu")
    await dialog.say("1")
    assert "Qingxi Health Centre, Clinics" in dialog.labels
    await dialog.press("Qingxi Health Centre, Clinics")
    assert "Dental surgery" in dialog.labels and "Dental clinic" not in dialog.labels
