import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select

from storage.db import Database
from storage.identity import (
    ID_NAME_MISMATCH,
    IdHasher,
    InvalidValue,
    NameMismatch,
    PersonDetails,
    check_details,
    find_or_create_person,
    id_check_digit,
    identity_for,
    mask_id,
    mask_mobile,
    mask_name,
    validate_id_number,
    validate_mobile,
    validate_name,
)
from storage.models import AuditLog, Person
from tests.helpers import make_centre, valid_id

TODAY = dt.date(2026, 11, 23)


@pytest.mark.parametrize(("raw", "expected"), [
    ("张三", "张三"), (" 欧阳小明 ", "欧阳小明"), ("Li Lei", "Li Lei"), ("阿依古丽·买买提", "阿依古丽·买买提"),
])
def test_good_names(raw: str, expected: str) -> None:
    assert validate_name(raw) == expected


@pytest.mark.parametrize(("raw", "code"), [
    ("张", "name_length"), ("张三3", "name_digits"), ("a" * 21, "name_length"), ("张三!", "name_chars"),
    ("", "name_length"), ("１２", "name_digits"),
])
def test_bad_names(raw: str, code: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        validate_name(raw)
    assert caught.value.code == code


@pytest.mark.parametrize("raw", ["13812345678", "138 1234 5678", "+86 138-1234-5678", "１３８１２３４５６７８"])
def test_good_mobiles(raw: str) -> None:
    assert validate_mobile(raw) == "13812345678"


@pytest.mark.parametrize("raw", ["12812345678", "1381234567", "138123456789", "0571-88001234", "abc"])
def test_bad_mobiles(raw: str) -> None:
    with pytest.raises(InvalidValue, match="mobile_format"):
        validate_mobile(raw)


def test_id_number_checks() -> None:
    good = valid_id("11010519491231002")
    assert good == "11010519491231002X"   # the published GB 11643 example
    assert validate_id_number(good.lower(), TODAY) == good
    assert validate_id_number("110105 19491231 002x", TODAY) == good
    for bad, code in (("1101051949123100", "id_format"), ("11010519491231002A", "id_format"),
                      ("110105194902300021", "id_birth_date"), (valid_id("11010520991231002"), "id_birth_date"),
                      ("110105194912310021", "id_checksum")):
        with pytest.raises(InvalidValue) as caught:
            validate_id_number(bad, TODAY)
        assert caught.value.code == code, bad


@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_exactly_one_check_digit_is_valid(first17: str) -> None:
    valid = {c for c in "0123456789X" if id_check_digit(first17) == c}
    assert len(valid) == 1


def test_masks() -> None:
    assert mask_id("11010519491231002X") == "110***********002X"
    assert mask_mobile("13812345678") == "138****5678"
    assert mask_name("张三") == "张*" and mask_name("欧阳小明") == "欧**明"


def test_check_details_reports_every_field_and_saves_nothing() -> None:
    details, problems = check_details("张", "123", "999", id_required=True, today=TODAY)
    assert details is None
    assert problems == {"name": "name_length", "mobile": "mobile_format", "id_number": "id_format"}
    details, problems = check_details("张三", "13812345678", None, id_required=False, today=TODAY)
    assert problems == {} and details is not None and details.id_number is None
    assert repr(details) == "PersonDetails(name='张*', mobile='138****5678', id=None)"
    details, _ = check_details("张三", "13812345678", valid_id(), id_required=True, today=TODAY)
    assert repr(details) == "PersonDetails(name='张*', mobile='138****5678', id='110***********002X')"


def test_hash_is_keyed_and_the_key_file_is_private(tmp_path: Path) -> None:
    a, b = IdHasher(b"k" * 32), IdHasher(b"j" * 32)
    number = valid_id()
    assert a.hash(number) != b.hash(number)
    assert a.hash(number) == a.hash(number.lower())
    assert number not in a.hash(number)
    generated = IdHasher.from_settings("", tmp_path)
    assert (tmp_path / "id-hash.key").stat().st_mode & 0o077 == 0
    assert IdHasher.from_settings("", tmp_path).hash(number) == generated.hash(number)
    assert "key" in repr(generated) and "hidden" in repr(generated)


async def test_same_id_and_name_is_one_person_whose_details_nobody_overwrites(database: Database) -> None:
    centre = make_centre()
    now = dt.datetime(2026, 11, 23, 1, tzinfo=dt.UTC)
    hasher = centre.hasher
    async with database.session() as session:
        first = await find_or_create_person(session, PersonDetails("张三", "13812345678", valid_id()), hasher, now)
        again = await find_or_create_person(session, PersonDetails("张三", "13900000000", valid_id()), hasher,
                                            now + dt.timedelta(days=1), account_id=None)
        assert again.id == first.id and again.mobile == "13812345678" and again.updated_at == now
        assert first.id_masked == "110***********002X" and first.id_hash and valid_id() not in first.id_hash
        assert first.id_tail_hash == hasher.tail_hash(valid_id()) != first.id_hash
        by_mobile = await find_or_create_person(session, PersonDetails("李四", "13700000000"), hasher, now)
        same_mobile = await find_or_create_person(session, PersonDetails("李四", "13700000000"), hasher, now)
        other_name = await find_or_create_person(session, PersonDetails("王五", "13700000000"), hasher, now)
        assert by_mobile.id == same_mobile.id != first.id and other_name.id != by_mobile.id
        assert by_mobile.name == "李四"


async def test_an_id_number_under_another_name_is_refused_counted_and_changes_nothing(
        database: Database) -> None:
    centre = make_centre()
    now = dt.datetime(2026, 11, 23, 1, tzinfo=dt.UTC)
    async with database.session() as session:
        first = await find_or_create_person(session, PersonDetails("张三", "13812345678", valid_id()),
                                            centre.hasher, now)
        with pytest.raises(NameMismatch) as caught:
            await find_or_create_person(session, PersonDetails("李四", "13900000000", valid_id()),
                                        centre.hasher, now, account_id=None)
        assert caught.value.code == "name_mismatch" and isinstance(caught.value, InvalidValue)
    async with database.session() as session:
        person = await session.get(Person, first.id)
        assert person is not None and (person.name, person.mobile) == ("张三", "13812345678")
        audits = (await session.scalars(select(AuditLog))).all()
        assert [(a.action, a.entity_id) for a in audits] == [(ID_NAME_MISMATCH, first.id)]
        assert "李四" not in str(audits[0].detail) and "1390" not in str(audits[0].detail)
        assert await session.scalar(select(func.count()).select_from(Person)) == 1


async def test_without_an_id_number_an_account_keys_its_own_people(database: Database) -> None:
    centre = make_centre()
    now = dt.datetime(2026, 11, 23, 1, tzinfo=dt.UTC)
    async with database.session() as session:
        mine = await identity_for(session, "telegram", "1", "zh-CN", now)
        stranger = await identity_for(session, "wechat", "o-2", "zh-CN", now)
        first = await find_or_create_person(session, PersonDetails("李四", "13700000000"), centre.hasher, now,
                                            account_id=mine.id)
        mine.person_id = first.id
        await session.flush()
        again = await find_or_create_person(session, PersonDetails("李四", "13700000001"), centre.hasher, now,
                                            account_id=mine.id)
        theirs = await find_or_create_person(session, PersonDetails("李四", "13700000000"), centre.hasher, now,
                                             account_id=stranger.id)
        assert again.id == first.id and again.mobile == "13700000001"
        assert theirs.id != first.id
