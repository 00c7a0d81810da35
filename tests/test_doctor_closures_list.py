"""/closures and /reopen with a doctor's 停诊: listed under the doctor's name (not as the whole
centre) with the bookings it touched, and undone while nothing was moved."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from handlers.engine import Assistant
from storage.db import Database
from storage.models import AuditLog, Resource
from tests.staff_support import Staff

# The staff settings and dispatcher of the doctor's closure chat tests, fixtures included.
from tests.test_resource_closure_chat import book_chen, dispatcher, settings  # noqa: F401


@pytest.mark.usefixtures("dispatcher")
async def test_a_doctors_closure_is_listed_under_the_doctor_and_reopened(
        assistant: Assistant, wang: Staff, database: Database) -> None:
    await book_chen(assistant, ["71"])
    await wang.command("closure", "陈建国 11-25 am 外出会诊")
    await wang.press_label("取消并致歉")
    assert "处理并通知了 1 个预约" in await wang.press_label("确认停诊")
    listed = await wang.command("closures")
    assert "【陈建国 主任医师】11月25日 周三 00:00 至 11月25日 周三 12:00" in listed
    assert "全中心" not in listed and "涉及 1 个预约" in listed
    number = listed.split("#", 1)[1].split("【", 1)[0]
    done = await wang.command("reopen", number)
    assert f"已撤销停办 #{number}【陈建国 主任医师】" in done
    async with database.read() as session:
        chen = await session.scalar(select(Resource.id).where(Resource.code == "dr_chen_jianguo"))
        row = await session.scalar(select(AuditLog).where(AuditLog.action == "reopen"))
    assert row is not None and (row.detail or {}).get("resource") == chen
