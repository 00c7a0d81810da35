"""Accounts and the people they act for, and who may see or change which booking.

An account is one chat identity (a ``channel_identity`` row: a Telegram user, a WeChat openid,
the terminal user). It acts for a short list of people (本人 and family, ``account_person``),
each added with a record of the consent given. A booking records the person and the account
that made it; an account sees and changes only the bookings it made and those made by the
accounts it is linked to by proof (``storage.linking``). Staff-made bookings are nobody's
until an account proves one is theirs. The whole model, and what each side may see, is in
docs/accounts.md.

Every operation takes the caller's session and does not commit. Names, mobiles and ID numbers
leave this module only masked.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.audit import audit
from storage.centre import Centre
from storage.identity import (
    PersonDetails,
    find_or_create_person,
    mask_mobile,
    mask_name,
    validate_mobile,
    validate_name,
)
from storage.models import (
    AccountLink,
    AccountPerson,
    Appointment,
    AppointmentStatus,
    Block,
    Channel,
    ChannelIdentity,
    HomeVisitRequest,
    LinkMethod,
    Outbox,
    OutboxStatus,
    Person,
    Relation,
    RequestStatus,
)
from storage.rules import people_at_limit

CONSENT_VERSION_LENGTH = 20


class AccountRefusal(enum.StrEnum):
    PEOPLE_LIMIT = "people_limit"
    SELF_TAKEN = "self_taken"
    CONSENT_REQUIRED = "consent_required"
    NOT_THEIR_PERSON = "not_their_person"
    UPCOMING_BOOKINGS = "upcoming_bookings"
    UNKNOWN_PERSON = "unknown_person"
    REASON_REQUIRED = "reason_required"
    NOTHING_TO_CORRECT = "nothing_to_correct"
    LOCKED = "locked"
    WRONG_ANSWER = "wrong_answer"
    OWN_CODE = "own_code"
    NOT_LINKED = "not_linked"
    NOT_ATTACHABLE = "not_attachable"
    SMS_UNAVAILABLE = "sms_unavailable"      # no SMS set up, or no mobile on file for the person
    TOO_MANY_CODES = "too_many_codes"        # until: codes asked for too often


class AccountRefused(Exception):
    """An account operation the rules do not allow; ``reason`` names the rule, ``details`` the
    facts the message needs (the limit, until when...)."""

    def __init__(self, reason: AccountRefusal, **details: Any) -> None:
        super().__init__(reason.value)
        self.reason = reason
        self.details = details


# --- what an account is shown -----------------------------------------------------------------


@dataclass(frozen=True)
class PersonView:
    """A person as an account may see them: masked, with the account's own link if it has one.

    ``relation`` is None for a person the account does not hold itself (a linked account
    booked for them).
    """

    person_id: int
    name: str                    # 张*
    mobile: str                  # 138****5678: the one this account gave, "" when none
    id_number: str | None        # 110***********002X, None without one
    relation: Relation | None
    method: LinkMethod | None
    linked_at: dt.datetime | None
    consent_version: str | None
    consented_at: dt.datetime | None
    erased: bool = False


@dataclass(frozen=True)
class PersonBookings:
    """The bookings an account may see for one person, newest first."""

    person: PersonView
    appointments: list[Appointment]


@dataclass(frozen=True)
class LinkedAccount:
    """Another account proven to be the same citizen's."""

    account_id: int
    channel: str
    user: str                    # the platform id's last 4 characters: "…5678"
    method: LinkMethod
    linked_at: dt.datetime


@dataclass(frozen=True)
class MyData:
    """Everything kept about an account and its people, masked (我的信息)."""

    channel: str
    user: str
    locale: str
    since: dt.datetime
    people: list[PersonView]
    linked: list[LinkedAccount]
    bookings: dict[str, int]     # bookings this account made, by status


@dataclass(frozen=True)
class Erasure:
    """What withdrawing consent for a person did.

    ``anonymised`` says the person's name, mobile and ID were cleared; otherwise ``kept_for``
    names why the record stays: "other_accounts" (another account acts for them),
    "upcoming" (a booking someone else made is still to come) or "blocked" (until the block
    ends). The account's own link, consent and bookings are let go of either way. The reasons
    are for the audit and staff: they speak of other accounts, so a chat tells the citizen only
    that the centre keeps the record while it is needed.
    """

    anonymised: bool
    detached_bookings: int
    kept_for: tuple[str, ...] = ()


def _masked_user(platform_user_id: str) -> str:
    return "…" + platform_user_id[-4:]


def _view(person: Person, link: AccountPerson | None, *, for_staff: bool = False) -> PersonView:
    """The person masked; a citizen's account sees the mobile it gave, staff the one on record."""
    erased = person.erased_at is not None
    mobile = person.mobile if for_staff else link.mobile if link is not None else None
    return PersonView(
        person_id=person.id, name="" if erased else mask_name(person.name),
        mobile=mask_mobile(mobile) if mobile else "",
        id_number=person.id_masked,
        relation=link.relation if link else None, method=link.method if link else None,
        linked_at=link.created_at if link else None,
        consent_version=link.consent_version if link else None,
        consented_at=link.consented_at if link else None, erased=erased)


def _relation_order(link: AccountPerson | None) -> tuple[int, int]:
    if link is None:
        return (2, 0)
    return (0 if link.relation == Relation.SELF else 1, link.id)


async def _lock_account(session: AsyncSession, account_id: int) -> ChannelIdentity:
    account = await session.scalar(select(ChannelIdentity).where(ChannelIdentity.id == account_id)
                                   .with_for_update())
    if account is None:
        raise ValueError(f"no account {account_id}")
    return account


async def _link(session: AsyncSession, account_id: int, person_id: int) -> AccountPerson | None:
    prefetched = session.info.get(_LINKS)
    if prefetched is not None and (account_id, person_id) in prefetched:
        return prefetched[(account_id, person_id)]
    return await session.scalar(select(AccountPerson).where(
        AccountPerson.identity_id == account_id, AccountPerson.person_id == person_id))


_LINKS = "account_links"    # session.info: (account, person) -> its link or None, loaded ahead


async def prefetch_links(session: AsyncSession, pairs: set[tuple[int, int]]) -> None:
    """Load the links of these (account, person) pairs in one statement, for what this session
    asks of them next (the notices of a batch of outbox rows, rendered together)."""
    if not pairs:
        return
    found = (await session.scalars(select(AccountPerson).where(
        AccountPerson.identity_id.in_({account for account, _ in pairs}),
        AccountPerson.person_id.in_({person for _, person in pairs})))).all()
    links: dict[tuple[int, int], AccountPerson | None] = session.info.setdefault(_LINKS, {})
    links.update(dict.fromkeys(pairs))
    links.update({(link.identity_id, link.person_id): link for link in found})


def account_actor(account_id: int) -> str:
    return f"account:{account_id}"


# --- the people of an account -----------------------------------------------------------------


async def people_of(session: AsyncSession, *, account_id: int) -> list[PersonView]:
    """The people an account acts for, 本人 first, then in the order they were added.

    Returns:
        Masked views with the relation and the consent record of each.
    """
    rows = sorted((await session.execute(
        select(AccountPerson, Person).join(Person, Person.id == AccountPerson.person_id)
        .where(AccountPerson.identity_id == account_id))).all(), key=lambda row: _relation_order(row[0]))
    return [_view(person, link) for link, person in rows]


async def add_person(session: AsyncSession, centre: Centre, now: dt.datetime, *, account_id: int,
                     details: PersonDetails, relation: Relation,
                     consent_version: str) -> PersonView:
    """Add a person the account may act for, recording the consent given (notice version, when).

    The person is found by their ID number (or, without one, among this account's people by
    name) as ``find_or_create_person`` does: typing someone's details changes nothing of
    theirs and shows nothing of their bookings. Adding a person the account already holds
    updates the relation and the consent record.

    Args:
        details: checked name, mobile and (when the service needs it) ID number.
        relation: who the person is to the account holder; one 本人 per account.
        consent_version: the version of the personal-data notice the holder agreed to.

    Returns:
        The person as the account sees them.

    Raises:
        NameMismatch: the ID number is on record under another name (counted, so commit).
        AccountRefused: CONSENT_REQUIRED (no notice version), PEOPLE_LIMIT (limit),
            SELF_TAKEN (the account already holds another person as 本人).
    """
    version = consent_version.strip()
    if not version or len(version) > CONSENT_VERSION_LENGTH:
        raise AccountRefused(AccountRefusal.CONSENT_REQUIRED)
    await _lock_account(session, account_id)  # one change to the list at a time
    person = await find_or_create_person(session, details, centre.hasher, now,
                                         account_id=account_id)
    links = list((await session.scalars(select(AccountPerson).where(
        AccountPerson.identity_id == account_id))).all())
    link = next((each for each in links if each.person_id == person.id), None)
    if relation == Relation.SELF and any(each.relation == Relation.SELF and each is not link
                                         for each in links):
        raise AccountRefused(AccountRefusal.SELF_TAKEN)
    if link is None:
        if people_at_limit(len(links), centre.accounts):
            raise AccountRefused(AccountRefusal.PEOPLE_LIMIT,
                                 limit=centre.accounts.people_per_account)
        link = AccountPerson(identity_id=account_id, person_id=person.id, relation=relation,
                             method=LinkMethod.ADDED, created_at=now)
        session.add(link)
    link.relation, link.mobile = relation, details.mobile
    link.consent_version, link.consented_at = version, now
    await session.flush()
    await audit(session, now, account_actor(account_id), "add_person", "person", person.id,
                relation=relation.value, consent_version=version)
    return _view(person, link)


async def _upcoming_count(session: AsyncSession, now: dt.datetime, person_id: int,
                          account_id: int | None = None) -> int:
    query = select(func.count()).select_from(Appointment).where(
        Appointment.person_id == person_id, Appointment.status == AppointmentStatus.BOOKED,
        Appointment.starts_at > now)
    if account_id is not None:
        query = query.where(Appointment.identity_id == account_id)
    return int(await session.scalar(query) or 0)


async def remove_person(session: AsyncSession, now: dt.datetime, *, account_id: int,
                        person_id: int) -> None:
    """Take a person off the account's list; their bookings and record stay as they are.

    Raises:
        AccountRefused: NOT_THEIR_PERSON, UPCOMING_BOOKINGS (count: this account's bookings
            for them still to come; cancel those first).
    """
    await _lock_account(session, account_id)
    link = await _link(session, account_id, person_id)
    if link is None:
        raise AccountRefused(AccountRefusal.NOT_THEIR_PERSON)
    upcoming = await _upcoming_count(session, now, person_id, account_id)
    if upcoming:
        raise AccountRefused(AccountRefusal.UPCOMING_BOOKINGS, count=upcoming)
    await session.delete(link)
    await _forget_binding(session, account_id, person_id)
    await audit(session, now, account_actor(account_id), "remove_person", "person", person_id,
                relation=link.relation.value)


async def _forget_binding(session: AsyncSession, account_id: int, person_id: int) -> None:
    """Clear the old single binding too, while the handlers still read it."""
    await session.execute(update(ChannelIdentity).where(
        ChannelIdentity.id == account_id, ChannelIdentity.person_id == person_id)
        .values(person_id=None).execution_options(synchronize_session="fetch"))


# --- who sees which booking -------------------------------------------------------------------


def accounts_seen_by(account_id: int) -> ColumnElement[bool]:
    """A condition on an account id column: the account itself or one linked to it."""
    return or_(
        Appointment.identity_id == account_id,
        Appointment.identity_id.in_(select(AccountLink.second_id)
                                    .where(AccountLink.first_id == account_id)),
        Appointment.identity_id.in_(select(AccountLink.first_id)
                                    .where(AccountLink.second_id == account_id)))


def visible_to(account_id: int) -> ColumnElement[bool]:
    """The appointments an account may see and act on, as a condition for a query.

    Those it made, or an account linked to it made; a staff-made booking only once an account
    proved it theirs (``attached_at``). Who the person is plays no part: an ID number opens
    nothing.
    """
    return and_(accounts_seen_by(account_id),
                or_(Appointment.channel != Channel.STAFF, Appointment.attached_at.is_not(None)))


async def visible_bookings(session: AsyncSession, *, account_id: int,
                           since: dt.datetime | None = None,
                           limit: int = 50) -> list[PersonBookings]:
    """The bookings an account may see, grouped by person (本人 first), newest first.

    Args:
        since: leave out appointments that started before this, except those still booked.
        limit: at most this many appointments in all.

    Returns:
        One group per person, each with the person masked and the account's relation to them.
    """
    query = select(Appointment).where(visible_to(account_id))
    if since is not None:
        query = query.where(or_(Appointment.starts_at >= since,
                                Appointment.status == AppointmentStatus.BOOKED))
    appointments = list((await session.scalars(
        query.order_by(Appointment.starts_at.desc(), Appointment.id.desc()).limit(limit))).all())
    if not appointments:
        return []
    person_ids = {a.person_id for a in appointments}
    people = {p.id: p for p in (await session.scalars(
        select(Person).where(Person.id.in_(person_ids)))).all()}
    links = {link.person_id: link for link in (await session.scalars(select(AccountPerson).where(
        AccountPerson.identity_id == account_id, AccountPerson.person_id.in_(person_ids)))).all()}
    groups: dict[int, list[Appointment]] = {}
    for appointment in appointments:
        groups.setdefault(appointment.person_id, []).append(appointment)
    order = sorted(groups, key=lambda pid: (_relation_order(links.get(pid)), -groups[pid][0].id))
    return [PersonBookings(_view(people[pid], links.get(pid)), groups[pid]) for pid in order]


async def relation_to(session: AsyncSession, *, account_id: int,
                      person_id: int) -> tuple[Relation | None, str] | None:
    """Who a person is to an account, for naming them in its notices: None for its own 本人;
    else the relation it holds them by (None when it does not hold them, e.g. a linked account
    booked for them) and the name, masked."""
    person = await session.get(Person, person_id)
    if person is None:
        return None
    link = await _link(session, account_id, person_id)
    if link is not None and link.relation == Relation.SELF:
        return None
    return (link.relation if link is not None else None), mask_name(person.name)


def select_appointment_by_code(code: str) -> Any:
    """A query for the appointment with a booking code (staff look it up, any account's)."""
    return select(Appointment).where(Appointment.code == code.strip().upper())


async def booked_by(session: AsyncSession,
                    appointment: Appointment) -> tuple[str, str, Relation | None] | None:
    """For staff: the account that made (or attached) a booking, masked ("wechat", "…1234"),
    and the relation of the person to it when it is not 本人 (None when 本人 or not held); None
    when no chat account has the booking (a window booking nobody attached).
    """
    if appointment.identity_id is None or (appointment.channel == Channel.STAFF
                                           and appointment.attached_at is None):
        return None
    account = await session.get(ChannelIdentity, appointment.identity_id)
    if account is None:
        return None
    link = await _link(session, account.id, appointment.person_id)
    relation = link.relation if link is not None and link.relation != Relation.SELF else None
    return account.channel.value, _masked_user(account.platform_user_id), relation


async def reachable_account(session: AsyncSession, person_id: int) -> int | None:
    """The chat account a booking staff make for a person (代办) is sent to: one that proved it
    acts for them (an SMS code to the mobile on file, a window booking of theirs attached with
    its code and ID ending, or a binding carried over by migration 0003), that can still be
    reached, the one that wrote last. Typing an ID number proves nothing: an account that only
    did that is not told about the person's window bookings."""
    proven = or_(
        ChannelIdentity.id.in_(select(AccountPerson.identity_id).where(
            AccountPerson.person_id == person_id,
            AccountPerson.method.in_([LinkMethod.SMS, LinkMethod.MIGRATED]))),
        ChannelIdentity.id.in_(select(Appointment.identity_id).where(
            Appointment.person_id == person_id, Appointment.channel == Channel.STAFF,
            Appointment.attached_at.is_not(None))))
    return await session.scalar(
        select(ChannelIdentity.id).where(proven, ChannelIdentity.unreachable_at.is_(None))
        .order_by(ChannelIdentity.last_inbound_at.desc(), ChannelIdentity.id.desc()).limit(1))


async def appointment_for(session: AsyncSession, *, account_id: int,
                          appointment_id: int | None = None, code: str | None = None,
                          lock: bool = False) -> Appointment | None:
    """The appointment, by id or booking code, if this account may see and act on it
    (cancel, reschedule, rate); None when it may not or there is no such appointment (the two
    look the same, so a guessed code tells nothing).

    Args:
        lock: take the row lock (before changing it).
    """
    if (appointment_id is None) == (code is None):
        raise ValueError("give appointment_id or code")
    query = select(Appointment).where(visible_to(account_id))
    query = query.where(Appointment.id == appointment_id) if appointment_id is not None \
        else query.where(Appointment.code == str(code).strip().upper())
    return await session.scalar(query.with_for_update() if lock else query)


async def may_act_on(session: AsyncSession, *, account_id: int, appointment_id: int) -> bool:
    """Whether this account may cancel or reschedule the appointment (see ``appointment_for``)."""
    return await appointment_for(session, account_id=account_id,
                                 appointment_id=appointment_id) is not None


# --- 我的信息: what is kept, and letting go of it ------------------------------------------------


async def linked_accounts(session: AsyncSession, *, account_id: int) -> list[LinkedAccount]:
    """The accounts linked to this one by proof, oldest link first."""
    other = ChannelIdentity
    rows = (await session.execute(
        select(AccountLink, other).join(other, or_(
            and_(AccountLink.first_id == account_id, other.id == AccountLink.second_id),
            and_(AccountLink.second_id == account_id, other.id == AccountLink.first_id)))
        .order_by(AccountLink.id))).all()
    return [LinkedAccount(account.id, account.channel.value, _masked_user(account.platform_user_id),
                          link.method, link.created_at) for link, account in rows]


async def my_data(session: AsyncSession, *, account_id: int) -> MyData:
    """What is kept about an account and the people it acts for, masked (我的信息).

    Raises:
        ValueError: there is no such account (a programming error).
    """
    account = await session.get(ChannelIdentity, account_id)
    if account is None:
        raise ValueError(f"no account {account_id}")
    counts = (await session.execute(
        select(Appointment.status, func.count()).where(Appointment.identity_id == account_id)
        .group_by(Appointment.status))).all()
    return MyData(channel=account.channel.value, user=_masked_user(account.platform_user_id),
                  locale=account.locale, since=account.created_at,
                  people=await people_of(session, account_id=account_id),
                  linked=await linked_accounts(session, account_id=account_id),
                  bookings={AppointmentStatus(status).value: int(n) for status, n in counts})


async def erase_person(session: AsyncSession, now: dt.datetime, *, account_id: int,
                       person_id: int) -> Erasure:
    """Withdraw the consent given for a person and delete their data, as far as the centre may.

    The account's link and consent record go; its past bookings for the person are kept for
    the centre's records without the account (their pending notifications dropped), and the
    address and times of its past home-visit requests for them are cleared.
    When no other account acts for the person, nobody has a booking for them still to come
    and no block is in force, the person's name, mobile and ID are cleared: their bookings,
    strikes and blocks stay in the figures, belonging to nobody.

    Returns:
        What was done (``Erasure``).

    Raises:
        AccountRefused: NOT_THEIR_PERSON, UPCOMING_BOOKINGS (count: this account's bookings
            and home-visit requests for them still to come; cancel those first).
    """
    await _lock_account(session, account_id)
    link = await _link(session, account_id, person_id)
    if link is None:
        raise AccountRefused(AccountRefusal.NOT_THEIR_PERSON)
    upcoming = await _upcoming_count(session, now, person_id, account_id)
    requests = select(HomeVisitRequest.id).where(HomeVisitRequest.person_id == person_id,
                                                 HomeVisitRequest.identity_id == account_id)
    pending = or_(HomeVisitRequest.status.in_([RequestStatus.OPEN, RequestStatus.CLAIMED]),
                  and_(HomeVisitRequest.status == RequestStatus.APPROVED,
                       or_(HomeVisitRequest.visit_at.is_(None), HomeVisitRequest.visit_at > now)))
    upcoming += int(await session.scalar(select(func.count()).select_from(
        requests.where(pending).subquery())) or 0)
    if upcoming:
        raise AccountRefused(AccountRefusal.UPCOMING_BOOKINGS, count=upcoming)
    await session.execute(update(HomeVisitRequest).where(HomeVisitRequest.id.in_(requests))
                          .values(address="", preferred_times="")
                          .execution_options(synchronize_session="fetch"))
    mine = select(Appointment.id).where(Appointment.person_id == person_id,
                                        Appointment.identity_id == account_id)
    await session.execute(update(Outbox).where(
        Outbox.appointment_id.in_(mine), Outbox.identity_id == account_id,
        Outbox.status == OutboxStatus.PENDING)
        .values(status=OutboxStatus.DROPPED, last_error="consent withdrawn")
        .execution_options(synchronize_session=False))
    detached = await session.execute(update(Appointment).where(
        Appointment.person_id == person_id, Appointment.identity_id == account_id)
        .values(identity_id=None).execution_options(synchronize_session="fetch"))
    await session.delete(link)
    await _forget_binding(session, account_id, person_id)
    await session.flush()
    kept = await _kept_for(session, now, person_id)
    await audit(session, now, account_actor(account_id), "withdraw_consent", "person", person_id,
                consent_version=link.consent_version, kept_for=list(kept))
    if not kept:
        person = await session.get(Person, person_id, with_for_update=True)
        assert person is not None  # account_person.person_id is a foreign key
        person.name, person.mobile = "", ""
        person.id_hash = person.id_masked = person.id_tail_hash = None
        person.erased_at = person.updated_at = now
        await audit(session, now, account_actor(account_id), "erase_person", "person", person_id)
    return Erasure(anonymised=not kept, detached_bookings=int(detached.rowcount),  # type: ignore[attr-defined]
                   kept_for=kept)


async def _kept_for(session: AsyncSession, now: dt.datetime, person_id: int) -> tuple[str, ...]:
    reasons: list[str] = []
    others = await session.scalar(select(func.count()).select_from(AccountPerson)
                                  .where(AccountPerson.person_id == person_id))
    bound = await session.scalar(select(func.count()).select_from(ChannelIdentity)
                                 .where(ChannelIdentity.person_id == person_id))
    if others or bound:
        reasons.append("other_accounts")
    if await _upcoming_count(session, now, person_id):
        reasons.append("upcoming")
    blocked = await session.scalar(select(Block.id).where(
        Block.person_id == person_id, Block.lifted_at.is_(None), Block.ends_at > now).limit(1))
    if blocked is not None:
        reasons.append("blocked")
    return tuple(reasons)


# --- staff ------------------------------------------------------------------------------------


async def correct_person(session: AsyncSession, now: dt.datetime, *, person_id: int, actor: str,
                         reason: str, name: str | None = None,
                         mobile: str | None = None) -> PersonView:
    """Staff correct a person's name or mobile after checking their papers; audited with the
    reason (the old and new values are not written to the audit, only which fields changed).

    Returns:
        The person as corrected, masked.

    Raises:
        AccountRefused: REASON_REQUIRED, UNKNOWN_PERSON (none, or erased),
            NOTHING_TO_CORRECT (no field given, or the same values).
        InvalidValue: the new name or mobile is not valid (its ``code`` says why).
    """
    if not reason or not reason.strip():
        raise AccountRefused(AccountRefusal.REASON_REQUIRED)
    person = await session.get(Person, person_id, with_for_update=True)
    if person is None or person.erased_at is not None:
        raise AccountRefused(AccountRefusal.UNKNOWN_PERSON)
    changes: dict[str, str] = {}
    if name is not None and (checked := validate_name(name)) != person.name:
        changes["name"] = checked
    if mobile is not None and (checked := validate_mobile(mobile)) != person.mobile:
        changes["mobile"] = checked
    if not changes:
        raise AccountRefused(AccountRefusal.NOTHING_TO_CORRECT)
    for field_name, value in changes.items():
        setattr(person, field_name, value)
    person.updated_at = now
    await audit(session, now, actor, "correct_person", "person", person.id,
                fields=sorted(changes), reason=reason.strip())
    return _view(person, None, for_staff=True)
