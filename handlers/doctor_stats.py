"""``/stats doctor NAME [period]``: one doctor's or window's figures for managers (bookings,
attendance, no-shows, utilisation, ratings, closures and late notices).

``/stats chart doctors [period]`` draws the doctors and windows side by side (the ``CHART_BARS``
with most bookings; the title says how many more were left out), and
``/stats chart doctor NAME [period]`` one of them day by day (week by week past two weeks), from
the same figures (``resource_figures``)."""

from __future__ import annotations

import asyncio

from handlers.context import Ctx
from handlers.core import Attachment, Reply
from handlers.doctors import name_text, title_text
from handlers.i18n import format_day
from storage.resources import ResourceInfo, all_resources, find_resources
from storage.stats.periods import Period, StatsError, StatsErrorCode, parse_period
from storage.stats.resources import resource_figures, resource_series, resources_figures

WORDS = ("doctor", "doctors", "医生", "window", "windows", "窗口")
CHART_BARS = 12     # doctors and windows drawn side by side at most (the most booked): each named


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _period_text(ctx: Ctx, period: Period) -> str:
    if period.first == period.last:
        return format_day(period.first, ctx.locale)
    return f"{format_day(period.first, ctx.locale)} – {format_day(period.last, ctx.locale)}"


def _period_and_name(ctx: Ctx, words: list[str]) -> tuple[Period, list[str]]:
    """The period if the last word reads as one (else the default), and the name's words.

    Raises:
        StatsError: the last word is a period that cannot be used (a range backwards or too
            long, a date that does not exist), answered as ``/stats`` answers it.
    """
    if not words:
        return parse_period(None, ctx.now, ctx.centre.tz), words
    try:
        return parse_period(words[-1], ctx.now, ctx.centre.tz), words[:-1]
    except StatsError as error:
        if error.code != StatsErrorCode.UNKNOWN_PERIOD:
            raise
        return parse_period(None, ctx.now, ctx.centre.tz), words


async def _one(ctx: Ctx, name_words: list[str]) -> ResourceInfo | Reply:
    """The one resource the words name, or the polite message listing the candidates."""
    found = await find_resources(ctx.session, " ".join(name_words))
    if len(found) == 1:
        return found[0]
    names = "、".join(f"{name_text(ctx, r)}（{r.code}）" for r in found or await all_resources(ctx.session))
    return ctx.reply("doctor_stats.unknown" if not found else "doctor_stats.ambiguous",
                     word=" ".join(name_words), names=names or "-")


async def doctor_stats(ctx: Ctx, words: list[str]) -> list[Reply]:
    """Answer the figures of one doctor or window."""
    if not words:
        names = "、".join(f"{name_text(ctx, r)}（{r.code}）" for r in await all_resources(ctx.session))
        return [ctx.reply("doctor_stats.usage", names=names or "-")]
    period, name_words = _period_and_name(ctx, words)
    resource = await _one(ctx, name_words)
    if isinstance(resource, Reply):
        return [resource]
    f = await resource_figures(ctx.session, ctx.centre, period, resource.id)
    return [ctx.reply("doctor_stats.figures", who=f"{name_text(ctx, resource)} {title_text(ctx, resource)}",
                      period=_period_text(ctx, period), booked=f.booked, attended=f.attended,
                      no_shows=f.no_shows, cancelled=f.cancelled, taken=f.seats_taken,
                      offered=f.seats_offered, utilisation=_percent(f.utilisation),
                      ratings=f.ratings,
                      average="–" if f.rating_average is None else f"{f.rating_average:.2f}",
                      closures=f.closures, touched=f.closure_bookings, late=f.late_notices)]


async def doctor_chart(ctx: Ctx, words: list[str]) -> list[Reply]:
    """Answer ``/stats chart doctors [period]`` (the doctors and windows with seats, bookings or
    closures in the period side by side, at most ``CHART_BARS`` of them) or
    ``/stats chart doctor NAME [period]`` (one of them over the period)."""
    reports = ctx.reports
    if reports is None:
        return [ctx.reply("stats.no_files")]
    period, name_words = _period_and_name(ctx, words)
    dates = period.label.replace("..", " – ")
    if not name_words:
        found = await resources_figures(ctx.session, ctx.centre, period)
        drawn = [(each, f) for each in await all_resources(ctx.session)
                 if (f := found.get(each.id)) is not None
                 and (f.booked or f.seats_offered or f.closures)]
        drawn.sort(key=lambda pair: -pair[1].booked)          # stable: the list's order on ties
        left = len(drawn) - CHART_BARS
        bars = [(name_text(ctx, each), f) for each, f in drawn[:CHART_BARS]]
        title = ctx.t("doctor_chart.title_all", period=_period_text(ctx, period)) if left <= 0 \
            else ctx.t("doctor_chart.title_top", period=_period_text(ctx, period),
                       shown=CHART_BARS, left=left)
        picture = await asyncio.to_thread(reports.resource_chart, bars, title, ctx.locale,
                                          dates=dates)
        stem = f"yuyue-doctors-{period.first.isoformat()}"
    else:
        resource = await _one(ctx, name_words)
        if isinstance(resource, Reply):
            return [resource]
        series = await resource_series(ctx.session, ctx.centre, period, resource.id)
        daily = all(part.first == part.last for part, _ in series)
        bars = [(part.first.strftime("%m-%d"), f) for part, f in series]
        title = ctx.t("doctor_chart.title_daily" if daily else "doctor_chart.title_weekly",
                      who=f"{name_text(ctx, resource)} {title_text(ctx, resource)}",
                      period=_period_text(ctx, period))
        picture = await asyncio.to_thread(reports.resource_chart, bars, title, ctx.locale,
                                          dates=dates, over_time=True)
        stem = f"yuyue-{resource.code}-{period.first.isoformat()}"
    return [Reply(title, attachment=Attachment(f"{stem}.png", picture, "image/png"))]
