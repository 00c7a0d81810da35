"""Talk to a person (人工服务): the citizen is told who will answer and when; the staff group
gets an alert through the outbox. Once a staff member claims it (首问负责), what the citizen
writes is relayed to the staff group naming the owner, and the owner's answers come back to
the citizen as "relay" notifications on their own channel. Closing it offers a rating of the
help. Diagram: docs/flows/handoff.mmd."""

from __future__ import annotations

from handlers.context import Ctx, Event, option
from handlers.core import Reply
from handlers.flow import Flow
from handlers.i18n import format_when
from handlers.menu import main_menu
from handlers.no_staff import no_staff
from handlers.payloads import Button, Main, RateHelp, Talk
from handlers.rating import ask_comment
from handlers.steps import Handoff
from storage import accounts, handoffs
from storage.models import Handoff as HandoffRow
from storage.models import RequestStatus
from storage.rules import staff_back_at
from storage.seats import release_holds


def offer(ctx: Ctx) -> Reply:
    """Offer a person after the bot did not understand."""
    return ctx.reply("handoff.offer", [option(ctx.t("menu.human"), Main("human"))],
                     [option(ctx.t("menu.back_main"), Main("menu"))])


async def human(ctx: Ctx, args: str) -> list[Reply]:
    """Open a hand-off (or continue the open one) and tell the citizen what happens next."""
    await release_holds(ctx.session, ctx.actor)
    if not ctx.staff_reachable:
        return await no_staff(ctx)
    existing = await handoffs.active_handoff(ctx.session, ctx.identity.id)
    came_from = ctx.flow
    said = list(ctx.data.get("_said") or [])
    ctx.forget("_said")
    ctx.goto(Handoff.OPEN)
    if existing is not None:
        ctx.remember(handoff=existing.id)
        return [ctx.reply("handoff.already_open", number=existing.id)]
    back = staff_back_at(ctx.now, ctx.settings.conversation.staff_hours, ctx.centre.calendar,
                         ctx.centre.tz)
    people = await accounts.people_of(ctx.session, account_id=ctx.identity.id)
    handoff = await handoffs.open_handoff(
        ctx.session, ctx.now, identity_id=ctx.identity.id,
        person_id=people[0].person_id if people else None,
        channel=ctx.incoming.channel, came_from=came_from, locale=ctx.locale, said=said,
        answer_from=back)
    ctx.remember(handoff=handoff.id)
    if back is None:
        return [ctx.reply("handoff.opened", number=handoff.id,
                          minutes=ctx.settings.conversation.handoff_escalate_minutes)]
    return [ctx.reply("handoff.opened_closed_hours", number=handoff.id,
                      when=format_when(ctx.local(back), ctx.locale))]


async def open_step(ctx: Ctx, event: Event) -> list[Reply]:
    """While the hand-off is open, pass the citizen's words to its owner (or keep them for
    whoever claims it)."""
    handoff = await ctx.session.get(HandoffRow, ctx.data.get("handoff"))
    if handoff is None or handoff.status not in (RequestStatus.OPEN, RequestStatus.CLAIMED):
        ctx.end()
        return [main_menu(ctx)]
    if event.is_text and event.value:
        passed = await handoffs.relay_from_citizen(ctx.session, ctx.now, handoff, event.value,
                                                   message_key=ctx.incoming.message_id)
        return [ctx.reply("relay.passed" if passed else "handoff.noted", number=handoff.id)]
    return [ctx.reply("handoff.already_open", number=handoff.id)]


async def _mine(ctx: Ctx, number: int) -> HandoffRow | None:
    handoff = await ctx.session.get(HandoffRow, number)
    return handoff if handoff is not None and handoff.identity_id == ctx.identity.id else None


async def talk(ctx: Ctx, payload: Talk) -> list[Reply]:
    """The citizen's button on a staff answer: write back."""
    handoff = await _mine(ctx, payload.handoff)
    if handoff is None:
        return [ctx.reply("core.stale"), main_menu(ctx)]
    if handoff.status == RequestStatus.CLOSED:
        return [ctx.reply("relay.ended", number=handoff.id), main_menu(ctx)]
    ctx.goto(Handoff.OPEN, handoff=handoff.id)
    return [ctx.reply("relay.write_now", number=handoff.id)]


async def rate_help(ctx: Ctx, payload: RateHelp) -> list[Reply]:
    """The citizen's rating of the help, on the message that closed the hand-off."""
    handoff = await _mine(ctx, payload.handoff)
    if handoff is None:
        return [ctx.reply("core.stale"), main_menu(ctx)]
    feedback = ctx.settings.conversation
    rated = await handoffs.rate_handoff(
        ctx.session, ctx.centre, ctx.now, handoff_id=handoff.id, identity_id=ctx.identity.id,
        level=payload.level, answer_days=feedback.complaint_answer_working_days,
        resolve_days=feedback.complaint_resolution_working_days)
    if rated is None:
        return [ctx.reply("rating.already_rated"), main_menu(ctx)]
    rating, complaint = rated
    if complaint is None:
        ctx.end()
        return [ctx.reply("relay.rated"), main_menu(ctx)]
    # The rating flow's comment step keeps the citizen's words with the rating and complaint.
    return ask_comment(ctx, rating.id, low=True, complaint=complaint.id)


def _ask_end(ctx: Ctx, number: int, key: str = "words.end_handoff") -> Reply:
    ctx.goto(Handoff.END, handoff=number)
    return ctx.reply(key, [option(ctx.t("words.end_handoff_yes"), Button.YES)],
                     [option(ctx.t("words.end_handoff_no"), Button.NO)],
                     [option(ctx.t("menu.back_main"), Main("menu"))], number=number)


async def confirm_end(ctx: Ctx) -> list[Reply]:
    """取消 while a hand-off is open: ask whether to end it (a word typed in passing must not
    drop the citizen's place in the queue)."""
    await release_holds(ctx.session, ctx.actor)
    handoff = await handoffs.active_handoff(ctx.session, ctx.identity.id)
    if handoff is None:
        ctx.end()
        return [ctx.reply("words.nothing_to_cancel"), main_menu(ctx)]
    return [_ask_end(ctx, handoff.id)]


async def ask_to_end_open(ctx: Ctx, replies: list[Reply]) -> list[Reply]:
    """After another flow was cancelled: when a hand-off is still open, ask whether to end it
    too, in place of the menu (never leave it open without a word)."""
    handoff = await handoffs.active_handoff(ctx.session, ctx.identity.id)
    if handoff is None:
        return replies
    return [*(reply for reply in replies if not reply.choices),
            _ask_end(ctx, handoff.id, "words.end_handoff_too")]


async def end_step(ctx: Ctx, event: Event) -> list[Reply]:
    """End the hand-off (staff are told), or keep waiting for the answer."""
    if event.button is Button.YES:
        return await withdraw(ctx)
    handoff = await handoffs.active_handoff(ctx.session, ctx.identity.id)
    if handoff is None:
        ctx.end()
        return [main_menu(ctx)]
    if event.button is Button.NO:
        ctx.goto(Handoff.OPEN, handoff=handoff.id)
        return [ctx.reply("words.handoff_kept", number=handoff.id)]
    return [_ask_end(ctx, handoff.id)]


async def withdraw(ctx: Ctx) -> list[Reply]:
    """Withdraw the open hand-off (staff are told) and go back to the menu."""
    await release_holds(ctx.session, ctx.actor)
    withdrawn = await handoffs.withdraw_handoff(ctx.session, ctx.now, identity_id=ctx.identity.id)
    ctx.end()
    if withdrawn is None:
        return [ctx.reply("core.cancelled_nothing_held"), main_menu(ctx)]
    return [ctx.reply("handoff.withdrawn", number=withdrawn.id), main_menu(ctx)]


FLOW = Flow("handoff", steps={Handoff.OPEN: open_step, Handoff.END: end_step},
            text_steps=frozenset({Handoff.OPEN}), commands={"human": human},
            actions={Talk: talk, RateHelp: rate_help}, expires=False, cancel=confirm_end)
