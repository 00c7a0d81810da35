"""Every user-facing text exists in both languages, and every key the code asks for exists."""

import re
from pathlib import Path

from handlers.i18n import LOCALES, catalog, format_day, normalize_locale
from storage.catalog import MATERIAL_FORMS
from storage.models import AppointmentStatus
from storage.refusals import Refusal

HANDLERS = Path(__file__).resolve().parent.parent / "handlers"
INVALID_CODES = ("name_length", "name_digits", "name_chars", "mobile_format", "id_format",
                 "id_birth_date", "id_checksum")


def test_both_languages_have_the_same_keys_and_placeholders() -> None:
    zh, en = catalog("zh-CN"), catalog("en")
    assert set(zh) == set(en)
    for key in zh:
        assert set(re.findall(r"{(\w+)}", zh[key])) == set(re.findall(r"{(\w+)}", en[key])), key


def test_every_key_used_in_code_exists() -> None:
    used = set()
    for path in HANDLERS.glob("*.py"):
        source = path.read_text(encoding="utf-8")
        used |= set(re.findall(r"""(?:\.t|\.reply|translate)\(\s*(?:[a-z_]+,\s*)?"([a-z_]+\.[a-z_0-9]+)\"""", source))
    assert len(used) > 100
    dynamic = ({f"refusal.{r.value}" for r in Refusal} | {f"invalid.{c}" for c in INVALID_CODES}
               | {f"status.{s.value}" for s in AppointmentStatus}
               | {f"material.{f}" for f in MATERIAL_FORMS} | {f"weekday.{i}" for i in range(7)})
    for locale in LOCALES:
        missing = (used | dynamic) - set(catalog(locale))
        assert not missing, f"{locale} lacks {sorted(missing)}"


def test_locale_from_platform_codes() -> None:
    assert normalize_locale("en-US") == "en"
    assert normalize_locale("zh-hans") == "zh-CN"
    assert normalize_locale(None) == "zh-CN"
    assert normalize_locale("fr") == "zh-CN"


def test_day_format() -> None:
    import datetime as dt

    assert format_day(dt.date(2026, 11, 24), "zh-CN") == "11月24日 周二"
    assert format_day(dt.date(2026, 11, 24), "en") == "Tue 24 Nov"
