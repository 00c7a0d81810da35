"""The outbox's delivery policy as plain rules: how long to wait before trying again."""

from __future__ import annotations

import datetime as dt

from storage.outbox import DeliveryPolicy, retry_delay

POLICY = DeliveryPolicy(retry_base_seconds=30, max_attempts=6)


def test_each_failure_doubles_the_wait() -> None:
    assert [retry_delay(n, POLICY).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]


def test_a_platform_asking_for_longer_is_heard_but_never_shortens_the_wait() -> None:
    assert retry_delay(1, POLICY, retry_after=90) == dt.timedelta(seconds=90)
    assert retry_delay(3, POLICY, retry_after=5) == dt.timedelta(seconds=120)
