import datetime as dt
from pathlib import Path

import pytest

from bot import cli
from storage.settings import BlockTier, Cutoff, Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_shipped_settings_file_is_all_defaults() -> None:
    shipped = load_settings(ROOT / "settings.toml", environ={})
    defaults = Settings(base_dir=shipped.base_dir)
    assert shipped == defaults
    assert shipped.general.timezone.key == "Asia/Shanghai"
    assert shipped.rules.cancel_cutoff == Cutoff(working_days=1)
    assert shipped.rules.block_tiers == (BlockTier(3, 90), BlockTier(6, 180))
    assert shipped.rules.booking_stop == dt.time(15, 0)
    assert shipped.notifications.reminder_offsets == (dt.timedelta(hours=2),)
    assert shipped.telegram.token == ""


@pytest.mark.parametrize(("body", "message"), [
    ('[rules]\nno_show_grace_minutes = -5\n',
     "rules.no_show_grace_minutes: expected a number of at least 0, got -5"),
    ('[general]\ntimezone = "Asia/Atlantis"\n',
     'general.timezone: expected an IANA time zone like "Asia/Shanghai", got "Asia/Atlantis"'),
    ('[rules]\nhold_minute = 5\n', "rules.hold_minute: unknown setting"),
    ('[rulez]\nx = 1\n', "[rulez]: unknown settings section"),
    ('[rules]\nhold_minutes = "ten"\n', 'rules.hold_minutes: expected a whole number, got "ten"'),
    ('[rules]\nhold_minutes = true\n', "rules.hold_minutes: expected a whole number, got True"),
    ('[rules]\ncancel_cutoff = "tomorrow"\n', 'rules.cancel_cutoff: expected working days like "1wd"'),
    ('[rules]\nlate_cancel = "fine"\n', 'rules.late_cancel: expected one of "refuse", "strike"'),
    ('[wechat]\npublic_url = "yuyue.example.gov.cn"\n',
     "wechat.public_url: expected an http(s) address like https://yuyue.example.gov.cn, or empty"),
    ('[rules]\nblock_tiers = [{strikes = 6, days = 90}, {strikes = 3, days = 10}]\n',
     "rules.block_tiers: expected a list like"),
    ('[database]\necho = "yes"\n', 'database.echo: expected true or false, got "yes"'),
    ('[calendar]\nclosed_dates = ["2026-02-30"]\n', 'calendar.closed_dates: expected a date like'),
    ('[web]\nport = 70000\n', "web.port: expected a number of at most 65535, got 70000"),
    ('rules = 3\n', "rules: expected a [rules] table"),
    ('[rules\n', "not valid TOML"),
])
def test_bad_values_name_the_key_the_value_and_what_is_expected(tmp_path: Path, body: str,
                                                                message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(write(tmp_path, body), environ={})
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_environment_overrides_any_key_with_its_type(tmp_path: Path) -> None:
    path = write(tmp_path, "[rules]\nhold_minutes = 5\n")
    settings = load_settings(path, environ={
        "YUYUE_RULES__HOLD_MINUTES": "12", "YUYUE_TELEGRAM__TOKEN": "abc:def",
        "YUYUE_ACCESS__STAFF": '["telegram:1", "wechat:o1"]', "YUYUE_DATABASE__ECHO": "true",
        "YUYUE_RULES__CANCEL_CUTOFF": "24h", "YUYUE_TEST_DATABASE_URL": "ignored: no section"})
    assert settings.rules.hold_minutes == 12
    assert settings.telegram.token == "abc:def"
    assert settings.access.staff == ("telegram:1", "wechat:o1")
    assert settings.database.echo is True
    assert settings.rules.cancel_cutoff == Cutoff(delta=dt.timedelta(hours=24))


def test_bad_environment_value_is_reported_like_a_file_value(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"rules\.hold_minutes: expected a number of at least 1, got -1"):
        load_settings(write(tmp_path, ""), environ={"YUYUE_RULES__HOLD_MINUTES": "-1"})
    with pytest.raises(SettingsError, match="unknown settings section"):
        load_settings(write(tmp_path, ""), environ={"YUYUE_NOPE__X": "1"})


def test_secret_values_are_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(write(tmp_path, '[telegram]\ntoken = 12345\n'), environ={})
    assert "12345" not in str(caught.value)
    assert "(hidden)" in str(caught.value)


def test_cli_stops_with_exit_2_and_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "[rules]\nno_show_grace_minutes = -1\n")
    assert cli.main(["--settings", str(path), "doctor"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("yuyue: bad setting: rules.no_show_grace_minutes: "
                           "expected a number of at least 0, got -1")


def test_missing_explicit_settings_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="settings file not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_shipped_settings_file_lists_every_key_with_a_comment() -> None:
    import dataclasses
    import tomllib

    text = (ROOT / "settings.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    for section in dataclasses.fields(Settings):
        if section.name == "base_dir":
            continue
        keys = {f.name for f in dataclasses.fields(section.type if isinstance(section.type, type)
                                                   else getattr(Settings(), section.name))}
        assert set(data[section.name]) == keys, section.name
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#") and not line.startswith("["):
            assert "#" in line, f"no comment on: {line}"
