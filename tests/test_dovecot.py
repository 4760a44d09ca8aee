"""A real IMAP server logs provisioned accounts in: Dovecot with an LDAP passdb pointed at the directory.

The requirement: hash schemes must be ones OpenLDAP and Dovecot verify, so a real Dovecot pointed at
the directory logs a provisioned account in with its password ({SSHA512} generated, {ARGON2} chosen),
by address or alias, and refuses it while it is suspended or retired.

Each test gets its own Dovecot (it starts in a fraction of a second) whose passdb searches that test's
``ou=people`` subtree, because every test publishes the same address in its own subtree of the
session's slapd. Dovecot missing is a failure that says how to install it, never a skip.
"""

from __future__ import annotations

import imaplib
import json
from pathlib import Path
from typing import Iterator

import pytest

from directory.slapd import free_port
from dovecot_server import DovecotServer

AGENCY = "000.00.00.H62"
DOMAIN = "vinhphuc.gov.vn"
CHOSEN_PASSWORD = "Mật khẩu rất dài 2026"


@pytest.fixture(scope="module")
def stopping_servers() -> Iterator[list[DovecotServer]]:
    """Servers told to stop; waited for together at the end (each stop takes Dovecot one second)."""
    servers: list[DovecotServer] = []
    yield servers
    for server in servers:
        server.wait()


@pytest.fixture
def dovecot(gm, tmp_path: Path, stopping_servers: list[DovecotServer]) -> Iterator[DovecotServer]:
    """A Dovecot whose LDAP passdb looks in this test's ``ou=people``, as the service account."""
    d = gm.settings.directory
    server = DovecotServer(
        tmp_path / "dovecot", port=free_port(), ldap_url=gm.slapd.url, bind_dn=d.bind_dn,
        bind_password=d.bind_password.reveal(), people_dn=f"ou=people,{d.base_dn}",
    )
    stopping_servers.append(server)
    server.start()
    yield server
    server.stop(wait=False)


def ok(result, *args: str) -> None:
    assert result.exit_code == 0, f"govmail {' '.join(args)} -> {result.exit_code}\n{result.output}"


def cli(gm, *args: str, input: str | None = None):
    result = gm.cli(*args, input=input)
    ok(result, *args)
    return result


def create_account(gm) -> tuple[str, str]:
    """The agency and one account through the CLI; returns (address, generated initial password)."""
    cli(gm, "agency", "add", AGENCY, "--name", "UBND tỉnh Vĩnh Phúc", "--level", "province", "--domain", DOMAIN)
    created = json.loads(cli(gm, "--format", "json", "account", "create", "--agency", AGENCY,
                             "--name", "Nguyễn Thị Lâm").stdout)
    assert created["address"] == f"lamnt@{DOMAIN}"
    assert gm.entry("lamnt")["userPassword"][0].startswith("{SSHA512}")
    return created["address"], created["initial_password"]


def imap_login(server: DovecotServer, user: str, password: str) -> tuple[str, str]:
    """AUTHENTICATE PLAIN (UTF-8) and open INBOX; ("OK", "") or ("NO", Dovecot's answer).

    Opening INBOX proves the session really works: Dovecot answers a login OK even when the mail
    process then fails to start ("Logged in, but initialization failed").
    """
    imap = imaplib.IMAP4("127.0.0.1", server.port, timeout=10)
    try:
        response = b"\0" + user.encode("utf-8") + b"\0" + password.encode("utf-8")
        try:
            imap.authenticate("PLAIN", lambda _challenge: response)
        except imaplib.IMAP4.error as exc:
            return "NO", str(exc)
        status, data = imap.select("INBOX")
        assert status == "OK", f"logged in as {user} but INBOX does not open: {data}\n{server.diagnosis()}"
        return "OK", ""
    finally:
        try:
            imap.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def assert_login(server: DovecotServer, user: str, password: str) -> None:
    status, answer = imap_login(server, user, password)
    assert status == "OK", f"Dovecot refused {user}: {answer}\n{server.diagnosis()}"


def assert_refused(server: DovecotServer, user: str, password: str) -> None:
    """Refused as a bad login, not for a temporary failure (directory unreachable, broken config)."""
    status, answer = imap_login(server, user, password)
    assert status == "NO", f"Dovecot let {user} in\n{server.diagnosis()}"
    assert "[AUTHENTICATIONFAILED]" in answer, f"{user}: {answer}\n{server.diagnosis()}"


def test_generated_initial_password_logs_in(gm, dovecot: DovecotServer) -> None:
    address, initial = create_account(gm)

    assert_login(dovecot, address, initial)
    # The LOGIN command too (the generated password is ASCII).
    imap = imaplib.IMAP4("127.0.0.1", dovecot.port, timeout=10)
    try:
        assert imap.login(address, initial)[0] == "OK"
    finally:
        imap.logout()

    assert_refused(dovecot, address, initial + "x")
    assert_refused(dovecot, f"nobody@{DOMAIN}", initial)


def test_chosen_password_argon2_logs_in(gm, dovecot: DovecotServer) -> None:
    address, initial = create_account(gm)
    cli(gm, "account", "reset-password", address, "--password-stdin", input=CHOSEN_PASSWORD + "\n")
    assert gm.entry("lamnt")["userPassword"][0].startswith("{ARGON2}$argon2id$")

    assert_login(dovecot, address, CHOSEN_PASSWORD)
    assert_refused(dovecot, address, initial)
    assert_refused(dovecot, address, CHOSEN_PASSWORD.lower())


def test_suspended_and_retired_accounts_are_refused(gm, dovecot: DovecotServer) -> None:
    address, initial = create_account(gm)
    assert_login(dovecot, address, initial)

    cli(gm, "account", "suspend", address)
    assert gm.entry("lamnt")["govmailStatus"] == ["suspended"]
    assert_refused(dovecot, address, initial)

    cli(gm, "account", "restore", address)
    assert_login(dovecot, address, initial)

    cli(gm, "account", "retire", address)
    assert gm.entry("lamnt")["govmailStatus"] == ["retired"]
    assert_refused(dovecot, address, initial)


def test_alias_logs_in_to_the_same_mailbox(gm, dovecot: DovecotServer) -> None:
    address, initial = create_account(gm)
    cli(gm, "account", "update", address, "--add-alias", "lam.nguyen")
    alias = f"lam.nguyen@{DOMAIN}"
    assert gm.entry("lamnt")["govmailAlias"] == [alias]

    assert_login(dovecot, alias, initial)
    # pass_attrs mail=user: Dovecot knows the user by the account's address, so the alias opened
    # the account's own mailbox rather than a new one.
    assert (dovecot.mail_root / address).is_dir()
    assert not (dovecot.mail_root / alias).exists()
    assert_refused(dovecot, alias, initial + "x")
