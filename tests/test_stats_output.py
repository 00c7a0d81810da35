"""The manager's chart and exports: rendered, read back, personal data masked."""

from __future__ import annotations

import csv
import datetime as dt
import io
import struct
import warnings

import openpyxl
import pytest
from matplotlib.ft2font import FT2Font

from bot import charts
from bot.charts import cjk_font, render_chart
from bot.export import export_csv, export_xlsx, summary_csv, summary_rows
from handlers.i18n import LOCALES, catalog
from storage.centre import Centre
from storage.clock import ManualClock
from storage.db import Database
from storage.models import AppointmentStatus, CancelKind, Channel
from storage.stats.exports import EXPORT_COLUMNS, appointment_rows
from storage.stats.figures import figures
from storage.stats.series import DayPoint, daily_series
from tests.helpers import local, make_centre
from tests.test_stats import NOW, WEEK, Story, build_story


@pytest.fixture
def centre() -> Centre:
    return make_centre(late_cancel="strike")


@pytest.fixture
async def story(database: Database, centre: Centre, clock: ManualClock) -> Story:
    return await build_story(database, centre, clock)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_the_cjk_font_has_the_glyphs_of_the_labels() -> None:
    font = cjk_font()
    # scripts/setup.sh installs it (fonts-noto-cjk) on every machine the README supports.
    assert font is not None, "no CJK font on this machine: run scripts/setup.sh as root"
    face = FT2Font(str(font.path))
    for label in charts.labels("zh-CN", font).values():
        for char in label:
            assert face.get_char_index(ord(char)) != 0, char  # 0 is the missing-glyph box


async def test_chart_of_a_week_is_a_phone_sized_png_in_chinese(story: Story) -> None:
    async with story.database.read() as session:
        series = await daily_series(session, story.centre, WEEK)
    with warnings.catch_warnings():
        # matplotlib warns "Glyph ... missing from font(s)" for every box it draws (tofu).
        warnings.simplefilter("error")
        png = render_chart(series, "青溪镇便民服务中心 本周预约", "zh-CN")
    assert png_size(png) == (1080, 1080)
    assert len(png) > 20_000  # bars, a line and text, not a blank canvas


def test_a_missing_glyph_is_caught() -> None:
    # What the chart tests rely on: drawing a character no font has warns, and warnings fail.
    with pytest.raises(UserWarning, match=r"Glyph .* missing from font"):
        _draw_in_latin_only("本周")


def _draw_in_latin_only(text: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure()
    FigureCanvasAgg(figure)
    figure.suptitle(text, family=charts.LATIN_FAMILY)
    figure.savefig(io.BytesIO(), format="png")


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, str]]]:
    """The title and labels of each chart drawn in the test."""
    calls: list[tuple[str, dict[str, str]]] = []
    real = charts._draw

    def spy(figure, series, title, text, families):  # type: ignore[no-untyped-def]
        calls.append((title, text))
        real(figure, series, title, text, families)

    monkeypatch.setattr(charts, "_draw", spy)
    return calls


async def test_without_a_cjk_font_the_whole_chart_is_in_english(
        story: Story, monkeypatch: pytest.MonkeyPatch, drawn: list[tuple[str, dict[str, str]]]) -> None:
    monkeypatch.setattr(charts, "cjk_font", lambda: None)    # a machine without fonts-noto-cjk
    async with story.database.read() as session:
        series = await daily_series(session, story.centre, WEEK)
    png = render_chart(series, "青溪镇便民服务中心 本周预约", "zh-CN")  # no glyph missing: no warning
    assert png_size(png) == (1080, 1080)
    (title, labels), = drawn
    assert title == "Daily bookings, no-shows and seat use, 2026-11-23 – 2026-11-29"
    assert labels == charts.labels("en", None)
    render_chart([], "空", "zh-CN")
    assert drawn[1] == ("Daily bookings, no-shows and seat use", charts.labels("en", None))


def test_a_title_with_a_character_no_font_has_is_replaced(drawn: list[tuple[str, dict[str, str]]]) -> None:
    day = DayPoint(WEEK.first, 3, 1, 10, 4)
    render_chart([day], "本周预约 \ue000", "zh-CN")
    render_chart([day], "本周预约", "zh-CN")
    assert [title for title, _ in drawn] == ["Daily bookings, no-shows and seat use, 2026-11-23", "本周预约"]
    assert drawn[1][1] == charts.labels("zh-CN", charts.cjk_font())


def test_chart_draws_something_different_for_different_data() -> None:
    days = [WEEK.first + dt.timedelta(days=n) for n in range(7)]
    quiet = render_chart([DayPoint(d) for d in days], "Week", "en")
    busy = render_chart([DayPoint(d, 40 + n, n, 100, 50 + 5 * n) for n, d in enumerate(days)],
                        "Week", "en")
    assert png_size(quiet) == png_size(busy) == (1080, 1080)
    assert quiet != busy


def test_chart_of_nothing_says_so() -> None:
    png = render_chart([], "空", "zh-CN")
    assert png_size(png) == (1080, 1080)


async def _rows_and_summary(story: Story):  # type: ignore[no-untyped-def]
    async with story.database.read() as session:
        rows = [row async for row in appointment_rows(session, story.centre, WEEK)]
        summary = await figures(session, story.centre, NOW, WEEK)
    return rows, summary


async def test_csv_reads_back_with_bom_masked_and_summary(story: Story) -> None:
    rows, summary = await _rows_and_summary(story)
    data = export_csv(rows, summary)
    assert data.startswith(b"\xef\xbb\xbf")  # Excel needs the BOM to read UTF-8 Chinese
    lines = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    header = lines[0]
    assert header[:3] == ["预约码", "事项编码", "事项"]
    table = [dict(zip(header, line, strict=True)) for line in lines[1:12]]
    assert len(table) == 11 and lines[12] == []
    assert {r["预约码"] for r in table} == {r.code for r in rows}
    p7 = next(r for r in table if r["预约码"] == story.codes["P7"])
    assert (p7["渠道"], p7["现场/电话代办"], p7["状态"]) == ("工作人员", "是", "已办结")
    assert p7["时间"] == "2026-11-23 14:10"
    for record in table:
        assert record["姓名"] == "欧**明" and record["手机"].startswith("139****")
        assert record["证件号"].startswith("110***********")
    text = data.decode("utf-8-sig")
    assert "欧阳小明" not in text and "13912340001" not in text
    summary_part = {line[3]: line for line in lines[14:] if len(line) == 4}
    assert summary_part["bookings.total"][:3] == ["预约量", "8", "4"]
    assert summary_part["appointments.no_show_rate"][1] == "33.3%"
    assert summary_part["blocked_now"][2] == ""


async def test_summary_csv_in_english(story: Story) -> None:
    _, summary = await _rows_and_summary(story)
    lines = list(csv.reader(io.StringIO(summary_csv(summary, "en").decode("utf-8-sig"))))
    assert lines[0] == ["Period", "2026-11-23..2026-11-29", "2026-11-16..2026-11-22", ""]
    assert lines[1] == ["Figure", "This period", "Previous period", "Key"]
    assert ["Bookings", "8", "4", "bookings.total"] in lines


async def test_xlsx_reads_back_with_two_sheets(story: Story) -> None:
    rows, summary = await _rows_and_summary(story)
    book = openpyxl.load_workbook(io.BytesIO(export_xlsx(rows, summary)))
    assert book.sheetnames == ["预约明细", "汇总"]
    detail = list(book["预约明细"].iter_rows(values_only=True))
    assert detail[0][0] == "预约码" and len(detail) == 12
    header = list(detail[0])
    records = [dict(zip(header, line, strict=True)) for line in detail[1:]]
    p5 = next(r for r in records if r["预约码"] == story.codes["P5"])
    # Real date cells in local time (Excel keeps no zone).
    assert p5["时间"] == local(2026, 11, 25, 9, 0).replace(tzinfo=None)
    assert p5["日期"] == local(2026, 11, 25).replace(tzinfo=None)
    assert (p5["评价"], p5["姓名"], p5["状态"]) == (4, "欧**明", "已办结")
    assert all(r["手机"].startswith("139****") for r in records)
    totals = {line[3]: line for line in book["汇总"].iter_rows(values_only=True)}
    assert totals["bookings.total"][1:3] == (8, 4)
    assert totals["seats.utilisation"][1] == pytest.approx(6 / 633)
    assert book["汇总"]["B1"].value == "2026-11-23..2026-11-29"


@pytest.mark.parametrize("locale", LOCALES)
def test_every_column_value_and_chart_word_is_in_the_catalog(locale: str) -> None:
    words = catalog(locale)
    wanted = ({f"export.column.{column}" for column in EXPORT_COLUMNS}
              | {f"export.value.{code}" for code in (*AppointmentStatus, *Channel, *CancelKind,
                                                     "yes", "no")}
              | {f"chart.{name}" for name in charts.LABELS})
    assert not wanted - set(words)


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
async def test_every_summary_figure_has_a_label(story: Story, locale: str) -> None:
    _, summary = await _rows_and_summary(story)
    for label, _, _, key in summary_rows(summary, locale):
        assert label != key, key
