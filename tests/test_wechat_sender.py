"""Outgoing WeChat messages over real HTTP to the fake WeChat API: the shared access token,
customer-service messages inside the 48-hour window, template messages outside it, the menu."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from bot import cli
from bot.channels import TryLater, Unreachable
from bot.wechat import create_menu
from bot.wechat.api import (
    TOKEN_KEY,
    TOKEN_LEASE,
    AccessTokens,
    WechatApiError,
    call_api,
    redact_access_tokens,
)
from bot.wechat.menu import MenuError, build_menu, menu_problems
from bot.wechat.sender import WechatSender
from bot.wiring import App
from handlers.core import Choice, Reply
from storage.clock import ManualClock
from storage.db import Database
from storage.models import ChannelIdentity, NotificationConsent
from storage.reach import WECHAT_CS_MARGIN, WECHAT_CS_WINDOW, grant_consent
from storage.settings import Settings, WechatSettings
from storage.shared import read_value, take_lease, write_value
from tests.fakes.wechat_api import APP_ID, APP_SECRET, FakeWechatApi
from tests.helpers import account, make_centre

Http = httpx.AsyncClient
OPENID = "oXyZ_12AbCdEfGhIjKlMnOpQrStU"
REMINDER = [Reply("预约提醒：明天 09:00 居民身份证办理\n预约码：ABC234\n请带齐：居民户口簿",
                  ((Choice("取消预约", "g:cancel:ABC234"),),))]
FIELDS = {"service": "居民身份证办理（首次申领/换领/补领/临时身份证）", "when": "2026-11-24 09:00",
          "place": "一楼 公安综合窗口 3号", "code": "ABC234",
          "starts_at": "2026-11-24T01:00:00+00:00"}


@pytest.fixture
async def api() -> AsyncIterator[FakeWechatApi]:
    async with FakeWechatApi() as fake:
        yield fake


def wechat_settings(api: FakeWechatApi, **changes: str) -> WechatSettings:
    return WechatSettings(app_id=APP_ID, app_secret=APP_SECRET, token="t",
                          api_base_url=api.url, **changes)  # type: ignore[arg-type]


def tokens_for(settings: WechatSettings, database: Database, clock: ManualClock,
               http: httpx.AsyncClient, owner: str = "p1", **kw: object) -> AccessTokens:
    return AccessTokens(settings, database, clock, http, owner=owner, **kw)  # type: ignore[arg-type]


def sender_for(settings: WechatSettings, database: Database, clock: ManualClock,
               http: httpx.AsyncClient) -> WechatSender:
    tokens = tokens_for(settings, database, clock, http)
    return WechatSender(settings, database, clock, tokens)


async def citizen(database: Database, when: dt.datetime) -> None:
    """A WeChat follower whose last message was at ``when``."""
    async with database.session() as session:
        identity = await account(session, when, user=OPENID, channel="wechat")
        identity.last_inbound_at = when


# --- the access token ---------------------------------------------------------------------------


async def test_token_is_fetched_once_and_survives_a_restart(
        api: FakeWechatApi, http: Http, database: Database, clock: ManualClock) -> None:
    settings = wechat_settings(api)
    first = tokens_for(settings, database, clock, http)
    token = await first.get()
    assert await first.get() == token
    restarted = tokens_for(settings, database, clock, http, owner="p2")   # a new process
    assert await restarted.get() == token
    assert api.count("stable_token") == 1
    stored = next(c.body for c in api.calls if c.path == "stable_token")
    assert stored["secret"] == "***" and stored["force_refresh"] is False
    async with database.read() as session:
        row = await read_value(session, TOKEN_KEY)
        assert row is not None and row.expires_at == clock.now() + dt.timedelta(seconds=7200)


async def test_token_is_refreshed_in_its_last_five_minutes(
        api: FakeWechatApi, http: Http, database: Database, clock: ManualClock) -> None:
    tokens = tokens_for(wechat_settings(api), database, clock, http)
    await tokens.get()
    clock.advance(seconds=7200 - 301)
    await tokens.get()
    assert api.count("stable_token") == 1
    clock.advance(seconds=2)
    api.expire_token()          # WeChat hands out the next token now
    assert await tokens.get() != "TOKEN-1"
    assert api.count("stable_token") == 2


async def test_only_one_process_refreshes(
        api: FakeWechatApi, http: Http, database: Database, clock: ManualClock) -> None:
    settings = wechat_settings(api)
    async with database.session() as session:
        assert await take_lease(session, TOKEN_LEASE, "other", clock.now(),
                                dt.timedelta(seconds=30))
        # The other process's token is in its last minutes: use it while it refreshes.
        await write_value(session, TOKEN_KEY, "OLD", clock.now(),
                          expires_at=clock.now() + dt.timedelta(minutes=2))
    tokens = tokens_for(settings, database, clock, http)
    assert await tokens.get() == "OLD"

    async def other_process_finishes(_seconds: float) -> None:
        async with database.session() as session:
            await write_value(session, TOKEN_KEY, "NEW", clock.now(),
                              expires_at=clock.now() + dt.timedelta(hours=2))

    clock.advance(minutes=3)    # now "OLD" has expired, and the other process is refreshing
    async with database.session() as session:
        assert await take_lease(session, TOKEN_LEASE, "other", clock.now(),
                                dt.timedelta(seconds=30))
    waiting = tokens_for(settings, database, clock, http, wait=other_process_finishes)
    assert await waiting.get() == "NEW"
    assert api.count("stable_token") == 0


async def test_an_abandoned_lease_expires(
        api: FakeWechatApi, http: Http, database: Database, clock: ManualClock) -> None:
    async with database.session() as session:
        await take_lease(session, TOKEN_LEASE, "crashed", clock.now(), dt.timedelta(seconds=30))

    async def time_passes(seconds: float) -> None:
        clock.advance(seconds=10)

    tokens = tokens_for(wechat_settings(api), database, clock, http, wait=time_passes)
    assert (await tokens.get()).startswith("TOKEN-")
    assert api.count("stable_token") == 1


async def test_wechat_down_is_try_later(http: httpx.AsyncClient, database: Database,
                                        clock: ManualClock) -> None:
    async with FakeWechatApi() as gone:
        settings = wechat_settings(gone)
    tokens = tokens_for(settings, database, clock, http)
    with pytest.raises(TryLater):
        await tokens.get()


# --- customer-service messages ------------------------------------------------------------------


async def test_inside_the_window_a_customer_service_message(
        api: FakeWechatApi, http: Http, database: Database, clock: ManualClock) -> None:
    await citizen(database, clock.now() - dt.timedelta(hours=47))
    sender = sender_for(wechat_settings(api), database, clock, http)
    await sender.deliver(OPENID, REMINDER, kind="reminder")
    [sent] = api.sent("message/custom/send")
    assert sent["touser"] == OPENID and sent["msgtype"] == "text"
    assert "预约码：ABC234" in sent["text"]["content"]
    assert 'msgmenuid=g:cancel:ABC234">取消预约</a>' in sent["text"]["content"]


async def test_the_customer_service_window_ends_where_storage_says(
        api: FakeWechatApi, http: Http, database: Database, clock: ManualClock) -> None:
    sender = sender_for(wechat_settings(api), database, clock, http)
    await citizen(database, clock.now() - (WECHAT_CS_WINDOW - WECHAT_CS_MARGIN) + dt.timedelta(seconds=1))
    await sender.deliver(OPENID, [Reply("工作人员：材料齐了")], kind="relay")
    assert api.texts == ["工作人员：材料齐了"]
    clock.advance(seconds=1)                  # the same edge at which staff may no longer answer
    with pytest.raises(Unreachable, match="48-hour"):
        await sender.deliver(OPENID, [Reply("工作人员：还在吗")], kind="relay")


async def test_expired_token_forces_one_refresh_and_retry(
        api: FakeWechatApi, http: Http, database: Database, clock: ManualClock) -> None:
    await citizen(database, clock.now())
    sender = sender_for(wechat_settings(api), database, clock, http)
    await sender.deliver(OPENID, [Reply("一")], kind="relay")
    api.expire_token()
    await sender.deliver(OPENID, [Reply("二")], kind="relay")
    assert api.texts == ["一", "二"]
    assert [c.errcode for c in api.calls if c.path == "message/custom/send"] == [0, 40001, 0]
    assert api.count("stable_token") == 2


async def test_rejected_token_that_wechat_still_returns_is_force_refreshed(
        api: FakeWechatApi, http: Http, database: Database, clock: ManualClock) -> None:
    await citizen(database, clock.now())
    sender = sender_for(wechat_settings(api), database, clock, http)
    await sender.deliver(OPENID, [Reply("一")])
    api.fail_next("message/custom/send", 40001)
    await sender.deliver(OPENID, [Reply("二")])
    modes = [c.body["force_refresh"] for c in api.calls if c.path == "stable_token"]
    assert modes == [False, False, True] and api.texts == ["一", "二"]


async def test_45015_falls_back_to_the_reminder_template(
        api: FakeWechatApi, http: Http, database: Database, clock: ManualClock) -> None:
    await citizen(database, clock.now() - dt.timedelta(hours=20))
    api.out_of_window.add(OPENID)
    sender = sender_for(wechat_settings(api, reminder_template_id="TPL-REMIND"), database,
                        clock, http)
    await sender.deliver(OPENID, REMINDER, kind="reminder", fields=FIELDS)
    [template] = api.sent("message/template/send")
    assert template["template_id"] == "TPL-REMIND" and template["touser"] == OPENID
    assert template["data"] == {"thing1": {"value": "居民身份证办理（首次申领/换领/补领/…"},
                                "time2": {"value": "2026年11月24日 09:00"},
                                "thing3": {"value": "一楼 公安综合窗口 3号"},
                                "character_string4": {"value": "ABC234"}}
    assert api.texts == []


async def test_45015_without_a_template_is_undeliverable(
        api: FakeWechatApi, http: Http, database: Database, clock: ManualClock) -> None:
    await citizen(database, clock.now() - dt.timedelta(hours=20))
    api.out_of_window.add(OPENID)
    sender = sender_for(wechat_settings(api), database, clock, http)
    with pytest.raises(Unreachable, match="48-hour"):
        await sender.deliver(OPENID, REMINDER, kind="reminder")


async def test_outside_the_window_template_or_undeliverable(
        api: FakeWechatApi, http: Http, database: Database, clock: ManualClock) -> None:
    await citizen(database, clock.now() - dt.timedelta(hours=48))
    settings = wechat_settings(api, reminder_template_id="TPL-REMIND", notice_template_id="TPL-N")
    sender = sender_for(settings, database, clock, http)
    with pytest.raises(Unreachable, match="48-hour"):
        await sender.deliver(OPENID, [Reply("工作人员：材料齐了")], kind="relay")
    with pytest.raises(Unreachable, match="needs 'service'"):
        await sender.deliver(OPENID, REMINDER, kind="reminder")      # no template values given
    await sender.deliver(OPENID, [Reply("因设备检修，11月24日停办身份证业务\n可改约其他日期")],
                         kind="closure")
    [notice] = api.sent("message/template/send")
    assert notice["template_id"] == "TPL-N"
    # A notice about no appointment: its first line for service and reason, sent for the time.
    assert notice["data"] == {"thing1": {"value": "因设备检修，11月24日停办身份证业务"},
                              "time2": {"value": "2026年11月23日 09:00"},
                              "thing3": {"value": "-"}, "character_string4": {"value": "-"},
                              "thing5": {"value": "因设备检修，11月24日停办身份证业务"}}
    assert api.count("message/custom/send") == 0


async def consent(database: Database, clock: ManualClock, scene: int) -> None:
    async with database.session() as session:
        await grant_consent(session, "wechat", OPENID, "SUBS-TPL", scene, None, clock.now())


async def unused_consents(database: Database) -> list[int]:
    async with database.read() as session:
        return list((await session.scalars(select(NotificationConsent.scene).where(
            NotificationConsent.used_at.is_(None)))).all())


async def test_outside_the_window_one_consent_is_one_subscription_message(
        api: FakeWechatApi, http: Http, database: Database, clock: ManualClock) -> None:
    await citizen(database, clock.now() - dt.timedelta(days=3))
    sender = sender_for(wechat_settings(api, subscribe_template_id="SUBS-TPL"), database, clock,
                        http)
    await consent(database, clock, scene=7)
    with pytest.raises(Unreachable, match="48-hour"):          # a relay is not what was allowed
        await sender.deliver(OPENID, [Reply("工作人员：材料齐了")], kind="relay")
    assert await unused_consents(database) == [7]
    long = [Reply("预约提醒：\n" + "明天 09:00 居民身份证办理，预约码：ABC234。" * 20)]
    await sender.deliver(OPENID, long, kind="reminder", fields=FIELDS)
    [sent] = api.sent("message/template/subscribe")
    assert sent["touser"] == OPENID and sent["template_id"] == "SUBS-TPL" and sent["scene"] == "7"
    assert sent["title"] == "预约提醒"
    content = sent["data"]["content"]["value"]
    assert len(content) == 200 and content.startswith("明天 09:00") and content.endswith("…")
    assert await unused_consents(database) == []
    with pytest.raises(Unreachable, match="one-time subscription"):
        await sender.deliver(OPENID, REMINDER, kind="reminder", fields=FIELDS)
    assert api.count("message/template/subscribe") == 1


async def test_busy_wechat_keeps_the_consent_a_refusal_uses_it(
        api: FakeWechatApi, http: Http, database: Database, clock: ManualClock) -> None:
    await citizen(database, clock.now() - dt.timedelta(days=3))
    sender = sender_for(wechat_settings(api, subscribe_template_id="SUBS-TPL"), database, clock,
                        http)
    await consent(database, clock, scene=7)
    api.fail_next("message/template/subscribe", 45009)
    with pytest.raises(TryLater):
        await sender.deliver(OPENID, REMINDER, kind="closure_cancelled")
    assert await unused_consents(database) == [7]               # kept for the retry
    await sender.deliver(OPENID, REMINDER, kind="closure_cancelled")
    api.fail_next("message/template/subscribe", 48001)         # e.g. no permission yet
    await consent(database, clock, scene=7)                     # allowed again after use
    with pytest.raises(Unreachable, match="48001"):
        await sender.deliver(OPENID, REMINDER, kind="reminder")
    assert await unused_consents(database) == [7]               # nothing used it: kept
    # WeChat says the first is gone (withdrawn): it is dropped and the next one used.
    await consent(database, clock, scene=8)
    api.fail_next("message/template/subscribe", 43101)
    await sender.deliver(OPENID, REMINDER, kind="reminder")
    assert await unused_consents(database) == []
    assert [b["scene"] for b in api.sent("message/template/subscribe")] == ["7", "8"]
    assert [c.body["scene"] for c in api.calls if c.path == "message/template/subscribe"] == \
        ["7", "7", "7", "7", "8"]
    with pytest.raises(Unreachable, match="one-time subscription"):
        await sender.deliver(OPENID, REMINDER, kind="reminder")


async def test_two_senders_at_once_use_one_consent_once(
        api: FakeWechatApi, http: Http, database: Database, clock: ManualClock) -> None:
    await citizen(database, clock.now() - dt.timedelta(days=3))
    sender = sender_for(wechat_settings(api, subscribe_template_id="SUBS-TPL"), database, clock,
                        http)
    await consent(database, clock, scene=7)
    results = await asyncio.gather(*(sender.deliver(OPENID, REMINDER, kind="reminder")
                                     for _ in range(4)), return_exceptions=True)
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, Unreachable) for r in results if r is not None)
    assert len(api.sent("message/template/subscribe")) == 1


async def test_unsubscribed_or_unknown_follower(
        api: FakeWechatApi, http: Http, database: Database, clock: ManualClock) -> None:
    sender = sender_for(wechat_settings(api), database, clock, http)
    with pytest.raises(Unreachable):
        await sender.deliver("oNobody", [Reply("hi")])
    await citizen(database, clock.now())
    api.fail_next("message/custom/send", 43004)
    with pytest.raises(Unreachable, match="43004"):
        await sender.deliver(OPENID, [Reply("hi")])
    async with database.read() as session:
        identity = await session.scalar(select(ChannelIdentity))
        assert identity is not None and identity.unreachable_reason == "wechat 43004"
    with pytest.raises(Unreachable, match="unreachable"):
        await sender.deliver(OPENID, [Reply("hi")])


async def test_rate_limit_is_try_later(
        api: FakeWechatApi, http: Http, database: Database, clock: ManualClock) -> None:
    await citizen(database, clock.now())
    api.fail_next("message/custom/send", 45009)
    with pytest.raises(TryLater):
        sender = sender_for(wechat_settings(api), database, clock, http)
        await sender.deliver(OPENID, [Reply("hi")])


# --- the custom menu ----------------------------------------------------------------------------


async def test_create_menu_uses_the_token_the_running_processes_hold(
        api: FakeWechatApi, http: httpx.AsyncClient, database: Database,
        clock: ManualClock) -> None:
    settings = wechat_settings(api)
    held = await tokens_for(settings, database, clock, http).get()        # `yuyue run`
    created = await create_menu(tokens_for(settings, database, clock, http, owner="cli"),
                                locale="zh-CN")
    [menu] = api.sent("menu/create")
    assert menu == {"button": [
        {"name": "预约", "sub_button": [{"type": "click", "name": "预约办事", "key": "book"},
                                        {"type": "click", "name": "我的预约", "key": "my"},
                                        {"type": "click", "name": "办件进度", "key": "progress"},
                                        {"type": "click", "name": "我的办事人", "key": "people"}]},
        {"type": "click", "name": "办事指南", "key": "guide"},
        {"type": "click", "name": "人工服务", "key": "human"}]}
    assert created == "预约 (预约办事 · 我的预约 · 办件进度 · 我的办事人) / 办事指南 / 人工服务"
    # The stored token, not a second fetch: one refresher, and its token stays valid.
    assert [c.path for c in api.calls].count("stable_token") == 1
    assert {c.access_token for c in api.calls if c.path == "menu/create"} == {held}


async def test_the_fake_wechat_refuses_four_top_level_buttons_as_wechat_does(
        api: FakeWechatApi, http: httpx.AsyncClient, database: Database,
        clock: ManualClock) -> None:
    tokens = tokens_for(wechat_settings(api), database, clock, http)
    four = {"button": [{"type": "click", "name": n, "key": n} for n in "abcd"]}
    with pytest.raises(WechatApiError, match="40016"):
        await call_api(tokens, "menu/create", four)
    with pytest.raises(MenuError, match=r"4 top-level buttons.*40016"):
        await create_menu(tokens, locale="zh-CN", menu=four)      # ours refuses before sending
    assert api.count("menu/create") == 1


@pytest.mark.parametrize(("menu", "problem"), [
    ({"button": []}, "0 top-level buttons"),
    ({"button": [{"name": "x", "sub_button": []}]}, "button 1 has 0 sub-buttons"),
    ({"button": [{"name": "x", "sub_button": [{"type": "click", "name": str(n), "key": "k"}
                                              for n in range(6)]}]}, "has 6 sub-buttons"),
    ({"button": [{"type": "click", "name": "预约办事和查询", "key": "k"}]}, "name of 21 bytes"),
    ({"button": [{"name": "x", "sub_button": [{"type": "click", "name": "我" * 21, "key": "k"}]}]},
     "button 1.1: name of 63 bytes"),
    ({"button": [{"type": "click", "name": "x", "key": "k" * 129}]}, "key must be 1 to 128"),
    ({"button": [{"type": "view", "name": "x", "url": "https://" + "a" * 1017}]},
     "url must be 1 to 1024"),
    ({"button": [{"type": "clack", "name": "x", "key": "k"}]}, "not a WeChat button type"),
])
def test_menus_are_checked_against_wechats_limits(menu: dict[str, object], problem: str) -> None:
    assert any(problem in line for line in menu_problems(menu)), menu_problems(menu)


def test_the_menu_fits_wechat_in_both_languages() -> None:
    for locale in ("zh-CN", "en"):
        assert menu_problems(build_menu(locale)) == [], locale
    assert {b.get("key") for b in build_menu("en")["button"]} >= {"guide", "human"}


async def test_the_menu_command_names_the_buttons_and_explains_a_busy_wechat(
        api: FakeWechatApi, database: Database, clock: ManualClock,
        capsys: pytest.CaptureFixture[str]) -> None:
    settings = dataclasses.replace(Settings(), wechat=wechat_settings(api))
    app = App(settings=settings, database=database, centre=make_centre(), clock=clock)
    assert await cli.cmd_wechat_menu(app, argparse.Namespace()) == cli.EXIT_OK
    assert "WeChat menu created: 预约 (预约办事 · 我的预约 · 办件进度 · 我的办事人) / 办事指南 / 人工服务" \
        in capsys.readouterr().out
    api.fail_next("menu/create", -1)                     # "system busy"
    with pytest.raises(cli.CommandError, match=r"WeChat did not answer .*try again later"):
        await cli.cmd_wechat_menu(app, argparse.Namespace())


def test_the_menu_command_answers_an_unreachable_wechat_in_one_line(
        settings_file: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:          # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("YUYUE_WECHAT__APP_ID", APP_ID)
    monkeypatch.setenv("YUYUE_WECHAT__APP_SECRET", APP_SECRET)
    monkeypatch.setenv("YUYUE_WECHAT__API_BASE_URL", f"http://127.0.0.1:{port}")
    code = cli.main(["--settings", str(settings_file), "wechat", "menu"])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_FAIL and "Traceback" not in out + err
    assert err.strip().splitlines() == [
        "yuyue: WeChat did not answer (stable_token: ConnectError): try again later"]


async def test_access_token_never_reaches_the_log(
        api: FakeWechatApi, http: Http, database: Database, clock: ManualClock,
        caplog: pytest.LogCaptureFixture) -> None:
    redact_access_tokens()
    await citizen(database, clock.now())
    # INFO for httpx explicitly: another test's `yuyue` run may have quietened it. (DEBUG of
    # the DB drivers would show SQL parameters, so no lower.)
    with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="httpx"):
        sender = sender_for(wechat_settings(api), database, clock, http)
        await sender.deliver(OPENID, [Reply("hi")])
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "custom/send" in logged and "TOKEN-1" not in logged and APP_SECRET not in logged
    assert OPENID not in logged and "hi" not in logged.split()


# --- failures nobody would see ------------------------------------------------------------------


async def test_a_refused_template_is_logged_once_with_its_reason(
        api: FakeWechatApi, http: Http, database: Database, clock: ManualClock,
        caplog: pytest.LogCaptureFixture) -> None:
    await citizen(database, clock.now() - dt.timedelta(hours=49))
    sender = sender_for(wechat_settings(api, reminder_template_id="TPL-REMIND"), database,
                        clock, http)
    api.fail_next("message/template/send", 47003, 47003)
    caplog.set_level(logging.WARNING)
    for _ in range(2):
        with pytest.raises(Unreachable, match="47003"):
            await sender.deliver(OPENID, REMINDER, kind="reminder", fields=FIELDS)
    lines = [r.getMessage() for r in caplog.records if "47003" in r.getMessage()]
    assert len(lines) == 1 and "keyword's type" in lines[0]
    assert OPENID[:8] not in lines[0] and "ABC234" not in lines[0]
    clock.advance(minutes=11)
    api.fail_next("message/template/send", 47003)
    with pytest.raises(Unreachable):
        await sender.deliver(OPENID, REMINDER, kind="reminder", fields=FIELDS)
    lines = [r.getMessage() for r in caplog.records if "47003" in r.getMessage()]
    assert len(lines) == 2 and "(and 1 more like it" in lines[1]


@pytest.mark.parametrize(("secret", "allowed", "expected", "fix"), [
    (APP_SECRET, None, "ok    WeChat access token fetched", ""),
    ("wrong-secret", None, "FIX   WeChat refused the access token: stable_token: errcode 40125",
     "the AppSecret is wrong"),
    (APP_SECRET, set(), "FIX   WeChat refused the access token: stable_token: errcode 40164",
     "IP白名单"),
])
async def test_doctor_proves_the_app_secret_and_the_ip_allow_list(
        api: FakeWechatApi, database: Database, clock: ManualClock,
        capsys: pytest.CaptureFixture[str], secret: str, allowed: set[str] | None,
        expected: str, fix: str) -> None:
    api.allowed_ips = allowed
    settings = dataclasses.replace(Settings(), wechat=dataclasses.replace(
        wechat_settings(api, encoding_aes_key="kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"),
        app_secret=secret))
    app = App(settings=settings, database=database, centre=make_centre(), clock=clock)
    code = await cli.cmd_doctor(app, argparse.Namespace())
    out = capsys.readouterr().out
    assert expected in out and fix in out and "Traceback" not in out
    if fix:
        assert code == cli.EXIT_FAIL
    assert APP_SECRET not in out and "wrong-secret" not in out
