"""The SMS rules at their boundaries, with no database and no provider: which notices go by
SMS, the quiet hours with the closure exception, and the per-number limits."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from storage.settings import SettingsError, SmsSettings, load_settings
from storage.sms_rules import (
    CODE_KIND,
    quiet_until,
    rate_limited_until,
    sms_gate,
    sms_wanted,
)
from tests.helpers import TZ, local

SMS = SmsSettings(provider="tencent")


@pytest.mark.parametrize(("policy", "chat", "wanted"), [
    ("never", False, False), ("never", True, False),
    ("fallback", False, True), ("fallback", True, False),
    ("always", False, True), ("always", True, True),
])
def test_which_notices_go_by_sms(policy: str, chat: bool, wanted: bool) -> None:
    assert sms_wanted(policy, chat_can_deliver=chat) is wanted


def test_default_policy() -> None:
    policy = SmsSettings().policy_for
    assert policy("booking_confirmed") == policy("reminder") == "fallback"
    assert policy("closure_cancelled") == "always"
    assert policy("case_ready") == "fallback"
    assert policy("rating_request") == "never"          # anything not listed


@pytest.mark.parametrize(("hour", "minute", "quiet"), [
    (20, 59, False), (21, 0, True), (23, 30, True), (0, 0, True), (7, 59, True), (8, 0, False),
])
def test_quiet_hours_edges(hour: int, minute: int, quiet: bool) -> None:
    now = local(2026, 11, 24, hour, minute)
    resume = quiet_until(now, TZ, SMS, kind="reminder")
    assert (resume is not None) is quiet
    if resume is not None:
        assert resume == local(2026, 11, 25 if hour >= 21 else 24, 8)


def test_a_closure_for_the_next_morning_goes_at_night() -> None:
    night = local(2026, 11, 24, 22)
    assert quiet_until(night, TZ, SMS, kind="closure_cancelled",
                       appointment_start=local(2026, 11, 25, 11, 59)) is None
    assert quiet_until(night, TZ, SMS, kind="closure_cancelled",
                       appointment_start=local(2026, 11, 25, 12)) == local(2026, 11, 25, 8)
    # the same appointment, but a reminder: waits
    assert quiet_until(night, TZ, SMS, kind="reminder",
                       appointment_start=local(2026, 11, 25, 9)) == local(2026, 11, 25, 8)
    assert quiet_until(night, TZ, SMS, kind=CODE_KIND) is None


def test_per_number_limits() -> None:
    now = local(2026, 11, 24, 10)
    assert rate_limited_until(now, TZ, SMS, []) is None
    just_now = [now - dt.timedelta(seconds=20)]
    assert rate_limited_until(now, TZ, SMS, just_now) == now + dt.timedelta(seconds=40)
    five = [now - dt.timedelta(minutes=m) for m in (50, 40, 30, 20, 10)]
    assert rate_limited_until(now, TZ, SMS, five) == now + dt.timedelta(minutes=10)
    assert rate_limited_until(now, TZ, SMS, five[1:]) is None
    ten_today = [local(2026, 11, 24, 0, 30) + dt.timedelta(minutes=7 * i) for i in range(10)]
    assert rate_limited_until(now, TZ, SMS, ten_today) == local(2026, 11, 25)
    yesterday = [t - dt.timedelta(days=1) for t in ten_today]
    assert rate_limited_until(now, TZ, SMS, yesterday) is None


def test_the_gate() -> None:
    now = local(2026, 11, 24, 10)
    assert sms_gate(now, TZ, SMS, kind="reminder", opted_out=False, sent=[]).send_now
    assert sms_gate(now, TZ, SMS, kind="reminder", opted_out=True, sent=[]).refused == "sms opted out"
    assert sms_gate(now, TZ, SMS, kind=CODE_KIND, opted_out=True, sent=[]).send_now
    # the day's limit reached at 20:50: the next free moment is midnight, in the quiet hours
    evening = local(2026, 11, 24, 20, 50)
    full = [local(2026, 11, 24, 9) + dt.timedelta(hours=i) for i in range(10)]
    gate = sms_gate(evening, TZ, SMS, kind="reminder", opted_out=False, sent=full)
    assert gate.defer_until == local(2026, 11, 25, 8)


def test_sms_settings_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('[sms]\npolicy = {reminder = "sometimes"}\n', encoding="utf-8")
    with pytest.raises(SettingsError, match=r"sms\.policy: expected"):
        load_settings(path, environ={})
    path.write_text('[sms.templates]\nreminder = {id = "12", params = ["weather"]}\n',
                    encoding="utf-8")
    with pytest.raises(SettingsError, match=r"sms\.templates: expected"):
        load_settings(path, environ={})
    path.write_text('[sms]\nprovider = "tencent"\n[sms.templates]\nreminder = {id = "1234567", '
                    'params = ["service", "when"]}\n', encoding="utf-8")
    loaded = load_settings(path, environ={"YUYUE_SMS__SECRET_KEY": "k"})
    assert loaded.sms.templates["reminder"].params == ("service", "when")
    assert loaded.sms.secret_key == "k"
