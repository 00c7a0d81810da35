"""Texts built from catalog data: the materials list (一次性告知), service details, an
appointment's details, and its .ics calendar file."""

from __future__ import annotations

import datetime as dt
import functools
from zoneinfo import ZoneInfo

import icalendar

from handlers.context import Ctx
from handlers.core import Attachment
from handlers.i18n import Speaker, format_day, format_time, format_when
from storage.catalog import WEEKDAYS, ServiceDef
from storage.models import Appointment, Department


def materials_text(ctx: Ctx | Speaker, service: ServiceDef) -> str:
    """Every material to bring, one per line, with form, copies, issuer and notes. Marked
    with bullets, not numbers: the choices under the list are the numbered things."""
    lines = []
    for material in service.materials:
        form = ctx.t(f"material.{material.form}")
        copies = ctx.t("material.copies", copies=material.copies) if material.copies > 1 else ""
        line = f"• {material.name.get(ctx.locale)}（{form}{copies}）" if ctx.locale != "en" \
            else f"• {material.name.get(ctx.locale)} ({form}{copies})"
        if material.issuer:
            line += ctx.t("material.issuer", issuer=material.issuer.get(ctx.locale))
        if material.notes:
            line += ctx.t("material.note", note=material.notes.get(ctx.locale))
        lines.append(line)
    return "\n".join(lines)


def processing_text(ctx: Ctx | Speaker, service: ServiceDef) -> str:
    if service.processing_days == 0:
        return ctx.t("service.immediate")
    return ctx.t("service.processing_days", days=service.processing_days)


def hours_text(ctx: Ctx | Speaker, service: ServiceDef) -> str:
    """"工作日 09:00-12:00、13:30-17:00；周五 09:00-12:00"."""
    separator = ", " if ctx.locale == "en" else "、"
    parts = []
    default = service.hours.get("default")
    if default:
        parts.append(ctx.t("service.hours_default") + " " + separator.join(f"{a}-{b}" for a, b in default))
    for index, key in enumerate(WEEKDAYS):
        if key in service.hours:
            label = ctx.t(f"weekday.{index}")
            periods = service.hours[key]
            parts.append(label + " " + (separator.join(f"{a}-{b}" for a, b in periods)
                                        if periods else ctx.t("service.closed")))
    return ("; " if ctx.locale == "en" else "；").join(parts)


def notice_lines(ctx: Ctx | Speaker, service: ServiceDef, department: Department | None) -> str:
    """Everything the one-time notice (一次性告知) tells besides the materials, in the order
    the centres print it: conditions, procedure (办理程序), place, hours, fees, time limit,
    legal basis (办事依据) and the consultation phone (the service's, else its department's)."""
    lines = []
    if service.eligibility:
        lines.append(ctx.t("booking.eligibility", text=service.eligibility.get(ctx.locale)))
    if service.procedure:
        lines.append(ctx.t("words.notice.procedure", steps="\n".join(
            ctx.t("words.notice.step", number=number, text=step.get(ctx.locale))
            for number, step in enumerate(service.procedure, start=1))))
    address = department.definition["address"]["en" if ctx.locale == "en" else "zh"] \
        if department is not None else ""
    lines.append(ctx.t("words.notice.place", place=service.place.get(ctx.locale)))
    if address:
        lines.append(ctx.t("words.notice.address", address=address))
    lines.append(ctx.t("words.notice.hours", hours=hours_text(ctx, service)))
    lines.append(ctx.t("words.notice.fees", fees=service.fees.get(ctx.locale)))
    lines.append(ctx.t("words.notice.processing", processing=processing_text(ctx, service)))
    if service.legal_basis:
        lines.append(ctx.t("guide.legal_basis", text=service.legal_basis.get(ctx.locale)))
    phone = consultation_phone(service, department)
    if phone:
        lines.append(ctx.t("words.notice.phone", phone=phone))
    return "\n".join(lines)


def consultation_phone(service: ServiceDef, department: Department | None) -> str:
    """The service's enquiries number, else its department's ("" when neither has one)."""
    return service.phone or (department.definition.get("phone") or "" if department is not None else "")


def notice_text(ctx: Ctx, service: ServiceDef, department: Department | None = None) -> str:
    """The one-time full notice (一次性告知) shown before a date is picked."""
    return ctx.t("booking.notice_head", service=service.name.get(ctx.locale),
                 materials=materials_text(ctx, service)) + "\n" + notice_lines(ctx, service, department)


def service_details(ctx: Ctx, service: ServiceDef, department: Department | None) -> str:
    """Everything the service guide (办事指南) says about a service: its description and the
    same full notice as before booking."""
    text = ctx.t("words.notice.guide_head", service=service.name.get(ctx.locale),
                 description=service.description.get(ctx.locale) or "")
    return text.rstrip() + "\n\n" + ctx.t("words.notice.bring", materials=materials_text(ctx, service)) \
        + "\n" + notice_lines(ctx, service, department)


def appointment_text(ctx: Ctx, appointment: Appointment, service: ServiceDef,
                     department: Department | None) -> str:
    """Code, service, time, place and materials of one appointment."""
    start = ctx.local(appointment.starts_at)
    address = department.definition["address"]["en" if ctx.locale == "en" else "zh"] if department else ""
    return ctx.t("appointment.details", code=appointment.code, service=service.name.get(ctx.locale),
                 day=format_day(start.date(), ctx.locale), start=format_time(start),
                 end=format_time(ctx.local(appointment.ends_at)),
                 place=service.place.get(ctx.locale), address=address,
                 status=ctx.t(f"status.{appointment.status.value}"))


def slot_label(ctx: Ctx, starts_at: dt.datetime, ends_at: dt.datetime) -> str:
    return f"{format_time(ctx.local(starts_at))}-{format_time(ctx.local(ends_at))}"


def when_text(ctx: Ctx, when: dt.datetime) -> str:
    return format_when(ctx.local(when), ctx.locale, ctx.today)


@functools.lru_cache(maxsize=32)
def zone_component(zone: ZoneInfo, first_year: int, last_year: int) -> icalendar.Timezone:
    """The VTIMEZONE of ``zone`` for those years, built once per process and zone: icalendar
    finds the transitions by asking the zone's offset hour by hour, tens of milliseconds that
    were most of a confirmation's CPU. Only the years around the appointment: the whole
    1970-2038 history makes the file several times larger for nothing. (Read-only once built:
    every calendar file adds the same component.)"""
    return icalendar.Timezone.from_tzinfo(zone, tzid=zone.key, first_date=dt.date(first_year, 1, 1),
                                          last_date=dt.date(last_year, 12, 31))


def calendar_file(ctx: Ctx, appointment: Appointment, service: ServiceDef,
                  department: Department | None) -> Attachment:
    """An RFC 5545 .ics file with the booking code, place and materials, in the centre's time
    zone (its VTIMEZONE built from the zone's rules for the appointment's year)."""
    start, end = ctx.local(appointment.starts_at), ctx.local(appointment.ends_at)
    address = department.definition["address"]["en" if ctx.locale == "en" else "zh"] if department else ""
    summary = ctx.t("ics.summary", service=service.name.get(ctx.locale), code=appointment.code)
    event = icalendar.Event()
    event.add("uid", f"{appointment.code}-{appointment.id}@yuyue")
    event.add("dtstamp", ctx.now.astimezone(dt.UTC))
    event.add("dtstart", start)
    event.add("dtend", end)
    event.add("summary", summary)
    event.add("location", f"{service.place.get(ctx.locale)} {address}".strip())
    event.add("description", ctx.t("ics.description", code=appointment.code,
                                   materials=materials_text(ctx, service)))
    alarm = icalendar.Alarm()
    alarm.add("action", "DISPLAY")
    alarm.add("trigger", -dt.timedelta(hours=1))
    alarm.add("description", summary)
    event.add_component(alarm)
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//Yuyue//Booking//ZH")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add_component(zone_component(ctx.centre.tz, start.year - 1, end.year + 1))
    calendar.add_component(event)
    return Attachment(filename=f"yuyue-{appointment.code}.ics", content=calendar.to_ical(),
                      mime="text/calendar", caption=ctx.t("ics.caption"))
