"""Exports for managers: the period's appointments (one row each, personal data masked, as
``storage.stats.appointment_rows`` gives them) and the summary figures, as CSV and XLSX files.

CSV is UTF-8 with a byte-order mark: without it Excel on Windows, what a centre's office opens
files with, reads Chinese as mojibake. Times are the centre's local times without a zone (Excel
has none). Column and value labels follow the manager's language.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

from storage.stats.exports import EXPORT_COLUMNS, AppointmentRow
from storage.stats.figures import Figures

Value = int | float | str | None

COLUMNS = {
    "zh": {"code": "预约码", "service_code": "事项编码", "service_name": "事项",
           "local_date": "日期",
           "starts_at": "时间", "status": "状态", "channel": "渠道", "offline": "现场/电话代办",
           "name": "姓名", "mobile": "手机", "id_number": "证件号", "created_at": "预约时间",
           "checked_in_at": "签到时间", "completed_at": "办结时间", "cancelled_at": "取消时间",
           "cancel_kind": "取消类型", "rating": "评价"},
    "en": {"code": "Code", "service_code": "Service code", "service_name": "Service",
           "local_date": "Date", "starts_at": "Time", "status": "Status", "channel": "Channel",
           "offline": "Walk-in/phone", "name": "Name", "mobile": "Mobile", "id_number": "ID number",
           "created_at": "Booked at", "checked_in_at": "Checked in", "completed_at": "Completed",
           "cancelled_at": "Cancelled", "cancel_kind": "Cancelled by", "rating": "Rating"},
}

VALUES = {
    "zh": {"booked": "已预约", "checked_in": "已签到", "completed": "已办结", "no_show": "失约",
           "cancelled": "已取消", "wechat": "微信", "telegram": "Telegram", "terminal": "终端",
           "staff": "工作人员", "citizen": "群众（截止前）", "late": "群众（逾期）",
           "centre": "中心停办", True: "是", False: "否"},
    "en": {"booked": "booked", "checked_in": "checked in", "completed": "completed",
           "no_show": "no-show", "cancelled": "cancelled", "wechat": "WeChat",
           "telegram": "Telegram", "terminal": "terminal", "staff": "staff",
           "citizen": "citizen (in time)", "late": "citizen (late)", "centre": "centre closure",
           True: "yes", False: "no"},
}

SUMMARY_LABELS = {
    "zh": {
        "bookings.total": "预约量", "bookings.wechat": "预约量·微信",
        "bookings.telegram": "预约量·Telegram", "bookings.staff": "预约量·工作人员代办",
        "bookings.terminal": "预约量·终端",
        "appointments.scheduled": "排期预约数", "appointments.held": "有效预约",
        "appointments.booked": "待办理", "appointments.checked_in": "已签到未办结",
        "appointments.completed": "已办结", "appointments.no_shows": "失约",
        "appointments.due": "已到预约时间", "appointments.online": "网上号源预约",
        "appointments.offline": "现场/电话号源预约", "appointments.no_show_rate": "失约率",
        "cancellations.total": "取消", "cancellations.citizen": "取消·群众（截止前）",
        "cancellations.late": "取消·群众（逾期）", "cancellations.centre": "取消·中心停办",
        "cancellations.staff": "取消·工作人员",
        "seats.offered": "网上号源", "seats.booked": "网上号源已约",
        "seats.booked_all": "网上号源已约（含停办时段）", "seats.closed_slots": "停办时段数",
        "seats.utilisation": "号源利用率",
        "ratings.count": "评价数", "ratings.average": "平均评分", "ratings.satisfied": "满意及以上",
        "ratings.level_1": "非常不满意", "ratings.level_2": "不满意", "ratings.level_3": "基本满意",
        "ratings.level_4": "满意", "ratings.level_5": "非常满意",
        "ratings.satisfied_share": "满意率",
        "complaints.opened": "投诉", "complaints.answered_on_time": "按时答复",
        "complaints.answered_late": "逾期答复", "complaints.open_overdue": "逾期未答复",
        "complaints.open_pending": "待答复（未逾期）", "complaints.overdue": "逾期合计",
        "handoffs.opened": "转人工", "handoffs.claimed": "已认领", "handoffs.unclaimed": "未认领",
        "handoffs.median_minutes_to_claim": "认领用时中位数（分钟）",
        "notifications.failed": "通知发送失败", "notifications.undeliverable": "通知无法送达",
        "remaining_seats": "未来7天剩余号源", "blocked_now": "当前受限人数",
    },
    "en": {
        "bookings.total": "Bookings", "bookings.wechat": "Bookings: WeChat",
        "bookings.telegram": "Bookings: Telegram", "bookings.staff": "Bookings: by staff",
        "bookings.terminal": "Bookings: terminal",
        "appointments.scheduled": "Appointments scheduled",
        "appointments.held": "Appointments held",
        "appointments.booked": "Still to come", "appointments.checked_in": "Checked in, not done",
        "appointments.completed": "Completed", "appointments.no_shows": "No-shows",
        "appointments.due": "Appointments due", "appointments.online": "On online seats",
        "appointments.offline": "On walk-in/phone seats",
        "appointments.no_show_rate": "No-show rate",
        "cancellations.total": "Cancellations",
        "cancellations.citizen": "Cancelled by citizen in time",
        "cancellations.late": "Cancelled by citizen late",
        "cancellations.centre": "Cancelled by centre closure",
        "cancellations.staff": "Cancelled by staff",
        "seats.offered": "Online seats offered", "seats.booked": "Online seats booked",
        "seats.booked_all": "Online seats booked (closed slots too)",
        "seats.closed_slots": "Closed slots", "seats.utilisation": "Utilisation",
        "ratings.count": "Ratings", "ratings.average": "Average rating",
        "ratings.satisfied": "Satisfied or better", "ratings.level_1": "Very dissatisfied",
        "ratings.level_2": "Dissatisfied", "ratings.level_3": "Fairly satisfied",
        "ratings.level_4": "Satisfied", "ratings.level_5": "Very satisfied",
        "ratings.satisfied_share": "Satisfaction rate",
        "complaints.opened": "Complaints", "complaints.answered_on_time": "Answered on time",
        "complaints.answered_late": "Answered late",
        "complaints.open_overdue": "Overdue, no answer",
        "complaints.open_pending": "Awaiting answer (in time)", "complaints.overdue": "Overdue",
        "handoffs.opened": "Hand-offs", "handoffs.claimed": "Claimed",
        "handoffs.unclaimed": "Unclaimed",
        "handoffs.median_minutes_to_claim": "Median minutes to claim",
        "notifications.failed": "Notifications failed",
        "notifications.undeliverable": "Notifications undeliverable",
        "remaining_seats": "Seats left, next 7 days", "blocked_now": "Citizens blocked now",
    },
}

SHARES = ("appointments.no_show_rate", "seats.utilisation", "ratings.satisfied_share")
SHEET_NAMES = {"zh": ("预约明细", "汇总"), "en": ("Appointments", "Summary")}
SUMMARY_HEADER = {"zh": ("指标", "本期", "上期", "编码"), "en": ("Figure", "This period",
                                                         "Previous period", "Key")}


def _lang(locale: str) -> str:
    return "zh" if locale.lower().startswith("zh") else "en"


def _cells(row: AppointmentRow, lang: str) -> list[Value | dt.datetime | dt.date]:
    """One appointment's values in column order, codes turned into words."""
    values = VALUES[lang]
    out: list[Value | dt.datetime | dt.date] = []
    for column in EXPORT_COLUMNS:
        value = getattr(row, column)
        if column in ("status", "channel", "cancel_kind", "offline"):
            value = values.get(value, value) if value != "" else ""
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
    labels = SUMMARY_LABELS[_lang(locale)]
    return [(labels.get(key, key), current, previous, key)
            for key, current, previous in summary.items()]


def _summary_text(value: Value, key: str) -> str:
    if value is None:
        return ""
    if key in SHARES and isinstance(value, float):
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _period_line(summary: Figures, lang: str) -> list[str]:
    scope = ""
    if summary.scope is not None:
        scope = summary.scope.name_zh if lang == "zh" else summary.scope.name_en
    label = "统计期间" if lang == "zh" else "Period"
    return [label, summary.current.period.label, summary.previous.period.label, scope]


def summary_csv(summary: Figures, locale: str = "zh-CN") -> bytes:
    """The summary alone as a CSV file (UTF-8 with BOM)."""
    lang = _lang(locale)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(_period_line(summary, lang))
    writer.writerow(SUMMARY_HEADER[lang])
    for label, current, previous, key in summary_rows(summary, locale):
        writer.writerow([label, _summary_text(current, key), _summary_text(previous, key), key])
    return buffer.getvalue().encode("utf-8-sig")


def export_csv(rows: Iterable[AppointmentRow], summary: Figures | None = None, *,
               locale: str = "zh-CN") -> bytes:
    """The appointments as CSV (UTF-8 with BOM); the summary follows after an empty line.

    Args:
        rows: from ``storage.stats.appointment_rows`` (already masked).
        summary: the period's figures, or None for the appointments only.

    Returns:
        The file's bytes.
    """
    lang = _lang(locale)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([COLUMNS[lang][c] for c in EXPORT_COLUMNS])
    for row in rows:
        writer.writerow([_text(v) for v in _cells(row, lang)])
    text = buffer.getvalue()
    if summary is not None:
        text += "\r\n" + summary_csv(summary, locale).decode("utf-8-sig")
    return text.encode("utf-8-sig")


_WIDTHS = {"code": 10, "service_code": 18, "service_name": 30, "local_date": 12, "starts_at": 17,
           "status": 10, "channel": 10, "offline": 8, "name": 10, "mobile": 14, "id_number": 21,
           "created_at": 17, "checked_in_at": 17, "completed_at": 17, "cancelled_at": 17,
           "cancel_kind": 14, "rating": 6}


def export_xlsx(rows: Iterable[AppointmentRow], summary: Figures | None = None, *,
                locale: str = "zh-CN") -> bytes:
    """The appointments and the summary as an Excel workbook, one sheet each.

    Written in openpyxl's write-only mode, so a month of a busy centre stays small in memory.
    Dates and times are real Excel dates; shares are percentages.

    Returns:
        The .xlsx file's bytes.
    """
    lang = _lang(locale)
    book = Workbook(write_only=True)
    detail_name, summary_name = SHEET_NAMES[lang]
    sheet = book.create_sheet(detail_name)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for index, column in enumerate(EXPORT_COLUMNS):
        sheet.column_dimensions[letters[index]].width = _WIDTHS.get(column, 12)
    sheet.freeze_panes = "A2"
    sheet.append(_header(sheet, [COLUMNS[lang][c] for c in EXPORT_COLUMNS]))
    for row in rows:
        cells = []
        for value in _cells(row, lang):
            cell = WriteOnlyCell(sheet, value=value)
            if isinstance(value, dt.datetime):
                cell.number_format = "yyyy-mm-dd hh:mm"
            elif isinstance(value, dt.date):
                cell.number_format = "yyyy-mm-dd"
            cells.append(cell)
        sheet.append(cells)
    if summary is not None:
        totals = book.create_sheet(summary_name)
        for letter, width in zip("ABCD", (34, 14, 14, 34), strict=True):
            totals.column_dimensions[letter].width = width
        totals.append(_period_line(summary, lang))
        totals.append(_header(totals, list(SUMMARY_HEADER[lang])))
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
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _header(sheet: object, titles: Sequence[str]) -> list[WriteOnlyCell]:
    cells = []
    for title in titles:
        cell = WriteOnlyCell(sheet, value=title)  # type: ignore[arg-type]
        cell.font = Font(bold=True)
        cells.append(cell)
    return cells
