"""``govmail cert ...`` and ``govmail stats certificates`` as an administrator uses them: formats,
exit codes, bulk binding, expiry reminders through a real SMTP server, statistics."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from provisioning import cert_reminders, trust
from tests.cert_fixtures import LAM_SUBJECT, PROVINCE, SKHDT, SNV, Pki, audit_actions, der, now, published, with_trust
from tests.conftest import Govmail
from tests.gateway_fixtures import Downstream


def run(g: Govmail, *args: str):  # type: ignore[no-untyped-def]
    return g.cli("--format", "json", *args)


def test_bind_show_list_unbind_history(cg: Govmail, pki: Pki):
    leaf = pki.issue(san_email="lamnt@vinhphuc.gov.vn")
    path = pki.write("lam.cer", [leaf], "der")
    bound = run(cg, "cert", "bind", str(path), "--account", "lamnt")
    assert bound.exit_code == 0, bound.output
    view = json.loads(bound.stdout)
    assert (view["subject"], view["holder"], view["agency"], view["status"]) == (
        LAM_SUBJECT, "lamnt@vinhphuc.gov.vn", SKHDT, "valid")
    assert published(cg, cg.directory.account_dn("lamnt")) == [der(leaf)]  # published right after the command
    fp = view["fingerprint"]
    shown = run(cg, "cert", "show", fp[:10])
    assert json.loads(shown.stdout)["serial"] == format(leaf.serial_number, "X")
    table = cg.cli("cert", "list", "--agency", SKHDT)
    assert table.exit_code == 0 and "Nguyễn Thị Lâm" in table.stdout and table.stdout.startswith("FINGERPRINT")
    rows = list(csv.DictReader(io.StringIO(cg.cli("cert", "list", "--format", "csv").stdout)))
    assert [(r["holder"], r["subject"]) for r in rows] == [("lamnt@vinhphuc.gov.vn", LAM_SUBJECT)]
    assert json.loads(run(cg, "cert", "list", "--status", "revoked").stdout) == []
    assert len(json.loads(run(cg, "cert", "list", "--expiring", "400d").stdout)) == 1
    assert json.loads(run(cg, "cert", "list", "--expiring", "30d").stdout) == []
    again = cg.cli("cert", "bind", str(path), "--account", "ductv")
    assert again.exit_code == 1 and "already bound to lamnt@vinhphuc.gov.vn" in again.stderr
    assert cg.cli("cert", "unbind", fp).exit_code == 0
    assert published(cg, cg.directory.account_dn("lamnt")) == []
    assert json.loads(run(cg, "cert", "list").stdout) == []
    assert len(json.loads(run(cg, "cert", "list", "--all").stdout)) == 1
    history = json.loads(run(cg, "cert", "history", fp).stdout)
    assert [h["action"] for h in history] == ["certificate.bind", "certificate.unbind"]
    assert history[1]["after"]["unbound_at"] and history[0]["source"] == "cli"
    assert cg.cli("directory", "verify").exit_code == 0


def test_bad_input_exit_codes_and_messages(cg: Govmail, pki: Pki, tmp_path: Path):
    garbage = pki.write_bytes("scan.pdf.cer", b"%PDF-1.7 not a certificate")
    result = cg.cli("cert", "bind", str(garbage), "--account", "lamnt")
    assert result.exit_code == 2 and "scan.pdf.cer" in result.stderr and "PEM, DER or PKCS#7" in result.stderr
    assert "Traceback" not in result.output
    neither = cg.cli("cert", "bind", str(pki.write("x.pem", [pki.issue()])))
    assert neither.exit_code == 2 and "exactly one of an account and an agency" in neither.stderr
    assert cg.cli("cert", "show", "zz-not-hex").exit_code == 2
    assert cg.cli("cert", "show", "abcdef0123").exit_code == 1  # not found
    assert cg.cli("cert", "list", "--expiring", "soon").exit_code == 2
    no_anchor = with_trust(cg, pki, tmp_path / "none", certificates={"trust_anchors": []})
    refused = no_anchor.cli("cert", "check")
    assert refused.exit_code == 2 and "[certificates] trust_anchors is empty" in refused.stderr


def test_import_crl_and_check_through_the_cli(cg: Govmail, pki: Pki):
    leaf = pki.issue()
    assert cg.cli("cert", "bind", str(pki.write("lam.pem", [leaf])), "--account", "lamnt").exit_code == 0
    crl = pki.write_bytes("sub.crl", pki.crl([leaf]))
    imported = run(cg, "cert", "import-crl", str(crl))
    assert imported.exit_code == 0, imported.output
    summary = json.loads(imported.stdout)
    assert summary["imported"] and summary["entries"] == 1 and summary["revoked"] == [trust.fingerprint(leaf)]
    assert summary["issuer"] == "CN=Cơ quan chứng thực số Chính phủ,O=Ban Cơ yếu Chính phủ,C=VN"
    again = cg.cli("cert", "import-crl", str(crl))
    assert again.exit_code == 0 and "already imported" in again.stderr
    checked = run(cg, "cert", "check")
    assert checked.exit_code == 0 and "1 checked, 0 changed, 1 not valid" in checked.stderr
    assert [r["status"] for r in json.loads(checked.stdout)] == ["revoked"]
    assert published(cg, cg.directory.account_dn("lamnt")) == []
    assert json.loads(run(cg, "cert", "list", "--status", "revoked").stdout)[0]["holder"] == "lamnt@vinhphuc.gov.vn"


def test_bulk_bind_from_a_folder_is_all_or_nothing_and_repeatable(cg: Govmail, pki: Pki, tmp_path: Path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    lam, duc = pki.issue(), pki.issue(cn="Trần Văn Đức")
    agency = pki.issue(cn="Sở Kế hoạch và Đầu tư tỉnh Vĩnh Phúc")
    (folder / "lamnt.pem").write_bytes(lam.public_bytes(Encoding.PEM))
    (folder / "ductv@vinhphuc.gov.vn.cer").write_bytes(der(duc))
    (folder / f"{SKHDT}.pem").write_bytes(agency.public_bytes(Encoding.PEM))
    (folder / "nobody.pem").write_bytes(der(pki.issue(cn="Không Ai")))
    (folder / "notes.txt").write_text("ignored")
    failed = run(cg, "cert", "bulk-bind", str(folder))
    assert failed.exit_code == 1 and "nothing was bound" in failed.stderr
    rows = {r["row"]: r for r in json.loads(failed.stdout)}
    assert rows["nobody.pem"]["action"] == "error" and "no account 'nobody'" in rows["nobody.pem"]["error"]
    assert {r["action"] for n, r in rows.items() if n != "nobody.pem"} == {"bound"}
    assert json.loads(run(cg, "cert", "list").stdout) == []
    (folder / "nobody.pem").unlink()
    dry = run(cg, "cert", "bulk-bind", str(folder), "--dry-run")
    assert dry.exit_code == 0 and json.loads(run(cg, "cert", "list").stdout) == []
    done = run(cg, "cert", "bulk-bind", str(folder))
    assert done.exit_code == 0, done.output
    assert sorted(r["holder"] for r in json.loads(done.stdout)) == [SKHDT, "ductv@vinhphuc.gov.vn", "lamnt@vinhphuc.gov.vn"]
    assert published(cg, cg.directory.agency_dn(SKHDT)) == [der(agency)]
    rerun = run(cg, "cert", "bulk-bind", str(folder))
    assert {r["action"] for r in json.loads(rerun.stdout)} == {"unchanged"}
    assert cg.cli("directory", "verify").exit_code == 0


def test_bulk_bind_from_a_csv_names_the_line(cg: Govmail, pki: Pki, tmp_path: Path):
    (tmp_path / "certs").mkdir()
    lam = pki.write("bulk-lam.p7b", [pki.issue(), pki.intermediate.cert], "p7b-pem")
    expired = pki.write("bulk-old.pem", [pki.issue(not_after=now() - timedelta(days=1),
                                                   not_before=now() - timedelta(days=30))])
    sheet = tmp_path / "holders.csv"
    sheet.write_text(f"Tệp chứng thư;Tài khoản;Mã định danh\n{lam};lamnt;\n{expired};ductv;\n", encoding="utf-8")
    failed = run(cg, "cert", "bulk-bind", str(sheet))
    assert failed.exit_code == 1
    rows = json.loads(failed.stdout)
    assert rows[0]["action"] == "bound" and rows[1]["row"] == "holders.csv line 3"
    assert "holders.csv line 3" in rows[1]["error"] and "expired on" in rows[1]["error"]
    assert json.loads(run(cg, "cert", "list").stdout) == []


def test_stats_by_agency_and_level(cg: Govmail, pki: Pki):
    assert cg.cli("account", "create", "--agency", SNV, "--name", "Lê Thị Ánh Tuyết", "--title", "Giám đốc").exit_code == 0
    for path, holder in ((pki.write("lam.pem", [pki.issue()]), ("--account", "lamnt")),
                         (pki.write("skhdt.pem", [pki.issue(cn="Sở KHĐT")]), ("--agency", SKHDT))):
        assert cg.cli("cert", "bind", str(path), *holder).exit_code == 0
    rows = {r["agency"]: r for r in json.loads(run(cg, "stats", "certificates").stdout)}
    assert rows[SKHDT] == {
        "agency": SKHDT, "name": "Sở Kế hoạch và Đầu tư", "level": "province", "agency_certificate": True,
        "officials": 2, "officials_certified": 1, "officials_pct": 50.0,
        "leaders": 1, "leaders_certified": 1, "leaders_pct": 100.0}
    assert (rows[SNV]["officials"], rows[SNV]["leaders"], rows[SNV]["leaders_certified"]) == (1, 1, 0)
    assert rows[PROVINCE]["officials_pct"] is None
    levels = json.loads(run(cg, "stats", "certificates", "--by", "level").stdout)
    assert [(r["level"], r["agencies"], r["agencies_certified"], r["leaders"], r["leaders_certified"])
            for r in levels] == [("province", 3, 1, 2, 1), ("all", 3, 1, 2, 1)]
    table = cg.cli("stats", "certificates", "--format", "csv").stdout
    assert table.splitlines()[0].startswith("agency,name,level,agency_certificate")


@pytest.fixture
def relay():  # type: ignore[no-untyped-def]
    server = Downstream().start()
    yield server
    server.stop()


def test_remind_once_per_window_through_a_real_smtp_server(cg: Govmail, pki: Pki, tmp_path: Path, relay: Downstream):
    g = with_trust(cg, pki, tmp_path / "remind",
                   certificates={"reminder_cc": ["cntt@vinhphuc.gov.vn"], "reminder_sender": "govmail@vinhphuc.gov.vn"},
                   gateway={"delivery": "relay", "relay_host": "127.0.0.1", "relay_port": relay.port,
                            "relay_starttls": False, "relay_timeout": 10})
    soon = pki.issue(not_after=now() + timedelta(days=10, hours=1))
    later = pki.issue(cn="Trần Văn Đức", not_after=now() + timedelta(days=200))
    assert g.cli("cert", "bind", str(pki.write("soon.pem", [soon])), "--account", "lamnt").exit_code == 0
    assert g.cli("cert", "bind", str(pki.write("later.pem", [later])), "--account", "ductv").exit_code == 0
    assert g.cli("portal", "grant", "ductv", "--agency", SKHDT).exit_code == 0  # the agency's administrator
    dry = run(g, "cert", "remind", "--dry-run")
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.stdout)
    assert [(r["holder"], r["window"], r["days_left"], r["result"]) for r in planned] == [
        ("lamnt@vinhphuc.gov.vn", 14, 10, "would send")]
    assert planned[0]["recipients"] == ["lamnt@vinhphuc.gov.vn", "vanthu@vinhphuc.gov.vn", "ductv@vinhphuc.gov.vn",
                                        "cntt@vinhphuc.gov.vn"]
    assert relay.messages == []
    sent = run(g, "cert", "remind")
    assert sent.exit_code == 0, sent.output
    assert [r["result"] for r in json.loads(sent.stdout)] == ["sent"]
    [(sender, recipients, content)] = relay.messages
    assert sender == "govmail@vinhphuc.gov.vn"
    assert sorted(recipients) == ["cntt@vinhphuc.gov.vn", "ductv@vinhphuc.gov.vn", "lamnt@vinhphuc.gov.vn",
                                  "vanthu@vinhphuc.gov.vn"]
    mail = message_from_bytes(content)
    assert mail["Auto-Submitted"] == "auto-generated"
    assert str(make_header(decode_header(mail["Subject"]))) == (
        f"Digital certificate expires on {soon.not_valid_after_utc.date().isoformat()}: lamnt@vinhphuc.gov.vn")
    assert LAM_SUBJECT in mail.get_payload(decode=True).decode("utf-8")
    # Once per window: the next run sends nothing; the 7-day window sends again later.
    assert json.loads(run(g, "cert", "remind").stdout) == [] and len(relay.messages) == 1
    with g.session() as s:
        later_due = cert_reminders.due(s, g.settings, now() + timedelta(days=4))
        assert [(r.holder, r.window) for r in later_due] == [("lamnt@vinhphuc.gov.vn", 7)]
    assert audit_actions(g).count("certificate.remind") == 1


def test_remind_reports_an_unreachable_relay_and_keeps_it_due(cg: Govmail, pki: Pki, tmp_path: Path):
    from tests.gateway_fixtures import listener_port

    g = with_trust(cg, pki, tmp_path / "down", gateway={
        "delivery": "relay", "relay_host": "127.0.0.1", "relay_port": listener_port(), "relay_starttls": False,
        "relay_timeout": 5})
    assert g.cli("cert", "bind", str(pki.write("soon.pem", [pki.issue(not_after=now() + timedelta(days=5))])),
                 "--account", "lamnt").exit_code == 0
    result = run(g, "cert", "remind")
    assert result.exit_code == 1 and "tried again on the next run" in result.stderr
    assert "cannot send through 127.0.0.1" in json.loads(result.stdout)[0]["result"]
    assert [r["result"] for r in json.loads(run(g, "cert", "remind", "--dry-run").stdout)] == ["would send"]
