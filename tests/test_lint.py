"""The code stays lint-clean (ruff's rules in pyproject.toml, naive datetimes included) and
the layers stay apart: storage knows no chat, handlers know no platform."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "bot", "handlers", "storage", "tests", "bench"],
                            cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:]


def test_imports_only_go_down() -> None:
    forbidden = {"storage": r"(handlers|bot|telegram|wechatpy|matplotlib|openpyxl)",
                 "handlers": r"(bot|telegram|wechatpy|matplotlib|openpyxl|sqlalchemy)"}
    for layer, names in forbidden.items():
        for path in (ROOT / layer).rglob("*.py"):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                assert not re.match(rf"^\s*(from|import)\s+{names}\b", line), f"{path}:{number}: {line}"
