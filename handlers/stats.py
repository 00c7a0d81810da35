"""Manager figures in the chat: /stats, /stats chart, /export. Allow-listed managers only, in a
private chat; everyone else gets a polite refusal (logged without personal data).

Charts and spreadsheets are drawn by bot/ (matplotlib, openpyxl) and handed in as ``Reports``
(handlers/core.py),
so this module stays free of them.
"""

from __future__ import annotations

import logging

from handlers import doctor_stats
from handlers.context import Ctx
from handlers.core import Attachment, Reply
from handlers.flow import Flow
from handlers.i18n import Speaker, format_day
from handlers.menu import unmatched_text
from storage.account_figures import AccountFigures, account_figures
from storage.case_stats import CaseFigures, CaseReport, case_report, weekly_on_time
from storage.complaints import ComplaintFigures, complaint_figures
from storage.stats.exports import appointment_rows
from storage.stats.figures import Figures, figures
from storage.stats.periods import Period, Scope, StatsError, parse_period, resolve_scope
from storage.stats.series import daily_series

log = logging.getLogger("yuyue.stats")

def is_manager(ctx: Ctx) -> bool:
    return ctx.actor in ctx.settings.access.managers


async def guard(ctx: Ctx, what: str) -> list[Reply] | None:
    """Only allow-listed managers, in a private chat; anyone else is refused (and logged
    without who it was)."""
    if is_manager(ctx) and not ctx.incoming.is_group:
        return None
    log.warning("refused %s from a %s user who is not an allow-listed manager (%s chat)",
                what, ctx.incoming.channel, "group" if ctx.incoming.is_group else "private")
    # Only Telegram has group chats for citizens to be in: elsewhere the chat is private.
    return [ctx.reply("stats.refused" if ctx.incoming.channel == "telegram"
                      else "words.refusal.managers_only")]


async def _asked(ctx: Ctx, words: list[str]) -> tuple[Period, Scope | None] | Reply:
    """The period and scope the manager asked for, or the message saying what is wrong."""
    try:
        period, scope_code = _period_and_scope(ctx, words)
        return period, await resolve_scope(ctx.session, scope_code)
    except StatsError as error:
        return Reply(error_text(ctx, error))


async def stats(ctx: Ctx, args: str) -> list[Reply]:
    """Answer /stats [chart] [period] [service]: the figures, or their chart."""
    words = args.split()
    chart = bool(words) and words[0].lower() in ("chart", "图表")
    try:
        if words and words[0].lower() in doctor_stats.WORDS:     # one doctor's or window's figures
            return await doctor_stats.doctor_stats(ctx, words[1:])
        if chart and len(words) > 1 and words[1].lower() in doctor_stats.WORDS:   # per doctor/window
            return await doctor_stats.doctor_chart(ctx, words[2:])
    except StatsError as error:                              # a period that cannot be used
        return [Reply(error_text(ctx, error))]
    asked = await _asked(ctx, words[1:] if chart else words)
    if isinstance(asked, Reply):
        return [asked]
    period, scope = asked
    if not chart:
        text = render_figures(ctx, await figures(ctx.session, ctx.centre, ctx.now, period, scope)) \
            + "\n" + render_cases(ctx, await _cases(ctx, period, scope), per_service=scope is None) \
            + "\n" + render_complaints(ctx, await complaint_figures(
                ctx.session, ctx.centre, period.first, period.last,
                service_ids=scope.service_ids if scope is not None else None))
        if scope is None:  # accounts and people: centre-wide only
            text += "\n" + render_accounts(ctx, await account_figures(
                ctx.session, period.starts_at(ctx.centre.tz), period.ends_at(ctx.centre.tz)))
        return [Reply(text)]
    reports = ctx.reports
    if reports is None:
        return [ctx.reply("stats.no_files")]
    series = await daily_series(ctx.session, ctx.centre, period, scope)
    title = ctx.t("stats.chart_title", period=_period_text(ctx, period), scope=_scope_text(ctx, scope))
    charts = [Reply(title, attachment=Attachment(
        f"yuyue-{period.first.isoformat()}.png", reports.chart(series, title, ctx.locale), "image/png"))]
    weeks = await weekly_on_time(ctx.session, period.first, period.last,
                                 service_ids=scope.service_ids if scope is not None else None)
    if any(week.completed for week in weeks):
        title = ctx.t("stats.cases_chart_title", period=_period_text(ctx, period),
                      scope=_scope_text(ctx, scope))
        charts.append(Reply(title, attachment=Attachment(
            f"yuyue-cases-{period.first.isoformat()}.png",
            reports.on_time_chart(weeks, title, ctx.locale), "image/png")))
    return charts


async def export(ctx: Ctx, args: str) -> list[Reply]:
    """Answer /export [period] [service]: a spreadsheet and a CSV file of the appointments."""
    asked = await _asked(ctx, args.split())
    if isinstance(asked, Reply):
        return [asked]
    period, scope = asked
    reports = ctx.reports
    if reports is None:
        return [ctx.reply("stats.no_files")]
    if not ctx.incoming.files:
        return [ctx.reply("stats.no_files_here")]
    summary = await figures(ctx.session, ctx.centre, ctx.now, period, scope)
    cases = await _cases(ctx, period, scope)
    rows = [row async for row in appointment_rows(ctx.session, ctx.centre, period, scope,
                                                  locale=ctx.locale)]
    stem = f"yuyue-{period.first.isoformat()}-{period.last.isoformat()}"
    return [Reply(ctx.t("stats.export_ready", count=len(rows), period=_period_text(ctx, period)),
                  attachment=Attachment(f"{stem}.xlsx", reports.xlsx(rows, summary, ctx.locale, cases),
                                        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")),
            Reply(ctx.t("stats.export_csv"),
                  attachment=Attachment(f"{stem}.csv", reports.csv(rows, summary, ctx.locale, cases),
                                        "text/csv"))]


def _period_and_scope(ctx: Ctx, words: list[str]) -> tuple[Period, str | None]:
    """The first word is a period if it reads as one; the rest names a service or department."""
    if not words:
        return parse_period(None, ctx.now, ctx.centre.tz), None
    try:
        return parse_period(words[0], ctx.now, ctx.centre.tz), " ".join(words[1:]) or None
    except StatsError:
        if len(words) == 1 and not any(ch.isdigit() for ch in words[0]):
            return parse_period(None, ctx.now, ctx.centre.tz), words[0]   # "/stats dental"
        raise


def error_text(ctx: Ctx | Speaker, error: StatsError) -> str:
    """What is wrong with a manager's request, in the chat or on the command line; a service
    not found names the candidates or lists the services, as every staff command does."""
    matched = error.details.get("matched")
    if matched is not None:
        return unmatched_text(ctx, matched)
    values = dict(error.details)
    for key in ("first", "last"):
        if key in values:
            values[key] = format_day(values[key], ctx.locale)
    return ctx.t(f"stats.error_{error.code.value}", **values)


def _period_text(ctx: Ctx | Speaker, period: Period) -> str:
    if period.first == period.last:
        return format_day(period.first, ctx.locale)
    return f"{format_day(period.first, ctx.locale)} – {format_day(period.last, ctx.locale)}"


def _scope_text(ctx: Ctx | Speaker, scope: object) -> str:
    if scope is None:
        return ctx.t("stats.whole_centre")
    return scope.name_en if ctx.locale == "en" else scope.name_zh  # type: ignore[attr-defined]


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _difference(current: float | int | None, previous: float | int | None, *,
                percent: bool = False) -> str:
    """"↑12%" against the previous period, "↑3.1pt" for rates, "" when not comparable."""
    if current is None or previous is None:
        return ""
    if percent:
        points = (current - previous) * 100
        return "" if abs(points) < 0.05 else f"{'↑' if points > 0 else '↓'}{abs(points):.1f}pt"
    if previous == 0:
        return "" if current == 0 else "↑"
    change = (current - previous) / previous * 100
    return "" if abs(change) < 0.5 else f"{'↑' if change > 0 else '↓'}{abs(change):.0f}%"


def render_accounts(ctx: Ctx | Speaker, figures_of: AccountFigures) -> str:
    """People per account, bookings for someone else (代约), refused ID/name mismatches."""
    distribution = "，".join(ctx.t("stats_accounts.bucket", people=people, accounts=count)
                             for people, count in figures_of.people_per_account.items()) or "-"
    return ctx.t("stats_accounts.block", distribution=distribution,
                 for_others=figures_of.for_others,
                 bookings=sum(figures_of.bookings_by_relation.values()),
                 mismatches=figures_of.name_mismatches)


def render_figures(ctx: Ctx | Speaker, result: Figures) -> str:
    """Every figure in a few phone-width lines, each compared with the previous period."""
    def _change(current: float | int | None, previous: float | int | None, *,
                percent: bool = False) -> str:
        text = _difference(current, previous, percent=percent)
        if not text:
            return ""
        return f" ({text})" if ctx.locale == "en" else f"（{text}）"

    now, before = result.current, result.previous
    b, a, c, s = now.bookings, now.appointments, now.cancellations, now.seats
    r, k, h, n = now.ratings, now.complaints, now.handoffs, now.notifications
    lines = [
        ctx.t("stats.head", period=_period_text(ctx, now.period), scope=_scope_text(ctx, result.scope),
              previous=_period_text(ctx, before.period)),
        ctx.t("stats.bookings", total=b.total, change=_change(b.total, before.bookings.total),
              wechat=b.wechat, telegram=b.telegram, staff=b.staff, terminal=b.terminal),
        ctx.t("stats.appointments", held=a.held, change=_change(a.held, before.appointments.held),
              completed=a.completed, no_shows=a.no_shows, rate=_percent(a.no_show_rate),
              rate_change=_change(a.no_show_rate, before.appointments.no_show_rate, percent=True)),
        ctx.t("stats.cancellations", total=c.total, citizen=c.citizen, late=c.late, centre=c.centre,
              staff=c.staff),
        ctx.t("stats.seats", utilisation=_percent(s.utilisation),
              change=_change(s.utilisation, before.seats.utilisation, percent=True),
              booked=s.booked, offered=s.offered, remaining=result.remaining_seats),
        ctx.t("stats.ratings", count=r.count,
              average="–" if r.average is None else f"{r.average:.2f}",
              satisfied=_percent(r.satisfied_share),
              change=_change(r.satisfied_share, before.ratings.satisfied_share, percent=True)),
        ctx.t("stats.complaints", opened=k.opened, on_time=k.answered_on_time, overdue=k.overdue),
    ]
    if result.scope is None:
        lines += [
            ctx.t("stats.handoffs", opened=h.opened, unclaimed=h.unclaimed,
                  median="–" if h.median_minutes_to_claim is None
                  else f"{h.median_minutes_to_claim:.0f}"),
            ctx.t("stats.people", blocked=result.blocked_now, failed=n.failed,
                  undeliverable=n.undeliverable)]
    else:
        lines += [ctx.t("stats.notifications", failed=n.failed, undeliverable=n.undeliverable),
                  ctx.t("stats.not_per_service")]
    texts = now.sms
    if texts.sent or texts.failed or texts.opt_outs:
        lines.append(ctx.t("stats.sms", sent=texts.sent, failed=texts.failed,
                           delivered=texts.delivered, cost=f"{texts.cost_fen / 100:.2f}",
                           opt_outs=texts.opt_outs))
    return "\n".join(lines)


async def _cases(ctx: Ctx, period: Period, scope: Scope | None) -> CaseReport:
    return await case_report(ctx.session, ctx.centre, ctx.now, period.first, period.last,
                             service_ids=scope.service_ids if scope is not None else None)


def _case_line(ctx: Ctx | Speaker, f: CaseFigures) -> str:
    return ctx.t("stats.cases_limits", completed=f.completed, on_time=_percent(f.on_time_rate),
                 days="–" if f.average_working_days is None else f"{f.average_working_days:.1f}",
                 correction=_percent(f.correction_rate), requested=f.extensions_requested,
                 approved=f.extensions_approved, refused=f.extensions_refused,
                 overdue=f.overdue_now)


def render_cases(ctx: Ctx | Speaker, report: CaseReport, *, per_service: bool = True) -> str:
    """The case figures (办件): the 六件 counts, 限时办结 and its exceptions, and one line per
    service when the whole centre was asked for."""
    total = report.total
    lines = [ctx.t("stats.cases_kinds", opened=total.opened, **total.by_kind), _case_line(ctx, total)]
    if per_service and len(report.services) > 1:
        for entry in report.services:
            f = entry.figures
            lines.append(ctx.t("stats.cases_service",
                               name=entry.name_en if ctx.locale == "en" else entry.name_zh,
                               opened=f.opened, on_time=_percent(f.on_time_rate),
                               overdue=f.overdue_now))
    return "\n".join(lines)


def render_complaints(ctx: Ctx | Speaker, f: ComplaintFigures) -> str:
    """Complaints by category, suggestions, answers on time, merged repeats, 回访 satisfaction."""
    categories = ctx.t("stats.complaint_separator").join(
        f"{ctx.t(f'complaint.category.{name}')} {count}" for name, count in f.by_category.items())
    return ctx.t("stats.complaint_figures", total=f.complaints, categories=categories,
                 suggestions=f.suggestions, on_time=f.answered_on_time, answered=f.answered,
                 merged=f.merged, satisfied=f.satisfied, unsatisfied=f.unsatisfied,
                 share=_percent(f.satisfied_share), reopened=f.reopened)


FLOW = Flow("stats", commands={"stats": stats, "export": export}, guard=guard)
