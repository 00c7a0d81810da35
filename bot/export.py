"""Exports for managers: the period's appointments (one row each, personal data masked, as
``storage.stats.appointment_rows`` gives them) and the summary figures, as CSV and XLSX files.

CSV is UTF-8 with a byte-order mark: without it Excel on Windows, what a centre's office opens
files with, reads Chinese as mojibake. Times are the centre's local times without a zone (Excel
has none). Column and value labels follow the manager's language: the ``export.*`` messages of
the catalogs in handlers/locales/.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

from handlers.i18n import catalog
from storage.case_stats import CaseFigures, CaseReport
from storage.stats.exports import EXPORT_COLUMNS, AppointmentRow
from storage.stats.figures import Figures

Value = int | float | str | None

SHARES = ("appointments.no_show_rate", "seats.utilisation", "ratings.satisfied_share")


def _words(locale: str) -> dict[str, str]:
    """The message catalog the export is labelled from (``export.*`` keys): Chinese for a
    Chinese locale, else English."""
    return catalog(_locale(locale))


def _locale(locale: str) -> str:
    return "zh-CN" if locale.lower().startswith("zh") else "en"


def _value_word(value: object, words: dict[str, str]) -> object:
    """A code (a status, a channel, a cancel kind, walk-in yes/no) as a word."""
    key = ("yes" if value else "no") if isinstance(value, bool) else str(value)
    return words.get(f"export.value.{key}", value)


def _cells(row: AppointmentRow, words: dict[str, str]) -> list[Value | dt.datetime | dt.date]:
    """One appointment's values in column order, codes turned into words."""
    out: list[Value | dt.datetime | dt.date] = []
    for column in EXPORT_COLUMNS:
        value = getattr(row, column)
        if column in ("status", "channel", "cancel_kind", "offline"):
            value = _value_word(value, words) if value != "" else ""
        elif isinstance(value, dt.datetime):
            value = value.replace(tzinfo=None)  # already the centre's local time
        out.append(value)
    return out


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def summary_rows(summary: Figures, locale: str = "zh-CN") -> list[tuple[str, Value, Value, str]]:
    """The summary as (label, this period, previous period, stable key) rows."""
    words = _words(locale)
    return [(words.get(f"export.summary.{key}", key), current, previous, key)
            for key, current, previous in summary.items()]


def _summary_text(value: Value, key: str) -> str:
    if value is None:
        return ""
    if key in SHARES and isinstance(value, float):
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _summary_header(words: dict[str, str]) -> list[str]:
    return [words[f"export.header_{part}"] for part in ("figure", "current", "previous", "key")]


def _period_line(summary: Figures, locale: str) -> list[str]:
    scope = ""
    if summary.scope is not None:
        scope = summary.scope.name_zh if _locale(locale) == "zh-CN" else summary.scope.name_en
    return [_words(locale)["export.period"], summary.current.period.label,
            summary.previous.period.label, scope]


CASE_COLUMNS = ("opened", "immediate", "promised", "correction", "returned", "joint", "reported",
                "correction_rate", "completed", "on_time", "on_time_rate",
                "average_working_days", "extensions_requested", "extensions_approved",
                "extensions_refused", "overdue_now")
CASE_SHARES = ("correction_rate", "on_time_rate")


def _case_values(figures: CaseFigures) -> list[Value]:
    return [getattr(figures, column) for column in CASE_COLUMNS]


def case_rows(report: CaseReport, locale: str = "zh-CN") -> list[list[Value]]:
    """The case figures (办件, 六件 and 限时办结) as a table: a header, the whole, then one row
    per service."""
    words = _words(locale)
    english = _locale(locale) == "en"
    header: list[Value] = [words["export.case.service_code"], words["export.case.service_name"],
                           *(words[f"export.case.{column}"] for column in CASE_COLUMNS)]
    rows: list[list[Value]] = [header, ["", words["export.case.total"], *_case_values(report.total)]]
    rows += [[entry.code, entry.name_en if english else entry.name_zh, *_case_values(entry.figures)]
             for entry in report.services]
    return rows


def _case_text(value: Value, column: str) -> str:
    if value is None:
        return ""
    if column in CASE_SHARES and isinstance(value, float):
        return f"{value * 100:.1f}%"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def cases_csv(report: CaseReport, locale: str = "zh-CN") -> str:
    """The case figures as CSV text, the period first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([_words(locale)["export.case.period"], report.first.isoformat(),
                     report.last.isoformat()])
    columns = ("", "", *CASE_COLUMNS)
    for row in case_rows(report, locale):
        writer.writerow([_case_text(v, c) if not isinstance(v, str) else v
                         for v, c in zip(row, columns, strict=True)])
    return buffer.getvalue()


def summary_csv(summary: Figures, locale: str = "zh-CN") -> bytes:
    """The summary alone as a CSV file (UTF-8 with BOM)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(_period_line(summary, locale))
    writer.writerow(_summary_header(_words(locale)))
    for label, current, previous, key in summary_rows(summary, locale):
        writer.writerow([label, _summary_text(current, key), _summary_text(previous, key), key])
    return buffer.getvalue().encode("utf-8-sig")


def export_csv(rows: Iterable[AppointmentRow], summary: Figures | None = None, *,
               locale: str = "zh-CN", cases: CaseReport | None = None) -> bytes:
    """The appointments as CSV (UTF-8 with BOM); the summary follows after an empty line, and
    the case figures after another.

    Args:
        rows: from ``storage.stats.appointment_rows`` (already masked).
        summary: the period's figures, or None for the appointments only.
        cases: the period's case figures (``storage.case_stats.case_report``), or None.

    Returns:
        The file's bytes.
    """
    words = _words(locale)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([words[f"export.column.{c}"] for c in EXPORT_COLUMNS])
    for row in rows:
        writer.writerow([_text(v) for v in _cells(row, words)])
    text = buffer.getvalue()
    if summary is not None:
        text += "\r\n" + summary_csv(summary, locale).decode("utf-8-sig")
    if cases is not None:
        text += "\r\n" + cases_csv(cases, locale)
    return text.encode("utf-8-sig")


_WIDTHS = {"code": 10, "service_code": 18, "service_name": 30, "local_date": 12, "starts_at": 17,
           "status": 10, "channel": 10, "offline": 8, "name": 10, "mobile": 14, "id_number": 21,
           "created_at": 17, "checked_in_at": 17, "completed_at": 17, "cancelled_at": 17,
           "cancel_kind": 14, "rating": 6}


def export_xlsx(rows: Iterable[AppointmentRow], summary: Figures | None = None, *,
                locale: str = "zh-CN", cases: CaseReport | None = None) -> bytes:
    """The appointments, the summary and the case figures as an Excel workbook, one sheet
    each.

    Written in openpyxl's write-only mode, so a month of a busy centre stays small in memory.
    Dates and times are real Excel dates; shares are percentages.

    Returns:
        The .xlsx file's bytes.
    """
    words = _words(locale)
    book = Workbook(write_only=True)
    sheet = book.create_sheet(words["export.sheet_appointments"])
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for index, column in enumerate(EXPORT_COLUMNS):
        sheet.column_dimensions[letters[index]].width = _WIDTHS.get(column, 12)
    sheet.freeze_panes = "A2"
    sheet.append(_header(sheet, [words[f"export.column.{c}"] for c in EXPORT_COLUMNS]))
    for row in rows:
        cells = []
        for value in _cells(row, words):
            cell = WriteOnlyCell(sheet, value=value)
            if isinstance(value, dt.datetime):
                cell.number_format = "yyyy-mm-dd hh:mm"
            elif isinstance(value, dt.date):
                cell.number_format = "yyyy-mm-dd"
            cells.append(cell)
        sheet.append(cells)
    if summary is not None:
        totals = book.create_sheet(words["export.sheet_summary"])
        for letter, width in zip("ABCD", (34, 14, 14, 34), strict=True):
            totals.column_dimensions[letter].width = width
        totals.append(_period_line(summary, locale))
        totals.append(_header(totals, _summary_header(words)))
        for label, current, previous, key in summary_rows(summary, locale):
            cells = [WriteOnlyCell(totals, value=label)]
            for value in (current, previous):
                cell = WriteOnlyCell(totals, value=value)
                if key in SHARES:
                    cell.number_format = "0.0%"
                elif isinstance(value, float):
                    cell.number_format = "0.00"
                cells.append(cell)
            cells.append(WriteOnlyCell(totals, value=key))
            totals.append(cells)
    if cases is not None:
        _case_sheet(book, cases, locale)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _case_sheet(book: Workbook, report: CaseReport, locale: str) -> None:
    words = _words(locale)
    sheet = book.create_sheet(words["export.case.sheet"])
    sheet.column_dimensions["A"].width, sheet.column_dimensions["B"].width = 18, 30
    sheet.append([words["export.case.period"], report.first, report.last])
    header, *rows = case_rows(report, locale)
    sheet.append(_header(sheet, [str(title) for title in header]))
    for row in rows:
        cells = []
        for value, column in zip(row, ("", "", *CASE_COLUMNS), strict=True):
            cell = WriteOnlyCell(sheet, value=value)
            if column in CASE_SHARES:
                cell.number_format = "0.0%"
            elif isinstance(value, float):
                cell.number_format = "0.00"
            cells.append(cell)
        sheet.append(cells)


def _header(sheet: object, titles: Sequence[str]) -> list[WriteOnlyCell]:
    cells = []
    for title in titles:
        cell = WriteOnlyCell(sheet, value=title)  # type: ignore[arg-type]
        cell.font = Font(bold=True)
        cells.append(cell)
    return cells
