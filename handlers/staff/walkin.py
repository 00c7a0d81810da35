"""Booking for a walk-in or a phone caller (代办): the booking flow in walk-in mode, from the
seats the catalog keeps for the window (capacity - online share). This module holds what
differs from a citizen's booking: staff's words, the window's seats, and booking them for
someone else. Diagram: docs/flows/staff_book.mmd."""

from __future__ import annotations

import datetime as dt

from handlers.context import Ctx, option
from handlers.core import Reply
from handlers.i18n import format_day
from handlers.menu import service_name
from handlers.payloads import Button, DayPick, ServicePick, SlotPick
from handlers.render import slot_label
from handlers.staff.replies import booking_refusal, done_line
from handlers.steps import Booking, BookingMode
from storage import booking
from storage.identity import mask_mobile, mask_name
from storage.models import Channel, Person, Service, Slot
from storage.refusals import BookingRefused
from storage.seats import window_seats_left, window_slots

SHOWN_DAYS = 7


def _cancel_row(ctx: Ctx) -> list:  # type: ignore[type-arg]
    return [option(ctx.t("common.cancel"), Button.STOP)]


async def walk_in(ctx: Ctx, args: str) -> list[Reply]:
    """Start a booking for a walk-in or phone caller: which service."""
    return await ctx.enter(Booking.SERVICE, mode=BookingMode.WALK_IN.value)


def pick_service(ctx: Ctx, services: list[Service]) -> Reply:
    """Ask which service the citizen needs."""
    rows = [[option(service_name(ctx, s), ServicePick(s.id))] for s in services]
    return ctx.reply("staff.walkin_service", *rows, _cancel_row(ctx))


async def pick_day(ctx: Ctx, service: Service) -> Reply:
    """Offer the next working days with window seats left."""
    days = ctx.centre.calendar.working_days_from(ctx.today, SHOWN_DAYS)
    free: dict[dt.date, int] = {}
    for slot in await window_slots(ctx.session, ctx.centre, service, days, ctx.now):
        free[slot.local_date] = free.get(slot.local_date, 0) + window_seats_left(slot)
    rows = [[option(ctx.t("staff.walkin_day", day=format_day(day, ctx.locale), left=left),
                    DayPick(day))] for day, left in sorted(free.items())]
    key = "staff.walkin_pick_day" if rows else "staff.walkin_no_days"
    return ctx.reply(key, *rows, _cancel_row(ctx), service=service_name(ctx, service))


async def pick_slot(ctx: Ctx, service: Service, day: dt.date) -> Reply:
    """Offer the slots of the day with window seats left."""
    slots = await window_slots(ctx.session, ctx.centre, service, [day], ctx.now)
    buttons = [option(slot_label(ctx, s.starts_at, s.ends_at)
                      + ctx.t("staff.walkin_left", left=window_seats_left(s)), SlotPick(s.id))
               for s in slots]
    rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
    return ctx.reply("staff.walkin_pick_slot", *rows, _cancel_row(ctx),
                     day=format_day(day, ctx.locale), service=service_name(ctx, service))


def summary(ctx: Ctx, service: Service, person: Person, slot: Slot) -> Reply:
    """Show what will be booked, to confirm."""
    start = ctx.local(slot.starts_at)
    return ctx.reply("staff.walkin_summary", [option(ctx.t("staff.walkin_yes"), Button.YES),
                                              option(ctx.t("common.cancel"), Button.STOP)],
                     service=service_name(ctx, service), day=format_day(start.date(), ctx.locale),
                     time=slot_label(ctx, slot.starts_at, slot.ends_at),
                     name=mask_name(person.name), mobile=mask_mobile(person.mobile),
                     id=person.id_masked or "-")


async def book(ctx: Ctx, person: Person, slot: Slot) -> list[Reply]:
    """Book it from the window's seats, made by the staff member."""
    # A citizen who also uses the bot gets reminders there; a walk-in without one does not.
    identity_id = await booking.reachable_identity(ctx.session, person.id)
    try:
        appointment = await booking.book(ctx.session, ctx.centre, ctx.now, person_id=person.id,
                                         slot_id=slot.id, identity_id=identity_id,
                                         channel=Channel.STAFF, made_by=ctx.actor, offline=True,
                                         attached=identity_id is not None)
    except BookingRefused as refused:
        ctx.end()
        return [booking_refusal(ctx, refused)]
    ctx.end()
    line = await done_line(ctx, "staff.walkin_booked", appointment)
    note = "staff.walkin_reminders" if identity_id else "staff.walkin_no_reminders"
    return [line, ctx.reply(note, code=appointment.code)]
