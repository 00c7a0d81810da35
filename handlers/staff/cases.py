"""Cases (办件) at the window: opening one after /done (its kind, then what it needs: the missing
materials for 补正, the reason and legal basis for 退回, the departments for 联办), and the
commands that move a case on: /case, /cases, /ready, /collected, /extend (a supervisor decides
with a button), /resubmit, /correct, /refuse, /partdone, /expect, /opencase, and /walkincase for
a walk-in without a booking.

Every rule is storage.cases'; this module reads what staff typed or pressed and says what
happened, or why not, in the staff member's language. Diagram: docs/flows/case.mmd.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from handlers.context import Ctx, Event, StepHandler, option
from handlers.core import Choice, Reply
from handlers.flow import Action, Command
from handlers.i18n import format_day, format_when
from handlers.menu import unmatched_text
from handlers.payloads import (
    ApproveExtension,
    Button,
    CaseKindPick,
    MissingItem,
    Payload,
    RefuseExtension,
)
from handlers.staff.dates import parse_day
from handlers.staff.replies import booking_refusal
from handlers.steps import StaffCase, StepName
from storage import blocks, booking, cases, services
from storage.booking import appointment_by_code
from storage.case_rules import CLOCK_RUNNING, OPEN_STATES, CaseAction, format_case_number
from storage.cases import CaseRefusal, CaseRefused, CaseView, PartSpec
from storage.catalog import ServiceDef
from storage.handoffs import remember_staff_name, staff_name
from storage.identity import InvalidValue, mask_mobile, mask_name, validate_mobile
from storage.models import (
    Appointment,
    AppointmentStatus,
    Case,
    CaseKind,
    CaseState,
    Person,
    Service,
)
from storage.refusals import BookingRefused

KIND_ROWS = ((CaseKind.IMMEDIATE, CaseKind.PROMISED, CaseKind.CORRECTION),
             (CaseKind.RETURNED, CaseKind.JOINT, CaseKind.REPORTED))
HISTORY_LIMIT = 20
_PART_SPLIT = re.compile(r"[,，、;；\n]+")
_PART_DAYS = re.compile(r"^(.*?)\s*(\d{1,3})\s*(?:个?工作日|天|日|days?|d)?$")
_NUMBER_GROUPS = re.compile(r"^\S{4}$")


# --- words shared with the citizen's side -------------------------------------------------------


def number_text(number: str) -> str:
    """A case number as it is printed and read out: "3804 1924"."""
    return format_case_number(number)


def kind_name(ctx: Ctx, kind: CaseKind | str) -> str:
    return ctx.t(f"case.kind.{CaseKind(kind).value}")


def state_name(ctx: Ctx, state: CaseState | str) -> str:
    return ctx.t(f"case.state.{CaseState(state).value}")


def day_text(ctx: Ctx, day: dt.date | None) -> str:
    return format_day(day, ctx.locale, ctx.today) if day is not None else ctx.t("case_staff.no_due")


def refusal(ctx: Ctx, refused: CaseRefused) -> Reply:
    """Why storage refused a case step, with the facts the staff member needs."""
    details: dict[str, Any] = dict(refused.details)
    values: dict[str, Any] = {"number": number_text(str(details["number"]))
                              if re.fullmatch(r"\d{8}", str(details.get("number", "")))
                              else details.get("number", details.get("text", ""))}
    reason = refused.reason
    if reason == CaseRefusal.BAD_NUMBER:
        values["number"] = details.get("text", "")
    elif reason == CaseRefusal.NOT_ALLOWED:
        state = details.get("state")
        values["state"] = state_name(ctx, state) if state else "-"
        values["action"] = ctx.t(f"case.action.{details.get('action', 'accept')}")
    elif reason == CaseRefusal.CORRECTION_LIMIT:
        values["corrections"] = details.get("corrections", 1)
    elif reason == CaseRefusal.PARTS_OPEN:
        values["open"] = "、".join(details.get("open", ()))
    elif reason == CaseRefusal.BAD_DAYS:
        values["limit"] = details.get("limit", "-")
    elif reason == CaseRefusal.EXTENSION_PENDING:
        values["extension"] = details.get("extension", "-")
    elif reason == CaseRefusal.ALREADY_DECIDED:
        values["by"] = details.get("by") or "-"
    elif reason == CaseRefusal.BAD_DATE:
        day = details.get("day")
        values["day"] = format_day(day, ctx.locale) if isinstance(day, dt.date) else "-"
    key = f"case_staff.refused_{reason.value}"
    if ctx.t(key) == key:
        return ctx.reply("case_staff.refused_other", reason=reason.value)
    return ctx.reply(key, **values)


def split_number(args: str) -> tuple[str, list[str]]:
    """The case number at the start of what was typed ("3804 1924 5 原因" or "38041924 ..."),
    and the words after it."""
    words = args.split()
    if len(words) >= 2 and _NUMBER_GROUPS.match(words[0]) and _NUMBER_GROUPS.match(words[1]):
        return words[0] + words[1], words[2:]
    return (words[0], words[1:]) if words else ("", [])


async def _service(ctx: Ctx, service_id: int) -> ServiceDef:
    service = await ctx.session.get(Service, service_id)
    assert service is not None  # a foreign key keeps it
    return ServiceDef.from_json(service.definition)


def _no_account(ctx: Ctx, case: Case) -> list[Reply]:
    return [ctx.reply("case_staff.no_account")] if case.identity_id is None else []


async def _remember_name(ctx: Ctx) -> None:
    """Keep the name the staff member shows, for "owner: 王芳" in lists and alerts."""
    await remember_staff_name(ctx.session, ctx.actor, ctx.incoming.user_name, ctx.now)


# --- opening a case after /done -----------------------------------------------------------------


async def offer(ctx: Ctx, appointment: Appointment) -> list[Reply]:
    """After a booking is served, offer to open its case: the six kinds, the service's default
    first in mind (nothing when it already has one)."""
    existing = await cases.case_of_appointment(ctx.session, appointment.id)
    if existing is not None:
        return [ctx.reply("case_staff.already_opened", code=appointment.code,
                          number=number_text(existing.number))]
    service = await _service(ctx, appointment.service_id)
    ctx.goto(StaffCase.KIND, appointment=appointment.id, code=appointment.code,
             service_name=service.name.get(ctx.locale), missing=[], note="")
    return [_kind_menu(ctx, service)]


def _kind_menu(ctx: Ctx, service: ServiceDef) -> Reply:
    rows = [[option(kind_name(ctx, kind), CaseKindPick(kind)) for kind in row] for row in KIND_ROWS]
    if ctx.data.get("appointment"):
        return ctx.reply("case_staff.offer", *rows,
                         [option(ctx.t("case_staff.no_case"), Button.SKIP)],
                         code=ctx.data.get("code", ""), service=service.name.get(ctx.locale),
                         default=kind_name(ctx, service.case.kind))
    return ctx.reply("case_staff.offer_walkin", *rows,
                     [option(ctx.t("case_staff.no_case"), Button.SKIP)],
                     who=ctx.data.get("who", ""), service=service.name.get(ctx.locale),
                     default=kind_name(ctx, service.case.kind))


async def walk_in_case(ctx: Ctx, args: str) -> list[Reply]:
    """Open a case for a walk-in without a booking, a person the centre already has on record:
    /walkincase SERVICE MOBILE (someone new is registered with /walkin first)."""
    words = args.split()
    if len(words) < 2:
        return [ctx.reply("case_staff.usage_walkincase")]
    matched = await services.match_service(ctx.session, words[0], departments=False)
    found = matched.found
    if not isinstance(found, Service):
        return [Reply(unmatched_text(ctx, matched))]
    try:
        mobile = validate_mobile("".join(words[1:]))
    except InvalidValue:
        return [ctx.reply("case_staff.usage_walkincase")]
    people = await blocks.people_with_mobile(ctx.session, mobile)
    if not people:
        return [ctx.reply("case_staff.walkin_unknown_person", mobile=mask_mobile(mobile))]
    if len(people) > 1:
        return [ctx.reply("case_staff.walkin_several", mobile=mask_mobile(mobile),
                          names="、".join(mask_name(p.name) for p in people))]
    person = people[0]
    ctx.goto(StaffCase.KIND, appointment=None, service=found.id, person=person.id,
             identity=await booking.reachable_identity(ctx.session, person.id),
             who=f"{mask_name(person.name)} {mask_mobile(person.mobile)}", missing=[], note="")
    return [_kind_menu(ctx, ServiceDef.from_json(found.definition))]


async def open_from_booking(ctx: Ctx, args: str) -> list[Reply]:
    """Open a case for a booking checked in or served earlier: /opencase CODE."""
    code = args.split()[0] if args.split() else ""
    if not code:
        return [ctx.reply("case_staff.usage_opencase")]
    try:
        appointment = await appointment_by_code(ctx.session, code)
    except BookingRefused as refused:
        return [booking_refusal(ctx, refused, code)]
    if appointment.status not in (AppointmentStatus.CHECKED_IN, AppointmentStatus.COMPLETED):
        return [ctx.reply("case_staff.refused_not_served")]
    return await offer(ctx, appointment)


async def pick_kind(ctx: Ctx, event: Event) -> list[Reply]:
    """Take the kind; the kinds that need more ask for it, the others open the case."""
    if event.is_enter:
        return [_kind_menu(ctx, await _materials_of(ctx))]
    if event.button is Button.SKIP:
        ctx.end()
        return [ctx.reply("case_staff.not_opened")]
    picked = event.pick(CaseKindPick)
    if picked is None:
        return await pick_kind(ctx, Event.enter())
    ctx.remember(kind=picked.kind.value)
    if picked.kind == CaseKind.CORRECTION:
        return await ctx.enter(StaffCase.MISSING)
    if picked.kind == CaseKind.RETURNED:
        return await ctx.enter(StaffCase.REASON)
    if picked.kind == CaseKind.JOINT:
        return await ctx.enter(StaffCase.PARTS)
    return await _open(ctx)


async def _open(ctx: Ctx, **needs: Any) -> list[Reply]:
    """Open the case the conversation has gathered; on a refusal say why and stay."""
    data = ctx.data
    kind = CaseKind(data["kind"])
    await _remember_name(ctx)
    if data.get("appointment"):
        needs["appointment_id"] = int(data["appointment"])
    else:   # a walk-in without a booking
        needs.update(service_id=int(data["service"]), person_id=int(data["person"]),
                     identity_id=data.get("identity"))
    try:
        case = await cases.open_case(ctx.session, ctx.centre, ctx.now, actor=ctx.actor, kind=kind,
                                     **needs)
    except CaseRefused as refused:
        if refused.reason in (CaseRefusal.MISSING_ITEMS, CaseRefusal.PARTS_REQUIRED,
                              CaseRefusal.REASON_REQUIRED, CaseRefusal.BASIS_REQUIRED):
            return [refusal(ctx, refused)]
        ctx.end()
        return [refusal(ctx, refused)]
    ctx.end()
    return [await _opened(ctx, case), *_no_account(ctx, case)]


async def _opened(ctx: Ctx, case: Case) -> Reply:
    service = await _service(ctx, case.service_id)
    deadline = case.correction_due_on
    return ctx.reply(f"case_staff.opened_{case.kind.value}", number=number_text(case.number),
                     service=service.name.get(ctx.locale), due=day_text(ctx, case.due_on),
                     deadline=day_text(ctx, deadline))


async def pick_missing(ctx: Ctx, event: Event) -> list[Reply]:
    """补正: toggle the missing materials of the service's list, add a note by typing, done."""
    data = ctx.data
    if event.is_text:
        ctx.remember(note=event.value.strip()[:500])
    elif (toggled := event.pick(MissingItem)) is not None:
        chosen = set(data.get("missing") or [])
        chosen ^= {toggled.item}
        ctx.remember(missing=sorted(chosen))
    elif event.button is Button.CONFIRM:
        missing, note = list(ctx.data.get("missing") or []), ctx.data.get("note") or None
        if data.get("number"):
            return await _request_correction(ctx, missing, note)
        return await _open(ctx, missing=missing, missing_note=note)
    return [await _missing_menu(ctx)]


async def _materials_of(ctx: Ctx) -> ServiceDef:
    if ctx.data.get("number"):
        case = await cases.find_case(ctx.session, str(ctx.data["number"]))
        return await _service(ctx, case.service_id)
    if not ctx.data.get("appointment"):
        return await _service(ctx, int(ctx.data["service"]))
    appointment = await ctx.session.get(Appointment, int(ctx.data["appointment"]))
    assert appointment is not None
    return await _service(ctx, appointment.service_id)


async def _missing_menu(ctx: Ctx) -> Reply:
    service = await _materials_of(ctx)
    chosen = set(ctx.data.get("missing") or [])
    rows: list[list[Choice]] = [[option(("☑ " if index in chosen else "☐ ")
                                        + material.name.get(ctx.locale), MissingItem(index))]
                                for index, material in enumerate(service.materials)]
    rows.append([option(ctx.t("case_staff.done_picking"), Button.CONFIRM)])
    names = [service.materials[i].name.get(ctx.locale) for i in sorted(chosen)
             if 0 <= i < len(service.materials)]
    nothing = ctx.t("case_staff.nothing_chosen")
    return ctx.reply("case_staff.pick_missing", *rows, chosen="、".join(names) or nothing,
                     note=ctx.data.get("note") or nothing)


async def _request_correction(ctx: Ctx, missing: list[int], note: str | None) -> list[Reply]:
    try:
        case = await cases.request_correction(
            ctx.session, ctx.centre, ctx.now, str(ctx.data["number"]), actor=ctx.actor,
            missing=missing, note=note, supervisors=ctx.settings.access.supervisors,
            approved_by=ctx.actor if ctx.actor in ctx.settings.access.supervisors else None)
    except CaseRefused as refused:
        if refused.reason != CaseRefusal.MISSING_ITEMS:
            ctx.end()
        return [refusal(ctx, refused)]
    ctx.end()
    return [ctx.reply("case_staff.correction_sent", number=number_text(case.number),
                      deadline=day_text(ctx, case.correction_due_on)), *_no_account(ctx, case)]


async def ask_reason(ctx: Ctx, event: Event) -> list[Reply]:
    """退回: the reason for refusing, typed."""
    if event.is_text and event.value.strip():
        ctx.remember(reason=event.value.strip()[:1000])
        return await ctx.enter(StaffCase.BASIS)
    return [ctx.reply("case_staff.ask_reason")]


async def ask_basis(ctx: Ctx, event: Event) -> list[Reply]:
    """退回: the legal basis, typed, or the service's own with one button; then refuse."""
    service = await _materials_of(ctx)
    basis = None
    if event.is_text and event.value.strip():
        basis = event.value.strip()[:1000]
    elif event.button is Button.USE_SAVED and service.legal_basis is not None:
        basis = service.legal_basis.get(ctx.locale)
    if basis is None:
        rows = [[option(ctx.t("case_staff.use_basis", basis=service.legal_basis.get(ctx.locale)),
                        Button.USE_SAVED)]] if service.legal_basis is not None else []
        return [ctx.reply("case_staff.ask_basis", *rows)]
    reason = str(ctx.data.get("reason", ""))
    if ctx.data.get("number"):
        try:
            case = await cases.refuse(ctx.session, ctx.centre, ctx.now, str(ctx.data["number"]),
                                      actor=ctx.actor, reason=reason, legal_basis=basis)
        except CaseRefused as refused:
            ctx.end()
            return [refusal(ctx, refused)]
        ctx.end()
        return [ctx.reply("case_staff.refused_sent", number=number_text(case.number)),
                *_no_account(ctx, case)]
    return await _open(ctx, reason=reason, legal_basis=basis)


def parse_parts(text: str) -> list[PartSpec] | None:
    """"公安局 5、民政局 10" → the departments and their working days (None: the service's)."""
    parts = []
    for piece in _PART_SPLIT.split(text):
        piece = piece.strip()
        if not piece:
            continue
        match = _PART_DAYS.match(piece)
        if match and match.group(1).strip():
            parts.append(PartSpec(match.group(1).strip()[:200], int(match.group(2))))
        else:
            parts.append(PartSpec(piece[:200]))
    return parts if len(parts) >= 2 else None


async def ask_parts(ctx: Ctx, event: Event) -> list[Reply]:
    """联办: the departments and their working days, typed."""
    if not event.is_text:
        return [ctx.reply("case_staff.ask_parts")]
    parts = parse_parts(event.value)
    if parts is None:
        return [ctx.reply("case_staff.bad_parts")]
    return await _open(ctx, parts=parts)


# --- commands on a case -------------------------------------------------------------------------


async def _actor_name(ctx: Ctx, actor: str) -> str:
    if actor.startswith("identity:"):
        return ctx.t("case_staff.citizen")
    return await staff_name(ctx.session, actor)


async def _render_view(ctx: Ctx, view: CaseView) -> str:
    case, service = view.case, view.service
    text = ctx.t("case_staff.view_head", number=number_text(case.number),
                 service=service.name.get(ctx.locale), kind=kind_name(ctx, case.kind),
                 state=state_name(ctx, case.state),
                 overdue=ctx.t("case_staff.view_overdue") if view.overdue else "",
                 opened=day_text(ctx, case.opened_on), owner=await staff_name(ctx.session, case.owner),
                 due=day_text(ctx, case.due_on))
    person = await ctx.session.get(Person, case.person_id)
    if person is not None:
        text += ctx.t("case_staff.view_person", name=mask_name(person.name),
                      mobile=mask_mobile(person.mobile))
    if case.state == CaseState.CORRECTION and case.paused_on is not None:
        text += ctx.t("case_staff.view_paused", since=day_text(ctx, case.paused_on),
                      deadline=day_text(ctx, case.correction_due_on))
    if view.parts:
        text += ctx.t("case_staff.view_parts")
        for part in view.parts:
            text += ctx.t("case_staff.view_part", name=part.name, due=day_text(ctx, part.due_on),
                          done=ctx.t("case_staff.part_done_mark" if part.done_at
                                     else "case_staff.part_open_mark"))
    if view.extensions:
        text += ctx.t("case_staff.view_extensions")
        for extension in view.extensions:
            text += ctx.t("case_staff.view_extension", id=extension.id, days=extension.days,
                          reason=extension.reason,
                          status=ctx.t(f"case_staff.extension_status_{extension.status.value}"))
    text += ctx.t("case_staff.view_history")
    for event in view.events[-HISTORY_LIMIT:]:
        text += ctx.t("case_staff.view_event",
                      when=format_when(ctx.local(event.at), ctx.locale, ctx.today),
                      action=ctx.t(f"case.action.{event.action}"),
                      actor=await _actor_name(ctx, event.actor),
                      reason=f"：{event.reason}" if event.reason else "")
    return text


async def show(ctx: Ctx, args: str) -> list[Reply]:
    """Show a case with its departments, extensions and history: /case N."""
    number, _ = split_number(args)
    if not number:
        return [ctx.reply("case_staff.usage_case")]
    try:
        view = await cases.view_case(ctx.session, ctx.centre, ctx.now, number)
    except CaseRefused as refused:
        return [refusal(ctx, refused)]
    return [Reply(await _render_view(ctx, view))]


async def open_list(ctx: Ctx, args: str) -> list[Reply]:
    """List the open cases, overdue first, then by due date: /cases [mine]."""
    mine = args.strip().lower() in ("mine", "me", "我的", "我")
    lines = await cases.open_cases(ctx.session, ctx.centre, ctx.now,
                                   owner=ctx.actor if mine else None)
    if not lines:
        return [ctx.reply("case_staff.list_none")]
    rows = [ctx.t("case_staff.list_line",
                  mark=ctx.t("case_staff.overdue_mark") if line.overdue else "",
                  number=number_text(line.case.number), service=line.service.name.get(ctx.locale),
                  kind=kind_name(ctx, line.case.kind), state=state_name(ctx, line.case.state),
                  due=day_text(ctx, line.case.due_on),
                  owner=await staff_name(ctx.session, line.case.owner)) for line in lines]
    return [Reply(ctx.t("case_staff.list_head", count=len(lines)) + "\n" + "\n".join(rows))]


_MAIL_WORDS = {"邮寄", "快递", "mail", "post", "posted", "ems"}


async def ready(ctx: Ctx, args: str) -> list[Reply]:
    """办结: /ready N [place | hours] to collect, or /ready N 邮寄 TRACKING to post it."""
    number, words = split_number(args)
    if not number:
        return [ctx.reply("case_staff.usage_ready")]
    try:
        if words and words[0].lower() in _MAIL_WORDS:
            tracking = " ".join(words[1:])
            case = await cases.mail_result(ctx.session, ctx.centre, ctx.now, number,
                                           actor=ctx.actor, tracking_number=tracking)
            return [ctx.reply("case_staff.mailed_done", number=number_text(case.number),
                              tracking=case.tracking_number), *_no_account(ctx, case)]
        place, _, hours = " ".join(words).replace("｜", "|").partition("|")
        case = await cases.mark_ready(ctx.session, ctx.centre, ctx.now, number, actor=ctx.actor,
                                      pickup_place=place.strip() or None,
                                      pickup_hours=hours.strip() or None)
    except CaseRefused as refused:
        return [refusal(ctx, refused)]
    return [ctx.reply("case_staff.ready_done", number=number_text(case.number)),
            *_no_account(ctx, case)]


async def collected(ctx: Ctx, args: str) -> list[Reply]:
    """The citizen collected the result: /collected N (the case closes)."""
    number, _ = split_number(args)
    if not number:
        return [ctx.reply("case_staff.usage_collected")]
    try:
        case = await cases.collect(ctx.session, ctx.centre, ctx.now, number, actor=ctx.actor)
    except CaseRefused as refused:
        return [refusal(ctx, refused)]
    return [ctx.reply("case_staff.collected_done", number=number_text(case.number))]


async def extend(ctx: Ctx, args: str) -> list[Reply]:
    """Ask a supervisor for more working days: /extend N DAYS REASON."""
    number, words = split_number(args)
    if not number or not words or not words[0].isdecimal() or not words[0].isascii():
        return [ctx.reply("case_staff.usage_extend")]
    days, reason = int(words[0][:4]), " ".join(words[1:])
    await _remember_name(ctx)
    try:
        extension = await cases.request_extension(
            ctx.session, ctx.centre, ctx.now, number, actor=ctx.actor, days=days, reason=reason,
            supervisors=ctx.settings.access.supervisors)
    except CaseRefused as refused:
        return [refusal(ctx, refused)]
    case = await cases.find_case(ctx.session, number)
    return [ctx.reply("case_staff.extension_requested", number=number_text(case.number),
                      days=extension.days, reason=extension.reason, extension=extension.id)]


async def _decide(ctx: Ctx, extension_id: int, approve: bool) -> list[Reply]:
    try:
        extension = await cases.decide_extension(
            ctx.session, ctx.centre, ctx.now, extension_id, actor=ctx.actor, approve=approve,
            supervisors=ctx.settings.access.supervisors)
    except CaseRefused as refused:
        return [refusal(ctx, refused)]
    case = await ctx.session.get(Case, extension.case_id)
    assert case is not None
    key = "case_staff.extension_approved" if approve else "case_staff.extension_refused"
    return [ctx.reply(key, extension=extension.id, number=number_text(case.number),
                      due=day_text(ctx, case.due_on))]


async def approve_button(ctx: Ctx, payload: ApproveExtension) -> list[Reply]:
    """A supervisor approves an extension from its alert."""
    return await _decide(ctx, payload.extension, True)


async def refuse_button(ctx: Ctx, payload: RefuseExtension) -> list[Reply]:
    """A supervisor refuses an extension from its alert."""
    return await _decide(ctx, payload.extension, False)


async def resubmitted(ctx: Ctx, args: str) -> list[Reply]:
    """The missing materials arrived: /resubmit N (the clock runs again)."""
    number, _ = split_number(args)
    if not number:
        return [ctx.reply("case_staff.usage_resubmit")]
    try:
        case = await cases.resubmit(ctx.session, ctx.centre, ctx.now, number, actor=ctx.actor)
    except CaseRefused as refused:
        return [refusal(ctx, refused)]
    paused = case.paused_days
    events = await cases.view_case(ctx.session, ctx.centre, ctx.now, case.number)
    last = events.events[-1].detail if events.events else {}
    return [ctx.reply("case_staff.resubmit_done", number=number_text(case.number),
                      paused=last.get("paused_days", paused), due=day_text(ctx, case.due_on))]


def _may(case: Case, states: frozenset[CaseState], action: CaseAction) -> None:
    """Refuse at once what the case's state will not allow, before asking staff for more."""
    if case.state not in states:
        raise CaseRefused(CaseRefusal.NOT_ALLOWED, number=case.number, state=case.state,
                          action=action.value)


async def correct(ctx: Ctx, args: str) -> list[Reply]:
    """Tell the citizen, once and in writing, what a running case lacks: /correct N."""
    number, _ = split_number(args)
    if not number:
        return [ctx.reply("case_staff.usage_correct")]
    try:
        case = await cases.find_case(ctx.session, number)
        _may(case, CLOCK_RUNNING, CaseAction.CORRECTION)
    except CaseRefused as refused:
        return [refusal(ctx, refused)]
    ctx.goto(StaffCase.MISSING, number=case.number, missing=[], note="")
    return [await _missing_menu(ctx)]


async def refuse_case(ctx: Ctx, args: str) -> list[Reply]:
    """Refuse an accepted case, asking for the reason and the legal basis: /refuse N."""
    number, words = split_number(args)
    if not number:
        return [ctx.reply("case_staff.usage_refuse")]
    try:
        case = await cases.find_case(ctx.session, number)
        _may(case, OPEN_STATES, CaseAction.REFUSE)
    except CaseRefused as refused:
        return [refusal(ctx, refused)]
    if words:
        ctx.goto(StaffCase.BASIS, number=case.number, reason=" ".join(words)[:1000])
        return await ask_basis(ctx, Event.enter())
    return await ctx.enter(StaffCase.REASON, number=case.number)


async def part_done(ctx: Ctx, args: str) -> list[Reply]:
    """One department of a joint case is done: /partdone N DEPARTMENT."""
    number, words = split_number(args)
    name = " ".join(words).strip()
    if not number or not name:
        return [ctx.reply("case_staff.usage_partdone")]
    try:
        view = await cases.view_case(ctx.session, ctx.centre, ctx.now, number)
        part = next((p for p in view.parts if p.name == name), None) or next(
            (p for p in view.parts if name in p.name), None)
        if part is None:
            raise CaseRefused(CaseRefusal.BAD_PART, part=name)
        await cases.mark_part_done(ctx.session, ctx.centre, ctx.now, view.case.number, part.id,
                                   actor=ctx.actor)
    except CaseRefused as refused:
        return [refusal(ctx, refused)]
    return [ctx.reply("case_staff.part_marked", number=number_text(view.case.number),
                      part=part.name)]


async def expect(ctx: Ctx, args: str) -> list[Reply]:
    """A referred case's expected answer date: /expect N DATE."""
    number, words = split_number(args)
    day = parse_day(ctx, words[0]) if words else None
    if not number or day is None:
        return [ctx.reply("case_staff.usage_expect")]
    try:
        case = await cases.set_expected_answer(ctx.session, ctx.centre, ctx.now, number,
                                               actor=ctx.actor, expected_on=day)
    except CaseRefused as refused:
        return [refusal(ctx, refused)]
    return [ctx.reply("case_staff.expected_set", number=number_text(case.number),
                      day=day_text(ctx, day))]


COMMANDS: dict[str, Command] = {"case": show, "cases": open_list, "ready": ready, "collected": collected,
            "extend": extend, "resubmit": resubmitted, "correct": correct, "refuse": refuse_case,
            "partdone": part_done, "expect": expect, "opencase": open_from_booking,
            "walkincase": walk_in_case}
STEPS: dict[StepName, StepHandler] = {StaffCase.KIND: pick_kind, StaffCase.MISSING: pick_missing,
         StaffCase.REASON: ask_reason, StaffCase.BASIS: ask_basis, StaffCase.PARTS: ask_parts}
TEXT_STEPS = frozenset({StaffCase.MISSING, StaffCase.REASON, StaffCase.BASIS, StaffCase.PARTS})
ACTIONS: dict[type[Payload], Action] = {ApproveExtension: approve_button, RefuseExtension: refuse_button}
