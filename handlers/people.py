"""我的办事人, 我的信息 and 绑定: the people an account acts for (list, add, remove), what is
kept about them (and withdrawing consent), and linking accounts by proof (a one-time code
shown in one account and typed in the other, a staff-made booking's code plus the end of the
ID number, or an SMS code to the mobile on file, for one of the account's people or for someone
found by name and ID number together). Diagram: docs/flows/people.mmd.

Everything shown is masked; what an account may see stays what ``storage.accounts`` allows.
"""

from __future__ import annotations

from handlers import details
from handlers.context import Ctx, Event, option
from handlers.core import Reply
from handlers.details import Asking, Given, IdNumber, person_label
from handlers.flow import Flow
from handlers.menu import back_to_menu, main_menu
from handlers.payloads import Button, PersonPick, RelationPick, Unlink
from handlers.render import when_text
from handlers.steps import Details, People
from storage import accounts, outbox
from storage.accounts import AccountRefusal, AccountRefused, PersonView
from storage.identity import InvalidValue, validate_id_number, validate_name
from storage.linking import OneTimeCode, SmsCode, attach_staff_booking, claim_person, link_with, unlink_accounts
from storage.models import Relation

LINK_NOTICE = "account_linked"
UNLINK_NOTICE = "account_unlinked"


# --- 我的办事人 ---------------------------------------------------------------------------------


async def people_command(ctx: Ctx, args: str) -> list[Reply]:
    """Show the account's people (我的办事人)."""
    return await ctx.enter(People.LIST)


async def listing(ctx: Ctx, event: Event) -> list[Reply]:
    """List the account's people, masked; pick one to see or remove, or add someone."""
    if (picked := event.pick(PersonPick)) is not None:
        return await ctx.enter(People.PERSON, person=picked.person)
    button = event.button
    if button is Button.ADD_PERSON:
        return await ctx.enter(Details.RELATION, asking=Asking(id_number=IdNumber.ASK).to_json())
    if button is Button.MY_DATA:
        return await ctx.enter(People.MY_DATA)
    if button is Button.LINK:
        return await ctx.enter(People.LINK)
    people = await accounts.people_of(ctx.session, account_id=ctx.identity.id)
    rows = [[option(person_label(ctx, view), PersonPick(view.person_id))]
            for view in people if not view.erased]
    rows.append([option(ctx.t("people.add"), Button.ADD_PERSON)])
    rows.append([option(ctx.t("people.my_data"), Button.MY_DATA),
                 option(ctx.t("people.link"), Button.LINK)])
    key = "people.list" if len(rows) > 2 else "people.list_empty"
    return [ctx.reply(key, *rows, back_to_menu(ctx), limit=ctx.centre.accounts.people_per_account)]


async def _view(ctx: Ctx) -> PersonView | None:
    chosen = ctx.data.get("person")
    return None if chosen is None else await details.view_of(ctx, int(chosen))


def _person_text(ctx: Ctx, view: PersonView) -> str:
    return ctx.t("people.person", name=view.name or "*", mobile=view.mobile or "-",
                 id=view.id_number or ctx.t("booking.no_id"),
                 relation=ctx.t(f"people.relation_{view.relation.value}") if view.relation else "-",
                 consent=view.consent_version or "-",
                 consented=when_text(ctx, view.consented_at) if view.consented_at else "-")


async def person(ctx: Ctx, event: Event) -> list[Reply]:
    """Show one person, masked, with remove and withdraw-consent."""
    view = await _view(ctx)
    if view is None:
        return await ctx.enter(People.LIST)
    button = event.button
    if button is Button.BACK:
        return await ctx.enter(People.LIST)
    if button is Button.ERASE:
        return await ctx.enter(People.CONFIRM_ERASE)
    if button is Button.REMOVE:
        try:
            await accounts.remove_person(ctx.session, ctx.now, account_id=ctx.identity.id,
                                         person_id=view.person_id)
        except AccountRefused as refused:
            if refused.reason == AccountRefusal.UPCOMING_BOOKINGS:
                return [ctx.reply("people.remove_upcoming", count=refused.details.get("count", "")),
                        *await ctx.enter(People.LIST)]
            return [ctx.reply("core.stale"), *await ctx.enter(People.LIST)]
        ctx.forget("person")
        return [ctx.reply("people.removed", name=view.name), *await ctx.enter(People.LIST)]
    return [Reply(_person_text(ctx, view),
                  ((option(ctx.t("people.remove"), Button.REMOVE),),
                   (option(ctx.t("people.erase"), Button.ERASE),),
                   (option(ctx.t("common.back"), Button.BACK),)))]


async def confirm_erase(ctx: Ctx, event: Event) -> list[Reply]:
    """Explain what withdrawing consent does, and do it only after an explicit yes."""
    view = await _view(ctx)
    if view is None:
        return await ctx.enter(People.LIST)
    if event.button is Button.NO:
        return await ctx.enter(People.PERSON)
    if event.button is not Button.YES:
        return [ctx.reply("people.erase_explain", [option(ctx.t("people.erase_yes"), Button.YES)],
                          [option(ctx.t("people.erase_no"), Button.NO)], name=view.name)]
    try:
        erased = await accounts.erase_person(ctx.session, ctx.now, account_id=ctx.identity.id,
                                             person_id=view.person_id)
    except AccountRefused as refused:
        if refused.reason == AccountRefusal.UPCOMING_BOOKINGS:
            return [ctx.reply("people.erase_upcoming", count=refused.details.get("count", "")),
                    *await ctx.enter(People.PERSON)]
        return [ctx.reply("core.stale"), *await ctx.enter(People.LIST)]
    ctx.forget("person")
    # Why a record is kept speaks of other accounts: the citizen is told only that it is.
    key = "people.erased" if erased.anonymised else "people.erased_kept"
    return [ctx.reply(key, name=view.name, count=erased.detached_bookings),
            *await ctx.enter(People.LIST)]


async def _added(ctx: Ctx, given: Given) -> list[Reply]:
    """A person was added from 我的办事人: say so and show the list."""
    if given.person is None:  # details of nobody added (not reached: adding asks a relation)
        return await ctx.enter(People.LIST)
    view = await details.view_of(ctx, given.person.id)
    ctx.forget("asking", "name", "mobile")
    return [ctx.reply("people.added", name=view.name if view else "*"),
            *await ctx.enter(People.LIST)]


async def _back_to_list(ctx: Ctx, event: Event) -> list[Reply]:
    """Back from adding a person: the list again."""
    return await ctx.enter(People.LIST)


# --- 我的信息 -----------------------------------------------------------------------------------


async def my_data_command(ctx: Ctx, args: str) -> list[Reply]:
    """Show what is kept about the account and its people (我的信息)."""
    return await ctx.enter(People.MY_DATA)


async def my_data(ctx: Ctx, event: Event) -> list[Reply]:
    """What is kept, masked, with a way to withdraw consent for each person."""
    if (picked := event.pick(PersonPick)) is not None:
        return await ctx.enter(People.CONFIRM_ERASE, person=picked.person)
    if event.button is Button.BACK:
        return await ctx.enter(People.LIST)
    data = await accounts.my_data(ctx.session, account_id=ctx.identity.id)
    people = "\n".join(f"• {_person_text(ctx, view)}".replace("\n", "；")
                       for view in data.people if not view.erased) or ctx.t("people.none")
    linked = "\n".join(ctx.t("people.linked_line", channel=ctx.t(f"people.channel_{each.channel}"),
                             user=each.user, since=when_text(ctx, each.linked_at))
                       for each in data.linked) or ctx.t("people.none")
    bookings = "，".join(f"{ctx.t(f'status.{status}')} {count}"
                        for status, count in sorted(data.bookings.items())) or "0"
    text = ctx.t("people.my_data_text", channel=ctx.t(f"people.channel_{data.channel}"),
                 user=data.user, since=when_text(ctx, data.since), people=people, linked=linked,
                 bookings=bookings)
    rows = [[option(ctx.t("people.erase_who", name=view.name or "*"), PersonPick(view.person_id))]
            for view in data.people if not view.erased]
    rows.append([option(ctx.t("common.back"), Button.BACK), *back_to_menu(ctx)])
    return [ctx.reply("people.my_data_wrap", *rows, text=text)]


# --- 绑定 ----------------------------------------------------------------------------------------


async def link_command(ctx: Ctx, args: str) -> list[Reply]:
    """Offer the ways to link this account (绑定)."""
    return await ctx.enter(People.LINK)


async def link(ctx: Ctx, event: Event) -> list[Reply]:
    """Show the linked accounts (to unlink) and the ways to link."""
    button = event.button
    if button is Button.LINK_SHOW:
        challenge = await OneTimeCode(ctx.centre).challenge(ctx.session, ctx.now,
                                                            account_id=ctx.identity.id)
        return [ctx.reply("people.link_code", [option(ctx.t("common.back"), Button.BACK)],
                          code=challenge.code, minutes=ctx.centre.accounts.link_code_minutes,
                          until=when_text(ctx, challenge.expires_at))]
    if button is Button.LINK_CODE:
        return await ctx.enter(People.LINK_CODE)
    if button is Button.LINK_ATTACH:
        return await ctx.enter(People.ATTACH_CODE)
    if button is Button.LINK_SMS and ctx.centre.sms.enabled:
        return await ctx.enter(People.SMS_PERSON)
    if button is Button.BACK:
        return await ctx.enter(People.LIST)
    if (unlinking := event.pick(Unlink)) is not None:
        try:
            await unlink_accounts(ctx.session, ctx.now, account_id=ctx.identity.id,
                                  other_id=unlinking.account)
        except AccountRefused:
            return [ctx.reply("core.stale"), *await ctx.enter(People.LINK)]
        await _tell(ctx, unlinking.account, UNLINK_NOTICE)
        return [ctx.reply("people.unlinked"), *await ctx.enter(People.LINK)]
    linked = await accounts.linked_accounts(ctx.session, account_id=ctx.identity.id)
    rows = [[option(ctx.t("people.unlink", channel=ctx.t(f"people.channel_{each.channel}"),
                          user=each.user), Unlink(each.account_id))] for each in linked]
    rows.append([option(ctx.t("people.link_show"), Button.LINK_SHOW)])
    rows.append([option(ctx.t("people.link_enter"), Button.LINK_CODE)])
    rows.append([option(ctx.t("people.link_attach"), Button.LINK_ATTACH)])
    if ctx.centre.sms.enabled:
        rows.append([option(ctx.t("people.link_sms"), Button.LINK_SMS)])
    rows.append([option(ctx.t("common.back"), Button.BACK), *back_to_menu(ctx)])
    return [ctx.reply("people.link_intro", *rows)]


async def _tell(ctx: Ctx, account_id: int, kind: str) -> None:
    """Tell the other account of a link or unlink (through the outbox, in its own language)."""
    await outbox.enqueue(ctx.session, kind=kind, now=ctx.now, identity_id=account_id,
                         dedup_key=f"{kind}:{ctx.identity.id}:{account_id}:{ctx.now.isoformat()}",
                         payload={"channel": ctx.identity.channel.value,
                                  "user": "…" + ctx.identity.platform_user_id[-4:]})


def _proof_refused(ctx: Ctx, refused: AccountRefused) -> Reply:
    if refused.reason == AccountRefusal.LOCKED:
        return ctx.reply("people.proof_locked", until=when_text(ctx, refused.details["until"]))
    if refused.reason == AccountRefusal.OWN_CODE:
        return ctx.reply("people.own_code")
    if refused.reason == AccountRefusal.NOT_ATTACHABLE:
        return ctx.reply("people.not_attachable")
    if refused.reason == AccountRefusal.SMS_UNAVAILABLE:
        return ctx.reply("people.sms_unavailable")
    if refused.reason == AccountRefusal.TOO_MANY_CODES:
        return ctx.reply("people.too_many_codes", until=when_text(ctx, refused.details["until"]))
    if refused.reason == AccountRefusal.PEOPLE_LIMIT:
        return ctx.reply("people.limit", limit=refused.details.get("limit", ""))
    if refused.reason == AccountRefusal.SELF_TAKEN:
        return ctx.reply("booking.people_limit", limit=refused.details.get("limit", ""))
    return ctx.reply("people.wrong_answer", left=refused.details.get("tries_left", ""))


def _again(ctx: Ctx, refused: AccountRefused) -> bool:
    """Whether to ask again (a wrong answer with tries left) or stop."""
    return refused.reason == AccountRefusal.WRONG_ANSWER


async def link_code(ctx: Ctx, event: Event) -> list[Reply]:
    """Take the 6-digit code shown in the other account; both accounts are told."""
    if not event.is_text:
        return [ctx.reply("people.ask_link_code")]
    try:
        other = await link_with(ctx.session, ctx.now, OneTimeCode(ctx.centre),
                                account_id=ctx.identity.id, answer=event.value)
    except AccountRefused as refused:
        if _again(ctx, refused):
            return [_proof_refused(ctx, refused)]
        ctx.end()
        return [_proof_refused(ctx, refused), main_menu(ctx)]
    await _tell(ctx, other.account_id, LINK_NOTICE)
    ctx.end()
    return [ctx.reply("people.linked", channel=ctx.t(f"people.channel_{other.channel}"),
                      user=other.user), main_menu(ctx)]


async def attach_code(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask the booking code of a booking made at the window or by phone."""
    if not event.is_text:
        return [ctx.reply("people.ask_attach_code")]
    code = event.value.strip().upper()
    if not code.isascii() or not code.isalnum() or len(code) > 12:
        return [ctx.reply("people.ask_attach_code")]
    return await ctx.enter(People.ATTACH_TAIL, code=code)


async def attach_tail(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask the last 6 characters of the person's ID number, then attach the booking."""
    if not event.is_text:
        return [ctx.reply("people.ask_attach_tail")]
    try:
        appointment = await attach_staff_booking(ctx.session, ctx.centre, ctx.now,
                                                 account_id=ctx.identity.id,
                                                 code=str(ctx.data.get("code", "")),
                                                 id_tail=event.value)
    except AccountRefused as refused:
        if _again(ctx, refused):
            return [_proof_refused(ctx, refused), *await ctx.enter(People.ATTACH_CODE)]
        ctx.end()
        return [_proof_refused(ctx, refused), main_menu(ctx)]
    ctx.end()
    return [ctx.reply("people.attached", code=appointment.code), main_menu(ctx)]


async def sms_person(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask which of the account's people the SMS code is for (it goes to the mobile on file),
    or offer to find someone not on the list by name and ID number."""
    ctx.forget("relation", "name")
    if event.button is Button.BACK:
        return await ctx.enter(People.LINK)
    if event.button is Button.SMS_BY_ID:
        return await ctx.enter(People.SMS_RELATION)
    if (picked := event.pick(PersonPick)) is not None:
        try:
            challenge = await SmsCode(ctx.centre).challenge(
                ctx.session, ctx.now, account_id=ctx.identity.id, person_id=picked.person)
        except AccountRefused as refused:
            ctx.end()
            return [_proof_refused(ctx, refused), main_menu(ctx)]
        return await ctx.enter(People.SMS_CODE, minutes=ctx.centre.sms.code_minutes,
                               sent_to=challenge.sent_to)
    people = await details.usable_people(ctx)
    rows = [[option(person_label(ctx, view), PersonPick(person.id))] for person, view in people]
    rows.append([option(ctx.t("people.sms_by_id"), Button.SMS_BY_ID)])
    rows.append([option(ctx.t("common.back"), Button.BACK)])
    return [ctx.reply("people.sms_pick", *rows)]


async def sms_relation(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask who the person to be found is to the holder, with the holder's authorisation."""
    if event.button is Button.BACK:
        return await ctx.enter(People.SMS_PERSON)
    if (picked := event.pick(RelationPick)) is not None:
        return await ctx.enter(People.SMS_NAME, relation=picked.relation.value)
    held = await accounts.people_of(ctx.session, account_id=ctx.identity.id)
    has_self = any(view.relation == Relation.SELF for view in held)
    choices = [option(ctx.t(f"people.relation_{each.value}"), RelationPick(each))
               for each in Relation if not (each == Relation.SELF and has_self)]
    rows = [choices[i:i + 3] for i in range(0, len(choices), 3)]
    return [ctx.reply("people.sms_ask_relation", *rows,
                      [option(ctx.t("common.back"), Button.BACK)])]


async def sms_name(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask the person's real name, as registered at the window."""
    if not event.is_text:
        return [ctx.reply("people.sms_ask_name")]
    try:
        value = validate_name(event.value)
    except InvalidValue as bad:
        return [ctx.reply(f"invalid.{bad.code}")]
    return await ctx.enter(People.SMS_ID, name=value)


async def sms_id(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask the person's ID number; a code goes to the mobile on file only when the name and
    the number match a record that has one, but the answer is the same either way and the
    conversation goes on to the code (a wrong one counts towards the proof lock)."""
    if not event.is_text:
        return [ctx.reply("people.sms_ask_id")]
    try:
        number = validate_id_number(event.value, ctx.today)
    except InvalidValue as bad:
        return [ctx.reply(f"invalid.{bad.code}")]
    try:
        await SmsCode(ctx.centre).challenge_by_id(
            ctx.session, ctx.now, account_id=ctx.identity.id, name=str(ctx.data.get("name", "")),
            id_number=number)
    except AccountRefused as refused:
        ctx.end()
        return [_proof_refused(ctx, refused), main_menu(ctx)]
    ctx.forget("name")
    return await ctx.enter(People.SMS_CODE, minutes=ctx.centre.sms.code_minutes, sent_to="")


async def sms_code(ctx: Ctx, event: Event) -> list[Reply]:
    """Take the code sent by SMS: the person's staff-made bookings still to come become the
    account's."""
    if not event.is_text:
        if not ctx.data.get("sent_to"):           # found by name and ID number: nothing told
            return [ctx.reply("people.sms_by_id_sent", minutes=ctx.data.get("minutes", ""))]
        return [ctx.reply("people.sms_sent", minutes=ctx.data.get("minutes", ""),
                          mobile=ctx.data.get("sent_to"))]
    sms = SmsCode(ctx.centre)
    try:
        proof = await sms.verify(ctx.session, ctx.now, account_id=ctx.identity.id, answer=event.value)
        held = await details.view_of(ctx, proof.person_id)
        chosen = ctx.data.get("relation")     # asked before a person found by ID number
        attached = await claim_person(
            ctx.session, ctx.centre, ctx.now, proof,
            relation=Relation(chosen) if chosen else
            held.relation if held and held.relation else Relation.OTHER,
            consent_version=held.consent_version if held and held.consent_version
            else details.CONSENT_VERSION)
    except AccountRefused as refused:
        if _again(ctx, refused):
            return [_proof_refused(ctx, refused)]
        ctx.end()
        return [_proof_refused(ctx, refused), main_menu(ctx)]
    ctx.end()
    return [ctx.reply("people.sms_done", count=len(attached)), main_menu(ctx)]


FLOW = Flow(
    "people",
    steps={People.LIST: listing, People.PERSON: person, People.CONFIRM_ERASE: confirm_erase,
           People.MY_DATA: my_data, People.LINK: link, People.LINK_CODE: link_code,
           People.ATTACH_CODE: attach_code, People.ATTACH_TAIL: attach_tail,
           People.SMS_PERSON: sms_person, People.SMS_CODE: sms_code,
           People.SMS_RELATION: sms_relation, People.SMS_NAME: sms_name, People.SMS_ID: sms_id,
           **details.steps(_added), Details.IDENTITY: _back_to_list},
    text_steps=details.TEXT_STEPS | {People.LINK_CODE, People.ATTACH_CODE, People.ATTACH_TAIL,
                                     People.SMS_CODE, People.SMS_NAME, People.SMS_ID},
    commands={"people": people_command, "mydata": my_data_command, "link": link_command})
