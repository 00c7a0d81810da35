"""The terminal chat as a newcomer runs it: a fresh SQLite database, `yuyue db upgrade`,
`yuyue catalog load`, then a scripted chat. The journeys go through the CLI's own entry point
in this process (standard input and output replaced); one smoke test starts the installed
`yuyue` command as its own process."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot import cli
from tests.helpers import ROOT, valid_id


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


Yuyue = Callable[..., Run]


@pytest.fixture
def yuyue(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Yuyue:
    """Run ``yuyue ARGS`` in this process with ``stdin`` as its standard input."""
    for name in os.environ:
        if name.startswith("YUYUE_") and "__" in name:   # settings overrides of the outer shell
            monkeypatch.delenv(name)

    def run(settings: Path, *args: str, stdin: str = "") -> Run:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = cli.main(["--settings", str(settings), *args])
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run


@pytest.fixture
def fresh_settings(tmp_path: Path) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(f'[general]\ncatalog = "{ROOT / "catalog" / "demo.toml"}"\n'
                    f'data_dir = "{tmp_path / "var"}"\n'
                    f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "var" / "yuyue.db"}"\n'
                    f'[conversation]\nattachments_dir = "{tmp_path / "files"}"\n', encoding="utf-8")
    return path


def set_up(yuyue: Yuyue, settings: Path) -> None:
    assert yuyue(settings, "db", "upgrade").code == 0
    assert yuyue(settings, "catalog", "load").code == 0


def test_scripted_booking_reschedule_and_cancel_in_the_terminal(yuyue: Yuyue, fresh_settings: Path,
                                                                tmp_path: Path) -> None:
    set_up(yuyue, fresh_settings)
    script = "\n".join([
        "1", "1", "1", "1", "1", "1", "7",       # book, centre, ID card, materials ready, Tue, 上午, 11:00
        "1", "张三", "13812345678", valid_id(), "1",   # consent, details, confirm
        "2", "1", "2", "2", "1", "1", "1",       # my bookings, it, reschedule, Wed, 上午, 09:00, confirm
        "2", "1", "1", "1",                      # my bookings, it, cancel, yes
        "/quit",
    ]) + "\n"
    result = yuyue(fresh_settings, "chat", "--script", "--clock", "2026-11-23T09:00+08:00", stdin=script)
    assert result.code == 0, result.err
    transcript = result.out
    code = re.search(r"预约码：([A-Z0-9]{6})", transcript).group(1)  # type: ignore[union-attr]
    assert "预约成功" in transcript and "改约成功" in transcript and f"预约 {code} 已取消" in transcript
    assert "11月25日 周三 09:00-09:20" in transcript
    assert (tmp_path / "files" / f"yuyue-{code}.ics").exists()
    assert "Traceback" not in result.err


def test_english_terminal_session(yuyue: Yuyue, fresh_settings: Path) -> None:
    set_up(yuyue, fresh_settings)
    result = yuyue(fresh_settings, "chat", "--script", "--lang", "en", "--clock", "2026-11-23T09:00+08:00",
                   stdin="3\n1\n/quit\n")
    assert result.code == 0 and "Everything" not in result.err
    assert "Service guide" in result.out and "Bring:" in result.out


def test_everyday_words_and_elder_mode_in_the_terminal(yuyue: Yuyue, fresh_settings: Path) -> None:
    set_up(yuyue, fresh_settings)
    script = "\n".join(["嗯我想补办一下身分证", "1", "取消", "取消", "长辈模式", "1", "/quit"]) + "\n"
    result = yuyue(fresh_settings, "chat", "--script", "--clock", "2026-11-23T09:00+08:00", stdin=script)
    assert result.code == 0, result.err
    out = result.out
    assert "居民身份证办理" in out and "第1步 网上预约" in out and "咨询电话：0571-8800 1203" in out
    assert "填写到一半的内容没有保存" in out and "目前没有进行中的操作" in out
    assert "已切换为长辈模式" in out and "或拨打电话 0571-8800 1234" in out


def test_chat_without_a_database_explains_what_to_do(yuyue: Yuyue, fresh_settings: Path) -> None:
    result = yuyue(fresh_settings, "chat", "--script")
    assert result.code == 1 and "yuyue db upgrade" in result.err and "Traceback" not in result.err


@pytest.mark.slow
def test_the_installed_command_chats_and_starts_without_the_report_libraries(
        yuyue: Yuyue, fresh_settings: Path) -> None:
    set_up(yuyue, fresh_settings)
    command = Path(sys.executable).with_name("yuyue")
    assert command.exists(), "install Yuyue first: bash scripts/setup.sh"
    env = {k: v for k, v in os.environ.items() if not k.startswith("YUYUE_")}
    env["PYTHONPROFILEIMPORTTIME"] = "1"     # every module the process imports, on stderr
    result = subprocess.run([str(command), "--settings", str(fresh_settings), "chat", "--script",
                             "--lang", "en", "--clock", "2026-11-23T09:00+08:00"],
                            input="3\n1\n/quit\n", capture_output=True, text=True, cwd=ROOT, env=env,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Service guide" in result.stdout and "Bring:" in result.stdout
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "handlers.engine" in imported               # the profile is there to be read
    # A chat draws no chart, writes no spreadsheet and runs no benchmark.
    assert not {"matplotlib", "openpyxl", "bot.bench", "bot.charts", "bot.export"} & imported


def test_case_progress_in_the_terminal(yuyue: Yuyue, fresh_settings: Path) -> None:
    set_up(yuyue, fresh_settings)
    result = yuyue(fresh_settings, "chat", "--script", "--clock", "2026-11-23T09:00+08:00",
                   stdin="5\n进度\n1234 5671\n1234 5678\n/quit\n")
    assert result.code == 0, result.err
    assert result.out.count("您名下还没有办件") == 2                     # the menu's 5, and 进度
    assert "没有找到办件编号为 1234 5671 的办件" in result.out              # valid, nobody's
    assert "编号 1234 5678 有误" in result.out                             # wrong check digit


KIND_NUMBERS = {"即办件": "1", "承诺件": "2", "补办件": "3", "退回件": "4", "联办件": "5", "上报件": "6"}


@pytest.mark.parametrize("kind", list(KIND_NUMBERS))
def test_a_case_of_each_kind_in_the_terminal(kind: str, yuyue: Yuyue, fresh_settings: Path) -> None:
    """The citizen books in one terminal, a clerk (allow-listed) serves them and opens the case in
    another, moves it on, and the citizen follows it with 进度."""
    with fresh_settings.open("a", encoding="utf-8") as settings:
        settings.write('[access]\nstaff = ["terminal:clerk"]\n')
    set_up(yuyue, fresh_settings)

    def chat(user: str, clock: str, *lines: str) -> str:
        result = yuyue(fresh_settings, "chat", "--script", "--user", user, "--clock", clock,
                       stdin="\n".join([*lines, "/quit"]) + "\n")
        assert result.code == 0 and "Traceback" not in result.err, result.err
        return result.out

    booked = chat("local", "2026-11-23T09:00+08:00", "1", "1", "1", "1", "1", "1", "7", "1", "张三",
                  "13812345678", valid_id(), "1")
    code = re.search(r"预约码：([A-Z0-9]{6})", booked).group(1)  # type: ignore[union-attr]
    needs = {"补办件": ["1", "完成"], "退回件": ["不属于本中心办理范围", "《居民身份证法》第八条"],
             "联办件": ["公安局 3、民政局 5"]}.get(kind, [])
    opened = chat("clerk", "2026-11-24T11:05+08:00", f"/checkin {code}", f"/done {code}",
                  KIND_NUMBERS[kind], *needs)
    number = re.findall(r"(\d{4} \d{4})", opened.split("已办结", 1)[-1])[0]
    moves = {"补办件": [f"/resubmit {number}"], "联办件": [f"/partdone {number} 公安局",
                                                      f"/partdone {number} 民政局"],
             "上报件": [f"/expect {number} 12-18"]}.get(kind, [])
    if kind not in ("即办件", "退回件"):
        moves += [f"/ready {number}", f"/collected {number}"]
    moved = chat("clerk", "2026-11-25T10:00+08:00", *moves, f"/case {number}")
    state = "不予受理" if kind == "退回件" else "已办结"
    assert f"状态：{state}" in moved.split(f"【办件 {number}】")[-1], moved
    progress = chat("local", "2026-11-25T10:30+08:00", "进度", number)
    assert f"【{number}】居民身份证办理" in progress and f"类型：{kind}" in progress
    expected = {"即办件": "已受理并当场办结", "补办件": "补正材料已收到", "退回件": "不予受理：不属于本中心办理范围",
                "联办件": "民政局已办完", "上报件": "上级部门预计12月18日 周五前答复"}.get(kind, "已领取")
    assert expected in progress, progress
