"""The authorisation matrix: every page and API route, for every role, including an agency's
administrator guessing the ids of another agency's accounts, requests and tokens. Refused means
404 (the same answer as for an object that does not exist) or, without a session, the sign-in page;
without a token, 401."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from provisioning import requests, roles, secretbox
from provisioning.accounts import get_account
from tests.portal_fixtures import A, A1, B, PROVINCE, PortalWorld, csrf_of

ROLES = ("anonymous", "official_a", "admin_a", "admin_b", "province")
OK, LOGIN, NO = "ok", "login", "refused"


@dataclass
class Objects:
    acct_a: str
    acct_b: str
    req_a: int
    req_b: int
    token_a: str
    token_b: str
    token_b_id: str


@pytest.fixture
def objects(pw: PortalWorld) -> Objects:
    box = secretbox.load(pw.settings)
    with pw.gm.session() as s, s.begin():
        admin_a = roles.principal_for_account(s, get_account(s, pw.people["admin_a"].address))
        admin_b = roles.principal_for_account(s, get_account(s, pw.people["admin_b"].address))
        req_a = requests.submit(s, pw.settings, box, admin_a, "reset_password", {"address": pw.people["official_a"].address})
        req_b = requests.submit(s, pw.settings, box, admin_b, "reset_password", {"address": pw.people["official_b"].address})
        _, token_a = roles.create_token(s, admin_a, A, "HR A")
        made_b, token_b = roles.create_token(s, admin_b, B, "HR B")
        return Objects(pw.people["official_a"].address, pw.people["official_b"].address, req_a.id, req_b.id,
                       token_a, token_b, made_b.id)


def outcome(response) -> str:  # type: ignore[no-untyped-def]
    if response.status_code == 303 and response.headers["location"].startswith("/login"):
        return LOGIN
    if response.status_code in (404, 403):
        return NO
    assert response.status_code < 400, (response.status_code, response.text[:300])
    return OK


def expect(who: str, table: dict[str, str]) -> str:
    return LOGIN if who == "anonymous" else table.get(who, NO)


ADMINS_A = {"admin_a": OK, "province": OK}
ADMINS_B = {"admin_b": OK, "province": OK}
ANY_ADMIN = {"admin_a": OK, "admin_b": OK, "province": OK}
EVERYONE = {"official_a": OK, **ANY_ADMIN}


def page_cases(o: Objects) -> list[tuple[str, dict[str, str]]]:
    return [
        ("/me", EVERYONE),
        (f"/agencies/{A}", ADMINS_A), (f"/agencies/{A1}", ADMINS_A), (f"/agencies/{B}", ADMINS_B),
        (f"/agencies/{PROVINCE}", {"province": OK}),
        (f"/agencies/{A}/accounts", ADMINS_A), (f"/agencies/{B}/accounts?q=a", ADMINS_B),
        (f"/agencies/{A}/stats", ADMINS_A), (f"/agencies/{B}/stats", ADMINS_B),
        (f"/accounts/{o.acct_a}", ADMINS_A), (f"/accounts/{o.acct_b}", ADMINS_B),
        ("/requests", ANY_ADMIN), ("/requests/new", ANY_ADMIN), ("/tokens", ANY_ADMIN),
        (f"/requests/{o.req_a}", ADMINS_A), (f"/requests/{o.req_b}", ADMINS_B), ("/requests/999999", {}),
        ("/admin", {"province": OK}),
        ("/agencies/999.99.99.Z99", {}), ("/accounts/nobody@vinhphuc.gov.vn", {}),
    ]


def test_every_page_for_every_role(pw: PortalWorld, objects: Objects) -> None:
    clients = {who: pw.client(None if who == "anonymous" else who) for who in ROLES}
    failures = []
    for path, table in page_cases(objects):
        for who, client in clients.items():
            got = outcome(client.get(path))
            want = expect(who, table)
            if who == "official_a" and path == f"/accounts/{objects.acct_a}":
                want = OK  # their own account: sent on to /me
            if got != want:
                failures.append(f"GET {path} as {who}: {got}, expected {want}")
    assert failures == []


def test_lists_show_only_the_agencies_administered(pw: PortalWorld, objects: Objects) -> None:
    page = pw.client("admin_a").get("/requests").text
    assert f'href="/requests/{objects.req_a}"' in page and f'href="/requests/{objects.req_b}"' not in page
    accounts = pw.client("admin_a").get(f"/agencies/{A}/accounts").text
    assert objects.acct_a in accounts and objects.acct_b not in accounts
    tokens = pw.client("admin_a").get("/tokens").text
    assert "HR A" in tokens and "HR B" not in tokens


def post_cases(o: Objects, pw: PortalWorld) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(path, form, who may) for every form; each is tried by everyone else and must change nothing."""
    return [
        (f"/requests/{o.req_a}/approve", {}, {"province": OK}),
        (f"/requests/{o.req_b}/reject", {"reason": "no"}, {"province": OK}),
        (f"/requests/{o.req_a}/credentials", {}, {}),  # nothing to download before approval
        ("/requests", {"kind": "suspend", "address": o.acct_b}, ADMINS_B),
        ("/requests", {"kind": "retire", "address": o.acct_a}, ADMINS_A),
        ("/requests", {"kind": "create", "agency": B, "full_name": "Ngô Văn Khách"}, ADMINS_B),
        ("/admin/roles", {"address": o.acct_a, "agency": A}, {"province": OK}),
        ("/admin/auto-approve", {"agency": A, "kind": "reset_password"}, {"province": OK}),
        ("/tokens", {"agency": B, "name": "guess"}, ADMINS_B),
        (f"/tokens/{o.token_b_id}/revoke", {}, ADMINS_B),
    ]


def test_every_form_for_every_role(pw: PortalWorld, objects: Objects) -> None:
    failures = []
    for path, form, table in post_cases(objects, pw):
        for who in ROLES:
            want = expect(who, table)
            if want == OK:
                continue  # allowed: done once below, it changes state
            client = pw.client(None if who == "anonymous" else who)
            csrf = csrf_of(client.get("/me").text) if who != "anonymous" else "x"
            got = outcome(client.post(path, data={**form, "csrf": csrf}))
            if got != want:
                failures.append(f"POST {path} as {who}: {got}, expected {want}")
    assert failures == []
    with pw.gm.session() as s:
        principal = roles.principal_for_account(s, get_account(s, pw.people["province"].address))
        assert requests.get_request(s, principal, objects.req_a).status == "pending"
        assert requests.get_request(s, principal, objects.req_b).status == "pending"
        assert [r.agency.code for r in roles.list_roles(s) if r.account.address == objects.acct_a] == []
        assert requests.auto_approve_rules(s) == []
        assert sorted(t.name for t in roles.list_tokens(s, principal) if t.revoked_at is None) == ["HR A", "HR B"]
        assert get_account(s, objects.acct_b).status == "active"
    # the allowed ones work
    province = pw.client("province")
    assert province.post(f"/requests/{objects.req_a}/approve", data={"csrf": pw.csrf(province)}).status_code == 303


def api_cases(o: Objects) -> list[tuple[str, str, dict | None, set[str]]]:
    """(method, path, JSON body, tokens that may)."""
    return [
        ("GET", f"/api/v1/agencies/{A}", None, {"a"}), ("GET", f"/api/v1/agencies/{A1}", None, {"a"}),
        ("GET", f"/api/v1/agencies/{B}", None, {"b"}), ("GET", f"/api/v1/agencies/{PROVINCE}", None, set()),
        ("GET", f"/api/v1/agencies/{A}/accounts?q=t", None, {"a"}), ("GET", f"/api/v1/agencies/{B}/accounts", None, {"b"}),
        ("GET", f"/api/v1/accounts/{o.acct_a}", None, {"a"}), ("GET", f"/api/v1/accounts/{o.acct_b}", None, {"b"}),
        ("GET", "/api/v1/requests", None, {"a", "b"}),
        ("GET", f"/api/v1/requests/{o.req_a}", None, {"a"}), ("GET", f"/api/v1/requests/{o.req_b}", None, {"b"}),
        ("GET", "/api/v1/requests/999999", None, set()),
        ("POST", "/api/v1/requests", {"kind": "suspend", "address": o.acct_b}, {"b"}),
        ("POST", f"/api/v1/requests/{o.req_a}/credentials", None, set()),
    ]


def test_every_api_route_for_every_token(pw: PortalWorld, objects: Objects) -> None:
    client = pw.client()
    tokens = {"a": objects.token_a, "b": objects.token_b}
    failures = []
    for method, path, body, allowed in api_cases(objects):
        response = client.request(method, path, json=body)
        if response.status_code != 401 or response.json()["error"] != "unauthorized":
            failures.append(f"{method} {path} without a token: {response.status_code}")
        bad = client.request(method, path, json=body, headers={"Authorization": "Bearer gmt_guessed"})
        if bad.status_code != 401:
            failures.append(f"{method} {path} with a made-up token: {bad.status_code}")
        for name, token in tokens.items():
            if name in allowed and method == "POST":
                continue  # changes state: the suspend is done once below
            response = client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
            want = 200 if name in allowed else 404
            if response.status_code != want:
                failures.append(f"{method} {path} with token {name}: {response.status_code}, expected {want}")
    assert failures == []
    listed = client.get("/api/v1/requests", headers={"Authorization": f"Bearer {objects.token_a}"}).json()
    assert [r["id"] for r in listed["items"]] == [objects.req_a]
    made = client.post("/api/v1/requests", json={"kind": "suspend", "address": objects.acct_b},
                       headers={"Authorization": f"Bearer {objects.token_b}"})
    assert made.status_code == 201 and made.json()["status"] == "pending" and made.json()["source"] == "api"


def test_a_revoked_token_is_refused(pw: PortalWorld, objects: Objects) -> None:
    admin_b = pw.client("admin_b")
    headers = {"Authorization": f"Bearer {objects.token_b}"}
    assert admin_b.get(f"/api/v1/agencies/{B}", headers=headers).status_code == 200
    assert admin_b.post(f"/tokens/{objects.token_b_id}/revoke", data={"csrf": pw.csrf(admin_b)}).status_code == 303
    assert pw.client().get(f"/api/v1/agencies/{B}", headers=headers).status_code == 401
