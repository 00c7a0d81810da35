"""The Telegram channel end to end: python-telegram-bot talks over real HTTP to a fake Bot API
server on 127.0.0.1; the real conversation engine answers; time moves only when told."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from telegram import Update

from bot.channels import Unreachable
from bot.dispatch import Dispatcher
from bot.reports import FileReports
from bot.telegram import PollingConflict, TelegramChannel
from bot.telegram.failures import log_failure
from bot.telegram.limiter import RateLimiter
from bot.telegram.parse import parse_update
from bot.telegram.webhook import SECRET_HEADER
from bot.web import build_web_app
from bot.wiring import App
from handlers.core import Attachment, Choice, Incoming, Reply
from handlers.engine import Assistant
from storage.clock import ManualClock
from storage.db import Database
from storage.models import Appointment, ChannelIdentity, Outbox, ProcessedMessage, SharedValue
from storage.outbox import enqueue
from storage.settings import AccessSettings, Settings, TelegramSettings
from tests.dialog import Dialog, verify_dialog
from tests.fakes import FakeTime, LocalServer
from tests.fakes.telegram_api import FakeTelegram, button_labels
from tests.helpers import account, load_demo, make_centre, running_telegram, valid_id

STAFF_GROUP = -1001987654321
STAFF_USER, MANAGER = 6200000001, 6300000001
SECRET = "s3cret-Token_for_tests"
ID_NUMBER = valid_id()


class RecordingLimiter(RateLimiter):
    """The real limiter, noting when it let each message go (the fake server's own stamps
    show when a request arrived, which with a jumping clock can be later)."""

    def __init__(self, time: FakeTime) -> None:
        super().__init__(now=time.now, sleep=time.sleep)
        self.released: list[tuple[int, float]] = []

    async def acquire(self, chat_id: int) -> list[float]:
        stamp = await super().acquire(chat_id)
        self.released.append((chat_id, self.now()))
        return stamp

    def times(self, chat_id: int | None = None) -> list[float]:
        return [at for chat, at in self.released if chat_id in (None, chat)]


def at_most(times: list[float], count: int, period: float) -> bool:
    times = sorted(times)
    return all(times[i + count] - times[i] >= period - 1e-9 for i in range(len(times) - count))


@pytest.fixture
def limiter(fake_time: FakeTime) -> RecordingLimiter:
    return RecordingLimiter(fake_time)


@pytest.fixture
async def api(fake_time: FakeTime) -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(clock=fake_time.now) as server:
        yield server


def settings_for(api: FakeTelegram, **telegram: Any) -> Settings:
    return dataclasses.replace(
        Settings(),
        telegram=TelegramSettings(token=api.token, base_url=api.base_url,
                                  base_file_url=api.base_file_url, staff_chat_id=STAFF_GROUP,
                                  **telegram),
        access=AccessSettings(staff=(f"telegram:{STAFF_USER}",),
                              managers=(f"telegram:{MANAGER}", "wechat:o6_bmjrPTlm6_2sgVt")))


@pytest.fixture
def settings(api: FakeTelegram) -> Settings:
    return settings_for(api, mode="webhook", webhook_url="https://yuyue.example.org/tg/hook",
                        secret_token=SECRET)


@pytest.fixture
async def channel(api: FakeTelegram, database: Database, clock: ManualClock, settings: Settings,
                  limiter: RecordingLimiter) -> AsyncIterator[TelegramChannel]:
    async with database.session() as session:
        await load_demo(session, clock.now())
    centre = make_centre()
    app = App(settings=settings, database=database, centre=centre, clock=clock)
    assistant = Assistant(database=database, centre=centre, clock=clock, settings=settings,
                          reports=FileReports())
    async with running_telegram(app, limiter, assistant) as channel:
        yield channel


@pytest.fixture
async def web(channel: TelegramChannel) -> AsyncIterator[httpx.AsyncClient]:
    """Our web app (with the Telegram webhook route) served on 127.0.0.1."""
    async with LocalServer(build_web_app(channel.webhook_routes())) as server, \
            httpx.AsyncClient(base_url=server.url) as client:
        yield client


class TelegramUser:
    """A person in a private chat with the bot: types, presses the buttons they were sent."""

    def __init__(self, api: FakeTelegram, user_id: int, send: Callable[[dict[str, Any]],
                 Awaitable[None]], *, language_code: str = "zh-hans") -> None:
        self.api, self.user_id, self.send = api, user_id, send
        self.language_code = language_code
        self.presses = 0
        self._seen = 0

    async def _deliver(self, update: dict[str, Any]) -> str:
        self._seen = len(self.api.calls)
        await self.send(update)
        return self.shown

    @property
    def shown(self) -> str:
        """What the bot showed this user in answer to the last thing they did."""
        texts = []
        for call in self.api.calls[self._seen:]:
            if call.ok and call.chat_id == self.user_id:
                texts.append(call.params.get("text") or call.params.get("caption") or "")
        return "\n".join(texts)

    @property
    def has_menu(self) -> bool:
        return any(m.get("reply_markup", {}).get("inline_keyboard")
                   for m in self.api.chat_messages(self.user_id))

    async def say(self, words: str) -> str:
        return await self._deliver(self.api.text_update(self.user_id, words,
                                                        language_code=self.language_code))

    async def press(self, label: str) -> str:
        self.presses += 1
        menu = self.api.last_menu(self.user_id)
        return await self._deliver(self.api.press_update(self.user_id, menu, label,
                                                         language_code=self.language_code))

    async def dialog(self, steps: list[tuple[str, str]]) -> None:
        """Each step: "[label]" presses a button, anything else is typed; then the bot's
        answer must contain the expected words."""
        for said, expected in steps:
            if said.startswith("[") and said.endswith("]"):
                shown = await self.press(said[1:-1])
            else:
                shown = await self.say(said)
            menu = button_labels(self.api.last_menu(self.user_id)) if self.has_menu else []
            assert expected in shown + "\n" + "\n".join(menu), (
                f"after {said!r} expected {expected!r} in:\n{shown}\n{menu}")


def polling_sender(api: FakeTelegram) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def send(update: dict[str, Any]) -> None:
        api.enqueue(update)
        await api.acknowledged(update["update_id"])
    return send


def webhook_sender(web: httpx.AsyncClient) -> Callable[[dict[str, Any]], Awaitable[None]]:
    update_ids = itertools.count(900001)

    async def send(update: dict[str, Any]) -> None:
        update.setdefault("update_id", next(update_ids))
        answer = await web.post("/tg/hook", json=update, headers={SECRET_HEADER: SECRET})
        assert answer.status_code == 200, answer.text
    return send


@pytest.fixture
async def polling(channel: TelegramChannel) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(channel.run_polling(stop))
    yield stop
    stop.set()
    await task


# --- whole journeys ---------------------------------------------------------------------------


async def test_booking_journey_in_chinese_by_pressing_buttons_over_polling(
        api: FakeTelegram, channel: TelegramChannel, polling: asyncio.Event,
        database: Database) -> None:
    user = TelegramUser(api, 5123456789, polling_sender(api))
    await user.dialog([
        ("/start", "预约办事"),
        ("[预约办事]", "便民服务中心"),
        ("[便民服务中心]", "居民身份证办理"),
        ("[居民身份证]", "一次性告知"),
        ("[材料已备齐]", "11月24日 周二"),
        ("[11月24日]", "上午"), ("[上午]", "09:00-09:20"),
        ("[09:00-09:20]", "已为您保留这个号10分钟"),
        ("[同意并继续]", "真实姓名"),
        ("张三", "手机号"),
        ("13812345678", "身份证号"),
        (ID_NUMBER, "请确认预约信息"),
        ("[确认预约]", "预约成功"),
    ])
    code = re.search(r"预约码：([A-Z0-9]{6})", user.shown)
    assert code is not None
    # The calendar entry came as a document.
    documents = [c for c in api.calls_to("sendDocument") if c.ok]
    assert len(documents) == 1
    name, content, mime = documents[0].files["document"]
    assert name.endswith(".ics") and mime == "text/calendar"
    assert "DTSTART;TZID=Asia/Shanghai:20261124T090000" in content.decode()
    # Every press was answered (no endless spinner) and pressed menus were replaced by the
    # answer or lost their buttons.
    assert len(api.calls_to("answerCallbackQuery")) == user.presses
    menus = [m for m in api.chat_messages(user.user_id) if m.get("reply_markup")]
    assert len(menus) == 1 and "预约办事" in button_labels(menus[0])    # only the newest menu
    async with database.read() as session:
        booked = await session.scalar(select(Appointment).where(Appointment.code == code.group(1)))
        assert booked is not None and booked.channel == "telegram"
    assert api.pending == []       # every update acknowledged


async def test_booking_journey_in_english_over_the_webhook(
        api: FakeTelegram, web: httpx.AsyncClient) -> None:
    user = TelegramUser(api, 5200000002, webhook_sender(web), language_code="en")
    await user.dialog([
        ("/start", "Book"),
        ("[Book]", "Qingxi Central Health Centre"),
        ("[Qingxi Central Health Centre]", "Dental clinic"),
        ("[Dental clinic]", "Everything you need to bring"),
        ("[I have everything]", "Mon 23 Nov"),
        ("[Mon 23 Nov]", "10:30-11:00"),
        ("[10:30-11:00]", "held for you for 10 minutes"),
        ("[Agree]", "full name"),
        ("Li Lei", "mobile"),
        ("13900001111", "ID number"),
        (ID_NUMBER, "Please confirm"),
        ("[Confirm booking]", "Booked!"),
    ])
    assert "Please arrive 5 minutes early" in user.shown
    assert any(c.files["document"][0].endswith(".ics")
               for c in api.calls_to("sendDocument") if c.ok)


async def test_a_managers_chart_comes_as_a_photo_and_the_export_as_documents(
        api: FakeTelegram, web: httpx.AsyncClient) -> None:
    manager = TelegramUser(api, MANAGER, webhook_sender(web))
    await manager.say("/stats chart week")
    [photo] = [c for c in api.sent_to(MANAGER) if c.method == "sendphoto"]
    name, content, mime = photo.files["photo"]
    assert name.endswith(".png") and mime == "image/png" and content[:8] == b"\x89PNG\r\n\x1a\n"
    assert api.chat_messages(MANAGER)[-1]["photo"][0]["width"] == 1080
    assert api.calls_to("sendDocument") == []
    await manager.say("/export week")
    documents = [c.files["document"] for c in api.sent_to(MANAGER) if c.method == "senddocument"]
    assert [mime for _, _, mime in documents] == [
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "text/csv"]
    assert len(api.calls_to("sendPhoto")) == 1


async def test_the_doctors_chart_comes_as_a_photo(api: FakeTelegram,
                                                  web: httpx.AsyncClient) -> None:
    manager = TelegramUser(api, MANAGER, webhook_sender(web))
    await manager.say("/stats chart doctors week")
    [photo] = [c for c in api.sent_to(MANAGER) if c.method == "sendphoto"]
    name, content, mime = photo.files["photo"]
    assert name.startswith("yuyue-doctors-") and mime == "image/png" and content[:4] == b"\x89PNG"
    assert any("各医生/窗口" in m.get("text", "") for m in api.chat_messages(MANAGER))
    await manager.say("/stats chart doctor 李华 week")
    assert len(api.calls_to("sendPhoto")) == 2
    assert "没有找到“王医生”" in await manager.say("/stats chart doctor 王医生")
    assert len(api.calls_to("sendPhoto")) == 2


async def test_a_reply_marked_edit_replaces_the_pressed_menu(
        api: FakeTelegram, web: httpx.AsyncClient, channel: TelegramChannel) -> None:
    user = TelegramUser(api, 5300000003, webhook_sender(web))
    await user.say("/start")
    menu = api.last_menu(user.user_id)
    before = len(api.chat_messages(user.user_id))
    press = Update.de_json(api.press_update(user.user_id, menu, "预约办事") | {"update_id": 1},
                           channel.bot)
    incoming = parse_update(press, bot_username=channel.bot_username, bot_id=channel.bot_id)
    assert isinstance(incoming, Incoming)
    await channel._render(press, incoming, [
        Reply("请选择中心：", ((Choice("青溪镇便民服务中心", "m2.0"),),), edit=True)])
    assert len(api.chat_messages(user.user_id)) == before       # no new message
    shown = api.chat_messages(user.user_id)[-1]
    assert shown["message_id"] == menu["message_id"] and shown["text"] == "请选择中心："
    assert button_labels(shown) == ["青溪镇便民服务中心"]
    # Pressed again (the same answer): "not modified" is not an error, nothing is sent anew.
    await channel._render(press, incoming, [
        Reply("请选择中心：", ((Choice("青溪镇便民服务中心", "m2.0"),),), edit=True)])
    assert len(api.chat_messages(user.user_id)) == before
    # A document cannot replace text: the menu loses its buttons and the file comes anew.
    ics = Attachment("a.ics", b"BEGIN:VCALENDAR", "text/calendar")
    await channel._render(press, incoming, [Reply("", attachment=ics, edit=True)])
    assert "reply_markup" not in api.chat_messages(user.user_id)[-2]
    assert api.chat_messages(user.user_id)[-1]["document"]["file_name"] == "a.ics"


# --- the webhook ------------------------------------------------------------------------------


async def test_webhook_refuses_requests_without_the_secret_token(
        api: FakeTelegram, web: httpx.AsyncClient, database: Database) -> None:
    update = api.text_update(5400000004, "/start", update_id=700001)
    for headers in ({}, {SECRET_HEADER: "wrong"}, {SECRET_HEADER: SECRET + "x"}):
        answer = await web.post("/tg/hook", json=update, headers=headers)
        assert answer.status_code == 403 and "Traceback" not in answer.text
    assert api.sent_to(5400000004) == []
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(ProcessedMessage)) == 0
    answer = await web.post("/tg/hook", json=update, headers={SECRET_HEADER: SECRET})
    assert answer.status_code == 200
    assert "预约办事" in json.dumps(api.sent_to(5400000004)[-1].params["reply_markup"],
                                ensure_ascii=False)


async def test_webhook_answers_a_broken_body_without_a_traceback(web: httpx.AsyncClient) -> None:
    answer = await web.post("/tg/hook", content=b"{not json", headers={SECRET_HEADER: SECRET})
    assert answer.status_code == 400 and "Traceback" not in answer.text
    assert (await web.get("/healthz")).json() == {"status": "ok"}


def _post(web: httpx.AsyncClient, body: bytes | dict[str, Any],
          **headers: str) -> Awaitable[httpx.Response]:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return web.post("/tg/hook", content=content,
                    headers={SECRET_HEADER: SECRET, "content-type": "application/json", **headers})


async def _nothing_stored_or_sent(api: FakeTelegram, database: Database) -> None:
    assert [c for c in api.calls if c.method.startswith("send")] == []
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(ProcessedMessage)) == 0
        assert await session.scalar(select(func.count()).select_from(ChannelIdentity)) == 0


async def test_webhook_refuses_deeply_nested_json_without_a_traceback(
        api: FakeTelegram, web: httpx.AsyncClient, database: Database,
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        for body in (b"[" * 100_000, b'{"update_id": 1, "message": ' + b"[" * 50_000,
                     b'{"a":' * 100_000 + b"1" + b"}" * 100_000):
            answer = await _post(web, body)
            assert answer.status_code == 400 and "Traceback" not in answer.text
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text
    await _nothing_stored_or_sent(api, database)
    user = TelegramUser(api, 5400000014, webhook_sender(web))
    assert "预约办事" in await user.say("/start")          # and the bot carries on


@pytest.mark.parametrize("spoil", [
    lambda u: u["message"]["chat"].update(id="abc"),
    lambda u: u["message"]["chat"].update(id=10 ** 30),
    lambda u: u["message"]["chat"].update(id=1.5),
    lambda u: u["message"]["chat"].update(id=True),
    lambda u: u["message"]["from"].update(id=-5),
    lambda u: u["message"].update(text=["/start"]),
    lambda u: u["message"].update(text="1" * 100_000),
    lambda u: u["message"].update(date=10 ** 20),
    lambda u: u["message"].update(message_id="7"),
    lambda u: u["message"].update(chat=None),
    lambda u: u["message"].update(entities=[{"type": "bot_command", "offset": -1,
                                             "length": 6}]),
    lambda u: u.update(update_id="1"),
    lambda u: u.update(callback_query={"id": 5, "from": {}, "data": "x"}),
    lambda u: u.update(message=[1, 2]),
], ids=["chat-id-text", "chat-id-huge", "chat-id-float", "chat-id-bool", "user-id-negative",
        "text-list", "text-huge", "date-huge", "message-id-text", "chat-missing",
        "entity-negative", "update-id-text", "query-and-message", "message-list"])
async def test_webhook_drops_an_update_of_the_wrong_shape_before_storing_anything(
        api: FakeTelegram, web: httpx.AsyncClient, database: Database, spoil: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    update = api.text_update(5400000015, "/start", update_id=700101)
    spoil(update)
    with caplog.at_level(logging.WARNING):
        for _ in range(2):        # a redelivery is answered the same way: 200, so it stops
            answer = await _post(web, update)
            assert answer.status_code == 200 and answer.text == "dropped"
    assert "Traceback" not in caplog.text and "dropped" in caplog.text
    await _nothing_stored_or_sent(api, database)


async def test_webhook_refuses_a_body_over_one_megabyte_early(
        api: FakeTelegram, web: httpx.AsyncClient, database: Database) -> None:
    update = api.text_update(5400000016, "/start", update_id=700102)
    # Declared too large (200 MB): refused from Content-Length, before any of it is sent.
    url = httpx.URL(str(web.base_url))
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(f"POST /tg/hook HTTP/1.1\r\nHost: x\r\n{SECRET_HEADER}: {SECRET}\r\n"
                 "Content-Type: application/json\r\nContent-Length: 209715200\r\n\r\n"
                 .encode())
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"413"
    # Not declared (chunked): refused as soon as what was read passes 1 MB, long before the
    # 50 MB the client would send.
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(f"POST /tg/hook HTTP/1.1\r\nHost: x\r\n{SECRET_HEADER}: {SECRET}\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n".encode())
    answered = asyncio.ensure_future(reader.readline())
    sent = 0
    with contextlib.suppress(ConnectionError):
        while sent < 50 * 1024 * 1024 and not answered.done():
            writer.write(b"10000\r\n" + b"x" * 0x10000 + b"\r\n")
            sent += 0x10000
            await writer.drain()
    status_line = await answered
    writer.close()
    assert status_line.split()[1] == b"413" and sent < 50 * 1024 * 1024
    # Just under the limit is read (and dropped for its too-long text, not refused as a body).
    update["message"]["text"] = "x" * (1024 * 1024 - 400)
    answer = await _post(web, update)
    assert answer.status_code == 200 and answer.text == "dropped"
    await _nothing_stored_or_sent(api, database)


async def test_webhook_ignores_update_kinds_it_does_not_read(
        api: FakeTelegram, web: httpx.AsyncClient, database: Database) -> None:
    edited = json.loads(_fixture("edited_message"))
    for body in (edited, {"update_id": 700104, "channel_post": {"anything": [1, {"x": None}]}},
                 {"update_id": 700105}):
        answer = await _post(web, body)
        assert answer.status_code == 200 and answer.text == "ok"
    await _nothing_stored_or_sent(api, database)


async def test_set_webhook_sends_the_url_and_secret(api: FakeTelegram,
                                                    channel: TelegramChannel) -> None:
    await channel.set_webhook()
    assert api.webhook["url"] == "https://yuyue.example.org/tg/hook"
    assert api.webhook["secret_token"] == SECRET
    assert set(api.webhook["allowed_updates"]) == {"message", "callback_query", "my_chat_member"}


async def test_the_same_update_twice_is_processed_once(
        api: FakeTelegram, web: httpx.AsyncClient, database: Database) -> None:
    update = api.text_update(5500000005, "/start", update_id=700002)
    for _ in range(2):
        answer = await web.post("/tg/hook", json=update, headers={SECRET_HEADER: SECRET})
        assert answer.status_code == 200
    assert len(api.sent_to(5500000005)) == 2          # the welcome and the menu, once
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(ProcessedMessage)) == 1


async def test_an_update_seen_longer_ago_than_the_window_is_processed_again(
        api: FakeTelegram, web: httpx.AsyncClient, clock: ManualClock) -> None:
    # Telegram's ids may start anew after a quiet week: an old id is not a redelivery.
    update = api.text_update(5500000007, "/start", update_id=700004)
    await _post(web, update)
    clock.advance(minutes=59)
    await _post(web, update)
    assert len(api.sent_to(5500000007)) == 2           # a redelivery: answered once
    clock.advance(minutes=2)
    await _post(web, update)
    assert len(api.sent_to(5500000007)) == 4           # a new message: answered again


async def test_a_redelivered_button_press_is_answered_but_not_acted_on_twice(
        api: FakeTelegram, web: httpx.AsyncClient) -> None:
    user = TelegramUser(api, 5500000006, webhook_sender(web))
    await user.say("/start")
    press = api.press_update(user.user_id, api.last_menu(user.user_id), "预约办事")
    press["update_id"] = 700003
    for _ in range(2):
        answer = await web.post("/tg/hook", json=press, headers={SECRET_HEADER: SECRET})
        assert answer.status_code == 200
    assert len(api.calls_to("answerCallbackQuery")) == 2    # no spinner left either time
    assert len(api.sent_to(user.user_id)) == 2              # /start's two messages
    edits = [c for c in api.calls_to("editMessageText") if c.ok and c.chat_id == user.user_id]
    assert len(edits) == 1                                  # the answer replaced the menu once


# --- polling ----------------------------------------------------------------------------------


async def test_a_second_poller_is_told_clearly_and_stops(api: FakeTelegram,
                                                         channel: TelegramChannel) -> None:
    api.conflict = True
    with pytest.raises(PollingConflict, match="another process is already polling"):
        await channel.run_polling(asyncio.Event())


async def test_polling_removes_a_leftover_webhook_first(api: FakeTelegram,
                                                        channel: TelegramChannel) -> None:
    await channel.set_webhook()
    stop = asyncio.Event()
    task = asyncio.create_task(channel.run_polling(stop))
    user = TelegramUser(api, 5600000006, polling_sender(api))
    assert "您好" in await user.say("/start")
    stop.set()
    await task
    assert api.webhook["url"] == ""


async def test_stopping_lets_the_update_in_flight_finish_and_acknowledges_it(
        api: FakeTelegram, channel: TelegramChannel) -> None:
    gate = api.hold("sendMessage")
    stop = asyncio.Event()
    task = asyncio.create_task(channel.run_polling(stop))
    update = api.enqueue(api.text_update(5700000007, "/start"))
    await gate.reached.wait()          # the answer is on its way...
    stop.set()                         # ...when SIGTERM arrives
    gate.release()
    await task
    assert len(api.sent_to(5700000007)) == 2          # the welcome and the menu
    assert api.confirmed > update["update_id"]


async def test_a_chat_whose_sends_are_held_does_not_hold_up_another(
        api: FakeTelegram, channel: TelegramChannel) -> None:
    held, other = 5610000001, 5610000002
    channel.repoll_seconds = 0.05
    gate = api.hold("sendMessage", chat_id=held)
    stop = asyncio.Event()
    task = asyncio.create_task(channel.run_polling(stop))
    try:
        first = api.enqueue(api.text_update(held, "/start"))
        await gate.reached.wait()                     # A's answer is stuck on its way...
        api.enqueue(api.text_update(other, "/start"))
        await api.until(lambda: len(api.chat_messages(other)) == 2, 20)   # ...B is answered
        assert api.chat_messages(held) == []
        assert api.confirmed <= first["update_id"]    # A's update is not acknowledged yet
        gate.release()
        await api.until(lambda: len(api.chat_messages(held)) == 2, 20)
        await api.acknowledged(first["update_id"] + 1)
    finally:
        gate.release()
        stop.set()
        await task
    assert api.pending == []


async def test_a_flooding_chat_does_not_delay_another_chats_answer(
        api: FakeTelegram, channel: TelegramChannel) -> None:
    flooder, other = 5620000001, 5620000002
    channel.repoll_seconds = 0.05
    stop = asyncio.Event()
    task = asyncio.create_task(channel.run_polling(stop))
    try:
        flood = [api.enqueue(api.text_update(flooder, "/help")) for _ in range(40)]
        await api.until(lambda: len(api.sent_to(flooder)) >= 1, 20)
        asked = api.enqueue(api.text_update(other, "/start"))
        await api.acknowledged(max(flood[-1]["update_id"], asked["update_id"]))
    finally:
        stop.set()
        await task
    sends = [c for c in api.calls if c.ok and c.method == "sendmessage"]
    other_first = next(i for i, c in enumerate(sends) if c.chat_id == other)
    flooder_last = max(i for i, c in enumerate(sends) if c.chat_id == flooder)
    assert other_first < flooder_last                 # B did not wait for A's backlog
    assert len(api.sent_to(other)) == 2
    answers = [c.params["text"] for c in api.sent_to(flooder)]
    assert len(answers) >= 40 and len(answers) % 40 == 0      # each of the 40 answered


async def test_webhook_group_answers_over_the_group_budget_go_to_the_outbox_not_wait(
        api: FakeTelegram, web: httpx.AsyncClient, channel: TelegramChannel,
        clock: ManualClock, fake_time: FakeTime, limiter: RecordingLimiter) -> None:
    ids = itertools.count(720001)
    for _ in range(30):
        update = api.text_update(STAFF_USER, "/today@yuyue_test_bot", chat_id=STAFF_GROUP,
                                 update_id=next(ids))
        answer = await _post(web, update)
        assert answer.status_code == 200
    # No request waited for the group's 20-a-minute budget (Telegram would time out).
    assert max(fake_time.slept, default=0.0) <= channel.sender.inline_wait
    direct = len(api.sent_to(STAFF_GROUP))
    assert 0 < direct <= 20
    dispatcher = dispatcher_for(channel, clock)
    for _ in range(3):
        clock.advance(seconds=61)
        await dispatcher.drain()
    per_answer = len(api.sent_to(STAFF_GROUP)) // 30 or 1
    assert len(api.sent_to(STAFF_GROUP)) == 30 * per_answer    # every answer, once
    assert at_most(limiter.times(STAFF_GROUP), 20, 60.0)


# --- sending: limits, blocked users, the staff group --------------------------------------------


async def test_a_429_storm_during_a_broadcast_loses_nothing_and_waits_as_told(
        api: FakeTelegram, channel: TelegramChannel, limiter: RecordingLimiter) -> None:
    users = list(range(5800000001, 5800000081))
    api.fail("sendMessage", status=429, retry_after=7, times=50)
    await asyncio.gather(*(channel.sender.deliver(str(u), [Reply(f"明天的预约提醒 {u}")],
                                                  kind="reminder") for u in users))
    refused = {c.chat_id for c in api.calls_to("sendMessage") if c.status == 429}
    assert len(refused) >= 20
    for user in users:
        delivered = api.sent_to(user)
        assert [c.params["text"] for c in delivered] == [f"明天的预约提醒 {user}"]
        tries = limiter.times(user)
        assert len(tries) == 1 + sum(1 for c in api.calls_to("sendMessage")
                                     if c.chat_id == user and c.status == 429)
        for before, after in itertools.pairwise(tries):
            assert after - before >= 7 - 1e-9                  # retry_after respected
    assert at_most(limiter.times(), 30, 1.0)                   # never more than 30 a second


def dispatcher_for(channel: TelegramChannel, clock: ManualClock) -> Dispatcher:
    return Dispatcher(database=channel.database, centre=make_centre(), settings=channel.settings,
                      clock=clock, senders={"telegram": channel.sender},
                      staff_senders=[channel.sender])


def texts_to(api: FakeTelegram, chat_id: int) -> list[str]:
    return [c.params.get("text") or c.params.get("caption") or c.files.get("document", ("",))[0]
            for c in api.sent_to(chat_id)]


async def test_replies_refused_with_429_go_out_later_in_order_and_once(
        api: FakeTelegram, web: httpx.AsyncClient, channel: TelegramChannel,
        clock: ManualClock) -> None:
    said = ["/start", "/help", "/my", "/guide", "/start"]
    control, user = 5810000001, 5810000002
    ids = itertools.count(710001)
    for words in said:                          # what the answers are when nothing is refused
        await _post(web, api.text_update(control, words, update_id=next(ids)))
    expected = texts_to(api, control)
    assert len(expected) >= 8
    # Telegram refuses the user's 2nd message (retry after 30 s), later the 6th (after 5 s),
    # and a send from the outbox once more.
    api.fail("sendMessage", status=429, retry_after=30, chat_id=user, after=1)
    api.fail("sendMessage", status=429, retry_after=5, chat_id=user, after=5)
    for words in said:
        answer = await _post(web, api.text_update(user, words, update_id=next(ids)))
        assert answer.status_code == 200
    assert texts_to(api, user) == expected[:1]            # the rest waits, in the outbox
    dispatcher = dispatcher_for(channel, clock)
    assert (await dispatcher.drain()).claimed == 0        # not before the 30 s Telegram asked
    for _ in range(20):
        clock.advance(seconds=31)
        await dispatcher.drain()
    assert texts_to(api, user) == expected                # all of it, in order, none twice
    refused = [c for c in api.calls_to("sendMessage") if c.chat_id == user and c.status == 429]
    assert len(refused) == 2


async def test_a_user_who_blocked_the_bot_is_recorded_and_not_retried(
        api: FakeTelegram, channel: TelegramChannel, database: Database,
        clock: ManualClock) -> None:
    async with database.session() as session:
        await account(session, clock.now(), user="5900000009")
    api.block(5900000009)
    with pytest.raises(Unreachable, match="blocked"):
        await channel.sender.deliver("5900000009", [Reply("提醒")], kind="reminder")
    assert len(api.calls_to("sendMessage")) == 1
    async with database.read() as session:
        identity = await session.scalar(select(ChannelIdentity).where(
            ChannelIdentity.platform_user_id == "5900000009"))
        assert identity is not None and identity.unreachable_reason == "blocked"
        assert identity.unreachable_at == clock.now()


async def test_each_refusal_is_logged_with_its_reason_once_a_minute_without_the_chat(
        api: FakeTelegram, channel: TelegramChannel, fake_time: FakeTime,
        caplog: pytest.LogCaptureFixture) -> None:
    channel.sender.refusals.now = fake_time.now
    api.block(5900000012)
    api.fail("sendMessage", status=400, description="Bad Request: chat not found",
             chat_id=5900000013, times=3)
    with caplog.at_level(logging.INFO, logger="yuyue.telegram"):
        for _ in range(3):
            for user in (5900000012, 5900000013):
                with pytest.raises(Unreachable):
                    await channel.sender.deliver(str(user), [Reply("提醒")], kind="reminder")
        fake_time.advance(61)
        with pytest.raises(Unreachable):
            await channel.sender.deliver("5900000012", [Reply("提醒")], kind="reminder")
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert lines == ["telegram refused a message: 403 blocked",
                     "telegram refused a message: 400 Chat not found",
                     "telegram refused a message: 403 blocked (2 more like it since the last "
                     "report)"]
    assert "5900000012" not in caplog.text and "5900000013" not in caplog.text


@pytest.mark.parametrize("refusal", ["blocked", "too long", "given up"])
async def test_a_staff_answer_that_cannot_reach_the_citizen_is_reported_to_staff(
        api: FakeTelegram, channel: TelegramChannel, database: Database, clock: ManualClock,
        refusal: str) -> None:
    citizen = 5900000014
    async with database.session() as session:
        identity = await account(session, clock.now(), user=str(citizen))
        await enqueue(session, kind="relay", now=clock.now(), identity_id=identity.id,
                      dedup_key="relay:41:m1", payload={"handoff": 41, "text": "您的材料已收到"})
    if refusal == "blocked":
        api.block(citizen)
    elif refusal == "too long":
        api.fail("sendMessage", status=400, description="Bad Request: message is too long",
                 chat_id=citizen)
    else:
        api.fail("sendMessage", status=502, description="Bad Gateway", chat_id=citizen,
                 times=1000)
    dispatcher = dispatcher_for(channel, clock)
    for _ in range(8):
        await dispatcher.drain()
        clock.advance(hours=1)
    assert api.chat_messages(citizen) == []
    told = [m["text"] for m in api.chat_messages(STAFF_GROUP)]
    assert len(told) == 1 and "#41" in told[0] and ("未能送达" in told[0])
    async with database.read() as session:
        kinds = (await session.scalars(select(Outbox.kind).where(
            Outbox.target == "staff"))).all()
    assert kinds == ["relay_failed"]


async def test_blocking_and_unblocking_updates_are_recorded(
        api: FakeTelegram, channel: TelegramChannel, database: Database,
        clock: ManualClock) -> None:
    async with database.session() as session:
        await account(session, clock.now(), user="5123456789")
    blocked = json.loads(_fixture("my_chat_member_blocked"))
    await channel.process_json(blocked)
    async with database.read() as session:
        assert await session.scalar(select(ChannelIdentity.unreachable_reason)) == "blocked"
    await channel.process_json(json.loads(_fixture("my_chat_member_unblocked")))
    async with database.read() as session:
        assert await session.scalar(select(ChannelIdentity.unreachable_at)) is None


async def test_a_blocked_user_writing_through_a_stale_update_does_not_stop_the_bot(
        api: FakeTelegram, web: httpx.AsyncClient) -> None:
    api.block(5900000010)
    answer = await web.post("/tg/hook", json=api.text_update(5900000010, "/start",
                                                             update_id=700020),
                            headers={SECRET_HEADER: SECRET})
    assert answer.status_code == 200
    user = TelegramUser(api, 5900000011, webhook_sender(web))
    assert "预约办事" in await user.say("/start")


async def test_long_texts_are_split_and_documents_sent_as_files(
        api: FakeTelegram, channel: TelegramChannel) -> None:
    long_text = "\n".join(f"第{i}项材料：身份证原件、复印件各一份。" for i in range(500))
    reply = Reply(long_text, ((Choice("我的预约", "g.my"),),))
    await channel.sender.deliver("6000000001", [reply])
    sent = api.sent_to(6000000001)
    assert len(sent) > 1 and "".join(c.params["text"] for c in sent) == long_text
    assert [("reply_markup" in c.params) for c in sent] == [False] * (len(sent) - 1) + [True]
    ics = Attachment("yuyue-K7P2QX.ics", b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "text/calendar",
                     caption="加入日历")
    await channel.sender.deliver("6000000001", [Reply("", attachment=ics)])
    document = api.calls_to("sendDocument")[-1]
    assert document.files["document"] == ("yuyue-K7P2QX.ics",
                                          b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "text/calendar")
    assert document.params["caption"] == "加入日历"


async def test_staff_alerts_that_pile_up_are_batched_within_the_group_limit(
        api: FakeTelegram, channel: TelegramChannel, limiter: RecordingLimiter) -> None:
    alerts = [f"人工服务 #{n}：有群众等待认领" for n in range(1, 36)]
    await asyncio.gather(*(channel.sender.deliver("staff", [Reply(a)], kind="staff_alert")
                           for a in alerts))
    sent = api.sent_to(STAFF_GROUP)
    assert len(sent) < len(alerts)
    shown = "\n".join(c.params["text"] for c in sent)
    assert all(a in shown for a in alerts)
    assert at_most(limiter.times(STAFF_GROUP), 20, 60.0)


async def test_the_staff_group_upgraded_to_a_supergroup_is_followed(
        api: FakeTelegram, channel: TelegramChannel, database: Database) -> None:
    new_id = -1002099999999
    api.migrate(STAFF_GROUP, new_id)
    await channel.sender.deliver("staff", [Reply("今日预约 12 人")], kind="staff_digest")
    assert [c.params["text"] for c in api.sent_to(new_id)] == ["今日预约 12 人"]
    await channel.sender.deliver("staff", [Reply("停办通知")], kind="staff_alert")
    assert len(api.sent_to(new_id)) == 2
    assert len([c for c in api.calls_to("sendMessage") if c.chat_id == STAFF_GROUP]) == 1
    async with database.read() as session:
        assert await session.scalar(select(SharedValue.value).where(
            SharedValue.key == "telegram.staff_chat_id")) == f"{STAFF_GROUP}>{new_id}"


async def test_the_migration_message_moves_the_staff_group_and_its_commands(
        api: FakeTelegram, channel: TelegramChannel) -> None:
    move = {"update_id": 700010, "message": {
        "message_id": 90, "date": 1795395607, "migrate_to_chat_id": -1002012345678,
        "from": api.user(STAFF_USER), "chat": api.chat_of(STAFF_GROUP)}}
    await channel.process_json(move)
    assert await channel.sender.staff_chat() == -1002012345678
    scope = {"type": "chat", "chat_id": -1002012345678}
    assert "checkin" in api.commands_for(scope, "zh")


async def test_a_forged_migrate_from_naming_the_staff_group_moves_nothing(
        api: FakeTelegram, channel: TelegramChannel, web: httpx.AsyncClient,
        database: Database) -> None:
    attacker_group = -1002077777777
    forged = {"update_id": 700011, "message": {
        "message_id": 3, "date": 1795395607, "migrate_from_chat_id": STAFF_GROUP,
        "from": api.user(5400000099), "chat": api.chat_of(attacker_group, "my group")}}
    answer = await web.post("/tg/hook", json=forged, headers={SECRET_HEADER: SECRET})
    assert answer.status_code == 200
    await channel.process_json(forged | {"update_id": 700012})
    # Nor a migrate_to sent anywhere but a group.
    await channel.process_json({"update_id": 700013, "message": {
        "message_id": 4, "date": 1795395607, "migrate_to_chat_id": attacker_group,
        "from": api.user(5400000099), "chat": api.chat_of(5400000099)}})
    assert await channel.sender.staff_chat() == STAFF_GROUP
    channel.sender._staff_chat = None          # as a new process would read it
    assert await channel.sender.staff_chat() == STAFF_GROUP
    async with database.read() as session:
        assert await session.scalar(select(func.count()).select_from(SharedValue).where(
            SharedValue.key == "telegram.staff_chat_id")) == 0
    await channel.sender.deliver("staff", [Reply("今日预约 12 人")], kind="staff_digest")
    assert len(api.sent_to(STAFF_GROUP)) == 1 and api.sent_to(attacker_group) == []
    assert api.commands_for({"type": "chat", "chat_id": attacker_group}, "zh") == []


async def test_commands_are_registered_per_audience_in_both_languages(
        api: FakeTelegram, channel: TelegramChannel) -> None:
    private = {"type": "all_private_chats"}
    assert api.commands_for(private, "zh")[:3] == ["start", "book", "my"]
    assert api.commands_for(private, "en") == api.commands_for(private, "zh")
    assert api.commands_for(private) == api.commands_for(private, "zh")
    english = api.commands[(json.dumps(private, sort_keys=True), "en")]
    assert english[0]["description"] == "Start / main menu"
    group = api.commands_for({"type": "chat", "chat_id": STAFF_GROUP}, "zh")
    assert "claim" in group and "start" not in group
    manager = api.commands_for({"type": "chat", "chat_id": MANAGER}, "en")
    assert {"stats", "export", "book"} <= set(manager) and "checkin" not in manager
    staff = api.commands_for({"type": "chat", "chat_id": STAFF_USER}, "zh")
    assert {"checkin", "start"} <= set(staff) and "stats" not in staff


# --- errors -----------------------------------------------------------------------------------


async def test_a_failing_conversation_apologises_in_the_users_language_and_keeps_running(
        api: FakeTelegram, web: httpx.AsyncClient, database: Database,
        caplog: pytest.LogCaptureFixture) -> None:
    async with database.session() as session:   # the conversation table has gone missing
        await session.execute(text("ALTER TABLE conversation RENAME TO conversation_away"))
    user = TelegramUser(api, 6100000001, webhook_sender(web), language_code="en")
    try:
        with caplog.at_level(logging.ERROR):
            shown = await user.say("my phone is 13812345678")
    finally:
        async with database.session() as session:
            await session.execute(text("ALTER TABLE conversation_away RENAME TO conversation"))
    assert shown.startswith("Sorry")
    assert "13812345678" not in caplog.text
    assert "Hello!" in await user.say("/start")          # and the bot carries on


def test_a_logged_failure_names_the_update_but_not_what_was_said(
        caplog: pytest.LogCaptureFixture) -> None:
    said = "张三 13812345678"
    try:
        raise ValueError(said)
    except ValueError as error:
        with caplog.at_level(logging.ERROR, logger="yuyue.telegram"):
            log_failure(804812001, error)
    assert "804812001" in caplog.text and "ValueError" in caplog.text
    assert "13812345678" not in caplog.text and "张三" not in caplog.text


async def test_the_token_never_reaches_the_logs(api: FakeTelegram, channel: TelegramChannel,
                                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="httpx"):
        await channel.sender.deliver("6200000009", [Reply("你好")])
    assert "sendMessage" in caplog.text and api.token not in caplog.text


def _fixture(name: str) -> str:
    return (Path(__file__).parent / "fixtures" / "telegram" / f"{name}.json").read_text("utf-8")


# --- 绑定: a one-time code shown in another account, typed here ---------------------------------


async def test_linking_a_telegram_account_by_a_code_shown_in_another_account(
        api: FakeTelegram, web: httpx.AsyncClient, database: Database, clock: ManualClock,
        settings: Settings) -> None:
    other = Dialog(Assistant(database=database, centre=make_centre(), clock=clock,
                             settings=settings), user="terminal-user-9876")
    await verify_dialog(other, [("/link", "显示绑定码"), ("[显示绑定码]", "您的绑定码")])
    code = re.search(r"绑定码：(\d{6})", other.text)
    assert code is not None
    user = TelegramUser(api, 5200000003, webhook_sender(web))
    await user.dialog([
        ("/start", "我的办事人"), ("[我的办事人]", "绑定账号"), ("[绑定账号]", "输入绑定码"),
        ("[输入绑定码]", "6位绑定码"), ("000000" if code.group(1) != "000000" else "111111", "验证未通过"),
        (code.group(1), "绑定成功：本账号已与 终端 账号 …9876 绑定"),
    ])
    await verify_dialog(other, [("/link", "解除绑定：Telegram …0003")])


async def test_everyday_words_and_cancel_during_a_hand_off_over_the_webhook(
        api: FakeTelegram, web: httpx.AsyncClient) -> None:
    """Issue 20 over real HTTP: services by everyday words, global words inside a flow, and
    取消 asks before ending an open hand-off."""
    user = TelegramUser(api, 5200000020, webhook_sender(web))
    await user.dialog([
        ("我想看牙", "口腔科门诊"),
        ("/book", "青溪镇便民服务中心"),
        ("我的预约", "还没有预约记录"),
        ("人工", "编号"),
        ("取消", "要结束这个请求吗"),
        ("[继续等待答复]", "继续保留"),
        ("长辈模式", "已切换为长辈模式"),
        ("取消", "要结束这个请求吗"),
        ("[结束人工服务]", "已撤回您的人工服务请求"),
    ])
    assert "号源" not in user.shown


async def test_booking_a_named_expert_over_the_webhook(
        api: FakeTelegram, web: httpx.AsyncClient, database: Database) -> None:
    """The doctors come as buttons with their titles; the chosen one's times name him."""
    user = TelegramUser(api, 5200000009, webhook_sender(web))
    await user.dialog([
        ("/start", "预约办事"),
        ("[预约办事]", "门诊部"),
        ("[门诊部]", "内科专家门诊"),
        ("[内科专家门诊]", "一次性告知"),
        ("[材料已备齐]", "陈建国 主任医师（心血管内科）"),
        ("[陈建国 主任医师]", "11月25日 周三"),
        ("[11月25日]", "08:00-08:15 陈建国"),
        ("[08:00-08:15 陈建国]", "已为您保留这个号10分钟"),
        ("[同意并继续]", "真实姓名"),
        ("张三", "手机号"),
        ("13812345678", "身份证号"),
        (ID_NUMBER, "医生：陈建国 主任医师"),
        ("[确认预约]", "预约成功"),
    ])
    async with database.read() as session:
        booked = await session.scalar(select(Appointment))
        assert booked is not None and booked.resource_id is not None
