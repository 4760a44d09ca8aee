"""Requests through the portal and the API, end to end over HTTP: submit, approve or reject,
notifications to a real SMTP server, the one-time handover file, auto-approval, bad uploads and
forms; the OpenAPI document; the interface text in both languages; the portal commands."""

from __future__ import annotations

import dataclasses
import email
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from directory.slapd import free_port
from provisioning import passwords, roles
from provisioning.accounts import get_account
from tests.gateway_fixtures import Downstream
from tests.portal_fixtures import A, A1, PortalWorld, csrf_of

TEMPLATES = Path(__file__).parent.parent / "portal" / "templates"


@pytest.fixture
def relay(pw: PortalWorld):  # type: ignore[no-untyped-def]
    """Notifications go to a real SMTP server."""
    server = Downstream().start()
    gateway = dataclasses.replace(pw.settings.gateway, delivery="relay", relay_host="127.0.0.1",
                                  relay_port=server.port, relay_starttls=False)
    pw.gm = dataclasses.replace(pw.gm, settings=dataclasses.replace(pw.settings, gateway=gateway))
    yield server
    server.stop()


def token_for(pw: PortalWorld, who: str, agency: str) -> str:
    with pw.gm.session() as s, s.begin():
        principal = roles.principal_for_account(s, get_account(s, pw.people[who].address))
        return roles.create_token(s, principal, agency, "HR")[1]


def test_api_request_approved_in_the_portal_and_handed_over_once(pw: PortalWorld, relay: Downstream) -> None:
    api = pw.client()
    headers = {"Authorization": f"Bearer {token_for(pw, 'admin_a', A)}"}
    made = api.post("/api/v1/requests", headers=headers, json={"kind": "create", "agency": A1, "rows": [
        {"full_name": "Bùi Thị Hằng", "title": "Chuyên viên", "employee_code": "H62-7001"},
        {"full_name": "Đinh Công Sơn", "employee_code": "H62-7002"}]})
    assert made.status_code == 201, made.text
    request_id = made.json()["id"]
    assert made.json()["status"] == "pending" and made.json()["agency"] == A1
    # the province administrators were told
    assert any(pw.people["province"].address in rcpt for _, rcpt, _ in relay.messages)

    province = pw.client("province")
    page = province.get(f"/requests/{request_id}")
    assert "Bùi Thị Hằng" in page.text and 'id="approve"' in page.text
    assert province.post(f"/requests/{request_id}/approve", data={"csrf": csrf_of(page.text)}).status_code == 303
    done = api.get(f"/api/v1/requests/{request_id}", headers=headers).json()
    assert done["status"] == "applied" and done["decided_by"] == pw.people["province"].address
    assert [c["address"] for c in done["outcome"]["created"]] == ["hangbt@vinhphuc.gov.vn", "sondc@vinhphuc.gov.vn"]
    assert done["credentials_available"] is True
    assert pw.gm.entry("hangbt") is not None  # published after the approval

    # only the token that asked gets the file, once
    other = {"Authorization": f"Bearer {token_for(pw, 'admin_a', A)}"}
    assert api.post(f"/api/v1/requests/{request_id}/credentials", headers=other).status_code == 404
    handover = api.post(f"/api/v1/requests/{request_id}/credentials", headers=headers)
    assert handover.status_code == 200 and handover.headers["content-type"].startswith("text/csv")
    line = [row for row in handover.content.decode("utf-8-sig").splitlines() if row.startswith("hangbt@")][0]
    with pw.gm.session() as s:
        assert passwords.verify(line.split(",")[-1], get_account(s, "hangbt").password_hash)
    again = api.post(f"/api/v1/requests/{request_id}/credentials", headers=headers)
    assert again.status_code == 409 and "already downloaded" in again.json()["message"]
    # no notification ever carries a password
    assert all(line.split(",")[-1].encode() not in raw for _, _, raw in relay.messages)


def test_rejection_reaches_the_requester_with_the_reason(pw: PortalWorld, relay: Downstream) -> None:
    admin = pw.client("admin_a")
    response = admin.post("/requests", data={"kind": "retire", "address": pw.people["official_a"].address,
                                             "csrf": pw.csrf(admin)})
    assert response.status_code == 303
    request_id = int(response.headers["location"].split("/")[2].split("?")[0])
    province = pw.client("province")
    csrf = pw.csrf(province, f"/requests/{request_id}")
    assert province.post(f"/requests/{request_id}/reject", data={"reason": "", "csrf": csrf}).status_code == 400
    assert province.post(f"/requests/{request_id}/reject",
                         data={"reason": "Chưa có quyết định nghỉ hưu", "csrf": csrf}).status_code == 303
    page = admin.get(f"/requests/{request_id}?lang=en")
    assert 'id="status" class="status-rejected">rejected' in page.text and "Chưa có quyết định nghỉ hưu" in page.text
    deadline = time.monotonic() + 5  # sent after the response, in the background
    while not any(pw.people["admin_a"].address in rcpt for _, rcpt, _ in relay.messages):
        assert time.monotonic() < deadline, relay.messages
        time.sleep(0.05)
    raw = [m for _, rcpt, m in relay.messages if pw.people["admin_a"].address in rcpt][-1]
    body = email.message_from_bytes(raw).get_payload(decode=True).decode("utf-8")
    assert f"#{request_id}" in body and "Chưa có quyết định nghỉ hưu" in body
    with pw.gm.session() as s:
        assert get_account(s, pw.people["official_a"].address).status == "active"


def test_an_upload_with_bad_lines_shows_them_and_cannot_be_submitted(pw: PortalWorld) -> None:
    admin = pw.client("admin_a")
    csrf = pw.csrf(admin, "/requests/new")
    data = "Họ và tên,Mã cán bộ\nNguyễn Văn Hùng,H62-1\nNguyễn Văn 2,H62-2\nTrần Thị Mai,H62-1\n".encode("utf-8")
    page = admin.post("/requests/upload", data={"agency": A, "csrf": csrf},
                      files={"file": ("nhan-su.csv", data, "text/csv")})
    assert page.status_code == 200
    assert 'class="action-error"' in page.text and 'class="action-conflict"' in page.text
    assert 'id="submit"' not in page.text
    empty = admin.post("/requests/upload", data={"agency": A, "csrf": csrf}, files={"file": ("x.csv", b"", "text/csv")})
    assert empty.status_code == 400 and 'id="error"' in empty.text
    form = admin.post("/requests", data={"kind": "create", "agency": A, "full_name": "Lê 3 Sai", "title": "Văn thư",
                                         "csrf": csrf})
    assert form.status_code == 400 and 'value="Văn thư"' in form.text  # what was typed is kept


def test_auto_approved_password_reset_for_an_agency_below(pw: PortalWorld) -> None:
    province = pw.client("province")
    response = province.post("/admin/auto-approve", data={"agency": A, "kind": "reset_password", "enabled": "true",
                                                          "csrf": pw.csrf(province, "/admin")})
    assert response.status_code == 303
    admin = pw.client("admin_a")
    response = admin.post("/requests", data={"kind": "reset_password", "address": pw.people["official_a"].address,
                                             "csrf": pw.csrf(admin)})
    page = admin.get(response.headers["location"] + "&lang=en")
    assert ">applied<" in page.text and "auto-approve rule of " + A in page.text
    handover = admin.post(response.headers["location"].split("?")[0] + "/credentials", data={"csrf": csrf_of(page.text)})
    initial = handover.text.strip().splitlines()[-1].split(",")[-1]
    with pw.gm.session() as s:
        account = get_account(s, pw.people["official_a"].address)
        assert passwords.verify(initial, account.password_hash) and account.must_change_password


def test_openapi_document_describes_the_api(pw: PortalWorld) -> None:
    doc = pw.client().get("/api/v1/openapi.json").json()
    assert sorted(doc["paths"]) == sorted([
        "/api/v1/agencies/{code}", "/api/v1/agencies/{code}/accounts", "/api/v1/accounts/{address}",
        "/api/v1/requests", "/api/v1/requests/{request_id}", "/api/v1/requests/{request_id}/credentials"])
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert not any(p.startswith("/requests") or p.startswith("/login") for p in doc["paths"])


def test_every_interface_text_has_its_vietnamese() -> None:
    from portal.i18n import VI

    pattern = re.compile(r"""_\(\s*(["'])(.+?)\1\s*[,)]""")
    texts = {m.group(2) for f in TEMPLATES.glob("*.html") for m in pattern.finditer(f.read_text(encoding="utf-8"))}
    for source in (Path(__file__).parent.parent / "portal").glob("*.py"):
        texts |= {m.group(2) for m in pattern.finditer(source.read_text(encoding="utf-8"))}
    assert len(texts) > 100
    assert sorted(t for t in texts if t not in VI) == []


def test_portal_commands(pw: PortalWorld) -> None:
    gm = pw.gm
    official = pw.people["official_b"].address
    assert gm.cli("portal", "grant", official, "--agency", A1).exit_code == 0
    listed = json.loads(gm.cli("portal", "roles", "--format", "json").output)
    assert {"address": official, "role": "agency_admin", "agency": A1} in [
        {k: r[k] for k in ("address", "role", "agency")} for r in listed]
    again = gm.cli("portal", "grant", official, "--agency", A1)
    assert again.exit_code == 1 and "already administrator of" in again.output
    assert gm.cli("portal", "revoke", official, "--agency", A1).exit_code == 0
    made = json.loads(gm.cli("portal", "token", "--agency", A, "--name", "HR", "--format", "json").output)
    assert made["token"].startswith("gmt_")
    assert pw.client().get(f"/api/v1/agencies/{A}", headers={"Authorization": f"Bearer {made['token']}"}).status_code == 200
    assert gm.cli("portal", "grant", "nobody@vinhphuc.gov.vn").exit_code == 1


def test_a_lost_phone_is_reset_and_the_administrator_enrols_again(pw: PortalWorld) -> None:
    admin = pw.client("admin_a")
    assert admin.get("/requests").status_code == 200
    assert pw.gm.cli("portal", "reset-totp", pw.people["admin_a"].address).exit_code == 0
    assert admin.get("/requests").headers["location"].startswith("/login")  # sessions ended
    page = admin.get("/login")
    response = admin.post("/login", data={"login": pw.people["admin_a"].address,
                                          "password": pw.people["admin_a"].password, "csrf": csrf_of(page.text)})
    assert response.headers["location"] == "/enrol"
    again = pw.gm.cli("portal", "reset-totp", pw.people["admin_a"].address)
    assert again.exit_code == 1 and "no TOTP" in again.output


def test_portal_run_serves_the_sign_in_page(pw: PortalWorld) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "cli", "--config", str(pw.gm.config_file), "portal", "run",
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login?lang=en", timeout=2) as response:
                    assert response.status == 200 and b"Sign in" in response.read()
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "govmail portal run did not answer"
                time.sleep(0.2)
    finally:
        server.terminate()
        output = server.communicate(timeout=10)[0].decode()
    assert server.returncode in (0, -15), output  # uvicorn re-raises SIGTERM once it has shut down


def test_doctor_checks_the_portal_key_and_administrators(pw: PortalWorld) -> None:
    def portal_check() -> dict[str, str]:
        rows = json.loads(pw.gm.cli("--format", "json", "doctor").stdout)
        return [r for r in rows if r["check"] == "portal"][0]

    assert portal_check()["status"] == "ok"
    assert pw.gm.cli("portal", "revoke", pw.people["province"].address).exit_code == 0
    assert portal_check() == {"check": "portal", "status": "warn", "detail": "no province administrator",
                              "fix": "govmail portal grant ADDRESS"}
    key = pw.settings.path(pw.settings.portal.secret_key_file)
    key.rename(key.with_name("moved"))
    check = portal_check()
    assert check["status"] == "fail" and "cannot be read" in check["detail"] and "backup" in check["fix"]


def test_bad_parameters_and_unknown_paths(pw: PortalWorld) -> None:
    admin = pw.client("admin_a")
    page = admin.get(f"/agencies/{A}/accounts?page=abc")
    assert page.status_code == 400 and "Giá trị không hợp lệ: page." in page.text
    assert admin.get(f"/agencies/{A}/accounts?status=deleted&lang=en").status_code == 400
    assert admin.get("/nowhere").status_code == 404
    api = pw.client().get("/api/v1/nowhere")
    assert api.status_code == 404 and api.json() == {"error": "not_found", "message": "Not found."}
    bad = pw.client().get(f"/api/v1/agencies/{A}/accounts?page=0",
                          headers={"Authorization": f"Bearer {token_for(pw, 'admin_a', A)}"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "page"]


def test_control_characters_are_refused_not_crashed_on(pw: PortalWorld) -> None:
    """schemathesis found that a NUL reached PostgreSQL (whose text cannot hold one): a 500."""
    anonymous = pw.client()
    page = anonymous.get("/login")
    response = anonymous.post("/login", data={"login": "lam\x00nt", "password": "x", "csrf": csrf_of(page.text)})
    assert response.status_code == 401
    admin = pw.client("admin_a")
    assert admin.get(f"/agencies/{A}/accounts?q=a%00b").status_code == 400
    assert admin.get("/accounts/lam%00nt").status_code == 404
    assert admin.get("/agencies/000.00.15%00").status_code == 404
    headers = {"Authorization": f"Bearer {token_for(pw, 'admin_a', A)}"}
    api = pw.client()
    assert api.post("/api/v1/requests", headers=headers, json={"kind": "suspend", "address": "\x00"}).status_code == 404
    made = api.post("/api/v1/requests", headers=headers, json={"kind": "retire", "address": pw.people["official_a"].address})
    province = pw.client("province")
    rejected = province.post(f"/requests/{made.json()['id']}/reject",
                             data={"reason": "không\x00", "csrf": pw.csrf(province)})
    assert rejected.status_code == 400
