"""The WeChat webhook end to end: requests built as WeChat builds them, posted to the product's
web app, answered by the real conversation engine; the outgoing API is the fake WeChat server
over real HTTP."""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import func, insert, select

from bot.dispatch import Dispatcher
from bot.reports import FileReports
from bot.web import build_web_app
from bot.wechat import WechatChannel, build_wechat
from bot.wechat.menu import build_menu
from bot.wiring import App
from handlers.engine import Assistant
from storage import closures
from storage.catalog import load_catalog, read_catalog
from storage.clock import ManualClock
from storage.db import Database
from storage.models import (
    Appointment,
    ChannelIdentity,
    NotificationConsent,
    Outbox,
    OutboxStatus,
    ProcessedMessage,
)
from storage.settings import AccessSettings, Settings, WechatSettings
from tests.fakes.wechat_api import (
    APP_ID,
    APP_SECRET,
    SAMPLE_AES_KEY,
    SAMPLE_TOKEN,
    FakeWechatApi,
    WechatPush,
    sample,
)
from tests.helpers import ROOT, load_demo, local, make_centre, valid_id

OPENID = "oXyZ_12AbCdEfGhIjKlMnOpQrStU"
LINK = re.compile(r'(\d+)\. <a href="weixin://bizmsgmenu\?msgmenucontent=(\d+)&msgmenuid=(\d+)">'
                  r"([^<]*)</a>")


@dataclass
class Env:
    api: FakeWechatApi
    channel: WechatChannel
    push: WechatPush
    database: Database
    clock: ManualClock
    http: httpx.AsyncClient
    app: App


async def make_env(database: Database, clock: ManualClock, api: FakeWechatApi, *, safe: bool,
                   managers: tuple[str, ...] = (), **wechat: object) -> Env:
    settings = dataclasses.replace(Settings(), wechat=WechatSettings(
        app_id=APP_ID, app_secret=APP_SECRET, token=SAMPLE_TOKEN,
        encoding_aes_key=SAMPLE_AES_KEY if safe else "", api_base_url=api.url,
        **wechat), access=AccessSettings(managers=managers))  # type: ignore[arg-type]
    centre = make_centre()
    app = App(settings=settings, database=database, centre=centre, clock=clock)
    assistant = Assistant(database=database, centre=centre, clock=clock, settings=settings,
                          reports=FileReports())
    channel = build_wechat(app, assistant)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=build_web_app(
        channel.webhook_routes())), base_url="http://yuyue.test")
    push = WechatPush(http, path="/wechat", token=SAMPLE_TOKEN,
                      aes_key=SAMPLE_AES_KEY if safe else "", now=clock.now)
    return Env(api, channel, push, database, clock, http, app)


@pytest.fixture
async def api() -> AsyncIterator[FakeWechatApi]:
    async with FakeWechatApi() as fake:
        yield fake


@pytest.fixture(params=["plain", "safe"])
async def env(request: pytest.FixtureRequest, database: Database, clock: ManualClock,
              api: FakeWechatApi) -> AsyncIterator[Env]:
    async with database.session() as session:
        await load_demo(session, clock.now())
    made = await make_env(database, clock, api, safe=request.param == "safe")
    yield made
    await made.channel.close()
    await made.http.aclose()


class Citizen:
    """One WeChat user writing to the Official Account, reading what came back (the passive
    reply and any customer-service messages that followed it)."""

    def __init__(self, env: Env, openid: str = OPENID) -> None:
        self.env, self.openid = env, openid
        self.passive = ""
        self.rest: list[str] = []
        self.last_xml = ""
        self._ids = itertools.count(24602178399870100)

    @property
    def text(self) -> str:
        return "\n".join([self.passive, *self.rest])

    async def send(self, xml: str) -> str:
        self.last_xml = xml
        before = len(self.env.api.texts)
        fields = self.env.push.read(await self.env.push.post(xml))
        # An answer slower than the deadline (a busy machine drawing a chart) comes as
        # customer-service messages: wait for them rather than for the clock.
        await self.env.channel.webhook.drain()
        if fields:
            assert fields["ToUserName"] == self.openid and fields["MsgType"] == "text"
            assert len(fields["Content"].encode()) <= 2048
        self.passive = fields.get("Content", "")
        self.rest = self.env.api.texts[before:]
        return self.text

    def message(self, name: str, **fields: str | int) -> str:
        return sample(name, FromUserName=self.openid, CreateTime=self.now(), **fields)

    def now(self) -> int:
        return int(self.env.clock.now().timestamp())

    async def say(self, text: str, msg_id: int | None = None) -> str:
        return await self.send(self.message("text", Content=text, MsgId=msg_id or next(self._ids)))

    def link(self, label_part: str) -> tuple[str, str]:
        """(number, msgmenuid) of the choice whose label contains ``label_part``."""
        for number, content, menu_id, label in LINK.findall(self.text):
            assert number == content
            if label_part in label:
                return number, menu_id
        raise AssertionError(f"no choice {label_part!r} in:\n{self.text}")

    async def pick(self, label_part: str) -> str:
        """Type the number beside a choice."""
        return await self.say(self.link(label_part)[0])

    async def tap(self, label_part: str, msg_id: int | None = None) -> str:
        """Tap a choice's link: WeChat sends its content as text, with bizmsgmenuid."""
        number, menu_id = self.link(label_part)
        return await self.send(self.message("text_menu_tap", Content=number, bizmsgmenuid=menu_id,
                                            MsgId=msg_id or next(self._ids)))

    async def resend(self) -> str:
        """WeChat's retry of the last message (same MsgId, a newly signed request)."""
        return await self.send(self.last_xml)

    async def event(self, name: str, **fields: str | int) -> str:
        return await self.send(self.message(name, **fields))


async def count(database: Database, model: type) -> int:
    async with database.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# --- the journey -------------------------------------------------------------------------------


async def book_by_number(citizen: Citizen) -> str:
    """Follow the account and book the first ID-card slot on 24 November; the confirmation."""
    assert "预约服务助手" in await citizen.event("event_subscribe")
    steps = [("预约办事", "青溪镇便民服务中心"), ("便民服务中心", "居民身份证"),
             ("居民身份证", "一次性告知"), ("材料已备齐", "11月24日"), ("11月24日", "上午或下午"),
             ("上午", "09:00-09:20"),
             ("09:00-09:20", "已为您保留这个号10分钟"), ("同意并继续", "真实姓名")]
    for label, expected in steps:
        assert expected in await citizen.pick(label), (label, citizen.text)
    for typed, expected in [("张三", "手机号"), ("13812345678", "身份证号"),
                            (valid_id(), "请确认预约信息")]:
        assert expected in await citizen.say(typed)
    return await citizen.tap("确认预约")


async def test_whole_booking_by_number_replies(env: Env) -> None:
    citizen = Citizen(env)
    first = await book_by_number(citizen)
    assert "预约成功" in first and "居民户口簿" in first
    assert "subscribemsg" not in first          # no subscription template: no consent link
    code = re.search(r"预约码：([A-Z0-9]{6})", first)
    assert code is not None
    # WeChat got no answer in time and retries: same reply, booked once.
    again = await citizen.resend()
    assert again == first
    assert await count(env.database, Appointment) == 1
    assert "BEGIN:VCALENDAR" not in first          # the .ics file cannot be sent; text has it all
    assert "居民身份证办理" in await citizen.event("event_click", EventKey="my")
    assert code.group(1) in await citizen.pick("居民身份证办理")


async def test_tapping_an_old_menu_is_recognised(env: Env) -> None:
    citizen = Citizen(env)
    await citizen.event("event_subscribe")
    old_menu = citizen.text
    await citizen.pick("预约办事")
    citizen.passive, citizen.rest = old_menu, []
    assert "菜单已过期" in await citizen.tap("我的预约")
    assert "菜单已过期" not in await citizen.pick("便民服务中心")


# --- security and robustness --------------------------------------------------------------------


async def test_bad_signature_is_refused_and_nothing_processed(env: Env) -> None:
    citizen = Citizen(env)
    for tamper in ("signature", "msg_signature") if env.push.crypto else ("signature",):
        response = await env.push.post(citizen.message("text", Content="你好"), tamper=tamper)
        assert response.status_code == 403
    response = await env.push.post(citizen.message("text", Content="你好"),
                                   query={"timestamp": str(citizen.now()), "nonce": "1"})
    assert response.status_code == 403
    assert await count(env.database, ProcessedMessage) == 0
    assert await count(env.database, ChannelIdentity) == 0


async def test_stale_timestamp_is_refused(env: Env) -> None:
    citizen = Citizen(env)
    xml = citizen.message("text", Content="你好")
    stale = env.push.query(timestamp=str(citizen.now() - 301))
    assert (await env.push.post(xml, query=stale)).status_code == 403
    future = env.push.query(timestamp=str(citizen.now() + 301))
    assert (await env.push.post(xml, query=future)).status_code == 403
    assert await count(env.database, ProcessedMessage) == 0


@pytest.mark.parametrize("body", [
    b"", b"<xml><Encrypt>", b"{}", b"<xml><a>" + b"x" * 70000 + b"</a></xml>",
    b"<xml><ToUserName>gh</ToUserName><Encrypt>bm90IGFlcw==</Encrypt></xml>",
    b'<!DOCTYPE x [<!ENTITY e "e">]><xml><Encrypt>&e;</Encrypt></xml>'])
async def test_malformed_or_oversized_body_is_400(env: Env, body: bytes) -> None:
    query = env.push.query()
    if env.push.crypto is not None:
        query.update(encrypt_type="aes", msg_signature="0" * 40)
        encrypt = re.search(rb"<Encrypt>([^<]*)</Encrypt>", body)
        if encrypt is not None:     # correctly signed garbage: it must fail at decryption
            query["msg_signature"] = env.push._sign(SAMPLE_TOKEN, query["timestamp"],
                                                    query["nonce"], encrypt.group(1).decode())
    response = await env.http.post("/wechat", params=query, content=body)
    assert response.status_code == 400 and "Traceback" not in response.text
    assert await count(env.database, ProcessedMessage) == 0


async def test_url_check_answers_echostr(env: Env) -> None:
    query = env.push.query() | {"echostr": "5837397749543249175"}
    response = await env.http.get("/wechat", params=query)
    assert response.status_code == 200 and response.text == "5837397749543249175"
    for bad in (query | {"signature": "0" * 40}, query | {"timestamp": "²"},
                query | {"timestamp": "9" * 40}):
        assert (await env.http.get("/wechat", params=bad)).status_code == 403


async def test_a_forged_menu_id_is_not_a_crash(env: Env) -> None:
    citizen = Citizen(env)
    await citizen.event("event_subscribe")
    for menu_id in ("²²²²", "99999999999999999999", "g:talk:99999999999999999999"):
        answer = await citizen.send(citizen.message("text_menu_tap", Content="1", bizmsgmenuid=menu_id,
                                                    MsgId=next(citizen._ids)))
        assert answer and "系统出了点问题" not in answer


# --- events and other message types -------------------------------------------------------------


async def test_subscribe_menu_click_and_unsubscribe(env: Env) -> None:
    citizen = Citizen(env)
    welcome = await citizen.event("event_subscribe_qrscene")
    assert "预约服务助手" in welcome and "预约办事" in welcome
    assert await citizen.resend() == welcome      # WeChat's retry
    assert "还没有预约记录" in await citizen.event("event_click", EventKey="my")
    # A second click in the same second is a different event, not a retry of the first.
    assert "请选择要查看的事项" in await citizen.event("event_click", EventKey="guide")
    env.clock.advance(seconds=1)
    assert "您名下还没有办件" in await citizen.event("event_click", EventKey="progress")
    env.clock.advance(minutes=1)
    assert await citizen.event("event_unsubscribe") == ""
    async with env.database.read() as session:
        identity = await session.scalar(select(ChannelIdentity))
        assert identity is not None and identity.unreachable_reason == "unsubscribed"


async def test_other_message_types_get_a_hint_and_silent_events_nothing(env: Env) -> None:
    citizen = Citizen(env)
    assert "暂时看不了图片" in await citizen.event("image", MsgId=901)
    assert "暂时不能处理位置" in await citizen.event("location", MsgId=902)
    # A link, a video or a file is told what it is, not "图片、语音或位置".
    for name, said in (("link", "打不开链接"), ("video", "看不了视频"), ("file", "打不开文件")):
        answer = await citizen.event(name)
        assert said in answer and "图片" not in answer and "位置" not in answer, answer
    # A key of an old custom menu is not a "command" the citizen typed.
    answer = await citizen.event("event_click", EventKey="nonsense")
    assert "菜单项已经更新" in answer and "命令" not in answer and "/nonsense" not in answer
    assert "预约办事" in answer
    assert await citizen.event("event_location") == ""
    assert await citizen.event("event_view") == ""
    assert await citizen.event("template_job_finish") == ""
    assert "编号" in await citizen.event("voice", MsgId=903)        # recognised "人工服务"


# --- answers that do not fit or come late -------------------------------------------------------


async def test_slow_answer_goes_out_as_customer_service_message(
        database: Database, clock: ManualClock, api: FakeWechatApi) -> None:
    async with database.session() as session:
        await load_demo(session, clock.now())
    env = await make_env(database, clock, api, safe=True, reply_deadline_ms=100)
    citizen = Citizen(env)
    # Another transaction holds what the engine needs, so the answer takes longer than allowed.
    connection = await database.engine.connect()
    transaction = await connection.begin()
    await connection.execute(insert(ProcessedMessage).values(
        channel="wechat", message_id="555", processed_at=clock.now(), response={}))
    try:
        response = await env.push.post(citizen.message("text", Content="你好", MsgId=555))
        assert response.status_code == 200 and response.text == "success"
    finally:
        await transaction.rollback()
        await connection.close()
    await env.channel.webhook.drain()
    assert len(api.texts) == 1 and "预约办事" in api.texts[0]
    assert api.sent("message/custom/send")[0]["touser"] == OPENID
    await env.channel.close()
    await env.http.aclose()


async def test_long_answer_first_part_passive_rest_once_as_customer_service(
        database: Database, clock: ManualClock, api: FakeWechatApi, tmp_path: Path) -> None:
    # A service whose materials list (一次性告知) is far longer than one WeChat message.
    demo = (ROOT / "catalog" / "demo.toml").read_text(encoding="utf-8")
    extra = "".join(
        f'[[services.id_card.materials]]\nname = {{ zh = "第{n}项证明材料：户籍所在地社区'
        f'居委会出具的居住情况证明原件", en = "Proof {n}" }}\nform = "original"\n\n'
        for n in range(1, 41))
    catalog = tmp_path / "long.toml"
    catalog.write_text(demo.replace("[[services.id_card.materials]]", extra
                                    + "[[services.id_card.materials]]", 1), encoding="utf-8")
    async with database.session() as session:
        await load_catalog(session, read_catalog(catalog), clock.now())
    env = await make_env(database, clock, api, safe=False)
    citizen = Citizen(env)
    await citizen.say("身份证")
    notice = await citizen.pick("居民身份证")
    assert len(citizen.passive.encode()) <= 2048 and citizen.rest
    assert "第1项证明材料" in citizen.passive and "第40项证明材料" in notice
    assert "材料已备齐" in citizen.rest[-1]
    sent = len(api.texts)
    assert await citizen.resend() == citizen.passive         # WeChat's retry: first part again
    assert len(api.texts) == sent                            # ...and the rest not twice
    await env.channel.close()
    await env.http.aclose()


# --- one-time subscription messages (no template message for reminders) ------------------------

CONSENT_LINK = re.compile(r'<a href="(https://mp\.weixin\.qq\.com/mp/subscribemsg\?[^"]+)">([^<]*)</a>')
PUBLIC_URL = "https://yuyue.example.gov.cn"


async def test_consent_collected_with_the_booking_then_used_for_one_reminder(
        database: Database, clock: ManualClock, api: FakeWechatApi) -> None:
    async with database.session() as session:
        await load_demo(session, clock.now())
    env = await make_env(database, clock, api, safe=True, subscribe_template_id="SUBS-TPL",
                         public_url=PUBLIC_URL)
    citizen = Citizen(env)
    confirmation = await book_by_number(citizen)
    assert await citizen.resend() == confirmation            # WeChat's retry: the same link
    [(url, label), (_closure_url, closure_label)] = CONSENT_LINK.findall(confirmation)
    assert "提醒" in label and "停办" in closure_label
    link = urlsplit(url.replace("&amp;", "&"))
    asked = {key: values[0] for key, values in parse_qs(link.query).items()}
    assert link.fragment == "wechat_redirect"
    assert asked["action"] == "get_confirm" and asked["appid"] == APP_ID
    assert asked["template_id"] == "SUBS-TPL" and asked["redirect_url"] == f"{PUBLIC_URL}/wechat/consent"
    assert re.fullmatch(r"[A-Za-z0-9]{1,128}", asked["reserved"])
    assert 0 <= int(asked["scene"]) <= 10000

    # WeChat sends the browser back with the citizen's answer (here: to our app directly).
    answer = {"openid": OPENID, "template_id": "SUBS-TPL", "scene": asked["scene"],
              "reserved": asked["reserved"]}
    declined = await env.http.get("/wechat/consent", params=answer | {"action": "cancel"})
    assert declined.status_code == 200 and "没有开启提醒" in declined.text
    assert await count(database, NotificationConsent) == 0
    other = "1" if asked["reserved"][-1] != "1" else "2"
    forged = [answer | {"openid": "oSomebodyElse"}, answer | {"reserved": asked["reserved"][:-1] + other},
              answer | {"reserved": "²" + asked["reserved"]}, answer | {"reserved": "x"},
              answer | {"template_id": "OTHER"}, answer | {"scene": "0"},
              answer | {"reserved": "1" + asked["reserved"]}, {"openid": OPENID, "action": "confirm"}]
    for params in forged:
        refused = await env.http.get("/wechat/consent", params=params | {"action": "confirm"})
        assert refused.status_code == 403 and "链接无效" in refused.text, params
    assert await count(database, NotificationConsent) == 0
    assert (await env.http.head("/wechat/consent", params=answer | {"action": "confirm"})
            ).status_code == 200
    assert await count(database, NotificationConsent) == 0      # a HEAD request grants nothing
    for _ in range(2):                   # a reload of the page is still one consent
        granted = await env.http.get("/wechat/consent", params=answer | {"action": "confirm"})
        assert granted.status_code == 200 and "已开启" in granted.text
    assert await count(database, NotificationConsent) == 1

    # The evening before, WeChat says the customer-service window is closed: the consent is
    # used. The reminder two hours before finds none left and is recorded as undeliverable.
    api.out_of_window.add(OPENID)
    dispatcher = Dispatcher(database=database, centre=env.app.centre, settings=env.app.settings,
                            clock=clock, senders={"wechat": env.channel.sender})
    clock.set(local(2026, 11, 23, 18))
    assert (await dispatcher.drain()).sent == 1
    [sent] = api.sent("message/template/subscribe")
    assert sent["touser"] == OPENID and sent["template_id"] == "SUBS-TPL"
    assert sent["scene"] == asked["scene"] and sent["title"] == "预约提醒"
    code = re.search(r"预约码：([A-Z0-9]{6})", confirmation)
    assert code is not None and code.group(1) in sent["data"]["content"]["value"]
    assert len(sent["data"]["content"]["value"]) <= 200
    clock.set(local(2026, 11, 24, 7, 5))
    assert (await dispatcher.drain()).undeliverable == 1
    async with database.read() as session:
        reminders = (await session.scalars(select(Outbox).where(Outbox.kind == "reminder")
                                           .order_by(Outbox.due_at))).all()
    assert [r.status for r in reminders] == [OutboxStatus.SENT, OutboxStatus.UNDELIVERABLE]
    assert "subscription" in (reminders[1].last_error or "")
    await env.channel.close()
    await env.http.aclose()


async def test_a_consent_given_for_a_closure_notice_is_kept_for_it(
        database: Database, clock: ManualClock, api: FakeWechatApi) -> None:
    async with database.session() as session:
        services = await load_demo(session, clock.now())
    env = await make_env(database, clock, api, safe=False, subscribe_template_id="SUBS-TPL",
                         public_url=PUBLIC_URL)
    confirmation = await book_by_number(Citizen(env))
    links = CONSENT_LINK.findall(confirmation)
    assert len(links) == 2
    scenes = []
    for url, _label in links:           # the citizen allows both: a reminder and a closure notice
        asked = {k: v[0] for k, v in parse_qs(urlsplit(url.replace("&amp;", "&")).query).items()}
        scenes.append(int(asked["scene"]))
        granted = await env.http.get("/wechat/consent", params={
            "openid": OPENID, "template_id": "SUBS-TPL", "scene": asked["scene"],
            "reserved": asked["reserved"], "action": "confirm"})
        assert granted.status_code == 200 and "已开启" in granted.text
    assert scenes[0] < 5000 <= scenes[1] <= 10000
    # A closure link's signature does not stand for a reminder's scene, nor the other way.
    asked = {k: v[0] for k, v in parse_qs(urlsplit(links[1][0].replace("&amp;", "&")).query).items()}
    forged = await env.http.get("/wechat/consent", params={
        "openid": OPENID, "template_id": "SUBS-TPL", "scene": str(scenes[0]),
        "reserved": asked["reserved"], "action": "confirm"})
    assert forged.status_code == 403
    assert await count(database, NotificationConsent) == 2

    api.out_of_window.add(OPENID)
    dispatcher = Dispatcher(database=database, centre=env.app.centre, settings=env.app.settings,
                            clock=clock, senders={"wechat": env.channel.sender})
    clock.set(local(2026, 11, 23, 18))
    assert (await dispatcher.drain()).sent == 1                  # the evening reminder
    clock.set(local(2026, 11, 24, 7, 5))
    assert (await dispatcher.drain()).undeliverable == 1         # not the closure's consent
    async with database.session() as session:
        await closures.apply_closure(session, env.app.centre, clock.now(),
                                     starts_at=local(2026, 11, 24), ends_at=local(2026, 11, 25),
                                     reason="设备检修", actor="staff:1",
                                     service_id=services["id_card"].id)
    assert (await dispatcher.drain()).sent == 1
    sent = api.sent("message/template/subscribe")
    assert [int(m["scene"]) for m in sent] == scenes
    assert "设备检修" in sent[1]["data"]["content"]["value"] + sent[1]["title"]
    await env.channel.close()
    await env.http.aclose()


async def test_no_consent_link_when_a_reminder_template_is_configured(
        database: Database, clock: ManualClock, api: FakeWechatApi) -> None:
    async with database.session() as session:
        await load_demo(session, clock.now())
    env = await make_env(database, clock, api, safe=False, subscribe_template_id="SUBS-TPL",
                         public_url=PUBLIC_URL, reminder_template_id="TPL-REMIND")
    confirmation = await book_by_number(Citizen(env))
    assert "预约成功" in confirmation and "subscribemsg" not in confirmation
    await env.channel.close()
    await env.http.aclose()


# --- a manager on WeChat ------------------------------------------------------------------------


async def test_manager_gets_figures_and_the_chart_as_an_image(
        database: Database, clock: ManualClock, api: FakeWechatApi) -> None:
    async with database.session() as session:
        await load_demo(session, clock.now())
    env = await make_env(database, clock, api, safe=True, managers=(f"wechat:{OPENID}",))
    manager = Citizen(env)
    await manager.event("event_subscribe")
    assert "预约量" in await manager.say("/stats week") and not api.uploads
    chart = await manager.say("／stats chart month")
    assert "每日预约、失约与号源利用率" in chart
    [(filename, content, mime)] = api.uploads.values()
    assert filename.endswith(".png") and mime == "image/png" and content.startswith(b"\x89PNG")
    [image] = [b for b in api.sent("message/custom/send") if b["msgtype"] == "image"]
    assert image["touser"] == OPENID and image["image"]["media_id"] in api.uploads
    # A retry: the same answer, and no second image.
    assert (await manager.resend()).strip() == chart.strip() and len(api.uploads) == 1
    assert "无法发送表格" in await manager.say("/export month")
    stranger = Citizen(env, "oStranger_0000000000000000000")
    assert "仅对授权的中心负责人开放" in await stranger.say("/stats", msg_id=77)
    assert "仅对授权的中心负责人开放" in await stranger.say("/stats chart", msg_id=78)
    assert len(api.uploads) == 1
    await env.channel.close()
    await env.http.aclose()


# --- who it is for: the account's people (为谁预约, 添加办事人, 我的办事人) ----------------------------


async def test_booking_for_a_parent_over_wechat_by_numbers(env: Env) -> None:
    citizen = Citizen(env)
    await book_by_number(citizen)
    for label, expected in [("预约办事", "青溪镇便民服务中心"), ("便民服务中心", "社会保障卡"),
                            ("社会保障卡", "一次性告知"), ("材料已备齐", "为谁预约"),
                            ("添加办事人", "新办事人是您的"), ("父母", "授权"),
                            ("我已获授权", "真实姓名")]:
        assert expected in await citizen.pick(label), (label, citizen.text)
    for typed, expected in [("李秀华", "手机号"), ("13900001111", "身份证号"),
                            (valid_id("11010519520303002"), "11月24日")]:
        assert expected in await citizen.say(typed), (typed, citizen.text)
    for label, expected in [("11月24日", "上午"), ("上午", "09:15-09:30"),
                            ("09:15-09:30", "请确认预约信息")]:
        assert expected in await citizen.pick(label), (label, citizen.text)
    assert "李*华" in citizen.text and "李秀华" not in citizen.text
    assert "预约成功" in await citizen.tap("确认预约")
    shown = await citizen.pick("我的办事人")
    assert "张* · 身份证 110…002X · 本人" in shown and "李*华" in shown and "父母" in shown


async def test_the_custom_menu_opens_my_people(database: Database, clock: ManualClock,
                                                api: FakeWechatApi) -> None:
    """The 我的办事人 button of the custom menu (key ``people``), pressed over the signed and
    encrypted webhook, opens the same 我的办事人 as the chat's main menu."""
    async with database.session() as session:
        await load_demo(session, clock.now())
    env = await make_env(database, clock, api, safe=True)
    citizen = Citizen(env)
    await citizen.event("event_subscribe")
    [key] = [sub["key"] for button in build_menu("zh-CN")["button"]
             for sub in button.get("sub_button", [button]) if sub["name"] == "我的办事人"]
    shown = await citizen.event("event_click", EventKey=key)
    assert "您还没有登记办事人" in shown and "添加办事人" in shown, shown
    assert "新办事人是您的" in await citizen.pick("添加办事人")
    env.clock.advance(seconds=1)
    from_chat = await citizen.say("主菜单")
    assert "我的办事人" in from_chat
    assert "您还没有登记办事人" in await citizen.pick("我的办事人")
    await env.channel.close()
    await env.http.aclose()
# --- screens for a phone, 长辈 mode, everyday words (issue 20) ----------------------------------


async def test_slot_lists_fit_one_reply_and_end_with_back_and_menu(env: Env) -> None:
    citizen = Citizen(env)
    await citizen.event("event_subscribe")
    for label in ("预约办事", "便民服务中心", "居民身份证", "材料已备齐", "11月24日"):
        await citizen.pick(label)
    assert "请先选上午或下午" in citizen.text
    for half in ("上午", "下午"):
        await citizen.pick(half)
        assert citizen.rest == [], "one passive reply, no second message"
        labels = [label for _, _, _, label in LINK.findall(citizen.passive)]
        assert labels[-2:] == ["返回", "主菜单"] and len(labels) <= 12
        await citizen.pick("返回")
    # Everyday words over WeChat: 看牙 finds the dental clinic; 长辈模式 shows the phone.
    assert "口腔科门诊" in await citizen.say("我想看牙")
    answer = await citizen.say("长辈模式")
    assert "已切换为长辈模式" in answer and "0571-8800 1234" in answer


async def test_booking_a_named_expert_by_number_replies(env: Env) -> None:
    """WeChat lists the doctors as numbered links; the citizen types the numbers."""
    citizen = Citizen(env)
    assert "预约服务助手" in await citizen.event("event_subscribe")
    for label, expected in [("预约办事", "门诊部"), ("门诊部", "内科专家门诊"),
                            ("内科专家门诊", "一次性告知"), ("材料已备齐", "李华 副主任医师（内分泌科）"),
                            ("李华 副主任医师", "11月24日"), ("11月24日", "上午"), ("上午", "08:00-08:15 李华"),
                            ("08:00-08:15 李华", "已为您保留这个号10分钟"), ("同意并继续", "真实姓名")]:
        assert expected in await citizen.pick(label), (label, citizen.text)
    for typed, expected in [("张三", "手机号"), ("13812345678", "身份证号"),
                            (valid_id(), "医生：李华 副主任医师")]:
        assert expected in await citizen.say(typed)
    assert "医生：李华 副主任医师" in await citizen.tap("确认预约")
    async with env.database.read() as session:
        booked = await session.scalar(select(Appointment))
        assert booked is not None and booked.resource_id is not None
