"""`yuyue run` as a real process with SMS set up: a walk-in booking made at the window is
confirmed by text through the real Tencent SDK and the fake SMS API on 127.0.0.1, and the
delivery receipt posted to the running server updates the notification."""

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
[sms.templates]
booking_confirmed = {{ id = "2000001", params = ["service", "when", "code"] }}
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
