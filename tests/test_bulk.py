"""Bulk provisioning: files as HR exports them, every kind of bad row, re-runs, and runs that are
interrupted (kill -9, directory down, database locked) and then completed."""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from directory.reconcile import find_drift
from provisioning import bulk, passwords
from provisioning.models import Account, OutboxEntry
from tests.conftest import Govmail, config_data, write_config

PROVINCE, SKHDT, SNV = "000.00.00.H62", "000.00.15.H62", "000.00.16.H62"
ROOT = Path(__file__).resolve().parent.parent

VI_HEADER = ["Họ và tên", "Chức vụ", "Mã cán bộ", "Email cá nhân", "Điện thoại"]
EN_HEADER = ["Full name", "Title", "Employee code", "Personal email", "Phone"]
STAFF = [
    ["Nguyễn Thị Lâm", "Chuyên viên", "H62-001", "lam.nguyen@gmail.com", "0912 345 678"],
    ["  Trần   Văn Đức ", "Trưởng phòng", "H62-002", "", ""],
    ["Lê Thị Ánh Tuyết", "Phó Giám đốc", "H62-003", "", "0987654321"],
    ["Nguyễn Thị Lâm", "Văn thư", "H62-004", "", ""],
]
EXPECTED = ["lamnt@vinhphuc.gov.vn", "ductv@vinhphuc.gov.vn", "tuyetlta@vinhphuc.gov.vn", "lamnt2@vinhphuc.gov.vn"]


def setup_agencies(gm: Govmail) -> None:
    for args in ((PROVINCE, "UBND tỉnh Vĩnh Phúc", "--domain", "vinhphuc.gov.vn"),
                 (SKHDT, "Sở Kế hoạch và Đầu tư", "--parent", PROVINCE),
                 (SNV, "Sở Nội vụ", "--parent", PROVINCE)):
        assert gm.cli("agency", "add", args[0], "--name", args[1], "--level", "province", *args[2:]).exit_code == 0


def encode(rows: list[list[str]], encoding: str, delimiter: str, nfd: bool = False) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    content = unicodedata.normalize("NFD", buf.getvalue()) if nfd else buf.getvalue()
    if encoding == "utf-8-bom":
        return codecs.BOM_UTF8 + content.encode("utf-8")
    if encoding == "utf-16":
        return content.encode("utf-16")  # with BOM, as Excel's "Unicode text"
    if encoding == "cp1258":
        return windows_1258(content)
    return content.encode(encoding)


TONE_MARKS = "\u0300\u0301\u0303\u0309\u0323"


def windows_1258(content: str) -> bytes:
    """Encode as Windows does: base letters (â, ơ, ư ...) precomposed, tone marks combining."""
    out = []
    for ch in unicodedata.normalize("NFC", content):
        try:
            out.append(ch.encode("cp1258"))
        except UnicodeEncodeError:
            parts = unicodedata.normalize("NFD", ch)
            base = unicodedata.normalize("NFC", "".join(c for c in parts if c not in TONE_MARKS))
            out.append((base + "".join(c for c in parts if c in TONE_MARKS)).encode("cp1258"))
    return b"".join(out)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-bom", "utf-16", "cp1258"])
@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_every_encoding_and_delimiter_gives_the_same_plan(gm: Govmail, tmp_path, encoding, delimiter):
    setup_agencies(gm)
    header = VI_HEADER if delimiter != "\t" else EN_HEADER
    path = tmp_path / "staff.csv"
    path.write_bytes(encode([header, *STAFF], encoding, delimiter, nfd=encoding == "utf-8"))
    with gm.session() as s:
        plan = bulk.make_plan(s, gm.settings, bulk.read_file(path), SKHDT)
    assert [r.action for r in plan.rows] == ["create"] * 4
    assert [r.address for r in plan.rows] == EXPECTED
    assert [r.full_name for r in plan.rows][:2] == ["Nguyễn Thị Lâm", "Trần Văn Đức"]
    assert all(unicodedata.is_normalized("NFC", r.full_name) for r in plan.rows)
    assert plan.rows[0].values["phone"] == "0912 345 678" and plan.rows[0].line == 2


def write(tmp_path: Path, rows: list[list[str]], name: str = "staff.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(encode(rows, "utf-8-bom", ","))
    return path


def results(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def test_create_rerun_update_and_files(gm: Govmail, tmp_path):
    setup_agencies(gm)
    staff = write(tmp_path, [VI_HEADER, *STAFF])
    first = gm.cli("--format", "json", "account", "bulk-create", str(staff), "--agency", SKHDT)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert (summary["create"], summary["error"], summary["directory"]["waiting"]) == (4, 0, 0)
    creds = tmp_path / "staff.credentials.csv"
    assert oct(creds.stat().st_mode & 0o777) == "0o600"
    handed = {r["address"]: r["initial_password"] for r in csv.DictReader(io.StringIO(creds.read_text("utf-8-sig")))}
    assert sorted(handed) == sorted(EXPECTED)
    for password in handed.values():
        assert password not in first.output
    assert gm.slapd_bind_ok("lamnt2", handed["lamnt2@vinhphuc.gov.vn"])
    assert [r["action"] for r in results(tmp_path / "staff.results.csv")] == ["created"] * 4
    assert gm.cli("directory", "verify").exit_code == 0
    # The same file again: nothing created, every row unchanged, passwords still handed over.
    again = gm.cli("--format", "json", "account", "bulk-create", str(staff), "--agency", SKHDT)
    assert again.exit_code == 0 and json.loads(again.stdout)["unchanged"] == 4
    assert len(results(tmp_path / "staff.results.csv")) == 4 and creds.read_text("utf-8-sig").count("\n") == 5
    # A changed row is an update (title, transfer by an agency column); an empty cell changes nothing.
    changed = write(tmp_path, [["Họ và tên", "Chức vụ", "Mã cán bộ", "Mã cơ quan", "Điện thoại"],
                               ["Nguyễn Thị Lâm", "Chuyên viên chính", "H62-001", SKHDT, ""],
                               ["Trần Văn Đức", "Trưởng phòng", "H62-002", SNV, ""]], "changed.csv")
    plan = gm.cli("--format", "json", "account", "bulk-create", str(changed), "--dry-run")
    assert [r["action"] for r in json.loads(plan.stdout)["rows"]] == ["update", "update"]
    assert gm.cli("account", "bulk-create", str(changed)).exit_code == 0
    lam = gm.entry("lamnt")
    assert lam["title"] == ["Chuyên viên chính"] and lam["telephoneNumber"] == ["0912 345 678"]
    assert gm.entry("ductv")["govmailAgencyCode"] == [SNV]
    with gm.session() as s:
        assert s.scalar(select(func.count()).select_from(Account)) == 4


def test_every_kind_of_bad_row_is_named_and_nothing_of_it_written(gm: Govmail, tmp_path):
    setup_agencies(gm)
    assert gm.cli("account", "create", "--agency", SKHDT, "--name", "Phạm Văn Bình").exit_code == 0
    assert gm.cli("account", "create", "--agency", SKHDT, "--name", "Phạm Văn Bình").exit_code == 0
    assert gm.cli("account", "create", "--agency", SKHDT, "--name", "Đỗ Văn Hùng", "--employee-code", "H62-090").exit_code == 0
    assert gm.cli("account", "retire", "hungdv").exit_code == 0
    header = ["Họ và tên", "Mã cán bộ", "Mã cơ quan", "Điện thoại", "Email cá nhân", "Địa chỉ thư", "Dung lượng"]
    staff = write(tmp_path, [header,
        ["Nguyễn Văn 4n", "E1", "", "", "", "", ""],                      # 2 name with a digit
        ["Nguyễn Văn Аn", "E2", "", "", "", "", ""],                      # 3 Cyrillic look-alike
        ["Lê Văn Cường", "E3", "000.00.99.H62", "", "", "", ""],         # 4 unknown agency
        ["Lê Văn Dũng", "E4", "15.H62", "", "", "", ""],                  # 5 malformed agency code
        ["Lê Văn Em", "E5", "", "phone?", "", "", ""],                    # 6 bad phone
        ["Lê Văn Giang", "E6", "", "", "giang@", "", ""],                  # 7 bad email
        ["Lê Văn Hải", "E7", "", "", "", "postmaster", ""],                # 8 reserved address
        ["Lê Văn Khoa", "E8", "", "", "", "a)(uid=*", ""],                 # 9 injection in address
        ["Lê Văn Long", "E9", "", "", "", "", "many"],                     # 10 bad quota
        ["Lê Văn Minh", "E10", "", "", "", "", ""],                        # 11 fine
        ["Lê Văn Nam", "E10", "", "", "", "", ""],                         # 12 same code as line 11
        ["Phạm Văn Bình", "", "", "", "", "", ""],                         # 13 two accounts with this name
        ["Đỗ Văn Hùng", "H62-090", "", "", "", "", ""],                    # 14 retired account
        ["", "E14", "", "", "", "", ""],                                   # 15 no name
    ])
    result = gm.cli("--format", "json", "account", "bulk-create", str(staff), "--agency", SKHDT)
    assert result.exit_code == 1
    rows = {r["line"]: r for r in json.loads(result.stdout)["rows"]}
    expect = {
        2: ("error", "full_name 'Nguyễn Văn 4n': contains '4'"),
        3: ("error", "CYRILLIC CAPITAL LETTER A"),
        4: ("error", "agency '000.00.99.H62': is not a known agency"),
        5: ("error", "agency '15.H62': is not an agency code"),
        6: ("error", "phone 'phone?': is not a phone number"),
        7: ("error", "personal_email 'giang@': is not an email address"),
        8: ("conflict", "'postmaster' is reserved"),
        9: ("error", "address 'a)(uid=*'"),
        10: ("error", "quota_mb 'many': is not a whole number"),
        11: ("created", ""),
        12: ("conflict", "the same official as line 11"),
        13: ("conflict", "2 accounts named Phạm Văn Bình in 000.00.15.H62 (binhpv@vinhphuc.gov.vn, binhpv2@vinhphuc.gov.vn); add the employee code"),
        14: ("conflict", "hungdv@vinhphuc.gov.vn is retired"),
        15: ("error", "full_name"),
    }
    for line, (action, message) in expect.items():
        assert rows[line]["action"] == action, (line, rows[line])
        assert message in rows[line]["detail"], (line, rows[line]["detail"])
    with gm.session() as s:
        names = set(s.scalars(select(Account.full_name)))
    assert names == {"Phạm Văn Bình", "Đỗ Văn Hùng", "Lê Văn Minh"}
    assert gm.cli("directory", "verify").exit_code == 0


def test_all_or_nothing_and_usage_errors(gm: Govmail, tmp_path):
    setup_agencies(gm)
    staff = write(tmp_path, [VI_HEADER, STAFF[0], ["Nguyễn Văn 4n", "", "X1", "", ""]])
    refused = gm.cli("account", "bulk-create", str(staff), "--agency", SKHDT, "--all-or-nothing")
    assert refused.exit_code == 1 and "nothing was applied" in refused.stderr
    with gm.session() as s:
        assert s.scalar(select(func.count()).select_from(Account)) == 0
    no_name = write(tmp_path, [["Chức vụ", "Mã cán bộ"], ["Chuyên viên", "X"]], "noname.csv")
    usage = gm.cli("account", "bulk-create", str(no_name), "--agency", SKHDT)
    assert usage.exit_code == 2 and "Họ và tên" in usage.stderr
    unknown = gm.cli("account", "bulk-create", str(staff), "--agency", "000.00.77.H62")
    assert unknown.exit_code == 1 and "no agency '000.00.77.H62'" in unknown.stderr


def test_coded_row_adopts_the_account_made_before_codes_were_known(gm: Govmail, tmp_path):
    setup_agencies(gm)
    assert gm.cli("account", "create", "--agency", SKHDT, "--name", "Trần Văn Đức").exit_code == 0
    staff = write(tmp_path, [VI_HEADER, ["Trần Văn Đức", "Trưởng phòng", "X1", "", ""]])
    plan = gm.cli("--format", "json", "account", "bulk-create", str(staff), "--agency", SKHDT, "--dry-run")
    row = json.loads(plan.stdout)["rows"][0]
    assert (row["action"], row["address"]) == ("update", "ductv@vinhphuc.gov.vn") and "employee_code" in row["detail"]
    assert gm.cli("account", "bulk-create", str(staff), "--agency", SKHDT).exit_code == 0
    assert gm.entry("ductv")["employeeNumber"] == ["X1"] and gm.entry("ductv2") is None
    # Two uncoded namesakes: which one is X2 cannot be guessed.
    gm.cli("account", "create", "--agency", SKHDT, "--name", "Lê Văn An")
    gm.cli("account", "create", "--agency", SKHDT, "--name", "Lê Văn An")
    twins = write(tmp_path, [VI_HEADER, ["Lê Văn An", "", "X2", "", ""]], "twins.csv")
    result = gm.cli("--format", "json", "account", "bulk-create", str(twins), "--agency", SKHDT)
    detail = json.loads(result.stdout)["rows"][0]["detail"]
    assert result.exit_code == 1 and "without an employee code (anlv@vinhphuc.gov.vn, anlv2@vinhphuc.gov.vn)" in detail


def test_family_and_given_name_columns(gm: Govmail, tmp_path):
    setup_agencies(gm)
    staff = write(tmp_path, [["Họ đệm", "Tên", "Mã cán bộ"], ["Nguyễn Thị", "Lâm", "A1"]])
    assert gm.cli("account", "bulk-create", str(staff), "--agency", SKHDT).exit_code == 0
    assert gm.entry("lamnt")["cn"] == ["Nguyễn Thị Lâm"]


def test_bulk_retire_departures(gm: Govmail, tmp_path):
    setup_agencies(gm)
    gm.cli("account", "bulk-create", str(write(tmp_path, [VI_HEADER, *STAFF])), "--agency", SKHDT)
    departures = write(tmp_path, [["Mã cán bộ", "Địa chỉ thư"], ["H62-001", ""], ["", "ductv@vinhphuc.gov.vn"]], "gone.csv")
    dry = gm.cli("--format", "json", "account", "bulk-retire", str(departures), "--dry-run")
    assert [r["action"] for r in json.loads(dry.stdout)] == ["retired", "retired"]
    assert gm.entry("lamnt")["govmailStatus"] == ["active"]
    assert gm.cli("account", "bulk-retire", str(departures)).exit_code == 0
    assert gm.entry("lamnt")["govmailStatus"] == ["retired"] and gm.entry("ductv")["govmailStatus"] == ["retired"]
    again = gm.cli("--format", "json", "account", "bulk-retire", str(departures))
    assert [r["action"] for r in json.loads(again.stdout)] == ["unchanged", "unchanged"]
    unknown = write(tmp_path, [["Mã cán bộ"], ["H62-003"], ["NOPE"]], "unknown.csv")
    failed = gm.cli("account", "bulk-retire", str(unknown))
    assert failed.exit_code == 1 and gm.entry("tuyetlta")["govmailStatus"] == ["active"]


# --- interruptions -----------------------------------------------------------------------------


def many_staff(n: int, seed: int) -> list[list[str]]:
    """``n`` officials with frequent namesakes (so numbered addresses are allocated)."""
    rng = random.Random(seed)
    families, middles, givens = ["Nguyễn", "Trần", "Lê", "Phạm"], ["Thị", "Văn", "Minh"], ["Lâm", "Đức", "Hà", "An", "Hùng"]
    return [[f"{rng.choice(families)} {rng.choice(middles)} {rng.choice(givens)}", "Chuyên viên", f"K{i:05d}", "", ""]
            for i in range(n)]


def govmail_process(gm: Govmail, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cli", "--config", str(gm.config_file), *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_complete(gm: Govmail, n: int, creds: Path) -> None:
    """Exactly ``n`` accounts in SQL and in LDAP, nothing queued, no drift, every password handed over."""
    with gm.session() as s:
        hashes = dict(s.execute(select(Account.local_part, Account.password_hash)).all())
        assert s.scalar(select(func.count()).select_from(OutboxEntry)) == 0
    assert len(hashes) == n
    with gm.directory.connect() as conn:
        entries = conn.extend.standard.paged_search(gm.directory.people_dn, "(objectClass=govmailAccount)",
                                                    attributes=["uid"], paged_size=500, generator=False)
        assert sorted(e["attributes"]["uid"][0] for e in entries) == sorted(hashes)
    assert find_drift(gm.factory, gm.directory) == []
    lines = list(csv.DictReader(io.StringIO(creds.read_text("utf-8-sig"))))
    assert len(lines) == n
    for line in lines:
        assert passwords.verify(line["initial_password"], hashes[line["address"].split("@")[0]])


def test_killed_at_random_points_then_rerun_creates_each_account_exactly_once(gm: Govmail, tmp_path):
    setup_agencies(gm)
    n, seed = 800, int(os.environ.get("GOVMAIL_TEST_SEED", random.randrange(10**6)))
    rng = random.Random(seed)
    staff = write(tmp_path, [VI_HEADER, *many_staff(n, seed)])
    args = ("account", "bulk-create", str(staff), "--agency", SKHDT, "--batch-size", "10")
    watcher = create_engine(gm.settings.database.url)  # plain reads: never waits for the writer's lock

    def created() -> int:
        with watcher.connect() as conn:
            return conn.execute(select(func.count()).select_from(Account)).scalar() or 0

    kills = []
    # kill -9 as the run passes a random point in each quarter of the file
    for threshold in [rng.randrange(q * n // 4 + 1, (q + 1) * n // 4) for q in range(4)]:
        proc = govmail_process(gm, *args)
        while proc.poll() is None and created() < threshold:
            time.sleep(0.002)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills.append(created())
        proc.communicate()
    watcher.dispose()
    final = govmail_process(gm, *args)
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, f"seed {seed}: {out}\n{err}"
    assert len(kills) >= 3 and len([k for k in kills if k < n]) >= 2, f"seed {seed}: killed at {kills}"
    assert_complete(gm, n, tmp_path / "staff.credentials.csv")


@pytest.fixture
def down_slapd_gm(gm: Govmail, tmp_path):
    """``gm`` on a slapd of its own, with a config file pointing at it."""
    from directory.ldap import Directory
    from directory.slapd import LocalSlapd, SlapdConfig, free_port
    from provisioning.config import load_settings

    server = LocalSlapd(SlapdConfig(state_dir=tmp_path / "slapd2", base_dn="dc=bulk,dc=test", port=free_port(),
                                    root_dn="cn=admin,dc=bulk,dc=test", root_password="bulk-secret-1"))
    server.start()
    data = config_data(server, gm.settings.database.url, "dc=bulk,dc=test", tmp_path)
    data["directory"].update(bind_dn="cn=admin,dc=bulk,dc=test", bind_password="bulk-secret-1")
    config = write_config(tmp_path / "bulk.toml", data)
    settings = load_settings(config, env={})
    yield dataclasses.replace(gm, settings=settings, directory=Directory(settings.directory), slapd=server,
                              config_file=config)
    server.stop()


def test_directory_down_mid_run_then_rerun_publishes_everything(down_slapd_gm: Govmail, tmp_path):
    gm = down_slapd_gm
    setup_agencies(gm)
    staff = write(tmp_path, [VI_HEADER, *many_staff(120, 7)])
    gm.slapd.stop()
    down = gm.cli("--format", "json", "account", "bulk-create", str(staff), "--agency", SKHDT, "--batch-size", "20")
    assert down.exit_code == 1
    assert "queued" in down.stderr and "run the same command again" in down.stderr
    assert json.loads(down.stdout)["directory"]["waiting"] >= 120
    assert "bulk-secret-1" not in down.output
    gm.slapd.start()
    again = gm.cli("--format", "json", "account", "bulk-create", str(staff), "--agency", SKHDT)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["unchanged"] == 120
    assert_complete(gm, 120, tmp_path / "staff.credentials.csv")


def test_database_locked_by_another_writer_then_rerun(gm: Govmail, tmp_path):
    setup_agencies(gm)
    data = json.loads(json.dumps(config_data(gm.slapd, gm.settings.database.url, gm.settings.directory.base_dn, tmp_path)))
    data["database"]["lock_timeout"] = 1
    gm = dataclasses.replace(gm, config_file=write_config(tmp_path / "impatient.toml", data))
    staff = write(tmp_path, [VI_HEADER, *many_staff(60, 3)])
    blocker = create_engine(gm.settings.database.url.split("?")[0] if "sqlite" in gm.settings.database.url
                            else gm.settings.database.url.replace("%3D", "="))
    with blocker.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.execute(text("BEGIN"))
            conn.execute(text("LOCK TABLE accounts IN EXCLUSIVE MODE"))
        locked = gm.cli("account", "bulk-create", str(staff), "--agency", SKHDT)
        conn.rollback()
    blocker.dispose()
    assert locked.exit_code == 1 and "database is busy" in locked.stderr
    with gm.session() as s:
        assert s.scalar(select(func.count()).select_from(Account)) == 0
    done = gm.cli("account", "bulk-create", str(staff), "--agency", SKHDT)
    assert done.exit_code == 0, done.output
    assert_complete(gm, 60, tmp_path / "staff.credentials.csv")
