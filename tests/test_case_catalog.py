"""What the catalog and the settings say about cases (办件), and how `yuyue catalog check`
reports a bad case table."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot import cli
from storage.catalog import CaseDef, CatalogError, ServiceDef, Text, parse_catalog, read_catalog
from storage.settings import SettingsError, load_settings

SERVICE = """
[departments.hall]
name = "服务大厅"
address = "人民路1号"

[services.permit]
department = "hall"
name = "许可"
place = "3号窗口"
hours = { default = ["09:00-12:00"] }
processing = 5
[[services.permit.materials]]
name = "申请表"
"""


def test_the_demo_services_say_what_happens_after_the_visit(demo_catalog_path: Path) -> None:
    services = {s.code: s for s in read_catalog(demo_catalog_path).services}
    id_card = services["id_card"]
    assert (id_card.case.kind, id_card.processing_days, id_card.case.mail) == ("promised", 20, True)
    assert id_card.case.pickup_place == Text("一楼 证件领取窗口 1号", "Ground floor, collection window 1")
    assert id_card.case.bring is not None and "受理回执" in id_card.case.bring.zh
    assert services["hukou_transfer"].case.pickup_place is None       # its own place
    assert services["social_card"].case == CaseDef(kind="immediate")
    assert {code for code, s in services.items() if s.case.kind == "promised"} == {
        "id_card", "hukou_transfer", "medical_reimburse", "health_check"}


def test_without_a_case_table_the_kind_follows_the_processing_time() -> None:
    [promised] = parse_catalog(SERVICE).services
    [immediate] = parse_catalog(SERVICE.replace("processing = 5", 'processing = "immediate"')).services
    assert promised.case == CaseDef(kind="promised") and immediate.case == CaseDef(kind="immediate")


def test_definitions_stored_before_cases_existed_still_load() -> None:
    [service] = parse_catalog(SERVICE).services
    stored = service.to_json()
    del stored["case"]
    assert ServiceDef.from_json(stored) == service


@pytest.mark.parametrize(("table", "problem"), [
    ('kind = "someday"', 'services.permit.case.kind: must be one of immediate, promised, joint, '
                         "reported, got 'someday'"),
    ('kind = "immediate"', 'services.permit.case.kind: is "immediate" but processing is 5 working days'),
    ("mail = 1", "services.permit.case.mail: must be true or false, got 1"),
    ("pickup_place = 3", "services.permit.case.pickup_place: must be a string or"),
    ('pickup_hours = { zh = "" }', "services.permit.case.pickup_hours.zh: must be a non-empty string"),
    ("posted = true", "services.permit.case.posted: unknown key"),
])
def test_a_bad_case_table_names_its_key(table: str, problem: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(SERVICE.replace("[[services.permit.materials]]",
                                      f"[services.permit.case]\n{table}\n[[services.permit.materials]]"))
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_a_promised_service_needs_its_committed_days() -> None:
    text = SERVICE.replace("processing = 5", "case = { kind = \"promised\" }")
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text)
    assert caught.value.problems == [
        'services.permit.case.kind: "promised" needs processing = the committed working days']


def test_catalog_check_reports_the_case_table(tmp_path: Path, settings_file: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(SERVICE.replace("processing = 5", 'processing = 5\ncase = { kind = "joint", mail = "yes" }'),
                   encoding="utf-8")
    assert cli.main(["--settings", str(settings_file), "catalog", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "services.permit.case.mail: must be true or false, got 'yes'" in err
    assert "Traceback" not in err


def test_case_settings_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('[cases]\ncorrection_working_days = 0\n', encoding="utf-8")
    with pytest.raises(SettingsError, match=r"cases\.correction_working_days: expected a number of "
                                            r"at least 1, got 0"):
        load_settings(path, environ={})
    path.write_text('[cases]\noverdue_time = "5pm"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match=r'cases\.overdue_time: expected a time of day like "08:00"'):
        load_settings(path, environ={})
    path.write_text('[cases]\nnotice_time = "08:30"\n', encoding="utf-8")
    settings = load_settings(path, environ={"YUYUE_CASES__UNCOLLECTED_WORKING_DAYS": "3"})
    assert (settings.cases.notice_time.isoformat(), settings.cases.uncollected_working_days) == (
        "08:30:00", 3)
