"""Booking: department → service → materials (一次性告知) → date → slot (seat held) →
who it is for and their real-name details (handlers/details.py) → summary → confirm → booking
code and calendar file.

The same steps run in three modes (``BookingMode``): a citizen booking, a citizen moving a
booking (date → slot → summary), and staff booking a walk-in or phone caller from the seats
kept for the window (service → date → slot → details → summary; handlers/staff/walkin.py says
what differs). Diagrams: docs/flows/booking.mmd, docs/flows/staff_book.mmd.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from handlers import details, doctors, elder
from handlers.context import Ctx, Event, EventKind, option
from handlers.core import ConsentRequest, Reply
from handlers.details import Asking, Given, IdNumber, Voice
from handlers.flow import Flow
from handlers.i18n import format_day, format_time
from handlers.menu import back_to_menu, department_name, leave, main_menu, service_name
from handlers.payloads import (
    AnyDoctor,
    BookAgain,
    Button,
    DayPick,
    DepartmentPick,
    DoctorPick,
    HalfDay,
    Rebook,
    ServicePick,
    SlotPick,
    TakeOffer,
    WaitForDay,
    WaitForSlot,
    WeekPick,
)
from handlers.render import appointment_text, calendar_file, notice_text, slot_label, when_text
from handlers.staff import walkin
from handlers.staff.replies import stop as stop_for_staff
from handlers.steps import Booking, BookingMode, Details, HomeVisit, MyBookings
from storage import booking, services, waitlist
from storage.accounts import AccountRefused, appointment_for
from storage.catalog import ServiceDef
from storage.identity import NameMismatch, find_or_create_person
from storage.models import Channel, Department, Person, Service, Slot, WaitKind
from storage.refusals import BookingRefused, Refusal
from storage.resources import resources_of
from storage.rules import can_change
from storage.seats import hold_of, release_holds, slot_info
from storage.slots import DayState, DayView, SlotView, availability

SHOWN_DAYS = 7
# More time slots than this are grouped 上午/下午 first (a phone screen, one WeChat reply);
# in 长辈 mode fewer (handlers/elder.py).
HALF_DAY_OVER = 8
ELDER_HALF_DAY_OVER = 4


# --- lookups ----------------------------------------------------------------------------------


def _mode(ctx: Ctx) -> BookingMode:
    return BookingMode(ctx.data.get("mode", BookingMode.BOOK))


async def _service(ctx: Ctx) -> tuple[Service, ServiceDef] | None:
    return await services.active_service(ctx.session, ctx.data.get("service"))


async def _may_book(ctx: Ctx, person_id: int | None, slot_id: int | None = None) -> BookingRefused | None:
    """Why the rules that follow the person (block, caps, the account's cap, a second booking
    that day) refuse this booking, asked as soon as the person is known, before a seat is held
    or details are asked for nothing; None when they allow it (booking checks again). Before
    the person is chosen (``person_id`` None) only the account's cap is asked."""
    if _mode(ctx) != BookingMode.BOOK or ctx.data.get("service") is None:
        return None
    try:
        await booking.check_may_book(ctx.session, ctx.centre, ctx.now, person_id=person_id,
                                     service_id=int(ctx.data["service"]),
                                     identity_id=ctx.identity.id, slot_id=slot_id)
    except BookingRefused as refused:
        return refused
    return None


def _lost(ctx: Ctx) -> list[Reply]:
    ctx.end()
    if _mode(ctx) == BookingMode.WALK_IN:
        return [ctx.reply("staff.walkin_lost")]
    return [ctx.reply("booking.lost"), main_menu(ctx)]


# --- department and service -------------------------------------------------------------------


async def book(ctx: Ctx, args: str) -> list[Reply]:
    """Start a booking (a seat held before is given back)."""
    await release_holds(ctx.session, ctx.actor)
    return await ctx.enter(Booking.DEPARTMENT)


async def department(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask which department (or centre), or go straight to its services when there is one."""
    if (picked := event.pick(DepartmentPick)) is not None:
        return await ctx.enter(Booking.SERVICE, department=picked.department)
    found = await services.menu_departments(ctx.session)
    if len(found) == 1:
        return await ctx.enter(Booking.SERVICE, department=found[0].id)
    rows = [[option(department_name(ctx, d), DepartmentPick(d.id))] for d in found]
    return [ctx.reply("booking.pick_department", *rows, back_to_menu(ctx),
                      edit=event.kind == EventKind.CHOICE)]


async def service(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask which service of the department (for a walk-in: of the centre)."""
    walk_in = _mode(ctx) == BookingMode.WALK_IN
    if (picked := event.pick(ServicePick)) is not None:
        return await ctx.enter(Booking.DATE if walk_in else Booking.NOTICE, service=picked.service)
    if walk_in:
        return [walkin.pick_service(ctx, await services.active_services(ctx.session))]
    if event.button is Button.BACK:
        return await ctx.enter(Booking.DEPARTMENT)
    found = await services.menu_services(ctx.session, ctx.data.get("department"))
    rows = [[option(service_name(ctx, s), ServicePick(s.id))] for s in found]
    return [ctx.reply("booking.pick_service", *rows,
                      [option(ctx.t("common.back"), Button.BACK), *back_to_menu(ctx)])]


async def show_search(ctx: Ctx, found: list[Service]) -> list[Reply]:
    """Offer the services a free-text search found."""
    ctx.goto(Booking.SERVICE, department=None)
    rows = [[option(service_name(ctx, s), ServicePick(s.id))] for s in found]
    return [ctx.reply("booking.search_results", *rows, back_to_menu(ctx), count=len(found))]


# --- the one-time notice (一次性告知) ------------------------------------------------------------


async def notice(ctx: Ctx, event: Event) -> list[Reply]:
    """Show every material to bring, once, before a slot is picked."""
    found = await _service(ctx)
    if found is None:
        return _lost(ctx)
    row, definition = found
    button = event.button
    if button is Button.READY:
        return await _who_then_date(ctx, definition)
    if button is Button.HOME_VISIT:
        return await ctx.enter(HomeVisit.REASON, service=row.id)
    if button is Button.BACK:
        return await ctx.enter(Booking.SERVICE)
    buttons = [[option(ctx.t("booking.materials_ready"), Button.READY)]]
    if definition.home_visit.offered:
        buttons.append([option(ctx.t("booking.home_visit"), Button.HOME_VISIT)])
    buttons.append([option(ctx.t("common.back"), Button.BACK), *back_to_menu(ctx)])
    # Which notice was shown is kept with the booking (appointments.notice_version).
    ctx.remember(notice_version=definition.notice_version)
    department_row = await ctx.session.get(Department, row.department_id)
    return [ctx.reply("booking.notice", *buttons,
                      text=notice_text(ctx, definition, department_row))]


async def _who_then_date(ctx: Ctx, definition: ServiceDef) -> list[Reply]:
    """An account that holds people is asked who it is for (为谁预约) before a doctor or a day
    is shown, so that a blocked person is told at once; one that holds nobody gives the details
    after picking a slot, as before."""
    ctx.forget("person", "age", "slot_id", "hold_until", "day")
    if _mode(ctx) == BookingMode.BOOK and await details.usable_people(ctx):
        return await details.ask(ctx, _asking(ctx, definition))
    return await ctx.enter(Booking.DOCTOR)


# --- doctor (when the service has several) ---------------------------------------------------


async def doctor(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask for 任意医生 or a named doctor (with title and introduction) when the service has
    several; a full doctor's nearest free times come back here to be picked."""
    found = await _service(ctx)
    if found is None:
        return _lost(ctx)
    row, definition = found
    if event.button is Button.BACK:
        return await ctx.enter(Booking.NOTICE)
    if (picked_slot := event.pick(SlotPick)) is not None:
        offered = await ctx.session.get(Slot, picked_slot.slot)
        if offered is None or offered.service_id != row.id:
            return _lost(ctx)
        ctx.remember(day=offered.local_date.isoformat())
        return await _hold(ctx, offered.id)
    found_doctors = await resources_of(ctx.session, row.id)
    if event.pick(AnyDoctor) is not None:
        return await ctx.enter(Booking.DATE, resource=None, doctors=True, week=None)
    if (picked := event.pick(DoctorPick)) is not None:
        if picked.resource not in {d.id for d in found_doctors}:
            return _lost(ctx)
        return await ctx.enter(Booking.DATE, resource=picked.resource, doctors=True, week=None)
    if len(found_doctors) < 2:  # nobody to choose between: the service's times
        return await ctx.enter(Booking.DATE, resource=None, doctors=False, week=None)
    return [doctors.pick_reply(ctx, definition.name.get(ctx.locale), found_doctors)]


# --- date and slot ----------------------------------------------------------------------------


def _day_label(ctx: Ctx, view: DayView) -> str:
    label = format_day(view.day, ctx.locale)
    if view.state == DayState.OPEN:
        label += ctx.t("booking.day_open", left=view.remaining)
    elif view.state == DayState.FULL:
        label += ctx.t("booking.day_full")
    elif view.state == DayState.NOT_RELEASED and view.opens_at is not None:
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
    mode = _mode(ctx)
    if (day := event.pick(DayPick)) is not None:
        return await ctx.enter(Booking.SLOT, day=day.day.isoformat(), half=None)
    if mode == BookingMode.WALK_IN:
        return [await walkin.pick_day(ctx, row)]
    if (wait := event.pick(WaitForDay)) is not None:
        return await ctx.enter(Booking.WAITLIST, day=wait.day.isoformat(), wait=wait.kind.value,
                               slot_id=None)
    if (week := event.pick(WeekPick)) is not None:
        ctx.remember(week=_monday(week.day).isoformat())
    elif event.button is Button.BACK and ctx.data.get("week"):
        ctx.remember(week=None)
    elif event.button is Button.BACK:
        if mode == BookingMode.RESCHEDULE:
            return await ctx.enter(MyBookings.LIST)
        return await ctx.enter(Booking.DOCTOR if ctx.data.get("doctors") else Booking.NOTICE)
    if (why := await _may_book(ctx, ctx.data.get("person"))) is not None:
        return await _person_refused(ctx, why)
    resource = ctx.data.get("resource")
    views = await availability(ctx.session, ctx.centre, row, ctx.now, SHOWN_DAYS, resource)
    if resource is not None and not any(v.state == DayState.OPEN for v in views):
        ctx.goto(Booking.DOCTOR)  # the chosen expert is full: nearest times, same doctor first
        return [await doctors.full_reply(ctx, row.id, int(resource))]
    shown = [v for v in views if v.state in (DayState.OPEN, DayState.FULL, DayState.NOT_RELEASED)]
    if elder.is_on(ctx) and len({_monday(v.day) for v in shown}) > 1:
        # 长辈 mode: the week first, then its days.
        if ctx.data.get("week") is None:
            return [_weeks(ctx, definition, shown)]
        views = [v for v in views if _monday(v.day).isoformat() == ctx.data["week"]]
    rows = []
    for view in views:
        if view.state == DayState.OPEN:
            rows.append([option(_day_label(ctx, view), DayPick(view.day))])
        elif view.state in (DayState.FULL, DayState.NOT_RELEASED):
            kind = WaitKind.SEAT if view.state == DayState.FULL else WaitKind.RELEASE
            rows.append([option(_day_label(ctx, view), WaitForDay(kind, view.day))])
    key = "booking.pick_date" if rows else "booking.no_dates"
    text = ctx.t(key, service=definition.name.get(ctx.locale))
    if any(view.provisional for view in views):
        text += "\n" + ctx.t("booking.provisional_note")
    return [Reply(text, (*tuple(tuple(r) for r in rows),
                         (option(ctx.t("common.back"), Button.BACK), *back_to_menu(ctx))))]


async def slot(ctx: Ctx, event: Event) -> list[Reply]:
    """Offer the time slots of the chosen day with seats left; picking one holds a seat (a
    walk-in's seat is taken when it is booked)."""
    found = await _service(ctx)
    if found is None:
        return _lost(ctx)
    row, definition = found
    day = dt.date.fromisoformat(ctx.data["day"])
    if _mode(ctx) == BookingMode.WALK_IN:
        if (picked := event.pick(SlotPick)) is not None:
            ctx.remember(slot_id=picked.slot)
            return await details.ask(ctx, _asking(ctx, definition))
        return [await walkin.pick_slot(ctx, row, day)]
    if (picked := event.pick(SlotPick)) is not None:
        return await _hold(ctx, picked.slot)
    if (wait := event.pick(WaitForSlot)) is not None:
        return await ctx.enter(Booking.WAITLIST, wait=WaitKind.SEAT.value, slot_id=wait.slot)
    if (half := event.pick(HalfDay)) is not None:
        ctx.remember(half=half.part)
    views = await availability(ctx.session, ctx.centre, row, ctx.now, SHOWN_DAYS,
                               ctx.data.get("resource"))
    view = next((v for v in views if v.day == day), None)
    bookable = [s for s in _one_per_time(view.slots) if s.bookable] if view is not None else []
    # Grouped only when both halves have times: a choice of one is no choice.
    grouped = (len(bookable) > (ELDER_HALF_DAY_OVER if elder.is_on(ctx) else HALF_DAY_OVER)
               and len({_half_of(ctx, s.starts_at) for s in bookable}) > 1)
    if event.button is Button.BACK:
        if grouped and ctx.data.get("half"):
            ctx.remember(half=None)
        else:
            return await ctx.enter(Booking.DATE)
    if view is None or view.state not in (DayState.OPEN, DayState.FULL):
        return [ctx.reply("booking.day_gone"), *await ctx.enter(Booking.DATE)]
    values: dict[str, Any] = {"day": format_day(day, ctx.locale),
                              "service": definition.name.get(ctx.locale)}
    nav = [option(ctx.t("common.back"), Button.BACK), *back_to_menu(ctx)]
    part = ctx.data.get("half") if grouped else None
    if grouped and part is None:
        halves = []
        for name in ("am", "pm"):
            these = [s for s in bookable if _half_of(ctx, s.starts_at) == name]
            if these:
                label = ctx.t(f"words.screen.{name}", count=len(these),
                              left=sum(s.remaining for s in these))
                halves.append([option(label, HalfDay(name))])
        return [ctx.reply("words.screen.pick_half", *halves, nav, **values)]
    names = await doctors.names_by_id(ctx, row.id)
    rows = []
    for s in bookable:
        if part is not None and _half_of(ctx, s.starts_at) != part:
            continue
        label = slot_label(ctx, s.starts_at, s.ends_at)
        if s.resource_id in names:
            label = ctx.t("doctor.slot_with", time=label, name=doctors.name_text(ctx, names[s.resource_id]))
        if s.remaining:
            rows.append(option(label + ctx.t("booking.slot_left", left=s.remaining), SlotPick(s.slot_id)))
        else:
            rows.append(option(label + ctx.t("booking.slot_full"), WaitForSlot(s.slot_id)))
    grid = [rows[i:i + 2] for i in range(0, len(rows), 2)]
    return [ctx.reply("booking.pick_slot", *grid, nav, **values)]


def _monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def _weeks(ctx: Ctx, definition: ServiceDef, views: list[DayView]) -> Reply:
    """The weeks that have dates to show, each with its first and last date."""
    rows = []
    for monday in sorted({_monday(v.day) for v in views}):
        days = [v for v in views if _monday(v.day) == monday]
        rows.append([option(ctx.t("words.screen.week", first=format_day(days[0].day, ctx.locale),
                                  last=format_day(days[-1].day, ctx.locale),
                                  days=sum(v.state == DayState.OPEN for v in days)),
                            WeekPick(days[0].day))])
    return ctx.reply("words.screen.pick_week", *rows,
                     [option(ctx.t("common.back"), Button.BACK), *back_to_menu(ctx)],
                     service=definition.name.get(ctx.locale))


def _half_of(ctx: Ctx, starts_at: dt.datetime) -> str:
    """上午 ("am") before noon, local time; else 下午 ("pm")."""
    return "am" if ctx.local(starts_at).hour < 12 else "pm"


def _one_per_time(slots: tuple[SlotView, ...]) -> list[SlotView]:
    """With any doctor, one time is one button: the doctor with the most seats left at it
    (the first listed of equals)."""
    best: dict[dt.datetime, SlotView] = {}
    for s in slots:
        kept = best.get(s.starts_at)
        if kept is None or (s.bookable, s.remaining) > (kept.bookable, kept.remaining):
            best[s.starts_at] = s
    return sorted(best.values(), key=lambda s: s.starts_at)


def _asking(ctx: Ctx, definition: ServiceDef) -> Asking:
    """What booking needs to know about the person: the ID number if the service asks for it."""
    return Asking(voice=Voice.STAFF if _mode(ctx) == BookingMode.WALK_IN else Voice.CITIZEN,
                  id_number=IdNumber.IF_MISSING if definition.id_required else IdNumber.NOT_NEEDED)


async def _hold(ctx: Ctx, slot_id: int) -> list[Reply]:
    if (why := await _may_book(ctx, ctx.data.get("person"), slot_id)) is not None:
        return await _person_refused(ctx, why)
    try:
        held = await booking.hold_seat(ctx.session, ctx.centre, ctx.now, owner=ctx.actor,
                                       slot_id=slot_id)
    except BookingRefused as refused:
        return await refusal(ctx, refused)
    ctx.goto(Booking.SLOT, slot_id=slot_id, hold_until=held.expires_at.isoformat())
    note = ctx.reply("booking.held", until=format_time(ctx.local(held.expires_at)),
                     minutes=int((held.expires_at - ctx.now).total_seconds() // 60))
    if _mode(ctx) == BookingMode.RESCHEDULE or ctx.data.get("person") is not None:
        return [note, *await ctx.enter(Booking.SUMMARY)]
    return [note, *await _ask_details(ctx)]


async def _ask_details(ctx: Ctx) -> list[Reply]:
    found = await _service(ctx)
    if found is None:
        return _lost(ctx)
    return await details.ask(ctx, _asking(ctx, found[1]))


async def waitlist_step(ctx: Ctx, event: Event) -> list[Reply]:
    """Offer to tell the citizen when a seat frees up (or when the day is released); for one
    full slot, the day's other times with seats come first."""
    found = await _service(ctx)
    if found is None:
        return _lost(ctx)
    row, _ = found
    day = dt.date.fromisoformat(ctx.data["day"])
    kind = WaitKind(ctx.data.get("wait", WaitKind.SEAT.value))
    full_slot = ctx.data.get("slot_id") if kind == WaitKind.SEAT else None
    if (picked := event.pick(SlotPick)) is not None:
        return await _hold(ctx, picked.slot)
    if event.button is Button.JOIN:
        try:
            await waitlist.join_waitlist(ctx.session, ctx.centre, ctx.now, identity_id=ctx.identity.id,
                                         service_id=row.id, day=day, slot_id=ctx.data.get("slot_id"),
                                         kind=kind)
        except BookingRefused as refused:
            return await refusal(ctx, refused)
        ctx.end()
        return [ctx.reply("booking.waitlist_joined" if kind == WaitKind.SEAT else "booking.release_watch",
                          day=format_day(day, ctx.locale)), main_menu(ctx)]
    if event.button is Button.BACK:
        return await ctx.enter(Booking.SLOT if full_slot else Booking.DATE)
    if full_slot:
        return [await _full_slot(ctx, row, day, int(full_slot))]
    key = "booking.waitlist_offer" if kind == WaitKind.SEAT else "booking.release_offer"
    return [ctx.reply(key, [option(ctx.t("booking.notify_me"), Button.JOIN)],
                      [option(ctx.t("common.back"), Button.BACK)], day=format_day(day, ctx.locale),
                      minutes=ctx.centre.rules.hold_minutes)]


async def _full_slot(ctx: Ctx, row: Service, day: dt.date, slot_id: int) -> Reply:
    """One time is full, not the day: say so, offer the day's other times with seats first,
    then to be told when this one frees up."""
    full = await ctx.session.get(Slot, slot_id)
    views = await availability(ctx.session, ctx.centre, row, ctx.now, SHOWN_DAYS)
    view = next((v for v in views if v.day == day), None)
    others = [s for s in (view.slots if view else ()) if s.bookable and s.remaining
              and s.slot_id != slot_id]
    rows = [[option(slot_label(ctx, s.starts_at, s.ends_at)
                    + ctx.t("booking.slot_left", left=s.remaining), SlotPick(s.slot_id))]
            for s in others]
    return ctx.reply("booking.slot_full_others" if others else "booking.slot_full_day_too", *rows,
                     [option(ctx.t("booking.notify_me_slot"), Button.JOIN)],
                     [option(ctx.t("booking.other_times"), Button.BACK)],
                     day=format_day(day, ctx.locale), minutes=ctx.centre.rules.hold_minutes,
                     time=slot_label(ctx, full.starts_at, full.ends_at) if full else "",
                     left=sum(s.remaining for s in others))


# --- who it is for ------------------------------------------------------------------------------


async def _given(ctx: Ctx, given: Given) -> list[Reply]:
    """The details sub-flow is done: keep the person (a citizen's on their account's list of
    people; a walk-in's on nobody's) and show the summary. Typing an ID number binds the
    account to nothing it did not make: it sees only its own bookings."""
    if given.person is not None:
        if (why := await _may_book(ctx, given.person.id, ctx.data.get("slot_id"))) is not None:
            return await _person_refused(ctx, why)
        return await _chosen(ctx, given.person.id, given.age)
    assert given.details is not None
    walk_in = _mode(ctx) == BookingMode.WALK_IN
    try:
        if walk_in:
            person = await find_or_create_person(ctx.session, given.details, ctx.centre.hasher,
                                                 ctx.now)
        else:
            person = await details.keep(ctx, given.details)
    except NameMismatch:
        return await leave(ctx, "staff.walkin_name_mismatch" if walk_in else "invalid.name_mismatch")
    except AccountRefused as refused:
        await release_holds(ctx.session, ctx.actor)
        ctx.end()
        return [ctx.reply("booking.people_limit", limit=refused.details.get("limit", "")),
                main_menu(ctx)]
    ctx.forget("name", "mobile")
    if walk_in:
        return await ctx.enter(Booking.SUMMARY, person=person.id)
    if (why := await _may_book(ctx, person.id, ctx.data.get("slot_id"))) is not None:
        return await _person_refused(ctx, why)
    return await _chosen(ctx, person.id, given.age)


async def _chosen(ctx: Ctx, person_id: int, age: int | None) -> list[Reply]:
    """The person is known and may book: on to the days, or to the summary once a seat is held."""
    if ctx.data.get("slot_id") is None:
        return await ctx.enter(Booking.DOCTOR, person=person_id, age=age)
    shown = await ctx.enter(Booking.SUMMARY, person=person_id, age=age)
    if shown and (offered := elder.offer(ctx, age)):
        # Old enough by the ID number: 长辈 mode is offered once, under the summary.
        shown[0] = dataclasses.replace(shown[0], text=shown[0].text + "\n\n" + offered)
    return shown


# --- summary and confirmation -----------------------------------------------------------------


async def summary(ctx: Ctx, event: Event) -> list[Reply]:
    """Show what will be booked and ask for confirmation."""
    found = await _service(ctx)
    if found is None:
        return _lost(ctx)
    row, definition = found
    mode = _mode(ctx)
    if mode == BookingMode.WALK_IN:
        return await _walk_in_summary(ctx, event, row)
    button = event.button
    if button is Button.CONFIRM:
        return await _confirm(ctx, row, definition)
    if button is Button.OTHER_TIME:
        await release_holds(ctx.session, ctx.actor)
        return await ctx.enter(Booking.DATE)
    try:
        info = await slot_info(ctx.session, ctx.data["slot_id"])
    except BookingRefused:
        return _lost(ctx)
    start = ctx.local(info.slot.starts_at)
    if mode == BookingMode.RESCHEDULE:
        appointment = await appointment_for(ctx.session, account_id=ctx.identity.id,
                                            appointment_id=int(ctx.data["appointment"]))
        if appointment is None:
            return _lost(ctx)
        text = ctx.t("booking.reschedule_summary", code=appointment.code,
                     old=when_text(ctx, appointment.starts_at),
                     new=f"{format_day(start.date(), ctx.locale)} "
                         f"{slot_label(ctx, info.slot.starts_at, info.slot.ends_at)}")
    else:
        person_id = ctx.data.get("person")
        view = await details.view_of(ctx, int(person_id)) if person_id is not None else None
        if view is None:
            return await _ask_details(ctx)
        text = ctx.t("booking.summary", service=definition.name.get(ctx.locale),
                     day=format_day(start.date(), ctx.locale),
                     time=slot_label(ctx, info.slot.starts_at, info.slot.ends_at),
                     place=definition.place.get(ctx.locale), name=view.name,
                     mobile=view.mobile or "-", id=view.id_number or ctx.t("booking.no_id"))
    if line := await doctors.doctor_line(ctx, info.slot.resource_id):
        text += "\n" + line
    decision = can_change(info.slot.starts_at, ctx.now, ctx.centre.policy(definition),
                          ctx.centre.calendar, ctx.centre.tz)
    if not decision.allowed:
        text += "\n" + ctx.t("booking.no_changes_after", deadline=when_text(ctx, decision.deadline))
    return [Reply(text, ((option(ctx.t("booking.confirm"), Button.CONFIRM),),
                         (option(ctx.t("booking.other_time"), Button.OTHER_TIME),
                          option(ctx.t("common.cancel"), Button.STOP))))]


async def _walk_in_summary(ctx: Ctx, event: Event, service: Service) -> list[Reply]:
    person = await ctx.session.get(Person, ctx.data.get("person"))
    slot = await ctx.session.get(Slot, ctx.data.get("slot_id"))
    if person is None or slot is None:
        return _lost(ctx)
    if event.button is Button.YES:
        return await walkin.book(ctx, person, slot)
    return [walkin.summary(ctx, service, person, slot)]


async def _confirm(ctx: Ctx, row: Service, definition: ServiceDef) -> list[Reply]:
    slot_id = int(ctx.data["slot_id"])
    try:
        if _mode(ctx) == BookingMode.RESCHEDULE:
            if await appointment_for(ctx.session, account_id=ctx.identity.id,
                                     appointment_id=int(ctx.data["appointment"]), lock=True) is None:
                return _lost(ctx)
            result = await booking.reschedule(ctx.session, ctx.centre, ctx.now,
                                              int(ctx.data["appointment"]), slot_id,
                                              actor=ctx.actor, owner=ctx.actor)
            appointment = result.appointment
            key = "booking.rescheduled"
        else:
            appointment = await booking.book(
                ctx.session, ctx.centre, ctx.now, person_id=int(ctx.data["person"]), slot_id=slot_id,
                identity_id=ctx.identity.id, channel=Channel(ctx.incoming.channel)
                if ctx.incoming.channel in Channel._value2member_map_ else Channel.TERMINAL,
                made_by=ctx.actor, owner=ctx.actor, age=ctx.data.get("age"), confirm=False,
                notice_version=ctx.data.get("notice_version"))
            key = "booking.booked"
    except BookingRefused as refused:
        return await refusal(ctx, refused)
    department_row = await ctx.session.get(Department, row.department_id)
    ctx.end()
    details_text = appointment_text(ctx, appointment, definition, department_row)
    if line := await doctors.doctor_line(ctx, appointment.resource_id, "doctor.booked_line"):
        details_text += "\n" + line
    text = ctx.t(key, details=details_text) + "\n\n" + ctx.t("booking.bring", materials="\n".join(
        f"• {m.name.get(ctx.locale)}" for m in definition.materials)) + "\n" + ctx.t(
        "booking.arrive_early", grace=ctx.centre.policy(definition).no_show_grace_minutes)
    return [Reply(text, attachment=calendar_file(ctx, appointment, definition, department_row),
                  consent=ConsentRequest(ctx.t("booking.remind_link"), appointment.id,
                                         ctx.t("booking.closure_link"))),
            main_menu(ctx)]


async def cancel(ctx: Ctx) -> list[Reply]:
    """Leave the booking: a walk-in's is dropped for staff, a citizen's seat is given back."""
    if _mode(ctx) == BookingMode.WALK_IN:
        return await stop_for_staff(ctx)
    return await leave(ctx)


# --- refusals ---------------------------------------------------------------------------------


async def refusal(ctx: Ctx, refused: BookingRefused) -> list[Reply]:
    """Explain why the rules said no, and offer the way forward (never a dead end)."""
    booking_details = refused.details
    reason = refused.reason
    if reason == Refusal.FULL:
        alternatives = booking_details.get("alternatives") or []
        held_before = ctx.data.get("hold_until")
        key = "refusal.full_after_hold" if held_before and dt.datetime.fromisoformat(held_before) <= ctx.now \
            else "refusal.full"
        ctx.goto(Booking.SLOT, day=ctx.data.get("day"))
        if ctx.data.get("day") is None and alternatives:
            ctx.remember(day=alternatives[0].local_date.isoformat())
        service_id = ctx.data.get("service")
        names = await doctors.names_by_id(ctx, int(service_id)) if service_id is not None else {}
        rows = [[option(doctors.choice_label(ctx, a, names), SlotPick(a.slot_id))]
                for a in alternatives]
        rows.append([option(ctx.t("booking.other_day"), Button.BACK)])
        return [ctx.reply(key if alternatives else "refusal.full_no_alternative", *rows)]
    await release_holds(ctx.session, ctx.actor)
    reply = await _refusal_reply(ctx, refused)
    ctx.end()
    return [reply, main_menu(ctx)]


async def _refusal_reply(ctx: Ctx, refused: BookingRefused) -> Reply:
    booking_details = refused.details
    reason = refused.reason
    values: dict[str, Any] = {}
    if "until" in booking_details:
        values["until"] = when_text(ctx, booking_details["until"])
    if "opens_at" in booking_details:
        values["when"] = when_text(ctx, booking_details["opens_at"])
    if "deadline" in booking_details:
        values["deadline"] = when_text(ctx, booking_details["deadline"])
    if "closed_at" in booking_details:
        values["when"] = when_text(ctx, booking_details["closed_at"])
    values["code"] = booking_details.get("code", "")
    values["limit"] = booking_details.get("limit", "")
    values["strikes"] = booking_details.get("strikes", "")
    key = f"refusal.{reason.value}"
    if reason == Refusal.DUPLICATE and (not values["code"] or await appointment_for(
            ctx.session, account_id=ctx.identity.id, code=values["code"]) is None):
        # The person's other booking was made by another account or at the window: its code
        # is not this account's to see.
        key = "refusal.duplicate_elsewhere"
    return ctx.reply(key, **values)


# Refusals that follow the person chosen, not the account: another of its people may be chosen.
_OF_THE_PERSON = frozenset({Refusal.BLOCKED, Refusal.DUPLICATE, Refusal.CAP_ACTIVE,
                            Refusal.CAP_WEEK, Refusal.CAP_MONTH})


async def _person_refused(ctx: Ctx, refused: BookingRefused) -> list[Reply]:
    """The person just chosen may not book (blocked: why, until when, how to appeal; or a cap):
    say so at once, give back any seat held, and offer the account's people again (another of
    them may book)."""
    if refused.reason not in _OF_THE_PERSON:
        return await refusal(ctx, refused)
    await release_holds(ctx.session, ctx.actor)
    reply = await _refusal_reply(ctx, refused)
    ctx.forget("person", "age", "slot_id", "hold_until")
    return [reply, *await ctx.enter(Details.IDENTITY)]


# --- buttons in notifications -------------------------------------------------------------------


async def rebook(ctx: Ctx, payload: Rebook) -> list[Reply]:
    """Book a service again (after the centre cancelled, or a request was declined)."""
    if await services.active_service(ctx.session, payload.service) is None:
        return [ctx.reply("core.stale"), main_menu(ctx)]
    return await ctx.enter(Booking.NOTICE, service=payload.service)


async def book_again(ctx: Ctx, payload: BookAgain) -> list[Reply]:
    """Book from a notice that says the citizen may book again."""
    return await book(ctx, "")


async def take_offer(ctx: Ctx, payload: TakeOffer) -> list[Reply]:
    """Take the seat the waitlist offered, held for the citizen: on to their details."""
    hold = await hold_of(ctx.session, ctx.actor, payload.slot)
    offered = await ctx.session.get(Slot, payload.slot)
    if hold is None or offered is None or hold.expires_at <= ctx.now:
        return [ctx.reply("my.offer_gone"), main_menu(ctx)]
    ctx.goto(Booking.SLOT, service=offered.service_id, day=offered.local_date.isoformat(),
             slot_id=offered.id, hold_until=hold.expires_at.isoformat())
    return [ctx.reply("my.offer_taken", until=format_time(ctx.local(hold.expires_at))),
            *await _ask_details(ctx)]


FLOW = Flow(
    "booking",
    steps={Booking.DEPARTMENT: department, Booking.SERVICE: service, Booking.NOTICE: notice,
           Booking.DOCTOR: doctor, Booking.DATE: date, Booking.SLOT: slot, Booking.WAITLIST: waitlist_step,
           Booking.SUMMARY: summary, **details.steps(_given)},
    text_steps=details.TEXT_STEPS,
    commands={"book": book},
    actions={Rebook: rebook, TakeOffer: take_offer, BookAgain: book_again},
    cancel=cancel)
