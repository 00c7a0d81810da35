"""`yuyue bench rush-chat` on a tiny rush: citizens walk the real WeChat webhook (safe mode, a
server in a child process on 127.0.0.1) to the confirmation question, then confirm at once.
No timing is asserted: only what happened to the seats and the replies."""

from __future__ import annotations

from bot import bench_chat


async def test_a_tiny_rush_books_every_seat_once(database_url: str) -> None:
    # Two seats, one per slot; citizens 0 and 2 pick the first slot, so the third is told it
    # is full when picking it and never reaches the confirmation question.
    # (On a slow machine an answer can be late; what is asserted does not depend on that.)
    result = await bench_chat.chat_rush(database_url, citizens=3, seats=2, time_limit=240)
    assert 2 <= result.ready <= 3 and len(result.latencies) == result.ready
    assert result.confirmed <= result.seats_taken == 2 and not result.overbooked


def test_messages_are_signed_and_encrypted_as_wechat_sends_them() -> None:
    query, body = bench_chat.encrypted_request("oRush00001", "1", 42, "99", offset=-86400)
    assert query["encrypt_type"] == "aes" and b"<Encrypt>" in body
    assert query["msg_signature"] == bench_chat.sign(bench_chat.TOKEN, query["timestamp"], "99",
                                                     body.decode().split("CDATA[")[2].split("]]")[0])
