"""`yuyue run` as a real process with WeChat for citizens and the WeCom app for staff only: a
citizen's 人工服务 reaches a staff member's WeCom app as a card, the staff member claims it
there and answers in plain text, and the citizen receives the answer on WeChat."""

from __future__ import annotations

import datetime as dt
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.wechat_api import SAMPLE_AES_KEY, SAMPLE_TOKEN, FakeWechatApi, WechatPush
from tests.fakes.wechat_api import sample as wechat_sample
from tests.fakes.wecom_api import AES_KEY, AGENT_ID, CORP_ID, SECRET, TOKEN, FakeWecomApi, WecomPush, sample
from tests.helpers import wechat_toml
from tests.test_processes import common_settings, free_port, start
from tests.test_wechat_process import ProcessLog, load_demo_catalog

pytestmark = pytest.mark.slow
OPENID = "oProcess_wecom_AbCdEfGhIjKlMn"
STAFF = "zhangsan"


@pytest.fixture
async def wecom_api() -> AsyncIterator[FakeWecomApi]:
    async with FakeWecomApi() as server:
        server.directory = {STAFF: "张三"}
        yield server


def settings_file(folder: Path, database_url: str, wechat: FakeWechatApi, wecom: FakeWecomApi,
                  port: int) -> Path:
    path = folder / "wecom.toml"
    path.write_text(common_settings(folder, database_url, log_level="INFO") + "\n"
                    + wechat_toml(wechat.url) + f"""
[wecom]
corp_id = "{CORP_ID}"
agent_id = {AGENT_ID}
secret = "{SECRET}"
token = "{TOKEN}"
encoding_aes_key = "{AES_KEY}"
api_base = "{wecom.url}"
[access]
staff = ["wecom:{STAFF}"]
[web]
port = {port}
""", encoding="utf-8")
    return path


def stamp() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp())


async def test_yuyue_run_hands_a_wechat_citizen_to_staff_in_the_wecom_app(
        wechat_api: FakeWechatApi, wecom_api: FakeWecomApi, database_url: str,
        tmp_path: Path) -> None:
    await load_demo_catalog(database_url)
    port = free_port()
    process = await start(settings_file(tmp_path, database_url, wechat_api, wecom_api, port))
    output = ProcessLog(process)
    now = lambda: dt.datetime.now(dt.UTC)  # noqa: E731
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        try:
            await output.until("running: channels wechat, wecom, web server listening", 60)
            citizen = WechatPush(http, path="/wechat", token=SAMPLE_TOKEN, aes_key=SAMPLE_AES_KEY,
                                 now=now)
            staff = WecomPush(http, path="/wecom", now=now)
            said = citizen.read(await citizen.post(wechat_sample(
                "text", FromUserName=OPENID, CreateTime=stamp(), Content="人工服务",
                MsgId=7400000000000001)))
            assert "编号 1" in said.get("Content", "")
            await wecom_api.until(lambda: bool(wecom_api.cards), 60)
            [card] = wecom_api.cards.values()
            assert card.users == [STAFF] and "人工服务 #1" in card.title

            clicked = await staff.post(sample(
                "template_card_event", FromUserName=STAFF, CreateTime=stamp(),
                EventKey=card.key("认领"), TaskId=card.task_id,
                ResponseCode=wecom_api.click_code(card.task_id)))
            assert clicked.status_code == 200
            await wecom_api.until(lambda: wecom_api.shown(card, STAFF) == "已由 张三 认领", 60)
            assert any("已由 张三 认领（首问负责）" in t for t in wecom_api.texts(STAFF))

            answered = await staff.post(sample("text", FromUserName=STAFF, CreateTime=stamp(),
                                               Content="请带身份证原件来窗口。",
                                               MsgId=7400000000000002))
            assert answered.status_code == 200
            await wechat_api.until(lambda: any("请带身份证原件" in t for t in wechat_api.texts), 60)
            assert any("正在发送给市民（#1）" in t for t in wecom_api.texts(STAFF))
        finally:
            process.send_signal(signal.SIGTERM)
            await process.wait()
    stderr = await output.text()
    assert process.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr and STAFF not in stderr and OPENID not in stderr
