"""Certificate bindings against a real slapd, on SQLite and PostgreSQL, with a CA built in the test:
trust, refusals, directory publication, revocation, transfer and retirement, reconcile, CRL fetch."""

from __future__ import annotations

import http.server
import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from directory.reconcile import find_drift, repair
from provisioning import accounts, agencies, certificates, trust
from provisioning.accounts import NewAccount
from provisioning.errors import Conflict, InvalidInput
from provisioning.models import AuditEntry, Certificate, OutboxEntry
from tests.cert_fixtures import (
    LAM_SUBJECT, SKHDT, SNV, Pki, audit_actions, bind, der, now, published, store, with_trust,
)
from tests.conftest import Govmail

def lam_dn(g: Govmail) -> str:
    return g.directory.account_dn("lamnt")


def test_valid_chain_is_bound_published_and_audited(cg: Govmail, pki: Pki):
    leaf = pki.issue(san_email="lamnt@vinhphuc.gov.vn")
    cert = bind(cg, pki.write("lam.pem", [leaf]), account="lamnt@vinhphuc.gov.vn")
    assert cert.subject == LAM_SUBJECT  # Vietnamese, exactly as written
    assert cert.issuer == "CN=Cơ quan chứng thực số Chính phủ,O=Ban Cơ yếu Chính phủ,C=VN"
    assert cert.serial == format(leaf.serial_number, "X") and cert.email == "lamnt@vinhphuc.gov.vn"
    assert cert.fingerprint == trust.fingerprint(leaf) and cert.status == "valid"
    assert cg.sync().failed == 0
    assert published(cg, lam_dn(cg)) == [der(leaf)]
    assert published(cg, cg.directory.account_dn("ductv")) == []
    assert find_drift(cg.factory, cg.directory) == []
    with cg.session() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "certificate.bind")).one()
        after = json.loads(entry.after)
        assert after["holder"] == "lamnt@vinhphuc.gov.vn" and after["subject"] == LAM_SUBJECT
        assert after["not_after"] == leaf.not_valid_after_utc.isoformat(timespec="seconds")


@pytest.mark.parametrize("fmt", ["pem", "der", "p7b-pem", "p7b-der"])
def test_every_input_format_binds(gm: Govmail, pki: Pki, tmp_path: Path, fmt: str):
    """PKCS#7 bundles carry their chain: they bind even with no intermediates configured."""
    g = with_trust(gm, pki, tmp_path, intermediates=fmt.startswith("p7b") is False)
    with g.session() as s, s.begin():
        agencies.add_agency(s, g.settings, g.actor, agencies.parse_fields(g.settings, {
            "code": SKHDT, "name": "Sở Kế hoạch và Đầu tư", "level": "province", "domain": "vinhphuc.gov.vn"}))
        accounts.create_account(s, g.settings, g.actor, NewAccount(agency=SKHDT, full_name="Nguyễn Thị Lâm"))
    leaf = pki.issue()
    certs = [leaf] if fmt in ("pem", "der") else [pki.root.cert, leaf, pki.intermediate.cert]
    cert = bind(g, pki.write(f"lam-{fmt}.bin", certs, fmt), account="lamnt")
    assert cert.fingerprint == trust.fingerprint(leaf) and cert.subject == LAM_SUBJECT
    g.sync()
    assert published(g, g.directory.account_dn("lamnt")) == [der(leaf)]


def test_refusals_name_the_file_and_the_reason_and_write_nothing(cg: Govmail, pki: Pki, rogue: Pki):
    expired = pki.issue(not_before=now() - timedelta(days=400), not_after=now() - timedelta(days=5))
    future = pki.issue(not_before=now() + timedelta(days=3), not_after=now() + timedelta(days=300))
    cases = [
        (pki.write("expired.pem", [expired]), "expired on " + expired.not_valid_after_utc.isoformat(timespec="seconds")),
        (pki.write("future.pem", [future]), "valid only from " + future.not_valid_before_utc.isoformat(timespec="seconds")),
        (rogue.write("rogue.pem", [rogue.issue(), rogue.intermediate.cert]), "does not verify with the key of"),
        (pki.write("server.pem", [pki.issue(usage="server")]), "extended key usage (serverAuth) is not for signing"),
        (pki.write("encrypt.pem", [pki.issue(usage="encryption")]), "allows neither digitalSignature nor nonRepudiation"),
        (pki.write("wrong-mail.pem", [pki.issue(email="ductv@vinhphuc.gov.vn")]), "for ductv@vinhphuc.gov.vn, not for lamnt"),
        (pki.write_bytes("garbage.cer", b"\x30\x82\x01\x00 not a certificate"), "is not a readable X.509 certificate"),
        (pki.write_bytes("empty.pem", b"\n"), "is empty"),
        (pki.write_bytes("a.crl", pki.crl()), "is not a readable X.509 certificate"),
        (pki.write("ca-only.pem", [pki.intermediate.cert]), "only CA certificates"),
        (pki.write("two.pem", [pki.issue(), pki.issue()]), "holds 2 holders' certificates"),
    ]
    for path, expected in cases:
        with pytest.raises(InvalidInput) as info:
            bind(cg, path, account="lamnt")
        assert path.name in str(info.value) and expected in str(info.value), (path.name, str(info.value))
    # A chain that ends at an unknown root is untrusted, with the root named.
    stranger = Pki.make(pki.folder / "stranger", label="Lạ")
    with pytest.raises(InvalidInput, match="not a configured trust anchor"):
        bind(cg, stranger.write("stranger.pem", [stranger.issue()]), account="lamnt")
    with cg.session() as s:
        assert s.scalars(select(Certificate)).all() == []
    assert audit_actions(cg) == []


def test_duplicate_bind_and_a_forged_serial_are_conflicts(cg: Govmail, pki: Pki):
    leaf = pki.issue()
    path = pki.write("lam.pem", [leaf])
    bind(cg, path, account="lamnt")
    for holder in ("lamnt", "ductv"):
        with pytest.raises(Conflict, match="already bound to lamnt@vinhphuc.gov.vn"):
            bind(cg, path, account=holder)
    twin = pki.issue(cn="Trần Văn Đức", serial=leaf.serial_number)  # same issuer + serial, other certificate
    with pytest.raises(Conflict, match="not genuine"):
        bind(cg, pki.write("twin.pem", [twin]), account="ductv")
    with pytest.raises(InvalidInput, match="exactly one"):
        bind(cg, path, account="lamnt", agency=SKHDT)


def test_revoked_by_an_imported_crl_leaves_the_directory(cg: Govmail, pki: Pki, rogue: Pki):
    leaf, other = pki.issue(), pki.issue(cn="Trần Văn Đức")
    bind(cg, pki.write("lam.pem", [leaf]), account="lamnt")
    bind(cg, pki.write("duc.pem", [other]), account="ductv")
    cg.sync()
    with pytest.raises(InvalidInput, match="no configured trust anchor or intermediate signed it"):
        with cg.session() as s, s.begin():
            certificates.import_crl(s, cg.actor, store(cg), rogue.crl([leaf]), "rogue.crl")
    with cg.session() as s, s.begin():
        summary = certificates.import_crl(s, cg.actor, store(cg), pki.crl([leaf]), "sub.crl")
    assert summary["imported"] and summary["revoked"] == [trust.fingerprint(leaf)]
    cg.sync()
    assert published(cg, lam_dn(cg)) == []
    assert published(cg, cg.directory.account_dn("ductv")) == [der(other)]
    with cg.session() as s:
        lam = certificates.get_certificate(s, trust.fingerprint(leaf))
        assert lam.status == "revoked" and "keyCompromise" in lam.reason and lam.unbound_at is None
    assert audit_actions(cg)[-2:] == ["crl.import", "certificate.revoke"]
    # An older CRL changes nothing; a revoked certificate cannot be bound again.
    with cg.session() as s, s.begin():
        old = pki.crl([], this_update=now() - timedelta(days=2))
        assert certificates.import_crl(s, cg.actor, store(cg), old, "old.crl")["imported"] is False
    with cg.session() as s, s.begin():
        certificates.unbind(s, cg.actor, trust.fingerprint(leaf))
    with pytest.raises(InvalidInput, match="revoked on .* by the CRL of CN=Cơ quan chứng thực số Chính phủ"):
        bind(cg, pki.folder / "lam.pem", account="lamnt")
    assert find_drift(cg.factory, cg.directory) == []


def test_transfer_keeps_the_binding(cg: Govmail, pki: Pki):
    leaf = pki.issue()
    bind(cg, pki.write("lam.pem", [leaf]), account="lamnt")
    with cg.session() as s, s.begin():
        accounts.transfer(s, cg.settings, cg.actor, "lamnt", SNV)
    cg.sync()
    assert published(cg, lam_dn(cg)) == [der(leaf)]
    assert cg.entry("lamnt")["govmailAgencyCode"] == [SNV]
    with cg.session() as s:
        assert [c.fingerprint for c in certificates.list_certificates(s, agency=SNV)] == [trust.fingerprint(leaf)]
        assert certificates.list_certificates(s, agency=SKHDT) == []


def test_retirement_removes_the_certificate_from_the_directory(cg: Govmail, pki: Pki):
    leaf = pki.issue()
    bind(cg, pki.write("lam.pem", [leaf]), account="lamnt")
    cg.sync()
    with cg.session() as s, s.begin():
        accounts.retire(s, cg.settings, cg.actor, "lamnt")
    cg.sync()
    assert cg.entry("lamnt")["govmailStatus"] == ["retired"] and published(cg, lam_dn(cg)) == []
    assert find_drift(cg.factory, cg.directory) == []
    with pytest.raises(Conflict, match="retired"):
        bind(cg, pki.write("new.pem", [pki.issue()]), account="lamnt")
    with cg.session() as s, s.begin():  # the binding is history in SQL; a restored official gets it back
        accounts.restore(s, cg.settings, cg.actor, "lamnt")
    cg.sync()
    assert published(cg, lam_dn(cg)) == [der(leaf)]


def test_unbind_removes_it_and_it_can_be_bound_again(cg: Govmail, pki: Pki):
    leaf = pki.issue()
    path = pki.write("lam.pem", [leaf])
    bind(cg, path, account="lamnt")
    with cg.session() as s, s.begin():
        cert = certificates.unbind(s, cg.actor, trust.fingerprint(leaf)[:12])
        assert cert.unbound_at is not None
    cg.sync()
    assert published(cg, lam_dn(cg)) == []
    with cg.session() as s, s.begin():
        with pytest.raises(Conflict, match="not bound"):
            certificates.unbind(s, cg.actor, format(leaf.serial_number, "x"))
    bind(cg, path, account="ductv")
    cg.sync()
    assert published(cg, cg.directory.account_dn("ductv")) == [der(leaf)]
    assert audit_actions(cg) == ["certificate.bind", "certificate.unbind", "certificate.bind"]


def test_agency_certificate_on_the_agency_entry(cg: Govmail, pki: Pki):
    leaf = pki.issue(cn="Sở Kế hoạch và Đầu tư tỉnh Vĩnh Phúc", san_email="skhdt@vinhphuc.gov.vn")
    bind(cg, pki.write("skhdt.p7b", [leaf, pki.intermediate.cert], "p7b-der"), agency=SKHDT)
    with pytest.raises(InvalidInput, match="not for 000.00.16.H62"):
        bind(cg, pki.write("snv.pem", [pki.issue(cn="Sở Nội vụ", email="skhdt@vinhphuc.gov.vn")]), agency=SNV)
    cg.sync()
    assert published(cg, cg.directory.agency_dn(SKHDT)) == [der(leaf)]
    assert find_drift(cg.factory, cg.directory) == []


def test_check_flags_expiry_and_lost_trust(cg: Govmail, pki: Pki, tmp_path: Path):
    soon = pki.issue(not_after=now() + timedelta(days=20))
    later = pki.issue(cn="Trần Văn Đức")
    bind(cg, pki.write("soon.pem", [soon]), account="lamnt")
    bind(cg, pki.write("later.pem", [later]), account="ductv")
    with cg.session() as s, s.begin():
        rows = certificates.check(s, cg.actor, store(cg))
    assert [(r["status"], r["changed"]) for r in rows] == [("valid", False), ("valid", False)]
    with cg.session() as s, s.begin():
        rows = certificates.check(s, cg.actor, store(cg), now() + timedelta(days=30))
    assert [(r["holder"], r["status"], r["changed"]) for r in rows] == [
        ("lamnt@vinhphuc.gov.vn", "expired", True), ("ductv@vinhphuc.gov.vn", "valid", False)]
    assert rows[0]["reason"] == f"it expired on {soon.not_valid_after_utc.isoformat(timespec='seconds')}"
    cg.sync()
    assert published(cg, lam_dn(cg)) == [] and published(cg, cg.directory.account_dn("ductv")) == [der(later)]
    # The province stops trusting this CA: every certificate is flagged, none stays published.
    other = Pki.make(tmp_path / "new-ca", label="Mới")
    g = with_trust(cg, other, tmp_path / "new-ca")
    with g.session() as s, s.begin():
        rows = certificates.check(s, g.actor, store(g))
    assert {r["status"] for r in rows} == {"untrusted"}
    g.sync()
    assert published(g, g.directory.account_dn("ductv")) == []
    assert audit_actions(g) == ["certificate.bind", "certificate.bind", "certificate.expire", "certificate.untrust",
                                "certificate.untrust"]


def test_reconcile_repairs_a_removed_or_added_certificate(cg: Govmail, pki: Pki):
    leaf = pki.issue()
    bind(cg, pki.write("lam.pem", [leaf]), account="lamnt")
    cg.sync()
    with cg.directory.connect() as conn:
        conn.modify(lam_dn(cg), {"userCertificate;binary": [("MODIFY_DELETE", [])]})
        conn.modify(cg.directory.account_dn("ductv"), {"userCertificate;binary": [("MODIFY_ADD", [der(pki.issue())])]})
    drift = find_drift(cg.factory, cg.directory)
    assert {(d.problem, d.label, d.detail) for d in drift} == {
        ("changed", "lamnt@vinhphuc.gov.vn", "userCertificate;binary"),
        ("changed", "ductv@vinhphuc.gov.vn", "userCertificate;binary")}
    assert all(not outcome.startswith("failed") for _, outcome in repair(cg.directory, drift))
    assert published(cg, lam_dn(cg)) == [der(leaf)] and published(cg, cg.directory.account_dn("ductv")) == []
    assert find_drift(cg.factory, cg.directory) == []


class _CrlServer(http.server.ThreadingHTTPServer):
    daemon_threads = True


@pytest.fixture
def crl_server():  # type: ignore[no-untyped-def]
    """A real HTTP server on 127.0.0.1 serving ``/sub.crl`` (whatever bytes the test puts there)."""
    content: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            data = content.get(self.path)
            self.send_response(200 if data is not None else 404)
            self.send_header("Content-Type", "application/pkix-crl")
            self.end_headers()
            self.wfile.write(data or b"")

        def log_message(self, *args: object) -> None:
            pass

    server = _CrlServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", content
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_crl_fetched_from_the_distribution_point(gm: Govmail, pki: Pki, tmp_path: Path, crl_server):
    base, content = crl_server
    g = with_trust(gm, pki, tmp_path, certificates={"fetch_crl": True, "crl_timeout": 5})
    assert g.cli("agency", "add", SKHDT, "--name", "Sở Kế hoạch và Đầu tư", "--level", "province",
                 "--domain", "vinhphuc.gov.vn").exit_code == 0
    assert g.cli("account", "create", "--agency", SKHDT, "--name", "Nguyễn Thị Lâm").exit_code == 0
    leaf = pki.issue(crl_url=f"{base}/sub.crl")
    path = pki.write("lam-dp.pem", [leaf])
    # The distribution point is down (404): the bind goes on with a warning.
    result = g.cli("cert", "bind", str(path), "--account", "lamnt")
    assert result.exit_code == 0, result.output
    assert f"could not fetch the CRL at {base}/sub.crl" in result.stderr
    content["/sub.crl"] = pki.crl([leaf])
    checked = g.cli("--format", "json", "cert", "check")
    assert checked.exit_code == 0, checked.output
    assert [r["status"] for r in json.loads(checked.stdout)] == ["revoked"]
    assert "keyCompromise" in json.loads(checked.stdout)[0]["reason"]
    assert published(g, g.directory.account_dn("lamnt")) == []
    assert audit_actions(g) == ["certificate.bind", "crl.import", "certificate.revoke"]
    # The CRL is held until its next update: the next check does not fetch it again.
    content.clear()
    again = g.cli("cert", "check")
    assert again.exit_code == 0 and "could not fetch" not in again.stderr


def test_outbox_rows_come_with_every_change(cg: Govmail, pki: Pki):
    leaf = pki.issue()
    bind(cg, pki.write("lam.pem", [leaf]), account="lamnt")
    with cg.session() as s:
        rows = s.scalars(select(OutboxEntry)).all()
        lam = accounts.get_account(s, "lamnt")
        assert [(r.object_kind, r.object_id) for r in rows] == [("account", lam.id)]


def test_a_root_crl_revoking_the_subordinate_ca_revokes_what_it_issued(gm: Govmail, tmp_path: Path):
    own = Pki.make(tmp_path / "own-ca", label="Riêng")  # its own CA: the session one must stay unrevoked
    g = with_trust(gm, own, tmp_path)
    with g.session() as s, s.begin():
        agencies.add_agency(s, g.settings, g.actor, agencies.parse_fields(g.settings, {
            "code": SKHDT, "name": "Sở Kế hoạch và Đầu tư", "level": "province", "domain": "vinhphuc.gov.vn"}))
        accounts.create_account(s, g.settings, g.actor, NewAccount(agency=SKHDT, full_name="Nguyễn Thị Lâm"))
    bind(g, own.write("lam.pem", [own.issue()]), account="lamnt")
    with g.session() as s, s.begin():
        summary = certificates.import_crl(s, g.actor, store(g), own.crl([own.intermediate.cert], issuer=own.root),
                                          "root.crl")
    assert len(summary["revoked"]) == 1
    with g.session() as s:
        [cert] = certificates.list_certificates(s)
        assert cert.status == "revoked"
        assert cert.reason.startswith("the issuing CA certificate CN=Cơ quan chứng thực số Riêng,")
