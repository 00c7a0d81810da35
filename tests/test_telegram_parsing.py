"""The Telegram adapter's pure parts: real update samples in, Incoming out; replies rendered;
the rate limiter's arithmetic on a clock that only moves when told."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from telegram import Update
from telegram.error import RetryAfter

from bot.telegram.commands import CITIZEN_COMMANDS, MANAGER_COMMANDS, STAFF_COMMANDS
from bot.telegram.config import TelegramConfigError, build_bot, check_settings
from bot.telegram.limiter import Limit, RateLimiter
from bot.telegram.parse import ChatMove, MemberChange, parse_update
from bot.telegram.render import CALLBACK_DATA_LIMIT, apology, keyboard, split_text
from bot.telegram.webhook import webhook_path
from handlers.core import Choice, Incoming, Reply
from storage.settings import TelegramSettings
from tests.fakes import FakeTime

FIXTURES = Path(__file__).parent / "fixtures" / "telegram"
BOT_NAME, BOT_ID = "yuyue_test_bot", 7000000001


def sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return data


def parse(name: str) -> object:
    return parse_update(Update.de_json(sample(name), None), bot_username=BOT_NAME, bot_id=BOT_ID)


def test_private_text_becomes_an_incoming_with_a_stable_message_key() -> None:
    incoming = parse("private_text")
    assert incoming == Incoming(channel="telegram", user_id="5123456789", chat_id="5123456789",
                                text="我想办身份证", locale="zh-hans",
                                message_id="m5123456789:57", is_group=False, user_name="小明 王")


def test_command_with_deep_link_arguments() -> None:
    incoming = parse("command_start")
    assert isinstance(incoming, Incoming)
    assert (incoming.command, incoming.args, incoming.locale) == ("start", "id_card", "en")


def test_pressed_button_carries_its_token_and_label() -> None:
    incoming = parse("callback_query")
    assert isinstance(incoming, Incoming)
    assert incoming.choice == "m3.1" and incoming.text == "社会保障卡"
    assert incoming.chat_id == "5123456789" and incoming.message_id == "q4382174621837462911"


def test_group_command_addressed_to_this_bot_loses_its_suffix() -> None:
    incoming = parse("group_command")
    assert isinstance(incoming, Incoming)
    assert (incoming.command, incoming.args) == ("checkin", "K7P2QX 002X")
    assert incoming.is_group and incoming.chat_id == "-1001987654321"


@pytest.mark.parametrize("name", ["group_command_other_bot", "group_chatter", "edited_message"])
def test_what_is_not_for_us_is_ignored(name: str) -> None:
    assert parse(name) is None


def test_a_reply_to_the_bot_in_the_group_is_passed_on() -> None:
    incoming = parse("group_reply_to_bot")
    assert isinstance(incoming, Incoming) and incoming.is_group
    assert incoming.text.startswith("您好")


def test_media_in_a_private_chat_is_an_unsupported_event() -> None:
    incoming = parse("private_photo")
    assert isinstance(incoming, Incoming) and incoming.event == "unsupported:image"
    assert incoming.text == ""   # the caption is not read as an answer


def test_group_upgrade_and_blocking_are_recognised() -> None:
    assert parse("migrate_to_chat_id") == ChatMove(old=-4012345678, new=-1002012345678)
    assert parse("my_chat_member_blocked") == MemberChange(
        chat_id=5123456789, user_id="5123456789", blocked=True, is_group=False)
    unblocked = parse("my_chat_member_unblocked")
    assert isinstance(unblocked, MemberChange) and not unblocked.blocked


def test_keyboard_rows_follow_the_reply_choices() -> None:
    reply = Reply("选择日期", ((Choice("11月24日", "m1.0"), Choice("11月25日", "m1.1")),
                           (Choice("返回", "m1.2"),)))
    markup = keyboard(reply)
    assert markup is not None
    assert [[(b.text, b.callback_data) for b in row] for row in markup.inline_keyboard] == [
        [("11月24日", "m1.0"), ("11月25日", "m1.1")], [("返回", "m1.2")]]
    assert keyboard(Reply("no buttons")) is None


def test_a_token_longer_than_64_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="64"):
        keyboard(Reply("x", ((Choice("x", "预" * 22),),)))     # 66 bytes in UTF-8
    assert keyboard(Reply("x", ((Choice("x", "a" * CALLBACK_DATA_LIMIT),),))) is not None


def test_long_text_is_split_at_line_breaks_within_the_limit() -> None:
    lines = [f"第{i}行：请携带身份证原件及复印件。" for i in range(400)]
    text = "\n".join(lines)
    pieces = split_text(text)
    assert len(pieces) > 1 and "".join(pieces) == text
    assert all(len(p.encode("utf-16-le")) // 2 <= 4096 for p in pieces)
    assert all(p.endswith("\n") for p in pieces[:-1])


@given(st.text(alphabet=st.sampled_from(["a", "中", "\n", " ", "。", "😀"]), max_size=300),
       st.integers(min_value=2, max_value=50))
def test_splitting_never_loses_text_nor_exceeds_the_limit(text: str, limit: int) -> None:
    pieces = split_text(text, limit)
    assert "".join(pieces) == text
    assert all(len(p.encode("utf-16-le")) // 2 <= limit for p in pieces)


def test_commands_are_valid_for_telegram_and_described_in_both_languages() -> None:
    names = [c.name for c in CITIZEN_COMMANDS]
    assert names == ["start", "book", "my", "progress", "guide", "human", "lang", "help", "cancel",
                     "people", "mydata", "link", "doctor", "complaint"]
    from handlers import staff

    # Telegram shows staff exactly the commands the staff side handles ("book" in the group
    # books for a walk-in).
    assert {c.name for c in STAFF_COMMANDS} == set(staff.COMMANDS) | {"book"}
    assert [c.name for c in MANAGER_COMMANDS] == ["stats", "export"]
    for spec in (*CITIZEN_COMMANDS, *STAFF_COMMANDS, *MANAGER_COMMANDS):
        assert spec.name.isascii() and spec.name.islower() and len(spec.name) <= 32
        zh, en = spec.describe("zh-CN"), spec.describe("en")
        assert 0 < len(zh) <= 256 and 0 < len(en) <= 256 and zh != en
        assert not zh.startswith("commands.") and not en.startswith("commands.")   # in the catalogs


def test_apology_in_the_users_language() -> None:
    assert "抱歉" in apology(None) and "抱歉" in apology("zh-hans")
    assert apology("en-GB").startswith("Sorry")


def test_settings_that_cannot_work_are_refused_with_what_to_set() -> None:
    with pytest.raises(TelegramConfigError, match="YUYUE_TELEGRAM__TOKEN"):
        check_settings(TelegramSettings())
    webhook = TelegramSettings(token="1:x", mode="webhook", webhook_url="https://e.org/tg")
    with pytest.raises(TelegramConfigError, match="YUYUE_TELEGRAM__SECRET_TOKEN"):
        check_settings(webhook)
    with pytest.raises(TelegramConfigError, match="secret_token"):
        check_settings(TelegramSettings(token="1:x", mode="webhook",
                                        webhook_url="https://e.org/tg", secret_token="a b"))
    check_settings(TelegramSettings(token="1:x", mode="webhook", webhook_url="https://e.org/tg",
                                    secret_token="s3cret_-Token"))
    assert webhook_path("https://yuyue.example.org/hooks/telegram") == "/hooks/telegram"
    assert webhook_path("") == "/telegram"


def test_bot_points_at_the_configured_server_through_the_limiter() -> None:
    limiter = RateLimiter()
    bot = build_bot(TelegramSettings(token="42:abc", base_url="http://127.0.0.1:8081/bot",
                                     base_file_url="http://127.0.0.1:8081/file/bot"),
                    limiter=limiter)
    assert bot.base_url == "http://127.0.0.1:8081/bot42:abc"
    assert bot.base_file_url == "http://127.0.0.1:8081/file/bot42:abc"
    assert bot.rate_limiter is limiter


# --- the rate limiter -------------------------------------------------------------------------


async def test_overall_limit_is_thirty_in_any_second() -> None:
    time = FakeTime()
    limiter = RateLimiter(now=time.now, sleep=time.sleep)
    start = time.now()
    stamps = []
    for chat in range(1, 92):
        await limiter.acquire(chat)
        stamps.append(time.now() - start)
    # after a quiet spell a few at once (a tenth of a second's worth), then one every 1/30 s;
    # any second holds 30
    assert stamps[3] == 0 and stamps[4] == pytest.approx(1 / 30)
    assert stamps[29] == pytest.approx(26 / 30)
    assert stamps[30] == pytest.approx(1.0) and stamps[90] == pytest.approx(3.0)


async def test_a_message_counts_from_its_answer() -> None:
    """Telegram counts a message when it arrives, somewhere between our send and its answer:
    the next second's messages wait one second after the answers, so a slow or reordered
    request can never make 31 arrivals in one second."""
    time = FakeTime()
    limiter = RateLimiter(now=time.now, sleep=time.sleep)
    start = time.now()
    sent: list[float] = []

    async def answer(*_: Any) -> bool:
        sent.append(time.now() - start)
        if len(sent) == 1:
            await time.sleep(0.5)           # the first answer comes half a second later
        return True

    for chat in range(1, 32):
        await limiter.process_request(answer, (), {}, "sendMessage", {"chat_id": chat}, None)
    # the 31st goes one second after the first answer (0.5 s), not after the first send (0 s)
    assert sent[1] == pytest.approx(0.5) and sent[30] == pytest.approx(1.5)


async def test_a_private_chat_averages_one_a_second_and_a_group_twenty_a_minute() -> None:
    time = FakeTime()
    limiter = RateLimiter(now=time.now, sleep=time.sleep)
    start = time.now()
    for _ in range(9):
        await limiter.acquire(42)
    assert time.now() - start == pytest.approx(6.0)      # bursts of 3, then 3 per 3 s
    start = time.now()
    for _ in range(41):
        await limiter.acquire(-100123)
    assert time.now() - start == pytest.approx(120.0)


async def turns(limiter: RateLimiter, time: FakeTime, *, chats: int) -> list[float]:
    """When each of ``chats`` senders, one message each, all at once, got its turn."""
    start = time.now()
    stamps: list[float] = []

    async def one(chat: int) -> None:
        await limiter.acquire(chat)
        stamps.append(time.now() - start)

    await asyncio.gather(*(one(chat) for chat in range(1, chats + 1)))
    return stamps


async def test_concurrent_senders_share_the_limit_without_adding_waits() -> None:
    time = FakeTime()
    limiter = RateLimiter(overall=Limit(30, 1.0), now=time.now, sleep=time.sleep)
    stamps = await turns(limiter, time, chats=300)
    assert max(stamps) == pytest.approx(9 + 26 / 30)     # each second's 30 spread over it
    for second in range(10):
        assert sum(1 for s in stamps if second <= s < second + 1) == 30


async def test_a_turn_taken_late_is_made_up() -> None:
    """A busy process wakes late for each turn (here 10 ms): with messages spread one every
    1/30 s, the lateness is made up by the next turns instead of adding up."""
    time = FakeTime()

    async def late(seconds: float) -> None:
        await time.sleep(seconds + 0.01)

    limiter = RateLimiter(now=time.now, sleep=late)
    stamps = await turns(limiter, time, chats=300)
    assert max(stamps) < 10.2                    # not 300 x (1/30 s + 10 ms) = 13 s
    for second in range(11):
        assert sum(1 for s in stamps if second <= s < second + 1) <= 30
    assert len(time.slept) < 2 * 300             # about one wait per message


async def test_pause_holds_one_chat_only() -> None:
    time = FakeTime()
    limiter = RateLimiter(now=time.now, sleep=time.sleep)
    limiter.pause(7, 12)
    assert limiter.delay(7) == pytest.approx(12) and limiter.delay(8) == 0
    await limiter.acquire(7)
    assert time.now() == pytest.approx(1012.0)


async def test_a_429_holds_that_chat_only_and_the_call_is_made_again() -> None:
    time = FakeTime()
    limiter = RateLimiter(max_retries=2, now=time.now, sleep=time.sleep)
    start = time.now()
    tries: list[float] = []

    async def flooded(*_: Any) -> bool:
        tries.append(time.now() - start)
        raise RetryAfter(dt.timedelta(seconds=7))

    with pytest.raises(RetryAfter):
        await limiter.process_request(flooded, (), {}, "sendMessage",
                                      {"chat_id": 42, "text": "提醒"}, None)
    assert tries == pytest.approx([0.0, 7.0, 14.0])      # the first try and max_retries more
    # chat 43 waits only for the even spacing of all messages
    assert limiter.delay(42) == pytest.approx(7.0) and limiter.delay(43) <= 1 / 30
    tries.clear()
    with pytest.raises(RetryAfter):                      # a call's own retry count
        await limiter.process_request(flooded, (), {}, "sendMessage", {"chat_id": 43}, 0)
    assert len(tries) == 1


async def test_calls_without_a_chat_pass_through_uncounted() -> None:
    time = FakeTime()
    limiter = RateLimiter(now=time.now, sleep=time.sleep)
    calls: list[tuple[Any, ...]] = []

    async def answer(*args: Any, **kwargs: Any) -> bool:
        calls.append((args, kwargs))
        return True

    for _ in range(40):
        assert await limiter.process_request(answer, ("answerCallbackQuery", {}), {"read_timeout": 5},
                                             "answerCallbackQuery", {"callback_query_id": "1"}, None)
    assert calls[0] == (("answerCallbackQuery", {}), {"read_timeout": 5}) and len(calls) == 40
    assert time.slept == [] and limiter.delay(42) == 0
    for _ in range(3):
        await limiter.process_request(answer, (), {}, "sendMessage", {"chat_id": "42"}, None)
    assert limiter.delay(42) > 0                         # a chat id given as text is the same chat


def test_a_command_entity_on_a_text_that_is_no_command_is_plain_text() -> None:
    update = sample("private_text")
    update["message"]["entities"] = [{"type": "bot_command", "offset": 0, "length": 7}]
    for text in ("", "   ", "我想办身份证"):
        update["message"]["text"] = text
        parsed = parse_update(Update.de_json(update, None), bot_username=BOT_NAME, bot_id=BOT_ID)
        assert isinstance(parsed, Incoming) and parsed.command is None
