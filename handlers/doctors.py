"""How doctors and windows (resources) are shown in the booking flow: the list to pick from,
their names with titles on times and summaries, and what a full expert offers instead."""

from __future__ import annotations

from handlers.context import Ctx, option
from handlers.core import Choice, Reply
from handlers.i18n import format_day
from handlers.payloads import AnyDoctor, Button, DoctorPick, SlotPick
from handlers.render import slot_label
from storage.models import Service
from storage.resources import ResourceInfo, resource_info, resources_of
from storage.seats import SlotChoice, nearest_of_resource


def title_text(ctx: Ctx, resource: ResourceInfo) -> str:
    """主任医师, 副主任医师... for a doctor; 窗口 for a window."""
    if resource.kind != "doctor" or not resource.title:
        return ctx.t("doctor.window")
    return ctx.t(f"doctor.title_{resource.title}")


def name_text(ctx: Ctx, resource: ResourceInfo) -> str:
    return resource.name.get(ctx.locale)


def pick_reply(ctx: Ctx, service_name: str, doctors: list[ResourceInfo]) -> Reply:
    """The doctors of a service, each with title, specialty and introduction, to pick from."""
    lines = "\n".join(ctx.t("doctor.line", name=name_text(ctx, d), title=title_text(ctx, d),
                            specialty=d.specialty.get(ctx.locale) if d.specialty else "-",
                            intro=d.intro.get(ctx.locale) if d.intro else "").rstrip()
                      for d in doctors)
    rows = [[option(ctx.t("doctor.any"), AnyDoctor())]]
    rows += [[option(ctx.t("doctor.button", name=name_text(ctx, d), title=title_text(ctx, d)),
                     DoctorPick(d.id))] for d in doctors]
    rows.append([option(ctx.t("common.back"), Button.BACK)])
    return ctx.reply("doctor.pick", *rows, service=service_name, doctors=lines)


async def names_by_id(ctx: Ctx, service_id: int) -> dict[int, ResourceInfo]:
    return {r.id: r for r in await resources_of(ctx.session, service_id)}


def choice_label(ctx: Ctx, choice: SlotChoice, names: dict[int, ResourceInfo]) -> str:
    """A day and time offered instead, with the doctor's name when it has one."""
    label = f"{format_day(choice.local_date, ctx.locale)} {slot_label(ctx, choice.starts_at, choice.ends_at)}"
    doctor = names.get(choice.resource_id) if choice.resource_id is not None else None
    if doctor is not None:
        label += f" {name_text(ctx, doctor)}"
    return label + ctx.t("booking.slot_left", left=choice.remaining)


async def full_reply(ctx: Ctx, service_id: int, resource_id: int) -> Reply:
    """The chosen doctor has no free time: the nearest free times, same doctor first."""
    service = await ctx.session.get(Service, service_id)
    wanted = await resource_info(ctx.session, resource_id)
    assert service is not None and wanted is not None
    names = await names_by_id(ctx, service_id)
    choices = await nearest_of_resource(ctx.session, ctx.centre, service, resource_id, ctx.now)
    rows: list[list[Choice]] = [[option(choice_label(ctx, c, names), SlotPick(c.slot_id))] for c in choices]
    rows.append([option(ctx.t("doctor.any"), AnyDoctor()),
                 option(ctx.t("doctor.other_doctors"), Button.BACK)])
    return ctx.reply("doctor.full" if choices else "doctor.full_none", *rows,
                     name=name_text(ctx, wanted), title=title_text(ctx, wanted))


async def doctor_line(ctx: Ctx, resource_id: int | None, key: str = "doctor.summary_line") -> str:
    """"医生：陈建国 主任医师" for a slot or booking with a doctor; empty without one."""
    if resource_id is None:
        return ""
    resource = await resource_info(ctx.session, resource_id)
    if resource is None:
        return ""
    return ctx.t(key, name=name_text(ctx, resource), title=title_text(ctx, resource))
