"""Staff and managers with the accounts model: /find shows who booked (the account's channel,
masked, and for whom), /person corrects a person's name or mobile with a reason (audited), and
/stats shows people per account, bookings for others (代约) and refused ID/name mismatches."""

from __future__ import annotations

import dataclasses
import re

import pytest
from sqlalchemy import select

from handlers.engine import Assistant
from storage.db import Database
from storage.models import AuditLog, Person
from storage.settings import Settings
from tests.dialog import Dialog
from tests.staff_support import Staff, staff_settings
from tests.test_flows import book_id_card
from tests.test_people_chat import book_for_mother
from tests.test_privacy import stranger_books_with

MANAGER = 5900000001


@pytest.fixture
def settings() -> Settings:
    base = staff_settings()
    return dataclasses.replace(base, access=dataclasses.replace(
        base.access, managers=(f"telegram:{MANAGER}",)))


async def test_find_shows_the_booking_account_masked_and_for_whom(
        assistant: Assistant, wang: Staff) -> None:
    holder = Dialog(assistant, user="o-wechat-openid-4321", channel="wechat")
    own = await book_id_card(holder)
    mothers = await book_for_mother(holder)
    found = await wang.command("find", mothers)
    assert "预约账号：微信 …4321，代约（父母）" in found and "李*华" in found
    assert "o-wechat-openid-4321" not in found and "李秀华" not in found
    found = await wang.command("find", own)
    assert "预约账号：微信 …4321" in found and "代约" not in found


async def test_person_correction_needs_a_reason_and_is_audited(
        assistant: Assistant, wang: Staff, database: Database) -> None:
    holder = Dialog(assistant, user="holder")
    code = await book_id_card(holder)
    assert "用法：/person" in await wang.command("person", f"{code} 姓名 张叁")
    assert "没有预约码" in await wang.command("person", "ZZZZZZ 姓名 张叁 证件核对")
    assert "2-20个字" in await wang.command("person", f"{code} 姓名 张 证件核对")
    assert "没有需要更正" in await wang.command("person", f"{code} 姓名 张三 证件核对")
    done = await wang.command("person", f"{code} 手机 13911112222 本人来窗口更换手机号")
    assert "已更正" in done and "139****2222" in done and "13911112222" not in done
    async with database.read() as session:
        person = await session.scalar(select(Person))
        assert person is not None and person.mobile == "13911112222" and person.name == "张三"
        entry = await session.scalar(select(AuditLog).where(AuditLog.action == "correct_person"))
        assert entry is not None and entry.detail["reason"] == "本人来窗口更换手机号"
        assert "13911112222" not in str(entry.detail)
    citizen = Dialog(assistant, user="5300000009", channel="telegram")
    await citizen.command("person", f"{code} 姓名 李四 我想改")
    assert "已更正" not in citizen.text                      # staff only


async def test_stats_show_people_per_account_bookings_for_others_and_mismatches(
        assistant: Assistant) -> None:
    holder = Dialog(assistant, user="holder")
    await book_id_card(holder)
    await book_for_mother(holder)
    wrong = Dialog(assistant, user="wrong", channel="telegram")
    await stranger_books_with(wrong, "李四")               # the holder's ID under another name
    assert "姓名与证件号码不一致" in wrong.text
    manager = Dialog(assistant, user=str(MANAGER), channel="telegram")
    await manager.command("stats", "week")
    assert "每个账号的办事人数：" in manager.text
    assert "0人 2个账号" in manager.text and "2人 1个账号" in manager.text
    assert re.search(r"代约（为他人预约）：1 / 2 个线上预约", manager.text)
    assert "姓名与证件号码不一致被拒：1 次" in manager.text
