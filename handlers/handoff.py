"""Talk to a person (人工服务): the citizen is told who will answer and when; the staff group
gets an alert through the outbox. Diagram: docs/flows/handoff.mmd."""

from __future__ import annotations

from sqlalchemy import select

from handlers.context import Ctx, Event, option
from handlers.core import Reply
from handlers.i18n import format_when
from handlers.menu import main_menu
from storage.identity import mask_mobile, mask_name
from storage.models import Handoff, Person, RequestStatus
from storage.outbox import STAFF_TARGET, enqueue
from storage.rules import staff_back_at

FLOW = "handoff"
TEXT_STEPS = ("open",)


def offer(ctx: Ctx) -> Reply:
    """Offer a person after the bot did not understand."""
    return ctx.reply("handoff.offer", [option(ctx.t("menu.human"), "main:human")],
                     [option(ctx.t("menu.back_main"), "main:menu")])


async def start(ctx: Ctx, event: Event) -> list[Reply]:
    """Open a hand-off (or continue the open one) and tell the citizen what happens next."""
    existing = await ctx.session.scalar(select(Handoff).where(
        Handoff.identity_id == ctx.identity.id,
        Handoff.status.in_([RequestStatus.OPEN, RequestStatus.CLAIMED])))
    came_from = ctx.flow
    ctx.goto(FLOW, "open")
    if existing is not None:
        ctx.remember(handoff=existing.id)
        return [ctx.reply("handoff.already_open", number=existing.id)]
    person = await ctx.session.get(Person, ctx.identity.person_id) if ctx.identity.person_id else None
    handoff = Handoff(identity_id=ctx.identity.id, status=RequestStatus.OPEN, opened_at=ctx.now,
                      context={"flow": came_from, "locale": ctx.locale})
    ctx.session.add(handoff)
    await ctx.session.flush()
    ctx.remember(handoff=handoff.id)
    await enqueue(ctx.session, kind="handoff_alert", now=ctx.now, target=STAFF_TARGET,
                  dedup_key=f"handoff:{handoff.id}:open",
                  payload={"handoff": handoff.id, "channel": ctx.incoming.channel, "flow": came_from,
                           "name": mask_name(person.name) if person else None,
                           "mobile": mask_mobile(person.mobile) if person else None})
    back = staff_back_at(ctx.now, ctx.settings.conversation.staff_hours, ctx.centre.calendar,
                         ctx.centre.tz)
    if back is None:
        return [ctx.reply("handoff.opened", number=handoff.id,
                          minutes=ctx.settings.conversation.handoff_escalate_minutes)]
    return [ctx.reply("handoff.opened_closed_hours", number=handoff.id,
                      when=format_when(ctx.local(back), ctx.locale))]


async def open_step(ctx: Ctx, event: Event) -> list[Reply]:
    """While waiting for staff, keep the citizen's words for the staff member."""
    handoff = await ctx.session.get(Handoff, ctx.data.get("handoff"))
    if handoff is None or handoff.status not in (RequestStatus.OPEN, RequestStatus.CLAIMED):
        ctx.end()
        return [main_menu(ctx)]
    if event.kind == "text" and event.value:
        notes = list(handoff.context.get("messages", []))[-9:] + [event.value[:500]]
        handoff.context = {**handoff.context, "messages": notes}
        return [ctx.reply("handoff.noted", number=handoff.id)]
    return [ctx.reply("handoff.already_open", number=handoff.id)]


STEPS = {"open": open_step}
