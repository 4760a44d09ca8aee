"""Change requests end to end on SQLite and PostgreSQL with a real slapd: an agency administrator
asks, a province administrator decides, the engine applies; handover files, scope, auto-approve
rules and notification e-mails through a real SMTP server."""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import json
import unicodedata
from email import message_from_bytes
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import func, select

from provisioning import accounts, agencies, notify, passwords, requests, roles, secretbox
from provisioning.accounts import NewAccount
from provisioning.errors import Conflict, InvalidInput, NotFound
from provisioning.models import (
    Account, AuditEntry, Certificate, ChangeRequest, IssuedAddress, Notification, OutboxEntry,
)
from provisioning.roles import Forbidden
from tests.cert_fixtures import with_trust
from tests.conftest import Govmail
from tests.gateway_fixtures import Downstream, listener_port

ROOT, A, A1, B = "000.00.00.H62", "000.00.15.H62", "000.01.15.H62", "000.00.16.H62"
HEADER = "Họ và tên,Chức vụ,Mã cán bộ,Điện thoại,Mã cơ quan\r\n"


def build_world(g: Govmail) -> SimpleNamespace:
    """Province ROOT with A (and A1 below it) and an unrelated B; a province administrator, an
    administrator of A, officials in A, A1 and B."""
    with g.session() as s, s.begin():
        for code, name, parent, short in ((ROOT, "UBND tỉnh Vĩnh Phúc", None, None),
                                          (A, "Sở Kế hoạch và Đầu tư", ROOT, "skhdt"),
                                          (A1, "Phòng Đăng ký kinh doanh", A, None),
                                          (B, "Sở Nội vụ", ROOT, "snv")):
            agencies.add_agency(s, g.settings, g.actor, agencies.parse_fields(g.settings, {
                "code": code, "name": name, "level": "province", "parent": parent, "short_name": short,
                "domain": "vinhphuc.gov.vn" if parent is None else None}))
        made = {}
        for key, agency, name in (("prov", ROOT, "Phạm Văn Tỉnh"), ("adm", A, "Nguyễn Văn Quản"),
                                  ("off", A, "Lê Thị Hoa"), ("a1", A1, "Trần Văn Con"), ("b", B, "Đỗ Văn Bê")):
            made[key] = accounts.create_account(s, g.settings, g.actor, NewAccount(agency=agency, full_name=name))[0]
        roles.grant(s, g.actor, made["prov"].address, None)
        roles.grant(s, g.actor, made["adm"].address, A)
        principals = {k: roles.principal_for_account(s, made[k]) for k in ("prov", "adm", "off")}
        addresses = {k: a.address for k, a in made.items()}
    return SimpleNamespace(g=g, box=secretbox.load(g.settings), addr=addresses, **principals)


@pytest.fixture
def w(gm: Govmail) -> SimpleNamespace:
    return build_world(gm)


def run(w, func, *args, **kw):  # type: ignore[no-untyped-def]
    """Call ``func(session, *args)`` in a transaction of its own, as a portal request would."""
    with w.g.session() as s, s.begin():
        return func(s, *args, **kw)


def submit(w, principal, kind, **payload):  # type: ignore[no-untyped-def]
    return run(w, requests.submit, w.g.settings, w.box, principal, kind, payload)


def approve(w, request_id, principal=None):  # type: ignore[no-untyped-def]
    return run(w, requests.approve, w.g.settings, w.box, principal or w.prov, request_id)


def account(w, address):  # type: ignore[no-untyped-def]
    with w.g.session() as s:
        return accounts.get_account(s, address)


def handover(w, principal, request_id) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    data = run(w, requests.credentials_csv, w.box, principal, request_id)
    assert data.startswith(codecs.BOM_UTF8)
    return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))


def payload_rows(rows):  # type: ignore[no-untyped-def]
    return [{"line": line, **values} for line, values in rows]


def audits(w, action):  # type: ignore[no-untyped-def]
    with w.g.session() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def notes(w) -> list[Notification]:  # type: ignore[no-untyped-def]
    with w.g.session() as s:
        return list(s.scalars(select(Notification).order_by(Notification.id)))


def test_create_from_an_hr_file_preview_approve_and_hand_over_once(w):
    g = w.g
    # Names as a Mac exports them (NFD) come back NFC; the empty agency cell means the request's agency.
    data = unicodedata.normalize("NFD", HEADER + "Nguyễn Thị Lâm,Chuyên viên,H62-101,0912 345 678,\r\n"
                                 "Trần Văn Đức,Trưởng phòng,H62-102,,\r\n"
                                 f"Lê Thị Ánh Tuyết,Chuyên viên,H62-103,,{A1}\r\n").encode("utf-8")
    rows = requests.parse_upload(g.settings, codecs.BOM_UTF8 + data, "nhan-su.csv")
    assert [(line, r["full_name"]) for line, r in rows] == [(2, "Nguyễn Thị Lâm"), (3, "Trần Văn Đức"),
                                                            (4, "Lê Thị Ánh Tuyết")]
    assert rows[0][1]["full_name"] == unicodedata.normalize("NFC", rows[0][1]["full_name"])
    with g.session() as s:
        plan = requests.preview_create(s, g.settings, w.adm, A, rows)
    assert [(r.action, r.address, r.agency) for r in plan.rows] == [
        ("create", "lamnt@vinhphuc.gov.vn", A), ("create", "ductv@vinhphuc.gov.vn", A),
        ("create", "tuyetlta@vinhphuc.gov.vn", A1)]
    with g.session() as s:
        assert s.scalar(select(func.count()).select_from(Account)) == 5  # the preview wrote nothing

    req = submit(w, w.adm, "create", agency=A, rows=payload_rows(rows))
    assert (req.status, req.summary, req.source, req.requester_account_id) == (
        "pending", f"3 new accounts in {A}", "portal", w.adm.account_id)
    [note] = notes(w)
    assert json.loads(note.recipients) == [w.addr["prov"]] and f"#{req.id}" in note.subject

    done = approve(w, req.id)
    assert done.status == "applied" and done.decided_by == w.addr["prov"]
    outcome = json.loads(done.outcome)
    assert [(c["line"], c["address"], c["full_name"]) for c in outcome["created"]] == [
        (2, "lamnt@vinhphuc.gov.vn", "Nguyễn Thị Lâm"), (3, "ductv@vinhphuc.gov.vn", "Trần Văn Đức"),
        (4, "tuyetlta@vinhphuc.gov.vn", "Lê Thị Ánh Tuyết")]
    assert outcome["skipped"] == []
    assert account(w, "tuyetlta").agency.code == A1 and account(w, "lamnt").employee_code == "H62-101"
    assert g.sync().failed == 0
    assert all(g.entry(local) is not None for local in ("lamnt", "ductv", "tuyetlta"))

    # Only the requester downloads the handover file, once; its passwords open the accounts.
    view = requests.request_view(done)
    assert view["credentials_available"] is True and view["outcome"] == outcome
    with pytest.raises(NotFound):
        run(w, requests.credentials_csv, w.box, w.prov, req.id)
    lines = handover(w, w.adm, req.id)
    assert [(r["address"], r["agency"]) for r in lines] == [
        ("lamnt@vinhphuc.gov.vn", A), ("ductv@vinhphuc.gov.vn", A), ("tuyetlta@vinhphuc.gov.vn", A1)]
    for line in lines:
        assert passwords.verify(line["initial_password"], account(w, line["address"]).password_hash)
    assert g.slapd_bind_ok("lamnt", lines[0]["initial_password"])
    with pytest.raises(Conflict, match="already downloaded on .*password reset"):
        run(w, requests.credentials_csv, w.box, w.adm, req.id)
    with g.session() as s:
        stored = requests.get_request(s, w.adm, req.id)
        assert stored.credentials is None and stored.credentials_fetched_at is not None
        shown = json.dumps(requests.request_view(stored), ensure_ascii=False)
    assert not any(line["initial_password"] in shown for line in lines)
    # The audit trail: who asked, who approved (through the portal), the engine's own rows.
    assert [(a.actor, a.source) for a in audits(w, "request.submit")] == [(w.addr["adm"], "portal")]
    assert [(a.actor, a.source) for a in audits(w, "request.approve")] == [(w.addr["prov"], "portal")]
    assert [a.actor for a in audits(w, "account.create")][-3:] == [w.addr["prov"]] * 3
    assert [a.actor for a in audits(w, "request.credentials")] == [w.addr["adm"]]
    assert not any(line["initial_password"] in (a.after or "") for a in audits(w, "account.create") for line in lines)
    # The requester was told (and the notice holds no password).
    decided = notes(w)[-1]
    assert json.loads(decided.recipients) == [w.addr["adm"]] and "applied" in decided.subject
    assert not any(line["initial_password"] in decided.body for line in lines)


def test_bad_files_and_rows_are_refused_with_their_lines(w):
    g = w.g
    settings = g.settings
    with pytest.raises(InvalidInput, match="nhan-su.csv.*is empty"):
        requests.parse_upload(settings, b"", "nhan-su.csv")
    with pytest.raises(InvalidInput, match="no column for the full name"):
        requests.parse_upload(settings, b"Phone,Title\r\n0912345678,x\r\n", "x.csv")
    small = dataclasses.replace(settings, portal=dataclasses.replace(settings.portal, max_upload_bytes=60,
                                                                    max_upload_rows=2))
    big = (HEADER + "Nguyễn Văn An,,,,\r\n" * 3).encode("utf-8")
    with pytest.raises(InvalidInput, match="big.csv.*larger than 60 bytes"):
        requests.parse_upload(small, big, "big.csv")
    small = dataclasses.replace(small, portal=dataclasses.replace(small.portal, max_upload_bytes=10_000))
    with pytest.raises(InvalidInput, match="big.csv.*more than 2 rows"):
        requests.parse_upload(small, big, "big.csv")

    rows = requests.parse_upload(settings, (HEADER + "Nguyễn Văn An,,A-1,0912345678,\r\n"
                                            f"Trần Thị Bình,,A-2,,{B}\r\n"
                                            "Lê Văn Cường,,A-3,không có số,\r\n").encode("utf-8"), "f.csv")
    with g.session() as s:
        plan = requests.preview_create(s, settings, w.adm, A, rows)
    assert [(r.line, r.action) for r in plan.rows] == [(2, "create"), (3, "error"), (4, "error")]
    assert plan.rows[1].detail == f"agency {B} is not one you administer"
    with pytest.raises(InvalidInput) as refused:
        submit(w, w.adm, "create", agency=A, rows=payload_rows(rows))
    assert f"line 3: agency {B} is not one you administer; line 4: phone" in str(refused.value)
    # Another agency's account is not revealed through a matching employee code.
    with g.session() as s, s.begin():
        accounts.update(s, settings, g.actor, w.addr["b"], employee_code="B-9")
    with g.session() as s:
        plan = requests.preview_create(s, settings, w.adm, A, [(2, {"full_name": "Đỗ Văn Bê", "employee_code": "B-9"})])
    [row] = plan.rows
    assert row.action == "conflict" and row.address == "" and w.addr["b"] not in row.detail
    # Outside the principal's agencies, or nothing new to create.
    with pytest.raises(NotFound, match=B):
        submit(w, w.adm, "create", agency=B, rows=[{"line": 2, "full_name": "Nguyễn Văn An"}])
    with pytest.raises(InvalidInput, match="no row would create an account"):
        submit(w, w.adm, "create", agency=A, rows=[{"line": 2, "full_name": "Lê Thị Hoa"}])
    with pytest.raises(InvalidInput, match="line 2.*'fullname'.*is not a column"):
        submit(w, w.adm, "create", agency=A, rows=[{"line": 2, "fullname": "Nguyễn Văn An"}])
    with pytest.raises(InvalidInput, match="kind 'delete': is not a request kind"):
        submit(w, w.adm, "delete", address=w.addr["off"])
    with pytest.raises(InvalidInput, match="address: is required"):
        submit(w, w.adm, "suspend")
    with g.session() as s:
        assert s.scalar(select(func.count()).select_from(ChangeRequest)) == 0


def test_account_changes_are_applied_after_approval(w):
    g = w.g
    hoa, con = w.addr["off"], w.addr["a1"]
    req = submit(w, w.adm, "suspend", address=hoa)
    assert (req.status, req.summary, req.agency.code) == ("pending", f"suspend {hoa}", A)
    with pytest.raises(Conflict, match=f"request #{req.id} already asks to suspend"):
        submit(w, w.adm, "suspend", address=hoa)
    assert account(w, hoa).status == "active"  # nothing happens before approval
    done = approve(w, req.id)
    assert done.status == "applied" and json.loads(done.outcome) == {"address": hoa, "status": "suspended", "agency": A}
    assert account(w, hoa).status == "suspended"
    with pytest.raises(Conflict, match="is suspended; cannot suspend"):
        submit(w, w.adm, "suspend", address=hoa)
    with pytest.raises(Conflict, match=f"request #{req.id} is already applied"):
        approve(w, req.id)

    restore = approve(w, submit(w, w.adm, "restore", address=hoa).id)
    assert json.loads(restore.outcome)["status"] == "active"
    # The target of a transfer need not be administered by the requester.
    moved = approve(w, submit(w, w.adm, "transfer", address=con, agency=B).id)
    assert json.loads(moved.outcome) == {"address": con, "status": "active", "agency": B}
    assert moved.agency.code == A1 and account(w, con).agency.code == B
    with pytest.raises(NotFound):  # now B's: out of reach
        submit(w, w.adm, "retire", address=con)
    with pytest.raises(Conflict, match="already belongs to"):
        submit(w, w.adm, "transfer", address=hoa, agency=A)
    with pytest.raises(NotFound):
        submit(w, w.adm, "transfer", address=hoa, agency="000.00.99.H62")

    reset = approve(w, submit(w, w.adm, "reset_password", address=hoa).id)
    assert json.loads(reset.outcome) == {"address": hoa} and reset.credentials is not None
    [line] = handover(w, w.adm, reset.id)
    assert line["address"] == hoa and passwords.verify(line["initial_password"], account(w, hoa).password_hash)
    assert g.sync().failed == 0 and g.slapd_bind_ok(hoa.split("@")[0], line["initial_password"])

    retired = approve(w, submit(w, w.adm, "retire", address=hoa).id)
    assert json.loads(retired.outcome)["status"] == "retired" and account(w, hoa).status == "retired"
    g.sync()
    assert g.entry(hoa.split("@")[0])["govmailStatus"] == ["retired"]
    assert [a.actor for a in audits(w, "account.suspend")] == [w.addr["prov"]]
    assert [(a.actor, a.source) for a in audits(w, "account.transfer")] == [(w.addr["prov"], "portal")]


def test_scope_roles_and_tokens(w):
    g = w.g
    # An API token of B asks; A's administrator sees nothing of it, whatever id is tried.
    with g.session() as s, s.begin():
        _, secret = roles.create_token(s, w.prov, B, "HR system")
    with g.session() as s, s.begin():
        token = roles.principal_for_token(s, secret)
    theirs = submit(w, token, "suspend", address=w.addr["b"])
    assert (theirs.source, theirs.requested_by, theirs.requester_token_id, theirs.requester_account_id) == (
        "api", "token:HR system", token.token_id, None)
    assert [(a.actor, a.source) for a in audits(w, "request.submit")] == [("token:HR system", "api")]
    mine = submit(w, w.adm, "reset_password", address=w.addr["a1"])
    with g.session() as s:
        for request_id in (theirs.id, 9999):
            with pytest.raises(NotFound, match=f"no request '#{request_id}'"):
                requests.get_request(s, w.adm, request_id)
        assert [r.id for r in requests.list_requests(s, w.adm)] == [mine.id]
        assert requests.count_requests(s, w.adm) == 1 and requests.count_requests(s, w.prov) == 2
        assert [r.id for r in requests.list_requests(s, w.prov)] == [mine.id, theirs.id]
        assert [r.id for r in requests.list_requests(s, token, status="pending")] == [theirs.id]
        assert requests.list_requests(s, w.off) == [] and requests.count_requests(s, w.adm, status="applied") == 0
        with pytest.raises(InvalidInput, match="status 'done'"):
            requests.list_requests(s, w.prov, status="done")
    with pytest.raises(NotFound):
        submit(w, w.adm, "suspend", address=w.addr["b"])
    with pytest.raises(NotFound):  # an official's own account is not enough
        submit(w, w.off, "reset_password", address=w.addr["off"])
    with pytest.raises(NotFound):
        submit(w, w.off, "create", agency=A, rows=[{"line": 2, "full_name": "Nguyễn Văn An"}])
    # Only province administrators decide.
    for principal in (w.adm, token):
        with pytest.raises(Forbidden):
            approve(w, mine.id, principal)
        with pytest.raises(Forbidden):
            run(w, requests.reject, g.settings, principal, mine.id, "no")
    with pytest.raises(NotFound):
        approve(w, 9999)
    # The token's handover file is the token's own.
    done = approve(w, submit(w, token, "reset_password", address=w.addr["b"]).id)
    with pytest.raises(NotFound):
        run(w, requests.credentials_csv, w.box, w.adm, done.id)
    assert handover(w, token, done.id)[0]["address"] == w.addr["b"]
    assert notes(w)[-1].subject.startswith(f"Yêu cầu #{done.id}")  # to the province: a token has no mailbox


def test_reject_needs_a_reason_and_tells_the_requester(w):
    req = submit(w, w.adm, "retire", address=w.addr["off"])
    for reason in ("", "   "):
        with pytest.raises(InvalidInput, match="reason: is required"):
            run(w, requests.reject, w.g.settings, w.prov, req.id, reason)
    done = run(w, requests.reject, w.g.settings, w.prov, req.id, "  Cán bộ chưa nghỉ hưu  ")
    assert (done.status, done.reason, done.decided_by, done.outcome) == (
        "rejected", "Cán bộ chưa nghỉ hưu", w.addr["prov"], None)
    assert account(w, w.addr["off"]).status == "active"
    with pytest.raises(Conflict, match=f"request #{req.id} is already rejected"):
        approve(w, req.id)
    note = notes(w)[-1]
    assert json.loads(note.recipients) == [w.addr["adm"]] and "Lý do: Cán bộ chưa nghỉ hưu" in note.body
    assert [(a.actor, json.loads(a.after)["reason"]) for a in audits(w, "request.reject")] == [
        (w.addr["prov"], "Cán bộ chưa nghỉ hưu")]
    view = requests.request_view(done)
    assert (view["status"], view["reason"], view["details"]) == (
        "rejected", "Cán bộ chưa nghỉ hưu", {"address": w.addr["off"]})


def _counts(w):  # type: ignore[no-untyped-def]
    with w.g.session() as s:
        return [s.scalar(select(func.count()).select_from(table))
                for table in (Account, IssuedAddress, OutboxEntry, AuditEntry)]


def test_a_request_the_engine_refuses_fails_and_writes_nothing(w, monkeypatch):
    g = w.g
    hoa = w.addr["off"]
    req = submit(w, w.adm, "suspend", address=hoa)
    with g.session() as s, s.begin():  # meanwhile, on the command line
        accounts.suspend(s, g.settings, g.actor, hoa)
    before = _counts(w)
    failed = approve(w, req.id)
    assert failed.status == "failed" and "is suspended; cannot suspend" in json.loads(failed.outcome)["error"]
    assert _counts(w)[:3] == before[:3] and _counts(w)[3] == before[3] + 1  # only request.approve
    assert "không thực hiện được" in notes(w)[-1].body and "cannot suspend" in notes(w)[-1].body

    # A create that breaks after its first account: the savepoint takes that account back too.
    create = submit(w, w.adm, "create", agency=A, rows=[{"line": 2, "full_name": "Nguyễn Văn An"},
                                                        {"line": 3, "full_name": "Trần Thị Bình"}])
    real, calls = accounts.create_account, []

    def flaky(*args, **kw):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise Conflict("employee_code 'X' already belongs to someone (simulated)")
        return real(*args, **kw)

    monkeypatch.setattr(accounts, "create_account", flaky)
    before = _counts(w)
    failed = approve(w, create.id)
    assert failed.status == "failed" and "simulated" in json.loads(failed.outcome)["error"]
    assert failed.credentials is None and len(calls) == 2
    assert _counts(w)[:3] == before[:3]
    with g.session() as s:
        assert s.scalar(select(Account).where(Account.local_part == "annv")) is None
        assert s.get(ChangeRequest, create.id).status == "failed"

    # A file that no longer applies (its agency was closed meanwhile) fails naming the line.
    monkeypatch.setattr(accounts, "create_account", real)
    later = submit(w, w.adm, "create", agency=A, rows=[{"line": 7, "full_name": "Lê Văn Cường", "agency": A1}])
    with g.session() as s, s.begin():
        closed = agencies.parse_fields(g.settings, {"code": A1, "status": "inactive"})
        agencies.update_agency(s, g.settings, g.actor, closed)
    failed = approve(w, later.id)
    assert failed.status == "failed" and "line 7: agency" in json.loads(failed.outcome)["error"]


def test_an_auto_approve_rule_of_a_parent_applies_at_once(w):
    with pytest.raises(Forbidden):
        run(w, requests.set_auto_approve, w.adm, A, "reset_password", True)
    with pytest.raises(InvalidInput, match="kind"):
        run(w, requests.set_auto_approve, w.prov, A, "purge", True)
    run(w, requests.set_auto_approve, w.prov, A, "reset_password", True)
    run(w, requests.set_auto_approve, w.prov, A, "reset_password", True)  # idempotent
    run(w, requests.set_auto_approve, w.prov, B, "suspend", True)
    with w.g.session() as s:
        assert [(r.agency.code, r.kind) for r in requests.auto_approve_rules(s)] == [
            (A, "reset_password"), (B, "suspend")]
    assert len(audits(w, "auto_approve.enable")) == 2

    req = submit(w, w.adm, "reset_password", address=w.addr["a1"])  # A1 is below A
    assert (req.status, req.decided_by) == ("applied", f"auto-approve rule of {A}")
    [line] = handover(w, w.adm, req.id)
    assert passwords.verify(line["initial_password"], account(w, w.addr["a1"]).password_hash)
    assert [a.actor for a in audits(w, "account.reset_password")] == [f"auto-approve rule of {A}"]
    assert [a.source for a in audits(w, "request.approve")] == ["portal"]
    assert submit(w, w.adm, "suspend", address=w.addr["a1"]).status == "pending"  # other kinds wait

    run(w, requests.set_auto_approve, w.prov, A, "reset_password", False)
    assert submit(w, w.adm, "reset_password", address=w.addr["off"]).status == "pending"
    assert len(audits(w, "auto_approve.disable")) == 1


@pytest.fixture
def relay():  # type: ignore[no-untyped-def]
    server = Downstream().start()
    yield server
    server.stop()


def with_relay(settings, port):  # type: ignore[no-untyped-def]
    return dataclasses.replace(
        settings,
        gateway=dataclasses.replace(settings.gateway, delivery="relay", relay_host="127.0.0.1", relay_port=port,
                                    relay_starttls=False, relay_timeout=5),
        portal=dataclasses.replace(settings.portal, public_url="https://portal.vinhphuc.gov.vn/",
                                   notify_sender="govmail@vinhphuc.gov.vn"))


def test_notifications_go_out_through_a_real_smtp_server(gm, relay):
    settings = with_relay(gm.settings, relay.port)
    w = build_world(dataclasses.replace(gm, settings=settings))
    g = w.g
    req = approve(w, submit(w, w.adm, "reset_password", address=w.addr["off"]).id)
    [line] = handover(w, w.adm, req.id)
    assert notify.flush(g.factory, settings) == 2
    assert notify.flush(g.factory, settings) == 0  # once
    got = relay.messages
    assert [(sender, recipients) for sender, recipients, _ in got] == [
        ("govmail@vinhphuc.gov.vn", [w.addr["prov"]]), ("govmail@vinhphuc.gov.vn", [w.addr["adm"]])]
    for _, _, content in got:
        mail = message_from_bytes(content)
        body = mail.get_payload(decode=True).decode("utf-8")
        assert mail["Auto-Submitted"] == "auto-generated" and mail["Message-ID"] and mail["Date"]
        assert f"https://portal.vinhphuc.gov.vn/requests/{req.id}" in body and f"#{req.id}" in body
        assert body.index("Yêu cầu số") < body.index(f"Request #{req.id}") and A in body
        assert line["initial_password"] not in body and line["initial_password"] not in str(mail["Subject"])
    assert all(n.sent_at is not None and n.attempts == 0 for n in notes(w))
    with g.session() as s:
        assert notify.pending_count(s) == 0


def test_an_undeliverable_notification_stays_pending(w):
    g = w.g
    submit(w, w.adm, "suspend", address=w.addr["off"])
    down = with_relay(g.settings, listener_port())
    assert notify.flush(g.factory, down) == 0
    [note] = notes(w)
    assert (note.sent_at, note.attempts) == (None, 1) and "cannot send through 127.0.0.1" in note.last_error
    with g.session() as s:
        assert notify.pending_count(s) == 1
    with g.session() as s, s.begin():
        assert notify.queue(s, [], "x", "y") is None
        notify.queue(s, [" Cntt@Vinhphuc.gov.vn ", "cntt@vinhphuc.gov.vn"], "s", "b")
    assert json.loads(notes(w)[-1].recipients) == ["cntt@vinhphuc.gov.vn"]


def test_a_certificate_is_checked_at_once_and_bound_on_approval(gm, pki, tmp_path):
    w = build_world(with_trust(gm, pki, tmp_path / "trust"))
    hoa = w.addr["off"]
    with pytest.raises(InvalidInput, match="neither PEM text nor base64 DER"):
        submit(w, w.adm, "cert_bind", address=hoa, certificate="not a certificate!")
    with pytest.raises(InvalidInput, match="not a readable X.509 certificate"):
        submit(w, w.adm, "cert_bind", address=hoa, certificate="aGVsbG8=")
    leaf = pki.issue(cn="Lê Thị Hoa", san_email=hoa)
    req = submit(w, w.adm, "cert_bind", address=hoa, certificate=leaf.public_bytes(Encoding.PEM).decode())
    view = requests.request_view(req)
    assert "certificate" not in view["details"] and view["details"]["subject"].startswith("CN=Lê Thị Hoa")
    done = approve(w, req.id)
    assert done.status == "applied", done.outcome
    outcome = json.loads(done.outcome)
    with w.g.session() as s:
        cert = s.scalar(select(Certificate).where(Certificate.fingerprint == outcome["fingerprint"]))
        assert cert.account.address == hoa and cert.status == "valid"
    with pytest.raises(Conflict, match="already bound"):
        submit(w, w.adm, "cert_bind", address=hoa, certificate=leaf.public_bytes(Encoding.PEM).decode())
