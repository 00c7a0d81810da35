"""The Telegram webhook under generated input (bench/fuzz_telegram.py): whatever is posted, no
5xx answer, no failure in the logs, no apology sent. A slice runs with the suite; the full
corpus of 10,000 is marked slow."""

from __future__ import annotations

import pytest

from bench.fuzz_telegram import run_fuzz
from tests.conftest import postgres_url

SEED = 20261203


async def test_a_thousand_generated_updates_cause_no_error() -> None:
    report = await run_fuzz(1_000, SEED)
    assert report.count == 1_000 and len(report.kinds) == 10       # every kind was made
    assert (report.server_errors, report.tracebacks, report.apologies) == (0, 0, 0), \
        report.table()
    assert report.replies > 300                                     # conversations went on


@pytest.mark.slow
@pytest.mark.skipif(postgres_url() is not None,
                    reason="the corpus runs on its own SQLite file: once per test run is enough")
async def test_the_full_corpus_of_ten_thousand_causes_no_error() -> None:
    report = await run_fuzz(10_000, SEED)
    assert (report.server_errors, report.tracebacks, report.apologies) == (0, 0, 0), \
        report.table()
