"""The outbox across a directory outage, reconcile against changes made behind govmail's back,
and injection attempts at the LDAP boundary, against real slapd servers."""

from __future__ import annotations

import dataclasses
import json
import secrets

import pytest
from sqlalchemy import select

from directory.ldap import Directory, escape_filter_chars
from directory.reconcile import find_drift, repair
from directory.slapd import LocalSlapd, SlapdConfig, free_port
from provisioning import accounts, agencies
from provisioning.accounts import NewAccount
from provisioning.config import Secret
from provisioning.errors import DirectoryUnavailable
from provisioning.models import OutboxEntry
from tests.conftest import Govmail

PROVINCE = "000.00.00.H62"


def add_province(gm: Govmail) -> None:
    with gm.session() as s, s.begin():
        agencies.add_agency(s, gm.settings, gm.actor, agencies.parse_fields(gm.settings, {
            "code": PROVINCE, "name": "UBND tỉnh Vĩnh Phúc", "level": "province", "domain": "vinhphuc.gov.vn"}))


def create(gm: Govmail, name: str, **kw: object) -> str:
    with gm.session() as s, s.begin():
        account, _ = accounts.create_account(s, gm.settings, gm.actor, NewAccount(agency=PROVINCE, full_name=name, **kw))
        return account.local_part


@pytest.fixture
def own_slapd(gm: Govmail, tmp_path) -> Govmail:
    """``gm`` pointed at a slapd of its own, which the test may stop and start."""
    server = LocalSlapd(SlapdConfig(state_dir=tmp_path / "own-slapd", base_dn="dc=outage,dc=test", port=free_port(),
                                    root_dn="cn=admin,dc=outage,dc=test", root_password=secrets.token_urlsafe(12)))
    server.start()
    d = dataclasses.replace(gm.settings.directory, urls=(server.url,), base_dn="dc=outage,dc=test",
                            bind_dn="cn=admin,dc=outage,dc=test", bind_password=Secret(server.config.root_password))
    settings = dataclasses.replace(gm.settings, directory=d)
    yield dataclasses.replace(gm, settings=settings, directory=Directory(d), slapd=server)
    server.stop()


def test_outbox_survives_directory_outage(own_slapd: Govmail):
    gm = own_slapd
    add_province(gm)
    create(gm, "Nguyễn Thị Lâm")
    assert gm.sync().applied == 2
    gm.slapd.stop()
    # Changes made while the directory is down are committed in SQL and queued.
    create(gm, "Trần Văn Đức")
    with gm.session() as s, s.begin():
        accounts.suspend(s, gm.settings, gm.actor, "lamnt")
    with pytest.raises(DirectoryUnavailable) as info:
        gm.sync()
    assert gm.settings.directory.bind_password.reveal() not in str(info.value)
    with gm.session() as s:
        assert s.query(OutboxEntry).count() == 2
    gm.slapd.start()
    result = gm.sync()
    assert (result.applied, result.failed, result.remaining) == (2, 0, 0)
    assert gm.entry("ductv")["mail"] == ["ductv@vinhphuc.gov.vn"]
    assert gm.entry("lamnt")["govmailStatus"] == ["suspended"]
    assert find_drift(gm.factory, gm.directory) == []


def test_cli_change_while_directory_down_is_queued_not_lost(own_slapd: Govmail, tmp_path):
    gm = own_slapd
    add_province(gm)
    from tests.conftest import config_data, write_config

    data = config_data(gm.slapd, gm.settings.database.url, "dc=outage,dc=test", tmp_path)
    data["directory"].update(bind_dn="cn=admin,dc=outage,dc=test", bind_password=gm.slapd.config.root_password)
    gm = dataclasses.replace(gm, config_file=write_config(tmp_path / "outage.toml", data))
    gm.slapd.stop()
    result = gm.cli("--format", "json", "account", "create", "--agency", PROVINCE, "--name", "Lê Thị Ánh Tuyết")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["address"] == "tuyetlta@vinhphuc.gov.vn"
    assert "queued" in result.stderr and "govmail directory sync" in result.stderr
    gm.slapd.start()
    synced = gm.cli("directory", "sync")
    assert synced.exit_code == 0, synced.output
    assert gm.entry("tuyetlta") is not None
    assert gm.cli("directory", "verify").exit_code == 0


def test_sync_is_idempotent_and_coalesces(gm: Govmail):
    add_province(gm)
    create(gm, "Nguyễn Thị Lâm")
    for title in ("A", "B", "C"):
        with gm.session() as s, s.begin():
            accounts.update(s, gm.settings, gm.actor, "lamnt", title=title)
    with gm.session() as s:
        assert s.query(OutboxEntry).count() == 5
    result = gm.sync()
    assert (result.applied, result.remaining) == (2, 0)  # one agency + one account, whatever the row count
    assert gm.entry("lamnt")["title"] == ["C"]
    # Re-queue an object that is already up to date: applying it again changes nothing.
    with gm.session() as s, s.begin():
        s.add(OutboxEntry(object_kind="account", object_id=accounts.get_account(s, "lamnt").id))
    assert gm.sync().applied == 1
    assert find_drift(gm.factory, gm.directory) == []


def test_refused_row_is_retried_with_its_error_and_others_go_on(gm: Govmail):
    add_province(gm)
    create(gm, "Nguyễn Thị Lâm")
    create(gm, "Trần Văn Đức")
    gm.sync()
    # Someone puts an entry without govmail's classes where a rename wants to go: the server refuses
    # nothing here, but a DN occupied by a *different structural class* makes the add fail.
    with gm.directory.connect() as conn:
        conn.add(f"uid=lamnt9,{gm.directory.people_dn}", ["top", "account"], {"uid": "lamnt9"})
    with gm.session() as s, s.begin():
        accounts.rename(s, gm.settings, gm.actor, "lamnt", new_address="lamnt9")
        accounts.update(s, gm.settings, gm.actor, "ductv", title="Chuyên viên")
    result = gm.sync()
    assert result.failed == 1 and "lamnt9" in result.errors[0]
    assert gm.entry("ductv")["title"] == ["Chuyên viên"]
    with gm.session() as s:
        row = s.scalars(select(OutboxEntry)).one()
        assert row.attempts == 1 and row.last_error
    drift = find_drift(gm.factory, gm.directory)
    assert {(d.problem, d.label) for d in drift} >= {("unknown-entry", "uid=lamnt9")}


def test_reconcile_finds_and_repairs_changes_made_behind_its_back(gm: Govmail):
    add_province(gm)
    for name in ("Nguyễn Thị Lâm", "Trần Văn Đức", "Lê Thị Ánh Tuyết", "Phạm Văn Bình"):
        create(gm, name)
    with gm.session() as s, s.begin():
        accounts.suspend(s, gm.settings, gm.actor, "binhpv")
    gm.sync()
    people = gm.directory.people_dn
    with gm.directory.connect() as conn:
        conn.modify(f"uid=lamnt,{people}", {"cn": [("MODIFY_REPLACE", ["Kẻ Gian"])],
                                           "govmailAlias": [("MODIFY_ADD", ["ceo@vinhphuc.gov.vn"])]})
        conn.modify(f"uid=binhpv,{people}", {"govmailStatus": [("MODIFY_REPLACE", ["active"])]})
        conn.delete(f"uid=ductv,{people}")
        conn.modify_dn(f"uid=tuyetlta,{people}", "uid=tuyet")
        conn.add(f"uid=intruder,{people}", ["top", "person", "organizationalPerson", "inetOrgPerson"],
                 {"uid": "intruder", "cn": "X", "sn": "X", "mail": "intruder@vinhphuc.gov.vn", "userPassword": "x"})
        conn.modify(gm.directory.agency_dn(PROVINCE), {"o": [("MODIFY_REPLACE", ["Tên sai"])]})
    drift = find_drift(gm.factory, gm.directory)
    found = {(d.problem, d.label) for d in drift}
    assert found == {
        ("changed", "lamnt@vinhphuc.gov.vn"), ("changed", "binhpv@vinhphuc.gov.vn"),
        ("missing", "ductv@vinhphuc.gov.vn"), ("moved", "tuyetlta@vinhphuc.gov.vn"),
        ("unknown-entry", "uid=intruder"), ("changed", PROVINCE),
    }
    assert next(d for d in drift if d.label.startswith("binhpv")).detail == "govmailStatus"
    # Report only: nothing changed yet.
    assert len(find_drift(gm.factory, gm.directory)) == 6
    outcomes = repair(gm.directory, drift)
    assert all(not o.startswith("failed") for _, o in outcomes)
    assert find_drift(gm.factory, gm.directory) == []
    assert gm.entry("lamnt")["cn"] == ["Nguyễn Thị Lâm"] and "govmailAlias" not in gm.entry("lamnt")
    assert gm.entry("binhpv")["govmailStatus"] == ["suspended"]
    assert gm.entry("ductv") is not None and gm.entry("tuyetlta") is not None
    assert gm.entry("intruder") is None and gm.entry("tuyet") is None


def test_cli_reconcile_reports_then_repairs(gm: Govmail):
    add_province(gm)
    create(gm, "Nguyễn Thị Lâm")
    gm.sync()
    with gm.directory.connect() as conn:
        conn.delete(f"uid=lamnt,{gm.directory.people_dn}")
    report = gm.cli("--format", "json", "directory", "reconcile")
    assert report.exit_code == 0
    assert [d["problem"] for d in json.loads(report.stdout)] == ["missing"]
    assert gm.cli("directory", "verify").exit_code == 1
    fixed = gm.cli("--format", "json", "directory", "reconcile", "--repair")
    assert fixed.exit_code == 0 and json.loads(fixed.stdout)[0]["outcome"] == "added"
    assert gm.cli("directory", "verify").exit_code == 0


def test_dn_and_filter_escaping_at_the_boundary(gm: Govmail):
    d = gm.directory
    assert d.account_dn("a,ou=admins") == f"uid=a\\,ou\\=admins,{d.people_dn}"
    assert d.agency_dn("x+cn=y") == f"govmailAgencyCode=x\\+cn\\=y,{d.agencies_dn}"
    assert escape_filter_chars("*)(uid=*") == "\\2a\\29\\28uid=\\2a"


def test_injection_attempts_are_stored_literally_and_match_nothing_else(gm: Govmail):
    add_province(gm)
    evil = "*)(|(uid=*))(cn=*"
    create(gm, "Nguyễn Thị Lâm", title=evil)
    create(gm, "Trần Văn Đức")
    gm.sync()
    assert gm.entry("lamnt")["title"] == [evil]
    with gm.directory.connect() as conn:
        conn.search(gm.directory.people_dn, f"(title={escape_filter_chars(evil)})", attributes=["uid"])
        assert [str(e.uid) for e in conn.entries] == ["lamnt"]
    # Values that would be DN or filter syntax never become addresses or agency codes.
    for bad in ("a,ou=admins", "x)(uid=*", "ad*min", "a\\2c"):
        with pytest.raises(Exception, match="not allowed|not an|contains"):
            create(gm, "Nguyễn Văn An", address=bad)
    with pytest.raises(Exception, match="not an agency code"):
        agencies.validate_code("000.00.15.H62)(o=*")
    with gm.session() as s:
        with pytest.raises(Exception, match="no account"):
            accounts.get_account(s, "*")


def test_replayed_create_after_a_crash_falls_back_to_publish(gm: Govmail):
    """A crash between adding an entry and settling its outbox row replays the add: harmless."""
    add_province(gm)
    create(gm, "Nguyễn Thị Lâm")
    gm.sync()
    with gm.session() as s, s.begin():
        account = accounts.get_account(s, "lamnt")
        account.title = "Changed without an outbox row"  # as if the entry were stale
        s.add(OutboxEntry(object_kind="account", object_id=account.id, hint="create"))
    result = gm.sync()
    assert (result.applied, result.failed) == (1, 0)
    assert gm.entry("lamnt")["title"] == ["Changed without an outbox row"]
    assert find_drift(gm.factory, gm.directory) == []
