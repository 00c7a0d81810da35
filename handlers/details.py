"""Who a booking or request is for, and their real-name details (实名): one sub-flow for the
citizen's own booking, a home-visit request and a booking staff make for a walk-in (代办).

The flow that needs a person enters it with ``ask`` and says what it needs (``Asking``); the
sub-flow runs inside that flow (its data stays), offers the saved details or asks for consent,
then the name, the mobile and, when needed, the resident ID number, each re-asked with the
precise problem, and hands the flow a ``Given``: the saved person, or new details. The ID number
is only ever in that hand-over: it is checked, then kept hashed and masked by the flow, never in
the conversation state. "Who is this for" (为谁预约) is this module's first step
(``Details.IDENTITY``): the account's people, masked, and 添加办事人, which asks the relation and
the holder's authorisation (with the consent, recorded) before the name, mobile and ID number.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from handlers.context import Ctx, Event, StepHandler, option
from handlers.core import Reply
from handlers.menu import back_to_menu, leave, main_menu
from handlers.payloads import Button, PersonPick, RelationPick
from handlers.steps import Details, StepName
from storage import accounts
from storage.accounts import AccountRefusal, AccountRefused, PersonView
from storage.identity import (
    InvalidValue,
    NameMismatch,
    PersonDetails,
    age_on,
    find_or_create_person,
    validate_id_number,
    validate_mobile,
    validate_name,
)
from storage.models import Person, Relation
from storage.seats import release_holds

# The version of the personal-data notice (booking.consent, booking.consent_short) an account
# agrees to when it gives someone's details; kept with the account's link to that person.
CONSENT_VERSION = "chat-2026-12"


class Voice(enum.StrEnum):
    CITIZEN = "citizen"     # the citizen, about themselves
    STAFF = "staff"         # a staff member, about the walk-in or caller in front of them


class IdNumber(enum.StrEnum):
    NOT_NEEDED = "no"
    IF_MISSING = "missing"  # the person must have one on file (asked when they have not)
    ASK = "ask"             # asked now whatever is on file (it gives the age)


class Consent(enum.StrEnum):
    CONFIRM = "confirm"     # the personal-data notice with agree / disagree
    NOTICE = "notice"       # a short notice, then the questions


@dataclass(frozen=True)
class Asking:
    """What the flow needs to know about the person, kept in the conversation while asked."""

    voice: Voice = Voice.CITIZEN
    id_number: IdNumber = IdNumber.NOT_NEEDED
    id_prompt: str = "booking.ask_id"
    consent: Consent = Consent.CONFIRM
    choose_saved: bool = True   # show the saved details to use or change (else use them)

    def to_json(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, enum.Enum) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Asking:
        data = data or {}
        return cls(voice=Voice(data.get("voice", Voice.CITIZEN)),
                   id_number=IdNumber(data.get("id_number", IdNumber.NOT_NEEDED)),
                   id_prompt=data.get("id_prompt", "booking.ask_id"),
                   consent=Consent(data.get("consent", Consent.CONFIRM)),
                   choose_saved=bool(data.get("choose_saved", True)))


@dataclass(frozen=True)
class Given:
    """What the sub-flow hands back: the saved person the citizen chose, or new details (with
    the age on the day, when an ID number was given)."""

    person: Person | None = None
    details: PersonDetails | None = None
    age: int | None = None


Done = Callable[[Ctx, Given], Awaitable[list[Reply]]]

_PROMPTS = {Voice.CITIZEN: ("booking.ask_name", "booking.ask_mobile"),
            Voice.STAFF: ("staff.walkin_ask_name", "staff.walkin_ask_mobile")}


def _asking(ctx: Ctx) -> Asking:
    return Asking.from_json(ctx.data.get("asking"))


def _prompt(ctx: Ctx, step: Details) -> Reply:
    asking = _asking(ctx)
    if step == Details.ID_NUMBER:
        return ctx.reply("staff.walkin_ask_id" if asking.voice == Voice.STAFF else asking.id_prompt)
    name, mobile = _PROMPTS[asking.voice]
    return ctx.reply(name if step == Details.NAME else mobile)


async def ask(ctx: Ctx, asking: Asking) -> list[Reply]:
    """Start asking who it is for (the flow's data stays; ``Done`` is called at the end)."""
    ctx.forget("name", "mobile", "relation", "authorised")
    if asking.voice == Voice.STAFF:
        return await ctx.enter(Details.NAME, asking=asking.to_json())
    return await ctx.enter(Details.IDENTITY, asking=asking.to_json())


async def view_of(ctx: Ctx, person_id: int) -> PersonView | None:
    """A person of this account as it may see them (the mobile it gave), or None."""
    for view in await accounts.people_of(ctx.session, account_id=ctx.identity.id):
        if view.person_id == person_id:
            return view
    return None


async def keep(ctx: Ctx, details: PersonDetails) -> Person:
    """The person the citizen's details name, kept on the account's list of people.

    Typing details changes nobody's record and opens nobody's bookings: the person is found
    (or created) by ``find_or_create_person``, and the account is linked to them with the
    consent it just gave, as 本人 when it holds nobody as 本人 yet. What the account sees
    stays what it made itself (``storage.accounts.visible_to``).

    Raises:
        NameMismatch: the ID number is on record under another name.
        AccountRefused: PEOPLE_LIMIT (the account's list is full).
    """
    person = await find_or_create_person(ctx.session, details, ctx.centre.hasher, ctx.now,
                                         account_id=ctx.identity.id)
    people = await accounts.people_of(ctx.session, account_id=ctx.identity.id)
    own = next((view for view in people if view.relation == Relation.SELF), None)
    held = next((view for view in people if view.person_id == person.id), None)
    if held is not None and held.relation is not None:
        relation = held.relation
    else:
        relation = Relation.SELF if own is None or own.person_id == person.id else Relation.OTHER
    await accounts.add_person(ctx.session, ctx.centre, ctx.now, account_id=ctx.identity.id,
                              details=details, relation=relation, consent_version=CONSENT_VERSION)
    return person


def _needs_id(asking: Asking, person: Person) -> bool:
    return asking.id_number == IdNumber.ASK or (
        asking.id_number == IdNumber.IF_MISSING and not person.id_hash)


def person_label(ctx: Ctx, view: PersonView) -> str:
    """One person of the account, masked: "张* · 身份证 110…002X · 本人"."""
    parts = [view.name or "*"]
    if view.id_number:
        parts.append(ctx.t("people.id_short", id=f"{view.id_number[:3]}…{view.id_number[-4:]}"))
    elif view.mobile:
        parts.append(view.mobile)
    if view.relation is not None:
        parts.append(ctx.t(f"people.relation_{view.relation.value}"))
    return " · ".join(parts)


async def usable_people(ctx: Ctx) -> list[tuple[Person, PersonView]]:
    """The account's people who can be booked for (not erased), 本人 first."""
    found = []
    for view in await accounts.people_of(ctx.session, account_id=ctx.identity.id):
        person = await ctx.session.get(Person, view.person_id)
        if person is not None and person.erased_at is None:
            found.append((person, view))
    return found


async def _use(ctx: Ctx, person: Person, *, done: Done) -> list[Reply]:
    if _needs_id(_asking(ctx), person):
        ctx.goto(Details.ID_NUMBER, name=person.name, mobile=person.mobile)
        return [_prompt(ctx, Details.ID_NUMBER)]
    return await done(ctx, Given(person=person))


async def identity(ctx: Ctx, event: Event, *, done: Done) -> list[Reply]:
    """Ask who it is for (为谁预约): the account's people, masked, and "添加办事人"; an account
    with nobody yet is asked for consent, then the details (the holder, 本人)."""
    asking = _asking(ctx)
    people = await usable_people(ctx)
    button = event.button
    if (picked := event.pick(PersonPick)) is not None:
        chosen = next((person for person, _ in people if person.id == picked.person), None)
        if chosen is None:
            return [ctx.reply("core.stale"), *await identity(ctx, Event.enter(), done=done)]
        return await _use(ctx, chosen, done=done)
    if people and (button is Button.USE_SAVED or not asking.choose_saved):
        return await _use(ctx, people[0][0], done=done)
    if button is Button.ADD_PERSON:
        return await ctx.enter(Details.RELATION)
    if button is Button.AGREE and not people:
        return await ctx.enter(Details.NAME)
    if button is Button.DISAGREE:
        return await leave(ctx, "booking.consent_declined")
    if people:
        rows = [[option(person_label(ctx, view), PersonPick(person.id))] for person, view in people]
        rows.append([option(ctx.t("people.add"), Button.ADD_PERSON), *back_to_menu(ctx)])
        return [ctx.reply("people.for_whom", *rows)]
    if asking.consent == Consent.NOTICE:
        ctx.goto(Details.NAME)
        return [ctx.reply("booking.consent_short"), _prompt(ctx, Details.NAME)]
    return [ctx.reply("booking.consent", [option(ctx.t("booking.agree"), Button.AGREE)],
                      [option(ctx.t("booking.disagree"), Button.DISAGREE)])]


async def relation(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask who the new person is to the account holder (本人, 配偶, 子女, 父母, 其他亲属, 其他)."""
    if (picked := event.pick(RelationPick)) is not None:
        return await ctx.enter(Details.AUTHORISE, relation=picked.relation.value)
    if event.button is Button.BACK:
        ctx.forget("relation")
        return await ctx.enter(Details.IDENTITY)
    held = await accounts.people_of(ctx.session, account_id=ctx.identity.id)
    has_self = any(view.relation == Relation.SELF for view in held)
    choices = [option(ctx.t(f"people.relation_{each.value}"), RelationPick(each))
               for each in Relation if not (each == Relation.SELF and has_self)]
    rows = [choices[i:i + 3] for i in range(0, len(choices), 3)]
    return [ctx.reply("people.ask_relation", *rows, [option(ctx.t("common.back"), Button.BACK)])]


async def authorise(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask the holder to confirm they may act for the person and agree to the notice."""
    chosen = Relation(ctx.data.get("relation", Relation.OTHER))
    if event.button is Button.AGREE:
        return await ctx.enter(Details.NAME, authorised=True)
    if event.button is Button.DISAGREE:
        return await leave(ctx, "booking.consent_declined")
    key = "people.consent_self" if chosen == Relation.SELF else "people.authorise"
    return [ctx.reply(key, [option(ctx.t("people.authorise_yes" if chosen != Relation.SELF
                                         else "booking.agree"), Button.AGREE)],
                      [option(ctx.t("booking.disagree"), Button.DISAGREE)],
                      relation=ctx.t(f"people.relation_{chosen.value}"))]


async def _added(ctx: Ctx, given: Given, *, done: Done) -> list[Reply]:
    """The details of a person being added (with a relation) are in: add them to the account's
    list with the consent just given, then go on as for a person chosen from the list."""
    if given.details is None or not ctx.data.get("authorised") or "relation" not in ctx.data:
        return await done(ctx, given)
    chosen = Relation(ctx.data["relation"])
    ctx.forget("relation", "authorised", "name", "mobile")
    try:
        view = await accounts.add_person(ctx.session, ctx.centre, ctx.now,
                                         account_id=ctx.identity.id, details=given.details,
                                         relation=chosen, consent_version=CONSENT_VERSION)
    except NameMismatch:
        return await leave(ctx, "invalid.name_mismatch")
    except AccountRefused as refused:
        if refused.reason == AccountRefusal.SELF_TAKEN:
            return [ctx.reply("people.self_taken"), *await ctx.enter(Details.RELATION)]
        await release_holds(ctx.session, ctx.actor)
        ctx.end()
        return [ctx.reply("people.limit", limit=refused.details.get("limit", "")),
                main_menu(ctx)]
    person = await ctx.session.get(Person, view.person_id)
    assert person is not None  # just added
    return await done(ctx, Given(person=person, age=given.age))


async def name(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask for the real name; re-ask with the precise problem."""
    if not event.is_text:
        return [_prompt(ctx, Details.NAME)]
    try:
        value = validate_name(event.value)
    except InvalidValue as bad:
        return [ctx.reply(f"invalid.{bad.code}")]
    return await ctx.enter(Details.MOBILE, name=value)


async def mobile(ctx: Ctx, event: Event, *, done: Done) -> list[Reply]:
    """Ask for the mainland mobile number; then the ID number if it is needed."""
    if not event.is_text:
        return [_prompt(ctx, Details.MOBILE)]
    try:
        value = validate_mobile(event.value)
    except InvalidValue as bad:
        return [ctx.reply(f"invalid.{bad.code}")]
    if _asking(ctx).id_number != IdNumber.NOT_NEEDED:
        return await ctx.enter(Details.ID_NUMBER, mobile=value)
    ctx.remember(mobile=value)
    return await done(ctx, Given(details=PersonDetails(ctx.data["name"], value)))


async def id_number(ctx: Ctx, event: Event, *, done: Done) -> list[Reply]:
    """Ask for the resident ID number; it is checked, then kept only hashed and masked."""
    if not event.is_text:
        return [_prompt(ctx, Details.ID_NUMBER)]
    try:
        value = validate_id_number(event.value, ctx.today)
    except InvalidValue as bad:
        return [ctx.reply(f"invalid.{bad.code}")]
    details = PersonDetails(ctx.data["name"], ctx.data["mobile"], value)
    born = details.birth_date
    return await done(ctx, Given(details=details, age=age_on(born, ctx.today) if born else None))


def steps(done: Done) -> dict[StepName, StepHandler]:
    """The sub-flow's steps for a flow to include, ending in that flow's ``done``."""
    finish = partial(_added, done=done)
    return {Details.IDENTITY: partial(identity, done=done), Details.NAME: name,
            Details.MOBILE: partial(mobile, done=finish),
            Details.ID_NUMBER: partial(id_number, done=finish),
            Details.RELATION: relation, Details.AUTHORISE: authorise}


TEXT_STEPS: frozenset[StepName] = frozenset({Details.NAME, Details.MOBILE, Details.ID_NUMBER})
