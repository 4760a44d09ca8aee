"""Exports of the annual "regular use" report: column headers in English and Vietnamese, an Excel
workbook laid out as the report to the ministry (with native Excel charts), and PNG charts.

The workbook has four sheets: Summary (title, period, the table by level with its total row and a
column chart), Agencies (the table by agency, ranked, with a bar chart), Trend (the months of the
period with a line chart) and Data (``report.rows`` in ``report.columns`` order, values as the
report engine gave them). Percentages are stored as numbers (23.4) with the format ``0.0``; a
missing value is an empty cell; agencies too small to publish are greyed and noted. Every text is
written as a string in NFC, never read as a formula, number or link.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

if TYPE_CHECKING:
    from xlsxwriter.format import Format
    from xlsxwriter.workbook import Workbook
    from xlsxwriter.worksheet import Worksheet

    from provisioning.usage_stats import UsageReport
    from provisioning.workcalendar import Period

LANGS = ("en", "vi")

HEADERS_EN: dict[str, str] = {
    "key": "Code",
    "name": "Agency",
    "level": "Level",
    "staff": "Officials on staff",
    "mailboxes": "Personal mailboxes",
    "coverage_pct": "Officials with an official mailbox (%)",
    "eligible": "Eligible mailboxes",
    "regular": "Regular users",
    "regular_pct": "Officials regularly using official email (%)",
    "daily": "Daily users",
    "daily_pct": "Officials using official email daily (%)",
    "dormant": "Dormant mailboxes",
    "shared": "Agency mailboxes",
    "shared_active": "Active agency mailboxes",
    "suppressed": "Not published (agency too small)",
    "regular_pct_prev": "Regular use, same period last year (%)",
    "change_pts": "Change (percentage points)",
    "agency": "Agency code",
    "address": "Email address",
    "full_name": "Full name",
    "kind": "Mailbox type",
    "eligible_days": "Eligible working days",
    "eligible_weeks": "Eligible working weeks",
    "active_weeks": "Active weeks",
    "active_days": "Active days",
    "sent": "Messages sent",
    "last_active": "Last active",
    "month": "Month",
}

HEADERS_VI: dict[str, str] = {
    "key": "Mã",
    "name": "Cơ quan, đơn vị",
    "level": "Cấp",
    "staff": "Số CBCCVC",
    "mailboxes": "Số hộp thư cá nhân",
    "coverage_pct": "Tỷ lệ CBCCVC được cấp hộp thư điện tử công vụ (%)",
    "eligible": "Số hộp thư thuộc diện thống kê",
    "regular": "Số CBCCVC thường xuyên sử dụng",
    "regular_pct": "Tỷ lệ CBCCVC thường xuyên sử dụng thư điện tử công vụ (%)",
    "daily": "Số CBCCVC sử dụng hằng ngày",
    "daily_pct": "Tỷ lệ CBCCVC sử dụng thư điện tử công vụ hằng ngày (%)",
    "dormant": "Hộp thư không hoạt động",
    "shared": "Hộp thư cơ quan",
    "shared_active": "Hộp thư cơ quan có hoạt động",
    "suppressed": "Không công bố (đơn vị quá nhỏ)",
    "regular_pct_prev": "Tỷ lệ thường xuyên sử dụng cùng kỳ năm trước (%)",
    "change_pts": "Tăng, giảm so với cùng kỳ (điểm %)",
    "agency": "Mã định danh cơ quan",
    "address": "Địa chỉ thư điện tử",
    "full_name": "Họ và tên",
    "kind": "Loại hộp thư",
    "eligible_days": "Số ngày làm việc thuộc diện thống kê",
    "eligible_weeks": "Số tuần làm việc thuộc diện thống kê",
    "active_weeks": "Số tuần có hoạt động",
    "active_days": "Số ngày có hoạt động",
    "sent": "Số thư đã gửi",
    "last_active": "Ngày hoạt động gần nhất",
    "month": "Tháng",
}

# In account rows ``eligible``, ``regular`` and ``daily`` are yes/no, not counts.
ACCOUNT_HEADERS: dict[str, dict[str, str]] = {
    "en": {"eligible": "Eligible", "regular": "Regular user", "daily": "Daily user"},
    "vi": {"eligible": "Thuộc diện thống kê", "regular": "Thường xuyên sử dụng", "daily": "Sử dụng hằng ngày"},
}

LEVELS: dict[str, dict[str, str]] = {
    "en": {"central": "Central", "province": "Province", "district": "District", "commune": "Commune",
           "total": "Total"},
    "vi": {"central": "Trung ương", "province": "Cấp tỉnh", "district": "Cấp huyện", "commune": "Cấp xã",
           "total": "Tổng cộng"},
}

_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "summary": "Summary", "agencies": "Agencies", "trend": "Trend", "data": "Data",
        "title": "Official email use statistics, {phrase}",
        "dates": "Reporting period: {start} to {end}",
        "compared": "Compared with the same period last year: {start} to {end}",
        "by_level": "Officials regularly using official email, by level",
        "by_agency": "Officials regularly using official email, by agency",
        "trend_title": "Officials regularly using official email, by month",
        "note": "Note", "suppressed": "Not published: agency too small", "no_data": "no data",
        "not_published": "not published", "pct_axis": "%",
    },
    "vi": {
        "summary": "Tổng hợp", "agencies": "Theo cơ quan", "trend": "Theo tháng", "data": "Dữ liệu",
        "title": "Thống kê tình hình sử dụng thư điện tử công vụ {phrase}",
        "dates": "Kỳ báo cáo: từ ngày {start} đến ngày {end}",
        "compared": "So sánh với cùng kỳ năm trước: từ ngày {start} đến ngày {end}",
        "by_level": "Tỷ lệ CBCCVC thường xuyên sử dụng thư điện tử công vụ theo cấp",
        "by_agency": "Tỷ lệ CBCCVC thường xuyên sử dụng thư điện tử công vụ theo cơ quan, đơn vị",
        "trend_title": "Tỷ lệ CBCCVC thường xuyên sử dụng thư điện tử công vụ theo tháng",
        "note": "Ghi chú", "suppressed": "Không công bố: đơn vị quá nhỏ", "no_data": "không có số liệu",
        "not_published": "không công bố", "pct_axis": "%",
    },
}

_TABLE_COLUMNS = ("staff", "mailboxes", "coverage_pct", "eligible", "regular", "regular_pct", "daily",
                  "daily_pct", "dormant", "shared", "shared_active")
_COMPARISON = ("regular_pct_prev", "change_pts")
_MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
              "October", "November", "December")
_ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV"}
_NOTE = "_note"  # pseudo-column: the suppression note
_BLUE, _GREY = "#2E75B6", "#A5A5A5"  # this period, the same period last year


def _check_lang(lang: str) -> str:
    if lang not in LANGS:
        raise ValueError(f"language {lang!r} is not supported (use 'en' or 'vi')")
    return lang


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def level_label(level: str | None, lang: str = "en") -> str:
    """The name of a level (or of the ``total`` row) in ``lang``; an unknown level is returned as is,
    None as an empty string.

    :raises ValueError: ``lang`` is neither "en" nor "vi".
    """
    names = LEVELS[_check_lang(lang)]
    return "" if level is None else names.get(level, level)


def headers(columns: Iterable[str], lang: str = "en", *, by: str | None = None) -> list[str]:
    """The header of each column key in ``lang``, in order; a key without one keeps its own name.
    With ``by="account"``, ``eligible``, ``regular`` and ``daily`` are worded as yes/no columns.

    :raises ValueError: ``lang`` is neither "en" nor "vi".
    """
    table = {**(HEADERS_VI if _check_lang(lang) == "vi" else HEADERS_EN),
             **(ACCOUNT_HEADERS[lang] if by == "account" else {})}
    return [table.get(c, c) for c in columns]


def _period_phrase(period: Period, lang: str) -> str:
    """ "năm 2025", "quý III năm 2025", "tháng 11 năm 2025" or a date range (English alike)."""
    label = period.label
    if re.fullmatch(r"\d{4}", label):
        return f"năm {label}" if lang == "vi" else label
    if match := re.fullmatch(r"(\d{4})-Q([1-4])", label):
        year, q = match.group(1), int(match.group(2))
        return f"quý {_ROMAN[q]} năm {year}" if lang == "vi" else f"Q{q} {year}"
    if match := re.fullmatch(r"(\d{4})-(\d{2})", label):
        year, month = match.group(1), int(match.group(2))
        return f"tháng {month} năm {year}" if lang == "vi" else f"{_MONTHS_EN[month - 1]} {year}"
    start, end = _day(period.start, lang), _day(period.end, lang)
    return f"từ ngày {start} đến ngày {end}" if lang == "vi" else f"{start} to {end}"


def _day(d: date, lang: str) -> str:
    return f"{d:%d/%m/%Y}" if lang == "vi" else d.isoformat()


def _month_label(month: str, lang: str) -> str:
    """ "2025-01" as "01/2025" in Vietnamese, unchanged in English."""
    if lang == "vi" and (match := re.fullmatch(r"(\d{4})-(\d{2})", month)):
        return f"{match.group(2)}/{match.group(1)}"
    return month


def _row_name(row: Mapping[str, Any], lang: str) -> str:
    """What a table shows for a row: the level's name for level and total rows, else the agency's."""
    if row.get("key") == "total":
        return level_label("total", lang)
    if row.get("key") == row.get("level") or not row.get("name"):
        return level_label(row.get("level") or row.get("key"), lang)
    return str(row["name"])


def _number(value: Any) -> float | None:
    """A finite number to plot, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _ranked(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Agencies by regular use, highest first; those without a figure (suppressed, no data) last."""
    return sorted(rows, key=lambda r: (_number(r.get("regular_pct")) is None,
                                       -(_number(r.get("regular_pct")) or 0.0), str(r.get("name") or "")))


# --- Excel ------------------------------------------------------------------------------------


class _Sheet:
    """Writes typed cells on one worksheet and remembers the widest text of each column."""

    def __init__(self, book: Workbook, ws: Worksheet) -> None:
        self.book, self.ws = book, ws
        self.widths: dict[int, float] = {}
        self._formats: dict[tuple[str, str], Format] = {}

    def fmt(self, kind: str, style: str = "") -> Format:
        """A cached format: ``kind`` is text/int/num/pct/change/date/bool/header/title/subtitle/caption,
        ``style`` is ""/"total"/"suppressed"."""
        if (kind, style) not in self._formats:
            props: dict[str, Any] = {"font_name": "Arial", "font_size": 10, "valign": "top"}
            props.update({
                "text": {"border": 1},
                "int": {"border": 1, "num_format": "#,##0"},
                "num": {"border": 1},
                "pct": {"border": 1, "num_format": "0.0"},
                "change": {"border": 1, "num_format": "+0.0;-0.0;0.0"},
                "date": {"border": 1, "num_format": "yyyy-mm-dd"},
                "bool": {"border": 1, "align": "center"},
                "header": {"border": 1, "bold": True, "text_wrap": True, "align": "center",
                           "valign": "vcenter", "bg_color": "#DDEBF7"},
                "title": {"bold": True, "font_size": 14},
                "subtitle": {"italic": True},
                "caption": {"bold": True, "font_size": 11},
            }[kind])
            if style == "total":
                props.update(bold=True, bg_color="#F2F2F2")
            elif style == "suppressed":
                props.update(italic=True, font_color="#7F7F7F")
            self._formats[kind, style] = self.book.add_format(props)
        return self._formats[kind, style]

    def text(self, row: int, col: int, value: str, kind: str = "text", style: str = "", width: bool = True) -> None:
        """Writes ``value`` as a string (NFC), whatever it looks like."""
        value = _nfc(value)
        self.ws.write_string(row, col, value, self.fmt(kind, style))
        if width:
            self.widths[col] = max(self.widths.get(col, 0), len(value))

    def cell(self, row: int, col: int, key: str, value: Any, style: str = "") -> None:
        """Writes a value by its type: None (and NaN) empty, bool, number (percent-like keys as
        ``0.0``), date, anything else as a string."""
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            kind = "pct" if key.endswith("_pct") or key == "regular_pct_prev" else "text"
            self.ws.write_blank(row, col, None, self.fmt(kind, style))
        elif isinstance(value, bool):
            self.ws.write_boolean(row, col, value, self.fmt("bool", style))
        elif isinstance(value, (int, float)):
            kind = ("change" if key == "change_pts" else
                    "pct" if key.endswith("_pct") or key == "regular_pct_prev" else
                    "int" if isinstance(value, int) else "num")
            self.ws.write_number(row, col, value, self.fmt(kind, style))
            self.widths[col] = max(self.widths.get(col, 0), len(f"{value:,}"))
        elif isinstance(value, (date, datetime)):
            self.ws.write_datetime(row, col, value, self.fmt("date", style))
            self.widths[col] = max(self.widths.get(col, 0), 10)
        else:
            self.text(row, col, str(value), style=style)

    def header_row(self, row: int, labels: Sequence[str], min_width: int = 8, max_width: int = 40) -> None:
        """Writes wrapped headers, sets each column's width from its content and the row's height
        from the longest wrapped header."""
        lines = 1
        for col, label in enumerate(labels):
            longest_word = max((len(w) for w in label.split()), default=0)
            width = min(max(self.widths.get(col, 0) + 2, min_width, longest_word + 2, math.ceil(len(label) / 4) + 2),
                        max_width)  # headers wrap on at most about four lines
            self.ws.set_column(col, col, width)
            self.text(row, col, label, "header", width=False)
            lines = max(lines, math.ceil(len(label) * 1.1 / (width - 1)))
        self.ws.set_row(row, 13 * lines + 4)


def _table(sheet: _Sheet, top: int, keys: Sequence[str], rows: Sequence[Mapping[str, Any]], lang: str,
           by: str | None = None) -> None:
    """The rows under a header row at ``top``; ``name`` as displayed by :func:`_row_name` unless
    ``by`` is set (raw data), ``level`` translated, total rows bold, suppressed rows grey and noted."""
    for i, row in enumerate(rows, start=top + 1):
        style = "total" if row.get("key") == "total" else "suppressed" if row.get("suppressed") else ""
        for col, key in enumerate(keys):
            if key == _NOTE:
                sheet.text(i, col, _TEXT[lang]["suppressed"] if row.get("suppressed") else "", style=style)
            elif by is None and key == "name":
                sheet.text(i, col, _row_name(row, lang), style=style)
            elif by is None and key == "level" and row.get("level") is not None:
                sheet.text(i, col, level_label(str(row["level"]), lang), style=style)
            else:
                sheet.cell(i, col, key, row.get(key), style)
    labels = [_TEXT[lang]["note"] if k == _NOTE else h for k, h in zip(keys, headers(keys, lang, by=by))]
    sheet.header_row(top, labels)


def _table_keys(report: UsageReport, lead: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    keys = [*lead, *_TABLE_COLUMNS, *(_COMPARISON if report.previous is not None else ())]
    return keys + [_NOTE] if any(r.get("suppressed") for r in rows) else keys


def _pct_chart(book: Workbook, kind: str, sheet: str, top: int, count: int, name_col: int,
               series: Sequence[tuple[str, int, str]], title: str, lang: str) -> Any:
    """A column or bar chart of percentage columns (name, column, colour) of a table (header at
    ``top``, ``count`` rows)."""
    chart = book.add_chart({"type": kind})
    for name, col, color in series:
        chart.add_series({
            "name": _nfc(name),
            "categories": [sheet, top + 1, name_col, top + count, name_col],
            "values": [sheet, top + 1, col, top + count, col],
            "fill": {"color": color},
            "data_labels": {"value": True, "num_format": "0.0"},
            "gap": 60,
        })
    chart.set_title({"name": _nfc(title), "name_font": {"size": 11}})
    value_axis = {"min": 0, "max": 100, "num_format": "0", "name": _TEXT[lang]["pct_axis"]}
    if kind == "bar":
        chart.set_x_axis(value_axis)
        chart.set_y_axis({"reverse": True, "crossing": "max"})  # first (highest) row on top
    else:
        chart.set_y_axis(value_axis)
    chart.set_legend({"position": "bottom"} if len(series) > 1 else {"none": True})
    return chart


def write_xlsx(path: Path, report: UsageReport, lang: str = "en") -> None:
    """Writes the report as an Excel workbook at ``path`` (replacing it): sheets Summary, Agencies,
    Trend and Data (Tổng hợp, Theo cơ quan, Theo tháng, Dữ liệu in Vietnamese), each with frozen
    headers and a chart where there is something to plot.

    :raises ValueError: ``lang`` is neither "en" nor "vi".
    """
    import xlsxwriter

    t = _TEXT[_check_lang(lang)]
    book = xlsxwriter.Workbook(str(path), {"strings_to_formulas": False, "strings_to_numbers": False,
                                           "strings_to_urls": False, "remove_timezone": True})
    try:
        title = t["title"].format(phrase=_period_phrase(report.period, lang))
        book.set_properties({"title": _nfc(title)})

        # Summary: title, period, table by level, column chart.
        summary = _Sheet(book, book.add_worksheet(t["summary"]))
        summary.text(0, 0, title, "title", width=False)
        summary.text(1, 0, t["dates"].format(start=_day(report.period.start, lang),
                                             end=_day(report.period.end, lang)), "subtitle", width=False)
        if report.previous is not None:
            summary.text(2, 0, t["compared"].format(start=_day(report.previous.start, lang),
                                                    end=_day(report.previous.end, lang)), "subtitle", width=False)
        top = 4
        keys = _table_keys(report, ["name"], report.by_level)
        _table(summary, top, keys, report.by_level, lang)
        summary.ws.freeze_panes(top + 1, 1)
        if report.by_level:
            series = [(report.period.label, keys.index("regular_pct"), _BLUE)]
            if report.previous is not None:
                series.insert(0, (report.previous.label, keys.index("regular_pct_prev"), _GREY))
            chart = _pct_chart(book, "column", t["summary"], top, len(report.by_level), 0, series,
                               t["by_level"], lang)
            chart.set_size({"width": 640, "height": 360})
            summary.ws.insert_chart(top + len(report.by_level) + 2, 0, chart)

        # Agencies: ranked table, bar chart beside it.
        agencies = _Sheet(book, book.add_worksheet(t["agencies"]))
        agencies.text(0, 0, t["by_agency"], "caption", width=False)
        top = 2
        ranked = _ranked(report.by_agency)
        keys = _table_keys(report, ["key", "name", "level"], ranked)
        _table(agencies, top, keys, ranked, lang)
        agencies.ws.freeze_panes(top + 1, 2)
        if ranked:
            agencies.ws.autofilter(top, 0, top + len(ranked), len(keys) - 1)
            series = [(report.period.label, keys.index("regular_pct"), _BLUE)]
            if report.previous is not None:
                series.append((report.previous.label, keys.index("regular_pct_prev"), _GREY))
            chart = _pct_chart(book, "bar", t["agencies"], top, len(ranked), 1, series, t["by_agency"], lang)
            chart.set_size({"width": 720, "height": 120 + len(ranked) * 18 * len(series)})
            agencies.ws.insert_chart(top, len(keys) + 1, chart)

        # Trend: one row per month, line chart beside it.
        trend = _Sheet(book, book.add_worksheet(t["trend"]))
        trend.text(0, 0, t["trend_title"], "caption", width=False)
        keys = ["month", "eligible", "regular", "regular_pct"]
        months = [{**m, "month": _month_label(str(m.get("month", "")), lang)} for m in report.trend]
        _table(trend, top, keys, months, lang, by="trend")
        trend.ws.freeze_panes(top + 1, 1)
        if months:
            chart = book.add_chart({"type": "line"})
            chart.add_series({
                "name": _nfc(report.period.label),
                "categories": [t["trend"], top + 1, 0, top + len(months), 0],
                "values": [t["trend"], top + 1, 3, top + len(months), 3],
                "marker": {"type": "circle", "size": 6},
                "data_labels": {"value": True, "num_format": "0.0", "position": "above"},
            })
            chart.set_title({"name": _nfc(t["trend_title"]), "name_font": {"size": 11}})
            chart.set_y_axis({"min": 0, "max": 100, "num_format": "0", "name": t["pct_axis"]})
            chart.set_legend({"none": True})
            chart.show_blanks_as("gap")
            chart.set_size({"width": 640, "height": 360})
            trend.ws.insert_chart(top, len(keys) + 1, chart)

        # Data: the breakdown asked for, as the engine gave it.
        data = _Sheet(book, book.add_worksheet(t["data"]))
        _table(data, 0, report.columns, report.rows, lang, by=report.by)
        data.ws.freeze_panes(1, 0)
        if report.rows and report.columns:
            data.ws.autofilter(0, 0, len(report.rows), len(report.columns) - 1)
    finally:
        book.close()


# --- PNG charts -------------------------------------------------------------------------------

def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # Agg for this figure only: no global backend, no pyplot
    return fig


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def _level_chart(path: Path, report: UsageReport, lang: str) -> Path:
    t = _TEXT[lang]
    rows = report.by_level
    fig = _figure(8, 4.8)
    ax = fig.add_subplot()
    names = [_row_name(r, lang) for r in rows]
    series = [(report.period.label, "regular_pct", _BLUE)]
    if report.previous is not None:
        series.insert(0, (report.previous.label, "regular_pct_prev", _GREY))
    width = 0.8 / len(series)
    for s, (label, key, color) in enumerate(series):
        xs = [i - 0.4 + width * (s + 0.5) for i in range(len(rows))]
        values = [_number(r.get(key)) for r in rows]
        bars = ax.bar([x for x, v in zip(xs, values) if v is not None], [v for v in values if v is not None],
                      width, label=label, color=color)
        ax.bar_label(bars, fmt="%.1f", padding=2, fontsize=9)
        for x, v in zip(xs, values):
            if v is None:
                ax.text(x, 1, t["no_data"], rotation=90, ha="center", va="bottom", fontsize=8, color="#7F7F7F")
    ax.set_xticks(range(len(rows)), names)
    _pct_axis(ax, "y", t)
    if not rows:
        _empty(ax, t)
    if len(series) > 1:
        ax.legend(loc="upper left")
    ax.set_title(f"{t['by_level']}\n{_period_phrase(report.period, lang)}", fontsize=11)
    return _save(fig, path)


def _agency_chart(path: Path, report: UsageReport, lang: str) -> Path:
    t = _TEXT[lang]
    rows = _ranked(report.by_agency)
    fig = _figure(10, max(3.0, 1.4 + 0.26 * len(rows)))
    ax = fig.add_subplot()
    ys = list(range(len(rows)))
    values = [_number(r.get("regular_pct")) for r in rows]
    bars = ax.barh([y for y, v in zip(ys, values) if v is not None], [v for v in values if v is not None],
                   0.7, color=_BLUE, label=report.period.label)
    ax.bar_label(bars, fmt="%.1f", padding=2, fontsize=8)
    for y, row, v in zip(ys, rows, values):
        if v is None:
            ax.text(1, y, t["not_published"] if row.get("suppressed") else t["no_data"], va="center",
                    fontsize=8, style="italic", color="#7F7F7F")
    if report.previous is not None:
        prev = [(y, _number(r.get("regular_pct_prev"))) for y, r in zip(ys, rows)]
        ax.scatter([p for _, p in prev if p is not None], [y for y, p in prev if p is not None], marker="|",
                   s=120, color="black", label=report.previous.label, zorder=3)
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(ys, [_short(_row_name(r, lang)) for r in rows], fontsize=8)
    ax.set_ylim(max(len(rows), 1) - 0.5, -0.5)  # highest on top
    _pct_axis(ax, "x", t)
    if not rows:
        _empty(ax, t)
    ax.set_title(f"{t['by_agency']}\n{_period_phrase(report.period, lang)}", fontsize=11)
    return _save(fig, path)


def _trend_chart(path: Path, report: UsageReport, lang: str) -> Path:
    t = _TEXT[lang]
    months = report.trend
    fig = _figure(8, 4.5)
    ax = fig.add_subplot()
    xs = list(range(len(months)))
    values = [_number(m.get("regular_pct")) for m in months]
    ax.plot(xs, [math.nan if v is None else v for v in values], marker="o", color=_BLUE)
    for x, v in zip(xs, values):
        if v is not None:
            ax.annotate(f"{v:.1f}", (x, v), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        else:
            ax.text(x, 2, t["no_data"], rotation=90, ha="center", va="bottom", fontsize=8, color="#7F7F7F")
    ax.set_xticks(xs, [_month_label(str(m.get("month", "")), lang) for m in months],
                  rotation=45 if len(months) > 6 else 0, ha="right" if len(months) > 6 else "center")
    _pct_axis(ax, "y", t)
    if not months:
        _empty(ax, t)
    ax.set_title(f"{t['trend_title']}\n{_period_phrase(report.period, lang)}", fontsize=11)
    return _save(fig, path)


def _pct_axis(ax: Any, which: str, t: Mapping[str, str]) -> None:
    if which == "x":
        ax.set_xlim(0, 112)  # room for the labels of full bars
        ax.set_xlabel(t["pct_axis"])
    else:
        ax.set_ylim(0, 105)
        ax.set_ylabel(t["pct_axis"])
    ax.grid(axis=which, color="#DDDDDD")
    ax.set_axisbelow(True)


def _empty(ax: Any, t: Mapping[str, str]) -> None:
    ax.text(0.5, 0.5, t["no_data"], transform=ax.transAxes, ha="center", va="center", color="#7F7F7F")


def _short(name: str, limit: int = 48) -> str:
    """A tick label: NFC, cut to ``limit`` characters, "$" escaped so it is never read as mathtext."""
    name = _nfc(name)
    name = name if len(name) <= limit else name[: limit - 1].rstrip() + "…"
    return name.replace("$", r"\$")


def write_charts(directory: Path, report: UsageReport, lang: str = "en") -> list[Path]:
    """Writes ``regular-use-by-level.png``, ``regular-use-by-agency.png`` (ranked horizontal bars;
    agencies without a figure labelled instead) and ``regular-use-trend.png`` into ``directory``
    (created if missing, files replaced) and returns their paths in that order. Uses matplotlib's
    Agg canvas directly: no pyplot, no global backend or style change.

    :raises ValueError: ``lang`` is neither "en" nor "vi".
    """
    import matplotlib

    _check_lang(lang)
    directory.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"],
                                "axes.spines.top": False, "axes.spines.right": False}):
        return [
            _level_chart(directory / "regular-use-by-level.png", report, lang),
            _agency_chart(directory / "regular-use-by-agency.png", report, lang),
            _trend_chart(directory / "regular-use-trend.png", report, lang),
        ]
