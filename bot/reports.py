"""Charts and spreadsheets for the manager figures, handed to handlers/stats.py.

matplotlib and openpyxl are imported when a chart or a spreadsheet is first made, not when the
process starts: most processes (a chat, ``yuyue db upgrade``) never draw one, and importing
them costs about a second of start-up.
"""

from __future__ import annotations

from collections.abc import Sequence

from storage.case_stats import CaseReport, WeekPoint
from storage.stats.exports import AppointmentRow
from storage.stats.figures import Figures
from storage.stats.resources import ResourceFigures
from storage.stats.series import DayPoint


class FileReports:
    """PNG charts (matplotlib) and CSV/XLSX exports (openpyxl)."""

    def chart(self, series: Sequence[DayPoint], title: str, locale: str) -> bytes:
        from bot.charts import render_chart

        return render_chart(series, title, locale)

    def on_time_chart(self, weeks: Sequence[WeekPoint], title: str, locale: str) -> bytes:
        from bot.charts import render_on_time_chart

        return render_on_time_chart(weeks, title, locale)

    def resource_chart(self, bars: Sequence[tuple[str, ResourceFigures]], title: str, locale: str,
                       *, dates: str = "", over_time: bool = False) -> bytes:
        from bot.charts import render_resource_chart

        return render_resource_chart(bars, title, locale, dates=dates, over_time=over_time)

    def csv(self, rows: Sequence[AppointmentRow], summary: Figures, locale: str,
            cases: CaseReport | None = None) -> bytes:
        from bot.export import export_csv

        return export_csv(rows, summary, locale=locale, cases=cases)

    def xlsx(self, rows: Sequence[AppointmentRow], summary: Figures, locale: str,
             cases: CaseReport | None = None) -> bytes:
        from bot.export import export_xlsx

        return export_xlsx(rows, summary, locale=locale, cases=cases)
