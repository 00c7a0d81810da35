"""Template message values written as their keyword types require, checked by the fake WeChat
API as WeChat checks them (47003 otherwise), and a closure notice that carries what a citizen
needs: the service, the time, the place, the code and the reason, each in a field of its own."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from bot.channels import Unreachable
from bot.dispatch import Dispatcher
from bot.wechat.templates import TemplateValueError, keyword_type, template_value
from storage import closures
from storage.clock import ManualClock
from storage.db import Database
from storage.models import Service
from storage.settings import SettingsError, load_settings
from tests.fakes.wechat_api import TEMPLATE_RULES, FakeWechatApi
from tests.helpers import load_demo, local, valid_id
from tests.test_wechat_webhook import LINK, OPENID, Citizen, book_by_number, make_env

SHANGHAI = ZoneInfo("Asia/Shanghai")
FRIDAY = dt.datetime(2026, 12, 4, 9, 0, tzinfo=SHANGHAI)


def test_the_keyword_type_is_the_letters_before_the_digits() -> None:
    assert [keyword_type(k) for k in ("thing3", "character_string12", "time2", "phrase")] == [
        "thing", "character_string", "time", "phrase"]


@pytest.mark.parametrize(("keyword", "text", "instant", "value"), [
    ("time2", "12月4日 周五 09:00", FRIDAY, "2026年12月4日 09:00"),
    ("date7", "12月4日 周五 09:00", FRIDAY, "2026年12月4日"),
    ("thing1", "居民身份证办理（首次申领/换领/补领/临时身份证）", None, "居民身份证办理（首次申领/换领/补领/…"),
    ("thing5", "因设备  检修\n停办", None, "因设备 检修 停办"),
    ("character_string4", "预约码 ABC234", None, "ABC234"),
    ("character_string4", "X" * 40, None, "X" * 32),
    ("phrase3", "已取消 (centre)", None, "已取消"),
    ("phrase3", "因设备检修停办", None, "因设备检修"),
    ("number6", "第 12 号", None, "12"),
    ("letter8", "A-B c", None, "ABc"),
    ("symbol9", "a-b+c*d!e?f", None, "-+*!?"),
    ("name10", "欧阳娜娜娜娜娜娜娜娜娜", None, "欧阳娜娜娜娜娜娜娜娜"),
    ("name10", "Alexandra Catherine Smith", None, "Alexandra Catherine"),
    ("amount11", "费用 1,280.50 元", None, "1280.50元"),
    ("phone_number12", "0571-8888 6666", None, "0571-88886666"),
    ("car_number13", "浙A 12345", None, "浙A12345"),
])
def test_each_keyword_type_gets_a_value_wechat_takes(keyword: str, text: str,
                                                      instant: dt.datetime | None, value: str) -> None:
    written = template_value(keyword, text, instant)
    assert written == value
    assert TEMPLATE_RULES[keyword_type(keyword)].fullmatch(written), written


@pytest.mark.parametrize(("keyword", "text"), [
    ("time2", "12月4日 周五 09:00"),          # no instant: the text alone is not a time
    ("phrase3", "closed"), ("number6", "none"), ("letter8", "一二三"), ("amount11", "免费"),
])
def test_a_value_with_nothing_that_fits_is_refused_before_sending(keyword: str, text: str) -> None:
    with pytest.raises(TemplateValueError):
        template_value(keyword, text)
    assert issubclass(TemplateValueError, Unreachable)


@pytest.mark.parametrize(("keyword", "good", "bad"), [
    ("time2", "15:01", "12月4日 周五 09:00"), ("time2", "2019年10月1日 15:01", "25:00"),
    ("date3", "2019年10月1日", "2019-10-01"), ("thing1", "二十个字以内", "超" * 21),
    ("character_string4", "ABC-234", "预约码ABC"), ("phrase5", "已取消", "cancelled"),
    ("number6", "12.5", "12a"), ("letter7", "abc", "ab1"), ("symbol8", "-+", "-+a"),
    ("name9", "张三", "张" * 11), ("amount10", "¥12.50", "12元5角"),
    ("phone_number11", "+86-0571-88886666", "call 110"), ("car_number12", "浙A12345", "浙A 12345"),
])
async def test_the_fake_wechat_refuses_a_value_its_type_does_not_take(
        wechat_api: FakeWechatApi, keyword: str, good: str, bad: str) -> None:
    async with httpx.AsyncClient(base_url=wechat_api.url) as http:
        token = (await http.post("/cgi-bin/stable_token", json={
            "grant_type": "client_credential", "appid": "wx49f0ab532d5d035a",
            "secret": "fake-app-secret-for-tests-0123456"})).json()["access_token"]
        answers = []
        for value in (good, bad):
            response = await http.post("/cgi-bin/message/template/send",
                                       params={"access_token": token},
                                       json={"touser": OPENID, "template_id": "T",
                                             "data": {keyword: {"value": value}}})
            answers.append(response.json()["errcode"])
    assert answers == [0, 47003]


async def test_a_closure_notice_carries_service_time_place_code_and_reason(
        database: Database, clock: ManualClock, wechat_api: FakeWechatApi) -> None:
    async with database.session() as session:
        await load_demo(session, clock.now())
    env = await make_env(database, clock, wechat_api, safe=True, notice_template_id="TPL-NOTICE",
                         reminder_template_id="TPL-REMIND")
    confirmation = await book_by_number(Citizen(env))
    code = re.search(r"预约码：([A-Z0-9]{6})", confirmation)
    assert code is not None
    async with database.session() as session:
        service = await session.scalar(select(Service).where(Service.code == "id_card"))
        assert service is not None
        await closures.apply_closure(session, env.app.centre, clock.now(),
                                     starts_at=local(2026, 11, 24), ends_at=local(2026, 11, 25),
                                     reason="因设备检修，当日停办身份证业务，敬请谅解", actor="staff:1",
                                     service_id=service.id)
    wechat_api.out_of_window.add(OPENID)          # WeChat says the 48-hour window is closed
    dispatcher = Dispatcher(database=database, centre=env.app.centre, settings=env.app.settings,
                            clock=clock, senders={"wechat": env.channel.sender})
    assert (await dispatcher.drain()).sent >= 1
    [notice] = [b for b in wechat_api.sent("message/template/send")
                if b["template_id"] == "TPL-NOTICE"]
    data = {key: item["value"] for key, item in notice["data"].items()}
    assert data["thing1"].startswith("居民身份证")
    assert data["time2"] == "2026年11月24日 09:00"
    assert data["thing3"] and data["character_string4"] == code.group(1)
    assert data["thing5"] == "因设备检修，当日停办身份证业务，敬请谅解"
    assert all(len(value) <= 20 for key, value in data.items() if key.startswith("thing"))
    await env.channel.close()
    await env.http.aclose()


def test_a_time_keyword_must_take_a_time(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('[wechat]\nreminder_template_fields = ["thing1=service", "time2=summary"]\n',
                    encoding="utf-8")
    with pytest.raises(SettingsError, match="time or date keyword takes when or sent"):
        load_settings(path)


# --- whom a booking is for, when the account booked for someone else -----------------------

SLOT = re.compile(r"\d\d:\d\d-\d\d:\d\d")


async def _pick_day_and_slot(citizen: Citizen, day: str) -> str:
    """Pick ``day``, the morning and its first free slot; the confirmation asked for."""
    assert "上午" in await citizen.pick(day), citizen.text
    await citizen.pick("上午")
    first = next(label for _, _, _, label in LINK.findall(citizen.text) if SLOT.search(label))
    return await citizen.pick(first)


async def _book_self_and_parent(citizen: Citizen, day: str) -> tuple[str, str]:
    """The holder books an ID card for themself and a social-security card for their parent
    李秀华, both on ``day``; the two booking codes (own, parent's)."""
    await citizen.event("event_subscribe")
    for label in ("预约办事", "便民服务中心", "居民身份证", "材料已备齐"):
        await citizen.pick(label)
    await _pick_day_and_slot(citizen, day)
    assert "真实姓名" in await citizen.pick("同意并继续")
    for typed in ("张三", "13812345678", valid_id()):
        await citizen.say(typed)
    own = CODE.search(await citizen.tap("确认预约"))
    for label, expected in [("预约办事", "便民服务中心"), ("便民服务中心", "社会保障卡"),
                            ("社会保障卡", "一次性告知"), ("材料已备齐", "为谁预约"),
                            ("添加办事人", "新办事人是您的"), ("父母", "授权"),
                            ("我已获授权", "真实姓名")]:
        assert expected in await citizen.pick(label), (label, citizen.text)
    for typed in ("李秀华", "13900001111", valid_id("11010519520303002")):
        await citizen.say(typed)
    assert "请确认预约信息" in await _pick_day_and_slot(citizen, day)
    parents = CODE.search(await citizen.tap("确认预约"))
    assert own is not None and parents is not None, citizen.text
    return own.group(1), parents.group(1)


CODE = re.compile(r"预约码：([A-Z0-9]{6})")


@pytest.mark.parametrize("mapping", [
    ("thing1=service", "time2=when", "thing3=place", "character_string4=code"),
    ("thing1=service", "time2=when", "thing3=place", "character_string4=code", "thing5=person"),
], ids=["no-person-keyword", "person-keyword"])
async def test_a_reminder_template_names_the_relative_it_was_booked_for(
        database: Database, clock: ManualClock, wechat_api: FakeWechatApi,
        mapping: tuple[str, ...]) -> None:
    async with database.session() as session:
        await load_demo(session, clock.now())
    env = await make_env(database, clock, wechat_api, safe=True, reminder_template_id="TPL-REMIND",
                         reminder_template_fields=mapping)
    own, parents = await _book_self_and_parent(Citizen(env), "11月27日")
    dispatcher = Dispatcher(database=database, centre=env.app.centre, settings=env.app.settings,
                            clock=clock, senders={"wechat": env.channel.sender})
    await dispatcher.drain()
    # The evening-before reminders go out on Thursday 26 at 18:00, three days after the citizen
    # last wrote: WeChat's 48-hour window is closed, so they go as template messages.
    clock.set(local(2026, 11, 26, 18, 1))
    before = len(wechat_api.texts)
    assert (await dispatcher.drain()).sent == 2
    assert len(wechat_api.texts) == before, "no customer-service message outside the window"
    sent = [b for b in wechat_api.sent("message/template/send") if b["template_id"] == "TPL-REMIND"]
    data = {item["data"]["character_string4"]["value"]:
            {key: value["value"] for key, value in item["data"].items()} for item in sent}
    assert set(data) == {own, parents}
    assert all(len(value) <= 20 for each in data.values()
               for key, value in each.items() if key.startswith("thing"))
    posted = str(sent)
    assert "李秀华" not in posted and "张三" not in posted and "13900001111" not in posted
    if "thing5=person" in mapping:
        assert data[parents]["thing5"] == "父母 李*华"
        assert data[parents]["thing1"].startswith("社会保障卡")
        assert data[own]["thing5"] == "本人"
    else:
        assert data[parents]["thing1"].startswith("为父母 李*华：社会保障卡")
    assert data[own]["thing1"].startswith("居民身份证") and "李*华" not in str(data[own])
    await env.channel.close()
    await env.http.aclose()
