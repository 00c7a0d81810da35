"""The WeChat webhook fuzz corpus (bench/fuzz_wechat.py) as a test: a slice of it in the normal
suite (1,000 inputs on SQLite, the first 300 of them on PostgreSQL; YUYUE_FUZZ_INPUTS=10000 for
the full corpus), over real HTTP in plain and safe mode, must end with no server error, no
traceback in the log and no apology reply."""

from __future__ import annotations

import os

import pytest

from bench.fuzz_wechat import generate, report, run_fuzz
from storage.clock import ManualClock
from storage.db import Database
from tests.fakes.wechat_api import FakeWechatApi
from tests.helpers import examples, load_demo
from tests.test_wechat_webhook import Citizen, make_env

pytestmark = pytest.mark.slow


def test_the_corpus_is_the_same_for_the_same_seed() -> None:
    first, again = list(generate(7, 300)), list(generate(7, 300))
    assert first == again and list(generate(8, 300)) != first
    kinds = {case.kind for case in generate(20261203, 1000)}
    assert {"text", "event", "odd type", "malformed body", "missing or odd field", "replay",
            "signature bad", "signature stale", "signature bad_msg"} <= kinds


async def test_the_fuzz_corpus_finds_no_server_error_traceback_or_apology(
        database_url: str) -> None:
    inputs = int(os.environ.get("YUYUE_FUZZ_INPUTS") or examples(1000, on_postgres=300))
    result = await run_fuzz(database_url, inputs=inputs, seed=20261203)
    summary = report(result, 20261203)
    assert result.inputs == inputs, summary
    assert (result.server_errors, result.tracebacks, result.apologies) == (0, 0, 0), summary
    assert result.statuses[200] and result.statuses[400] and result.statuses[403], summary


async def test_a_number_of_thousands_of_digits_at_a_menu_is_not_an_error(
        database: Database, clock: ManualClock, wechat_api: FakeWechatApi) -> None:
    """Found by the corpus: int() refuses strings over 4,300 digits."""
    async with database.session() as session:
        await load_demo(session, clock.now())
    env = await make_env(database, clock, wechat_api, safe=False)
    citizen = Citizen(env)
    assert "预约办事" in await citizen.say("你好")
    answer = await citizen.say("9" * 5000)
    assert answer and "系统出了点问题" not in answer
    await env.channel.close()
    await env.http.aclose()
