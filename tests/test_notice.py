"""The one-time notice (一次性告知), complete and in both languages, before the date is picked
and in the guide; the catalog check for missing translations; the notice version kept with
each booking."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select

from handlers.engine import Assistant
from storage.catalog import parse_catalog, read_catalog
from storage.db import Database
from storage.models import Appointment
from tests.dialog import Dialog, verify_dialog
from tests.helpers import valid_id

CATALOG = read_catalog(Path(__file__).resolve().parent.parent / "catalog" / "demo.toml")
CHINESE = re.compile(r"[\u3400-\u9fff]")
HEADINGS = ("需带材料" , "办理条件", "办理程序", "办理地点", "办公时间", "收费标准", "办理时限",
            "办理依据", "咨询电话")


async def _notice(dialog: Dialog, search: str, label: str) -> str:
    await dialog.say(search)
    await dialog.press(label)
    return dialog.text


async def test_the_notice_before_the_date_tells_everything(assistant: Assistant) -> None:
    dialog = Dialog(assistant)
    text = await _notice(dialog, "身份证", "居民身份证")
    for heading in HEADINGS[1:]:
        assert heading in text, (heading, text)
    assert "《中华人民共和国居民身份证法》第十一条" in text          # 办事依据, before booking too
    assert "咨询电话：0571-8800 1203" in text and "第1步 网上预约" in text
    assert "请选择" not in text and "材料已备齐，继续预约" in dialog.labels   # before the date


async def test_the_guide_tells_the_same_and_the_departments_phone(assistant: Assistant) -> None:
    """Regression: the guide printed "咨询电话：-" when the department had a number."""
    dialog = Dialog(assistant)
    await verify_dialog(dialog, [("/guide", "请选择要查看的事项"), ("[户口迁移]", "户口迁移")])
    text = dialog.text
    assert "咨询电话：-" not in text and "咨询电话：0571-8800 1234" in text
    for heading in HEADINGS:
        if heading != "办理条件":           # the service sets no conditions
            assert heading in text, (heading, text)


@pytest.mark.parametrize("code", [s.code for s in CATALOG.services])
async def test_the_english_notice_has_no_untranslated_text(assistant: Assistant, code: str) -> None:
    """Regression: the English notice said "Fees: 免费"."""
    service = next(s for s in CATALOG.services if s.code == code)
    dialog = Dialog(assistant, locale="en")
    await dialog.say(service.name.en)
    await dialog.press(service.name.en[:12])
    assert "Everything you need to bring" in dialog.text
    assert not CHINESE.search(dialog.text), dialog.text
    assert "Fees: 免费" not in dialog.text and "Enquiries: 0571" in dialog.text


def test_catalog_check_warns_of_a_missing_english_text() -> None:
    catalog = parse_catalog('''
[departments.dd]
name = "镇中心"
address = { zh = "人民路1号", en = "1 Renmin Road" }

[services.ss]
department = "dd"
name = { zh = "老年证", en = "Senior card" }
place = { zh = "一楼", en = "Ground floor" }
fees = "免费"
procedure = [{ zh = "预约" }, { zh = "办理", en = "Apply" }]
hours = { default = ["09:00-12:00"] }
[[services.ss.materials]]
name = { zh = "身份证", en = "ID card" }
''')
    warned = "\n".join(catalog.warnings)
    assert "departments.dd.name: no English text" in warned
    assert "services.ss.fees: no English text" in warned
    assert "services.ss.procedure[0].en: missing" in warned
    assert "procedure[1]" not in warned and "materials" not in warned
    assert not read_catalog(Path(__file__).resolve().parent.parent / "catalog" / "demo.toml").warnings


async def test_the_notice_version_shown_is_kept_with_the_booking(assistant: Assistant,
                                                                 database: Database) -> None:
    dialog = Dialog(assistant)
    await verify_dialog(dialog, [
        ("体检", "健康体检"), ("[健康体检]", "一次性告知"), ("[材料已备齐]", "请选择"),
        ("[11月24日]", "07:30"), ("[07:30-08:00]", "已为您保留"), ("[同意并继续]", "真实姓名"),
        ("李四", "手机号"), ("13900000000", "身份证号"), (valid_id("11010519900101001"), "请确认"),
        ("[确认预约]", "预约成功")])
    shown = next(s for s in CATALOG.services if s.code == "health_check").notice_version
    async with database.read() as session:
        appointment = await session.scalar(select(Appointment))
        assert appointment is not None and appointment.notice_version == shown
