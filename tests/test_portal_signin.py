"""Portal sign-in over HTTP: password then TOTP, enrolment, lockout, replay, CSRF, session expiry,
cookie flags, the first-password rule and the language switch (each on SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pyotp
from sqlalchemy import select, update

from portal.app import create_app
from provisioning import accounts, roles
from provisioning.accounts import NewAccount
from provisioning.models import PortalSession, utcnow
from tests.portal_fixtures import A, PortalWorld, csrf_of


def login(client, address: str, password: str):  # type: ignore[no-untyped-def]
    page = client.get("/login")
    return client.post("/login", data={"login": address, "password": password, "csrf": csrf_of(page.text)})


def test_official_signs_in_with_a_password_and_lands_on_their_account(pw: PortalWorld) -> None:
    client = pw.client()
    assert client.get("/me").headers["location"] == "/login"
    response = login(client, pw.people["official_a"].address, pw.people["official_a"].password)
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert client.get("/").headers["location"] == "/me"
    page = client.get("/me")
    assert page.status_code == 200 and "Lê Thị Tuyết" in page.text and "Đổi mật khẩu" in page.text


def test_administrator_needs_the_code_and_the_session_id_changes(pw: PortalWorld) -> None:
    admin = pw.people["admin_a"]
    client = pw.client()
    response = login(client, admin.address, admin.password)
    assert response.headers["location"] == "/login/totp"
    first_cookie = client.cookies["govmail_session"]
    assert client.get("/agencies/" + A).headers["location"] == "/login/totp"  # no page before the code
    page = client.get("/login/totp")
    wrong = client.post("/login/totp", data={"code": "000000" if admin.fresh_code() != "000000" else "111111",
                                             "csrf": csrf_of(page.text)})
    assert wrong.status_code == 401 and "Mã không đúng" in wrong.text
    response = client.post("/login/totp", data={"code": admin.fresh_code(), "csrf": csrf_of(page.text)})
    assert response.status_code == 303
    assert client.cookies["govmail_session"] != first_cookie
    assert client.get("/agencies/" + A).status_code == 200


def test_a_code_is_accepted_once(pw: PortalWorld) -> None:
    admin = pw.people["admin_a"]
    code = admin.fresh_code()
    first, second = pw.client(), pw.client()
    for client in (first, second):
        assert login(client, admin.address, admin.password).headers["location"] == "/login/totp"
    assert first.post("/login/totp", data={"code": code, "csrf": pw.csrf(first, "/login/totp")}).status_code == 303
    replay = second.post("/login/totp", data={"code": code, "csrf": pw.csrf(second, "/login/totp")})
    assert replay.status_code == 401
    assert second.get("/me").headers["location"] == "/login/totp"


def test_lockout_after_repeated_failures_even_with_the_right_password(pw: PortalWorld) -> None:
    official = pw.people["official_b"]
    client = pw.client()
    limit = pw.settings.portal.signin_failures_per_account
    for _ in range(limit):
        assert login(client, official.address, "wrong password").status_code == 401
    locked = login(client, official.address, official.password)
    assert locked.status_code == 429 and "15 phút" in locked.text
    assert "govmail_session" not in client.cookies
    # another official is not affected (the client limit is higher)
    assert login(pw.client(), pw.people["official_a"].address, pw.people["official_a"].password).status_code == 303


def test_wrong_codes_lock_the_second_step_too(pw: PortalWorld) -> None:
    admin = pw.people["admin_b"]
    client = pw.client()
    login(client, admin.address, admin.password)
    csrf = pw.csrf(client, "/login/totp")
    for _ in range(pw.settings.portal.signin_failures_per_account):
        assert client.post("/login/totp", data={"code": "12345x", "csrf": csrf}).status_code == 401
    assert client.post("/login/totp", data={"code": admin.fresh_code(), "csrf": csrf}).status_code == 429


def test_recovery_code_signs_in_once(pw: PortalWorld) -> None:
    person = pw.person("helper", "Đỗ Văn Hưng", A, totp=True)
    client = pw.client()
    login(client, person.address, person.password)
    # a fresh enrolment through the pages gives the codes
    # (the fixture enrolled through the engine; enrol again after turning it off)
    client.post("/login/totp", data={"code": person.fresh_code(), "csrf": pw.csrf(client, "/login/totp")})
    assert client.post("/me/totp/remove", data={"csrf": pw.csrf(client)}).status_code == 303
    page = client.get("/enrol")
    secret = page.text.split('<code id="secret">')[1].split("<")[0]
    person.totp_secret, person.last_step = secret, 0
    done = client.post("/enrol", data={"code": person.fresh_code(), "csrf": csrf_of(page.text)})
    assert done.status_code == 200 and "<svg" in page.text
    codes = [part.split("</code>")[0] for part in done.text.split("<li><code>")[1:]]
    assert len(codes) == pw.settings.portal.recovery_codes
    for attempt, expected in ((1, 303), (2, 401)):
        other = pw.client()
        login(other, person.address, person.password)
        response = other.post("/login/totp", data={"code": codes[0].upper(), "csrf": pw.csrf(other, "/login/totp")})
        assert response.status_code == expected, attempt


def test_a_new_administrator_must_enrol_before_anything_else(pw: PortalWorld) -> None:
    official = pw.people["official_a"]
    with pw.gm.session() as s, s.begin():
        roles.grant(s, pw.gm.actor, official.address, A)
    client = pw.client()
    assert login(client, official.address, official.password).headers["location"] == "/enrol"
    assert client.get("/requests").headers["location"] == "/enrol"
    page = client.get("/enrol")
    assert "Quản trị viên bắt buộc" in page.text
    secret = page.text.split('<code id="secret">')[1].split("<")[0]
    wrong = client.post("/enrol", data={"code": "000000", "csrf": csrf_of(page.text)})
    assert wrong.status_code == 400 and secret in wrong.text  # the same key, already scanned
    done = client.post("/enrol", data={"code": pyotp.TOTP(secret).now(), "csrf": csrf_of(page.text)})
    assert done.status_code == 200 and 'id="recovery-codes"' in done.text
    assert client.get("/requests").status_code == 200


def test_forms_without_the_session_token_are_refused(pw: PortalWorld) -> None:
    official, other = pw.client("official_a"), pw.client("official_b")
    data = {"current": pw.people["official_a"].password, "new": "cụm mật khẩu mới rất dài", "again": "cụm mật khẩu mới rất dài"}
    assert official.post("/me/password", data=data).status_code == 403
    assert official.post("/me/password", data={**data, "csrf": pw.csrf(other)}).status_code == 403
    assert official.post("/logout", data={"csrf": "forged"}).status_code == 403
    # the sign-in form has its own token (no session yet)
    anonymous = pw.client()
    response = anonymous.post("/login", data={"login": pw.people["official_a"].address,
                                              "password": pw.people["official_a"].password, "csrf": "forged"})
    assert response.status_code == 403 and "govmail_session" not in anonymous.cookies
    assert pw.gm.slapd is not None and official.post("/me/password", data={**data, "csrf": pw.csrf(official)}).status_code == 200


def test_sessions_expire_when_idle_and_after_the_maximum(pw: PortalWorld) -> None:
    client = pw.client("official_a")
    assert client.get("/me").status_code == 200
    idle = timedelta(minutes=pw.settings.portal.session_idle_minutes + 1)
    with pw.gm.session() as s, s.begin():
        s.execute(update(PortalSession).values(last_seen_at=utcnow() - idle))
    assert client.get("/me").headers["location"] == "/login?expired=1"
    assert "Phiên làm việc đã kết thúc" in client.get("/login?expired=1").text

    client = pw.client("official_a")
    with pw.gm.session() as s, s.begin():
        s.execute(update(PortalSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert client.get("/me").headers["location"] == "/login?expired=1"
    with pw.gm.session() as s:
        assert s.scalars(select(PortalSession)).all() == []


def test_signing_out_ends_the_session(pw: PortalWorld) -> None:
    client = pw.client("official_a")
    cookie = client.cookies["govmail_session"]
    assert client.post("/logout", data={"csrf": pw.csrf(client)}).headers["location"] == "/login"
    client.cookies.set("govmail_session", cookie)
    assert client.get("/me").headers["location"] == "/login?expired=1"


def test_suspending_the_account_ends_its_sessions(pw: PortalWorld) -> None:
    client = pw.client("official_a")
    with pw.gm.session() as s, s.begin():
        accounts.suspend(s, pw.settings, pw.gm.actor, pw.people["official_a"].address)
    assert client.get("/me").headers["location"].startswith("/login")
    assert login(pw.client(), pw.people["official_a"].address, pw.people["official_a"].password).status_code == 401


def test_cookies_are_secure_httponly_and_strict(pw: PortalWorld) -> None:
    settings = dataclasses.replace(pw.settings, portal=dataclasses.replace(pw.settings.portal, cookie_secure=True))
    from fastapi.testclient import TestClient

    client = TestClient(create_app(settings, pw.gm.factory), base_url="https://testserver", follow_redirects=False)
    page = client.get("/login")
    assert "secure" in page.headers["set-cookie"].lower()
    response = client.post("/login", data={"login": pw.people["official_a"].address,
                                           "password": pw.people["official_a"].password, "csrf": csrf_of(page.text)})
    cookie = [c for c in response.headers.get_list("set-cookie") if c.startswith("govmail_session=")][0].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


def test_an_initial_password_must_be_changed_first_and_the_directory_takes_the_new_one(pw: PortalWorld) -> None:
    with pw.gm.session() as s, s.begin():
        account, initial = accounts.create_account(s, pw.settings, pw.gm.actor,
                                                   NewAccount(agency=A, full_name="Vũ Thị Hoa"))
        address = account.address
    pw.gm.sync()
    client = pw.client()
    assert login(client, address, initial).status_code == 303
    assert client.get("/").headers["location"] == "/me"
    assert client.get("/agencies/" + A).headers["location"] == "/me"
    page = client.get("/me")
    assert 'id="must-change"' in page.text
    new = "hoa thích đọc sách buổi sáng"
    short = client.post("/me/password", data={"current": initial, "new": "ngắn", "again": "ngắn", "csrf": csrf_of(page.text)})
    assert short.status_code == 400
    done = client.post("/me/password", data={"current": initial, "new": new, "again": new, "csrf": csrf_of(page.text)})
    assert done.status_code == 200 and 'id="done"' in done.text
    assert pw.gm.slapd_bind_ok(address.split("@")[0], new)
    assert not pw.gm.slapd_bind_ok(address.split("@")[0], initial)


def test_language_switch_is_remembered(pw: PortalWorld) -> None:
    client = pw.client()
    assert "Đăng nhập" in client.get("/login").text
    assert ">Sign in<" in client.get("/login?lang=en").text
    assert ">Sign in<" in client.get("/login").text  # the cookie keeps it
