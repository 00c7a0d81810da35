"""The WeChat webhook's defences over real HTTP (uvicorn on 127.0.0.1): safe mode cannot be
downgraded to plain, a signed query cannot carry another body, and every refusal is logged
once with its reason."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from sqlalchemy import event

from bot.web import build_web_app
from storage.clock import ManualClock
from storage.db import Database
from storage.models import ProcessedMessage, SignedRequest
from tests.fakes import LocalServer
from tests.fakes.wechat_api import SAMPLE_AES_KEY, SAMPLE_TOKEN, FakeWechatApi, WechatPush
from tests.helpers import load_demo
from tests.test_wechat_webhook import OPENID, Citizen, Env, count, make_env


@asynccontextmanager
async def served(env: Env) -> AsyncIterator[tuple[httpx.AsyncClient, WechatPush]]:
    """The env's web app on a real port, a client for it, and WeChat posting to it."""
    async with LocalServer(build_web_app(env.channel.webhook_routes())) as server, \
            httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        yield http, WechatPush(http, path="/wechat", token=SAMPLE_TOKEN,
                               aes_key=(env.push.crypto and SAMPLE_AES_KEY) or "",
                               now=env.clock.now)
    await env.channel.close()
    await env.http.aclose()


@pytest.fixture
async def manager_env(database: Database, clock: ManualClock, api: FakeWechatApi) -> Env:
    async with database.session() as session:
        await load_demo(session, clock.now())
    return await make_env(database, clock, api, safe=True, managers=(f"wechat:{OPENID}",))


@pytest.fixture
async def api() -> AsyncIterator[FakeWechatApi]:
    async with FakeWechatApi() as fake:
        yield fake


async def test_safe_mode_cannot_be_downgraded_to_plain(manager_env: Env,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    env = manager_env
    manager = Citizen(env)
    async with served(env) as (http, push):
        # One genuine safe-mode request; its query (in every proxy's access log) is reused with
        # a plaintext /stats from the manager's OpenID.
        genuine = push.query()
        assert push.read(await push.post(manager.message("text", Content="你好", MsgId=1),
                                         query=genuine))
        stats = manager.message("text", Content="/stats week", MsgId=2).encode()
        caplog.set_level(logging.WARNING, logger="bot.wechat.webhook")
        for query in (genuine, genuine | {"encrypt_type": "aes"},
                      genuine | {"msg_signature": "0" * 40},
                      genuine | {"encrypt_type": "raw", "msg_signature": "0" * 40}):
            response = await http.post("/wechat", params=query, content=stats)
            assert response.status_code == 403, (query, response.text)
            assert "预约量" not in response.text
        response = await http.post("/wechat", params=genuine | {"encrypt_type": "aes",
                                                                 "msg_signature": "0" * 40},
                                   content=stats)
        assert response.status_code in (400, 403) and "预约量" not in response.text
    assert await count(env.database, ProcessedMessage) == 1
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert any("not encrypted, but safe mode is on" in line for line in refused)
    assert all(OPENID[:8] not in line for line in refused)


async def test_compatibility_mode_is_answered_encrypted(manager_env: Env) -> None:
    """兼容模式: the body has the plain fields and Encrypt; only Encrypt is read."""
    env = manager_env
    manager = Citizen(env)
    async with served(env) as (http, push):
        xml = manager.message("text", Content="/stats week", MsgId=3)
        query = push.query()
        safe = push.crypto
        assert safe is not None
        from wechatpy.crypto import PrpCrypto
        encrypt = PrpCrypto(safe.key).encrypt(xml, push.app_id).decode()
        query |= {"encrypt_type": "aes",
                  "msg_signature": push._sign(SAMPLE_TOKEN, query["timestamp"], query["nonce"],
                                              encrypt)}
        # A plaintext Content that says something else must not be what is answered.
        body = xml.replace("/stats week", "你好").replace(
            "</xml>", f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")
        answer = push.read(await http.post("/wechat", params=query, content=body.encode()))
        assert "预约量" in answer["Content"]


async def test_plain_mode_without_a_key_still_works_and_doctor_warns(
        database: Database, clock: ManualClock, api: FakeWechatApi) -> None:
    async with database.session() as session:
        await load_demo(session, clock.now())
    env = await make_env(database, clock, api, safe=False)
    async with served(env) as (_http, push):
        answer = push.read(await push.post(Citizen(env).message("text", Content="你好", MsgId=4)))
        assert "预约办事" in answer["Content"]


async def test_a_signed_query_cannot_carry_another_body(
        database: Database, clock: ManualClock, api: FakeWechatApi,
        caplog: pytest.LogCaptureFixture) -> None:
    async with database.session() as session:
        await load_demo(session, clock.now())
    env = await make_env(database, clock, api, safe=False)
    # A second server process behind the same proxy: the record is shared through the database.
    other = await make_env(database, clock, api, safe=False)
    citizen = Citizen(env)
    async with served(env) as (http, push), served(other) as (other_http, _):
        query = push.query()
        first = citizen.message("text", Content="你好", MsgId=11)
        answer = push.read(await push.post(first, query=query))
        assert "预约办事" in answer["Content"]
        caplog.set_level(logging.WARNING, logger="bot.wechat.webhook")
        for client in (http, other_http):
            replay = await client.post("/wechat", params=query, content=citizen.message(
                "text", Content="/stats week", MsgId=12).encode())
            assert replay.status_code == 403
        # WeChat's own retry: the same query and body, answered from the de-duplication record.
        retry = push.read(await other_http.post("/wechat", params=query, content=first.encode()))
        assert retry["Content"] == answer["Content"]
        assert any("replay" in r.getMessage() for r in caplog.records)
        assert await count(database, SignedRequest) == 1
        # Past twice the window (a timestamp may be one window ahead) the record is deleted.
        clock.advance(seconds=601)
        push.read(await push.post(citizen.message("text", Content="1", MsgId=13)))
        assert await count(database, SignedRequest) == 1
    assert await count(database, ProcessedMessage) == 2


@pytest.mark.parametrize("safe", [False, True], ids=["plain", "safe"])
async def test_database_outage_is_answered_busy_and_logged_once(
        database: Database, clock: ManualClock, api: FakeWechatApi,
        caplog: pytest.LogCaptureFixture, safe: bool) -> None:
    async with database.session() as session:
        await load_demo(session, clock.now())
    env = await make_env(database, clock, api, safe=safe)
    citizen = Citizen(env)

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise ConnectionRefusedError(111, "Connect call failed")

    async with served(env) as (_http, push):
        assert "预约办事" in push.read(await push.post(
            citizen.message("text", Content="你好", MsgId=21)))["Content"]
        caplog.set_level(logging.INFO)
        # The database server goes away: every new connection is refused.
        await database.engine.dispose()
        event.listen(database.engine.sync_engine, "do_connect", refuse)
        try:
            for number in range(3):
                response = await push.post(citizen.message("text", Content="1", MsgId=30 + number))
                assert response.status_code == 200 and "Traceback" not in response.text
                answer = push.read(response)          # decrypted and checked in safe mode
                assert answer["Content"] == "系统繁忙，请稍后再发。\nThe system is busy: please " \
                                            "send your message again later."
                assert answer["ToUserName"] == OPENID
        finally:
            event.remove(database.engine.sync_engine, "do_connect", refuse)
        clock.advance(seconds=30)
        assert "预约办事" in push.read(await push.post(
            citizen.message("text", Content="菜单", MsgId=40)))["Content"]
    messages = [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert sum("database unreachable (ConnectionRefusedError)" in m for m in messages) == 1
    assert sum("database reachable again after 30 s; 3 message(s)" in m for m in messages) == 1


async def test_refused_requests_are_logged_once_per_reason(
        manager_env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env = manager_env
    citizen = Citizen(env)
    caplog.set_level(logging.WARNING, logger="bot.wechat.webhook")
    async with served(env) as (_http, push):
        xml = citizen.message("text", Content="你好", MsgId=51)
        for _ in range(3):
            assert (await push.post(xml, tamper="signature")).status_code == 403
            stale = push.query(timestamp=str(citizen.now() - 301))
            assert (await push.post(xml, query=stale)).status_code == 403
        env.clock.advance(minutes=11)
        assert (await push.post(xml, tamper="signature")).status_code == 403
    lines = [r.getMessage() for r in caplog.records]
    bad = [line for line in lines if line.endswith("request refused (403): bad signature")]
    assert len(bad) == 1
    assert sum("(403): stale timestamp" in line for line in lines) == 1
    assert any("bad signature (and 2 more like it since the last line)" in line for line in lines)
    assert not any(OPENID[:8] in line or "你好" in line for line in lines)
