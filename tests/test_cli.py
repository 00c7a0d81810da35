from pathlib import Path

import pytest

from bot import cli


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in ("db", "catalog", "calendar", "doctor"):
        assert command in out


def test_doctor_then_upgrade_then_load(settings_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--settings", str(settings_file), "doctor")
    # The test database is migrated already, but has no services yet.
    assert code == 1 and "yuyue catalog load" in out
    code, out, _ = run(capsys, "--settings", str(settings_file), "db", "upgrade")
    assert code == 0 and "up to date" in out
    code, out, _ = run(capsys, "--settings", str(settings_file), "catalog", "load")
    assert code == 0 and "8 created" in out
    code, out, _ = run(capsys, "--settings", str(settings_file), "catalog", "load")
    assert code == 0 and "8 unchanged" in out
    code, out, _ = run(capsys, "--settings", str(settings_file), "doctor")
    assert code == 0 and "all good" in out


def test_catalog_check_lists_every_problem(tmp_path: Path, settings_file: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[departments.d]\nname = "x"\naddress = "y"\n[services.s]\ndepartment = "d"\n'
                   'name = "n"\nplace = "p"\nslot_minutes = -5\ncapacity = 0\n'
                   'hours = {default = ["09:00-12:00"]}\n', encoding="utf-8")
    code, out, err = run(capsys, "--settings", str(settings_file), "catalog", "check", str(bad))
    assert code == 1
    assert "services.s.slot_minutes: must be a positive integer and at most 480, got -5" in err
    assert "services.s.capacity: must be a positive integer, got 0" in err
    assert "services.s.materials: is required" in err
    assert "Traceback" not in err
    code, out, _ = run(capsys, "--settings", str(settings_file), "catalog", "check",
                       str(Path(__file__).parent.parent / "catalog" / "demo.toml"))
    assert code == 0 and "8 services" in out
    code, _, err = run(capsys, "--settings", str(settings_file), "catalog", "check", str(tmp_path / "none.toml"))
    assert code == 1 and "cannot be read" in err


def test_calendar_explains_each_day(settings_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--settings", str(settings_file), "calendar", "2026-02-13", "2026-02-16")
    lines = out.strip().splitlines()
    assert len(lines) == 4
    assert "make-up working day" in lines[1] and "春节" in lines[1]
    assert lines[2].endswith("closed: weekend")
    code, _, err = run(capsys, "--settings", str(settings_file), "calendar", "2026-02-30")
    assert code == 1 and "dates must look like" in err
    code, _, err = run(capsys, "--settings", str(settings_file), "calendar", "2026-03-01", "2026-02-01")
    assert code == 1 and "before the first" in err


def test_unreachable_database_is_explained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = tmp_path / "s.toml"
    settings.write_text('[database]\nurl = "postgresql+asyncpg://nobody@127.0.0.1:9/none"\n', encoding="utf-8")
    code, out, err = run(capsys, "--settings", str(settings), "doctor")
    assert code == 1 and "database not reachable" in out and "Traceback" not in out + err


def test_doctor_says_how_wechat_reminders_leave_the_48_hour_window(
        settings_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUYUE_WECHAT__TOKEN", "token-for-doctor")
    _, out, _ = run(capsys, "--settings", str(settings_file), "doctor")
    assert "WeChat reminders outside the 48-hour window will be undeliverable" in out
    monkeypatch.setenv("YUYUE_WECHAT__SUBSCRIBE_TEMPLATE_ID", "SUBS-TPL")
    _, out, _ = run(capsys, "--settings", str(settings_file), "doctor")
    assert "FIX   WeChat reminders outside the 48-hour window: one-time subscription" in out
    assert "set wechat.public_url" in out
    monkeypatch.setenv("YUYUE_WECHAT__PUBLIC_URL", "https://yuyue.example.gov.cn/")
    monkeypatch.setenv("YUYUE_WECHAT__APP_ID", "wx49f0ab532d5d035a")
    _, out, _ = run(capsys, "--settings", str(settings_file), "doctor")
    assert "ok    WeChat reminders outside the 48-hour window: one-time subscription messages, " \
           "consent page https://yuyue.example.gov.cn/wechat/consent" in out


def test_stats_and_export_name_a_service_as_the_chat_does(
        settings_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = ("--settings", str(settings_file))
    assert run(capsys, *settings, "catalog", "load")[0] == 0
    code, out, _ = run(capsys, *settings, "stats", "month", "口腔")
    assert code == 0 and "口腔科门诊" in out and "不分事项" in out
    code, _, err = run(capsys, *settings, "stats", "month", "门诊")
    assert code == 1 and "对得上好几个" in err and "dental：口腔科门诊" in err
    assert "Traceback" not in err
    code, _, err = run(capsys, *settings, "export", "month", "护照", "--out", str(tmp_path))
    assert code == 1 and "没有叫“护照”" in err and "id_card" in err


def test_run_refuses_a_pretend_clock_with_real_chats(
        settings_file: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUYUE_TELEGRAM__TOKEN", "123456:test-token-not-real")
    code, out, err = run(capsys, "--settings", str(settings_file), "run",
                         "--clock", "2026-11-23T09:00+08:00")
    assert code != 0 and "--clock only works with the terminal chat" in err
    assert "yuyue chat --clock" in err and "Traceback" not in out + err


def test_doctor_warns_that_plain_mode_lets_a_seen_url_post_as_anyone(
        settings_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUYUE_WECHAT__TOKEN", "token-for-doctor")
    _, out, _ = run(capsys, "--settings", str(settings_file), "doctor")
    assert "WARNING: WeChat is in plain mode" in out and "post as any user" in out
    monkeypatch.setenv("YUYUE_WECHAT__ENCODING_AES_KEY", "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR")
    _, out, _ = run(capsys, "--settings", str(settings_file), "doctor")
    assert "plain mode" not in out


@pytest.mark.parametrize("option", [("--users", "0"), ("--users", "99999999"), ("--seats", "-1"),
                                    ("--processes", "0"), ("--processes", "100000"),
                                    ("--concurrency", "0"), ("--concurrency", "10000"),
                                    ("--pgbench", "-5"), ("--pgbench", "99999")])
def test_the_booking_benchmark_refuses_what_it_cannot_run(
        settings_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        option: tuple[str, str]) -> None:
    """A huge or empty rush, or thousands of processes: a plain refusal, nothing started."""
    code, out, err = run(capsys, "--settings", str(settings_file), "bench", "booking",
                         "--database-url", f"sqlite+aiosqlite:///{tmp_path / 'scratch.db'}",
                         "--pgbench", "0", *option)
    assert code != 0 and f"{option[0]} must be between" in err
    assert "Traceback" not in out + err and not (tmp_path / "scratch.db").exists()
