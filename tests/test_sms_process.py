"""`yuyue run` as a real process with SMS set up: a walk-in booking made at the window is
confirmed by text through the real Tencent SDK and the fake SMS API on 127.0.0.1, and the
delivery receipt posted to the running server updates the notification; and every kind of
notice the policy sends by SMS goes: a closure (always, besides the chat), a case notice for
someone without a chat account, a case notice the WeChat window no longer lets through (the
fallback), and a verification code."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import signal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from storage import booking
from storage.db import Database
from storage.models import Channel, Outbox, OutboxStatus, Service
from storage.settings import SmsSettings
from tests.fakes.tencent_sms import APP_ID, SECRET_ID, SECRET_KEY, SIGN, FakeTencentSms
from tests.fakes.wechat_api import FakeWechatApi
from tests.helpers import make_centre, person, slots_of, valid_id, wechat_toml
from tests.test_processes import common_settings, free_port, start
from tests.test_wechat_process import ProcessLog, load_demo_catalog

pytestmark = pytest.mark.slow
MOBILE = "13812345678"


def settings_file(folder: Path, database_url: str, wechat: FakeWechatApi, sms: FakeTencentSms,
                  port: int) -> Path:
    path = folder / "sms.toml"
    path.write_text(common_settings(folder, database_url, log_level="INFO") + "\n"
                    + wechat_toml(wechat.url) + f"""
[web]
port = {port}
[sms]
provider = "tencent"
secret_id = "{SECRET_ID}"
secret_key = "{SECRET_KEY}"
sdk_app_id = "{APP_ID}"
sign_name = "{SIGN}"
endpoint = "{sms.endpoint}"
protocol = "http"
callback_token = "receipts-token"
quiet_from = "00:00"
quiet_until = "00:00"
per_minute = 10
[sms.templates]
booking_confirmed = {{ id = "2000001", params = ["service", "when", "code"] }}
closure_cancelled = {{ id = "2000003", params = ["service", "when", "reason"] }}
sms_code = {{ id = "2000005", params = ["code", "minutes"] }}
case_accepted = {{ id = "2000010", params = ["number", "service", "when"] }}
""", encoding="utf-8")
    return path


async def walk_in(database_url: str) -> str:
    """Staff book a seat for a walk-in without a chat account; the booking code."""
    database = Database(database_url)
    # the window's process has the same [sms] settings: the booking queues its text
    centre = dataclasses.replace(make_centre(), sms=SmsSettings(provider="tencent"))
    now = dt.datetime.now(dt.UTC)
    try:
        async with database.session() as session:
            service = await session.scalar(select(Service).where(Service.code == "id_card"))
            assert service is not None
            slot = next(s for s in await slots_of(session, centre, service, now)
                        if s.starts_at > now + dt.timedelta(days=1))
            citizen = await person(session, centre, now, mobile=MOBILE, id_number=valid_id())
            appointment = await booking.book(session, centre, now, person_id=citizen.id,
                                             slot_id=slot.id, identity_id=None,
                                             channel=Channel.STAFF, made_by="telegram:staff",
                                             offline=True)
            return appointment.code
    finally:
        await database.dispose()


async def confirmation_status(database_url: str) -> OutboxStatus:
    database = Database(database_url)
    try:
        async with database.read() as session:
            status = await session.scalar(select(Outbox.status).where(
                Outbox.kind == "booking_confirmed"))
            assert status is not None
            return OutboxStatus(status)
    finally:
        await database.dispose()


async def test_yuyue_run_texts_a_walk_in_and_takes_the_receipt(database_url: str,
                                                                tmp_path: Path) -> None:
    await load_demo_catalog(database_url)
    port = free_port()
    async with FakeWechatApi() as wechat, FakeTencentSms() as sms:
        process = await start(settings_file(tmp_path, database_url, wechat, sms, port))
        output = ProcessLog(process)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            try:
                await output.until("running: channels wechat, sms, web server listening", 60)
                code = await walk_in(database_url)
                await sms.until(lambda: bool(sms.texts), 60)
                [text] = sms.texts
                # The receipt comes after the process recorded the send (as with the operator,
                # seconds later): a guard of 60 s, not a pause; each look is a database read.
                async with asyncio.timeout(60):
                    status = OutboxStatus.PENDING
                    while status != OutboxStatus.SENT:
                        await asyncio.sleep(0.05)
                        status = await confirmation_status(database_url)
                assert text.mobile == "+86" + MOBILE and text.params[2] == code
                receipt = [{"user_receive_time": "2026-12-03 09:00:10", "nationcode": "86",
                            "mobile": MOBILE, "report_status": "FAIL", "errmsg": "MK:0005",
                            "description": "用户手机关机", "sid": text.serial_no}]
                answer = await http.post("/sms/tencent?token=receipts-token", json=receipt)
                assert answer.json() == {"result": 0, "errmsg": "OK"}
                assert await confirmation_status(database_url) == OutboxStatus.UNDELIVERABLE
            finally:
                process.send_signal(signal.SIGTERM)
                await process.wait()
    log = await output.text()
    assert process.returncode == 0, log[-2000:]
    assert "Traceback" not in log and MOBILE not in log


OPENID_NOW, OPENID_OLD = "oSmsProcess_wroteJustNow_00000", "oSmsProcess_wroteDaysAgo_00000"
MOBILES = {"closure": "13900000001", "walk_in_case": "13900000002", "fallback": "13900000003",
           "code": "13900000004"}


async def cause_every_kind(database_url: str) -> dict[str, str]:
    """What the window and the citizens do while ``yuyue run`` serves: a closure of a WeChat
    follower's booking, a case for someone with no chat account, a case for a follower who
    last wrote three days ago, an SMS code asked for. Returns the case numbers."""
    from storage import cases, closures, linking
    from storage.identity import identity_for
    from storage.models import CaseKind

    database = Database(database_url)
    centre = dataclasses.replace(make_centre(), sms=SmsSettings(provider="tencent"))
    now = dt.datetime.now(dt.UTC)
    numbers: dict[str, str] = {}
    try:
        async with database.session() as session:
            service = await session.scalar(select(Service).where(Service.code == "id_card"))
            assert service is not None
            slot = next(s for s in await slots_of(session, centre, service, now)
                        if s.starts_at > now + dt.timedelta(days=1))
            follower = await person(session, centre, now, mobile=MOBILES["closure"],
                                    id_number=valid_id("11010519500000001"))
            chat = await identity_for(session, "wechat", OPENID_NOW, "zh-CN", now)
            chat.person_id, chat.last_inbound_at = follower.id, now
            booked = await booking.book(session, centre, now, person_id=follower.id,
                                        slot_id=slot.id, identity_id=chat.id,
                                        channel=Channel.WECHAT, made_by=f"wechat:{OPENID_NOW}",
                                        confirm=False)
            await closures.apply_closure(session, centre, now, starts_at=booked.starts_at,
                                         ends_at=booked.ends_at, reason="设备检修",
                                         actor="telegram:staff", service_id=service.id)
            walk_in_person = await person(session, centre, now, mobile=MOBILES["walk_in_case"],
                                          id_number=valid_id("11010519500000002"))
            case = await cases.open_case(session, centre, now, actor="telegram:staff",
                                         kind=CaseKind.PROMISED, service_id=service.id,
                                         person_id=walk_in_person.id)
            numbers["walk_in_case"] = case.number
            away = await person(session, centre, now, mobile=MOBILES["fallback"],
                                id_number=valid_id("11010519500000003"))
            old = await identity_for(session, "wechat", OPENID_OLD, "zh-CN", now)
            old.person_id, old.last_inbound_at = away.id, now - dt.timedelta(days=3)
            case = await cases.open_case(session, centre, now, actor="telegram:staff",
                                         kind=CaseKind.PROMISED, service_id=service.id,
                                         person_id=away.id, identity_id=old.id)
            numbers["fallback"] = case.number
            asking = await person(session, centre, now, mobile=MOBILES["code"],
                                  id_number=valid_id("11010519500000004"))
            account = await identity_for(session, "telegram", "777", "zh-CN", now)
            await linking.SmsCode(centre).challenge(session, now, account_id=account.id,
                                                    person_id=asking.id)
    finally:
        await database.dispose()
    return numbers


async def test_yuyue_run_texts_every_kind_the_policy_sends(database_url: str,
                                                           tmp_path: Path) -> None:
    await load_demo_catalog(database_url)
    port = free_port()
    async with FakeWechatApi() as wechat, FakeTencentSms() as sms:
        process = await start(settings_file(tmp_path, database_url, wechat, sms, port))
        output = ProcessLog(process)
        try:
            await output.until("running: channels wechat, sms, web server listening", 60)
            numbers = await cause_every_kind(database_url)
            # Four texts: the fallback one follows the chat's refusal in a later round.
            await sms.until(lambda: len(sms.texts) >= 4, 60)
        finally:
            process.send_signal(signal.SIGTERM)
            await process.wait()
    by_number = {t.mobile.removeprefix("+86"): t for t in sms.texts}
    closure = by_number[MOBILES["closure"]]
    assert closure.template_id == "2000003" and closure.params[2] == "设备检修"
    assert any("设备检修" in text for text in wechat.texts)          # always: the chat too
    walk_in_case = by_number[MOBILES["walk_in_case"]]
    assert walk_in_case.template_id == "2000010"
    assert walk_in_case.params[0] == numbers["walk_in_case"]
    fallback = by_number[MOBILES["fallback"]]
    assert fallback.template_id == "2000010" and fallback.params[0] == numbers["fallback"]
    code = by_number[MOBILES["code"]]
    assert code.template_id == "2000005" and len(code.params[0]) == 6
    assert len(sms.texts) == 4
    log = await output.text()
    assert process.returncode == 0, log[-2000:]
    assert "Traceback" not in log and not any(mobile in log for mobile in MOBILES.values())
    assert code.params[0] not in log
