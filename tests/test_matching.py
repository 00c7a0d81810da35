"""Matching what citizens type to services: synonyms, phrasings, pinyin, dialect sounds, typos,
departments and doctors."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.engine import Assistant
from storage import matching
from storage.catalog import read_catalog
from storage.db import Database
from storage.services import find_services, match_service
from tests.dialog import Dialog

CATALOG = read_catalog(Path(__file__).parent.parent / "catalog" / "demo.toml")
ENTRIES = [matching.Entry(s.code, (s.name.zh, s.name.en, *s.keywords, *s.doctors))
           for s in CATALOG.services]


def best(text: str) -> list[object]:
    return [entry.key for entry in matching.best(text, ENTRIES)]


@pytest.mark.parametrize(("typed", "service"), [
    ("挂号", "internal_medicine"), ("看病", "internal_medicine"), ("看牙", "dental"),
    ("牙科", "dental"), ("补办身份证", "id_card"), ("办证", "id_card"), ("补卡", "social_card"),
    ("嗯那个我想补办一下身分证", "id_card"),       # fillers and a homophone typo
    ("社宝卡", "social_card"), ("口强", "dental"),   # homophones
    ("身粉证", "id_card"), ("户口签移", "hukou_transfer"),
    ("shebaoka", "social_card"),                   # pinyin typed without an input method
    ("老年正", "senior_card"), ("体减", "health_check"),
    ("dentst", "dental"), ("id crad", "id_card"), ("social secutiry card", "social_card"),
    ("我要挂周丽华的号", "dental"),                  # a doctor's name
])
def test_everyday_words_find_the_service(typed: str, service: str) -> None:
    assert best(typed) == [service]


@pytest.mark.parametrize("typed", ["你好", "好的", "谢谢", "明天", "上午", "张三", "今天天气怎么样", "ok"])
def test_small_talk_finds_nothing(typed: str) -> None:
    assert best(typed) == []


def test_southern_sounds_are_the_same_syllables() -> None:
    # zh/z, sh/s, n/l, -ng/-n: 身份证 said "sen fen zen" by voice recognition still matches.
    assert matching.syllables("身份证") == matching.syllables("森分怎")


async def test_a_department_name_lists_its_services_and_a_typo_reaches_staff_commands(
        assistant: Assistant, database: Database) -> None:
    async with database.session() as session:
        found = await find_services(session, "我想去卫生院")
        assert {s.code for s in found} == {"internal_medicine", "dental", "health_check"}
        assert [s.code for s in await find_services(session, "看牙")] == ["dental"]
        assert await find_services(session, "12") == []
        # Staff and managers name services through match_service: the same tolerance last.
        matched = await match_service(session, "社宝卡")
        assert matched.found is not None and matched.found.code == "social_card"  # type: ignore[union-attr]


@pytest.mark.parametrize(("said", "label"), [("挂号", "内科专家门诊"), ("我想看牙", "口腔科门诊"),
                                             ("补卡", "社会保障卡补办"), ("办证", "居民身份证")])
async def test_citizens_find_services_by_everyday_words(assistant: Assistant, said: str,
                                                        label: str) -> None:
    dialog = Dialog(assistant)
    await dialog.say(said)
    assert any(label in choice for choice in dialog.labels), dialog.text
