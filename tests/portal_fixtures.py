"""A small province for the portal tests, and the portal serving it (``pw``).

Agencies: the province, department A (SKHDT) with sub-unit A1, and department B (SNV). People: a
province administrator, A's administrator, B's administrator (all with TOTP enrolled through the
engine, a few minutes ago, so a code for now is fresh), and an official in A and one in B with
chosen passwords. ``pw.client(who)`` is a TestClient signed in as one of them; ``pw.serve()`` runs
the app under uvicorn on a free loopback port for the browser tests.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pyotp
import pytest
import uvicorn
from fastapi.testclient import TestClient

from directory.slapd import free_port
from portal.app import create_app
from provisioning import accounts, agencies, roles, secretbox, signin
from provisioning.accounts import NewAccount
from tests.conftest import Govmail

PROVINCE, A, A1, B = "000.00.00.H62", "000.00.15.H62", "000.15.01.H62", "000.00.16.H62"
PASSWORD = "một cụm mật khẩu dài 2025"


@dataclass
class Person:
    address: str
    password: str
    totp_secret: str | None = None
    last_step: int = 0  # a code is accepted once: sign-ins take the next unused 30-second step

    def fresh_code(self) -> str:
        """A code the portal has not seen: this step's, else the next one's (accepted as clock skew),
        else wait for the step after."""
        step = int(time.time()) // 30
        if step <= self.last_step:
            step = self.last_step + 1
        while step > int(time.time()) // 30 + 1:
            time.sleep(1)
        self.last_step = step
        assert self.totp_secret is not None
        return pyotp.TOTP(self.totp_secret).at(step * 30)

    @property
    def local_part(self) -> str:
        return self.address.split("@")[0]

    def code(self, at: datetime | None = None) -> str:
        assert self.totp_secret is not None
        return pyotp.TOTP(self.totp_secret).at(at or datetime.now(timezone.utc))


@dataclass
class PortalWorld:
    gm: Govmail
    people: dict[str, Person] = field(default_factory=dict)

    @property
    def settings(self):  # type: ignore[no-untyped-def]
        return self.gm.settings

    @property
    def app(self):  # type: ignore[no-untyped-def]
        if "_app" not in self.__dict__:
            self.__dict__["_app"] = create_app(self.settings, self.gm.factory)
        return self.__dict__["_app"]

    def client(self, who: str | None = None, through_form: bool = False) -> TestClient:
        """A browser-like client, signed in as ``who`` when given: through the sign-in forms
        (password, then code), or with a session opened by the engine (quicker: each code can be
        used once, so form sign-ins of one person wait for the next 30-second step)."""
        client = TestClient(self.app, follow_redirects=False)
        if who is not None and through_form:
            self.sign_in(client, self.people[who])
        elif who is not None:
            with self.gm.session() as s, s.begin():
                account = accounts.get_account(s, self.people[who].address)
                cookie = signin.open_session(s, self.settings, account.id, "full", "testclient")
            client.cookies.set(signin.SESSION_COOKIE, cookie)
        return client

    def sign_in(self, client: TestClient, person: Person) -> None:
        page = client.get("/login")
        response = client.post("/login", data={"login": person.address, "password": person.password,
                                               "csrf": csrf_of(page.text)})
        assert response.status_code == 303, response.text
        if response.headers["location"] == "/login/totp":
            page = client.get("/login/totp")
            response = client.post("/login/totp", data={"code": person.fresh_code(), "csrf": csrf_of(page.text)})
            assert response.status_code == 303 and response.headers["location"] == "/", response.text

    def csrf(self, client: TestClient, path: str = "/me") -> str:
        return csrf_of(client.get(path).text)

    def agency(self, code: str, name: str, parent: str | None, short: str | None = None) -> None:
        with self.gm.session() as s, s.begin():
            agencies.add_agency(s, self.settings, self.gm.actor, agencies.parse_fields(self.settings, {
                "code": code, "name": name, "level": "province", "parent": parent, "short_name": short,
                "domain": "vinhphuc.gov.vn" if parent is None else None}))

    def person(self, key: str, name: str, agency: str, role_agency: str | None = None, province: bool = False,
               totp: bool = False) -> Person:
        with self.gm.session() as s, s.begin():
            account, _ = accounts.create_account(s, self.settings, self.gm.actor,
                                                 NewAccount(agency=agency, full_name=name), PASSWORD)
            person = Person(account.address, PASSWORD)
            if province or role_agency:
                roles.grant(s, self.gm.actor, account.address, None if province else role_agency)
            if totp or province or role_agency:
                box = secretbox.load(self.settings)
                earlier = datetime.now(timezone.utc) - timedelta(minutes=3)
                secret = signin.start_enrolment(s, self.settings, box, account.id)
                person.totp_secret = secret
                signin.confirm_enrolment(s, self.settings, box, account.id, person.code(earlier), now=earlier)
        self.people[key] = person
        return person

    def serve(self) -> Iterator[str]:
        """Run the app on a free loopback port, with production's Secure cookies (Chromium keeps
        them for http://127.0.0.1, a secure context); yields its base URL."""
        port = free_port()
        secure = dataclasses.replace(self.settings, portal=dataclasses.replace(self.settings.portal, cookie_secure=True))
        server = uvicorn.Server(uvicorn.Config(create_app(secure, self.gm.factory), host="127.0.0.1", port=port,
                                               log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(10)


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]


@pytest.fixture
def pw(gm: Govmail) -> PortalWorld:
    """The province with its people; cookies without Secure, as TestClient speaks plain HTTP."""
    settings = dataclasses.replace(gm.settings, portal=dataclasses.replace(gm.settings.portal, cookie_secure=False))
    world = PortalWorld(dataclasses.replace(gm, settings=settings))
    world.agency(PROVINCE, "UBND tỉnh Vĩnh Phúc", None)
    world.agency(A, "Sở Kế hoạch và Đầu tư", PROVINCE, "skhdt")
    world.agency(A1, "Phòng Đăng ký kinh doanh", A, "dkkd")
    world.agency(B, "Sở Nội vụ", PROVINCE, "snv")
    world.person("province", "Hoàng Văn Tỉnh", PROVINCE, province=True)
    world.person("admin_a", "Nguyễn Thị Lâm", A, role_agency=A)
    world.person("admin_b", "Trần Văn Bình", B, role_agency=B)
    world.person("official_a", "Lê Thị Tuyết", A1)
    world.person("official_b", "Phạm Văn Đức", B)
    return world

