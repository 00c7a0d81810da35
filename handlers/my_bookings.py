"""My bookings: upcoming and recent appointments, cancel (with confirmation), reschedule, and
the waitlist; also the cancel and reschedule buttons of notifications. Diagram:
docs/flows/my_bookings.mmd.
"""

from __future__ import annotations

import datetime as dt

from handlers.booking import refusal
from handlers.closure_offers import waiting_offer_replies
from handlers.context import Ctx, Event, option
from handlers.core import Reply
from handlers.flow import Flow
from handlers.i18n import format_day, format_time
from handlers.menu import back_to_menu, main_menu, service_name
from handlers.payloads import AppointmentPick, Button, CancelBooking, LeaveWaitlist, Main, RescheduleBooking
from handlers.render import appointment_text, materials_text, when_text
from handlers.steps import Booking, BookingMode, MyBookings
from storage import accounts, booking, waitlist
from storage.catalog import ServiceDef
from storage.models import Appointment, AppointmentStatus, Department, Service
from storage.refusals import BookingRefused
from storage.rules import can_change
from storage.seats import release_holds

RECENT_DAYS = 30


async def _service_of(ctx: Ctx, appointment: Appointment) -> tuple[Service, ServiceDef]:
    service = await ctx.session.get(Service, appointment.service_id)
    assert service is not None  # appointment.service_id is a foreign key
    return service, ServiceDef.from_json(service.definition)


async def my(ctx: Ctx, args: str) -> list[Reply]:
    """List the citizen's appointments (a seat held before is given back)."""
    await release_holds(ctx.session, ctx.actor)
    return await ctx.enter(MyBookings.LIST)


async def listing(ctx: Ctx, event: Event) -> list[Reply]:
    """List the citizen's upcoming and recent appointments and their waitlist places; a pick
    opens one appointment or leaves a waitlist."""
    if (picked := event.pick(AppointmentPick)) is not None:
        return await ctx.enter(MyBookings.DETAIL, appointment=picked.appointment)
    if (leaving := event.pick(LeaveWaitlist)) is not None:
        left = await waitlist.leave_waitlist(ctx.session, ctx.centre, ctx.now, leaving.entry,
                                             ctx.identity.id)
        return [ctx.reply("my.left_waitlist" if left else "core.stale"),
                *await ctx.enter(MyBookings.LIST)]
    # Only what this account made (or an account linked to it by proof): whose ID number was
    # typed plays no part.
    groups = await accounts.visible_bookings(ctx.session, account_id=ctx.identity.id,
                                             since=ctx.now - dt.timedelta(days=RECENT_DAYS),
                                             limit=20)
    appointments = [appointment for group in groups for appointment in group.appointments]
    waiting = await waitlist.waiting_entries(ctx.session, ctx.identity.id)
    if not appointments and not waiting:
        ctx.end()
        return [ctx.reply("my.none"), main_menu(ctx)]
    # An offer waiting for an answer (替诊, 换诊, a staff /move) comes first, with its buttons
    # (a WeChat template sent while the chat window was closed says to answer here).
    offers = await waiting_offer_replies(ctx, [a.id for a in appointments
                                               if a.status == AppointmentStatus.BOOKED])
    people = [option(ctx.t("people.menu"), Main("people"))]
    rows = []
    for appointment in appointments:
        _, definition = await _service_of(ctx, appointment)
        start = ctx.local(appointment.starts_at)
        label = ctx.t("my.item", day=format_day(start.date(), ctx.locale), time=format_time(start),
                      service=definition.name.get(ctx.locale),
                      status=ctx.t(f"status.{appointment.status.value}"))
        rows.append([option(label, AppointmentPick(appointment.id))])
    for entry in waiting:
        service = await ctx.session.get(Service, entry.service_id)
        name = service_name(ctx, service) if service else "?"
        rows.append([option(ctx.t("my.waiting_item", day=format_day(entry.local_date, ctx.locale),
                                  service=name), LeaveWaitlist(entry.id))])
    listing = ctx.reply("my.list", *rows, people, back_to_menu(ctx))
    if not offers:
        return [listing]
    # One menu per answer: the offers' buttons go above the list's.
    return [Reply("\n\n".join([*(o.text for o in offers), listing.text]),
                  tuple(row for o in offers for row in o.choices) + listing.choices)]


async def detail(ctx: Ctx, event: Event) -> list[Reply]:
    """Show one appointment with cancel and reschedule while they are allowed."""
    chosen = ctx.data.get("appointment")
    appointment = None if chosen is None else await accounts.appointment_for(
        ctx.session, account_id=ctx.identity.id, appointment_id=int(chosen))
    if appointment is None:
        return await ctx.enter(MyBookings.LIST)
    service, definition = await _service_of(ctx, appointment)
    button = event.button
    if button is Button.CANCEL:
        return await _ask_cancel(ctx, appointment, definition)
    if button is Button.RESCHEDULE:
        return await _reschedule(ctx, appointment, definition)
    if button is Button.BACK:
        return await ctx.enter(MyBookings.LIST)
    department = await ctx.session.get(Department, service.department_id)
    text = appointment_text(ctx, appointment, definition, department)
    rows = []
    if appointment.status == AppointmentStatus.BOOKED:
        text += "\n\n" + ctx.t("my.materials", materials=materials_text(ctx, definition))
        rows.append([option(ctx.t("my.cancel"), Button.CANCEL),
                     option(ctx.t("my.reschedule"), Button.RESCHEDULE)])
    rows.append([option(ctx.t("common.back"), Button.BACK)])
    return [Reply(text, tuple(tuple(r) for r in rows))]


def _change_refused(ctx: Ctx, appointment: Appointment, definition: ServiceDef) -> Reply | None:
    decision = can_change(appointment.starts_at, ctx.now, ctx.centre.policy(definition),
                          ctx.centre.calendar, ctx.centre.tz)
    if decision.allowed:
        return None
    return ctx.reply("my.cutoff_passed", deadline=when_text(ctx, decision.deadline),
                     rule=_rule_text(ctx, definition))


def _rule_text(ctx: Ctx, definition: ServiceDef) -> str:
    cutoff = ctx.centre.policy(definition).cancel_cutoff
    if cutoff.working_days:
        return ctx.t("my.rule_working_days", days=cutoff.working_days)
    return ctx.t("my.rule_hours", hours=round(cutoff.delta.total_seconds() / 3600, 1))


async def _ask_cancel(ctx: Ctx, appointment: Appointment, definition: ServiceDef) -> list[Reply]:
    refused = _change_refused(ctx, appointment, definition)
    if refused is not None:
        return [refused, main_menu(ctx)]
    decision = can_change(appointment.starts_at, ctx.now, ctx.centre.policy(definition),
                          ctx.centre.calendar, ctx.centre.tz)
    ctx.goto(MyBookings.CONFIRM_CANCEL, appointment=appointment.id)
    key = "my.confirm_cancel_late" if decision.late else "my.confirm_cancel"
    return [ctx.reply(key, [option(ctx.t("my.yes_cancel"), Button.YES),
                            option(ctx.t("my.no_keep"), Button.NO)],
                      code=appointment.code, when=when_text(ctx, appointment.starts_at))]


async def confirm_cancel(ctx: Ctx, event: Event) -> list[Reply]:
    """Cancel only after an explicit yes."""
    if event.button is not Button.YES:
        return [ctx.reply("my.kept"), *await ctx.enter(MyBookings.DETAIL)]
    if await accounts.appointment_for(ctx.session, account_id=ctx.identity.id,
                                      appointment_id=int(ctx.data["appointment"]), lock=True) is None:
        ctx.end()
        return [ctx.reply("core.stale"), main_menu(ctx)]
    try:
        result = await booking.cancel(ctx.session, ctx.centre, ctx.now, int(ctx.data["appointment"]),
                                      actor=ctx.actor)
    except BookingRefused as refused:
        return await refusal(ctx, refused)
    ctx.end()
    replies = [ctx.reply("my.cancelled", code=result.appointment.code)]
    if result.strike is not None:
        replies.append(ctx.reply("my.cancelled_strike", count=result.strike.count))
    return [*replies, main_menu(ctx)]


async def _reschedule(ctx: Ctx, appointment: Appointment, definition: ServiceDef) -> list[Reply]:
    refused = _change_refused(ctx, appointment, definition)
    if refused is not None:
        return [refused, main_menu(ctx)]
    intro = ctx.reply("my.reschedule_intro", code=appointment.code)
    return [intro, *await ctx.enter(Booking.DATE, mode=BookingMode.RESCHEDULE.value,
                                    appointment=appointment.id, service=appointment.service_id)]


async def _booked(ctx: Ctx, code: str) -> tuple[Appointment, ServiceDef] | Reply:
    """The booked appointment with this code, if this account may act on it; else why not
    (not one of its bookings, or no longer booked)."""
    appointment = await accounts.appointment_for(ctx.session, account_id=ctx.identity.id, code=code)
    if appointment is None:
        return ctx.reply("my.not_found")
    if appointment.status != AppointmentStatus.BOOKED:
        return ctx.reply("my.not_booked", code=appointment.code,
                         status=ctx.t(f"status.{appointment.status.value}"))
    return appointment, (await _service_of(ctx, appointment))[1]


async def cancel_button(ctx: Ctx, payload: CancelBooking) -> list[Reply]:
    """A notification's cancel button: ask to confirm while it is allowed, else say why (the
    reminder it sits on stays as it is)."""
    found = await _booked(ctx, payload.code)
    if isinstance(found, Reply):
        return [found, main_menu(ctx)]
    return await _ask_cancel(ctx, *found)


async def reschedule_button(ctx: Ctx, payload: RescheduleBooking) -> list[Reply]:
    """A notification's reschedule button: on to the dates while it is allowed, else say why."""
    found = await _booked(ctx, payload.code)
    if isinstance(found, Reply):
        return [found, main_menu(ctx)]
    return await _reschedule(ctx, *found)


FLOW = Flow(
    "my",
    steps={MyBookings.LIST: listing, MyBookings.DETAIL: detail,
           MyBookings.CONFIRM_CANCEL: confirm_cancel},
    commands={"my": my},
    actions={CancelBooking: cancel_button, RescheduleBooking: reschedule_button})
