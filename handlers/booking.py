"""Booking: department → service → materials (一次性告知) → date → slot (seat held) →
real-name details → summary → confirm → booking code and calendar file.

The same date and slot steps serve rescheduling (``mode = "reschedule"``).
Diagram: docs/flows/booking.mmd.
"""

from __future__ import annotations

import datetime as dt

from handlers import home_visit
from handlers.context import Ctx, Event, option
from handlers.core import ConsentRequest, Reply
from handlers.i18n import format_day, format_time
from handlers.menu import active_services, back_to_menu, departments, main_menu, service_name
from handlers.render import appointment_text, calendar_file, notice_text, slot_label, when_text
from storage import booking as ops
from storage.booking import BookingRefused, Refusal
from storage.catalog import ServiceDef
from storage.identity import (
    InvalidValue,
    NameMismatch,
    PersonDetails,
    age_on,
    find_or_create_person,
    mask_mobile,
    mask_name,
    validate_id_number,
    validate_mobile,
    validate_name,
)
from storage.models import Appointment, Channel, Department, Person, Service, WaitKind
from storage.rules import can_change
from storage.slots import DayState, availability

FLOW = "booking"
TEXT_STEPS = ("name", "mobile", "id_number")
SHOWN_DAYS = 7


# --- lookups ----------------------------------------------------------------------------------


async def _service(ctx: Ctx) -> tuple[Service, ServiceDef] | None:
    service = await ctx.session.get(Service, ctx.data.get("service"))
    if service is None or not service.active:
        return None
    return service, ServiceDef.from_json(service.definition)


async def _department(ctx: Ctx, service: Service) -> Department | None:
    return await ctx.session.get(Department, service.department_id)


async def _person(ctx: Ctx) -> Person | None:
    if ctx.identity.person_id is None:
        return None
    return await ctx.session.get(Person, ctx.identity.person_id)


def _lost(ctx: Ctx) -> list[Reply]:
    ctx.end()
    return [ctx.reply("booking.lost"), main_menu(ctx)]


# --- department and service -------------------------------------------------------------------


async def start(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask which department, or go straight to the services when there is only one."""
    ctx.goto(FLOW, "department")
    return await department(ctx, Event("enter"))


async def department(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask which department (or centre) the citizen needs."""
    if event.kind == "choice" and event.value.startswith("dep:"):
        ctx.goto(FLOW, "service", department=int(event.value[4:]))
        return await service(ctx, Event("enter"))
    found = await departments(ctx)
    if len(found) == 1:
        ctx.goto(FLOW, "service", department=found[0].id)
        return await service(ctx, Event("enter"))
    rows = [[option(d.name_en if ctx.locale == "en" else d.name_zh, f"dep:{d.id}")] for d in found]
    return [ctx.reply("booking.pick_department", *rows, back_to_menu(ctx), edit=event.kind == "choice")]


async def service(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask which service of the department."""
    if event.kind == "choice" and event.value.startswith("svc:"):
        ctx.goto(FLOW, "notice", service=int(event.value[4:]))
        return await notice(ctx, Event("enter"))
    if event.value == "back":
        ctx.goto(FLOW, "department")
        return await department(ctx, Event("enter"))
    found = await active_services(ctx, ctx.data.get("department"))
    rows = [[option(service_name(ctx, s), f"svc:{s.id}")] for s in found]
    return [ctx.reply("booking.pick_service", *rows,
                      [option(ctx.t("common.back"), "back"), *back_to_menu(ctx)])]


async def show_search(ctx: Ctx, found: list[Service]) -> list[Reply]:
    """Offer the services a free-text search found."""
    ctx.goto(FLOW, "service", department=None)
    rows = [[option(service_name(ctx, s), f"svc:{s.id}")] for s in found]
    return [ctx.reply("booking.search_results", *rows, back_to_menu(ctx), count=len(found))]


# --- the one-time notice (一次性告知) ------------------------------------------------------------


async def notice(ctx: Ctx, event: Event) -> list[Reply]:
    """Show every material to bring, once, before a slot is picked."""
    found = await _service(ctx)
    if found is None:
        return _lost(ctx)
    row, definition = found
    if event.value == "ready":
        ctx.goto(FLOW, "date")
        return await date(ctx, Event("enter"))
    if event.value == "home":
        return await home_visit.start(ctx, row.id)
    if event.value == "back":
        ctx.goto(FLOW, "service")
        return await service(ctx, Event("enter"))
    buttons = [[option(ctx.t("booking.materials_ready"), "ready")]]
    if definition.home_visit.offered:
        buttons.append([option(ctx.t("booking.home_visit"), "home")])
    buttons.append([option(ctx.t("common.back"), "back"), *back_to_menu(ctx)])
    return [ctx.reply("booking.notice", *buttons, text=notice_text(ctx, definition))]


# --- date and slot ----------------------------------------------------------------------------


def _day_label(ctx: Ctx, view) -> str:  # type: ignore[no-untyped-def]
    label = format_day(view.day, ctx.locale)
    if view.state == DayState.OPEN:
        label += ctx.t("booking.day_open", left=view.remaining)
    elif view.state == DayState.FULL:
        label += ctx.t("booking.day_full")
    elif view.state == DayState.NOT_RELEASED:
        label += ctx.t("booking.day_opens", when=when_text(ctx, view.opens_at))
    if view.provisional:
        label += ctx.t("booking.provisional_mark")
    return label


async def date(ctx: Ctx, event: Event) -> list[Reply]:
    """Offer the next working days with seats left; full days offer the waitlist."""
    found = await _service(ctx)
    if found is None:
        return _lost(ctx)
    row, definition = found
    if event.kind == "choice":
        kind, _, value = event.value.partition(":")
        if kind == "day":
            ctx.goto(FLOW, "slot", day=value)
            return await slot(ctx, Event("enter"))
        if kind in ("full", "rel"):
            ctx.goto(FLOW, "waitlist", day=value, wait=WaitKind.SEAT.value if kind == "full"
                     else WaitKind.RELEASE.value, slot_id=None)
            return await waitlist(ctx, Event("enter"))
        if kind == "back":
            if ctx.data.get("mode") == "reschedule":
                from handlers import my_bookings
                return await my_bookings.start(ctx, Event("enter"))
            ctx.goto(FLOW, "notice")
            return await notice(ctx, Event("enter"))
    views = await availability(ctx.session, ctx.centre, row, ctx.now, SHOWN_DAYS)
    rows = []
    provisional = False
    for view in views:
        provisional |= view.provisional
        if view.state == DayState.OPEN:
            rows.append([option(_day_label(ctx, view), f"day:{view.day.isoformat()}")])
        elif view.state == DayState.FULL:
            rows.append([option(_day_label(ctx, view), f"full:{view.day.isoformat()}")])
        elif view.state == DayState.NOT_RELEASED:
            rows.append([option(_day_label(ctx, view), f"rel:{view.day.isoformat()}")])
    key = "booking.pick_date" if rows else "booking.no_dates"
    text = ctx.t(key, service=definition.name.get(ctx.locale))
    if provisional:
        text += "\n" + ctx.t("booking.provisional_note")
    return [Reply(text, (*tuple(tuple(r) for r in rows), (option(ctx.t("common.back"), "back:"), *back_to_menu(ctx))))]


async def slot(ctx: Ctx, event: Event) -> list[Reply]:
    """Offer the time slots of the chosen day with seats left; picking one holds a seat."""
    found = await _service(ctx)
    if found is None:
        return _lost(ctx)
    row, definition = found
    day = dt.date.fromisoformat(ctx.data["day"])
    if event.kind == "choice":
        kind, _, value = event.value.partition(":")
        if kind == "slot":
            return await _hold(ctx, int(value))
        if kind == "wait":
            ctx.goto(FLOW, "waitlist", wait=WaitKind.SEAT.value, slot_id=int(value))
            return await waitlist(ctx, Event("enter"))
        if kind == "back":
            ctx.goto(FLOW, "date")
            return await date(ctx, Event("enter"))
    views = await availability(ctx.session, ctx.centre, row, ctx.now, SHOWN_DAYS)
    view = next((v for v in views if v.day == day), None)
    if view is None or view.state not in (DayState.OPEN, DayState.FULL):
        ctx.goto(FLOW, "date")
        return [ctx.reply("booking.day_gone"), *await date(ctx, Event("enter"))]
    rows = []
    for s in view.slots:
        if not s.bookable:
            continue
        label = slot_label(ctx, s.starts_at, s.ends_at)
        if s.remaining:
            rows.append(option(label + ctx.t("booking.slot_left", left=s.remaining), f"slot:{s.slot_id}"))
        else:
            rows.append(option(label + ctx.t("booking.slot_full"), f"wait:{s.slot_id}"))
    grid = [rows[i:i + 2] for i in range(0, len(rows), 2)]
    return [ctx.reply("booking.pick_slot", *grid, [option(ctx.t("common.back"), "back:")],
                      day=format_day(day, ctx.locale), service=definition.name.get(ctx.locale))]


async def _hold(ctx: Ctx, slot_id: int) -> list[Reply]:
    try:
        held = await ops.hold_seat(ctx.session, ctx.centre, ctx.now, owner=ctx.owner, slot_id=slot_id)
    except BookingRefused as refused:
        return await refusal(ctx, refused)
    ctx.goto(FLOW, "identity" if ctx.data.get("mode") != "reschedule" else "summary",
             slot_id=slot_id, hold_until=held.expires_at.isoformat())
    note = ctx.reply("booking.held", until=format_time(ctx.local(held.expires_at)),
                     minutes=int((held.expires_at - ctx.now).total_seconds() // 60))
    if ctx.data.get("mode") == "reschedule":
        return [note, *await summary(ctx, Event("enter"))]
    return [note, *await identity(ctx, Event("enter"))]


async def waitlist(ctx: Ctx, event: Event) -> list[Reply]:
    """Offer to tell the citizen when a seat frees up (or when the day is released)."""
    found = await _service(ctx)
    if found is None:
        return _lost(ctx)
    row, _ = found
    day = dt.date.fromisoformat(ctx.data["day"])
    kind = WaitKind(ctx.data.get("wait", WaitKind.SEAT.value))
    if event.value == "join":
        try:
            await ops.join_waitlist(ctx.session, ctx.centre, ctx.now, identity_id=ctx.identity.id,
                                    service_id=row.id, day=day, slot_id=ctx.data.get("slot_id"),
                                    kind=kind)
        except BookingRefused as refused:
            return await refusal(ctx, refused)
        ctx.end()
        return [ctx.reply("booking.waitlist_joined" if kind == WaitKind.SEAT else "booking.release_watch",
                          day=format_day(day, ctx.locale)), main_menu(ctx)]
    if event.value == "back":
        ctx.goto(FLOW, "date")
        return await date(ctx, Event("enter"))
    key = "booking.waitlist_offer" if kind == WaitKind.SEAT else "booking.release_offer"
    return [ctx.reply(key, [option(ctx.t("booking.notify_me"), "join")],
                      [option(ctx.t("common.back"), "back")], day=format_day(day, ctx.locale),
                      minutes=ctx.centre.rules.hold_minutes)]


# --- real-name details ------------------------------------------------------------------------


async def identity(ctx: Ctx, event: Event) -> list[Reply]:
    """Offer the saved details (masked) or ask for them, after the personal-data notice."""
    found = await _service(ctx)
    if found is None:
        return _lost(ctx)
    _, definition = found
    person = await _person(ctx)
    if event.value == "use" and person is not None:
        if definition.id_required and not person.id_hash:
            ctx.goto(FLOW, "id_number", name=person.name, mobile=person.mobile)
            return [ctx.reply("booking.ask_id")]
        ctx.goto(FLOW, "summary", person=person.id)
        return await summary(ctx, Event("enter"))
    if event.value in ("change", "agree") and (event.value == "change" or person is None):
        ctx.goto(FLOW, "name")
        return [ctx.reply("booking.ask_name")]
    if event.value == "disagree":
        return await _abandon(ctx, "booking.consent_declined")
    if person is not None:
        saved = ctx.t("booking.saved_details", name=mask_name(person.name),
                      mobile=mask_mobile(person.mobile), id=person.id_masked or ctx.t("booking.no_id"))
        return [Reply(saved, ((option(ctx.t("booking.use_saved"), "use"),
                               option(ctx.t("booking.change_details"), "change")),))]
    ctx.goto(FLOW, "identity")
    return [ctx.reply("booking.consent", [option(ctx.t("booking.agree"), "agree")],
                      [option(ctx.t("booking.disagree"), "disagree")])]


async def name(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask for the real name; re-ask with the precise problem."""
    if event.is_enter:
        return [ctx.reply("booking.ask_name")]
    try:
        value = validate_name(event.value)
    except InvalidValue as bad:
        return [ctx.reply(f"invalid.{bad.code}")]
    ctx.goto(FLOW, "mobile", name=value)
    return [ctx.reply("booking.ask_mobile")]


async def mobile(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask for the mainland mobile number; re-ask with the precise problem."""
    if event.is_enter:
        return [ctx.reply("booking.ask_mobile")]
    try:
        value = validate_mobile(event.value)
    except InvalidValue as bad:
        return [ctx.reply(f"invalid.{bad.code}")]
    found = await _service(ctx)
    if found is None:
        return _lost(ctx)
    ctx.remember(mobile=value)
    if found[1].id_required:
        ctx.goto(FLOW, "id_number")
        return [ctx.reply("booking.ask_id")]
    return await _save_person(ctx, PersonDetails(ctx.data["name"], value), None)


async def id_number(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask for the resident ID number; it is checked, hashed and masked, never kept."""
    if event.is_enter:
        return [ctx.reply("booking.ask_id")]
    try:
        value = validate_id_number(event.value, ctx.today)
    except InvalidValue as bad:
        return [ctx.reply(f"invalid.{bad.code}")]
    details = PersonDetails(ctx.data["name"], ctx.data["mobile"], value)
    born = details.birth_date
    return await _save_person(ctx, details, age_on(born, ctx.today) if born else None)


async def _save_person(ctx: Ctx, details: PersonDetails, age: int | None) -> list[Reply]:
    try:
        person = await find_or_create_person(ctx.session, details, ctx.centre.hasher, ctx.now,
                                             account_id=ctx.identity.id)
    except NameMismatch:
        return await _abandon(ctx, "invalid.name_mismatch")
    ctx.identity.person_id = person.id
    ctx.forget("name", "mobile")
    ctx.goto(FLOW, "summary", person=person.id, age=age)
    return await summary(ctx, Event("enter"))


# --- summary and confirmation -----------------------------------------------------------------


async def summary(ctx: Ctx, event: Event) -> list[Reply]:
    """Show what will be booked and ask for confirmation."""
    found = await _service(ctx)
    if found is None:
        return _lost(ctx)
    row, definition = found
    if event.value == "confirm":
        return await _confirm(ctx, row, definition)
    if event.value == "time":
        await ops.release_holds(ctx.session, ctx.owner)
        ctx.goto(FLOW, "date")
        return await date(ctx, Event("enter"))
    if event.value == "cancel":
        return await _abandon(ctx, "core.cancelled")
    try:
        info = await ops.slot_info(ctx.session, ctx.data["slot_id"])
    except BookingRefused:
        return _lost(ctx)
    start = ctx.local(info.slot.starts_at)
    if ctx.data.get("mode") == "reschedule":
        appointment = await ctx.session.get(Appointment, ctx.data["appointment"])
        if appointment is None:
            return _lost(ctx)
        text = ctx.t("booking.reschedule_summary", code=appointment.code,
                     old=when_text(ctx, appointment.starts_at),
                     new=f"{format_day(start.date(), ctx.locale)} "
                         f"{slot_label(ctx, info.slot.starts_at, info.slot.ends_at)}")
    else:
        person = await _person(ctx)
        if person is None:
            ctx.goto(FLOW, "identity")
            return await identity(ctx, Event("enter"))
        text = ctx.t("booking.summary", service=definition.name.get(ctx.locale),
                     day=format_day(start.date(), ctx.locale),
                     time=slot_label(ctx, info.slot.starts_at, info.slot.ends_at),
                     place=definition.place.get(ctx.locale), name=mask_name(person.name),
                     mobile=mask_mobile(person.mobile), id=person.id_masked or ctx.t("booking.no_id"))
    decision = can_change(info.slot.starts_at, ctx.now, ctx.centre.policy(definition),
                          ctx.centre.calendar, ctx.centre.tz)
    if not decision.allowed:
        text += "\n" + ctx.t("booking.no_changes_after", deadline=when_text(ctx, decision.deadline))
    return [Reply(text, ((option(ctx.t("booking.confirm"), "confirm"),),
                         (option(ctx.t("booking.other_time"), "time"),
                          option(ctx.t("common.cancel"), "cancel"))))]


async def _confirm(ctx: Ctx, row: Service, definition: ServiceDef) -> list[Reply]:
    slot_id = int(ctx.data["slot_id"])
    try:
        if ctx.data.get("mode") == "reschedule":
            result = await ops.reschedule(ctx.session, ctx.centre, ctx.now, int(ctx.data["appointment"]),
                                          slot_id, actor=ctx.actor, owner=ctx.owner)
            appointment = result.appointment
            key = "booking.rescheduled"
        else:
            appointment = await ops.book(
                ctx.session, ctx.centre, ctx.now, person_id=int(ctx.data["person"]), slot_id=slot_id,
                identity_id=ctx.identity.id, channel=Channel(ctx.incoming.channel)
                if ctx.incoming.channel in Channel._value2member_map_ else Channel.TERMINAL,
                made_by=ctx.actor, owner=ctx.owner, age=ctx.data.get("age"), confirm=False)
            key = "booking.booked"
    except BookingRefused as refused:
        return await refusal(ctx, refused)
    department_row = await _department(ctx, row)
    ctx.end()
    details = appointment_text(ctx, appointment, definition, department_row)
    text = ctx.t(key, details=details) + "\n\n" + ctx.t("booking.bring", materials="\n".join(
        f"• {m.name.get(ctx.locale)}" for m in definition.materials)) + "\n" + ctx.t(
        "booking.arrive_early", grace=ctx.centre.policy(definition).no_show_grace_minutes)
    return [Reply(text, attachment=calendar_file(ctx, appointment, definition, department_row),
                  consent=ConsentRequest(ctx.t("booking.remind_link"), appointment.id)),
            main_menu(ctx)]


async def _abandon(ctx: Ctx, key: str) -> list[Reply]:
    await ops.release_holds(ctx.session, ctx.owner)
    ctx.end()
    return [ctx.reply(key), main_menu(ctx)]


# --- refusals ---------------------------------------------------------------------------------


async def refusal(ctx: Ctx, refused: BookingRefused) -> list[Reply]:
    """Explain why the rules said no, and offer the way forward (never a dead end)."""
    details = refused.details
    reason = refused.reason
    if reason == Refusal.FULL:
        alternatives = details.get("alternatives") or []
        held_before = ctx.data.get("hold_until")
        key = "refusal.full_after_hold" if held_before and dt.datetime.fromisoformat(held_before) <= ctx.now \
            else "refusal.full"
        ctx.goto(FLOW, "slot", day=ctx.data.get("day"))
        if ctx.data.get("day") is None and alternatives:
            ctx.remember(day=alternatives[0].local_date.isoformat())
        rows = [[option(f"{format_day(a.local_date, ctx.locale)} {slot_label(ctx, a.starts_at, a.ends_at)}"
                        + ctx.t("booking.slot_left", left=a.remaining), f"slot:{a.slot_id}")]
                for a in alternatives]
        rows.append([option(ctx.t("booking.other_day"), "back:")])
        return [ctx.reply(key if alternatives else "refusal.full_no_alternative", *rows)]
    await ops.release_holds(ctx.session, ctx.owner)
    values: dict[str, object] = {}
    if "until" in details:
        values["until"] = when_text(ctx, details["until"])
    if "opens_at" in details:
        values["when"] = when_text(ctx, details["opens_at"])
    if "deadline" in details:
        values["deadline"] = when_text(ctx, details["deadline"])
    if "closed_at" in details:
        values["when"] = when_text(ctx, details["closed_at"])
    values["code"] = details.get("code", "")
    values["limit"] = details.get("limit", "")
    values["strikes"] = details.get("strikes", "")
    ctx.end()
    return [ctx.reply(f"refusal.{reason.value}", **values), main_menu(ctx)]


STEPS = {
    "department": department,
    "service": service,
    "notice": notice,
    "date": date,
    "slot": slot,
    "waitlist": waitlist,
    "identity": identity,
    "name": name,
    "mobile": mobile,
    "id_number": id_number,
    "summary": summary,
}
