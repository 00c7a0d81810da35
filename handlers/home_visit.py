"""Home-visit request (上门服务) for citizens who qualify by age (from the ID number) or a
self-declared disability: address and preferred times go to staff for a decision within one
working day. Diagram: docs/flows/home_visit.mmd."""

from __future__ import annotations

from handlers.context import Ctx, Event, option
from handlers.core import Reply
from handlers.menu import main_menu
from storage.catalog import ServiceDef
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
from storage.models import HomeVisitRequest, Person, RequestStatus, Service
from storage.outbox import STAFF_TARGET, enqueue
from storage.rules import home_visit_eligible, working_days_later

FLOW = "home_visit"
TEXT_STEPS = ("name", "mobile", "id_number", "address", "times")


async def _definition(ctx: Ctx) -> ServiceDef | None:
    service = await ctx.session.get(Service, ctx.data.get("service"))
    return ServiceDef.from_json(service.definition) if service and service.active else None


async def start(ctx: Ctx, service_id: int) -> list[Reply]:
    """Ask on what ground the citizen asks for a home visit."""
    ctx.goto(FLOW, "reason", service=service_id)
    return await reason(ctx, Event("enter"))


async def reason(ctx: Ctx, event: Event) -> list[Reply]:
    """Age (checked from the ID number) or a self-declared disability."""
    definition = await _definition(ctx)
    if definition is None:
        ctx.end()
        return [main_menu(ctx)]
    policy = ctx.centre.policy(definition)
    min_age = definition.home_visit.min_age or policy.home_visit_min_age
    if event.value in ("age", "disability"):
        ctx.remember(ground=event.value)
        person = await ctx.session.get(Person, ctx.identity.person_id) if ctx.identity.person_id else None
        if person is None:
            ctx.goto(FLOW, "name")
            return [ctx.reply("booking.consent_short"), ctx.reply("booking.ask_name")]
        ctx.remember(name=person.name, mobile=person.mobile)
        if event.value == "age" or definition.id_required:
            ctx.goto(FLOW, "id_number")
            return [ctx.reply("home.ask_id")]
        return await _ask_address(ctx, None)
    rows = [[option(ctx.t("home.by_age", age=min_age), "age")]]
    if definition.home_visit.disability:
        rows.append([option(ctx.t("home.by_disability"), "disability")])
    rows.append([option(ctx.t("common.cancel"), "main:menu")])
    note = definition.home_visit.note.get(ctx.locale) if definition.home_visit.note else ""
    return [ctx.reply("home.intro", *rows, note=note)]


async def name(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask for the real name."""
    try:
        ctx.remember(name=validate_name(event.value))
    except InvalidValue as bad:
        return [ctx.reply(f"invalid.{bad.code}")]
    ctx.goto(FLOW, "mobile")
    return [ctx.reply("booking.ask_mobile")]


async def mobile(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask for the mobile number."""
    try:
        ctx.remember(mobile=validate_mobile(event.value))
    except InvalidValue as bad:
        return [ctx.reply(f"invalid.{bad.code}")]
    ctx.goto(FLOW, "id_number")
    return [ctx.reply("home.ask_id")]


async def id_number(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask for the ID number: it gives the age; only its hash and masked form are kept."""
    try:
        number = validate_id_number(event.value, ctx.today)
    except InvalidValue as bad:
        return [ctx.reply(f"invalid.{bad.code}")]
    details = PersonDetails(ctx.data["name"], ctx.data["mobile"], number)
    born = details.birth_date
    return await _ask_address(ctx, details, age_on(born, ctx.today) if born else None)


async def _ask_address(ctx: Ctx, details: PersonDetails | None, age: int | None = None) -> list[Reply]:
    definition = await _definition(ctx)
    if definition is None:
        ctx.end()
        return [main_menu(ctx)]
    ground = home_visit_eligible(age, ctx.data.get("ground") == "disability", definition,
                                 ctx.centre.policy(definition))
    if ground is None:
        ctx.end()
        min_age = definition.home_visit.min_age or ctx.centre.policy(definition).home_visit_min_age
        return [ctx.reply("home.not_eligible", age=min_age), main_menu(ctx)]
    if details is None:
        details = PersonDetails(ctx.data["name"], ctx.data["mobile"])
    try:
        person = await find_or_create_person(ctx.session, details, ctx.centre.hasher, ctx.now,
                                             account_id=ctx.identity.id)
    except NameMismatch:
        ctx.end()
        return [ctx.reply("invalid.name_mismatch"), main_menu(ctx)]
    ctx.identity.person_id = person.id
    ctx.forget("name", "mobile")
    ctx.goto(FLOW, "address", ground=ground, age=age)
    return [ctx.reply("home.ask_address")]


async def address(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask where the visit should take place."""
    text = event.value.strip()
    if not 5 <= len(text) <= 200:
        return [ctx.reply("home.bad_address")]
    ctx.goto(FLOW, "times", address=text)
    return [ctx.reply("home.ask_times")]


async def times(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask for preferred times, then send the request to staff."""
    text = event.value.strip()
    if not 2 <= len(text) <= 200:
        return [ctx.reply("home.bad_times")]
    request = HomeVisitRequest(
        identity_id=ctx.identity.id, person_id=ctx.identity.person_id, service_id=ctx.data["service"],
        address=ctx.data["address"], preferred_times=text, eligibility=ctx.data["ground"],
        age=ctx.data.get("age"), status=RequestStatus.OPEN, created_at=ctx.now,
        due_at=working_days_later(ctx.now, 1, ctx.centre.calendar, ctx.centre.tz))
    ctx.session.add(request)
    await ctx.session.flush()
    await enqueue(ctx.session, kind="home_visit_alert", now=ctx.now, target=STAFF_TARGET,
                  dedup_key=f"home:{request.id}:open", payload={"request": request.id})
    ctx.end()
    return [ctx.reply("home.sent", number=request.id), main_menu(ctx)]


STEPS = {"reason": reason, "name": name, "mobile": mobile, "id_number": id_number,
         "address": address, "times": times}
