"""A supervisor working on complaints in the WeCom app: a WeChat citizen's complaint arrives as
a card to the supervisor alone (not to the staff on duty, not to the app group chat); the
supervisor claims it with the card's button, classifies and answers it with commands, and the
citizen gets the outcome with the 回访 question on WeChat."""

from __future__ import annotations

import itertools

import httpx
import pytest

from storage.clock import ManualClock
from storage.settings import AccessSettings, Settings, WechatSettings, WecomSettings
from tests.fakes.wechat_api import APP_ID, APP_SECRET, SAMPLE_AES_KEY, SAMPLE_TOKEN, FakeWechatApi
from tests.fakes.wechat_api import sample as wechat_sample
from tests.fakes.wecom_api import AES_KEY, AGENT_ID, CORP_ID, SECRET, TOKEN, FakeWecomApi
from tests.test_wecom import LI, OPENID, ZHANG, Citizen, Member, Served
from tests.test_wecom import li as li
from tests.test_wecom import push as push
from tests.test_wecom import served as served
from tests.test_wecom import web as web
from tests.test_wecom import wecom_api as wecom_api
from tests.test_wecom import zhang as zhang

_ids = itertools.count(7400000000000001)


@pytest.fixture
def settings(wecom_api: FakeWecomApi, wechat_api: FakeWechatApi) -> Settings:
    return Settings(
        wechat=WechatSettings(app_id=APP_ID, app_secret=APP_SECRET, token=SAMPLE_TOKEN,
                              encoding_aes_key=SAMPLE_AES_KEY, api_base_url=wechat_api.url),
        wecom=WecomSettings(corp_id=CORP_ID, agent_id=AGENT_ID, secret=SECRET, token=TOKEN,
                            encoding_aes_key=AES_KEY, api_base=wecom_api.url,
                            app_chat_id="wrkAppChat"),
        access=AccessSettings(staff=(f"wecom:{ZHANG}",), supervisors=(f"wecom:{LI}",)))


async def test_a_supervisor_handles_a_complaint_in_the_wecom_app(
        web: httpx.AsyncClient, served: Served, zhang: Member, li: Member,
        wecom_api: FakeWecomApi, wechat_api: FakeWechatApi, clock: ManualClock) -> None:
    citizen = Citizen(web, clock)
    await citizen.say("/complaint 投诉")
    assert "具体情况" in await citizen.say("2")                  # 办事效率
    assert "照片" in await citizen.say("窗口只开了一个，等了一个半小时")
    image = wechat_sample("image", FromUserName=OPENID, CreateTime=int(clock.now().timestamp()),
                          MsgId=next(_ids))
    answer = citizen.push.read(await citizen.push.post(image)).get("Content", "")
    assert "投诉已登记，编号 1" in answer
    await served.dispatcher.drain()
    [card] = wecom_api.cards_of(LI)
    assert "投诉 #1" in str(card.body) and "办事效率" in str(card.body)
    assert not wecom_api.cards_of(ZHANG) and not wecom_api.texts(ZHANG)
    assert not [b for b in wecom_api.sent("appchat/send") if "投诉" in str(b)]
    assert "负责" in await li.click(card, "认领")
    assert "部分有效" in await li.say("/classify 1 部分有效 午间只留一个窗口")
    assert "已把处理结果告知市民" in await li.say("/answer 1 已调整午间排班，保证两个窗口")
    assert "负责人" in await zhang.say("/complaints")                # staff, not a supervisor
    await served.dispatcher.drain()
    told = [t for t in wechat_api.texts if "午间排班" in t]
    assert told and "是否满意" in told[0]
