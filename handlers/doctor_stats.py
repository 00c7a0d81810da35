"""``/stats doctor NAME [period]``: one doctor's or window's figures for managers (bookings,
attendance, no-shows, utilisation, ratings, closures and late notices)."""

from __future__ import annotations

from handlers.context import Ctx
from handlers.core import Reply
from handlers.doctors import name_text, title_text
from handlers.i18n import format_day
from storage.resources import all_resources, find_resources
from storage.stats.periods import Period, StatsError, parse_period
from storage.stats.resources import resource_figures

WORDS = ("doctor", "医生", "window", "窗口")


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _period_text(ctx: Ctx, period: Period) -> str:
    if period.first == period.last:
        return format_day(period.first, ctx.locale)
    return f"{format_day(period.first, ctx.locale)} – {format_day(period.last, ctx.locale)}"


async def doctor_stats(ctx: Ctx, words: list[str]) -> list[Reply]:
    """Answer the figures of one doctor or window."""
    if not words:
        names = "、".join(f"{name_text(ctx, r)}（{r.code}）" for r in await all_resources(ctx.session))
        return [ctx.reply("doctor_stats.usage", names=names or "-")]
    try:
        period, name_words = parse_period(words[-1], ctx.now, ctx.centre.tz), words[:-1]
    except StatsError:
        period, name_words = parse_period(None, ctx.now, ctx.centre.tz), words
    found = await find_resources(ctx.session, " ".join(name_words))
    if len(found) != 1:
        names = "、".join(f"{name_text(ctx, r)}（{r.code}）" for r in found or await all_resources(ctx.session))
        return [ctx.reply("doctor_stats.unknown" if not found else "doctor_stats.ambiguous",
                          word=" ".join(name_words), names=names or "-")]
    resource = found[0]
    f = await resource_figures(ctx.session, ctx.centre, period, resource.id)
    return [ctx.reply("doctor_stats.figures", who=f"{name_text(ctx, resource)} {title_text(ctx, resource)}",
                      period=_period_text(ctx, period), booked=f.booked, attended=f.attended,
                      no_shows=f.no_shows, cancelled=f.cancelled, taken=f.seats_taken,
                      offered=f.seats_offered, utilisation=_percent(f.utilisation),
                      ratings=f.ratings,
                      average="–" if f.rating_average is None else f"{f.rating_average:.2f}",
                      closures=f.closures, touched=f.closure_bookings, late=f.late_notices)]
