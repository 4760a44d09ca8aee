"""Exports of the regular-use report: headers in both languages, the Excel workbook (read back with
openpyxl, charts checked in the package's XML) and the PNG charts."""

from __future__ import annotations

import re
import struct
import unicodedata
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import matplotlib.image
import openpyxl
import pytest
from openpyxl.utils import get_column_letter

from provisioning.usage_export import (HEADERS_EN, HEADERS_VI, headers, level_label, write_charts,
                                       write_xlsx)
from provisioning.usage_stats import ACCOUNT_COLUMNS, AGGREGATE_COLUMNS, COMPARE_COLUMNS, UsageReport
from provisioning.workcalendar import Period

Y2025 = Period("2025", date(2025, 1, 1), date(2025, 12, 31))
Y2024 = Period("2024", date(2024, 1, 1), date(2024, 12, 31))
NFC_COMMUNE = "Ủy ban nhân dân xã Tân Phú Đông"
FORMULA_NAME = '=HYPERLINK("http://evil.example","Ban Quản lý")'
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def agg(key: str, name: str, level: str | None, staff: int | None, mailboxes: int, eligible: int, regular: int,
        *, suppressed: bool = False, prev: float | None = None) -> dict[str, Any]:
    """An aggregate row as the report engine builds it (percentages None when suppressed)."""
    def pct(part: int, whole: int | None) -> float | None:
        return round(100.0 * part / whole, 1) if whole and not suppressed else None

    regular_pct = pct(regular, eligible)
    return {
        "key": key, "name": name, "level": level, "staff": staff, "mailboxes": mailboxes,
        "coverage_pct": round(100.0 * mailboxes / staff, 1) if staff else None, "eligible": eligible,
        "regular": regular, "regular_pct": regular_pct, "daily": regular // 2, "daily_pct": pct(regular // 2, eligible),
        "dormant": 1, "shared": 2, "shared_active": 1, "suppressed": suppressed, "regular_pct_prev": prev,
        "change_pts": round(regular_pct - prev, 1) if regular_pct is not None and prev is not None else None,
    }


def make_report(*, compare: bool = True, agencies: int = 0, by: str = "agency") -> UsageReport:
    """Four agencies (one in NFD, one named like a formula, one suppressed, one without staff count),
    two levels and the total, three months (one without data); ``agencies`` adds that many more."""
    by_agency = [
        agg("000.00.15.H62", "Sở Kế hoạch và Đầu tư", "province", 120, 110, 100, 76, prev=70.5),
        agg("000.00.15.H62.01", unicodedata.normalize("NFD", NFC_COMMUNE), "commune", 30, 25, 24, 6, prev=30.0),
        agg("000.00.15.H62.02", FORMULA_NAME, "province", None, 8, 8, 4),
        agg("000.00.15.H62.03", "UBND xã Đắk Pơ", "commune", 5, 3, 3, 2, suppressed=True),
    ]
    by_agency += [agg(f"000.00.20.H62.{i:02}", f"Ủy ban nhân dân xã Phước Hưng số {i}", "commune", 40, 35, 30,
                      (i * 7) % 31) for i in range(agencies)]
    by_level = [
        agg("province", "province", "province", 120, 118, 108, 80, prev=68.0),
        agg("commune", "commune", "commune", 35, 28, 27, 8, prev=25.0),
        agg("total", "total", None, 155, 146, 135, 88, prev=60.1),
    ]
    trend = [
        {"month": "2025-01", "eligible": 130, "regular": 80, "regular_pct": 61.5},
        {"month": "2025-02", "eligible": 0, "regular": 0, "regular_pct": None},
        {"month": "2025-03", "eligible": 135, "regular": 90, "regular_pct": 66.7},
    ]
    columns = list(AGGREGATE_COLUMNS) + (list(COMPARE_COLUMNS) if compare else [])
    if not compare:
        for row in by_agency + by_level:
            del row["regular_pct_prev"], row["change_pts"]
    rows = by_agency if by == "agency" else by_level
    return UsageReport(period=Y2025, by=by, columns=columns, rows=rows, by_level=by_level, by_agency=by_agency,
                       trend=trend, previous=Y2024 if compare else None)


def header_cols(ws: Any, row: int) -> dict[str, int]:
    """Header text -> column number (1-based) of a header row."""
    return {c.value: c.column for c in ws[row] if c.value is not None}


def chart_refs(xlsx: Path) -> dict[str, list[str]]:
    """Chart kind (col, bar, line) -> the range formulas its series reference, from xl/charts/chart*.xml."""
    refs: dict[str, list[str]] = {}
    with zipfile.ZipFile(xlsx) as z:
        for name in z.namelist():
            if re.fullmatch(r"xl/charts/chart\d+\.xml", name):
                xml = z.read(name).decode()
                kind = "line" if "<c:lineChart>" in xml else re.search(r'<c:barDir val="(\w+)"/>', xml).group(1)
                refs[kind] = re.findall(r"<c:f>([^<]*)</c:f>", xml)
    return refs


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# --- headers -------------------------------------------------------------------------------------


def test_every_report_column_has_a_header_in_both_languages() -> None:
    keys = {*AGGREGATE_COLUMNS, *COMPARE_COLUMNS, *ACCOUNT_COLUMNS, "month"}
    assert keys <= HEADERS_EN.keys() and keys <= HEADERS_VI.keys()
    assert all(HEADERS_VI[k] == unicodedata.normalize("NFC", HEADERS_VI[k]) for k in HEADERS_VI)
    assert headers(["name", "staff", "mailboxes", "coverage_pct", "regular", "regular_pct", "dormant", "shared"],
                   "vi") == [
        "Cơ quan, đơn vị", "Số CBCCVC", "Số hộp thư cá nhân", "Tỷ lệ CBCCVC được cấp hộp thư điện tử công vụ (%)",
        "Số CBCCVC thường xuyên sử dụng", "Tỷ lệ CBCCVC thường xuyên sử dụng thư điện tử công vụ (%)",
        "Hộp thư không hoạt động", "Hộp thư cơ quan"]
    assert headers(["regular_pct", "unknown"], "en") == ["Officials regularly using official email (%)", "unknown"]
    assert headers(["regular"], "vi", by="account") == ["Thường xuyên sử dụng"]
    with pytest.raises(ValueError):
        headers(["name"], "fr")


def test_level_labels() -> None:
    assert [level_label(lv, "vi") for lv in ("province", "district", "commune", "central", "total")] == [
        "Cấp tỉnh", "Cấp huyện", "Cấp xã", "Trung ương", "Tổng cộng"]
    assert level_label("commune", "en") == "Commune"
    assert level_label("ward", "vi") == "ward" and level_label(None, "vi") == ""


# --- Excel ---------------------------------------------------------------------------------------


def test_xlsx_in_vietnamese(tmp_path: Path) -> None:
    path = tmp_path / "report.xlsx"
    report = make_report()
    write_xlsx(path, report, "vi")
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Tổng hợp", "Theo cơ quan", "Theo tháng", "Dữ liệu"]

    summary = wb["Tổng hợp"]
    assert summary["A1"].value == "Thống kê tình hình sử dụng thư điện tử công vụ năm 2025"
    assert summary["A2"].value == "Kỳ báo cáo: từ ngày 01/01/2025 đến ngày 31/12/2025"
    assert summary["A3"].value == "So sánh với cùng kỳ năm trước: từ ngày 01/01/2024 đến ngày 31/12/2024"
    cols = header_cols(summary, 5)
    assert list(cols) == headers(["name", "staff", "mailboxes", "coverage_pct", "eligible", "regular",
                                  "regular_pct", "daily", "daily_pct", "dormant", "shared", "shared_active",
                                  "regular_pct_prev", "change_pts"], "vi")
    assert [summary.cell(r, 1).value for r in (6, 7, 8)] == ["Cấp tỉnh", "Cấp xã", "Tổng cộng"]
    pct = summary.cell(8, cols[HEADERS_VI["regular_pct"]])
    assert (pct.value, pct.number_format, pct.data_type) == (65.2, "0.0", "n")
    assert summary.cell(8, cols[HEADERS_VI["staff"]]).value == 155
    assert summary.cell(8, cols[HEADERS_VI["change_pts"]]).value == pytest.approx(5.1)
    assert summary.cell(8, 1).font.b and not summary.cell(6, 1).font.b
    assert summary.freeze_panes == "B6"

    agencies = wb["Theo cơ quan"]
    cols = header_cols(agencies, 3)
    names = [agencies.cell(r, cols["Cơ quan, đơn vị"]).value for r in range(4, 8)]
    # ranked by regular use (76.0, 50.0, 25.0), the suppressed agency last
    assert names == ["Sở Kế hoạch và Đầu tư", FORMULA_NAME, NFC_COMMUNE, "UBND xã Đắk Pơ"]
    formula = agencies.cell(5, cols["Cơ quan, đơn vị"])
    assert formula.data_type == "s" and formula.value == FORMULA_NAME
    assert agencies.cell(5, cols["Số CBCCVC"]).value is None  # staff unknown
    assert agencies.cell(5, cols[HEADERS_VI["coverage_pct"]]).value is None
    assert agencies.cell(4, cols["Cấp"]).value == "Cấp tỉnh"
    suppressed = [agencies.cell(7, c).value for c in (cols[HEADERS_VI["regular_pct"]], cols["Ghi chú"],
                                                      cols[HEADERS_VI["eligible"]])]
    assert suppressed == [None, "Không công bố: đơn vị quá nhỏ", 3]
    assert agencies.cell(7, cols["Cơ quan, đơn vị"]).font.i
    assert agencies.cell(4, cols["Ghi chú"]).value in (None, "")
    assert agencies.freeze_panes == "C4"

    trend = wb["Theo tháng"]
    assert [c.value for c in trend[3]] == ["Tháng", HEADERS_VI["eligible"], HEADERS_VI["regular"],
                                           HEADERS_VI["regular_pct"]]
    assert [[c.value for c in row] for row in trend.iter_rows(min_row=4, max_row=6)] == [
        ["01/2025", 130, 80, 61.5], ["02/2025", 0, 0, None], ["03/2025", 135, 90, 66.7]]

    data = wb["Dữ liệu"]
    assert [c.value for c in data[1]] == headers(report.columns, "vi")
    assert data.freeze_panes == "A2"
    rows = [dict(zip(report.columns, (c.value for c in row))) for row in data.iter_rows(min_row=2)]
    assert [r["name"] for r in rows] == [unicodedata.normalize("NFC", r["name"]) for r in report.rows]
    assert rows[1]["name"] == NFC_COMMUNE  # written in NFC although given decomposed
    assert rows[3]["suppressed"] is True and rows[3]["regular_pct"] is None and rows[0]["suppressed"] is False
    assert rows[0]["regular_pct_prev"] == 70.5 and rows[0]["change_pts"] == 5.5
    assert data.cell(3, 1).data_type == "s" and data.cell(4, 2).data_type == "s"

    with zipfile.ZipFile(path) as z:  # no cell anywhere is a formula
        sheets = [n for n in z.namelist() if n.startswith("xl/worksheets/sheet")]
        assert len(sheets) == 4 and not any("<f>" in z.read(n).decode() for n in sheets)


def test_xlsx_charts_reference_the_tables(tmp_path: Path) -> None:
    path = tmp_path / "report.xlsx"
    write_xlsx(path, make_report(), "vi")
    wb = openpyxl.load_workbook(path)
    refs = chart_refs(path)
    assert sorted(refs) == ["bar", "col", "line"]

    def col(sheet: str, row: int, key: str) -> str:
        return get_column_letter(header_cols(wb[sheet], row)[HEADERS_VI[key]])

    # by level: last year's then this year's regular_pct over the three rows (levels and total)
    pct, prev = col("Tổng hợp", 5, "regular_pct"), col("Tổng hợp", 5, "regular_pct_prev")
    assert refs["col"] == ["'Tổng hợp'!$A$6:$A$8", f"'Tổng hợp'!${prev}$6:${prev}$8",
                           "'Tổng hợp'!$A$6:$A$8", f"'Tổng hợp'!${pct}$6:${pct}$8"]
    pct, prev = col("Theo cơ quan", 3, "regular_pct"), col("Theo cơ quan", 3, "regular_pct_prev")
    assert refs["bar"] == ["'Theo cơ quan'!$B$4:$B$7", f"'Theo cơ quan'!${pct}$4:${pct}$7",
                           "'Theo cơ quan'!$B$4:$B$7", f"'Theo cơ quan'!${prev}$4:${prev}$7"]
    assert refs["line"] == ["'Theo tháng'!$A$4:$A$6", "'Theo tháng'!$D$4:$D$6"]
    with zipfile.ZipFile(path) as z:  # the bar chart lists the highest agency on top
        bar = next(z.read(n).decode() for n in z.namelist() if n.startswith("xl/charts/")
                   and '<c:barDir val="bar"/>' in z.read(n).decode())
    assert '<c:orientation val="maxMin"/>' in bar


def test_xlsx_in_english_without_comparison(tmp_path: Path) -> None:
    path = tmp_path / "report.xlsx"
    report = make_report(compare=False, by="level")
    write_xlsx(path, report)
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Summary", "Agencies", "Trend", "Data"]
    summary = wb["Summary"]
    assert summary["A1"].value == "Official email use statistics, 2025"
    assert summary["A2"].value == "Reporting period: 2025-01-01 to 2025-12-31"
    assert summary["A3"].value is None
    cols = header_cols(summary, 5)
    assert HEADERS_EN["regular_pct_prev"] not in cols and "Note" not in cols
    assert [summary.cell(r, 1).value for r in (6, 7, 8)] == ["Province", "Commune", "Total"]
    assert "Note" in header_cols(wb["Agencies"], 3)
    assert [c.value for c in wb["Data"][1]] == headers(AGGREGATE_COLUMNS, "en")
    assert [c.value for c in wb["Data"]["A"][1:]] == ["province", "commune", "total"]  # data as given
    refs = chart_refs(path)
    pct = get_column_letter(cols[HEADERS_EN["regular_pct"]])
    assert refs["col"] == ["Summary!$A$6:$A$8", f"Summary!${pct}$6:${pct}$8"]
    assert len(refs["bar"]) == 2


def test_xlsx_of_accounts_and_of_nothing(tmp_path: Path) -> None:
    report = make_report(compare=False)
    report.by, report.columns = "account", list(ACCOUNT_COLUMNS)
    report.rows = [
        {"agency": "000.00.15.H62", "address": "lamnt@skhdt.example.gov.vn", "full_name": "Nguyễn Thị Lâm",
         "kind": "personal", "eligible_days": 247, "eligible_weeks": 52, "active_weeks": 50, "active_days": 230,
         "sent": 412, "last_active": date(2025, 12, 30), "eligible": True, "regular": True, "daily": True},
        {"agency": "000.00.15.H62", "address": "ductv@skhdt.example.gov.vn", "full_name": "Trần Văn Đức",
         "kind": "personal", "eligible_days": 12, "eligible_weeks": 3, "active_weeks": 0, "active_days": 0,
         "sent": 0, "last_active": None, "eligible": False, "regular": False, "daily": False},
    ]
    report.by_agency, report.trend = [], []
    path = tmp_path / "accounts.xlsx"
    write_xlsx(path, report, "vi")
    data = openpyxl.load_workbook(path)["Dữ liệu"]
    assert [c.value for c in data[1]] == headers(ACCOUNT_COLUMNS, "vi", by="account")
    assert "Thường xuyên sử dụng" in [c.value for c in data[1]]
    lam, duc = (dict(zip(ACCOUNT_COLUMNS, (c.value for c in row))) for row in data.iter_rows(min_row=2))
    assert lam["last_active"].date() == date(2025, 12, 30) and lam["full_name"] == "Nguyễn Thị Lâm"
    assert lam["regular"] is True and lam["sent"] == 412
    assert duc["last_active"] is None and duc["eligible"] is False
    assert sorted(chart_refs(path)) == ["col"]  # nothing to plot by agency or month


# --- PNG charts ----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("error")  # a glyph missing from the font would warn
@pytest.mark.parametrize("lang", ["vi", "en"])
def test_png_charts(tmp_path: Path, lang: str) -> None:
    small = write_charts(tmp_path / "small", make_report(), lang)
    big = write_charts(tmp_path / "big", make_report(compare=False, agencies=60), lang)
    assert [p.name for p in small] == ["regular-use-by-level.png", "regular-use-by-agency.png",
                                       "regular-use-trend.png"]
    for path in small + big:
        width, height = png_size(path)
        assert 600 <= width <= 1200 and 250 <= height
        pixels = matplotlib.image.imread(path)
        assert pixels.shape[:2] == (height, width) and pixels.min() < 0.5  # decodable, not blank
    # 64 agencies need room: ~0.26 inch (26 px) per bar
    assert png_size(big[1])[1] >= 64 * 25 > png_size(small[1])[1]


@pytest.mark.filterwarnings("error")
def test_png_charts_of_an_empty_report(tmp_path: Path) -> None:
    report = make_report(compare=False)
    report.by_level, report.by_agency, report.trend = [], [], []
    paths = write_charts(tmp_path / "new" / "dir", report, "vi")
    assert all(png_size(p)[0] > 0 for p in paths) and len(paths) == 3
