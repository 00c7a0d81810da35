"""Manager figures about accounts and the people they book for: how many people accounts act
for, how many bookings are made for someone else (代约), and how many ID numbers were refused
because the name typed was not the one on record.

Counted in the database with aggregate queries; no name, mobile or ID number is read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.identity import ID_NAME_MISMATCH
from storage.models import AccountPerson, Appointment, AuditLog, Channel, ChannelIdentity, Relation

UNLINKED = "unlinked"
# Accounts that are not citizens': staff-made bookings and staff in the WeCom app.
STAFF_CHANNELS = (Channel.STAFF, Channel.WECOM)


@dataclass(frozen=True)
class AccountFigures:
    """Figures of a period [start, end), except ``people_per_account`` (as it is now).

    - ``people_per_account``: number of people -> accounts acting for that many (0 included).
    - ``bookings_by_relation``: bookings chat accounts made in the period, by the relation of
      the person to the account that booked (``Relation`` values), or "unlinked" when the
      account does not hold the person (bookings from before accounts held people).
    - ``for_others``: of those, the ones for a person other than 本人 (代约).
    - ``name_mismatches``: ID numbers refused because the name differed from the record.
    """

    people_per_account: dict[int, int]
    bookings_by_relation: dict[str, int]
    for_others: int
    name_mismatches: int


async def people_per_account(session: AsyncSession) -> dict[int, int]:
    """How many citizen accounts act for 0, 1, 2... people.

    Returns:
        Number of people -> number of accounts, in increasing order of people.
    """
    per_account = (select(AccountPerson.identity_id, func.count().label("people"))
                   .group_by(AccountPerson.identity_id).subquery())
    rows = (await session.execute(select(per_account.c.people, func.count())
                                  .group_by(per_account.c.people))).all()
    distribution = {int(people): int(accounts) for people, accounts in rows}
    citizens = await session.scalar(select(func.count()).select_from(ChannelIdentity)
                                    .where(ChannelIdentity.channel.not_in(STAFF_CHANNELS))) or 0
    with_people = sum(distribution.values())
    if citizens > with_people:
        distribution[0] = citizens - with_people
    return dict(sorted(distribution.items()))


async def bookings_by_relation(session: AsyncSession, start: dt.datetime,
                               end: dt.datetime) -> dict[str, int]:
    """Bookings chat accounts made in [start, end), by the booked person's relation to the
    account ("unlinked" when the account does not hold the person).

    Returns:
        Relation value (or "unlinked") -> bookings; relations without bookings are left out.
    """
    rows = (await session.execute(
        select(AccountPerson.relation, func.count()).select_from(Appointment)
        .outerjoin(AccountPerson, and_(AccountPerson.identity_id == Appointment.identity_id,
                                       AccountPerson.person_id == Appointment.person_id))
        .where(Appointment.identity_id.is_not(None), Appointment.channel != Channel.STAFF,
               Appointment.created_at >= start, Appointment.created_at < end)
        .group_by(AccountPerson.relation))).all()
    return {(Relation(relation).value if relation is not None else UNLINKED): int(n)
            for relation, n in rows}


async def name_mismatches(session: AsyncSession, start: dt.datetime, end: dt.datetime) -> int:
    """ID numbers typed with a name other than the one on record, refused in [start, end)."""
    return int(await session.scalar(select(func.count()).select_from(AuditLog).where(
        AuditLog.entity == "person", AuditLog.action == ID_NAME_MISMATCH,
        AuditLog.at >= start, AuditLog.at < end)) or 0)


async def account_figures(session: AsyncSession, start: dt.datetime,
                          end: dt.datetime) -> AccountFigures:
    """All the account figures of [start, end) at once (see ``AccountFigures``)."""
    by_relation = await bookings_by_relation(session, start, end)
    for_others = sum(n for relation, n in by_relation.items()
                     if relation not in (Relation.SELF.value, UNLINKED))
    return AccountFigures(people_per_account=await people_per_account(session),
                          bookings_by_relation=by_relation, for_others=for_others,
                          name_mismatches=await name_mismatches(session, start, end))
