"""A patient answers what a doctor's 停诊 offered them (替诊: accept or cancel; 换诊: a new time
or cancel), from the buttons of the notice; and asks about a doctor's closures (停诊查询,
``/doctor NAME``)."""

from __future__ import annotations

from handlers import notices
from handlers.context import Ctx, global_option
from handlers.core import Choice, Reply
from handlers.doctors import name_text, title_text
from handlers.flow import Flow
from handlers.i18n import format_day, format_time
from handlers.menu import main_menu
from handlers.payloads import AcceptSubstitute, DeclineSubstitute, MoveCancel, MoveTo, Rebook
from handlers.render import when_text
from storage.models import Outbox, Slot
from storage.resource_closures import (
    OfferGone,
    OfferView,
    TimeGone,
    answer_move,
    answer_substitute,
    open_offer,
    upcoming_closures,
    waiting_offers,
)
from storage.resources import ResourceInfo, all_resources, find_resources, resource_info


def _gone(ctx: Ctx) -> list[Reply]:
    return [ctx.reply("closure_offer.gone"), main_menu(ctx)]


def _rebook(ctx: Ctx, key: str, view: OfferView) -> list[Reply]:
    return [ctx.reply(key, [global_option(ctx.t("notice.rebook"), Rebook(view.appointment.service_id))],
                      code=view.appointment.code)]


async def _who(ctx: Ctx, resource_id: int | None) -> str:
    resource = await resource_info(ctx.session, resource_id) if resource_id is not None else None
    return f"{name_text(ctx, resource)} {title_text(ctx, resource)}" if resource else "-"


async def accept_substitute(ctx: Ctx, payload: AcceptSubstitute) -> list[Reply]:
    """Accept the doctor who substitutes (替诊)."""
    try:
        view = await answer_substitute(ctx.session, ctx.centre, ctx.now, offer_id=payload.offer,
                                       account_id=ctx.identity.id, accept=True, actor=ctx.actor)
    except OfferGone:
        return _gone(ctx)
    return [ctx.reply("closure_offer.accepted", code=view.appointment.code,
                      substitute=await _who(ctx, view.offer.substitute_id))]


async def decline_substitute(ctx: Ctx, payload: DeclineSubstitute) -> list[Reply]:
    """Decline the substitute: the booking is cancelled without a strike."""
    try:
        view = await answer_substitute(ctx.session, ctx.centre, ctx.now, offer_id=payload.offer,
                                       account_id=ctx.identity.id, accept=False, actor=ctx.actor)
    except OfferGone:
        return _gone(ctx)
    return _rebook(ctx, "closure_offer.declined", view)


async def move_to(ctx: Ctx, payload: MoveTo) -> list[Reply]:
    """Move the booking to the time picked (换诊); a time just taken offers the others."""
    try:
        view = await answer_move(ctx.session, ctx.centre, ctx.now, offer_id=payload.offer,
                                 account_id=ctx.identity.id, slot_id=payload.slot, actor=ctx.actor)
    except OfferGone:
        return _gone(ctx)
    except TimeGone:
        return [await _others(ctx, payload)]
    return [ctx.reply("closure_offer.moved", code=view.appointment.code,
                      when=when_text(ctx, view.appointment.starts_at),
                      doctor=await _who(ctx, view.appointment.resource_id))]


async def _others(ctx: Ctx, taken: MoveTo) -> Reply:
    try:
        view = await open_offer(ctx.session, ctx.now, taken.offer, ctx.identity.id)
    except OfferGone:
        return ctx.reply("closure_offer.gone")
    rows: list[list[Choice]] = []
    for slot_id in view.offer.slot_ids:
        slot = await ctx.session.get(Slot, slot_id)
        if slot is None or slot_id == taken.slot or slot.starts_at <= ctx.now:
            continue
        local = ctx.local(slot.starts_at)
        label = f"{format_day(local.date(), ctx.locale)} {format_time(local)} {await _who(ctx, slot.resource_id)}"
        rows.append([global_option(label, MoveTo(view.offer.id, slot.id))])
    rows.append([global_option(ctx.t("closure_offer.move_cancel"), MoveCancel(view.offer.id))])
    return ctx.reply("closure_offer.time_gone", *rows)


async def move_cancel(ctx: Ctx, payload: MoveCancel) -> list[Reply]:
    """Cancel instead of moving: no strike."""
    try:
        view = await answer_move(ctx.session, ctx.centre, ctx.now, offer_id=payload.offer,
                                 account_id=ctx.identity.id, slot_id=None, actor=ctx.actor)
    except OfferGone:
        return _gone(ctx)
    return _rebook(ctx, "closure_offer.move_cancelled", view)


async def doctor(ctx: Ctx, args: str) -> list[Reply]:
    """停诊查询: a doctor's title, specialty and introduction, and their coming closures."""
    word = args.strip()
    if not word:
        return [ctx.reply("closure_query.usage", names=_names(ctx, await all_resources(ctx.session)))]
    found = await find_resources(ctx.session, word)
    if len(found) != 1:
        return [ctx.reply("closure_query.unknown" if not found else "closure_query.ambiguous", word=word,
                          names=_names(ctx, found or await all_resources(ctx.session)))]
    resource = found[0]
    lines = [ctx.t("closure_query.head", name=name_text(ctx, resource), title=title_text(ctx, resource),
                   specialty=resource.specialty.get(ctx.locale) if resource.specialty else "-")]
    if resource.intro:
        lines.append(resource.intro.get(ctx.locale))
    closures = await upcoming_closures(ctx.session, ctx.now, resource.id)
    if not closures:
        lines.append(ctx.t("closure_query.none"))
    for closure in closures:
        lines.append(ctx.t("closure_query.line", start=when_text(ctx, closure.starts_at),
                           end=when_text(ctx, closure.ends_at), reason=closure.reason))
    return [Reply("\n".join(lines)), main_menu(ctx)]


async def waiting_offer_replies(ctx: Ctx, appointment_ids: list[int]) -> list[Reply]:
    """The offers still waiting for this citizen's answer (替诊, 换诊, a staff /move), each as
    its notice with its buttons: where a WeChat template (sent while the chat window was
    closed) sends the citizen to answer."""
    replies: list[Reply] = []
    for waiting in await waiting_offers(ctx.session, ctx.now, appointment_ids):
        # The notice as it would be sent now, made from an outbox row that is never stored.
        row = Outbox(kind=waiting.kind, appointment_id=waiting.appointment_id,
                     payload={"offer": waiting.offer_id, "reason": waiting.reason},
                     dedup_key="", target=None)
        rendered = await notices.render(ctx.session, ctx.centre, ctx.settings, row, ctx.identity,
                                        ctx.now)
        if rendered.drop:
            continue
        head = ctx.t("move.pending" if waiting.kind == "move_offer" else "closure_offer.pending")
        for reply in rendered.replies:
            replies.append(Reply(f"{head}\n{reply.text}", reply.choices))
    return replies


def _names(ctx: Ctx, resources: list[ResourceInfo]) -> str:
    return "、".join(f"{name_text(ctx, r)}（{title_text(ctx, r)}）" for r in resources) or "-"


FLOW = Flow(
    "closure_offer",
    commands={"doctor": doctor},
    actions={AcceptSubstitute: accept_substitute, DeclineSubstitute: decline_substitute,
             MoveTo: move_to, MoveCancel: move_cancel})
