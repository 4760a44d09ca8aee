"""The main journeys in a real browser: Debian's Chromium, headless, driven by Playwright.

An agency administrator signs in with a TOTP code, uploads a staff list, checks the plan and submits;
the province administrator approves; the accounts are in the directory; the agency administrator
downloads the handover file once; an official signs in with the initial password and must choose
their own, which the directory then accepts.
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.portal_fixtures import A, Person, PortalWorld

CHROMIUM = "/usr/bin/chromium"
# Without the networking flags Chromium keeps calling Google's hosts, which this machine refuses.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
STAFF = ("Họ và tên,Chức vụ,Mã cán bộ,Điện thoại\n"
         "Nguyễn Văn Hùng,Giám đốc,H62-001501,0912345601\n"
         "Phạm Thị Trang,Phó Giám đốc,H62-001502,0983456702\n"
         "Đặng Thị Ngọc Ánh,Chuyên viên,H62-001503,\n")


@pytest.fixture(scope="module")  # not longer: Playwright's sync API holds an event loop on this thread
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:  # fail loudly: a skipped real-browser test is a failed test
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (./setup.sh test does)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield browser
        browser.close()


def sign_in(page: Page, base: str, person: Person, expect_code: bool, lang: str = "en") -> None:
    page.goto(f"{base}/login?lang={lang}")
    page.fill("#login", person.address)
    page.fill("#password", person.password)
    page.click("#signin")
    if expect_code:
        expect(page).to_have_url(f"{base}/login/totp")
        page.fill("#code", person.fresh_code())
        page.click("#verify")
    expect(page.locator("#logout")).to_be_visible()


def test_request_approve_and_first_sign_in(pw: PortalWorld, browser: Browser, tmp_path: Path) -> None:
    staff = tmp_path / "nhan-su.csv"
    staff.write_text(STAFF, encoding="utf-8")
    for base in pw.serve():
        # the agency administrator: password, code, then their agency's overview
        agency_admin = browser.new_context(accept_downloads=True)
        page = agency_admin.new_page()
        sign_in(page, base, pw.people["admin_a"], expect_code=True)
        expect(page).to_have_url(f"{base}/agencies/{A}")
        page.click("text=New accounts")
        page.set_input_files("#file", str(staff))
        page.click("#check")
        plan = page.locator("#plan tbody tr")
        expect(plan).to_have_count(3)
        expect(page.locator("#plan")).to_contain_text("hungnv@vinhphuc.gov.vn")
        expect(page.locator("#plan")).to_contain_text("Đặng Thị Ngọc Ánh")
        page.click("#submit")
        expect(page.locator("#status")).to_have_text("pending")
        request_url = page.url.split("?")[0]

        # the province administrator approves
        province = browser.new_context().new_page()
        sign_in(province, base, pw.people["province"], expect_code=True)
        province.click("#pending")
        province.click(f"a[href='{request_url[len(base):]}']")
        province.click("#approve")
        expect(province.locator("#status")).to_have_text("applied")
        expect(province.locator("#created")).to_contain_text("anhdtn@vinhphuc.gov.vn")

        # published to the directory
        for local in ("hungnv", "trangpt", "anhdtn"):
            entry = pw.gm.entry(local)
            assert entry is not None and entry["govmailStatus"] == ["active"]
        assert pw.gm.entry("hungnv")["cn"] == ["Nguyễn Văn Hùng"]  # type: ignore[index]

        # the requester downloads the handover file, once
        page.goto(request_url)
        with page.expect_download() as info:
            page.click("#credentials")
        handover = Path(info.value.path()).read_text(encoding="utf-8-sig")
        lines = {row["address"]: row for row in csv.DictReader(io.StringIO(handover))}
        assert sorted(lines) == ["anhdtn@vinhphuc.gov.vn", "hungnv@vinhphuc.gov.vn", "trangpt@vinhphuc.gov.vn"]
        page.goto(request_url)
        expect(page.locator("#credentials")).to_have_count(0)

        # an official's first sign-in: the initial password works once, then must be replaced
        official = browser.new_context().new_page()
        initial = lines["trangpt@vinhphuc.gov.vn"]["initial_password"]
        sign_in(official, base, Person("trangpt@vinhphuc.gov.vn", initial), expect_code=False)
        expect(official).to_have_url(f"{base}/me")
        expect(official.locator("#must-change")).to_be_visible()
        chosen = "xe buýt số 9 đến sở lúc bảy giờ"
        official.fill("#current", initial)
        official.fill("#new", chosen)
        official.fill("#again", chosen)
        official.click("#change")
        expect(official.locator("#done")).to_be_visible()
        expect(official.locator("#must-change")).to_have_count(0)
        assert pw.gm.slapd_bind_ok("trangpt", chosen)
        assert not pw.gm.slapd_bind_ok("trangpt", initial)


def test_search_pages_through_an_agency_in_vietnamese(pw: PortalWorld, browser: Browser) -> None:
    from provisioning import accounts
    from provisioning.accounts import NewAccount

    families = ("Trần", "Lê", "Phạm", "Hoàng", "Vũ")
    givens = ("An", "Bình", "Cường", "Dũng", "Giang", "Hải", "Khoa", "Long", "Minh", "Nam", "Phúc")
    names = [f"{f} Văn {g}" for f in families for g in givens]
    assert len(names) == pw.settings.portal.page_size + 5
    with pw.gm.session() as s, s.begin():
        for name in names:
            accounts.create_account(s, pw.settings, pw.gm.actor, NewAccount(agency=A, full_name=name))
    for base in pw.serve():
        page = browser.new_context().new_page()
        sign_in(page, base, pw.people["admin_a"], expect_code=True, lang="vi")
        page.click("nav.tabs >> text=Tài khoản")
        expect(page.locator("#count")).to_contain_text("tài khoản")
        expect(page.locator("#accounts tbody tr")).to_have_count(pw.settings.portal.page_size)
        page.click("#next")
        expect(page.locator("#accounts tbody tr")).to_have_count(7)  # 55 + the admin + the official of A1
        page.fill("#q", "VŨ VĂN KHOA")
        page.click("#search")
        expect(page.locator("#accounts tbody tr")).to_have_count(1)
        expect(page.locator("#accounts")).to_contain_text("Vũ Văn Khoa")
