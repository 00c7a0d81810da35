"""At the window: today's list, finding a booking, check-in, completion, no-shows, undoing a
mark, and the blocked citizens (listed masked, lifted with a reason)."""

from __future__ import annotations

import datetime as dt
import re

from handlers.context import Ctx
from handlers.core import Reply
from handlers.i18n import format_day
from handlers.menu import unmatched_text
from handlers.render import when_text
from handlers.staff.cases import offer as case_offer
from handlers.staff.people import booked_by_text
from handlers.staff.replies import appointment_line, booking_refusal, done_line
from storage import attendance, blocks, services
from storage.booking import appointment_by_code, person_of_code
from storage.identity import InvalidValue, mask_mobile, mask_name, validate_mobile
from storage.models import Person
from storage.refusals import BookingRefused

FOUND_LIMIT = 10
FOUND_DAYS = 30
_CODE = re.compile(r"^[2-9A-HJ-NP-Z]{6}$")


def _is_code(text: str) -> bool:
    return bool(_CODE.match(text.upper()))


async def today(ctx: Ctx, args: str) -> list[Reply]:
    """List today's appointments by time with their status, optionally of one service or
    department (named as in every staff command)."""
    ids, label = None, ctx.t("staff.all_services")
    if args.strip():
        matched = await services.match_service(ctx.session, args)
        if matched.found is None:
            return [Reply(unmatched_text(ctx, matched))]
        ids = await services.service_ids_of(ctx.session, matched.found)
        label = matched.found.name_en if ctx.locale == "en" else matched.found.name_zh
    rows = await attendance.appointments_on(ctx.session, ctx.today, ids)
    day = format_day(ctx.today, ctx.locale)
    if not rows:
        return [ctx.reply("staff.today_none", day=day, service=label)]
    lines = [appointment_line(ctx, a, p, s) for a, p, s in rows]
    return [ctx.reply("staff.today_head", day=day, count=len(rows), service=label,
                      lines="\n".join(lines))]


async def find(ctx: Ctx, args: str) -> list[Reply]:
    """Find bookings by booking code or mobile number (shown masked)."""
    if not args:
        return [ctx.reply("staff.find_usage")]
    if _is_code(args):
        rows = await attendance.appointments_with_code(ctx.session, args)
        if not rows:
            return [ctx.reply("staff.refused_unknown_code", code=args.upper())]
    else:
        try:
            mobile = validate_mobile(args)
        except InvalidValue:
            return [ctx.reply("staff.find_usage")]
        rows = await attendance.appointments_of_mobile(
            ctx.session, mobile, ctx.now - dt.timedelta(days=FOUND_DAYS), FOUND_LIMIT)
        if not rows:
            return [ctx.reply("staff.find_none", mobile=mask_mobile(mobile))]
    # Who booked: the booking account's channel, masked, and for whom (the accounts model).
    lines = [appointment_line(ctx, a, p, s, day=True) + await booked_by_text(ctx, a)
             for a, p, s in rows]
    return [ctx.reply("staff.find_head", count=len(rows), lines="\n".join(lines))]


async def blocked(ctx: Ctx, args: str) -> list[Reply]:
    """List the citizens blocked from booking now (masked), with when the block ends."""
    rows = await blocks.current_blocks(ctx.session, ctx.now)
    if not rows:
        return [ctx.reply("staff.blocks_none")]
    lines = [ctx.t("staff.block_line", name=mask_name(p.name), mobile=mask_mobile(p.mobile),
                   until=when_text(ctx, b.ends_at), strikes=b.strikes) for b, p in rows]
    return [ctx.reply("staff.blocks_head", count=len(rows), lines="\n".join(lines))]


async def checkin(ctx: Ctx, args: str) -> list[Reply]:
    """Check a citizen in by booking code, optionally checking the ID's last 4 characters."""
    code, _, last4 = args.partition(" ")
    if not code:
        return [ctx.reply("staff.usage_checkin")]
    try:
        appointment = await attendance.check_in(ctx.session, ctx.centre, ctx.now, code,
                                                actor=ctx.actor, id_last4=last4.strip() or None)
    except BookingRefused as refused:
        return [booking_refusal(ctx, refused, code)]
    return [await done_line(ctx, "staff.checked_in", appointment)]


async def done(ctx: Ctx, args: str) -> list[Reply]:
    """Mark a checked-in appointment of today served; the citizen is asked to rate it; then
    offer to open its case (办件)."""
    if not args:
        return [ctx.reply("staff.usage_done")]
    try:
        appointment = await attendance.complete(ctx.session, ctx.centre, ctx.now, args.split()[0],
                                                actor=ctx.actor)
    except BookingRefused as refused:
        return [booking_refusal(ctx, refused, args)]
    return [await done_line(ctx, "staff.completed", appointment),
            *await case_offer(ctx, appointment)]


async def noshow(ctx: Ctx, args: str) -> list[Reply]:
    """Mark a citizen who did not come once the grace period is over; it counts as a strike."""
    if not args:
        return [ctx.reply("staff.usage_noshow")]
    code = args.split()[0]
    try:
        outcome = await attendance.mark_no_show(ctx.session, ctx.centre, ctx.now, code,
                                                actor=ctx.actor)
    except BookingRefused as refused:
        return [booking_refusal(ctx, refused, code)]
    line = await done_line(ctx, "staff.marked_no_show", await appointment_by_code(ctx.session, code))
    if outcome.blocked_until is not None:
        return [line, ctx.reply("staff.now_blocked", count=outcome.count,
                                until=when_text(ctx, outcome.blocked_until))]
    return [line, ctx.reply("staff.strike_count", count=outcome.count)]


async def undo(ctx: Ctx, args: str) -> list[Reply]:
    """Undo the last window mark of an appointment (audited, with an optional reason); a
    citizen who was told of the mark is told it was withdrawn."""
    code, _, reason = args.partition(" ")
    if not code:
        return [ctx.reply("staff.usage_undo")]
    try:
        appointment = await attendance.undo(ctx.session, ctx.centre, ctx.now, code,
                                            actor=ctx.actor, reason=reason.strip() or None)
    except BookingRefused as refused:
        return [booking_refusal(ctx, refused, code)]
    return [await done_line(ctx, "staff.undone", appointment)]


async def _people(ctx: Ctx, who: str) -> list[Person] | None:
    """The person of a booking code, or the people with a mobile; None when it is neither."""
    if _is_code(who):
        person = await person_of_code(ctx.session, who)
        return [person] if person else []
    try:
        mobile = validate_mobile(who)
    except InvalidValue:
        return None
    return await blocks.people_with_mobile(ctx.session, mobile)


async def unblock(ctx: Ctx, args: str) -> list[Reply]:
    """Lift the block of a citizen named by booking code or mobile; a reason is required."""
    who, _, reason = args.partition(" ")
    if not who:
        return [ctx.reply("staff.usage_unblock")]
    people = await _people(ctx, who)
    if people is None:
        return [ctx.reply("staff.usage_unblock")]
    if not people:
        return [ctx.reply("staff.refused_unknown_code", code=who.upper())]
    if not reason.strip():
        return [ctx.reply("staff.refused_reason_required")]
    lifted = []
    for person in people:
        try:
            await blocks.lift_block(ctx.session, ctx.now, person.id, actor=ctx.actor, reason=reason)
        except BookingRefused:
            continue
        lifted.append(person)
    if not lifted:
        return [ctx.reply("staff.refused_not_blocked")]
    return [ctx.reply("staff.unblocked", names=", ".join(
        f"{mask_name(p.name)} {mask_mobile(p.mobile)}" for p in lifted))]
