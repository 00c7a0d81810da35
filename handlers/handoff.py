"""Talk to a person (人工服务): the citizen is told who will answer and when; the staff group
gets an alert through the outbox. Once a staff member claims it (首问负责), what the citizen
writes is relayed to the staff group naming the owner, and the owner's answers come back to
the citizen as "relay" notifications on their own channel. Closing it offers a rating of the
help. Diagram: docs/flows/handoff.mmd."""

from __future__ import annotations

from sqlalchemy import select

from handlers.context import Ctx, Event, option
from handlers.core import Reply, as_id
from handlers.i18n import format_when
from handlers.menu import main_menu
from storage import handoffs
from storage.identity import mask_mobile, mask_name
from storage.models import Handoff, Person, RequestStatus
from storage.outbox import STAFF_TARGET, enqueue
from storage.rules import staff_back_at

FLOW = "handoff"
TEXT_STEPS = ("open",)
CITIZEN_ACTIONS = ("talk", "rateh")


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
    said = list(ctx.data.get("_said") or [])
    ctx.forget("_said")
    ctx.goto(FLOW, "open")
    if existing is not None:
        ctx.remember(handoff=existing.id)
        return [ctx.reply("handoff.already_open", number=existing.id)]
    person = await ctx.session.get(Person, ctx.identity.person_id) \
        if ctx.identity.person_id else None
    back = staff_back_at(ctx.now, ctx.settings.conversation.staff_hours, ctx.centre.calendar,
                         ctx.centre.tz)
    context = {"flow": came_from, "locale": ctx.locale, "messages": said}
    if back is not None:
        # Escalation counts from when staff are back, not from a night-time request.
        context["answer_from"] = back.isoformat()
    handoff = Handoff(identity_id=ctx.identity.id, status=RequestStatus.OPEN, opened_at=ctx.now,
                      context=context)
    ctx.session.add(handoff)
    await ctx.session.flush()
    ctx.remember(handoff=handoff.id)
    await enqueue(ctx.session, kind="handoff_alert", now=ctx.now, target=STAFF_TARGET,
                  dedup_key=f"handoff:{handoff.id}:open",
                  payload={"handoff": handoff.id, "channel": ctx.incoming.channel,
                           "flow": came_from,
                           "name": mask_name(person.name) if person else None,
                           "mobile": mask_mobile(person.mobile) if person else None})
    if back is None:
        return [ctx.reply("handoff.opened", number=handoff.id,
                          minutes=ctx.settings.conversation.handoff_escalate_minutes)]
    return [ctx.reply("handoff.opened_closed_hours", number=handoff.id,
                      when=format_when(ctx.local(back), ctx.locale))]


async def open_step(ctx: Ctx, event: Event) -> list[Reply]:
    """While the hand-off is open, pass the citizen's words to its owner (or keep them for
    whoever claims it)."""
    handoff = await ctx.session.get(Handoff, ctx.data.get("handoff"))
    if handoff is None or handoff.status not in (RequestStatus.OPEN, RequestStatus.CLAIMED):
        ctx.end()
        return [main_menu(ctx)]
    if event.kind == "text" and event.value:
        passed = await handoffs.relay_from_citizen(ctx.session, ctx.now, handoff, event.value,
                                                   message_key=ctx.incoming.message_id)
        return [ctx.reply("relay.passed" if passed else "handoff.noted", number=handoff.id)]
    return [ctx.reply("handoff.already_open", number=handoff.id)]


async def global_action(ctx: Ctx, payload: str) -> list[Reply]:
    """A citizen's button on a staff answer ("talk": write back) or on the closing message
    ("rateh": rate the help)."""
    action, _, value = payload.partition(":")
    number, _, level = value.partition(":")
    handoff_id = as_id(number)
    handoff = await ctx.session.get(Handoff, handoff_id) if handoff_id is not None else None
    if handoff is None or handoff.identity_id != ctx.identity.id:
        return [ctx.reply("core.stale"), main_menu(ctx)]
    if action == "talk":
        if handoff.status == RequestStatus.CLOSED:
            return [ctx.reply("relay.ended", number=handoff.id), main_menu(ctx)]
        ctx.goto(FLOW, "open", handoff=handoff.id)
        return [ctx.reply("relay.write_now", number=handoff.id)]
    if as_id(level) is None:
        return [ctx.reply("core.stale"), main_menu(ctx)]
    feedback = ctx.settings.conversation
    rated = await handoffs.rate_handoff(
        ctx.session, ctx.centre, ctx.now, handoff_id=handoff.id, identity_id=ctx.identity.id,
        level=int(level), answer_days=feedback.complaint_answer_working_days,
        resolve_days=feedback.complaint_resolution_working_days)
    if rated is None:
        return [ctx.reply("rating.already_rated"), main_menu(ctx)]
    rating, complaint = rated
    if complaint is None:
        ctx.end()
        return [ctx.reply("relay.rated"), main_menu(ctx)]
    # The rating flow's comment step keeps the citizen's words with the rating and complaint.
    ctx.goto("rating", "comment", rating=rating.id)
    return [ctx.reply("rating.thanks_low", [option(ctx.t("rating.no_comment"), "skip")],
                      number=complaint.id)]


STEPS = {"open": open_step}
