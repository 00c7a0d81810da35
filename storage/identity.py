"""Real-name identity: validation of names, mobiles and resident ID numbers, keyed hashing and
masking, and finding the person a citizen's details name (never changing it).

An ID number never reaches the database or a log: only its HMAC (for matching) and a masked form
(first 3 and last 4 characters) are kept. Age for home-visit eligibility is computed from the
number when it is given and stored on its own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import re
import secrets
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AccountPerson, AuditLog, ChannelIdentity, Person

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_NAME = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fffA-Za-z·.\-' ]+$")
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_ID_SHAPE = re.compile(r"^\d{17}[\dX]$")


class InvalidValue(ValueError):
    """A value a citizen typed is not acceptable; ``code`` names the problem for the message."""

    def __init__(self, field: str, code: str) -> None:
        super().__init__(f"{field}: {code}")
        self.field = field
        self.code = code


def _clean(text: str) -> str:
    """Full-width digits and letters to half-width, spaces trimmed (people paste from anywhere)."""
    return unicodedata.normalize("NFKC", text).strip()


def validate_name(text: str) -> str:
    """A real name: 2-20 characters, Chinese or Latin letters, no digits.

    Raises:
        InvalidValue: code "name_length", "name_digits" or "name_chars".
    """
    name = re.sub(r"\s+", " ", _clean(text))
    if any(ch.isdigit() for ch in name):
        raise InvalidValue("name", "name_digits")
    if not 2 <= len(name) <= 20:
        raise InvalidValue("name", "name_length")
    if not _NAME.match(name):
        raise InvalidValue("name", "name_chars")
    return name


def validate_mobile(text: str) -> str:
    """A mainland mobile number: 11 digits starting 13-19 (spaces, dashes and +86 allowed).

    Raises:
        InvalidValue: code "mobile_format".
    """
    digits = re.sub(r"[\s\-()]", "", _clean(text))
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    if not _MOBILE.match(digits):
        raise InvalidValue("mobile", "mobile_format")
    return digits


def id_check_digit(first17: str) -> str:
    """The GB 11643-1999 check character of the first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def id_birth_date(number: str) -> dt.date:
    """The birth date encoded in a resident ID number (characters 7-14).

    Raises:
        ValueError: when those characters are not a real date.
    """
    return dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))


def validate_id_number(text: str, today: dt.date) -> str:
    """An 18-character resident ID number with a real birth date and a valid check digit.

    The region code is not checked (codes change as districts are merged).

    Raises:
        InvalidValue: code "id_format", "id_birth_date" or "id_checksum".
    """
    number = re.sub(r"\s", "", _clean(text)).upper()
    if not _ID_SHAPE.match(number):
        raise InvalidValue("id_number", "id_format")
    try:
        born = id_birth_date(number)
    except ValueError:
        raise InvalidValue("id_number", "id_birth_date") from None
    if born > today or born.year < 1880:
        raise InvalidValue("id_number", "id_birth_date")
    if id_check_digit(number[:17]) != number[17]:
        raise InvalidValue("id_number", "id_checksum")
    return number


def age_on(born: dt.date, day: dt.date) -> int:
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def mask_id(number: str) -> str:
    """"110101199003071234" -> "110***********1234"."""
    return number[:3] + "*" * (len(number) - 7) + number[-4:]


def mask_mobile(mobile: str) -> str:
    """"13812345678" -> "138****5678"."""
    return mobile[:3] + "****" + mobile[-4:] if len(mobile) >= 7 else "****"


def mask_name(name: str) -> str:
    """"张三" -> "张*", "欧阳小明" -> "欧**明", "Li Lei" -> "L*****" ("" of an erased person -> "*")."""
    if not name:
        return "*"
    if len(name) <= 2:
        return name[0] + "*"
    if re.match(r"^[A-Za-z]", name):
        return name[0] + "*" * (len(name) - 1)
    return name[0] + "*" * (len(name) - 2) + name[-1]


class IdHasher:
    """Keyed hash (HMAC-SHA256) of normalized ID numbers, for matching without keeping them."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the ID-hash key must be at least 16 bytes")
        self._key = key

    def __repr__(self) -> str:
        return "IdHasher(key=<hidden>)"

    def hash(self, number: str) -> str:
        return hmac.new(self._key, number.upper().encode(), hashlib.sha256).hexdigest()

    def tail_hash(self, number: str) -> str:
        """Keyed hash of the last 6 characters, which a citizen types to prove a staff-made
        booking is theirs; distinct from the whole number's hash."""
        return hmac.new(self._key, b"id tail\0" + number[-6:].upper().encode(),
                        hashlib.sha256).hexdigest()

    def derive(self, purpose: str) -> bytes:
        """A key for another purpose (signing links), independent of the ID hashes: HMAC of
        the purpose's label under this key, so one secret serves both and neither reveals the
        other."""
        return hmac.new(self._key, b"yuyue derived key\0" + purpose.encode(), hashlib.sha256).digest()

    @classmethod
    def from_settings(cls, configured_key: str, data_dir: Path) -> IdHasher:
        """Use the configured key, or a random key kept in ``data_dir`` (made once, mode 0600)."""
        if configured_key:
            return cls(configured_key.encode())
        path = data_dir / "id-hash.key"
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_hex(32))
        return cls(path.read_text().strip().encode())


@dataclass(frozen=True)
class PersonDetails:
    """Checked real-name details; the ID number lives only as long as this object."""

    name: str
    mobile: str
    id_number: str | None = None

    def __repr__(self) -> str:
        masked = mask_id(self.id_number) if self.id_number else None
        return f"PersonDetails(name={mask_name(self.name)!r}, mobile={mask_mobile(self.mobile)!r}, id={masked!r})"

    @property
    def birth_date(self) -> dt.date | None:
        return id_birth_date(self.id_number) if self.id_number else None


def check_details(name: str, mobile: str, id_number: str | None, *, id_required: bool,
                  today: dt.date) -> tuple[PersonDetails | None, dict[str, str]]:
    """Check every field at once: the details when all are valid, else every problem by field."""
    problems: dict[str, str] = {}
    checked: dict[str, str | None] = {"id_number": None}
    for field, value, check in (("name", name, validate_name), ("mobile", mobile, validate_mobile)):
        try:
            checked[field] = check(value)
        except InvalidValue as exc:
            problems[field] = exc.code
    if id_number or id_required:
        try:
            checked["id_number"] = validate_id_number(id_number or "", today)
        except InvalidValue as exc:
            problems["id_number"] = exc.code
    if problems:
        return None, problems
    return PersonDetails(str(checked["name"]), str(checked["mobile"]), checked["id_number"]), {}


class NameMismatch(InvalidValue):
    """The ID number is on record under another name (姓名与证件号码不一致): the citizen is sent
    to the window, where staff can correct the record (``storage.accounts.correct_person``)."""

    def __init__(self) -> None:
        super().__init__("name", "name_mismatch")


ID_NAME_MISMATCH = "id_name_mismatch"  # the audit action, counted for the figures


async def find_or_create_person(session: AsyncSession, details: PersonDetails, hasher: IdHasher,
                                now: dt.datetime, *, account_id: int | None = None) -> Person:
    """The person these details name, found or created; whoever types them changes nothing.

    With an ID number the person is the one with that number's hash: the same name re-uses it
    (its stored name and mobile are kept as they are), another name is refused. Without one the
    person is, for an account, the one of its people with that name and no ID number (the
    account keys it, and may update its mobile); for staff (no account), the one with that
    name and mobile and no ID number. Finding a person attaches nobody to anything: which
    bookings an account sees is decided by who made them (``storage.accounts``).

    Args:
        account_id: the account typing the details, or None for staff.

    Returns:
        The person row, flushed (it has an id).

    Raises:
        NameMismatch: the ID number is on record under another name; an audit row without
            personal data is added to the session first (the figures count them), so commit
            after answering.
    """
    if details.id_number:
        id_hash = hasher.hash(details.id_number)
        person = await session.scalar(select(Person).where(Person.id_hash == id_hash).with_for_update())
        if person is not None:
            if same_name(person.name, details.name):
                if person.id_tail_hash is None:  # recorded before tails were kept
                    person.id_tail_hash = hasher.tail_hash(details.id_number)
                return person
            session.add(AuditLog(at=now, actor=f"account:{account_id}" if account_id else "staff",
                                 action=ID_NAME_MISMATCH, entity="person", entity_id=person.id,
                                 detail={}))
            raise NameMismatch()
        person = Person(name=details.name, mobile=details.mobile, id_hash=id_hash,
                        id_masked=mask_id(details.id_number),
                        id_tail_hash=hasher.tail_hash(details.id_number), created_at=now,
                        updated_at=now)
        try:
            async with session.begin_nested():
                session.add(person)
        except IntegrityError:  # another process recorded the same number a moment ago
            return await find_or_create_person(session, details, hasher, now, account_id=account_id)
        return person
    if account_id is not None:
        # The account's people; until the handlers read them from account_person, the person
        # bound to the account by the old way (channel_identity.person_id) is one of them.
        theirs = or_(Person.id.in_(select(AccountPerson.person_id)
                                   .where(AccountPerson.identity_id == account_id)),
                     Person.id == select(ChannelIdentity.person_id)
                     .where(ChannelIdentity.id == account_id).scalar_subquery())
        query = select(Person).where(theirs, Person.name == details.name, Person.id_hash.is_(None),
                                     Person.erased_at.is_(None))
    else:
        query = select(Person).where(Person.mobile == details.mobile, Person.name == details.name,
                                     Person.id_hash.is_(None), Person.erased_at.is_(None))
    person = await session.scalar(query.order_by(Person.id).limit(1).with_for_update())
    if person is None:
        person = Person(name=details.name, mobile=details.mobile, created_at=now, updated_at=now)
        session.add(person)
        await session.flush()
        return person
    if person.mobile != details.mobile:
        person.mobile, person.updated_at = details.mobile, now
    return person


def same_name(stored: str, typed: str) -> bool:
    """Names compare as written, ignoring case and spacing of Latin names ("li lei" = "Li Lei")."""
    return " ".join(stored.split()).casefold() == " ".join(typed.split()).casefold()


async def identity_for(session: AsyncSession, channel: str, platform_user_id: str, locale: str,
                       now: dt.datetime) -> ChannelIdentity:
    """The channel identity of a platform user, created on first contact."""
    query = select(ChannelIdentity).where(ChannelIdentity.channel == channel,
                                          ChannelIdentity.platform_user_id == platform_user_id)
    identity = await session.scalar(query)
    if identity is not None:
        return identity
    try:
        async with session.begin_nested():
            identity = ChannelIdentity(channel=channel, platform_user_id=platform_user_id,
                                       locale=locale, created_at=now)
            session.add(identity)
    except IntegrityError:  # another process created it a moment ago
        identity = (await session.scalars(query)).one()
    return identity
