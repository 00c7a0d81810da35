"""``yuyue doctor`` on the SMS settings, and the staff's opt-out commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cli import run


def test_doctor_checks_the_sms_settings(settings_file: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    run(capsys, "--settings", str(settings_file), "db", "upgrade")
    _, out, _ = run(capsys, "--settings", str(settings_file), "doctor")
    assert "SMS is off" in out
    monkeypatch.setenv("YUYUE_SMS__PROVIDER", "tencent")
    code, out, _ = run(capsys, "--settings", str(settings_file), "doctor")
    assert code == 1
    assert "FIX   SMS provider tencent: API key set" in out and "YUYUE_SMS__SECRET_KEY" in out
    assert "FIX   SMS templates for 0 of 16 notice kinds" in out and "missing: booking_confirmed" in out
    with settings_file.open("a", encoding="utf-8") as file:
        file.write('[sms]\nsdk_app_id = "1400000001"\nsign_name = "某某市政务服务中心"\n'
                   '[sms.policy]\ncase_accepted = "never"\ncase_correction = "never"\n'
                   'case_ready = "never"\ncase_refused = "never"\ncase_extended = "never"\n'
                   'case_expected = "never"\ncase_uncollected = "never"\n'
                   '[sms.templates]\nbooking_confirmed = {id = "1", params = ["service", "when", "code"]}\n'
                   'reminder = {id = "2", params = ["service", "when", "place", "code"]}\n'
                   'cancelled = {id = "3", params = ["service", "when"]}\n'
                   'closure_cancelled = {id = "4", params = ["service", "when", "reason"]}\n'
                   'sms_code = {id = "5", params = ["code", "minutes"]}\n'
                   'closure_substitute = {id = "6", params = ["service", "when", "doctor", "deadline"]}\n'
                   'closure_move = {id = "7", params = ["service", "when", "new_when", "doctor", "deadline"]}\n'
                   'move_offer = {id = "8", params = ["service", "when", "new_when", "deadline"]}\n'
                   'offer_answered = {id = "9", params = ["summary", "service", "when", "code"]}\n'
                   'offer_ambiguous = {id = "10", params = []}\n')
    monkeypatch.setenv("YUYUE_SMS__SECRET_ID", "AKIDx")
    monkeypatch.setenv("YUYUE_SMS__SECRET_KEY", "s3cr3t-k3y")
    code, out, _ = run(capsys, "--settings", str(settings_file), "doctor")
    assert "ok    SMS templates for 9 of 9 notice kinds" in out
    assert "ok    SMS application 1400000001 with signature 【某某市政务服务中心】" in out
    assert "s3cr3t-k3y" not in out and "AKIDx" not in out


def test_staff_record_an_opt_out_and_the_number_is_never_printed(
        settings_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "--settings", str(settings_file), "db", "upgrade")
    code, out, _ = run(capsys, "--settings", str(settings_file), "sms", "opt-out", "138 1234 5678")
    assert code == 0 and out.strip() == "138****5678 opted out of texts"
    _, out, _ = run(capsys, "--settings", str(settings_file), "sms", "opt-out", "+8613812345678")
    assert "(already so)" in out
    _, out, _ = run(capsys, "--settings", str(settings_file), "sms", "opt-in", "13812345678")
    assert out.strip() == "138****5678 receives texts"
    code, _, err = run(capsys, "--settings", str(settings_file), "sms", "opt-out", "12345")
    assert code != 0 and "not a mainland mobile number" in err and "Traceback" not in err
