"""The WeChat adapter's pieces without a server: signatures, crypto, parsing, rendering."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wechatpy.crypto import PrpCrypto, WeChatCrypto

from bot.wechat.inbound import (
    BadRequest,
    menu_id_for,
    parse_xml,
    sign,
    to_incoming,
    token_for_menu_id,
    verify_signature,
)
from bot.wechat.menu import menu_labels
from bot.wechat.render import cdata, render_choice, render_replies, split_text
from handlers.core import Attachment, Choice, Reply
from handlers.i18n import LOCALES
from tests.fakes.wechat_api import APP_ID, SAMPLE_AES_KEY, SAMPLE_TOKEN, sample

# WeChat's published message-crypto sample (token 123456, the AES key above, app id wx49f0...).
SAMPLE_SIGNATURE = "74d92dfeb87ba7c714f89d98870ae5eb62dff26d"
SAMPLE_TIMESTAMP = "1411525903"
SAMPLE_NONCE = "461056294"
SAMPLE_ENCRYPT = (
    "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTy"
    "eDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYy"
    "olBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWO"
    "MZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7ml"
    "sl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=")
SAMPLE_TIME = dt.datetime.fromtimestamp(int(SAMPLE_TIMESTAMP), dt.UTC)
NOW = dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC)


def test_published_sample_verifies_and_decrypts() -> None:
    assert verify_signature(SAMPLE_TOKEN, SAMPLE_SIGNATURE, SAMPLE_TIMESTAMP, SAMPLE_NONCE,
                            now=SAMPLE_TIME, window_seconds=300, encrypt=SAMPLE_ENCRYPT)
    crypto = WeChatCrypto(SAMPLE_TOKEN, SAMPLE_AES_KEY, APP_ID)
    fields = parse_xml(PrpCrypto(crypto.key).decrypt(SAMPLE_ENCRYPT, APP_ID).encode())
    assert fields["Content"] == "test" and fields["FromUserName"] == "messense"


def test_published_sample_is_refused_years_later_and_when_changed() -> None:
    args = (SAMPLE_TOKEN, SAMPLE_SIGNATURE, SAMPLE_TIMESTAMP, SAMPLE_NONCE)
    assert not verify_signature(*args, now=NOW, window_seconds=300, encrypt=SAMPLE_ENCRYPT)
    assert not verify_signature(*args, now=SAMPLE_TIME, window_seconds=300,
                                encrypt=SAMPLE_ENCRYPT[:-4] + "AAA=")
    assert not verify_signature("654321", *args[1:], now=SAMPLE_TIME, window_seconds=300,
                                encrypt=SAMPLE_ENCRYPT)


@pytest.mark.parametrize(("offset", "ok"), [(0, True), (-300, True), (300, True), (-301, False),
                                            (301, False)])
def test_replay_window_on_the_timestamp(offset: int, ok: bool) -> None:
    timestamp = str(int(NOW.timestamp()) + offset)
    signature = sign("tok", timestamp, "42")
    assert verify_signature("tok", signature, timestamp, "42", now=NOW, window_seconds=300) is ok


@pytest.mark.parametrize("signature", [None, "", "0" * 40, "zz"])
def test_missing_or_wrong_signature(signature: str | None) -> None:
    timestamp = str(int(NOW.timestamp()))
    assert not verify_signature("tok", signature, timestamp, "42", now=NOW, window_seconds=300)
    assert not verify_signature("", sign("", timestamp, "42"), timestamp, "42", now=NOW,
                                window_seconds=300)
    assert not verify_signature("tok", sign("tok", "x", "42"), "x", "42", now=NOW,
                                window_seconds=300)


@pytest.mark.parametrize("body", [
    b"", b"not xml", b"<xml><a>1</a>", b"<root><a>1</a></root>", b"\xff\xfe<xml/>",
    b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
    b"<xml><Content>&b;</Content></xml>",
])
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_xml(body)


def fields_of(name: str, **changes: str | int) -> dict[str, str]:
    return parse_xml(sample(name, **changes).encode())


def test_text_message() -> None:
    incoming = to_incoming(fields_of("text"))
    assert incoming is not None
    assert (incoming.channel, incoming.user_id, incoming.chat_id) == (
        "wechat", "oXyZ_12AbCdEfGhIjKlMnOpQrStU", "oXyZ_12AbCdEfGhIjKlMnOpQrStU")
    assert (incoming.text, incoming.choice, incoming.message_id) == ("你好", None,
                                                                     "24602178399870001")


@pytest.mark.parametrize(("content", "command", "args"), [
    ("/stats week", "stats", "week"), ("／stats chart 本月", "stats", "chart 本月"),
    ("  /lang ", "lang", ""), ("/today", "today", ""),
    ("/ 你好", None, ""), ("//x", None, ""), ("/统计", None, ""), ("请问 /stats", None, "")])
def test_a_text_starting_with_a_slash_is_a_command(content: str, command: str | None,
                                                   args: str) -> None:
    incoming = to_incoming(fields_of("text", Content=content))
    assert incoming is not None and (incoming.command, incoming.args) == (command, args)
    assert incoming.text == ("" if command else content)
    assert not incoming.files                   # WeChat cannot send spreadsheets


def test_tapped_menu_link_carries_its_menu() -> None:
    incoming = to_incoming(fields_of("text_menu_tap"))
    assert incoming is not None and incoming.text == "1" and incoming.choice == "m1.0"


@pytest.mark.parametrize(("name", "event"), [
    ("event_subscribe", "subscribe"), ("event_subscribe_qrscene", "subscribe"),
    ("event_unsubscribe", "unsubscribe"), ("event_click", "menu:my"),
    ("image", "unsupported:image"), ("location", "unsupported:location"),
])
def test_events_and_other_message_types(name: str, event: str) -> None:
    incoming = to_incoming(fields_of(name))
    assert incoming is not None and incoming.event == event and incoming.message_id


def test_event_identity_is_sender_time_and_event() -> None:
    incoming = to_incoming(fields_of("event_click"))
    assert incoming is not None
    assert incoming.message_id == "oXyZ_12AbCdEfGhIjKlMnOpQrStU:1795395720:CLICK:my"
    subscribe = to_incoming(fields_of("event_subscribe"))
    assert subscribe is not None
    assert subscribe.message_id == "oXyZ_12AbCdEfGhIjKlMnOpQrStU:1795395540:subscribe"


@pytest.mark.parametrize("name", ["event_view", "event_location", "template_job_finish"])
def test_events_that_need_no_answer(name: str) -> None:
    assert to_incoming(fields_of(name)) is None


def test_recognised_voice_is_text() -> None:
    incoming = to_incoming(fields_of("voice"))
    assert incoming is not None and incoming.text == "人工服务" and incoming.event is None


def test_a_message_without_sender_is_refused() -> None:
    with pytest.raises(BadRequest):
        to_incoming({"MsgType": "text", "CreateTime": "1", "ToUserName": "gh"})


def test_choice_is_a_numbered_message_menu_link() -> None:
    line = render_choice(Choice("预约办事", "m12.0"))
    assert line == ('1. <a href="weixin://bizmsgmenu?msgmenucontent=1&msgmenuid=12000">'
                    "预约办事</a>")
    assert token_for_menu_id(menu_id_for("m12.0")) == "m12.0"
    assert token_for_menu_id(menu_id_for("m7.23")) == "m7.23"


def test_global_choice_link_carries_its_token() -> None:
    line = render_choice(Choice("取消 <ABC234>", "g:cancel:ABC234"))
    assert 'msgmenuid=g:cancel:ABC234"' in line and "msgmenucontent=%E5%8F%96%E6%B6%88" in line
    assert "<ABC234>" not in line
    assert token_for_menu_id("g:cancel:ABC234") == "g:cancel:ABC234"
    assert token_for_menu_id("101") is None and token_for_menu_id("") is None


def test_replies_join_into_one_message_and_attachments_are_left_out() -> None:
    ics = Attachment("yuyue-ABC234.ics", b"BEGIN:VCALENDAR", "text/calendar")
    texts = render_replies([Reply("预约成功\n预约码：ABC234", attachment=ics),
                            Reply("请选择：", ((Choice("预约办事", "m3.0"),
                                              Choice("我的预约", "m3.1")),))])
    assert len(texts) == 1
    assert texts[0].startswith("预约成功\n预约码：ABC234\n\n请选择：\n1. <a")
    assert "2. <a" in texts[0] and "VCALENDAR" not in texts[0]


def test_long_answer_is_split_between_lines_within_the_byte_limit() -> None:
    materials = "\n".join(f"{n}. 居民户口簿原件及复印件（原件1份）" for n in range(1, 80))
    choices = tuple((Choice(f"选项{n}", f"m4.{n}"),) for n in range(10))
    texts = render_replies([Reply(materials, choices)])
    assert len(texts) >= 2
    assert all(len(t.encode()) <= 2048 for t in texts)
    assert texts[0].startswith("1. 居民户口簿") and "10. <a" in texts[-1]
    assert all(t.count("<a ") == t.count("</a>") for t in texts)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from("预约办事ab1 ,。\U0001f600"), max_size=900),
                max_size=8),
       st.integers(min_value=8, max_value=300))
def test_split_keeps_every_character_and_the_limit(lines: list[str], limit: int) -> None:
    text = "\n".join(lines)
    parts = split_text(text, limit)
    assert all(len(p.encode()) <= limit for p in parts)
    assert re.sub(r"\s", "", "".join(parts)) == re.sub(r"\s", "", text)


def test_cdata_end_in_text_cannot_break_the_reply() -> None:
    assert cdata("a]]>b") == "a]]]]><![CDATA[>b"


def test_the_menu_labels_fit_wechat_in_both_languages() -> None:
    assert menu_labels("zh-CN") == ["预约办事", "我的预约", "办件进度", "我的办事人", "办事指南",
                                      "人工服务"]
    assert menu_labels("en") != menu_labels("zh-CN")
    for locale in LOCALES:
        # WeChat takes a top-level button's name in at most 16 bytes.
        assert all(0 < len(label.encode()) <= 16 for label in menu_labels(locale)), locale
