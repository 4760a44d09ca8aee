"""Sample provinces: deterministic, realistic, and accepted as they are by import and bulk-create."""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from provisioning import bulk, sample
from provisioning.addresses import base_local_part
from provisioning.agencies import validate_code
from tests.conftest import Govmail

REPO = Path(__file__).resolve().parent.parent
SKHDT = "000.00.15.H62"
COLLIDING_SEED = 1  # with 60 officials, two get the base address maint: maint and maint2


@pytest.fixture(scope="module")
def big() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    return sample.province(5000, seed=11)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def test_same_seed_gives_exactly_the_same_rows_and_bytes(tmp_path: Path):
    first, again, other = sample.province(400, seed=5), sample.province(400, seed=5), sample.province(400, seed=6)
    assert first == again
    assert first[1] != other[1]
    for name, rows in (("a.csv", first[1]), ("b.csv", again[1])):
        sample.write_csv(tmp_path / name, rows)
    data = (tmp_path / "a.csv").read_bytes()
    assert data == (tmp_path / "b.csv").read_bytes()
    assert data.startswith(b"\xef\xbb\xbffull_name,title,employee_code,agency,phone,personal_email\r\n")
    assert read_csv(tmp_path / "a.csv") == first[1]


def test_family_names_follow_the_real_shares(big):
    _, staff = big
    assert len(staff) == 5000
    families = Counter(row["full_name"].split()[0] for row in staff)
    targets = {"Nguyễn": 38, "Trần": 11, "Lê": 9.5, "Phạm": 7, "Phan": 4.5, "Hoàng": 3, "Huỳnh": 2, "Vũ": 2,
               "Võ": 2, "Đặng": 2.1, "Bùi": 2, "Đỗ": 1.4, "Hồ": 1.3, "Ngô": 1.3, "Dương": 1, "Lý": 0.5}
    for family, percent in targets.items():
        assert abs(100 * families[family] / len(staff) - percent) < 2.5, (family, families[family])
    tail = sum(families.values()) - sum(families[f] for f in targets)
    assert 6 < 100 * tail / len(staff) < 16
    assert len(families) > 25
    women = sum(1 for row in staff if " Thị " in row["full_name"])
    assert 0.2 < women / len(staff) < 0.4  # about half are women, most of them with Thị


def test_names_titles_codes_phones_and_emails_are_realistic(big):
    agencies, staff = big
    for row in staff:
        assert list(row) == ["full_name", "title", "employee_code", "agency", "phone", "personal_email"]
        assert row["full_name"] == unicodedata.normalize("NFC", row["full_name"])
        assert 3 <= len(row["full_name"].split()) <= 4
        base_local_part(row["full_name"])  # every name gives an address
        assert re.fullmatch(r"H62-\d{6}", row["employee_code"])
        assert row["phone"] == "" or re.fullmatch(r"0(9[0-9]|3[2-9]|8[1-9])\d{7}", row["phone"])
        assert row["personal_email"] == "" or re.fullmatch(r"[a-z0-9.]+@(gmail|yahoo)\.com", row["personal_email"])
    assert len({row["employee_code"] for row in staff}) == len(staff)
    assert 0.65 < sum(1 for r in staff if r["phone"]) / len(staff) < 0.75
    assert 0.25 < sum(1 for r in staff if r["personal_email"]) / len(staff) < 0.35
    bases = Counter(base_local_part(row["full_name"]) for row in staff)
    assert max(bases.values()) >= 10  # real provinces reach lamnt10 and beyond
    titles = Counter(row["title"] for row in staff)
    assert titles.most_common(1)[0][0] == "Chuyên viên"
    by_agency: dict[str, list[str]] = {}
    for row in staff:
        by_agency.setdefault(row["agency"], []).append(row["title"])
    for agency in agencies:
        held = by_agency[agency["code"]]
        if agency["name"].startswith("Sở "):
            assert held.count("Giám đốc") == 1 and held[0] == "Giám đốc"
        if agency["level"] == "commune":
            chair = "Chủ tịch UBND " + ("phường" if agency["name"].startswith("UBND phường") else "xã")
            assert held[0] == chair and held.count(chair) == 1


def test_agency_tree_codes_levels_and_staff_counts(big):
    agencies, staff = big
    assert len(agencies) == 50  # one per 100 officials
    top = agencies[0]
    assert top["code"] == "000.00.00.H62" and top["level"] == "province" and top["parent"] == ""
    assert top["name"] == "UBND tỉnh Vĩnh Phúc" and top["domain"] == "vinhphuc.gov.vn"
    codes = [a["code"] for a in agencies]
    assert len(set(codes)) == len(codes) and all(validate_code(c) == c for c in codes)
    shorts = [a["short_name"] for a in agencies]
    assert len(set(shorts)) == len(shorts) and all(re.fullmatch(r"[a-z]+", s) for s in shorts)
    departments = [a for a in agencies[1:] if a["level"] == "province"]
    communes = [a for a in agencies if a["level"] == "commune"]
    assert departments and communes and len(departments) + len(communes) == len(agencies) - 1
    assert all(re.fullmatch(r"000\.00\.\d\d\.H62", a["code"]) for a in departments)
    assert all(re.fullmatch(r"000\.(0[1-9]|[1-9]\d)\.\d\d\.H62", a["code"]) for a in communes)
    assert all(a["parent"] == top["code"] for a in agencies[1:])
    assert {"Sở Nội vụ", "Sở Tài chính", "Sở Y tế"} <= {a["name"] for a in departments}
    assert any(a["name"].startswith("UBND xã ") for a in communes)
    assert any(a["name"].startswith("UBND phường ") for a in communes)
    generated = Counter(row["agency"] for row in staff)
    for agency in agencies:
        assert generated[agency["code"]] < int(agency["staff_count"]) <= generated[agency["code"]] * 1.1 + 1
    mean = lambda rows: sum(generated[a["code"]] for a in rows) / len(rows)  # noqa: E731
    assert mean(departments) > 2 * mean(communes)
    assert len(sample.province(10)[0]) == 3
    assert len(sample.province(30_000)[0]) == 120
    assert len(sample.province(100, agencies=7, province_code="H14", domain="x.gov.vn")[0]) == 7
    with pytest.raises(ValueError):
        sample.province(10, province_code="62")


def test_cli_writes_both_files_and_says_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("GOVMAIL_CONFIG", raising=False)  # needs no configuration nor database
    out = tmp_path / "new" / "demo"
    result = CliRunner().invoke(cli, ["sample", "province", "--accounts", "250", "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"govmail agency import {out / 'agencies.csv'}" in result.output
    assert f"govmail account bulk-create {out / 'staff.csv'}" in result.output
    assert (read_csv(out / "agencies.csv"), read_csv(out / "staff.csv")) == sample.province(250, seed=3)
    again = CliRunner().invoke(cli, ["sample", "province", "--accounts", "250", "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    forced = CliRunner().invoke(cli, ["sample", "province", "--accounts", "20", "--out", str(out), "--force",
                                      "--format", "json"])
    assert forced.exit_code == 0 and json.loads(forced.stdout)["staff"] == 20
    bad = CliRunner().invoke(cli, ["sample", "province", "--accounts", "20", "--province-code", "62",
                                   "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and not (tmp_path / "bad").exists()


def test_generated_province_imports_and_bulk_creates_with_numbered_addresses(gm: Govmail, tmp_path: Path):
    made = gm.cli("sample", "province", "--accounts", "60", "--seed", str(COLLIDING_SEED), "--out", str(tmp_path))
    assert made.exit_code == 0, made.output
    imported = gm.cli("agency", "import", str(tmp_path / "agencies.csv"))
    assert imported.exit_code == 0, imported.output
    created = gm.cli("--format", "json", "account", "bulk-create", str(tmp_path / "staff.csv"))
    assert created.exit_code == 0, created.output
    summary = json.loads(created.stdout)
    assert summary["create"] == 60 and summary["conflict"] == summary["error"] == 0
    addresses = [r["address"] for r in read_csv(tmp_path / "staff.results.csv")]
    assert len(set(addresses)) == 60
    assert "maint2@vinhphuc.gov.vn" in addresses and "maint@vinhphuc.gov.vn" in addresses
    verified = gm.cli("directory", "verify")
    assert verified.exit_code == 0, verified.output


def test_the_documented_sample_file(gm: Govmail, tmp_path: Path):
    raw = (REPO / "samples" / "staff.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    header = raw[3:].decode("utf-8").splitlines()[0]
    assert header == "Họ và tên,Chức vụ,Mã cán bộ,Email cá nhân,Điện thoại"
    rows = bulk.read_file(REPO / "samples" / "staff.csv")
    assert 10 <= len(rows) <= 14 and all("agency" not in values for _, values in rows)
    assert gm.cli("agency", "import", str(REPO / "samples" / "agencies.csv")).exit_code == 0
    staff = tmp_path / "staff.csv"
    staff.write_bytes(raw)  # results and credentials files are written next to it
    created = gm.cli("account", "bulk-create", str(staff), "--agency", SKHDT)
    assert created.exit_code == 0, created.output
    results = {(r["full_name"], r["employee_code"]): r["address"] for r in read_csv(tmp_path / "staff.results.csv")}
    assert results[("Nguyễn Thị Lâm", "H62-001505")] == "lamnt@vinhphuc.gov.vn"
    assert results[("Nguyễn Thị Lâm", "H62-001506")] == "lamnt2@vinhphuc.gov.vn"
    assert results[("Hoàng Minh Tuấn", "H62-001507")] == "tuanhm@vinhphuc.gov.vn"  # stray spaces cleaned
    assert results[("Trần Văn Đức", "H62-001503")] == "ductv@vinhphuc.gov.vn"
    assert results[("Lê Thị Ánh Tuyết", "H62-001504")] == "tuyetlta@vinhphuc.gov.vn"
    again = gm.cli("--format", "json", "account", "bulk-create", str(staff), "--agency", SKHDT)
    assert again.exit_code == 0 and json.loads(again.stdout)["unchanged"] == len(rows)
