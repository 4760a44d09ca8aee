"""Every lifecycle step, in SQL and in the real directory, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from provisioning import accounts, agencies, passwords
from provisioning.accounts import NewAccount
from provisioning.errors import Conflict, InvalidInput, NotFound
from provisioning.models import AuditEntry, IssuedAddress, OutboxEntry, utcnow

PROVINCE = "000.00.00.H62"
SKHDT = "000.00.15.H62"
SNV = "000.00.16.H62"


@pytest.fixture
def tree(gm):
    """A province with two departments."""
    with gm.session() as s, s.begin():
        for code, name, parent, short in (
            (PROVINCE, "UBND tỉnh Vĩnh Phúc", None, None),
            (SKHDT, "Sở Kế hoạch và Đầu tư", PROVINCE, "skhdt"),
            (SNV, "Sở Nội vụ", PROVINCE, "snv"),
        ):
            fields = agencies.parse_fields(gm.settings, {
                "code": code, "name": name, "level": "province", "parent": parent,
                "domain": "vinhphuc.gov.vn" if parent is None else None, "short_name": short})
            agencies.add_agency(s, gm.settings, gm.actor, fields)
    return gm


def create(gm, name, agency=SKHDT, password=None, **kw):
    with gm.session() as s, s.begin():
        account, initial = accounts.create_account(s, gm.settings, gm.actor, NewAccount(agency=agency, full_name=name, **kw), password)
        return account.address, initial


def apply(gm, func, *args, **kw):
    with gm.session() as s, s.begin():
        return accounts.snapshot(func(s, gm.settings, gm.actor, *args, **kw))


def test_create_publishes_entry_with_working_password(tree):
    gm = tree
    address, initial = create(gm, "Nguyễn Thị Lâm", title="Chuyên viên", employee_code="NV-001")
    assert address == "lamnt@vinhphuc.gov.vn"
    assert gm.sync().failed == 0
    entry = gm.entry("lamnt")
    assert entry["mail"] == ["lamnt@vinhphuc.gov.vn"]
    assert entry["cn"] == ["Nguyễn Thị Lâm"] and entry["sn"] == ["Nguyễn"] and entry["givenName"] == ["Thị Lâm"]
    assert entry["title"] == ["Chuyên viên"] and entry["employeeNumber"] == ["NV-001"]
    assert entry["govmailStatus"] == ["active"] and entry["govmailAgencyCode"] == [SKHDT]
    assert entry["govmailMustChangePassword"] == ["TRUE"]
    assert gm.slapd_bind_ok("lamnt", initial)
    assert not gm.slapd_bind_ok("lamnt", initial + "x")


def test_collisions_reserved_and_retired_names_are_never_reissued(tree):
    gm = tree
    assert create(gm, "Nguyễn Thị Lâm")[0] == "lamnt@vinhphuc.gov.vn"
    assert create(gm, "NGUYỄN THỊ LÂM")[0] == "lamnt2@vinhphuc.gov.vn"
    apply(gm, accounts.retire, "lamnt2")
    with gm.session() as s, s.begin():
        accounts.purge_due(s, gm.settings, gm.actor, now=utcnow() + timedelta(days=365))
    # lamnt2 was purged: its address stays issued, so the next namesake gets lamnt3.
    assert create(gm, "Nguyễn Thị Lâm")[0] == "lamnt3@vinhphuc.gov.vn"
    # The agency short name and reserved names are never given to a person.
    with pytest.raises(Conflict, match="skhdt"):
        create(gm, "Nguyễn Văn An", address="skhdt")
    with pytest.raises(Conflict, match="reserved"):
        create(gm, "Nguyễn Văn An", address="postmaster")
    with pytest.raises(Conflict, match="never re-issued"):
        create(gm, "Nguyễn Văn An", address="lamnt2")


def test_full_name_style(tree):
    gm = tree
    from dataclasses import replace

    gm.settings = replace(gm.settings, accounts=replace(gm.settings.accounts, address_style="full_name"))
    assert create(gm, "Phạm Thị Trang")[0] == "phamthitrang@vinhphuc.gov.vn"
    assert create(gm, "Phạm Thị Trang")[0] == "phamthitrang2@vinhphuc.gov.vn"


def test_suspend_restore_refuse_bind_and_keep_entry(tree):
    gm = tree
    _, initial = create(gm, "Trần Văn Đức")
    gm.sync()
    assert apply(gm, accounts.suspend, "ductv")["status"] == "suspended"
    gm.sync()
    assert gm.entry("ductv")["govmailStatus"] == ["suspended"]
    assert not gm.slapd_bind_ok("ductv", initial)
    with pytest.raises(Conflict, match="is suspended; cannot suspend"):
        apply(gm, accounts.suspend, "ductv")
    apply(gm, accounts.restore, "ductv@vinhphuc.gov.vn")
    gm.sync()
    assert gm.slapd_bind_ok("ductv", initial)


def test_transfer_keeps_address(tree):
    gm = tree
    create(gm, "Lê Thị Ánh Tuyết")
    view = apply(gm, accounts.transfer, "tuyetlta", SNV)
    assert view["agency"] == SNV and view["address"] == "tuyetlta@vinhphuc.gov.vn"
    gm.sync()
    entry = gm.entry("tuyetlta")
    assert entry["govmailAgencyCode"] == [SNV] and entry["ou"] == ["Sở Nội vụ"]
    with pytest.raises(Conflict, match="already belongs"):
        apply(gm, accounts.transfer, "tuyetlta", SNV)
    with pytest.raises(NotFound):
        apply(gm, accounts.transfer, "tuyetlta", "000.00.99.H62")


def test_rename_moves_entry_and_keeps_old_address_as_alias(tree):
    gm = tree
    _, initial = create(gm, "Nguyễn Thị Lâm")
    gm.sync()
    view = apply(gm, accounts.rename, "lamnt", full_name="Nguyễn Thị Lâm Anh", new_address="anhntl")
    assert view["address"] == "anhntl@vinhphuc.gov.vn"
    assert view["aliases"] == ["lamnt@vinhphuc.gov.vn"]
    gm.sync()
    assert gm.entry("lamnt") is None
    entry = gm.entry("anhntl")
    assert entry["cn"] == ["Nguyễn Thị Lâm Anh"] and entry["govmailAlias"] == ["lamnt@vinhphuc.gov.vn"]
    assert gm.slapd_bind_ok("anhntl", initial)
    # the old address still finds the account, and is never issued again
    with gm.session() as s:
        assert accounts.get_account(s, "lamnt@vinhphuc.gov.vn").local_part == "anhntl"
    assert create(gm, "Nguyễn Thị Lâm")[0] == "lamnt2@vinhphuc.gov.vn"


def test_reset_password_generated_and_chosen(tree):
    gm = tree
    _, first = create(gm, "Hoàng Minh Châu")
    with gm.session() as s, s.begin():
        _, second = accounts.reset_password(s, gm.settings, gm.actor, "chauhm")
    gm.sync()
    assert second and second != first
    assert gm.slapd_bind_ok("chauhm", second) and not gm.slapd_bind_ok("chauhm", first)
    chosen = "Mật khẩu rất dài 2026"
    with gm.session() as s, s.begin():
        account, none = accounts.reset_password(s, gm.settings, gm.actor, "chauhm", chosen)
        assert none is None and account.password_hash.startswith("{ARGON2}$argon2id$")
        assert account.must_change_password is False
    gm.sync()
    assert gm.slapd_bind_ok("chauhm", chosen)
    assert gm.entry("chauhm")["govmailMustChangePassword"] == ["FALSE"]


@pytest.mark.parametrize("bad, problem", [
    ("Ab3-x9", "shorter than"),
    ("x" * 129, "longer than 128 bytes"),
    ("hoang-chau-2026", "name or address"),
    ("chauhm-secret-2026", "name or address"),
    ("abc\x00defghijkl", "control characters"),
])
def test_password_policy_refuses_without_echoing(tree, bad, problem):
    gm = tree
    create(gm, "Hoàng Minh Châu")
    with pytest.raises(InvalidInput) as info, gm.session() as s, s.begin():
        accounts.reset_password(s, gm.settings, gm.actor, "chauhm", bad)
    assert problem in str(info.value)
    assert bad not in str(info.value)


def test_retire_then_purge_removes_entry_and_keeps_history(tree):
    gm = tree
    _, initial = create(gm, "Phạm Văn Bình")
    gm.sync()
    view = apply(gm, accounts.retire, "binhpv")
    assert view["status"] == "retired" and view["purge_after"]
    gm.sync()
    assert gm.entry("binhpv")["govmailStatus"] == ["retired"]
    assert not gm.slapd_bind_ok("binhpv", initial)
    with gm.session() as s, s.begin():
        assert accounts.purge_due(s, gm.settings, gm.actor) == []  # retention not over yet
        purged = accounts.purge_due(s, gm.settings, gm.actor, now=utcnow() + timedelta(days=91))
        assert [a.local_part for a in purged] == ["binhpv"]
    gm.sync()
    assert gm.entry("binhpv") is None
    with gm.session() as s:
        account = accounts.get_account(s, "binhpv")
        assert account.status == "purged"
        actions = s.scalars(select(AuditEntry.action).where(AuditEntry.object_id == account.id).order_by(AuditEntry.id)).all()
        assert actions == ["account.create", "account.retire", "account.purge"]
        assert s.get(IssuedAddress, "binhpv") is not None
    with pytest.raises(Conflict, match="purged"):
        apply(gm, accounts.restore, "binhpv")


def test_restore_a_retired_account_before_purge(tree):
    gm = tree
    create(gm, "Phạm Văn Bình")
    apply(gm, accounts.retire, "binhpv")
    view = apply(gm, accounts.restore, "binhpv")
    assert view["status"] == "active" and view["purge_after"] is None


def test_update_aliases_quota_and_fields(tree):
    gm = tree
    create(gm, "Vũ Thị Hồng Nhung", phone="0912 345 678")
    with gm.session() as s, s.begin():
        assert accounts.update(s, gm.settings, gm.actor, "nhungvth", title="Phó Giám đốc", quota_mb=4096,
                               add_aliases=["nhung.vu"], phone="")
        assert not accounts.update(s, gm.settings, gm.actor, "nhungvth", title="Phó Giám đốc")
    gm.sync()
    entry = gm.entry("nhungvth")
    assert entry["govmailAlias"] == ["nhung.vu@vinhphuc.gov.vn"]
    assert entry["govmailQuota"] == ["4096"] and entry["title"] == ["Phó Giám đốc"]
    assert "telephoneNumber" not in entry
    with gm.session() as s, s.begin():
        accounts.update(s, gm.settings, gm.actor, "nhungvth", remove_aliases=["nhung.vu@vinhphuc.gov.vn"])
    gm.sync()
    assert "govmailAlias" not in gm.entry("nhungvth")
    with pytest.raises(Conflict, match="never re-issued"):
        create(gm, "Đỗ Văn Nhung", address="nhung.vu")


def test_employee_code_is_one_account_per_official(tree):
    gm = tree
    create(gm, "Nguyễn Văn An", employee_code="HR-42")
    with pytest.raises(Conflict, match="HR-42.*annv@"):
        create(gm, "Nguyễn Văn An", employee_code="HR-42")


@pytest.mark.parametrize("field, value, message", [
    ("phone", "call me", "not a phone number"),
    ("personal_email", "not-an-email", "not an email"),
    ("quota_mb", -5, "out of range"),
    ("address", "a)(uid=*", "not allowed"),
])
def test_bad_fields_are_refused_and_nothing_written(tree, field, value, message):
    gm = tree
    with pytest.raises(InvalidInput, match=message):
        create(gm, "Nguyễn Văn An", **{field: value})
    with gm.session() as s:
        assert accounts.list_accounts(s) == []
        assert s.scalar(select(OutboxEntry).where(OutboxEntry.object_kind == "account")) is None


def test_inactive_agency_refuses_new_accounts(tree):
    gm = tree
    with gm.session() as s, s.begin():
        agencies.update_agency(s, gm.settings, gm.actor, agencies.parse_fields(gm.settings, {"code": SNV, "status": "inactive"}))
    with pytest.raises(Conflict, match="inactive"):
        create(gm, "Nguyễn Văn An", agency=SNV)


def test_audit_log_has_who_what_where_before_after_and_no_secret(tree):
    gm = tree
    _, initial = create(gm, "Nguyễn Thị Lâm")
    apply(gm, accounts.suspend, "lamnt")
    with gm.session() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.object_kind == "account").order_by(AuditEntry.id)).all()
        account = accounts.get_account(s, "lamnt")
    assert [(r.action, r.actor, r.source) for r in rows] == [("account.create", "tester", "cli"), ("account.suspend", "tester", "cli")]
    assert rows[0].before is None and json.loads(rows[0].after)["status"] == "active"
    assert json.loads(rows[1].before)["status"] == "active" and json.loads(rows[1].after)["status"] == "suspended"
    for row in rows:
        assert initial not in (row.after or "") and account.password_hash not in (row.after or "")
        assert "password_hash" not in (row.after or "")


def test_shared_mailbox(tree):
    gm = tree
    address, _ = create(gm, "Văn thư Sở Kế hoạch và Đầu tư", kind="shared", address="vanthu.skhdt")
    assert address == "vanthu.skhdt@vinhphuc.gov.vn"
    gm.sync()
    assert gm.entry("vanthu.skhdt")["govmailMailboxKind"] == ["shared"]
    with pytest.raises(InvalidInput, match="required for a shared mailbox"):
        create(gm, "Văn thư", kind="shared")


def test_initial_passwords_are_long_fast_hashed_and_spreadsheet_safe():
    for _ in range(300):
        pw = passwords.generate_initial(16)
        assert len(pw) == 16 and pw[0].isalnum()
    assert passwords.verify(pw, passwords.hash_initial(pw))
    assert passwords.hash_initial(pw).startswith("{SSHA512}")


def test_delegations_to_shared_mailboxes_follow_the_officials_lifecycle(tree):
    from provisioning import delegations

    gm = tree
    lam, _ = create(gm, "Nguyễn Thị Lâm")
    duc, _ = create(gm, "Trần Văn Đức")
    other, _ = create(gm, "Lê Văn Nam", agency=SNV)
    vanthu, _ = create(gm, "Văn thư Sở KH&ĐT", kind="shared", address="vanthu.skhdt")

    def grant(official, mailbox=vanthu):
        with gm.session() as s, s.begin():
            delegations.grant(s, gm.actor, mailbox, official)

    def delegates():
        with gm.session() as s:
            return delegations.delegate_addresses(s, accounts.get_account(s, vanthu))

    grant(lam)
    grant(duc)
    assert delegates() == sorted([lam, duc])
    with pytest.raises(Conflict, match="only officials of the mailbox's own agency"):
        grant(other)
    with pytest.raises(InvalidInput, match="not a shared one"):
        grant(duc, mailbox=lam)
    with pytest.raises(Conflict, match="already"):
        grant(lam)
    apply(gm, accounts.suspend, lam)  # a suspension keeps it (the gateway refuses the login anyway)
    assert delegates() == sorted([lam, duc])
    apply(gm, accounts.retire, lam)  # retiring ends it
    assert delegates() == [duc]
    apply(gm, accounts.transfer, duc, SNV)  # so does a transfer to another agency
    assert delegates() == []
    with gm.session() as s:
        actions = s.scalars(select(AuditEntry.action).where(AuditEntry.object_label == vanthu).order_by(AuditEntry.id)).all()
    assert actions == ["account.create", "account.delegate", "account.delegate", "account.undelegate", "account.undelegate"]
    with pytest.raises(Conflict, match="retired"):
        grant(lam)
