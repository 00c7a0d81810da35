"""My bookings: upcoming and recent appointments, cancel (with confirmation), reschedule, and
the waitlist. Also the self-contained actions offered in notifications (cancel, reschedule,
take an offered seat). Diagram: docs/flows/my_bookings.mmd.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import or_, select

from handlers import booking, rating
from handlers.context import Ctx, Event, option
from handlers.core import Reply, as_id
from handlers.i18n import format_day, format_time
from handlers.menu import back_to_menu, main_menu
from handlers.render import appointment_text, materials_text, when_text
from storage import booking as booking_ops
from storage import waitlist
from storage.catalog import ServiceDef
from storage.models import (
    Appointment,
    AppointmentStatus,
    Department,
    Hold,
    Service,
    Slot,
    WaitlistEntry,
    WaitStatus,
)
from storage.refusals import BookingRefused
from storage.rules import can_change

FLOW = "my"
TEXT_STEPS: tuple[str, ...] = ()
RECENT_DAYS = 30


async def _mine(ctx: Ctx) -> list[Appointment]:
    if ctx.identity.person_id is None:
        return []
    since = ctx.now - dt.timedelta(days=RECENT_DAYS)
    return list((await ctx.session.scalars(
        select(Appointment).where(Appointment.person_id == ctx.identity.person_id,
                                  or_(Appointment.starts_at >= since,
                                      Appointment.status == AppointmentStatus.BOOKED))
        .order_by(Appointment.starts_at.desc()).limit(20))).all())


async def _waiting(ctx: Ctx) -> list[WaitlistEntry]:
    return list((await ctx.session.scalars(select(WaitlistEntry).where(
        WaitlistEntry.identity_id == ctx.identity.id,
        WaitlistEntry.status.in_([WaitStatus.WAITING, WaitStatus.OFFERED]))
        .order_by(WaitlistEntry.local_date))).all())


async def _service_of(ctx: Ctx, appointment: Appointment) -> tuple[Service, ServiceDef]:
    service = await ctx.session.get(Service, appointment.service_id)
    assert service is not None  # appointment.service_id is a foreign key
    return service, ServiceDef.from_json(service.definition)


async def start(ctx: Ctx, event: Event) -> list[Reply]:
    """List the citizen's upcoming and recent appointments and their waitlist places."""
    ctx.goto(FLOW, "list")
    return await listing(ctx, Event("enter"))


async def listing(ctx: Ctx, event: Event) -> list[Reply]:
    """Show the list; a pick opens one appointment or waitlist entry."""
    if event.kind == "choice":
        kind, _, value = event.value.partition(":")
        if kind == "appt":
            ctx.goto(FLOW, "detail", appointment=int(value))
            return await detail(ctx, Event("enter"))
        if kind == "wait":
            left = await waitlist.leave_waitlist(ctx.session, ctx.centre, ctx.now, int(value), ctx.identity.id)
            return [ctx.reply("my.left_waitlist" if left else "core.stale"), *await listing(ctx, Event("enter"))]
    appointments = await _mine(ctx)
    waiting = await _waiting(ctx)
    if not appointments and not waiting:
        ctx.end()
        return [ctx.reply("my.none"), main_menu(ctx)]
    rows = []
    for appointment in appointments:
        _, definition = await _service_of(ctx, appointment)
        start = ctx.local(appointment.starts_at)
        label = ctx.t("my.item", day=format_day(start.date(), ctx.locale), time=format_time(start),
                      service=definition.name.get(ctx.locale),
                      status=ctx.t(f"status.{appointment.status.value}"))
        rows.append([option(label, f"appt:{appointment.id}")])
    for entry in waiting:
        service = await ctx.session.get(Service, entry.service_id)
        name = (service.name_en if ctx.locale == "en" else service.name_zh) if service else "?"
        rows.append([option(ctx.t("my.waiting_item", day=format_day(entry.local_date, ctx.locale),
                                  service=name), f"wait:{entry.id}")])
    return [ctx.reply("my.list", *rows, back_to_menu(ctx))]


async def detail(ctx: Ctx, event: Event) -> list[Reply]:
    """Show one appointment with cancel and reschedule while they are allowed."""
    appointment = await ctx.session.get(Appointment, ctx.data.get("appointment"))
    if appointment is None or appointment.person_id != ctx.identity.person_id:
        return await start(ctx, Event("enter"))
    service, definition = await _service_of(ctx, appointment)
    if event.value == "cancel":
        return await _ask_cancel(ctx, appointment, definition)
    if event.value == "resched":
        return await _reschedule(ctx, appointment, definition)
    if event.value == "back":
        return await start(ctx, Event("enter"))
    department = await ctx.session.get(Department, service.department_id)
    text = appointment_text(ctx, appointment, definition, department)
    rows = []
    if appointment.status == AppointmentStatus.BOOKED:
        text += "\n\n" + ctx.t("my.materials", materials=materials_text(ctx, definition))
        rows.append([option(ctx.t("my.cancel"), "cancel"), option(ctx.t("my.reschedule"), "resched")])
    rows.append([option(ctx.t("common.back"), "back")])
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
    ctx.goto(FLOW, "confirm_cancel", appointment=appointment.id)
    key = "my.confirm_cancel_late" if decision.late else "my.confirm_cancel"
    return [ctx.reply(key, [option(ctx.t("my.yes_cancel"), "yes"), option(ctx.t("my.no_keep"), "no")],
                      code=appointment.code, when=when_text(ctx, appointment.starts_at))]


async def confirm_cancel(ctx: Ctx, event: Event) -> list[Reply]:
    """Cancel only after an explicit yes."""
    if event.value != "yes":
        ctx.goto(FLOW, "detail")
        return [ctx.reply("my.kept"), *await detail(ctx, Event("enter"))]
    appointment_id = int(ctx.data["appointment"])
    try:
        result = await booking_ops.cancel(ctx.session, ctx.centre, ctx.now, appointment_id, actor=ctx.actor)
    except BookingRefused as refused:
        return await booking.refusal(ctx, refused)
    ctx.end()
    replies = [ctx.reply("my.cancelled", code=result.appointment.code)]
    if result.strike is not None:
        replies.append(ctx.reply("my.cancelled_strike", count=result.strike.count))
    return [*replies, main_menu(ctx)]


async def _reschedule(ctx: Ctx, appointment: Appointment, definition: ServiceDef) -> list[Reply]:
    refused = _change_refused(ctx, appointment, definition)
    if refused is not None:
        return [refused, main_menu(ctx)]
    ctx.goto(booking.FLOW, "date", mode="reschedule", appointment=appointment.id,
             service=appointment.service_id)
    return [ctx.reply("my.reschedule_intro", code=appointment.code),
            *await booking.date(ctx, Event("enter"))]


async def global_action(ctx: Ctx, payload: str) -> list[Reply]:
    """A choice offered in a notification: cancel or reschedule an appointment, take an
    offered seat. Each checks that it belongs to this citizen and is still possible."""
    action, _, value = payload.partition(":")
    if action in ("cancel", "resched"):
        appointment = await ctx.session.scalar(select(Appointment).where(Appointment.code == value))
        if appointment is None or appointment.person_id != ctx.identity.person_id \
                or appointment.status != AppointmentStatus.BOOKED:
            return [ctx.reply("core.stale"), main_menu(ctx)]
        _, definition = await _service_of(ctx, appointment)
        if action == "cancel":
            return await _ask_cancel(ctx, appointment, definition)
        return await _reschedule(ctx, appointment, definition)
    if action == "rate":
        appointment_id, _, level = value.partition(":")
        rated, stars = as_id(appointment_id), as_id(level)
        if rated is None or stars is None:
            return [ctx.reply("core.stale"), main_menu(ctx)]
        return await rating.record(ctx, rated, stars)
    if action == "rebook":
        service_id = as_id(value)
        service = await ctx.session.get(Service, service_id) if service_id is not None else None
        if service is None or not service.active:
            return [ctx.reply("core.stale"), main_menu(ctx)]
        ctx.goto(booking.FLOW, "notice", service=service.id)
        return await booking.notice(ctx, Event("enter"))
    if action == "offer":
        slot_id = as_id(value)
        if slot_id is None:
            return [ctx.reply("core.stale"), main_menu(ctx)]
        hold = await ctx.session.scalar(select(Hold).where(Hold.owner == ctx.owner,
                                                           Hold.slot_id == slot_id))
        slot = await ctx.session.get(Slot, slot_id)
        if hold is None or slot is None or hold.expires_at <= ctx.now:
            return [ctx.reply("my.offer_gone"), main_menu(ctx)]
        ctx.goto(booking.FLOW, "identity", service=slot.service_id, day=slot.local_date.isoformat(),
                 slot_id=slot.id, hold_until=hold.expires_at.isoformat())
        return [ctx.reply("my.offer_taken", until=format_time(ctx.local(hold.expires_at))),
                *await booking.identity(ctx, Event("enter"))]
    return [ctx.reply("core.stale"), main_menu(ctx)]


STEPS = {
    "list": listing,
    "detail": detail,
    "confirm_cancel": confirm_cancel,
}
