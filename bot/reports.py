"""Charts and spreadsheets for the manager figures, handed to handlers/stats.py."""

from __future__ import annotations

from collections.abc import Sequence

from bot.charts import render_chart
from bot.export import export_csv, export_xlsx
from storage.stats.exports import AppointmentRow
from storage.stats.figures import Figures
from storage.stats.series import DayPoint


class FileReports:
    """PNG charts (matplotlib) and CSV/XLSX exports (openpyxl)."""

    def chart(self, series: Sequence[DayPoint], title: str, locale: str) -> bytes:
        return render_chart(series, title, locale)

    def csv(self, rows: Sequence[AppointmentRow], summary: Figures, locale: str) -> bytes:
        return export_csv(rows, summary, locale=locale)

    def xlsx(self, rows: Sequence[AppointmentRow], summary: Figures, locale: str) -> bytes:
        return export_xlsx(rows, summary, locale=locale)
