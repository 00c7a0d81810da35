"""The terminal chat as a newcomer runs it: a subprocess, a fresh SQLite database, a script."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, valid_id

pytestmark = pytest.mark.slow


def yuyue(settings: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUYUE_")}
    return subprocess.run([sys.executable, "-m", "bot.cli", "--settings", str(settings), *args],
                          input=stdin, capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=120, check=False)


@pytest.fixture
def fresh_settings(tmp_path: Path) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(f'[general]\ncatalog = "{ROOT / "catalog" / "demo.toml"}"\n'
                    f'data_dir = "{tmp_path / "var"}"\n'
                    f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "var" / "yuyue.db"}"\n'
                    f'[conversation]\nattachments_dir = "{tmp_path / "files"}"\n', encoding="utf-8")
    return path


def test_scripted_booking_reschedule_and_cancel_in_the_terminal(fresh_settings: Path, tmp_path: Path) -> None:
    assert yuyue(fresh_settings, "db", "upgrade").returncode == 0
    assert yuyue(fresh_settings, "catalog", "load").returncode == 0
    script = "\n".join([
        "1", "1", "1", "1", "1", "7",            # book, centre, ID card, materials ready, Tue, 11:00
        "1", "张三", "13812345678", valid_id(), "1",   # consent, details, confirm
        "2", "1", "2", "2", "1", "1",            # my bookings, it, reschedule, Wed, 09:00, confirm
        "2", "1", "1", "1",                      # my bookings, it, cancel, yes
        "/quit",
    ]) + "\n"
    result = yuyue(fresh_settings, "chat", "--script", "--clock", "2026-11-23T09:00+08:00", stdin=script)
    assert result.returncode == 0, result.stderr
    transcript = result.stdout
    code = re.search(r"预约码：([A-Z0-9]{6})", transcript).group(1)  # type: ignore[union-attr]
    assert "预约成功" in transcript and "改约成功" in transcript and f"预约 {code} 已取消" in transcript
    assert "11月25日 周三 09:00-09:20" in transcript
    assert (tmp_path / "files" / f"yuyue-{code}.ics").exists()
    assert "Traceback" not in result.stderr


def test_english_terminal_session(fresh_settings: Path) -> None:
    assert yuyue(fresh_settings, "db", "upgrade").returncode == 0
    assert yuyue(fresh_settings, "catalog", "load").returncode == 0
    result = yuyue(fresh_settings, "chat", "--script", "--lang", "en", "--clock", "2026-11-23T09:00+08:00",
                   stdin="3\n1\n/quit\n")
    assert result.returncode == 0 and "Everything" not in result.stderr
    assert "Service guide" in result.stdout and "Bring:" in result.stdout


def test_chat_without_a_database_explains_what_to_do(fresh_settings: Path) -> None:
    result = yuyue(fresh_settings, "chat", "--script", stdin="")
    assert result.returncode == 1 and "yuyue db upgrade" in result.stderr and "Traceback" not in result.stderr
