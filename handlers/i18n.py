"""Message catalogs: every user-facing text, in zh-CN (first) and en (second).

Catalogs are TOML files in handlers/locales/; nested tables become dotted keys
("booking.pick_date"). Values use str.format placeholders ("{code}").
"""

from __future__ import annotations

import datetime as dt
import functools
import tomllib
from pathlib import Path
from typing import Any

LOCALES = ("zh-CN", "en")
DEFAULT_LOCALE = "zh-CN"
_DIR = Path(__file__).parent / "locales"


def normalize_locale(code: str | None, default: str = DEFAULT_LOCALE) -> str:
    """Map a platform language code ("zh-hans", "zh_CN", "en-US", None) to a catalog."""
    if not code:
        return default
    code = code.lower().replace("_", "-")
    if code.startswith("en"):
        return "en"
    if code.startswith("zh"):
        return "zh-CN"
    return default


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


@functools.cache
def catalog(locale: str) -> dict[str, str]:
    """All messages of one locale, by dotted key: ``<locale>.toml`` plus every
    ``<part>.<locale>.toml`` (one file per area, e.g. staff.zh-CN.toml)."""
    messages: dict[str, str] = {}
    for path in [_DIR / f"{locale}.toml", *sorted(_DIR.glob(f"*.{locale}.toml"))]:
        messages.update(_flatten(tomllib.loads(path.read_text(encoding="utf-8"))))
    return messages


def translate(locale: str, key: str, **values: Any) -> str:
    """The message ``key`` in ``locale`` with ``values`` filled in.

    A missing key falls back to zh-CN and then to the key itself, so a chat never breaks
    (the catalog test makes sure none is missing).
    """
    text = catalog(locale).get(key) or catalog(DEFAULT_LOCALE).get(key) or key
    return text.format(**values) if values else text


class Speaker:
    """Translation in one language, for texts made outside a conversation (notifications,
    the command line)."""

    def __init__(self, locale: str) -> None:
        self.locale = locale

    def t(self, key: str, **values: Any) -> str:
        return translate(self.locale, key, **values)


WEEKDAYS = {"zh-CN": "一二三四五六日", "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")}


def format_day(day: dt.date, locale: str, today: dt.date | None = None) -> str:
    """"11月24日 周二" / "Tue 24 Nov"; with the year ("2027年2月21日 周日" / "Sun 21 Feb
    2027") when ``today`` is given and falls in another year."""
    other_year = today is not None and day.year != today.year
    if locale == "en":
        text = f"{WEEKDAYS['en'][day.weekday()]} {day.day} {day.strftime('%b')}"
        return f"{text} {day.year}" if other_year else text
    text = f"{day.month}月{day.day}日 周{WEEKDAYS['zh-CN'][day.weekday()]}"
    return f"{day.year}年{text}" if other_year else text


def format_time(when: dt.datetime) -> str:
    return when.strftime("%H:%M")


def format_when(when: dt.datetime, locale: str, today: dt.date | None = None) -> str:
    """A local instant as "11月24日 周二 09:00" / "Tue 24 Nov 09:00" (with the year when it is
    not ``today``'s)."""
    return f"{format_day(when.date(), locale, today)} {format_time(when)}"
