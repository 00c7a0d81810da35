"""A whole case over WeChat, end to end over real HTTP: the citizen books in the Official
Account chat (every request signed and encrypted as WeChat sends it), staff in the WeCom app
check the visit in and accept it as a 承诺件, ask once for missing materials (补正), take them,
mark the result ready and handed over; the outbox dispatcher sends each notice through the fake
WeChat API (customer-service messages inside the 48-hour window, the approved template outside
it); the citizen follows the case with 办件进度 and answers the 回访 by tapping its link. The
other five kinds run the same way from the window to the citizen's chat."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import unquote

import httpx
import pytest
from sqlalchemy import select

from bot.dispatch import Dispatcher
from bot.reports import FileReports
from bot.scheduler import Jobs
from bot.web import build_web_app
from bot.wechat import WechatChannel, build_wechat
from bot.wecom import WecomChannel, build_wecom
from bot.wiring import App
from handlers.engine import Assistant
from storage.case_rules import format_case_number
from storage.clock import ManualClock
from storage.db import Database
from storage.models import Appointment, AuditLog, Case, CaseEvent, CaseState
from storage.settings import AccessSettings, Settings, WechatSettings, WecomSettings
from tests.fakes.wechat_api import APP_ID, APP_SECRET, SAMPLE_AES_KEY, SAMPLE_TOKEN, FakeWechatApi, WechatPush
from tests.fakes.wecom_api import AES_KEY, AGENT_ID, CORP_ID, SECRET, TOKEN, FakeWecomApi, WecomPush, sample
from tests.helpers import local
from tests.test_wechat_webhook import OPENID, Citizen, Env, book_by_number

ZHANG = "zhangsan"
_ids = itertools.count(7400000000000001)
TEMPLATE_FIELDS = ("thing1=service", "character_string2=code", "thing3=summary", "date4=when")


@pytest.fixture
async def wecom_api() -> AsyncIterator[FakeWecomApi]:
    async with FakeWecomApi() as api:
        api.directory = {ZHANG: "张三"}
        yield api


@pytest.fixture
def settings(wecom_api: FakeWecomApi, wechat_api: FakeWechatApi) -> Settings:
    return Settings(
        wechat=WechatSettings(app_id=APP_ID, app_secret=APP_SECRET, token=SAMPLE_TOKEN,
                              encoding_aes_key=SAMPLE_AES_KEY, api_base_url=wechat_api.url,
                              notice_template_id="TPL-CASE",
                              notice_template_fields=TEMPLATE_FIELDS),
        wecom=WecomSettings(corp_id=CORP_ID, agent_id=AGENT_ID, secret=SECRET, token=TOKEN,
                            encoding_aes_key=AES_KEY, api_base=wecom_api.url),
        access=AccessSettings(staff=(f"wecom:{ZHANG}",)))


@dataclass
class World:
    app: App
    citizen: Citizen
    staff: Staff
    dispatcher: Dispatcher
    wechat_api: FakeWechatApi


class Staff:
    """A staff member writing to the WeCom app (callbacks encrypted as WeCom sends them)."""

    def __init__(self, push: WecomPush, api: FakeWecomApi, channel: WecomChannel,
                 clock: ManualClock) -> None:
        self.push, self.api, self.channel, self.clock = push, api, channel, clock

    async def say(self, text: str) -> str:
        before = len(self.api.texts(ZHANG))
        response = await self.push.post(sample("text", FromUserName=ZHANG,
                                               CreateTime=int(self.clock.now().timestamp()),
                                               Content=text, MsgId=next(_ids)))
        assert response.status_code == 200
        await self.channel.webhook.drain()
        return "\n".join(self.api.texts(ZHANG)[before:])


def number_of(menu: str, label: str) -> str:
    """The number typed for the choice ``label`` of a menu rendered as a numbered list."""
    found = re.search(rf"^(\d+)\. [^\n]*{re.escape(label)}", menu, re.MULTILINE)
    assert found, (label, menu)
    return found.group(1)


@pytest.fixture
async def world(app: App, wechat_api: FakeWechatApi, wecom_api: FakeWecomApi,
                clock: ManualClock, database: Database) -> AsyncIterator[World]:
    assistant = Assistant(database=database, centre=app.centre, clock=clock,
                          settings=app.settings, reports=FileReports())
    wecom: WecomChannel = build_wecom(app, assistant)
    wechat: WechatChannel = build_wechat(app, assistant)
    dispatcher = Dispatcher(database=database, centre=app.centre, settings=app.settings,
                            clock=clock, senders={"wechat": wechat.sender, "wecom": wecom.sender},
                            staff_senders=[wecom.sender])
    web = build_web_app(wecom.webhook_routes() + wechat.webhook_routes())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=web),
                                 base_url="http://yuyue.test") as http:
        push = WechatPush(http, path="/wechat", token=SAMPLE_TOKEN, aes_key=SAMPLE_AES_KEY,
                          now=clock.now)
        env = Env(wechat_api, wechat, push, database, clock, http, app)
        staff = Staff(WecomPush(http, path="/wecom", now=clock.now), wecom_api, wecom, clock)
        try:
            yield World(app, Citizen(env), staff, dispatcher, wechat_api)
        finally:
            await wecom.close()
            await wechat.close()


_GLOBAL_LINK = re.compile(r'<a href="weixin://bizmsgmenu\?msgmenucontent=([^&"]*)&msgmenuid=(g:[^"]+)">'
                          r"([^<]*)</a>")


def global_link(text: str, label: str) -> tuple[str, str]:
    """(content, msgmenuid) WeChat sends back when a notice's link ``label`` is tapped."""
    for content, menu_id, shown in _GLOBAL_LINK.findall(text):
        if shown == label:
            return unquote(content), menu_id
    raise AssertionError(f"no link {label!r} in:\n{text}")


def told(api: FakeWechatApi, since: int) -> str:
    return "\n".join(api.texts[since:])


async def test_a_promised_case_from_the_wechat_booking_to_the_followup(
        world: World, clock: ManualClock, database: Database) -> None:
    citizen, staff, api, dispatcher = world.citizen, world.staff, world.wechat_api, world.dispatcher
    assert "预约成功" in await book_by_number(citizen)
    async with database.read() as session:
        appointment = await session.scalar(select(Appointment))
    assert appointment is not None
    await dispatcher.drain()

    # At the window on the day: checked in, served, accepted as a 承诺件.
    clock.set(local(2026, 11, 24, 9, 5))
    assert "已签到" in await staff.say(f"/checkin {appointment.code}")
    kinds = await staff.say(f"/done {appointment.code}")
    assert "即办件" in kinds and "承诺件" in kinds
    opened = await staff.say(number_of(kinds, "承诺件"))
    async with database.read() as session:
        case = await session.scalar(select(Case).where(Case.appointment_id == appointment.id))
    assert case is not None and case.state == CaseState.ACCEPTED
    number = format_case_number(case.number)
    assert number in opened
    seen = len(api.texts)
    await dispatcher.drain()
    receipt = told(api, seen)
    assert "受理回执" in receipt and number in receipt              # inside the 48 hours: a chat text

    # 补正: the missing material picked from the service's list, told once and in writing.
    missing = await staff.say(f"/correct {number}")
    picked = await staff.say(number_of(missing, "居民户口簿"))
    assert "☑ 居民户口簿" in picked
    sent = await staff.say(number_of(picked, "完成"))
    assert "补正" in sent and number in sent
    seen = len(api.texts)
    await dispatcher.drain()
    correction = told(api, seen)
    assert "一次性补正告知" in correction and "居民户口簿" in correction and number in correction

    # The citizen asks how it stands, in the chat.
    progress = await citizen.say("进度")
    assert f"【{number}】" in progress and "补正" in progress and "居民身份证" in progress
    assert f"【{number}】" in await citizen.event("event_click", EventKey="progress")  # the menu key

    # The materials arrive; the result is ready three days later, when the citizen has not
    # written for more than 48 hours: the 办结 notice goes as the approved template.
    clock.set(local(2026, 11, 25, 10))
    resumed = await staff.say(f"/resubmit {number}")
    assert number in resumed, resumed
    clock.set(local(2026, 11, 27, 15))
    assert "已办结" in await staff.say(f"/ready {number}")
    seen_templates = len(api.sent("message/template/send"))
    await dispatcher.drain()
    templates = api.sent("message/template/send")[seen_templates:]
    ready = [t for t in templates if t["data"]["character_string2"]["value"] == case.number]
    assert ready and ready[-1]["touser"] == OPENID and ready[-1]["template_id"] == "TPL-CASE"
    assert "领取" in ready[-1]["data"]["thing3"]["value"]
    assert "已领取并结案" in await staff.say(f"/collected {number}")

    # The 回访 a working day later; the citizen wrote in between, so it comes with its links.
    clock.set(local(2026, 11, 30, 8, 50))
    await citizen.say("进度")
    clock.set(local(2026, 11, 30, 9, 5))
    seen = len(api.texts)
    await Jobs(world.app, dispatcher).sweep()
    await dispatcher.drain()
    followup = told(api, seen)
    assert "回访" in followup and number in followup, followup
    content, menu_id = global_link(followup, "满意")
    assert "感谢您的评价" in await citizen.send(citizen.message(
        "text_menu_tap", Content=content, bizmsgmenuid=menu_id, MsgId=next(_ids)))
    async with database.read() as session:
        final = await session.get(Case, case.id)
        actions = list((await session.scalars(select(CaseEvent.action).where(
            CaseEvent.case_id == case.id).order_by(CaseEvent.id))).all())
        audited = (await session.scalars(select(AuditLog.action).where(
            AuditLog.entity == "case", AuditLog.entity_id == case.id))).all()
    assert final is not None and final.state == CaseState.CLOSED and final.followup_level == 4
    assert actions == ["accept", "correction", "resubmit", "ready", "collect", "close", "followup"]
    assert {f"case_{a}" for a in actions} <= set(audited)



@pytest.mark.parametrize("kind", ["即办件", "补办件", "退回件", "联办件", "上报件"])
async def test_a_case_of_each_kind_from_the_wecom_window_to_the_wechat_chat(
        kind: str, world: World, clock: ManualClock, database: Database) -> None:
    citizen, staff, api, dispatcher = world.citizen, world.staff, world.wechat_api, world.dispatcher
    assert "预约成功" in await book_by_number(citizen)
    async with database.read() as session:
        appointment = await session.scalar(select(Appointment))
    assert appointment is not None
    await dispatcher.drain()
    clock.set(local(2026, 11, 24, 9, 5))
    await staff.say(f"/checkin {appointment.code}")
    said = await staff.say(number_of(await staff.say(f"/done {appointment.code}"), kind))
    if kind == "补办件":
        said = await staff.say(number_of(said, "居民户口簿"))
        said = await staff.say(number_of(said, "完成"))
    elif kind == "退回件":
        said = await staff.say(number_of(await staff.say("不属于本镇户籍"), "依据"))
    elif kind == "联办件":
        said = await staff.say("公安局 3、民政局 5")
    async with database.read() as session:
        case = await session.scalar(select(Case).where(Case.appointment_id == appointment.id))
    assert case is not None, said
    number = format_case_number(case.number)
    assert number in said
    seen = len(api.texts)
    await dispatcher.drain()
    first = {"即办件": None, "补办件": "一次性补正告知", "退回件": "不予受理告知", "联办件": "受理回执",
             "上报件": "受理回执"}[kind]
    if first is None:
        assert number not in told(api, seen)                      # done at the window
    else:
        assert first in told(api, seen) and number in told(api, seen)
    if kind == "补办件":
        clock.set(local(2026, 11, 24, 15))           # brought back the same afternoon
        await staff.say(f"/resubmit {number}")
    if kind == "联办件":
        await staff.say(f"/partdone {number} 公安局")
        await staff.say(f"/partdone {number} 民政局")
    if kind == "上报件":
        assert "已记录" in await staff.say(f"/expect {number} 12-18")
    if kind not in ("即办件", "退回件"):
        assert "已办结" in await staff.say(f"/ready {number}")
        assert "已领取并结案" in await staff.say(f"/collected {number}")
    seen_ready = len(api.texts)
    await dispatcher.drain()
    later = told(api, seen_ready)
    if kind not in ("即办件", "退回件"):
        assert "办结通知" in later and "领取地点" in later
    if kind == "补办件":
        assert "补正材料已收到" in later
    if kind == "上报件":
        assert "预计12月18日 周五前答复" in later
    # The 回访 a working day after closing, tapped in the chat; a refused case gets none.
    clock.set(local(2026, 11, 25, 15))
    assert f"【{number}】" in await citizen.say("进度")
    clock.set(local(2026, 11, 26, 9, 5))
    seen = len(api.texts)
    await Jobs(world.app, dispatcher).sweep()
    await dispatcher.drain()
    if kind == "退回件":
        assert "回访" not in told(api, seen)
    else:
        content, menu_id = global_link(told(api, seen), "满意")
        assert "感谢您的评价" in await citizen.send(citizen.message(
            "text_menu_tap", Content=content, bizmsgmenuid=menu_id, MsgId=next(_ids)))
    async with database.read() as session:
        final = await session.get(Case, case.id)
    assert final is not None and final.state == (
        CaseState.REFUSED if kind == "退回件" else CaseState.CLOSED)
    assert final.followup_level == (None if kind == "退回件" else 4)
