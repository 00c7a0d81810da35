"""Proofs between accounts: linking two accounts of one citizen, and attaching a staff-made
booking to the account it belongs to.

Nothing is linked or attached on a claim alone; each needs a proof:

- Linking (绑定): one account asks for a one-time code and the citizen types it in the other.
  The way of proving is an ``AccountVerifier``, so that a code sent by SMS can be a second way;
  ``OneTimeCode`` is the built-in one: 6 digits, valid ``link_code_minutes``, single use, kept
  only as a keyed hash and never logged.
- Attaching a booking made at the window or by phone: its booking code plus the last 6
  characters of the person's ID number, while the booking is still to come or under way.
- Proving a person by SMS (``SmsCode``, ``claim_person``): a code sent to the mobile on file
  for the person, typed back in the account; the account then holds the person and their
  staff-made bookings still to come. The person is one of the account's, or is found by name
  and ID number together (``SmsCode.challenge_by_id``), which answers alike whether or not
  they match a record: only the code, which goes to the mobile on file, proves anything.

Both count wrong answers per account: ``proof_tries`` of them within ``proof_lock_minutes``
lock the account out of that proof for ``proof_lock_minutes`` (``storage.rules``). A wrong
answer is written to the session before the refusal is raised: the caller answers and commits,
as for every refusal, or the count would be lost.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import unicodedata
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.accounts import (
    AccountRefusal,
    AccountRefused,
    LinkedAccount,
    account_actor,
    linked_accounts,
)
from storage.audit import audit
from storage.booking import ACTIVE, schedule_reminders
from storage.centre import Centre
from storage.identity import mask_mobile, same_name
from storage.models import (
    AccountLink,
    AccountPerson,
    Appointment,
    Channel,
    LinkCode,
    LinkMethod,
    Outbox,
    OutboxStatus,
    Person,
    Relation,
    VerificationTries,
)
from storage.models import SmsCode as SmsCode_
from storage.outbox import insert_ignoring_duplicates
from storage.rules import ProofTries, after_wrong_proof, people_at_limit, proof_locked_until
from storage.settings import AccountSettings

LINK = "link"          # purposes of the wrong-answer counts
ATTACH = "attach"
CODE_DIGITS = 6
_CODE = re.compile(r"^\d{6}$")
_ID_TAIL = re.compile(r"^\d{5}[\dX]$")


@dataclass(frozen=True)
class Challenge:
    """A proof asked for: what to show the asking account (``code``; None when the secret
    travels another way, as an SMS) and until when it can be answered."""

    method: LinkMethod
    expires_at: dt.datetime
    code: str | None = field(default=None, repr=False)
    sent_to: str | None = None      # where the code went, masked (138****5678), for an SMS


@dataclass(frozen=True)
class Proof:
    """What a verifier established: ``claimant`` (the account that answered) belongs to the
    same citizen as ``proven`` (the account that asked)."""

    method: LinkMethod
    claimant_id: int
    proven_id: int


class AccountVerifier(Protocol):
    """A way for one account to prove it belongs to the same citizen as another."""

    method: LinkMethod

    async def challenge(self, session: AsyncSession, now: dt.datetime, *,
                        account_id: int) -> Challenge:
        """Start a proof for ``account_id`` (the account to be proven)."""
        ...

    async def verify(self, session: AsyncSession, now: dt.datetime, *, account_id: int,
                     answer: str) -> Proof:
        """Check the answer ``account_id`` gave.

        Raises:
            AccountRefused: LOCKED (until), WRONG_ANSWER (tries_left), OWN_CODE.
        """
        ...


# --- wrong answers and the lock ---------------------------------------------------------------


async def _tries(session: AsyncSession, account_id: int, purpose: str) -> VerificationTries:
    """The account's count for one purpose, locked for this transaction (made if missing)."""
    await session.execute(insert_ignoring_duplicates(session, VerificationTries,
                                                     ["identity_id", "purpose"])
                          .values(identity_id=account_id, purpose=purpose, failures=0))
    row = await session.scalar(select(VerificationTries).where(
        VerificationTries.identity_id == account_id, VerificationTries.purpose == purpose)
        .with_for_update().execution_options(populate_existing=True))
    assert row is not None  # inserted just above if it was missing
    return row


def _state(row: VerificationTries) -> ProofTries:
    return ProofTries(row.failures, row.first_failure_at, row.locked_until)


def _refuse_if_locked(row: VerificationTries, now: dt.datetime) -> None:
    until = proof_locked_until(_state(row), now)
    if until is not None:
        raise AccountRefused(AccountRefusal.LOCKED, until=until)


async def _wrong(session: AsyncSession, now: dt.datetime, row: VerificationTries,
                 policy: AccountSettings) -> AccountRefused:
    """Count a wrong answer; the refusal to raise (LOCKED when this one locked the account)."""
    state = after_wrong_proof(_state(row), now, policy)
    row.failures, row.first_failure_at, row.locked_until = (
        state.failures, state.first_failure_at, state.locked_until)
    await audit(session, now, account_actor(row.identity_id), "wrong_proof", "account",
                row.identity_id, purpose=row.purpose, locked=state.locked_until is not None)
    await session.flush()
    if state.locked_until is not None:
        return AccountRefused(AccountRefusal.LOCKED, until=state.locked_until)
    return AccountRefused(AccountRefusal.WRONG_ANSWER,
                          tries_left=policy.proof_tries - state.failures)


def _right(row: VerificationTries) -> None:
    row.failures, row.first_failure_at, row.locked_until = 0, None, None


def _normal(text: str) -> str:
    """Full-width to half-width, spaces and dashes out, upper case (people type and paste)."""
    return re.sub(r"[\s\-]", "", unicodedata.normalize("NFKC", text)).upper()


# --- the one-time code ------------------------------------------------------------------------


class OneTimeCode:
    """The built-in verifier: a 6-digit code shown in the asking account, typed in the other.

    A new code replaces the account's previous one; codes are kept as an HMAC under a key
    derived from the ID-hash key (a plain hash of 6 digits would be reversed at once).
    """

    method = LinkMethod.CODE

    def __init__(self, centre: Centre) -> None:
        self._key = centre.hasher.derive("link code")
        self._policy = centre.accounts

    def __repr__(self) -> str:
        return "OneTimeCode(key=<hidden>)"

    def _hash(self, code: str) -> str:
        return hmac.new(self._key, code.encode(), hashlib.sha256).hexdigest()

    async def challenge(self, session: AsyncSession, now: dt.datetime, *,
                        account_id: int) -> Challenge:
        """A new code for ``account_id`` to show; the previous one stops working.

        Returns:
            The challenge, with the code (never stored or logged as it is).
        """
        await session.execute(delete(LinkCode).where(or_(LinkCode.identity_id == account_id,
                                                         LinkCode.expires_at <= now)))
        expires = now + dt.timedelta(minutes=self._policy.link_code_minutes)
        for _ in range(20):
            code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
            try:
                async with session.begin_nested():  # another account's live code may be equal
                    session.add(LinkCode(identity_id=account_id, code_hash=self._hash(code),
                                         expires_at=expires, created_at=now))
            except IntegrityError:
                continue
            await audit(session, now, account_actor(account_id), "link_code", "account",
                        account_id, expires_at=expires.isoformat())
            return Challenge(self.method, expires, code)
        raise RuntimeError("could not find a free link code")  # only with ~10^6 live codes

    async def verify(self, session: AsyncSession, now: dt.datetime, *, account_id: int,
                     answer: str) -> Proof:
        """Check a code typed in ``account_id``; a right one is used up.

        Returns:
            The proof that ``account_id`` belongs with the account that asked for the code.

        Raises:
            AccountRefused: LOCKED (until), WRONG_ANSWER (tries_left; also for a code used
                already or expired), OWN_CODE (typed in the account that asked for it).
        """
        tries = await _tries(session, account_id, LINK)
        _refuse_if_locked(tries, now)
        typed = _normal(answer)
        found = await session.scalar(select(LinkCode).where(
            LinkCode.code_hash == self._hash(typed)).with_for_update()) if _CODE.match(typed) else None
        if found is not None and found.identity_id == account_id:
            raise AccountRefused(AccountRefusal.OWN_CODE)
        if found is None or found.expires_at <= now:
            if found is not None:
                await session.delete(found)
            raise await _wrong(session, now, tries, self._policy)
        proven = found.identity_id
        await session.delete(found)
        _right(tries)
        await session.flush()
        return Proof(self.method, account_id, proven)


# --- linked accounts --------------------------------------------------------------------------


def _pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


async def link_accounts(session: AsyncSession, now: dt.datetime, proof: Proof) -> LinkedAccount:
    """Link the two accounts of a proof; each then sees the bookings the other made. Linking
    twice changes nothing.

    Returns:
        The account linked to (``proof.proven_id``), as the claimant sees it.
    """
    first, second = _pair(proof.claimant_id, proof.proven_id)
    existing = await session.scalar(select(AccountLink.id).where(
        AccountLink.first_id == first, AccountLink.second_id == second))
    if existing is None:
        try:
            async with session.begin_nested():
                session.add(AccountLink(first_id=first, second_id=second, method=proof.method,
                                        created_at=now))
        except IntegrityError:  # the same pair, linked by another process a moment ago
            pass
        else:
            for account in (proof.claimant_id, proof.proven_id):
                await audit(session, now, account_actor(proof.claimant_id), "link_accounts",
                            "account", account, method=proof.method.value)
    linked = await linked_accounts(session, account_id=proof.claimant_id)
    return next(each for each in linked if each.account_id == proof.proven_id)


async def link_with(session: AsyncSession, now: dt.datetime, verifier: AccountVerifier, *,
                    account_id: int, answer: str) -> LinkedAccount:
    """Link ``account_id`` to the account that asked for the proof it answers (绑定).

    Returns:
        The account now linked, masked.

    Raises:
        AccountRefused: LOCKED (until), WRONG_ANSWER (tries_left), OWN_CODE; the wrong answer
            is counted in the session, so commit after answering.
    """
    proof = await verifier.verify(session, now, account_id=account_id, answer=answer)
    return await link_accounts(session, now, proof)


async def unlink_accounts(session: AsyncSession, now: dt.datetime, *, account_id: int,
                          other_id: int) -> None:
    """Undo a link, from either side; neither sees the other's bookings any more.

    Raises:
        AccountRefused: NOT_LINKED.
    """
    first, second = _pair(account_id, other_id)
    gone = await session.execute(delete(AccountLink).where(AccountLink.first_id == first,
                                                           AccountLink.second_id == second))
    if not gone.rowcount:  # type: ignore[attr-defined]
        raise AccountRefused(AccountRefusal.NOT_LINKED)
    for account in (account_id, other_id):
        await audit(session, now, account_actor(account_id), "unlink_accounts", "account", account)


# --- staff-made bookings ----------------------------------------------------------------------


async def attach_staff_booking(session: AsyncSession, centre: Centre, now: dt.datetime, *,
                               account_id: int, code: str, id_tail: str) -> Appointment:
    """Make a booking staff made (walk-in, phone) the account's: it proves it with the
    booking code and the last 6 characters of the person's ID number, while the booking is
    still to come or under way. Its reminders go to the account from then on.

    Returns:
        The appointment, now visible to the account (and to accounts linked to it).

    Raises:
        AccountRefused: LOCKED (until), WRONG_ANSWER (tries_left: no such staff booking,
            wrong ID ending, or attached to another account already; they look the same),
            NOT_ATTACHABLE (right code and ID ending, but the booking is over or cancelled).
            A wrong answer is counted in the session, so commit after answering.
    """
    from storage.sms import drop_sms_for_chat

    tries = await _tries(session, account_id, ATTACH)
    _refuse_if_locked(tries, now)
    typed_code, typed_tail = _normal(code), _normal(id_tail)
    appointment = await session.scalar(
        select(Appointment).where(Appointment.code == typed_code, Appointment.channel == Channel.STAFF)
        .with_for_update()) if typed_code and _ID_TAIL.match(typed_tail) else None
    person = await session.get(Person, appointment.person_id) if appointment is not None else None
    proven = (appointment is not None and person is not None and person.id_tail_hash is not None
              and hmac.compare_digest(person.id_tail_hash, centre.hasher.tail_hash(typed_tail))
              and (appointment.attached_at is None or appointment.identity_id == account_id))
    if not proven or appointment is None:
        raise await _wrong(session, now, tries, centre.accounts)
    _right(tries)
    if appointment.status not in ACTIVE or appointment.ends_at <= now:
        raise AccountRefused(AccountRefusal.NOT_ATTACHABLE, status=appointment.status)
    if appointment.attached_at is not None:
        return appointment
    before = appointment.identity_id
    appointment.identity_id, appointment.attached_at, appointment.updated_at = account_id, now, now
    await session.flush()
    await audit(session, now, account_actor(account_id), "attach", "appointment", appointment.id)
    if before is None:
        await drop_sms_for_chat(session, appointment.id)
        await schedule_reminders(session, centre, now, appointment)
    else:  # the window sent them to an account bound the old way: they go to the prover now
        await session.execute(update(Outbox).where(
            Outbox.appointment_id == appointment.id, Outbox.status == OutboxStatus.PENDING)
            .values(identity_id=account_id).execution_options(synchronize_session=False))
    return appointment


# --- a code by SMS to the mobile on file ------------------------------------------------------

SMS_PROOF = "sms"      # purpose of the wrong-answer count


@dataclass(frozen=True)
class PersonProof:
    """What an SMS code established: ``account_id`` holds the mobile on file for
    ``person_id``."""

    method: LinkMethod
    account_id: int
    person_id: int


class SmsCode:
    """A second way to prove ownership: a 6-digit code sent by SMS to the mobile on file for a
    person, typed back in the chat account that asked. Valid ``sms.code_minutes`` (5), single
    use, at most ``sms.codes_per_hour`` asked per account and per person, kept only as an HMAC
    (under a key derived from the ID-hash key) and never logged; the text itself goes through
    the outbox, whose row holds the code only until it is sent or given up. Wrong answers
    count towards the same lock as the other proofs.
    """

    method = LinkMethod.SMS

    def __init__(self, centre: Centre) -> None:
        self._key = centre.hasher.derive("sms code")
        self._centre = centre

    def __repr__(self) -> str:
        return "SmsCode(key=<hidden>)"

    def _hash(self, account_id: int, code: str) -> str:
        return hmac.new(self._key, f"{account_id}:{code}".encode(), hashlib.sha256).hexdigest()

    async def challenge(self, session: AsyncSession, now: dt.datetime, *, account_id: int,
                        person_id: int) -> Challenge:
        """Send a new code to the mobile on file for ``person_id``; the account's previous
        code stops working.

        Returns:
            The challenge, without the code (it travels by SMS).

        Raises:
            AccountRefused: LOCKED (until), SMS_UNAVAILABLE (no SMS set up, no mobile on file),
                TOO_MANY_CODES (until).
        """
        tries = await _tries(session, account_id, SMS_PROOF)
        _refuse_if_locked(tries, now)
        person = await session.get(Person, person_id)
        if not self._centre.sms.enabled or person is None or person.erased_at is not None \
                or not person.mobile:
            raise AccountRefused(AccountRefusal.SMS_UNAVAILABLE)
        until = await self._too_many_until(session, now, account_id, person_id)
        if until is not None:
            raise AccountRefused(AccountRefusal.TOO_MANY_CODES, until=until)
        await self._drop_live(session, now, account_id)
        expires = await self._send(session, now, account_id, person_id)
        return Challenge(self.method, expires, sent_to=mask_mobile(person.mobile))

    async def challenge_by_id(self, session: AsyncSession, now: dt.datetime, *, account_id: int,
                              name: str, id_number: str) -> Challenge:
        """Send a code for the person on record with this ID number and this name (a citizen
        whose record was made at the window or by phone, not yet one of the account's people),
        to the mobile on file for them, never to one typed.

        An ID number is no secret, so this answers the same whatever the records hold: no such
        person, a person under another name, a person with no mobile on file, a person who was
        sent too many codes this hour, and a match all return a challenge with no ``sent_to``,
        and the conversation goes on to the code. A code is sent only for a match within the
        hourly limits; in every other case nothing is sent and the account's previous code
        stops working all the same, so the code typed next is wrong. Failures are counted
        there, by ``verify``, towards the proof lock: an account cannot try names and numbers
        in bulk, and learns nothing from trying.

        Args:
            id_number: a valid ID number (``storage.identity.validate_id_number``).

        Returns:
            The challenge, without the code and without ``sent_to``.

        Raises:
            AccountRefused: LOCKED (until), SMS_UNAVAILABLE (no SMS set up; the same for
                everyone).
        """
        if not self._centre.sms.enabled:
            raise AccountRefused(AccountRefusal.SMS_UNAVAILABLE)
        tries = await _tries(session, account_id, SMS_PROOF)
        _refuse_if_locked(tries, now)
        await self._drop_live(session, now, account_id)
        expires = now + dt.timedelta(minutes=self._centre.sms.code_minutes)
        person = await session.scalar(select(Person).where(
            Person.id_hash == self._centre.hasher.hash(id_number)))
        if person is None or person.erased_at is not None or not person.mobile \
                or not same_name(person.name, name) \
                or await self._too_many_until(session, now, account_id, person.id) is not None:
            return Challenge(self.method, expires)
        await self._send(session, now, account_id, person.id)
        return Challenge(self.method, expires)

    async def _too_many_until(self, session: AsyncSession, now: dt.datetime, account_id: int,
                              person_id: int) -> dt.datetime | None:
        """When the account may ask again, if it or the person had ``codes_per_hour`` codes
        within the hour; None when a code may be sent."""
        hour_ago = now - dt.timedelta(hours=1)
        for column, value in ((SmsCode_.identity_id, account_id), (SmsCode_.person_id, person_id)):
            recent = list((await session.scalars(select(SmsCode_.created_at).where(
                column == value, SmsCode_.created_at > hour_ago)
                .order_by(SmsCode_.created_at))).all())
            if len(recent) >= self._centre.sms.codes_per_hour:
                return recent[0] + dt.timedelta(hours=1)
        return None

    @staticmethod
    async def _drop_live(session: AsyncSession, now: dt.datetime, account_id: int) -> None:
        """Make the account's codes not yet used stop working (a new one was asked for)."""
        await session.execute(update(SmsCode_).where(
            SmsCode_.identity_id == account_id, SmsCode_.used_at.is_(None))
            .values(used_at=now).execution_options(synchronize_session=False))

    async def _send(self, session: AsyncSession, now: dt.datetime, account_id: int,
                    person_id: int) -> dt.datetime:
        """Make a code for the person, queue its text, and return when it expires."""
        from storage.sms import CODE_KIND, queue_sms

        minutes = self._centre.sms.code_minutes
        expires = now + dt.timedelta(minutes=minutes)
        code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
        row = SmsCode_(identity_id=account_id, person_id=person_id,
                       code_hash=self._hash(account_id, code), expires_at=expires, created_at=now)
        session.add(row)
        await session.flush()
        await queue_sms(session, self._centre, now, kind=CODE_KIND, dedup_key=f"code:{row.id}",
                        person_id=person_id, account_id=account_id, via="code",
                        payload={"code": code, "minutes": minutes}, expires_at=expires)
        await audit(session, now, account_actor(account_id), "sms_code", "person", person_id,
                    expires_at=expires.isoformat())
        return expires

    async def verify(self, session: AsyncSession, now: dt.datetime, *, account_id: int,
                     answer: str) -> PersonProof:
        """Check a code typed in ``account_id``; a right one is used up.

        Raises:
            AccountRefused: LOCKED (until), WRONG_ANSWER (tries_left; also for a code used
                already, replaced or expired). Commit after a wrong answer (it is counted).
        """
        tries = await _tries(session, account_id, SMS_PROOF)
        _refuse_if_locked(tries, now)
        typed = _normal(answer)
        live = await session.scalar(select(SmsCode_).where(
            SmsCode_.identity_id == account_id, SmsCode_.used_at.is_(None),
            SmsCode_.expires_at > now).order_by(SmsCode_.id.desc()).limit(1).with_for_update())
        if live is None or not _CODE.match(typed) or not hmac.compare_digest(
                live.code_hash, self._hash(account_id, typed)):
            raise await _wrong(session, now, tries, self._centre.accounts)
        live.used_at = now
        _right(tries)
        await session.flush()
        return PersonProof(self.method, account_id, live.person_id)


async def claim_person(session: AsyncSession, centre: Centre, now: dt.datetime,
                       proof: PersonProof, *, relation: Relation,
                       consent_version: str) -> list[Appointment]:
    """Link the account to the person it proved by SMS to be (or to act for), with the consent
    given, and make the person's staff-made bookings still to come the account's: their
    reminders go to the chat from then on instead of by SMS.

    Returns:
        The bookings attached.

    Raises:
        AccountRefused: CONSENT_REQUIRED, PEOPLE_LIMIT (limit), SELF_TAKEN.
    """
    from storage.sms import drop_sms_for_chat

    version = consent_version.strip()
    if not version or len(version) > 20:
        raise AccountRefused(AccountRefusal.CONSENT_REQUIRED)
    links = list((await session.scalars(select(AccountPerson).where(
        AccountPerson.identity_id == proof.account_id).with_for_update())).all())
    link = next((each for each in links if each.person_id == proof.person_id), None)
    if relation == Relation.SELF and any(each.relation == Relation.SELF and each is not link
                                         for each in links):
        raise AccountRefused(AccountRefusal.SELF_TAKEN)
    if link is None:
        if people_at_limit(len(links), centre.accounts):
            raise AccountRefused(AccountRefusal.PEOPLE_LIMIT, limit=centre.accounts.people_per_account)
        link = AccountPerson(identity_id=proof.account_id, person_id=proof.person_id,
                             relation=relation, method=LinkMethod.SMS, created_at=now)
        session.add(link)
    person = await session.get(Person, proof.person_id)
    link.relation, link.method = relation, LinkMethod.SMS
    link.mobile = person.mobile if person is not None else link.mobile
    link.consent_version, link.consented_at = version, now
    await session.flush()
    await audit(session, now, account_actor(proof.account_id), "claim_person", "person",
                proof.person_id, method=LinkMethod.SMS.value, relation=relation.value)
    staff_made = list((await session.scalars(select(Appointment).where(
        Appointment.person_id == proof.person_id, Appointment.channel == Channel.STAFF,
        Appointment.attached_at.is_(None), Appointment.status.in_(list(ACTIVE)),
        Appointment.ends_at > now).with_for_update())).all())
    for appointment in staff_made:
        before = appointment.identity_id
        appointment.identity_id, appointment.attached_at, appointment.updated_at = (
            proof.account_id, now, now)
        await session.flush()
        await audit(session, now, account_actor(proof.account_id), "attach", "appointment",
                    appointment.id, method=LinkMethod.SMS.value)
        if before is None:
            await drop_sms_for_chat(session, appointment.id)
            await schedule_reminders(session, centre, now, appointment)
    return staff_made
