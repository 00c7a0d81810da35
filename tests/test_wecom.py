"""The WeCom (企业微信) app as the staff's channel, over real HTTP: WeCom's callbacks (URL check,
encrypted messages, card clicks) posted to the app's webhook, the fake WeCom API on 127.0.0.1
receiving the cards and texts, and a WeChat citizen on the other side of a hand-off."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, insert, select
from starlette.applications import Starlette

from bot import cli
from bot.channels import TryLater, Unreachable
from bot.dispatch import Dispatcher
from bot.reports import FileReports
from bot.wechat import WechatChannel, build_wechat
from bot.wecom import WecomChannel, build_wecom
from bot.wecom.inbound import to_incoming
from bot.wiring import App
from handlers.core import Choice, Reply
from handlers.engine import Assistant
from storage import booking, handoffs
from storage.clock import ManualClock
from storage.db import Database
from storage.models import (
    Appointment,
    AppointmentStatus,
    AuditLog,
    Channel,
    ChannelIdentity,
    Handoff,
    ProcessedMessage,
    RequestStatus,
    Service,
)
from storage.settings import AccessSettings, Settings, SettingsError, WechatSettings, WecomSettings, load_settings
from tests.fakes import LocalServer
from tests.fakes.wechat_api import APP_ID, APP_SECRET, SAMPLE_AES_KEY, SAMPLE_TOKEN, FakeWechatApi, WechatPush
from tests.fakes.wechat_api import sample as wechat_sample
from tests.fakes.wecom_api import AES_KEY, AGENT_ID, CORP_ID, SECRET, TOKEN, FakeWecomApi, SentCard, WecomPush, sample
from tests.helpers import account, make_centre, person, slots_of, valid_id

OPENID = "oCitizen_0123456789abcdefghij"
ZHANG, LI, STRANGER = "zhangsan", "lisi", "wangwu"
_ids = itertools.count(7300000000000001)


@pytest.fixture
async def wecom_api() -> AsyncIterator[FakeWecomApi]:
    async with FakeWecomApi() as api:
        api.directory = {ZHANG: "张三", LI: "李四", STRANGER: "王五"}
        yield api


@pytest.fixture
def settings(wecom_api: FakeWecomApi, wechat_api: FakeWechatApi) -> Settings:
    return Settings(
        wechat=WechatSettings(app_id=APP_ID, app_secret=APP_SECRET, token=SAMPLE_TOKEN,
                              encoding_aes_key=SAMPLE_AES_KEY, api_base_url=wechat_api.url),
        wecom=WecomSettings(corp_id=CORP_ID, agent_id=AGENT_ID, secret=SECRET, token=TOKEN,
                            encoding_aes_key=AES_KEY, api_base=wecom_api.url),
        access=AccessSettings(staff=(f"wecom:{ZHANG}", f"wecom:{LI}"),
                              managers=(f"wecom:{ZHANG}",)))


@dataclass
class Served:
    wecom: WecomChannel
    wechat: WechatChannel
    dispatcher: Dispatcher
    url: str


@pytest.fixture
async def served(app: App) -> AsyncIterator[Served]:
    assistant = Assistant(database=app.database, centre=app.centre, clock=app.clock,
                          settings=app.settings, reports=FileReports())
    wecom = build_wecom(app, assistant)
    wechat = build_wechat(app, assistant)
    dispatcher = Dispatcher(database=app.database, centre=app.centre, settings=app.settings,
                            clock=app.clock, senders={"wechat": wechat.sender, "wecom": wecom.sender},
                            staff_senders=[wecom.sender])
    async with LocalServer(Starlette(routes=wecom.webhook_routes() + wechat.webhook_routes())) as server:
        try:
            yield Served(wecom, wechat, dispatcher, server.url)
        finally:
            await wecom.close()
            await wechat.close()


@pytest.fixture
async def web(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        yield client


@pytest.fixture
def push(web: httpx.AsyncClient, clock: ManualClock) -> WecomPush:
    return WecomPush(web, path="/wecom", now=clock.now)


class Member:
    """A WeCom user writing to the app (their callbacks posted as WeCom posts them)."""

    def __init__(self, user: str, push: WecomPush, api: FakeWecomApi, served: Served,
                 clock: ManualClock) -> None:
        self.user, self.push, self.api, self.served, self.clock = user, push, api, served, clock

    def _stamp(self) -> int:
        return int(self.clock.now().timestamp())

    async def _post(self, xml: str) -> list[str]:
        before = len(self.api.texts(self.user))
        response = await self.push.post(xml)
        assert response.status_code == 200 and response.text == ""
        await self.served.wecom.webhook.drain()
        return self.api.texts(self.user)[before:]

    async def say(self, text: str) -> str:
        return "\n".join(await self._post(sample("text", FromUserName=self.user,
                                                 CreateTime=self._stamp(), Content=text,
                                                 MsgId=next(_ids))))

    async def click(self, card: SentCard, label: str) -> str:
        return "\n".join(await self._post(self.click_xml(card, label)))

    def click_xml(self, card: SentCard, label: str) -> str:
        return sample("template_card_event", FromUserName=self.user, CreateTime=self._stamp(),
                      EventKey=card.key(label), TaskId=card.task_id,
                      ResponseCode=self.api.click_code(card.task_id))

    async def menu(self, key: str) -> str:
        return "\n".join(await self._post(sample("event_click", FromUserName=self.user,
                                                 CreateTime=self._stamp(), EventKey=key)))


@pytest.fixture
def zhang(push: WecomPush, wecom_api: FakeWecomApi, served: Served, clock: ManualClock) -> Member:
    return Member(ZHANG, push, wecom_api, served, clock)


@pytest.fixture
def li(push: WecomPush, wecom_api: FakeWecomApi, served: Served, clock: ManualClock) -> Member:
    return Member(LI, push, wecom_api, served, clock)


class Citizen:
    """A WeChat follower on the other side of the hand-off."""

    def __init__(self, web: httpx.AsyncClient, clock: ManualClock) -> None:
        self.push = WechatPush(web, path="/wechat", token=SAMPLE_TOKEN, aes_key=SAMPLE_AES_KEY,
                               now=clock.now)
        self.clock = clock

    async def say(self, text: str) -> str:
        xml = wechat_sample("text", FromUserName=OPENID, CreateTime=int(self.clock.now().timestamp()),
                            Content=text, MsgId=next(_ids))
        return self.push.read(await self.push.post(xml)).get("Content", "")


# --- the callback ---------------------------------------------------------------------------------


async def test_the_console_url_check_is_answered_with_echostr_decrypted(push: WecomPush) -> None:
    answer = await push.verify_url("8934671526451526321")
    assert answer.status_code == 200 and answer.text == "8934671526451526321"


async def test_a_bad_signature_is_refused_with_one_log_line(
        push: WecomPush, zhang: Member, wecom_api: FakeWecomApi,
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="yuyue.wecom"):
        assert (await push.verify_url(tamper=True)).status_code == 403
        forged = await push.post(sample("text", FromUserName=ZHANG, CreateTime=1, Content="/today",
                                        MsgId=1), tamper=True)
    assert forged.status_code == 403
    assert [r.getMessage() for r in caplog.records] == [
        "wecom URL check refused: bad signature or stale timestamp",
        "wecom callback refused: bad signature or stale timestamp"]
    assert wecom_api.count("message/send") == 0
    stale = await push.post(sample("text", FromUserName=ZHANG, CreateTime=1, Content="/today",
                                   MsgId=2), timestamp="1500000000")
    assert stale.status_code == 403                    # signed, but long ago: a replay
    junk = await push.http.post("/wecom", params={"msg_signature": "x", "timestamp": "1",
                                                  "nonce": "1"}, content=b"not xml")
    assert junk.status_code == 400


async def test_a_retried_callback_is_handled_once(push: WecomPush, zhang: Member,
                                                  wecom_api: FakeWecomApi,
                                                  served: Served) -> None:
    first = await zhang.say("/today")
    assert "没有预约" in first
    sent = wecom_api.count("message/send")
    again = await push.retry()
    await served.wecom.webhook.drain()
    assert again.status_code == 200 and wecom_api.count("message/send") == sent


def test_a_card_click_is_read_from_the_xml() -> None:
    from bot.wechat.inbound import parse_xml
    fields = parse_xml(sample("template_card_event", FromUserName=ZHANG, CreateTime=1764633600,
                              EventKey="g:claim:7", TaskId="yy-1", ResponseCode="RC").encode())
    incoming = to_incoming(fields, user_name="张三")
    assert incoming is not None and incoming.choice == "g:claim:7"
    assert incoming.user_name == "张三"
    assert incoming.message_id == f"{ZHANG}:1764633600:template_card_event:yy-1:g:claim:7"
    quiet = parse_xml(sample("event_enter_agent", FromUserName=ZHANG, CreateTime=1).encode())
    assert to_incoming(quiet) is None


# --- a whole hand-off -----------------------------------------------------------------------------


async def test_a_hand_off_claimed_from_a_card_relayed_both_ways_and_closed(
        web: httpx.AsyncClient, clock: ManualClock, served: Served, zhang: Member, li: Member,
        wecom_api: FakeWecomApi, wechat_api: FakeWechatApi, database: Database) -> None:
    citizen = Citizen(web, clock)
    assert "已为您转接人工服务（编号 1）" in await citizen.say("人工服务")
    await served.dispatcher.drain()
    [card] = wecom_api.cards.values()
    assert sorted(card.users) == [LI, ZHANG] and "人工服务 #1" in card.title
    assert wecom_api.shown(card, ZHANG) == "认领"

    # Both press 认领 at once: one owns it, both cards say who.
    said = await asyncio.gather(zhang._post(zhang.click_xml(card, "认领")),
                                li._post(li.click_xml(card, "认领")))
    async with database.read() as session:
        handoff = await session.get(Handoff, 1)
        assert handoff is not None and handoff.status == RequestStatus.CLAIMED
        owner_id = handoff.claimed_by
    owner, other = (zhang, li) if owner_id == f"wecom:{ZHANG}" else (li, zhang)
    name = {ZHANG: "张三", LI: "李四"}[owner.user]
    texts = dict(zip((ZHANG, LI), ("\n".join(t) for t in said), strict=True))
    assert f"已由 {name} 认领（首问负责）" in texts[owner.user]
    assert "直接发文字" in texts[owner.user]
    assert f"已由 {name} 认领，谢谢" in texts[other.user]
    assert wecom_api.shown(card, ZHANG) == wecom_api.shown(card, LI) == f"已由 {name} 认领"
    assert wecom_api.count("message/update_template_card") == 2

    # The citizen's words reach the owner only, tagged #1; plain text answers them.
    await citizen.say("我的医保报销材料不全怎么办？")
    await served.dispatcher.drain()
    relayed = wecom_api.texts(owner.user)[-1]
    assert relayed.startswith(f"【人工服务 #1 · 负责人：{name}】市民说：") and "医保报销材料不全" in relayed
    assert not any("医保报销" in t for t in wecom_api.texts(other.user))
    assert "正在发送给市民（#1）" in await owner.say("请补交发票原件，可以邮寄。")
    await served.dispatcher.drain()
    assert "请补交发票原件" in wechat_api.texts[-1]
    assert "您目前没有负责中的人工服务" in await other.say("我来帮忙")

    assert "人工服务 #1 已结束" in await owner.say("/close 1 已说明补交材料")
    await served.dispatcher.drain()
    async with database.read() as session:
        closed = await session.get(Handoff, 1)
        assert closed is not None and closed.status == RequestStatus.CLOSED
    assert "您的人工服务（编号 1）已结束。请为本次服务评价" in wechat_api.texts[-1]
    clock.set(clock.now() + dt.timedelta(minutes=5))
    late = await other.click(card, "认领")          # an old card pressed after all that
    assert late == "人工服务 #1 已经结束。"
    assert wecom_api.shown(card, other.user) == "已结束"
    every = "\n".join(b.get("text", {}).get("content", "") for b in wecom_api.sent("message/send"))
    assert ZHANG not in every and LI not in every          # staff are shown by name, never by id


async def test_several_hand_offs_need_a_number_or_use(
        web: httpx.AsyncClient, clock: ManualClock, served: Served, zhang: Member,
        wecom_api: FakeWecomApi, wechat_api: FakeWechatApi, app: App) -> None:
    citizen = Citizen(web, clock)
    await citizen.say("人工服务")
    second = Citizen(web, clock)
    second_id = "oOther_citizen_000000000000"
    xml = wechat_sample("text", FromUserName=second_id, CreateTime=int(clock.now().timestamp()),
                        Content="人工服务", MsgId=next(_ids))
    await second.push.post(xml)
    await served.dispatcher.drain()
    assert "认领" in await zhang.say("/claim 1")
    assert "认领" in await zhang.say("/claim 2")
    assert "正在发送给市民（#2）" in await zhang.say("第二位您好")      # the last claimed is current
    assert "正在发送给市民（#1）" in await zhang.say("#1 第一位您好")
    assert "人工服务 #1" in await zhang.say("/use 1")
    assert "正在发送给市民（#1）" in await zhang.say("请稍等")
    assert "用法" in await zhang.say("/use")
    assert "没有编号为 9 的人工服务" in await zhang.say("/use 9")
    await served.dispatcher.drain()
    def relayed(openid: str) -> list[str]:
        return [b["text"]["content"].split("\n")[1] for b in wechat_api.sent("message/custom/send")
                if b["touser"] == openid and "工作人员回复" in b["text"]["content"]]

    assert relayed(second_id) == ["第二位您好"]
    assert relayed(OPENID) == ["第一位您好", "请稍等"]
    # An answer WeChat no longer takes is told to its author alone.
    wechat_api.out_of_window.add(second_id)
    assert "正在发送给市民（#2）" in await zhang.say("#2 还在吗？")
    await served.dispatcher.drain()
    await served.dispatcher.drain()          # the failure notice queued by the first round
    assert "人工服务 #2】您的答复未能送达市民" in wecom_api.texts(ZHANG)[-1]
    assert not any("未能送达" in t for t in wecom_api.texts(LI))


# --- commands from the app ------------------------------------------------------------------------


async def _booked(app: App, clock: ManualClock) -> Appointment:
    async with app.database.session() as session:
        service = (await session.scalars(select(Service).where(Service.code == "id_card"))).one()
        now = clock.now()
        slot = (await slots_of(session, app.centre, service, now, dt.date(2026, 11, 23)))[0]
        citizen = await person(session, app.centre, now, name="赵六", mobile="13812345678",
                               id_number=valid_id("11010519491231002"))
        identity = await account(session, now, user="61", person_id=citizen.id)
        return await booking.book(session, app.centre, now, person_id=citizen.id, slot_id=slot.id,
                                  identity_id=identity.id, channel=Channel.TELEGRAM,
                                  made_by="telegram:61", offline=True, confirm=False)


async def test_window_commands_and_the_menu_from_the_app(
        app: App, clock: ManualClock, zhang: Member, wecom_api: FakeWecomApi,
        database: Database) -> None:
    appointment = await _booked(app, clock)
    listing = await zhang.menu("today")                     # the app menu's 今日预约
    assert appointment.code in listing and "赵* 138****5678" in listing
    assert "13812345678" not in listing
    assert "已签到" in await zhang.say(f"/checkin {appointment.code}")
    assert "已办结" in await zhang.say(f"/done {appointment.code.lower()}")
    assert "用法" in await zhang.say("/noshow")
    assert "目前没有被限制预约的市民" in await zhang.say("/blocks")
    assert "/use" in await zhang.say("/staffhelp")
    assert "没有被限制预约" in await zhang.say(f"/unblock {appointment.code} 系统误判")
    plan = await zhang.say("/closure id_card 11-24 09:00-12:00 系统升级")
    assert "1. 确认停办" in plan and "2. 不停办" in plan          # buttons as numbers to type
    assert "已停办【居民身份证办理" in await zhang.say("1")
    async with database.read() as session:
        done = await session.get(Appointment, appointment.id)
        assert done is not None and done.status == AppointmentStatus.COMPLETED
    assert "暂不支持" in "\n".join(await zhang._post(sample(
        "image", FromUserName=ZHANG, CreateTime=int(clock.now().timestamp()), MsgId=next(_ids))))


async def test_walk_in_booking_from_the_app_by_numbers(zhang: Member) -> None:
    asked = await zhang.say("/book")               # the staff walk-in booking, not a citizen's
    assert asked.startswith("代办预约：请选择事项。\n1. 居民身份证办理")
    assert "居民身份证办理" in await zhang.say("1")      # typed numbers pick, as on WeChat
    assert "已退出" in await zhang.say("取消")
    assert "您目前没有负责中的人工服务" in await zhang.say("1")     # not the old menu's first entry


async def test_someone_not_on_the_lists_is_refused(push: WecomPush, wecom_api: FakeWecomApi,
                                                  served: Served, clock: ManualClock) -> None:
    stranger = Member(STRANGER, push, wecom_api, served, clock)
    assert "仅供窗口工作人员使用" in await stranger.say("/today")
    assert "仅供窗口工作人员使用" in await stranger.say("你好")
    assert "仅对授权的中心负责人开放" in await stranger.say("/stats")


async def test_figures_as_an_image_and_export_as_files(zhang: Member, li: Member,
                                                       wecom_api: FakeWecomApi) -> None:
    await zhang.say("/stats chart week")
    [image] = [b for b in wecom_api.sent("message/send") if b.get("msgtype") == "image"]
    assert wecom_api.uploads[image["image"]["media_id"]][1].startswith(b"\x89PNG")
    await zhang.say("/export week")
    files = [wecom_api.uploads[b["file"]["media_id"]][0] for b in wecom_api.sent("message/send")
             if b.get("msgtype") == "file"]
    assert sorted(f.rsplit(".", 1)[1] for f in files) == ["csv", "xlsx"]
    assert "仅对授权的中心负责人开放" in await li.say("/stats")     # staff, not a manager


# --- the sender -----------------------------------------------------------------------------------


async def test_the_sender_refreshes_a_rejected_token_once_and_backs_off_when_limited(
        served: Served, wecom_api: FakeWecomApi, app: App) -> None:
    sender = served.wecom.sender
    await sender.deliver(ZHANG, [Reply("第一条")])
    token = wecom_api.current
    wecom_api.fail_next("message/send", 40014)
    await sender.deliver(ZHANG, [Reply("第二条")])
    assert wecom_api.texts(ZHANG) == ["第一条", "第二条"]
    assert wecom_api.count("gettoken") == 2 and wecom_api.current == token   # asked once more
    wecom_api.expire_token()
    await sender.deliver(ZHANG, [Reply("第三条")])
    assert wecom_api.current != token and wecom_api.texts(ZHANG)[-1] == "第三条"
    for limit in (45009, 45033):
        wecom_api.fail_next("message/send", limit)
        with pytest.raises(TryLater):
            await sender.deliver(ZHANG, [Reply("太快了")])
    wecom_api.unknown_users.add("gone")
    with pytest.raises(Unreachable):
        await sender.deliver("gone", [Reply("你好")])
    # A second process reads the token from the database instead of asking WeCom.
    other = build_wecom(app, served.wecom.webhook.assistant)
    try:
        asked = wecom_api.count("gettoken")
        await other.sender.deliver(ZHANG, [Reply("另一个进程")])
        assert wecom_api.count("gettoken") == asked
    finally:
        await other.close()


async def test_alerts_go_as_cards_to_staff_on_duty_and_as_text_to_the_app_chat(
        app: App, served: Served, wecom_api: FakeWecomApi) -> None:
    wecom_api.chats["wrkSTAFF01"] = {"name": "窗口"}
    settings = app.settings
    on_duty = WecomSettings(**{**settings.wecom.__dict__, "app_chat_id": "wrkSTAFF01",
                               "on_duty": (LI,)})
    app.settings = Settings(**{**settings.__dict__, "wecom": on_duty})
    channel = build_wecom(app, served.wecom.webhook.assistant)
    try:
        alert = Reply("【人工服务 #5】\n渠道：wechat", ((Choice("认领", "g:claim:5"),),))
        await channel.sender.deliver("staff", [alert], kind="handoff_alert")
        [card] = wecom_api.cards.values()
        assert card.users == [LI] and card.key("认领") == "g:claim:5"
        assert wecom_api.chat_texts == ["【人工服务 #5】\n渠道：wechat\n(认领)"]
        # What a citizen says goes to the owner alone, and only when they work in WeCom.
        await channel.sender.deliver("staff", [Reply("市民说：你好")], kind="handoff_message",
                                     fields={"owner": f"wecom:{ZHANG}"})
        await channel.sender.deliver("staff", [Reply("市民说：在吗")], kind="handoff_message",
                                     fields={"owner": "telegram:42"})
        assert wecom_api.texts(ZHANG) == ["市民说：你好"] and len(wecom_api.chat_texts) == 1
    finally:
        await channel.close()


async def test_a_supervisor_listed_as_a_wecom_user_is_alerted_in_the_app(
        web: httpx.AsyncClient, clock: ManualClock, served: Served, app: App,
        wecom_api: FakeWecomApi) -> None:
    """Escalations go to each supervisor's own chat: a "wecom:<user id>" supervisor gets them in
    the app."""
    citizen = Citizen(web, clock)
    assert "已为您转接人工服务（编号 1）" in await citizen.say("人工服务")
    await served.dispatcher.drain()
    before = len(wecom_api.texts(LI)) + len(wecom_api.cards_of(LI))
    clock.advance(minutes=31)
    async with app.database.session() as session:
        assert await handoffs.escalate_overdue(session, app.centre, clock.now(), escalate_minutes=30,
                                               supervisors=(f"wecom:{LI}",)) >= 1
    await served.dispatcher.drain()
    alerts = wecom_api.texts(LI)[len(wecom_api.texts(LI)) - 1:] + \
        [card.title for card in wecom_api.cards_of(LI)]
    assert len(wecom_api.texts(LI)) + len(wecom_api.cards_of(LI)) == before + 1
    assert any("#1" in text for text in alerts)


# --- set-up from the command line -----------------------------------------------------------------


async def test_yuyue_wecom_menu_and_group_create(app: App, wecom_api: FakeWecomApi,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    menu = parser.parse_args(["wecom", "menu"])
    assert await menu.handler(app, menu) == 0
    [created] = wecom_api.sent("menu/create")
    assert [(b["name"], b["key"]) for b in created["button"]] == [
        ("今日预约", "today"), ("待处理", "open"), ("统计", "stats")]
    group = parser.parse_args(["wecom", "group", "create", "窗口工作群", ZHANG, LI])
    assert await group.handler(app, group) == 0
    [chat] = wecom_api.sent("appchat/create")
    assert chat == {"name": "窗口工作群", "owner": ZHANG, "userlist": [ZHANG, LI]}
    out = capsys.readouterr().out
    assert "今日预约 / 待处理 / 统计" in out and 'wecom.app_chat_id = "wrk' in out
    alone = parser.parse_args(["wecom", "group", "create", "窗口", ZHANG])
    with pytest.raises(cli.CommandError, match="at least two members"):
        await alone.handler(app, alone)


async def test_yuyue_wecom_says_what_is_missing(database: Database, clock: ManualClock) -> None:
    bare = App(settings=Settings(), database=database, centre=make_centre(), clock=clock)
    args = cli.build_parser().parse_args(["wecom", "menu"])
    with pytest.raises(cli.CommandError, match=r"wecom\.corp_id, wecom\.agent_id and YUYUE_WECOM__SECRET"):
        await args.handler(bare, args)


async def test_a_slow_answer_is_answered_in_time_and_follows(
        app: App, database: Database, clock: ManualClock, wecom_api: FakeWecomApi) -> None:
    quick = dataclasses.replace(app.settings, wecom=dataclasses.replace(app.settings.wecom,
                                                                        reply_deadline_ms=100))
    slow_app = App(settings=quick, database=database, centre=app.centre, clock=clock)
    channel = build_wecom(slow_app, Assistant(database=database, centre=app.centre, clock=clock,
                                              settings=quick))
    async with LocalServer(Starlette(routes=channel.webhook_routes())) as server, \
            httpx.AsyncClient(base_url=server.url, timeout=10) as web:
        push = WecomPush(web, path="/wecom", now=clock.now)
        # Another transaction holds what the engine needs, so the answer takes longer than allowed.
        connection = await database.engine.connect()
        transaction = await connection.begin()
        await connection.execute(insert(ProcessedMessage).values(
            channel="wecom", message_id="7390000000000001", processed_at=clock.now(), response={}))
        try:
            answer = await push.post(sample("text", FromUserName=ZHANG, Content="/blocks",
                                            CreateTime=int(clock.now().timestamp()),
                                            MsgId=7390000000000001))
            assert answer.status_code == 200 and answer.text == ""
            assert wecom_api.texts(ZHANG) == []
        finally:
            await transaction.rollback()
            await connection.close()
        await channel.close()
    assert wecom_api.texts(ZHANG) == ["目前没有被限制预约的市民。"]


# --- settings -------------------------------------------------------------------------------------


def test_wecom_settings_from_the_file_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('[wecom]\ncorp_id = "ww1"\nstaff_names = ["zhangsan=张三"]\n', encoding="utf-8")
    loaded = load_settings(path, environ={"YUYUE_WECOM__AGENT_ID": "1000002",
                                          "YUYUE_WECOM__TOKEN": "tok",
                                          "YUYUE_WECOM__SECRET": "s3cret"})
    assert loaded.wecom.agent_id == 1000002 and loaded.wecom.app_enabled
    assert loaded.wecom.staff_names == ("zhangsan=张三",) and loaded.wecom.path == "/wecom"
    path.write_text('[wecom]\nstaff_names = ["张三"]\n', encoding="utf-8")
    with pytest.raises(SettingsError, match=r'wecom\.staff_names: expected a list like \["zhangsan=张三"\]'):
        load_settings(path, environ={})


async def test_the_app_says_what_it_still_needs(app: App) -> None:
    partial = dataclasses.replace(app.settings, wecom=WecomSettings(token=TOKEN, corp_id=CORP_ID))
    bare = App(settings=partial, database=app.database, centre=app.centre, clock=app.clock)
    with pytest.raises(ValueError, match=r"needs wecom\.agent_id, YUYUE_WECOM__SECRET, "
                                         r"YUYUE_WECOM__ENCODING_AES_KEY"):
        build_wecom(bare, Assistant(database=app.database, centre=app.centre, clock=app.clock,
                                    settings=partial))
    short_key = dataclasses.replace(app.settings.wecom, encoding_aes_key="abc")
    with pytest.raises(ValueError, match="43 characters"):
        build_wecom(App(settings=dataclasses.replace(app.settings, wecom=short_key),
                        database=app.database, centre=app.centre, clock=app.clock),
                    Assistant(database=app.database, centre=app.centre, clock=app.clock,
                              settings=app.settings))


async def test_phone_on_the_desk_shows_the_full_mobile_to_the_owner_only(
        web: httpx.AsyncClient, clock: ManualClock, served: Served, zhang: Member, li: Member,
        database: Database) -> None:
    citizen = Citizen(web, clock)
    assert "编号 1" in await citizen.say("人工服务")
    async with database.session() as session:
        follower = await session.scalar(select(ChannelIdentity).where(
            ChannelIdentity.platform_user_id == OPENID))
        assert follower is not None
        follower.person_id = (await person(session, served.dispatcher.centre, clock.now(),
                                           name="王五", mobile="13700001234")).id
    assert "认领" in await zhang.say("/claim 1")
    assert "王五 13700001234" in await zhang.say("/phone 1")
    assert "不是由您负责的" in await li.say("/phone 1")
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "phone_shown", AuditLog.actor == f"wecom:{ZHANG}")) == 1
