"""Staff at work: window commands, hand-off claims and replies, complaints, home-visit
decisions, closures and bookings made for walk-ins or phone callers (代办).

Staff are whoever writes in the staff group (``telegram.staff_chat_id``, followed through a
supergroup upgrade) and the accounts allow-listed in ``access.staff``/``supervisors``/
``managers`` in a private chat. Anyone else is politely refused and the attempt is logged
(command name and channel only). Diagrams: docs/flows/handoff.mmd, docs/flows/staff_book.mmd.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable

from sqlalchemy import func, or_, select

from handlers.context import Ctx, Event, option
from handlers.core import Reply, as_id
from handlers.i18n import format_day, format_time
from handlers.render import slot_label, when_text
from storage import booking as ops
from storage import handoffs
from storage.booking import BookingRefused, Refusal
from storage.catalog import ServiceDef
from storage.handoffs import StaffRefusal, StaffRefused
from storage.identity import (
    InvalidValue,
    NameMismatch,
    PersonDetails,
    find_or_create_person,
    mask_mobile,
    mask_name,
    validate_id_number,
    validate_mobile,
    validate_name,
)
from storage.models import (
    Appointment,
    Block,
    Channel,
    ChannelIdentity,
    Department,
    Handoff,
    Person,
    RequestStatus,
    Service,
    Slot,
)
from storage.reach import staff_chat_id
from storage.rules import at_local
from storage.slots import active_closures, ensure_slots, is_closed

log = logging.getLogger("yuyue.staff")

FLOW = "staff"
TEXT_STEPS = ("walkin_name", "walkin_mobile", "walkin_id", "hv_time", "hv_reason")
GLOBAL_ACTIONS = ("claim", "claimc", "hvok", "hvno")
SHOWN_DAYS = 7
FOUND_LIMIT = 10
_CODE = re.compile(r"^[2-9A-HJ-NP-Z]{6}$")
_NUMBER = re.compile(r"^#?(\d{1,9})$")
_DATE = re.compile(r"^(?:(\d{4})-)?(\d{1,2})-(\d{1,2})$")
_DATE_ZH = re.compile(r"^(?:(\d{4})年)?(\d{1,2})月(\d{1,2})[日号]$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_TIME_RANGE = re.compile(r"^(\d{1,2}:\d{2})-(\d{1,2}:\d{2})$")
_WHOLE_CENTRE = {"all", "centre", "center", "全部", "全中心", "中心"}


# --- who may ----------------------------------------------------------------------------------


async def in_staff_group(ctx: Ctx) -> bool:
    """The message came from the configured staff group (or the supergroup it became)."""
    incoming = ctx.incoming
    configured = ctx.settings.telegram.staff_chat_id
    if not (incoming.is_group and incoming.channel == Channel.TELEGRAM.value and configured):
        return False
    try:
        chat = int(incoming.chat_id)
    except ValueError:
        return False
    return chat == await staff_chat_id(ctx.session, configured)


async def is_staff(ctx: Ctx) -> bool:
    """Staff group members, and allow-listed staff, supervisors and managers anywhere."""
    access = ctx.settings.access
    if ctx.actor in (*access.staff, *access.supervisors, *access.managers):
        return True
    return await in_staff_group(ctx)


def _refuse(ctx: Ctx, what: str) -> list[Reply]:
    # Who tried is not logged (their account id is personal data); what and where is enough
    # to notice someone probing.
    log.warning("staff %s refused: not staff (%s, %s chat)", what, ctx.incoming.channel,
                "group" if ctx.incoming.is_group else "private")
    return [ctx.reply("staff.not_allowed")]


# --- entry points the engine calls --------------------------------------------------------------


async def command(ctx: Ctx, name: str, args: str) -> list[Reply] | None:
    """A staff command, or None when ``name`` is not one (a citizen command in a private chat).

    In the staff group every command is a staff command: ``/book`` books for a walk-in there.
    """
    group = await in_staff_group(ctx)
    handler = COMMANDS.get(name)
    if handler is None and name == "book" and group:
        handler = walkin
    if handler is None and group:
        handler = help_command
    if handler is None:
        return None
    if not await is_staff(ctx):
        return _refuse(ctx, f"/{name}")
    return await handler(ctx, args.strip())


async def global_action(ctx: Ctx, payload: str) -> list[Reply]:
    """A staff button on an alert: claim a hand-off or complaint, decide a home visit."""
    action, _, value = payload.partition(":")
    if not await is_staff(ctx):
        return _refuse(ctx, f"button {action}")
    number = as_id(value)
    if number is None:
        return [ctx.reply("core.stale")]
    if action == "claim":
        return await _claim(ctx, number)
    if action == "claimc":
        return await _claim_complaint(ctx, number)
    if action == "hvok":
        ctx.goto(FLOW, "hv_time", request=number)
        return [ctx.reply("staff.hv_ask_time", number=number)]
    ctx.goto(FLOW, "hv_reason", request=number)
    return [ctx.reply("staff.hv_ask_reason", number=number)]


async def group_text(ctx: Ctx, text: str) -> list[Reply]:
    """Text in the staff group that is not a command (a reply to one of the bot's messages):
    an answer to the citizen of the hand-off it is about."""
    if not await is_staff(ctx):
        return []
    explicit = re.match(r"^#(\d{1,9})\s+(.+)$", text, re.S)
    if explicit:
        return await _reply(ctx, int(explicit.group(1)), explicit.group(2))
    # A reply to the bot's relayed message: that message names its hand-off ("#12").
    answered = re.search(r"#(\d{1,9})", ctx.incoming.reply_to_text)
    if answered:
        return await _reply(ctx, int(answered.group(1)), text)
    owned = await handoffs.owned_handoffs(ctx.session, ctx.actor)
    if len(owned) == 1:
        return await _reply(ctx, owned[0].id, text)
    if not owned:
        return [ctx.reply("staff.reply_which")]
    # Guessing between two citizens could send one's answer to the other: ask instead.
    return [ctx.reply("staff.reply_ambiguous", numbers=", ".join(f"#{h.id}" for h in owned))]


# --- refusals ---------------------------------------------------------------------------------


def _booking_refusal(ctx: Ctx, refused: BookingRefused, code: str = "") -> Reply:
    details = refused.details
    values: dict[str, object] = {"code": details.get("code") or code.upper()}
    reason = refused.reason
    if reason == Refusal.WRONG_DAY:
        values["day"] = format_day(details["day"], ctx.locale)
    elif reason == Refusal.NOT_CHANGEABLE:
        if details.get("not_started"):
            return ctx.reply("staff.refused_not_started", **values)
        status = details.get("status")
        values["status"] = ctx.t(f"status.{status.value}") if status else "-"
    elif reason == Refusal.NOTHING_TO_UNDO:
        status = details.get("status")
        values["status"] = ctx.t(f"status.{status.value}") if status else "-"
    elif reason == Refusal.BLOCKED:
        values["until"] = when_text(ctx, details["until"])
    elif reason in (Refusal.UNKNOWN_CODE, Refusal.ID_MISMATCH, Refusal.NOT_BLOCKED,
                    Refusal.REASON_REQUIRED, Refusal.DUPLICATE, Refusal.FULL, Refusal.SUSPENDED,
                    Refusal.TOO_LATE, Refusal.SERVICE_INACTIVE, Refusal.BAD_RANGE):
        pass
    else:
        return ctx.reply("staff.refused_other", reason=reason.value)
    return ctx.reply(f"staff.refused_{reason.value}", **values)


def _staff_refusal(ctx: Ctx, refused: StaffRefused, kind: str) -> Reply:
    details = refused.details
    values: dict[str, object] = {"number": details.get("number", ""),
                                 "what": ctx.t(f"staff.kind_{kind}")}
    if refused.reason in (StaffRefusal.ALREADY_CLAIMED, StaffRefusal.NOT_OWNER,
                          StaffRefusal.ALREADY_DECIDED):
        values["owner"] = details.get("owner", "-")
    if refused.reason == StaffRefusal.WINDOW_CLOSED:
        last = details.get("last")
        values["last"] = when_text(ctx, last) if last else ctx.t("staff.never")
    return ctx.reply(f"staff.refused_{refused.reason.value}", **values)


def _number(args: str) -> tuple[int | None, str]:
    """The leading request number ("12" or "#12") and the rest of the arguments."""
    head, _, rest = args.strip().partition(" ")
    match = _NUMBER.match(head)
    return (int(match.group(1)) if match else None), rest.strip()


# --- lists: today, find, blocks -----------------------------------------------------------------


def _service_name(ctx: Ctx, service: Service) -> str:
    return service.name_en if ctx.locale == "en" else service.name_zh


def _line(ctx: Ctx, appointment: Appointment, person: Person, service: Service, *,
          day: bool = False) -> str:
    start = ctx.local(appointment.starts_at)
    when = f"{format_day(start.date(), ctx.locale)} {format_time(start)}" if day \
        else format_time(start)
    return ctx.t("staff.appointment_line", when=when, code=appointment.code,
                 name=mask_name(person.name), mobile=mask_mobile(person.mobile),
                 service=_service_name(ctx, service),
                 status=ctx.t(f"status.{appointment.status.value}"),
                 walkin=ctx.t("staff.walkin_mark") if appointment.offline else "")


async def today(ctx: Ctx, args: str) -> list[Reply]:
    """List today's appointments by time with their status, optionally of one service."""
    query = (select(Appointment, Person, Service)
             .join(Person, Person.id == Appointment.person_id)
             .join(Service, Service.id == Appointment.service_id)
             .where(Appointment.local_date == ctx.today).order_by(Appointment.starts_at))
    if args:
        needle = f"%{args}%"
        query = query.where(or_(Service.code == args, Service.name_zh.like(needle),
                                Service.name_en.ilike(needle)))
    rows = (await ctx.session.execute(query)).all()
    day = format_day(ctx.today, ctx.locale)
    if not rows:
        return [ctx.reply("staff.today_none", day=day, service=args or ctx.t("staff.all_services"))]
    lines = [_line(ctx, a, p, s) for a, p, s in rows]
    return [ctx.reply("staff.today_head", day=day, count=len(rows),
                      service=args or ctx.t("staff.all_services"), lines="\n".join(lines))]


async def find(ctx: Ctx, args: str) -> list[Reply]:
    """Find bookings by booking code or mobile number (shown masked)."""
    if not args:
        return [ctx.reply("staff.find_usage")]
    base = (select(Appointment, Person, Service)
            .join(Person, Person.id == Appointment.person_id)
            .join(Service, Service.id == Appointment.service_id))
    if _CODE.match(args.upper()):
        rows = (await ctx.session.execute(base.where(Appointment.code == args.upper()))).all()
        if not rows:
            return [ctx.reply("staff.refused_unknown_code", code=args.upper())]
    else:
        try:
            mobile = validate_mobile(args)
        except InvalidValue:
            return [ctx.reply("staff.find_usage")]
        since = ctx.now - dt.timedelta(days=30)
        rows = (await ctx.session.execute(
            base.where(Person.mobile == mobile, Appointment.starts_at >= since)
            .order_by(Appointment.starts_at).limit(FOUND_LIMIT))).all()
        if not rows:
            return [ctx.reply("staff.find_none", mobile=mask_mobile(mobile))]
    lines = [_line(ctx, a, p, s, day=True) for a, p, s in rows]
    return [ctx.reply("staff.find_head", count=len(rows), lines="\n".join(lines))]


async def blocks(ctx: Ctx, args: str) -> list[Reply]:
    """List the citizens blocked from booking now (masked), with when the block ends."""
    rows = (await ctx.session.execute(
        select(Block, Person).join(Person, Person.id == Block.person_id)
        .where(Block.lifted_at.is_(None), Block.starts_at <= ctx.now, Block.ends_at > ctx.now)
        .order_by(Block.ends_at))).all()
    if not rows:
        return [ctx.reply("staff.blocks_none")]
    lines = [ctx.t("staff.block_line", name=mask_name(p.name), mobile=mask_mobile(p.mobile),
                   until=when_text(ctx, b.ends_at), strikes=b.strikes) for b, p in rows]
    return [ctx.reply("staff.blocks_head", count=len(rows), lines="\n".join(lines))]


# --- at the window ----------------------------------------------------------------------------


async def checkin(ctx: Ctx, args: str) -> list[Reply]:
    """Check a citizen in by booking code, optionally checking the ID's last 4 characters."""
    code, _, last4 = args.partition(" ")
    if not code:
        return [ctx.reply("staff.usage_checkin")]
    try:
        appointment = await ops.check_in(ctx.session, ctx.centre, ctx.now, code, actor=ctx.actor,
                                         id_last4=last4.strip() or None)
    except BookingRefused as refused:
        return [_booking_refusal(ctx, refused, code)]
    return [await _done_line(ctx, "staff.checked_in", appointment)]


async def done(ctx: Ctx, args: str) -> list[Reply]:
    """Mark an appointment served; the citizen is asked to rate it."""
    if not args:
        return [ctx.reply("staff.usage_done")]
    try:
        appointment = await ops.complete(ctx.session, ctx.centre, ctx.now, args.split()[0],
                                         actor=ctx.actor)
    except BookingRefused as refused:
        return [_booking_refusal(ctx, refused, args)]
    return [await _done_line(ctx, "staff.completed", appointment)]


async def noshow(ctx: Ctx, args: str) -> list[Reply]:
    """Mark a citizen who did not come; it counts as a strike."""
    if not args:
        return [ctx.reply("staff.usage_noshow")]
    code = args.split()[0]
    try:
        outcome = await ops.mark_no_show(ctx.session, ctx.centre, ctx.now, code, actor=ctx.actor)
    except BookingRefused as refused:
        return [_booking_refusal(ctx, refused, code)]
    appointment = await ops.appointment_by_code(ctx.session, code)
    line = await _done_line(ctx, "staff.marked_no_show", appointment)
    if outcome.blocked_until is not None:
        return [line, ctx.reply("staff.now_blocked", count=outcome.count,
                                until=when_text(ctx, outcome.blocked_until))]
    return [line, ctx.reply("staff.strike_count", count=outcome.count)]


async def undo(ctx: Ctx, args: str) -> list[Reply]:
    """Undo the last window mark of an appointment (audited, with an optional reason)."""
    code, _, reason = args.partition(" ")
    if not code:
        return [ctx.reply("staff.usage_undo")]
    try:
        appointment = await ops.undo(ctx.session, ctx.centre, ctx.now, code, actor=ctx.actor,
                                     reason=reason.strip() or None)
    except BookingRefused as refused:
        return [_booking_refusal(ctx, refused, code)]
    return [await _done_line(ctx, "staff.undone", appointment)]


async def _done_line(ctx: Ctx, key: str, appointment: Appointment) -> Reply:
    person = await ctx.session.get(Person, appointment.person_id)
    service = await ctx.session.get(Service, appointment.service_id)
    assert person is not None and service is not None  # foreign keys
    return ctx.reply(key, line=_line(ctx, appointment, person, service, day=True))


async def _people(ctx: Ctx, who: str) -> list[Person] | None:
    """The person of a booking code, or the people with a mobile; None when it is neither."""
    if _CODE.match(who.upper()):
        appointment = await ctx.session.scalar(select(Appointment).where(
            Appointment.code == who.upper()))
        if appointment is None:
            return []
        person = await ctx.session.get(Person, appointment.person_id)
        return [person] if person else []
    try:
        mobile = validate_mobile(who)
    except InvalidValue:
        return None
    return list((await ctx.session.scalars(select(Person).where(Person.mobile == mobile))).all())


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
            await ops.lift_block(ctx.session, ctx.now, person.id, actor=ctx.actor, reason=reason)
        except BookingRefused:
            continue
        lifted.append(person)
    if not lifted:
        return [ctx.reply("staff.refused_not_blocked")]
    return [ctx.reply("staff.unblocked", names=", ".join(
        f"{mask_name(p.name)} {mask_mobile(p.mobile)}" for p in lifted))]


# --- hand-offs and complaints -------------------------------------------------------------------


async def _claim(ctx: Ctx, number: int) -> list[Reply]:
    try:
        handoff = await handoffs.claim_handoff(ctx.session, ctx.now, number, actor=ctx.actor,
                                               name=ctx.incoming.user_name)
    except StaffRefused as refused:
        return [_staff_refusal(ctx, refused, "handoff")]
    said = handoff.context.get("messages") or []
    return [ctx.reply("staff.claimed", number=number, owner=ctx.incoming.user_name or ctx.actor,
                      messages="\n".join(f"» {m}" for m in said) or ctx.t("staff.no_messages"))]


async def claim(ctx: Ctx, args: str) -> list[Reply]:
    """Claim a hand-off by number (the alert's button does the same)."""
    number, _ = _number(args)
    if number is None:
        return [ctx.reply("staff.usage_claim")]
    return await _claim(ctx, number)


async def _reply(ctx: Ctx, number: int, text: str) -> list[Reply]:
    try:
        await handoffs.reply_to_citizen(ctx.session, ctx.now, number, actor=ctx.actor, text=text,
                                        name=ctx.incoming.user_name,
                                        message_key=ctx.incoming.message_id)
    except StaffRefused as refused:
        return [_staff_refusal(ctx, refused, "handoff")]
    return [ctx.reply("staff.reply_sent", number=number)]


async def reply(ctx: Ctx, args: str) -> list[Reply]:
    """Answer the citizen of a hand-off: /reply N text."""
    number, text = _number(args)
    if number is None or not text:
        return [ctx.reply("staff.usage_reply")]
    return await _reply(ctx, number, text)


async def close(ctx: Ctx, args: str) -> list[Reply]:
    """Close a hand-off with a summary: /close N summary."""
    number, summary = _number(args)
    if number is None:
        return [ctx.reply("staff.usage_close")]
    try:
        await handoffs.close_handoff(ctx.session, ctx.now, number, actor=ctx.actor,
                                     summary=summary, name=ctx.incoming.user_name)
    except StaffRefused as refused:
        if refused.reason == StaffRefusal.TEXT_REQUIRED:
            return [ctx.reply("staff.usage_close")]
        return [_staff_refusal(ctx, refused, "handoff")]
    return [ctx.reply("staff.closed", number=number)]


async def _claim_complaint(ctx: Ctx, number: int) -> list[Reply]:
    try:
        await handoffs.claim_complaint(ctx.session, ctx.now, number, actor=ctx.actor,
                                       name=ctx.incoming.user_name)
    except StaffRefused as refused:
        return [_staff_refusal(ctx, refused, "complaint")]
    return [ctx.reply("staff.complaint_claimed", number=number,
                      owner=ctx.incoming.user_name or ctx.actor)]


async def claim_complaint(ctx: Ctx, args: str) -> list[Reply]:
    """Take responsibility for a complaint: /claimc N."""
    number, _ = _number(args)
    if number is None:
        return [ctx.reply("staff.usage_claimc")]
    return await _claim_complaint(ctx, number)


async def answer(ctx: Ctx, args: str) -> list[Reply]:
    """Answer the citizen of a complaint: /answer N text."""
    number, text = _number(args)
    if number is None or not text:
        return [ctx.reply("staff.usage_answer")]
    try:
        await handoffs.answer_complaint(ctx.session, ctx.now, number, actor=ctx.actor, text=text,
                                        name=ctx.incoming.user_name,
                                        message_key=ctx.incoming.message_id)
    except StaffRefused as refused:
        return [_staff_refusal(ctx, refused, "complaint")]
    return [ctx.reply("staff.complaint_answered", number=number)]


async def resolve(ctx: Ctx, args: str) -> list[Reply]:
    """Close a complaint with its outcome, which the citizen is told: /resolve N outcome."""
    number, outcome = _number(args)
    if number is None or not outcome:
        return [ctx.reply("staff.usage_resolve")]
    try:
        await handoffs.resolve_complaint(ctx.session, ctx.now, number, actor=ctx.actor,
                                         outcome=outcome, name=ctx.incoming.user_name)
    except StaffRefused as refused:
        return [_staff_refusal(ctx, refused, "complaint")]
    return [ctx.reply("staff.complaint_resolved", number=number)]


# --- home visits ------------------------------------------------------------------------------


def parse_day(ctx: Ctx, text: str) -> dt.date | None:
    """"11-25", "2026-11-25", "11月25日", "today"/"今天", "tomorrow"/"明天"."""
    word = text.strip().lower()
    if word in ("today", "今天"):
        return ctx.today
    if word in ("tomorrow", "明天"):
        return ctx.today + dt.timedelta(days=1)
    match = _DATE.match(word) or _DATE_ZH.match(word)
    if not match:
        return None
    year = int(match.group(1)) if match.group(1) else ctx.today.year
    try:
        day = dt.date(year, int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None
    if not match.group(1) and day < ctx.today - dt.timedelta(days=180):
        day = day.replace(year=year + 1)  # "01-05" said in November is next January
    return day


def parse_clock(text: str) -> dt.time | None:
    match = _TIME.match(text.strip())
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        return None
    return dt.time(int(match.group(1)), int(match.group(2)))


def parse_when(ctx: Ctx, text: str) -> dt.datetime | None:
    """A local date and time like "11-25 14:00"."""
    parts = text.split()
    if len(parts) != 2:
        return None
    day, clock = parse_day(ctx, parts[0]), parse_clock(parts[1])
    if day is None or clock is None:
        return None
    return at_local(day, clock, ctx.centre.tz)


async def _approve(ctx: Ctx, number: int, text: str) -> list[Reply]:
    visit_at = parse_when(ctx, text)
    if visit_at is None:
        return [ctx.reply("staff.hv_bad_time", number=number)]
    try:
        request = await handoffs.approve_home_visit(ctx.session, ctx.now, number, actor=ctx.actor,
                                                    visit_at=visit_at, name=ctx.incoming.user_name)
    except StaffRefused as refused:
        if refused.reason == StaffRefusal.BAD_TIME:
            return [ctx.reply("staff.hv_past_time", number=number)]
        ctx.end()
        return [_staff_refusal(ctx, refused, "home_visit")]
    ctx.end()
    assert request.visit_at is not None
    return [ctx.reply("staff.hv_approved", number=number, when=when_text(ctx, request.visit_at))]


async def _decline(ctx: Ctx, number: int, reason: str) -> list[Reply]:
    try:
        await handoffs.decline_home_visit(ctx.session, ctx.now, number, actor=ctx.actor,
                                          reason=reason, name=ctx.incoming.user_name)
    except StaffRefused as refused:
        if refused.reason == StaffRefusal.TEXT_REQUIRED:
            return [ctx.reply("staff.hv_ask_reason", number=number)]
        ctx.end()
        return [_staff_refusal(ctx, refused, "home_visit")]
    ctx.end()
    return [ctx.reply("staff.hv_declined", number=number)]


async def approve(ctx: Ctx, args: str) -> list[Reply]:
    """Approve a home visit for a time: /approve N 11-25 14:00."""
    number, text = _number(args)
    if number is None:
        return [ctx.reply("staff.usage_approve")]
    return await _approve(ctx, number, text)


async def decline(ctx: Ctx, args: str) -> list[Reply]:
    """Decline a home visit with a reason: /decline N reason."""
    number, reason = _number(args)
    if number is None or not reason:
        return [ctx.reply("staff.usage_decline")]
    return await _decline(ctx, number, reason)


async def hv_time(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask for the visit time after the approve button was pressed."""
    number = int(ctx.data["request"])
    if event.kind != "text":
        return [ctx.reply("staff.hv_ask_time", number=number)]
    return await _approve(ctx, number, event.value)


async def hv_reason(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask for the reason after the decline button was pressed."""
    number = int(ctx.data["request"])
    if event.kind != "text":
        return [ctx.reply("staff.hv_ask_reason", number=number)]
    return await _decline(ctx, number, event.value)


# --- closures ---------------------------------------------------------------------------------


async def _scope(ctx: Ctx, word: str) -> tuple[int | None, int | None, str] | None:
    """(service id, department id, name) for "all", a service or a department code or name."""
    if word.lower() in _WHOLE_CENTRE:
        return None, None, ctx.t("staff.whole_centre")
    service = await ctx.session.scalar(select(Service).where(
        or_(Service.code == word, Service.name_zh == word, func.lower(Service.name_en) ==
            word.lower())))
    if service is not None:
        return service.id, None, _service_name(ctx, service)
    department = await ctx.session.scalar(select(Department).where(
        or_(Department.code == word, Department.name_zh == word)))
    if department is not None:
        return None, department.id, department.name_en if ctx.locale == "en" else department.name_zh
    return None


def parse_range(ctx: Ctx, words: list[str]) -> tuple[dt.datetime, dt.datetime, int] | None:
    """A period from the leading words: "11-24", "11-24 09:00-12:00", "11-24 11-26",
    "11-24 09:00 11-25 12:00". Returns (start, end, words used), or None."""
    tz = ctx.centre.tz
    first = parse_day(ctx, words[0]) if words else None
    if first is None:
        return None
    second = words[1] if len(words) > 1 else ""
    span = _TIME_RANGE.match(second)
    if span:
        opens, closes = parse_clock(span.group(1)), parse_clock(span.group(2))
        if opens is None or closes is None:
            return None
        return at_local(first, opens, tz), at_local(first, closes, tz), 2
    clock = parse_clock(second) if second else None
    if clock is not None:
        third = parse_day(ctx, words[2]) if len(words) > 2 else None
        end_clock = parse_clock(words[3]) if len(words) > 3 else None
        if third is not None and end_clock is not None:
            return at_local(first, clock, tz), at_local(third, end_clock, tz), 4
        end_clock = parse_clock(words[2]) if len(words) > 2 else None
        if end_clock is not None:
            return at_local(first, clock, tz), at_local(first, end_clock, tz), 3
        return None
    last = parse_day(ctx, second) if second else None
    if last is not None:
        return (at_local(first, dt.time(0), tz),
                at_local(last + dt.timedelta(days=1), dt.time(0), tz), 2)
    return (at_local(first, dt.time(0), tz),
            at_local(first + dt.timedelta(days=1), dt.time(0), tz), 1)


async def closure(ctx: Ctx, args: str) -> list[Reply]:
    """Close a service, a department or the whole centre for a period, after confirmation:
    /closure SCOPE PERIOD REASON."""
    words = args.split()
    if len(words) < 2:
        return [ctx.reply("staff.usage_closure")]
    scope = await _scope(ctx, words[0])
    if scope is None:
        return [ctx.reply("staff.closure_unknown_scope", scope=words[0])]
    period = parse_range(ctx, words[1:])
    if period is None:
        return [ctx.reply("staff.closure_bad_period")]
    starts_at, ends_at, used = period
    reason = " ".join(words[1 + used:]).strip()
    if ends_at <= starts_at:
        return [ctx.reply("staff.closure_backwards", start=when_text(ctx, starts_at),
                          end=when_text(ctx, ends_at))]
    if ends_at <= ctx.now:
        return [ctx.reply("staff.closure_past", end=when_text(ctx, ends_at))]
    if not reason:
        return [ctx.reply("staff.closure_reason")]
    service_id, department_id, name = scope
    plan = await ops.plan_closure(ctx.session, ctx.centre, ctx.now, starts_at=starts_at,
                                  ends_at=ends_at, service_id=service_id,
                                  department_id=department_id)
    ctx.goto(FLOW, "closure_confirm", service=service_id, department=department_id, name=name,
             starts_at=starts_at.isoformat(), ends_at=ends_at.isoformat(), reason=reason)
    return [ctx.reply("staff.closure_plan", [option(ctx.t("staff.closure_yes"), "yes"),
                                             option(ctx.t("staff.closure_no"), "no")],
                      scope=name, start=when_text(ctx, starts_at), end=when_text(ctx, ends_at),
                      reason=reason, count=len(plan.appointments), late=plan.late,
                      hours=ctx.centre.rules.closure_notice_hours)]


async def closure_confirm(ctx: Ctx, event: Event) -> list[Reply]:
    """Apply the closure only after an explicit yes."""
    data = ctx.data
    if event.kind == "enter":
        return [ctx.reply("staff.closure_pending")]
    if event.value != "yes":
        ctx.end()
        return [ctx.reply("staff.closure_dropped")]
    try:
        done_closure = await ops.apply_closure(
            ctx.session, ctx.centre, ctx.now,
            starts_at=dt.datetime.fromisoformat(data["starts_at"]),
            ends_at=dt.datetime.fromisoformat(data["ends_at"]), reason=data["reason"],
            actor=ctx.actor, service_id=data.get("service"), department_id=data.get("department"))
    except BookingRefused as refused:
        ctx.end()
        return [_booking_refusal(ctx, refused)]
    ctx.end()
    return [ctx.reply("staff.closure_done", scope=data["name"], count=done_closure.affected,
                      late=done_closure.late_notices)]


# --- booking for a walk-in or a phone caller (代办) -----------------------------------------------


async def walkin(ctx: Ctx, args: str) -> list[Reply]:
    """Start a booking for a walk-in or phone caller: which service."""
    ctx.goto(FLOW, "walkin_service")
    return await walkin_service(ctx, Event("enter"))


async def walkin_service(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask which service the citizen needs."""
    if event.kind == "choice" and event.value.startswith("svc:"):
        ctx.goto(FLOW, "walkin_day", service=int(event.value[4:]))
        return await walkin_day(ctx, Event("enter"))
    services = (await ctx.session.scalars(select(Service).where(Service.active.is_(True))
                                          .order_by(Service.id))).all()
    rows = [[option(_service_name(ctx, s), f"svc:{s.id}")] for s in services]
    return [ctx.reply("staff.walkin_service", *rows, [option(ctx.t("common.cancel"), "stop")])]


async def _walkin_slots(ctx: Ctx, service: Service, days: list[dt.date]) -> list[Slot]:
    """Slots of these days with a seat kept for the window (not offered online) still free."""
    await ensure_slots(ctx.session, ctx.centre, service, ctx.now)
    slots = list((await ctx.session.scalars(select(Slot).where(
        Slot.service_id == service.id, Slot.local_date.in_(days), Slot.ends_at > ctx.now,
        Slot.offline_booked < Slot.capacity - Slot.online_capacity)
        .order_by(Slot.starts_at))).all())
    if not slots:
        return []
    closures = await active_closures(ctx.session, service, slots[0].starts_at, slots[-1].ends_at)
    return [s for s in slots if not is_closed(closures, s.starts_at, s.ends_at)]


async def _walkin_service(ctx: Ctx) -> tuple[Service, ServiceDef] | None:
    service = await ctx.session.get(Service, ctx.data.get("service"))
    if service is None or not service.active:
        return None
    return service, ServiceDef.from_json(service.definition)


async def walkin_day(ctx: Ctx, event: Event) -> list[Reply]:
    """Offer the next working days with window seats left."""
    found = await _walkin_service(ctx)
    if found is None:
        ctx.end()
        return [ctx.reply("staff.walkin_lost")]
    service, _ = found
    if event.kind == "choice" and event.value.startswith("day:"):
        ctx.goto(FLOW, "walkin_slot", day=event.value[4:])
        return await walkin_slot(ctx, Event("enter"))
    days = ctx.centre.calendar.working_days_from(ctx.today, SHOWN_DAYS)
    free: dict[dt.date, int] = {}
    for slot in await _walkin_slots(ctx, service, days):
        free[slot.local_date] = free.get(slot.local_date, 0) + \
            slot.capacity - slot.online_capacity - slot.offline_booked
    rows = [[option(ctx.t("staff.walkin_day", day=format_day(day, ctx.locale), left=left),
                    f"day:{day.isoformat()}")] for day, left in sorted(free.items())]
    key = "staff.walkin_pick_day" if rows else "staff.walkin_no_days"
    return [ctx.reply(key, *rows, [option(ctx.t("common.cancel"), "stop")],
                      service=_service_name(ctx, service))]


async def walkin_slot(ctx: Ctx, event: Event) -> list[Reply]:
    """Offer the slots of the day with window seats left."""
    found = await _walkin_service(ctx)
    if found is None:
        ctx.end()
        return [ctx.reply("staff.walkin_lost")]
    service, _ = found
    if event.kind == "choice" and event.value.startswith("slot:"):
        ctx.goto(FLOW, "walkin_name", slot_id=int(event.value[5:]))
        return [ctx.reply("staff.walkin_ask_name")]
    day = dt.date.fromisoformat(ctx.data["day"])
    slots = await _walkin_slots(ctx, service, [day])
    buttons = [option(slot_label(ctx, s.starts_at, s.ends_at) + ctx.t(
        "staff.walkin_left", left=s.capacity - s.online_capacity - s.offline_booked),
        f"slot:{s.id}") for s in slots]
    rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
    return [ctx.reply("staff.walkin_pick_slot", *rows, [option(ctx.t("common.cancel"), "stop")],
                      day=format_day(day, ctx.locale), service=_service_name(ctx, service))]


async def walkin_name(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask for the citizen's real name."""
    if event.kind != "text":
        return [ctx.reply("staff.walkin_ask_name")]
    try:
        ctx.remember(name=validate_name(event.value))
    except InvalidValue as bad:
        return [ctx.reply(f"invalid.{bad.code}")]
    ctx.goto(FLOW, "walkin_mobile")
    return [ctx.reply("staff.walkin_ask_mobile")]


async def walkin_mobile(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask for the citizen's mobile; then the ID number if the service needs it."""
    if event.kind != "text":
        return [ctx.reply("staff.walkin_ask_mobile")]
    try:
        ctx.remember(mobile=validate_mobile(event.value))
    except InvalidValue as bad:
        return [ctx.reply(f"invalid.{bad.code}")]
    found = await _walkin_service(ctx)
    if found is None:
        ctx.end()
        return [ctx.reply("staff.walkin_lost")]
    if found[1].id_required:
        ctx.goto(FLOW, "walkin_id")
        return [ctx.reply("staff.walkin_ask_id")]
    return await _walkin_person(ctx, PersonDetails(ctx.data["name"], ctx.data["mobile"]))


async def walkin_id(ctx: Ctx, event: Event) -> list[Reply]:
    """Ask for the citizen's ID number (checked, then kept only hashed and masked)."""
    if event.kind != "text":
        return [ctx.reply("staff.walkin_ask_id")]
    try:
        number = validate_id_number(event.value, ctx.today)
    except InvalidValue as bad:
        return [ctx.reply(f"invalid.{bad.code}")]
    return await _walkin_person(ctx, PersonDetails(ctx.data["name"], ctx.data["mobile"], number))


async def _walkin_person(ctx: Ctx, details: PersonDetails) -> list[Reply]:
    try:
        person = await find_or_create_person(ctx.session, details, ctx.centre.hasher, ctx.now)
    except NameMismatch:
        ctx.end()
        return [ctx.reply("staff.walkin_name_mismatch")]
    ctx.forget("name", "mobile")
    ctx.goto(FLOW, "walkin_confirm", person=person.id)
    return await walkin_confirm(ctx, Event("enter"))


async def walkin_confirm(ctx: Ctx, event: Event) -> list[Reply]:
    """Show what will be booked and book it after confirmation (from the window's seats)."""
    found = await _walkin_service(ctx)
    person = await ctx.session.get(Person, ctx.data.get("person"))
    slot = await ctx.session.get(Slot, ctx.data.get("slot_id"))
    if found is None or person is None or slot is None:
        ctx.end()
        return [ctx.reply("staff.walkin_lost")]
    service, _ = found
    if event.kind == "choice" and event.value == "yes":
        return await _walkin_book(ctx, person, slot)
    start = ctx.local(slot.starts_at)
    return [ctx.reply("staff.walkin_summary", [option(ctx.t("staff.walkin_yes"), "yes"),
                                               option(ctx.t("common.cancel"), "stop")],
                      service=_service_name(ctx, service), day=format_day(start.date(), ctx.locale),
                      time=slot_label(ctx, slot.starts_at, slot.ends_at),
                      name=mask_name(person.name), mobile=mask_mobile(person.mobile),
                      id=person.id_masked or "-")]


async def _walkin_book(ctx: Ctx, person: Person, slot: Slot) -> list[Reply]:
    # A citizen who also uses the bot gets reminders there; a walk-in without one does not.
    identity_id = await ctx.session.scalar(
        select(ChannelIdentity.id).where(ChannelIdentity.person_id == person.id,
                                         ChannelIdentity.unreachable_at.is_(None))
        .order_by(ChannelIdentity.last_inbound_at.desc()).limit(1))
    try:
        appointment = await ops.book(ctx.session, ctx.centre, ctx.now, person_id=person.id,
                                     slot_id=slot.id, identity_id=identity_id,
                                     channel=Channel.STAFF, made_by=ctx.actor, offline=True)
    except BookingRefused as refused:
        ctx.end()
        return [_booking_refusal(ctx, refused)]
    ctx.end()
    line = await _done_line(ctx, "staff.walkin_booked", appointment)
    note = "staff.walkin_reminders" if identity_id else "staff.walkin_no_reminders"
    return [line, ctx.reply(note, code=appointment.code)]


async def stopped(ctx: Ctx) -> list[Reply]:
    ctx.end()
    return [ctx.reply("staff.stopped")]


def _stoppable(step: Callable[[Ctx, Event], Awaitable[list[Reply]]]
               ) -> Callable[[Ctx, Event], Awaitable[list[Reply]]]:
    """Every staff step leaves the flow on its cancel button."""

    async def run(ctx: Ctx, event: Event) -> list[Reply]:
        if event.kind == "choice" and event.value == "stop":
            return await stopped(ctx)
        return await step(ctx, event)

    run.__doc__ = step.__doc__
    return run


async def help_command(ctx: Ctx, args: str) -> list[Reply]:
    """List what staff can do here."""
    return [ctx.reply("staff.help")]


async def open_requests(ctx: Ctx, args: str) -> list[Reply]:
    """List the hand-offs not closed yet, with their owners."""
    rows = (await ctx.session.scalars(select(Handoff).where(
        Handoff.status.in_([RequestStatus.OPEN, RequestStatus.CLAIMED]))
        .order_by(Handoff.opened_at))).all()
    if not rows:
        return [ctx.reply("staff.open_none")]
    lines = []
    for handoff in rows:
        owner = await handoffs.staff_name(ctx.session, handoff.claimed_by) \
            if handoff.claimed_by else ctx.t("staff.unclaimed")
        lines.append(ctx.t("staff.open_line", number=handoff.id,
                           since=when_text(ctx, handoff.opened_at), owner=owner))
    return [ctx.reply("staff.open_head", lines="\n".join(lines))]


COMMANDS: dict[str, Callable[[Ctx, str], Awaitable[list[Reply]]]] = {
    "today": today, "find": find, "checkin": checkin, "done": done, "noshow": noshow,
    "undo": undo, "blocks": blocks, "unblock": unblock, "walkin": walkin, "closure": closure,
    "claim": claim, "reply": reply, "close": close, "open": open_requests,
    "claimc": claim_complaint, "answer": answer, "resolve": resolve,
    "approve": approve, "decline": decline, "staffhelp": help_command,
}

STEPS = {name: _stoppable(step) for name, step in {
    "walkin_service": walkin_service, "walkin_day": walkin_day, "walkin_slot": walkin_slot,
    "walkin_name": walkin_name, "walkin_mobile": walkin_mobile, "walkin_id": walkin_id,
    "walkin_confirm": walkin_confirm, "closure_confirm": closure_confirm,
    "hv_time": hv_time, "hv_reason": hv_reason,
}.items()}
