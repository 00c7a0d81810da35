"""A doctor's or window's 停诊 from the staff chat: ``/closure NAME PERIOD REASON`` (a day, a
half-day ``am``/``pm`` or a period), how many bookings it touches and how many get short
notice, then for each booking 替诊 (a doctor of the same specialty), 换诊 or cancel, and a
last yes. The rules live in storage/resource_closures.py."""

from __future__ import annotations

import dataclasses
import datetime as dt

from handlers.context import Ctx, Event, StepHandler, option
from handlers.core import Choice, Reply
from handlers.doctors import name_text, title_text
from handlers.payloads import Button, SubstitutePick
from handlers.render import when_text
from handlers.staff.dates import parse_day, parse_range
from handlers.staff.replies import booking_refusal
from handlers.steps import StaffResourceClosure, StepName
from storage import services
from storage.identity import mask_name
from storage.models import Appointment, Person
from storage.privacy import mask_text
from storage.refusals import BookingRefused
from storage.resource_closures import Decision, Way, apply_resource_closure, plan_resource_closure
from storage.resources import ResourceInfo, find_resources, resource_info
from storage.rules import at_local
from storage.sms import sms_planned

_HALVES = {"am": "am", "上午": "am", "pm": "pm", "下午": "pm"}


async def route(ctx: Ctx, words: list[str]) -> list[Reply] | None:
    """The replies when the scope names one doctor or window and no service by its code or
    name (a doctor's name is also a service's keyword for citizens: that does not count);
    else None."""
    doctors = await find_resources(ctx.session, words[0])
    service = await services.match_service(ctx.session, words[0])
    if len(doctors) != 1 or (service.found is not None and not service.fuzzy):
        return None
    return await _plan(ctx, doctors[0], words[1:])


def _period(ctx: Ctx, words: list[str]) -> tuple[dt.datetime, dt.datetime, int] | None:
    """"11-25 am" (a half-day) or any period /closure takes."""
    if len(words) >= 2 and words[1].lower() in _HALVES and (day := parse_day(ctx, words[0])):
        tz = ctx.centre.tz
        noon = at_local(day, dt.time(12, 0), tz)
        if _HALVES[words[1].lower()] == "am":
            return at_local(day, dt.time(0, 0), tz), noon, 2
        return noon, at_local(day + dt.timedelta(days=1), dt.time(0, 0), tz), 2
    return parse_range(ctx, words) if words else None


def _who(ctx: Ctx, resource: ResourceInfo) -> str:
    return f"{name_text(ctx, resource)} {title_text(ctx, resource)}"


async def _plan(ctx: Ctx, resource: ResourceInfo, words: list[str]) -> list[Reply]:
    period = _period(ctx, words)
    if period is None:
        return [ctx.reply("rclosure.usage")]
    starts_at, ends_at, used = period
    reason = mask_text(" ".join(words[used:]).strip())
    if ends_at <= ctx.now:
        return [ctx.reply("staff.closure_past", end=when_text(ctx, ends_at))]
    if not reason:
        return [ctx.reply("rclosure.reason")]
    plan = await plan_resource_closure(ctx.session, ctx.centre, ctx.now, resource_id=resource.id,
                                       starts_at=starts_at, ends_at=ends_at)
    ctx.goto(StaffResourceClosure.DECIDE, resource=resource.id, who=_who(ctx, resource),
             starts_at=starts_at.isoformat(), ends_at=ends_at.isoformat(), reason=reason,
             bookings=[a.appointment.id for a in plan.affected],
             substitutes={str(a.appointment.id): list(a.substitutes) for a in plan.affected},
             decisions={})
    head = ctx.t("rclosure.plan", who=_who(ctx, resource), start=when_text(ctx, starts_at),
                 end=when_text(ctx, ends_at), reason=reason, count=len(plan.affected), late=plan.late,
                 hours=ctx.centre.rules.closure_notice_hours)
    if not plan.affected:
        ctx.goto(StaffResourceClosure.CONFIRM)
        return [Reply(head, ((option(ctx.t("rclosure.yes"), Button.YES),
                              option(ctx.t("staff.closure_no"), Button.NO)),))]
    return [Reply(head), await _ask(ctx)]


async def _ask(ctx: Ctx) -> Reply:
    """The next booking without a decision, with its ways."""
    data = ctx.data
    pending = [b for b in data["bookings"] if str(b) not in data["decisions"]]
    appointment = await ctx.session.get(Appointment, pending[0])
    assert appointment is not None
    person = await ctx.session.get(Person, appointment.person_id)
    rows: list[list[Choice]] = []
    for resource_id in data["substitutes"].get(str(appointment.id), [])[:3]:
        substitute = await resource_info(ctx.session, resource_id)
        if substitute is not None:
            rows.append([option(ctx.t("rclosure.substitute", who=_who(ctx, substitute)),
                                SubstitutePick(resource_id))])
    rows.append([option(ctx.t("rclosure.move"), Button.RESCHEDULE),
                 option(ctx.t("rclosure.cancel"), Button.CANCEL)])
    rows.append([option(ctx.t("staff.closure_no"), Button.NO)])
    number = len(data["bookings"]) - len(pending) + 1
    asked = ctx.reply("rclosure.ask", *rows, number=number, total=len(data["bookings"]),
                      when=when_text(ctx, appointment.starts_at), code=appointment.code,
                      name=mask_name(person.name) if person else "-",
                      none="" if rows[:-2] else ctx.t("rclosure.no_substitute"))
    if appointment.identity_id is not None:
        return asked
    # No chat account (a window or phone booking): asked by SMS, when the centre sends those.
    by_sms = all(sms_planned(ctx.centre, kind, account_id=None)
                 for kind in ("closure_substitute", "closure_move"))
    return dataclasses.replace(asked, text=asked.text + "\n" + ctx.t(
        "rclosure.by_sms" if by_sms else "rclosure.no_sms"))


async def decide(ctx: Ctx, event: Event) -> list[Reply]:
    """Take staff's way for one booking, then ask for the next, then the last yes."""
    data = ctx.data
    if event.is_enter:
        return [await _ask(ctx)]
    if event.button is Button.NO:
        ctx.end()
        return [ctx.reply("staff.closure_dropped")]
    pending = [b for b in data["bookings"] if str(b) not in data["decisions"]]
    if not pending:
        return await ctx.enter(StaffResourceClosure.CONFIRM)
    current = str(pending[0])
    if (picked := event.pick(SubstitutePick)) is not None and picked.resource in data["substitutes"].get(current, []):
        way: list[object] = [Way.SUBSTITUTE.value, picked.resource]
    elif event.button is Button.RESCHEDULE:
        way = [Way.MOVE.value, None]
    elif event.button is Button.CANCEL:
        way = [Way.CANCEL.value, None]
    else:
        return [await _ask(ctx)]
    ctx.remember(decisions={**data["decisions"], current: way})
    if len(pending) > 1:
        return [await _ask(ctx)]
    return await ctx.enter(StaffResourceClosure.CONFIRM)


async def confirm(ctx: Ctx, event: Event) -> list[Reply]:
    """Apply the 停诊 only after an explicit yes."""
    data = ctx.data
    ways = [w[0] for w in data["decisions"].values()]
    if event.is_enter:
        return [ctx.reply("rclosure.summary", [option(ctx.t("rclosure.yes"), Button.YES),
                                               option(ctx.t("staff.closure_no"), Button.NO)],
                          who=data["who"], substitute=ways.count(Way.SUBSTITUTE.value),
                          move=ways.count(Way.MOVE.value), cancel=ways.count(Way.CANCEL.value))]
    if event.button is not Button.YES:
        ctx.end()
        return [ctx.reply("staff.closure_dropped")]
    decisions = {int(k): Decision(Way(v[0]), v[1]) for k, v in data["decisions"].items()}
    try:
        done = await apply_resource_closure(
            ctx.session, ctx.centre, ctx.now, resource_id=int(data["resource"]),
            starts_at=dt.datetime.fromisoformat(data["starts_at"]),
            ends_at=dt.datetime.fromisoformat(data["ends_at"]), reason=data["reason"],
            actor=ctx.actor, decisions=decisions)
    except BookingRefused as refused:
        ctx.end()
        return [booking_refusal(ctx, refused)]
    ctx.end()
    return [ctx.reply("rclosure.done", who=data["who"], count=done.affected, late=done.late_notices)]


STEPS: dict[StepName, StepHandler] = {StaffResourceClosure.DECIDE: decide, StaffResourceClosure.CONFIRM: confirm}
