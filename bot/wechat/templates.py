"""Template message values, each written the way its keyword's type requires.

WeChat checks every value of a template message against its keyword's type and refuses the
whole message (errcode 47003) when one does not fit: a ``time`` keyword takes a 24-hour time
with an optional date ("15:01", "2019年10月1日 15:01"), not "12月4日 周五 09:00". The type is
the letters before the digits of the keyword's name (``thing3`` -> ``thing``).

``template_value(keyword, text, instant=None)``: the value for ``keyword`` from ``text`` (and,
for a time or a date, the local ``instant`` it stands for). Raises ``TemplateValueError``
when nothing of ``text`` fits the type.
"""

from __future__ import annotations

import datetime as dt
import re

from bot.channels import Unreachable

# WeChat's types (模板消息 → 关键词类型) and how long each value may be, in characters.
LIMITS = {"thing": 20, "character_string": 32, "phrase": 5, "number": 32, "letter": 32,
          "symbol": 5, "name": 10, "amount": 11, "phone_number": 17, "car_number": 8}
TIME_TYPES = ("time", "date")
_CHINESE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]")
_SYMBOL = re.compile(r"[!-/:-@\[-`{-~]")


class TemplateValueError(Unreachable):
    """Nothing of a value fits its keyword's type: the template cannot be sent."""


def keyword_type(keyword: str) -> str:
    """``thing3`` -> ``thing``, ``character_string12`` -> ``character_string``."""
    return re.sub(r"\d+$", "", keyword)


def template_value(keyword: str, text: str, instant: dt.datetime | None = None) -> str:
    """The value of ``keyword`` made from ``text`` (or ``instant``, a local time, for a time or
    date keyword), as its type requires.

    Raises:
        TemplateValueError: nothing of ``text`` fits (e.g. a ``phrase`` from Latin letters),
            or a time or date keyword was given no time.
    """
    kind = keyword_type(keyword)
    text = " ".join(text.split())
    if kind in TIME_TYPES:
        if instant is None:
            raise TemplateValueError(f"template keyword {keyword} takes a time; its source has none")
        day = f"{instant.year}年{instant.month}月{instant.day}日"
        return f"{day} {instant:%H:%M}" if kind == "time" else day
    if kind == "character_string":
        value = "".join(_PRINTABLE_ASCII.findall(text))[:LIMITS[kind]]
    elif kind == "phrase":
        value = "".join(_CHINESE.findall(text))[:LIMITS[kind]]
    elif kind == "number":
        value = re.sub(r"[^0-9.]", "", text).strip(".")[:LIMITS[kind]]
    elif kind == "letter":
        value = re.sub(r"[^A-Za-z]", "", text)[:LIMITS[kind]]
    elif kind == "symbol":
        value = "".join(_SYMBOL.findall(text))[:LIMITS[kind]]
    elif kind == "amount":
        match = re.search(r"\d{1,10}(?:\.\d{1,2})?", text.replace(",", ""))
        value = f"{match.group(0)}元" if match else ""
    elif kind == "phone_number":
        value = re.sub(r"[^0-9+\-]", "", text)[:LIMITS[kind]]
    elif kind == "car_number":
        value = text.replace(" ", "")[:LIMITS[kind]]
    elif kind == "name":
        # Ten Chinese characters, or twenty letters for a Latin name; no "…" (not a letter).
        value = text[:10 if _CHINESE.search(text) else 20].strip()
    else:                                   # thing, and any type WeChat adds later
        value = _cut(text, LIMITS.get(kind, 20))
    if not value:
        raise TemplateValueError(f"template keyword {keyword} ({kind}): nothing of the value fits")
    return value


def _cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, with "…" where it was cut."""
    return text if len(text) <= limit else text[:limit - 1] + "…"
