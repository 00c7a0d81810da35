"""The Telegram webhook under generated input (bench/fuzz_telegram.py): whatever is posted, no
5xx answer, no failure in the logs, no apology sent. A slice of 1,000 runs with the suite;
YUYUE_FUZZ_INPUTS=10000 (or ``python -m bench.fuzz_telegram --count 10000``) runs the full
corpus, whose figures are in docs/benchmarks.md."""

from __future__ import annotations

import os

from bench.fuzz_telegram import run_fuzz

SEED = 20261203


async def test_generated_updates_cause_no_error() -> None:
    count = int(os.environ.get("YUYUE_FUZZ_INPUTS", "1000"))
    report = await run_fuzz(count, SEED)
    assert report.count == count and len(report.kinds) == 10       # every kind was made
    assert (report.server_errors, report.tracebacks, report.apologies) == (0, 0, 0), \
        report.table()
    assert report.replies > count * 3 // 10                         # conversations went on
