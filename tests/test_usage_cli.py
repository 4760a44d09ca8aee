"""``govmail stats regular-use | dormant | chart`` through the CLI: every format, the files opened back."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import date

import openpyxl
import pytest

from provisioning.config import StatsSettings
from provisioning.workcalendar import WorkCalendar

PERIOD = "2025-01-06..2025-02-09"  # 20 working days in 4 working weeks (the Tết week has none)
REGULAR_VI = "Tỷ lệ CBCCVC thường xuyên sử dụng thư điện tử công vụ (%)"


@pytest.fixture
def province(ug):  # type: ignore[no-untyped-def]
    """Sở KH&ĐT: 2 regular of 3 eligible, one dormant; an agency whose name looks like a formula."""
    ug.agency("000.00.15.H62", "Sở Kế hoạch và Đầu tư", "province", staff=6)
    ug.agency("000.00.71.H62", "=1+2 Phòng", "commune", staff=2)
    working = WorkCalendar(StatsSettings()).working_days(date(2025, 1, 6), date(2025, 2, 9))
    a, b, idle = (ug.account(n, "000.00.15.H62") for n in ("Nguyễn Văn An", "Trần Thị Bình", "Lê Văn Cường"))
    x = ug.account("Phạm Thị Dung", "000.00.71.H62")
    ug.send(a, *working)
    ug.send(b, *working[::5])
    ug.send(x, working[0])
    return ug, dict(a=a, b=b, idle=idle, x=x)


def run(gm, *args: str):  # type: ignore[no-untyped-def]
    result = gm.cli(*args)
    assert result.exit_code == 0, result.output
    return result


def test_json_rows_are_the_engines(province) -> None:  # type: ignore[no-untyped-def]
    ug, _ = province
    rows = json.loads(run(ug.gm, "--format", "json", "stats", "regular-use", "--period", PERIOD).stdout)
    got = {r["key"]: (r["eligible"], r["regular"], r["regular_pct"], r["dormant"]) for r in rows}
    # a every day, b one day a week: both regular; the idle one dormant; x only in week 1 (1/4)
    assert got == {"000.00.15.H62": (3, 2, 66.7, 1), "000.00.71.H62": (1, 0, 0.0, 0), "total": (4, 2, 50.0, 1)}
    levels = json.loads(run(ug.gm, "stats", "regular-use", "--period", PERIOD, "--by", "level", "--format", "json").stdout)
    assert [r["key"] for r in levels] == ["province", "commune", "total"]
    table = run(ug.gm, "stats", "regular-use", "--period", PERIOD, "--by", "province").stdout
    assert "REGULAR_PCT" in table and "50.0" in table


def test_csv_in_vietnamese_is_safe_for_spreadsheets(province) -> None:  # type: ignore[no-untyped-def]
    ug, _ = province
    text = run(ug.gm, "stats", "regular-use", "--period", PERIOD, "--lang", "vi", "--format", "csv").stdout
    rows = list(csv.reader(io.StringIO(text)))
    assert REGULAR_VI in rows[0]
    names = [r[rows[0].index("Cơ quan, đơn vị")] for r in rows[1:]]
    assert "'=1+2 Phòng" in names and "Sở Kế hoạch và Đầu tư" in names
    by_account = run(ug.gm, "stats", "regular-use", "--period", PERIOD, "--by", "account", "--format", "csv").stdout
    assert len(list(csv.reader(io.StringIO(by_account)))) == 1 + 4


def test_xlsx_opens_with_the_summary_and_charts(province, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ug, _ = province
    out = tmp_path / "bao-cao.xlsx"
    result = run(ug.gm, "stats", "regular-use", "--period", PERIOD, "--compare", "--lang", "vi",
                 "--format", "xlsx", "--output", str(out))
    assert str(out) in result.stdout
    book = openpyxl.load_workbook(out)
    cells = [c for ws in book.worksheets for row in ws.iter_rows(values_only=True) for c in row if c is not None]
    assert REGULAR_VI in cells and "Sở Kế hoạch và Đầu tư" in cells and "=1+2 Phòng" in cells
    assert 66.7 in cells and 50.0 in cells
    with zipfile.ZipFile(out) as z:
        assert any(n.startswith("xl/charts/chart") for n in z.namelist())
    refused = ug.gm.cli("stats", "regular-use", "--period", PERIOD, "--format", "xlsx")
    assert refused.exit_code == 2 and "--output" in refused.output


def test_charts_are_written(province, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ug, _ = province
    paths = [r["chart"] for r in json.loads(run(ug.gm, "--format", "json", "stats", "chart", "--period", PERIOD,
                                                "--output-dir", str(tmp_path / "charts")).stdout)]
    assert len(paths) == 3
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_dormant_list(province) -> None:  # type: ignore[no-untyped-def]
    ug, x = province
    rows = json.loads(run(ug.gm, "stats", "dormant", "--as-of", "2025-02-09", "--format", "json").stdout)
    assert [(r["address"], r["last_active"]) for r in rows] == [(x["idle"], None)]
    # with 5 days (5-9 Feb), b (last active 3 Feb) and x (6 Jan) are dormant too; a (7 Feb) is not
    rows = json.loads(run(ug.gm, "stats", "dormant", "--as-of", "2025-02-09", "--days", "5", "--format", "json").stdout)
    assert {r["address"] for r in rows} == {x["idle"], x["b"], x["x"]}


@pytest.mark.parametrize("args, code, message", [
    (("--period", "2025-13"), 2, "period '2025-13': is not a period"),
    (("--period", "2025", "--agency", "999.99.99.H62"), 1, "no agency '999.99.99.H62'"),  # as every NotFound
    (("--period", "2025", "--min-size", "-1"), 2, "-1"),
    (("--period", "2025", "--format", "xlsx", "--output", "/nonexistent/r.xlsx"), 2,
     "--output '/nonexistent/r.xlsx': cannot be written (No such file or directory)"),
    (("--period", "2025", "--format", "csv", "--output", "/nonexistent/r.csv"), 2, "cannot be written"),
])
def test_bad_input_is_refused_clearly(province, args, code, message) -> None:  # type: ignore[no-untyped-def]
    ug, _ = province
    result = ug.gm.cli("stats", "regular-use", *args)
    assert result.exit_code == code and message in result.output, result.output


def test_usage_refresh_folds_new_events_once(province) -> None:  # type: ignore[no-untyped-def]
    ug, x = province
    first = json.loads(run(ug.gm, "usage", "refresh", "--format", "json").stdout)
    assert first["events"] == 20 + 4 + 1 and not first["rebuilt"]
    assert json.loads(run(ug.gm, "usage", "refresh", "--format", "json").stdout)["events"] == 0
    rebuilt = json.loads(run(ug.gm, "usage", "refresh", "--rebuild", "--format", "json").stdout)
    assert rebuilt["events"] == 25 and rebuilt["rebuilt"]


def test_doctor_warns_when_the_rollup_is_not_refreshed(province) -> None:  # type: ignore[no-untyped-def]
    ug, _ = province

    def usage_check() -> dict:  # type: ignore[type-arg]
        result = ug.gm.cli("--format", "json", "doctor")
        return next(c for c in json.loads(result.stdout) if c["check"] == "usage rollup")

    stale = usage_check()
    assert stale["status"] == "warn" and "25 sent event(s)" in stale["detail"] and "usage refresh" in stale["fix"]
    run(ug.gm, "usage", "refresh")
    assert usage_check()["status"] == "ok"
