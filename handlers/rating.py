"""Rating a served appointment on the five-level 好差评 scale, then an optional comment.
The request arrives as a notification with five self-contained choices. Diagram:
docs/flows/rating.mmd."""

from __future__ import annotations

from handlers.context import Ctx, Event, global_option, option
from handlers.core import Reply
from handlers.menu import main_menu
from storage.feedback import COMPLAINT_AT_OR_BELOW, LEVELS, FeedbackError, add_comment, rate

FLOW = "rating"
TEXT_STEPS = ("comment",)


def rating_choices(ctx: Ctx, appointment_id: int) -> tuple[tuple, ...]:  # type: ignore[type-arg]
    """Five buttons, 非常满意 first, that work outside any flow (they come in a notification)."""
    return tuple((global_option(ctx.t(f"rating.level_{level}"), f"rate:{appointment_id}:{level}"),)
                 for level in LEVELS)


async def record(ctx: Ctx, appointment_id: int, level: int) -> list[Reply]:
    """Save the rating (one per appointment) and ask for an optional comment."""
    feedback = ctx.settings.conversation
    try:
        rating, complaint = await rate(
            ctx.session, ctx.centre, ctx.now, appointment_id=appointment_id,
            identity_id=ctx.identity.id, person_id=ctx.identity.person_id, level=level,
            answer_days=feedback.complaint_answer_working_days,
            resolve_days=feedback.complaint_resolution_working_days)
    except FeedbackError as refused:
        return [ctx.reply(f"rating.{refused.reason.value}"), main_menu(ctx)]
    ctx.goto(FLOW, "comment", rating=rating.id)
    key = "rating.thanks_low" if level <= COMPLAINT_AT_OR_BELOW else "rating.thanks"
    return [ctx.reply(key, [option(ctx.t("rating.no_comment"), "skip")],
                      number=complaint.id if complaint else "")]


async def comment(ctx: Ctx, event: Event) -> list[Reply]:
    """Keep the citizen's comment with the rating (and its complaint, if one was opened)."""
    if event.kind == "text" and event.value.strip():
        await add_comment(ctx.session, int(ctx.data["rating"]), event.value.strip())
        ctx.end()
        return [ctx.reply("rating.comment_saved"), main_menu(ctx)]
    ctx.end()
    return [main_menu(ctx)]


STEPS = {"comment": comment}
