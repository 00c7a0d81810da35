"""Home-visit request (上门服务) for citizens who qualify by age (from the ID number) or a
self-declared disability: who it is for (handlers/details.py), then address and preferred
times go to staff for a decision within one working day. Diagram: docs/flows/home_visit.mmd."""

from __future__ import annotations

from handlers import details
from handlers.context import Ctx, Event, option
from handlers.core import Reply
from handlers.details import Asking, Consent, Given, IdNumber
from handlers.flow import Flow
from handlers.menu import main_menu
from handlers.payloads import Button, Main
from handlers.steps import HomeVisit
from storage import accounts, handoffs, services
from storage.accounts import AccountRefused
from storage.catalog import ServiceDef
from storage.identity import NameMismatch
from storage.privacy import mask_text
from storage.rules import home_visit_eligible

_GROUNDS = {Button.AGE: "age", Button.DISABILITY: "disability"}


async def _definition(ctx: Ctx) -> ServiceDef | None:
    found = await services.active_service(ctx.session, ctx.data.get("service"))
    return found[1] if found else None


def _min_age(ctx: Ctx, definition: ServiceDef) -> int:
    return definition.home_visit.min_age or ctx.centre.policy(definition).home_visit_min_age


async def reason(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask on what ground the citizen asks: age (checked from the ID number) or a
    self-declared disability."""
    definition = await _definition(ctx)
    if definition is None:
        ctx.end()
        return [main_menu(ctx)]
    ground = _GROUNDS.get(event.button) if event.button else None
    if ground is not None:
        ctx.remember(ground=ground)
        # The age comes from the ID number, so it is asked even when one is on file; a new
        # person is always asked for it.
        needed = ground == "age" or definition.id_required or not await accounts.people_of(
            ctx.session, account_id=ctx.identity.id)
        return await details.ask(ctx, Asking(id_number=IdNumber.ASK if needed else IdNumber.NOT_NEEDED,
                                             id_prompt="home.ask_id", consent=Consent.NOTICE,
                                             choose_saved=False))
    rows = [[option(ctx.t("home.by_age", age=_min_age(ctx, definition)), Button.AGE)]]
    if definition.home_visit.disability:
        rows.append([option(ctx.t("home.by_disability"), Button.DISABILITY)])
    rows.append([option(ctx.t("common.cancel"), Main("menu"))])
    note = definition.home_visit.note.get(ctx.locale) if definition.home_visit.note else ""
    return [ctx.reply("home.intro", *rows, note=note)]


async def _given(ctx: Ctx, given: Given) -> list[Reply]:
    """The details are in: check eligibility, keep the person, ask for the address."""
    definition = await _definition(ctx)
    if definition is None:
        ctx.end()
        return [main_menu(ctx)]
    ground = home_visit_eligible(given.age, ctx.data.get("ground") == "disability", definition,
                                 ctx.centre.policy(definition))
    if ground is None:
        ctx.end()
        return [ctx.reply("home.not_eligible", age=_min_age(ctx, definition)), main_menu(ctx)]
    if given.person is not None:
        person = given.person
    else:
        assert given.details is not None
        try:
            person = await details.keep(ctx, given.details)
        except NameMismatch:
            ctx.end()
            return [ctx.reply("invalid.name_mismatch"), main_menu(ctx)]
        except AccountRefused as refused:
            ctx.end()
            return [ctx.reply("booking.people_limit", limit=refused.details.get("limit", "")),
                    main_menu(ctx)]
    ctx.forget("name", "mobile")
    return await ctx.enter(HomeVisit.ADDRESS, ground=ground, age=given.age, person=person.id)


async def address(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask where the visit should take place."""
    if not event.is_text:
        return [ctx.reply("home.ask_address")]
    text = mask_text(event.value.strip())
    if not 5 <= len(text) <= 200:
        return [ctx.reply("home.bad_address")]
    return await ctx.enter(HomeVisit.TIMES, address=text)


async def times(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask for preferred times, then send the request to staff."""
    if not event.is_text:
        return [ctx.reply("home.ask_times")]
    text = mask_text(event.value.strip())
    if not 2 <= len(text) <= 200:
        return [ctx.reply("home.bad_times")]
    request = await handoffs.request_home_visit(
        ctx.session, ctx.centre, ctx.now, identity_id=ctx.identity.id,
        person_id=ctx.data.get("person"), service_id=ctx.data["service"],
        address=ctx.data["address"], preferred_times=text, ground=ctx.data["ground"],
        age=ctx.data.get("age"))
    ctx.end()
    return [ctx.reply("home.sent", number=request.id), main_menu(ctx)]


FLOW = Flow(
    "home_visit",
    steps={HomeVisit.REASON: reason, HomeVisit.ADDRESS: address, HomeVisit.TIMES: times,
           **details.steps(_given)},
    text_steps=details.TEXT_STEPS | {HomeVisit.ADDRESS, HomeVisit.TIMES})
