"""A citizen's full mobile, shown to the one staff member who owns their matter (/phone): the
owner of a hand-off (claimed it), of an approved home visit (decided it), of a case (办件), or of
a booking (made it at the window, or owns a claimed hand-off of the same citizen). Everyone
else sees masked numbers only. Each look is audited. Nothing here commits.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.audit import audit
from storage.case_rules import parse_case_number
from storage.models import (
    Appointment,
    Case,
    ChannelIdentity,
    Handoff,
    HomeVisitRequest,
    Person,
    RequestStatus,
)


class Matter(enum.StrEnum):
    HANDOFF = "handoff"
    HOME_VISIT = "home_visit"
    CASE = "case"
    BOOKING = "booking"


class PhoneRefusal(enum.StrEnum):
    BAD_NUMBER = "bad_number"      # not a number of any of the four
    UNKNOWN = "unknown"
    NOT_OWNER = "not_owner"        # someone else's, or nobody's yet (claim it first)
    NO_MOBILE = "no_mobile"        # the citizen gave none (or withdrew consent)


class PhoneRefused(Exception):
    def __init__(self, reason: PhoneRefusal, **details: Any) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.details = details


@dataclass(frozen=True)
class Shown:
    matter: Matter
    label: str        # the number as staff know it: 12, 20260001, K7M2QX
    name: str
    mobile: str


_HANDOFF = re.compile(r"^#?(\d{1,7})$")
_HOME_VISIT = re.compile(r"^(?:上门|hv|visit)\s*#?(\d{1,9})$", re.I)
_CODE = re.compile(r"^[A-Za-z0-9]{6}$")


def parse_matter(text: str) -> tuple[Matter, str] | None:
    """What ``/phone`` was given: "12" or "#12" a hand-off, "上门12" (or "hv12") a home visit,
    eight digits a case number, six letters and digits a booking code; None otherwise."""
    text = text.strip()
    if (case := parse_case_number(text)) is not None:
        return Matter.CASE, case
    if (match := _HANDOFF.match(text)) is not None:
        return Matter.HANDOFF, match.group(1)
    if (match := _HOME_VISIT.match(text)) is not None:
        return Matter.HOME_VISIT, match.group(1)
    if _CODE.match(text):
        return Matter.BOOKING, text.upper()
    return None


async def _owner_and_person(session: AsyncSession, matter: Matter, key: str,
                            actor: str) -> tuple[int, bool, int | None]:
    """(entity id, whether ``actor`` owns it, the person whose mobile it is)."""
    if matter == Matter.HANDOFF:
        handoff = await session.get(Handoff, int(key))
        if handoff is None:
            raise PhoneRefused(PhoneRefusal.UNKNOWN, matter=matter, number=key)
        identity = await session.get(ChannelIdentity, handoff.identity_id)
        owns = handoff.claimed_by == actor and handoff.status != RequestStatus.OPEN
        return handoff.id, owns, identity.person_id if identity is not None else None
    if matter == Matter.HOME_VISIT:
        request = await session.get(HomeVisitRequest, int(key))
        if request is None:
            raise PhoneRefused(PhoneRefusal.UNKNOWN, matter=matter, number=key)
        owns = request.decided_by == actor and request.status == RequestStatus.APPROVED
        return request.id, owns, request.person_id
    if matter == Matter.CASE:
        case = await session.scalar(select(Case).where(Case.number == key))
        if case is None:
            raise PhoneRefused(PhoneRefusal.UNKNOWN, matter=matter, number=key)
        return case.id, case.owner == actor, case.person_id
    appointment = await session.scalar(select(Appointment).where(Appointment.code == key))
    if appointment is None:
        raise PhoneRefused(PhoneRefusal.UNKNOWN, matter=matter, number=key)
    owns = appointment.made_by == actor
    if not owns and appointment.identity_id is not None:
        owns = await session.scalar(select(Handoff.id).where(
            Handoff.identity_id == appointment.identity_id, Handoff.claimed_by == actor,
            Handoff.status == RequestStatus.CLAIMED).limit(1)) is not None
    return appointment.id, owns, appointment.person_id


async def show_mobile(session: AsyncSession, now: dt.datetime, text: str, *,
                      actor: str) -> Shown:
    """The full name and mobile behind a hand-off, home visit, case or booking number, for its
    owner only; audited ("phone_shown", with what was looked at and never the number).

    Raises:
        PhoneRefused: BAD_NUMBER, UNKNOWN, NOT_OWNER, NO_MOBILE.
    """
    parsed = parse_matter(text)
    if parsed is None:
        raise PhoneRefused(PhoneRefusal.BAD_NUMBER, text=text.strip()[:20])
    matter, key = parsed
    entity_id, owns, person_id = await _owner_and_person(session, matter, key, actor)
    if not owns:
        raise PhoneRefused(PhoneRefusal.NOT_OWNER, matter=matter, number=key)
    person = await session.get(Person, person_id) if person_id is not None else None
    if person is None or not person.mobile or person.erased_at is not None:
        raise PhoneRefused(PhoneRefusal.NO_MOBILE, matter=matter, number=key)
    await audit(session, now, actor, "phone_shown", matter.value, entity_id)
    return Shown(matter, key, person.name or "", person.mobile)
