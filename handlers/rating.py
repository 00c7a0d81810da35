"""Rating a served appointment on the five-level 好差评 scale, then an optional comment.
The request arrives as a notification with five self-contained choices. Diagram:
docs/flows/rating.mmd."""

from __future__ import annotations

from handlers.context import Ctx, Event, option
from handlers.core import Reply
from handlers.flow import Flow
from handlers.menu import main_menu
from handlers.payloads import Button, Rate
from handlers.steps import Rating
from storage.feedback import COMPLAINT_AT_OR_BELOW, FeedbackError, add_comment, rate


async def record(ctx: Ctx, payload: Rate) -> list[Reply]:
    """Save the rating (one per appointment) and ask for an optional comment."""
    feedback = ctx.settings.conversation
    try:
        rating, complaint = await rate(
            ctx.session, ctx.centre, ctx.now, appointment_id=payload.appointment,
            identity_id=ctx.identity.id, level=payload.level,
            answer_days=feedback.complaint_answer_working_days,
            resolve_days=feedback.complaint_resolution_working_days)
    except FeedbackError as refused:
        return [ctx.reply(f"rating.{refused.reason.value}"), main_menu(ctx)]
    return ask_comment(ctx, rating.id, low=payload.level <= COMPLAINT_AT_OR_BELOW,
                       complaint=complaint.id if complaint else None)


def ask_comment(ctx: Ctx, rating_id: int, *, low: bool, complaint: int | None) -> list[Reply]:
    """Thank the citizen and offer to add a comment (a low rating has opened a complaint)."""
    ctx.goto(Rating.COMMENT, rating=rating_id)
    return [ctx.reply("rating.thanks_low" if low else "rating.thanks",
                      [option(ctx.t("rating.no_comment"), Button.SKIP)],
                      number=complaint if complaint is not None else "")]


async def comment(ctx: Ctx, event: Event) -> list[Reply]:
    """Keep the citizen's comment with the rating (and its complaint, if one was opened)."""
    if event.is_text and event.value.strip():
        await add_comment(ctx.session, ctx.now, int(ctx.data["rating"]), event.value.strip())
        ctx.end()
        return [ctx.reply("rating.comment_saved"), main_menu(ctx)]
    ctx.end()
    return [main_menu(ctx)]


FLOW = Flow("rating", steps={Rating.COMMENT: comment}, text_steps=frozenset({Rating.COMMENT}),
            actions={Rate: record})
