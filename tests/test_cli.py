"""The ``govmail`` command as an administrator uses it: help, formats, exit codes, imports."""

from __future__ import annotations

import csv
import io
import json
import os
import stat

import click
import pytest
from click.testing import CliRunner

from cli.main import cli
from tests.conftest import Govmail

PROVINCE = "000.00.00.H62"
SKHDT = "000.00.15.H62"


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from all_commands(command, prefix + (name,))


@pytest.mark.parametrize("path", [" ".join(p) for p, _ in all_commands(cli)])
def test_every_command_has_help_with_an_example(path):
    result = CliRunner().invoke(cli, [*path.split(), "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output and "govmail " in result.output.split("Example:")[1]


def setup_tree(gm: Govmail) -> None:
    assert gm.cli("agency", "add", PROVINCE, "--name", "UBND tỉnh Vĩnh Phúc", "--level", "province",
                  "--domain", "vinhphuc.gov.vn").exit_code == 0
    result = gm.cli("agency", "add", SKHDT, "--name", "Sở Kế hoạch và Đầu tư", "--level", "province",
                    "--parent", PROVINCE, "--short-name", "skhdt")
    assert result.exit_code == 0, result.output


def test_issue_examples_end_to_end(gm: Govmail):
    setup_tree(gm)
    created = gm.cli("account", "create", "--agency", SKHDT, "--name", "Nguyễn Thị Lâm", "--title", "Chuyên viên",
                     "--format", "json")
    assert created.exit_code == 0, created.output
    view = json.loads(created.stdout)
    assert view["address"] == "lamnt@vinhphuc.gov.vn" and view["full_name"] == "Nguyễn Thị Lâm"
    assert gm.slapd_bind_ok("lamnt", view["initial_password"])
    listed = gm.cli("account", "list", "--agency", SKHDT, "--format", "json")
    assert [a["address"] for a in json.loads(listed.stdout)] == ["lamnt@vinhphuc.gov.vn"]
    shown = gm.cli("--format", "json", "account", "show", "lamnt")
    assert json.loads(shown.stdout)["title"] == "Chuyên viên" and "initial_password" not in shown.stdout
    agency = json.loads(gm.cli("agency", "show", SKHDT, "--format", "json").stdout)
    assert agency == {"code": SKHDT, "name": "Sở Kế hoạch và Đầu tư", "short_name": "skhdt", "level": "province",
                      "parent": PROVINCE, "domain": "vinhphuc.gov.vn", "status": "active", "staff_count": None}
    table = gm.cli("agency", "list").stdout
    assert "Sở Kế hoạch và Đầu tư" in table and table.splitlines()[0].startswith("CODE")
    rows = list(csv.DictReader(io.StringIO(gm.cli("account", "list", "--format", "csv").stdout)))
    assert rows[0]["full_name"] == "Nguyễn Thị Lâm"


def test_lifecycle_through_the_cli_with_history(gm: Govmail):
    setup_tree(gm)
    gm.cli("account", "create", "--agency", SKHDT, "--name", "Trần Văn Đức")
    for args in (("suspend", "ductv"), ("restore", "ductv"), ("transfer", "ductv", "--to", PROVINCE),
                 ("rename", "ductv", "--name", "Trần Văn Đức Anh"), ("update", "ductv", "--quota", "4096"),
                 ("retire", "ductv")):
        result = gm.cli("account", *args)
        assert result.exit_code == 0, (args, result.output)
    history = json.loads(gm.cli("--format", "json", "account", "history", "ductv").stdout)
    assert [h["action"] for h in history] == [
        "account.create", "account.suspend", "account.restore", "account.transfer", "account.rename",
        "account.update", "account.retire"]
    assert history[3]["before"]["agency"] == SKHDT and history[3]["after"]["agency"] == PROVINCE
    assert all(h["actor"] and h["source"] == "cli" for h in history)
    assert gm.entry("ductv")["govmailStatus"] == ["retired"]
    assert gm.cli("directory", "verify").exit_code == 0


def test_exit_codes_and_messages(gm: Govmail):
    setup_tree(gm)
    bad = gm.cli("account", "create", "--agency", SKHDT, "--name", "Nguyễn Văn 4n")
    assert bad.exit_code == 2 and "full_name" in bad.stderr and "'4'" in bad.stderr
    missing = gm.cli("account", "show", "nobody")
    assert missing.exit_code == 1 and "no account 'nobody'" in missing.stderr
    gm.cli("account", "create", "--agency", SKHDT, "--name", "Nguyễn Văn An")
    twice = gm.cli("account", "suspend", "annv")
    assert twice.exit_code == 0
    again = gm.cli("account", "suspend", "annv")
    assert again.exit_code == 1 and "is suspended; cannot suspend" in again.stderr
    usage = gm.cli("account", "create", "--agency", SKHDT)
    assert usage.exit_code == 2 and "--name" in usage.output
    agency = gm.cli("agency", "add", "15.H62", "--name", "X", "--level", "province")
    assert agency.exit_code == 2 and "000.00.15.H62" in agency.stderr


def test_passwords_from_stdin_and_credentials_file_never_echoed(gm: Govmail, tmp_path):
    setup_tree(gm)
    creds = tmp_path / "creds.csv"
    created = gm.cli("account", "create", "--agency", SKHDT, "--name", "Lê Thị Ánh Tuyết", "--credentials", str(creds))
    assert created.exit_code == 0
    assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600
    row = next(csv.DictReader(io.StringIO(creds.read_text(encoding="utf-8-sig"))))
    assert row["address"] == "tuyetlta@vinhphuc.gov.vn" and row["initial_password"] not in created.output
    assert gm.slapd_bind_ok("tuyetlta", row["initial_password"])
    chosen = "Hà Nội mùa thu 2026!"
    reset = gm.cli("account", "reset-password", "tuyetlta", "--password-stdin", input=chosen + "\n")
    assert reset.exit_code == 0 and chosen not in reset.output
    assert gm.slapd_bind_ok("tuyetlta", chosen)
    weak = gm.cli("account", "reset-password", "tuyetlta", "--password-stdin", input="tuyetlta123\n")
    assert weak.exit_code == 2 and "tuyetlta123" not in weak.output


def test_agency_import_any_order_encodings_all_or_nothing(gm: Govmail, tmp_path):
    text = ("Mã định danh;Tên cơ quan;Cấp;Cơ quan cấp trên;Tên miền;Tên viết tắt\n"
            f"{SKHDT};Sở Kế hoạch và Đầu tư;province;{PROVINCE};;skhdt\n"
            f"{PROVINCE};UBND tỉnh Vĩnh Phúc;province;;vinhphuc.gov.vn;\n")
    path = tmp_path / "agencies.csv"
    path.write_bytes(text.encode("utf-16"))
    dry = gm.cli("--format", "json", "agency", "import", str(path), "--dry-run")
    assert dry.exit_code == 0 and [r["action"] for r in json.loads(dry.stdout)] == ["created", "created"]
    assert json.loads(gm.cli("--format", "json", "agency", "list").stdout) == []
    assert gm.cli("agency", "import", str(path)).exit_code == 0
    again = json.loads(gm.cli("--format", "json", "agency", "import", str(path)).stdout)
    assert [r["action"] for r in again] == ["unchanged", "unchanged"]
    # One bad row: nothing is imported, and the row, field and value are named.
    bad = tmp_path / "bad.csv"
    bad.write_text("code,name,level,parent\n000.00.20.H62,Sở Y tế,province,000.00.00.H62\n"
                   "000.00.21.H62,Sở Tài chính,planet,000.00.00.H62\n", encoding="utf-8")
    result = gm.cli("--format", "json", "agency", "import", str(bad))
    assert result.exit_code == 1
    errors = [r for r in json.loads(result.stdout) if r["action"] == "error"]
    assert errors == [{"line": 3, "code": "000.00.21.H62", "action": "error",
                       "error": "level 'planet': is not a configured level (use one of: central, province, district, commune)"}]
    assert len(json.loads(gm.cli("--format", "json", "agency", "list").stdout)) == 2
    assert gm.cli("directory", "verify").exit_code == 0


def test_init_creates_a_working_data_dir_and_is_idempotent(tmp_path):
    runner = CliRunner()
    first = runner.invoke(cli, ["init", "--data-dir", str(tmp_path / "d"), "--port", "3999"])
    assert first.exit_code == 0, first.output
    config = (tmp_path / "d" / "govmail.toml").read_text()
    assert 'urls = ["ldap://127.0.0.1:3999"]' in config and "# " in config
    secret = tmp_path / "d" / "secrets" / "ldap-admin.password"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    before = secret.read_text()
    second = runner.invoke(cli, ["init", "--data-dir", str(tmp_path / "d")])
    assert second.exit_code == 0 and "already exists" in second.output and secret.read_text() == before
    doctor = runner.invoke(cli, ["--config", str(tmp_path / "d" / "govmail.toml"), "--format", "json", "doctor"])
    checks = {c["check"]: c for c in json.loads(doctor.stdout)}
    assert checks["database"]["status"] == "ok"
    assert checks["embedded slapd"]["status"] == "fail" and checks["embedded slapd"]["fix"] == "govmail up"
    assert before not in doctor.output and doctor.exit_code == 1


def test_doctor_on_a_healthy_installation(gm: Govmail):
    setup_tree(gm)
    result = gm.cli("--format", "json", "doctor")
    checks = {c["check"]: c["status"] for c in json.loads(result.stdout)}
    assert checks == {"configuration": "ok", "database": "ok", "embedded slapd": "ok", "directory": "ok", "outbox": "ok",
                      "usage rollup": "ok", "portal": "ok"}
    assert result.exit_code == 0


def test_bad_configuration_is_a_usage_error(tmp_path):
    config = tmp_path / "govmail.toml"
    config.write_text("[directory]\nurls = ['ldap://127.0.0.1:389/']\n")
    result = CliRunner().invoke(cli, ["--config", str(config), "account", "list"])
    assert result.exit_code == 2 and "ends with '/'" in result.stderr
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "nope.toml"), "account", "list"])
    assert result.exit_code == 2 and "govmail init" in result.stderr
