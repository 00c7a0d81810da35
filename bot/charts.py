"""The manager's charts: daily bookings, no-shows and utilisation, and the cases' on-time rate
per week (限时办结), as PNGs for a phone screen.

matplotlib's object API with the Agg canvas: no pyplot, no display, no global backend switch,
so it is safe in a server process and in threads. Chinese labels need a CJK font; the set-up
script installs Noto Sans CJK (fonts-noto-cjk). matplotlib's font list is cached from the first
run, often before that font existed, so the system font folders are searched too. Without any
CJK font the whole chart is in English (one warning in the log) rather than drawing boxes
(tofu): the labels, and the title too, which is then made from the dates (the message that
carries the chart still has the title in the manager's language). A title with a character no
font has is replaced the same way.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ft2font import FT2Font
from matplotlib.ticker import MaxNLocator, PercentFormatter

from handlers.i18n import catalog
from storage.case_stats import WeekPoint
from storage.stats.resources import ResourceFigures
from storage.stats.series import DayPoint

log = logging.getLogger(__name__)

# Simplified Chinese first; the JP face of Noto Sans CJK (face 0 of the .ttc that Debian ships)
# has every Hanzi a label needs.
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "Noto Sans CJK JP",
                "Noto Sans CJK TC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
                "Droid Sans Fallback")
_CJK_FILE_HINTS = ("notosanscjk", "sourcehansans", "wqy", "wenquanyi", "droidsansfallback")

WIDTH_PX, HEIGHT_PX, DPI = 1080, 1080, 100
BOOKINGS_COLOUR, NO_SHOW_COLOUR, UTILISATION_COLOUR = "#2f6db5", "#d9534f", "#2e9e5b"

LABELS = ("bookings", "no_shows", "utilisation", "count", "empty",    # chart.* in the catalogs
          "completed", "on_time", "on_time_rate",
          "booked", "attended", "closed", "closed_late")
ON_TIME_TITLE = "Cases completed and on time, per week"
# The title when the given one cannot be drawn (no font has its glyphs); the dates follow it.
FALLBACK_TITLE = "Daily bookings, no-shows and seat use"
LATIN_FAMILY = "DejaVu Sans"   # ships with matplotlib
RESOURCES_TITLE = "Doctors and windows: booked, attended, no-shows, seat use"
ATTENDED_COLOUR, CLOSURE_COLOUR = "#8fbce6", "#d9822b"


@dataclass(frozen=True)
class ChartFont:
    family: str
    path: Path


@functools.cache
def cjk_font() -> ChartFont | None:
    """The CJK font charts use, found once per process; None (and one warning) without one."""
    known = {entry.name: Path(entry.fname) for entry in font_manager.fontManager.ttflist}
    for family in CJK_FAMILIES:
        if family in known:
            return ChartFont(family, known[family])
    # The font list is cached from matplotlib's first run: look for fonts installed since,
    # registering every weight so bold titles and regular labels both find theirs.
    added: list[ChartFont] = []
    for path in sorted(font_manager.findSystemFonts()):
        name = Path(path).name.lower().replace("-", "").replace("_", "")
        if not any(hint in name for hint in _CJK_FILE_HINTS) or "serif" in name:
            continue
        try:
            font_manager.fontManager.addfont(path)
        except (OSError, RuntimeError):
            continue
        added.append(ChartFont(font_manager.FontProperties(fname=path).get_name(), Path(path)))
    if added:
        added.sort(key=lambda f: ("regular" not in f.path.name.lower(), f.path.name))
        return added[0]
    log.warning("no CJK font found (install fonts-noto-cjk, as scripts/setup.sh does): "
                "charts use English labels")
    return None


def labels(locale: str, font: ChartFont | None) -> dict[str, str]:
    """The chart's words: Chinese only with a font that can draw them."""
    wants_chinese = locale.lower().startswith("zh")
    words = catalog("zh-CN" if wants_chinese and font is not None else "en")
    return {name: words[f"chart.{name}"] for name in LABELS}


@functools.cache
def _characters(path: Path) -> frozenset[int]:
    """Every character a font file has a glyph for (read once per process)."""
    return frozenset(FT2Font(str(path)).get_charmap())


def drawable(text: str, font: ChartFont | None) -> bool:
    """Whether every character of ``text`` has a glyph in the chart's fonts."""
    latin = Path(font_manager.findfont(font_manager.FontProperties(family=LATIN_FAMILY)))
    fonts = [_characters(latin)] + ([_characters(font.path)] if font else [])
    return all(char.isspace() or any(ord(char) in known for known in fonts) for char in text)


def _title(title: str, series: Sequence[DayPoint], font: ChartFont | None) -> str:
    if drawable(title, font):
        return title
    if not series:
        return FALLBACK_TITLE
    first, last = series[0].day.isoformat(), series[-1].day.isoformat()
    return f"{FALLBACK_TITLE}, {first}" + (f" – {last}" if last != first else "")


def _fonts(locale: str) -> tuple[ChartFont | None, dict[str, str], list[str]]:
    """The CJK font (or None), the chart's words and the font families to draw with."""
    font = cjk_font()
    return font, labels(locale, font), [font.family, LATIN_FAMILY] if font else [LATIN_FAMILY]


def _figure() -> Figure:
    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


@contextlib.contextmanager
def _styled(figure: Figure, title: str, families: list[str], top: float = 0.86,
            bottom: float = 0.14) -> Iterator[tuple[Axes, float]]:
    """Large type for a phone, the title wrapped at the top left; yields the axes and the
    height the title's extra lines take (the legend goes below them)."""
    import matplotlib

    with matplotlib.rc_context({"font.family": families, "font.size": 22,
                                "xtick.labelsize": 20, "ytick.labelsize": 20,
                                "legend.fontsize": 20, "axes.spines.top": False}):
        axes = figure.add_subplot()
        wrapped = _wrap(title)
        extra = 0.045 * wrapped.count("\n")   # room for every extra title line
        figure.subplots_adjust(left=0.11, right=0.88, top=top - extra, bottom=bottom)
        figure.suptitle(wrapped, x=0.05, y=0.985, ha="left", va="top", fontsize=28)
        yield axes, extra


def render_chart(series: Sequence[DayPoint], title: str, locale: str = "zh-CN") -> bytes:
    """Draw daily bookings and no-shows (bars) and online-seat utilisation (line, right axis).

    Args:
        series: from ``storage.stats.daily_series``.
        title: the first line of the chart, already in the manager's language.
        locale: the labels' language ("zh-CN" or "en").

    Returns:
        A 1080 x 1080 PNG, with large type for a phone screen.
    """
    font, text, families = _fonts(locale)
    figure = _figure()
    _draw(figure, series, _title(title, series, font), text, families)
    return _png(figure)


def render_on_time_chart(weeks: Sequence[WeekPoint], title: str, locale: str = "zh-CN") -> bytes:
    """Draw the cases completed per week with a time limit and how many on time (bars), and the
    on-time rate (line, right axis).

    Args:
        weeks: from ``storage.case_stats.weekly_on_time``.
        title: the first line of the chart, already in the manager's language.

    Returns:
        A 1080 x 1080 PNG.
    """
    font, text, families = _fonts(locale)
    if not drawable(title, font):
        title = ON_TIME_TITLE + (f", {weeks[0].monday.isoformat()}" if weeks else "")
    figure = _figure()
    with _styled(figure, title, families) as (axes, extra):
        if not any(week.completed for week in weeks):
            axes.text(0.5, 0.5, text["empty"], ha="center", va="center", transform=axes.transAxes)
            axes.set_axis_off()
        else:
            positions = list(range(len(weeks)))
            axes.bar([p - 0.2 for p in positions], [w.completed for w in weeks], 0.4,
                     color=BOOKINGS_COLOUR, label=text["completed"])
            axes.bar([p + 0.2 for p in positions], [w.on_time for w in weeks], 0.4,
                     color=UTILISATION_COLOUR, label=text["on_time"])
            axes.set_ylabel(text["count"])
            axes.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
            axes.grid(axis="y", alpha=0.3)
            rate = axes.twinx()
            rate.spines["top"].set_visible(False)
            rate.plot(positions, [w.on_time_rate if w.on_time_rate is not None else float("nan")
                                  for w in weeks], color=NO_SHOW_COLOUR, marker="o", linewidth=4,
                      markersize=9, label=text["on_time_rate"])
            rate.set_ylim(0, 1.05)
            rate.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
            axes.set_xticks(positions, [w.monday.strftime("%m-%d") for w in weeks], rotation=45,
                            ha="right")
            handles = axes.get_legend_handles_labels()[0] + rate.get_legend_handles_labels()[0]
            figure.legend(handles=handles, loc="upper center", ncols=3, frameon=False,
                          bbox_to_anchor=(0.5, 0.935 - extra))
    return _png(figure)


def _wrap(title: str) -> str:
    """Break a long title over lines that fit the width (a CJK character is about two Latin
    letters wide at this size)."""
    lines, line, width = [], "", 0.0
    for char in title:
        step = 2.0 if unicodedata.east_asian_width(char) in ("W", "F") else 1.0
        if width + step > 46 and line:
            cut = line.rfind(" ")
            if cut > 20 and step == 1.0:
                lines.append(line[:cut])
                line = line[cut + 1:]
                width = sum(2.0 if unicodedata.east_asian_width(c) in ("W", "F") else 1.0 for c in line)
            else:
                lines.append(line)
                line, width = "", 0.0
        line += char
        width += step
    return "\n".join([*lines, line])


def _draw(figure: Figure, series: Sequence[DayPoint], title: str, text: dict[str, str],
          families: list[str]) -> None:
    with _styled(figure, title, families) as (axes, extra):
        if not series:
            axes.text(0.5, 0.5, text["empty"], ha="center", va="center", transform=axes.transAxes)
            axes.set_axis_off()
            return
        positions = list(range(len(series)))
        width = 0.4 if len(series) <= 14 else 0.45
        axes.bar([p - width / 2 for p in positions], [d.bookings for d in series], width,
                 color=BOOKINGS_COLOUR, label=text["bookings"])
        axes.bar([p + width / 2 for p in positions], [d.no_shows for d in series], width,
                 color=NO_SHOW_COLOUR, label=text["no_shows"])
        axes.set_ylabel(text["count"])
        axes.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
        axes.grid(axis="y", alpha=0.3)
        share = axes.twinx()
        share.spines["top"].set_visible(False)
        share.plot(positions, [d.utilisation if d.utilisation is not None else float("nan")
                               for d in series], color=UTILISATION_COLOUR, marker="o",
                   linewidth=4, markersize=9, label=text["utilisation"])
        share.set_ylim(0, 1.05)
        share.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        step = max(1, -(-len(series) // 10))  # at most about ten dates fit across a phone
        axes.set_xticks(positions[::step],
                        [d.day.strftime("%m-%d") for d in series][::step], rotation=45,
                        ha="right")
        axes.set_xlim(-0.6, len(series) - 0.4)
        handles = axes.get_legend_handles_labels()[0] + share.get_legend_handles_labels()[0]
        figure.legend(handles=handles, loc="upper center", ncols=3, frameon=False,
                      bbox_to_anchor=(0.5, 0.935 - extra))


def render_resource_chart(bars: Sequence[tuple[str, ResourceFigures]], title: str,
                          locale: str = "zh-CN", *, dates: str = "",
                          over_time: bool = False) -> bytes:
    """Draw doctors' or windows' figures side by side, or one doctor's day by day: booked,
    attended and no-shows (bars), seat use (dots, right axis), closures and their late notices
    written above the bars they touched (缺陷管理).

    Args:
        bars: (label, figures) per doctor, or per day or week of one doctor; the figures come
            from ``storage.stats.resources.resource_figures``, as the text figures do.
        title: the first line of the chart, already in the manager's language.
        dates: the period as ISO dates, for the English title when ``title`` cannot be drawn.
        over_time: the bars are one doctor's days or weeks (seat use drawn as a line), not
            several doctors (seat use as dots).

    Returns:
        A 1080 x 1080 PNG.
    """
    font, text, families = _fonts(locale)
    if not drawable(title, font):
        title = RESOURCES_TITLE + (f", {dates}" if dates else "")
    if not all(drawable(label, font) for label, _ in bars):   # a name without glyphs: codes
        bars = [(label if drawable(label, font) else f"#{n + 1}", f)
                for n, (label, f) in enumerate(bars)]
    figure = _figure()
    _draw_resources(figure, bars, title, text, families, over_time)
    return _png(figure)


def _draw_resources(figure: Figure, bars: Sequence[tuple[str, ResourceFigures]], title: str,
                    text: dict[str, str], families: list[str], over_time: bool) -> None:
    with _styled(figure, title, families, top=0.80, bottom=0.16) as (axes, extra):
        if not any(f.booked or f.seats_offered or f.closures for _, f in bars):
            axes.text(0.5, 0.5, text["empty"], ha="center", va="center", transform=axes.transAxes)
            axes.set_axis_off()
            return
        positions = list(range(len(bars)))
        width = 0.8 / 3
        for shift, values, colour, name in (
                (-width, [f.booked for _, f in bars], BOOKINGS_COLOUR, "booked"),
                (0.0, [f.attended for _, f in bars], ATTENDED_COLOUR, "attended"),
                (width, [f.no_shows for _, f in bars], NO_SHOW_COLOUR, "no_shows")):
            axes.bar([p + shift for p in positions], values, width, color=colour,
                     label=text[name])
        highest = max(max(f.booked, f.attended, f.no_shows) for _, f in bars)
        axes.set_ylim(0, max(highest, 1) * 1.25)        # room for the closure marks
        axes.set_ylabel(text["count"])
        axes.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
        axes.grid(axis="y", alpha=0.3)
        for position, (_, f) in zip(positions, bars, strict=True):
            if f.closures:
                mark = text["closed"].format(count=f.closures) + (
                    "\n" + text["closed_late"].format(count=f.late_notices) if f.late_notices else "")
                axes.axvspan(position - 0.5, position + 0.5, color=CLOSURE_COLOUR, alpha=0.12, zorder=0,
                             linewidth=0)
                axes.annotate(mark, (position, max(f.booked, f.attended, f.no_shows)),
                              xytext=(0, 8), textcoords="offset points", ha="center",
                              va="bottom", fontsize=18, color=CLOSURE_COLOUR)
        share = axes.twinx()
        share.spines["top"].set_visible(False)
        share.plot(positions, [f.utilisation if f.utilisation is not None else float("nan")
                               for _, f in bars], color=UTILISATION_COLOUR, marker="o",
                   linewidth=3 if over_time else 0, markersize=11, label=text["utilisation"])
        share.set_ylim(0, 1.05)
        share.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        step = max(1, -(-len(bars) // 12))
        axes.set_xticks(positions[::step], [label for label, _ in bars][::step], rotation=45,
                        ha="right")
        axes.set_xlim(-0.6, len(bars) - 0.4)
        handles = axes.get_legend_handles_labels()[0] + share.get_legend_handles_labels()[0]
        figure.legend(handles=handles, loc="upper center", ncols=2, frameon=False,
                      bbox_to_anchor=(0.5, 0.935 - extra))
