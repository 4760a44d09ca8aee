"""The mail gateway against real clients, real TLS, a real directory and both databases.

Every test provisions a province with four officials through the CLI, starts the gateway
(``mailgateway.server.Gateway``) on free loopback ports in a background thread, and talks to it
with smtplib (ASCII) or aiosmtplib (UTF-8 passwords) over STARTTLS with a trustme CA. The last
test runs ``govmail gateway run`` as a real process and kills it with SIGKILL under load.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import queue
import random
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import aiosmtplib
import pytest
from sqlalchemy import inspect, select, text

from mailgateway.mailboxes import Snapshot
from provisioning.models import Base, UsageEvent
from tests.conftest import Govmail
from tests.gateway_fixtures import (
    CHOSEN_PASSWORD,
    DOMAIN,
    PROVINCE,
    Downstream,
    Official,
    RawSmtp,
    RunningGateway,
    Tls,
    gateway_settings,
    message,
    wait_until,
    with_config,
)

ROOT = Path(__file__).resolve().parents[1]
REFUSED = (535, b"5.7.8 Authentication credentials invalid")
TEMPORARY = (451, b"4.3.0 Temporary failure, please try again later")
# Words an exception's text (or a stack trace) would carry; a reply must contain none of them.
LEAKS = ("errno", "error:", "traceback", "exception", "directory", "such", "sqlalchemy", "sqlite", "psycopg",
         "usage_events", "relation", "/", "secret")


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return Tls.make(tmp_path_factory.mktemp("tls"))


def provision(gm: Govmail) -> dict[str, Official]:
    """A province with its domain and four officials (generated passwords; tuyetlta chose a UTF-8 one)."""
    result = gm.cli("agency", "add", PROVINCE, "--name", "UBND tỉnh Vĩnh Phúc", "--level", "province",
                    "--domain", DOMAIN)
    assert result.exit_code == 0, result.output
    officials = {}
    for name in ("Nguyễn Thị Lâm", "Trần Văn Đức", "Lê Thị Ánh Tuyết", "Phạm Văn Hùng"):
        result = gm.cli("--format", "json", "account", "create", "--agency", PROVINCE, "--name", name)
        assert result.exit_code == 0, result.output
        view = json.loads(result.stdout)
        officials[view["address"].split("@")[0]] = Official(view["address"], view["initial_password"])
    assert set(officials) == {"lamnt", "ductv", "tuyetlta", "hungpv"}
    result = gm.cli("account", "reset-password", officials["tuyetlta"].address, "--password-stdin",
                    input=CHOSEN_PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    officials["tuyetlta"].password = CHOSEN_PASSWORD
    return officials


@pytest.fixture
def make_gateway(gm: Govmail, tmp_path: Path, tls: Tls) -> Iterator[Callable[..., RunningGateway]]:
    """Start a gateway on ``gm``'s database and directory; keyword arguments override [gateway] keys.

    The officials are provisioned once per test (through the CLI of the first gateway's config)."""
    started: list[RunningGateway] = []
    officials: dict[str, Official] = {}

    def make(start: bool = True, **overrides: object) -> RunningGateway:
        config_file, settings = gateway_settings(gm, tmp_path, tls, **overrides)
        gw = RunningGateway(with_config(gm, config_file), settings, tls)
        if not officials:
            officials.update(provision(gw.gm))
        gw.officials = officials
        started.append(gw)
        return gw.start() if start else gw

    yield make
    for gw in started:
        gw.stop()


@pytest.fixture
def gateway(make_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    return make_gateway()


@pytest.fixture
def downstream() -> Iterator[Downstream]:
    server = Downstream().start()
    yield server
    server.stop()


def b64(value: str) -> str:
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def identity(content: bytes) -> str:
    """What the gateway records and names the Maildir file after: the Message-ID and the content."""
    inner = hashlib.sha256(content).digest()
    return hashlib.sha256(message_id_of(content).encode() + b"\0" + inner).hexdigest()


def message_id_of(content: bytes) -> str:
    for line in content.split(b"\r\n"):
        if line.lower().startswith(b"message-id:"):
            return line.split(b":", 1)[1].strip().decode()
    raise AssertionError(f"no Message-ID in {content[:200]!r}")


def events_of(gw: RunningGateway, content: bytes) -> list[UsageEvent]:
    return [e for e in gw.events() if e.message_hash == identity(content)]


def assert_no_leak(reply: bytes | str) -> None:
    shown = (reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply).lower()
    assert not any(word in shown for word in LEAKS), f"the reply leaks internals: {shown!r}"


def try_login(gw: RunningGateway, login: str, password: str, mechanism: str = "PLAIN",
              **kw: object) -> tuple[int, bytes]:
    """(code, text) of one AUTH after STARTTLS on a new connection.

    One mechanism only: smtplib's ``login()`` tries PLAIN and then LOGIN, which would count
    every refused attempt twice against the lockout limits."""
    with gw.submission(**kw) as client:
        client.user, client.password = login, password
        try:
            return client.auth(mechanism, client.auth_plain if mechanism == "PLAIN" else client.auth_login)
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code, exc.smtp_error


# --- 1. STARTTLS, then AUTH -----------------------------------------------------------------------

def test_auth_only_after_starttls_then_plain_and_login_work_with_ascii_and_utf8_passwords(gateway):
    lam, tuyet = gateway.officials["lamnt"], gateway.officials["tuyetlta"]
    # Before STARTTLS: STARTTLS offered, AUTH neither offered nor accepted (RFC 3207: 530), nor MAIL.
    with gateway.submission(starttls=False) as client:
        assert client.has_extn("starttls")
        assert not client.has_extn("auth"), client.esmtp_features
        code, reply = client.docmd("AUTH", "PLAIN " + b64(f"\0{lam.address}\0{lam.password}"))
        assert (code, reply) == (530, b"Must issue a STARTTLS command first")
        assert client.docmd("AUTH", "LOGIN")[0] == 530
        assert client.docmd("MAIL", f"FROM:<{lam.address}>")[0] == 530
    # A client that does not trust the test CA refuses the certificate: TLS is real.
    with (smtplib.SMTP(gateway.host, gateway.submission_port, timeout=10) as client,
          pytest.raises(ssl.SSLCertVerificationError)):
        client.starttls(context=ssl.create_default_context())

    # After STARTTLS: PLAIN and LOGIN (never CRAM-MD5), with and without an initial response.
    with gateway.submission() as client:
        assert isinstance(client.sock, ssl.SSLSocket)
        assert client.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]
    for mechanism in ("PLAIN", "LOGIN"):
        for initial_response in (True, False):
            with gateway.submission() as client:
                client.user, client.password = lam.address, lam.password
                authobject = client.auth_plain if mechanism == "PLAIN" else client.auth_login
                code, _ = client.auth(mechanism, authobject, initial_response_ok=initial_response)
                assert code == 235, (mechanism, initial_response)
                # authenticated: the official may now send as themself
                assert client.mail(lam.address)[0] == 250
    # AUTH PLAIN with a malformed base64 answer: 501, and the session goes on.
    with gateway.submission() as client:
        assert client.docmd("AUTH", "PLAIN ***")[0] == 501
        assert client.login(lam.address, lam.password)[0] == 235

    # The UTF-8 password a person chose, sent by aiosmtplib (UTF-8 on the wire) with each mechanism.
    async def utf8_logins() -> list[int]:
        codes = []
        for method in ("login", "auth_plain", "auth_login"):
            client = aiosmtplib.SMTP(hostname=gateway.host, port=gateway.submission_port, timeout=10,
                                     start_tls=True, tls_context=gateway.tls.client_context())
            async with client:
                await client.ehlo()  # after STARTTLS (login() would do it itself)
                response = await getattr(client, method)(tuyet.address, CHOSEN_PASSWORD)
                codes.append(response.code)
                assert (await client.mail(tuyet.address)).code == 250
        client = aiosmtplib.SMTP(hostname=gateway.host, port=gateway.submission_port, timeout=10,
                                 start_tls=True, tls_context=gateway.tls.client_context())
        async with client:
            with pytest.raises(aiosmtplib.SMTPAuthenticationError) as raised:
                await client.login(tuyet.address, CHOSEN_PASSWORD.replace("ậ", "â"))
            codes.append(raised.value.code)
        # Let the TLS shutdown of the last client finish before asyncio.run() closes this loop
        # (otherwise its socket is sometimes left open: an unraisable ResourceWarning later).
        await asyncio.sleep(0.1)
        return codes

    assert asyncio.run(utf8_logins()) == [235, 235, 235, 535]


# --- 2. one answer for every refusal; lockout -------------------------------------------------------

def test_wrong_password_unknown_suspended_and_retired_get_the_same_answer(gateway):
    lam, duc, hung = (gateway.officials[k] for k in ("lamnt", "ductv", "hungpv"))
    assert gateway.gm.cli("account", "suspend", duc.address).exit_code == 0
    assert gateway.gm.cli("account", "retire", hung.address).exit_code == 0
    answers = {
        "wrong password": try_login(gateway, lam.address, lam.password + "x"),
        "unknown login": try_login(gateway, f"khongco@{DOMAIN}", lam.password),
        "suspended": try_login(gateway, duc.address, duc.password),
        "retired": try_login(gateway, hung.address, hung.password),
    }
    answers["wrong password (LOGIN)"] = try_login(gateway, lam.address, "sai mat khau", "LOGIN")
    answers["suspended (LOGIN)"] = try_login(gateway, duc.address, duc.password, "LOGIN")
    assert answers == dict.fromkeys(answers, REFUSED)
    # suspension is not a lockout: restored, the same password works again
    assert gateway.gm.cli("account", "restore", duc.address).exit_code == 0
    assert try_login(gateway, duc.address, duc.password)[0] == 235
    assert try_login(gateway, lam.address, lam.password)[0] == 235


def test_lockout_per_account_and_per_client_address(gateway):
    # fixture: auth_failures_per_account = 3, auth_failures_per_client = 8
    lam, duc = gateway.officials["lamnt"], gateway.officials["ductv"]
    for attempt in range(3):
        assert try_login(gateway, lam.address, f"doan sai {attempt}") == REFUSED
    # locked: the right password gets the very same answer, whatever the case of the login
    assert try_login(gateway, lam.address, lam.password) == REFUSED
    assert try_login(gateway, lam.address.upper(), lam.password) == REFUSED
    # per account: a colleague from the same client is not affected
    assert try_login(gateway, duc.address, duc.password)[0] == 235
    # per client: 8 failures from 127.0.0.1 in all (3 above, 5 now) lock that address out
    for n in range(5):
        assert try_login(gateway, f"khongco{n}@{DOMAIN}", "x" * 12) == REFUSED
    assert try_login(gateway, duc.address, duc.password) == REFUSED
    # ... but not another client address; the locked account stays locked from there too
    other = {"source_address": ("127.0.0.2", 0)}
    assert try_login(gateway, duc.address, duc.password, **other)[0] == 235
    assert try_login(gateway, lam.address, lam.password, **other) == REFUSED


# --- 3. sender addresses -----------------------------------------------------------------------------

def test_sender_must_be_the_login_or_one_of_its_aliases(gateway):
    lam, duc = gateway.officials["lamnt"], gateway.officials["ductv"]
    with gateway.submission() as client:  # not authenticated: MAIL refused
        assert client.mail(lam.address)[0] == 530
    with gateway.submission(lam) as client:
        for spoofed in (duc.address, f"giamdoc@{DOMAIN}", "someone@example.org"):
            code, reply = client.mail(spoofed)
            assert (code, reply) == (553, b"5.7.1 Sender address not allowed for this login"), spoofed
            client.rset()
        assert client.mail(lam.address.upper())[0] == 250  # addresses are case-insensitive
        client.rset()
    result = gateway.gm.cli("account", "update", lam.address, "--add-alias", "nguyenthilam")
    assert result.exit_code == 0, result.output
    alias = f"nguyenthilam@{DOMAIN}"
    with gateway.submission(lam) as client:
        content = message(alias, [duc.address])
        assert client.sendmail(alias, [duc.address], content) == {}
    assert gateway.delivered(duc.address) == [content]
    assert [(e.direction, e.account_id) for e in events_of(gateway, content)] == [
        ("sent_internal", gateway.account_id(lam.address)), ("received", gateway.account_id(duc.address))]
    # an alias is also a recipient (once the snapshot has been refreshed)
    def alias_accepted() -> bool:
        with gateway.inbound() as client:
            client.mail("partner@example.org")
            return client.rcpt(alias)[0] == 250

    wait_until(alias_accepted, 5, "the alias to reach RCPT (directory_refresh = 0.3 s)")


# --- 4. inbound ----------------------------------------------------------------------------------------

def test_inbound_recipient_checks_and_size_limit(gateway):
    lam, duc = gateway.officials["lamnt"], gateway.officials["ductv"]
    with gateway.inbound() as client:
        assert client.esmtp_features["size"] == "20000"
        assert client.mail("partner@example.org")[0] == 250
        assert client.rcpt(f"khongco@{DOMAIN}") == (550, b"5.1.1 No such mailbox here")
        assert client.rcpt("someone@example.net") == (550, b"5.7.1 Relaying denied")
        assert client.rcpt(lam.address.upper())[0] == 250
        assert client.rcpt(duc.address)[0] == 250
        client.rset()
    assert gateway.gm.cli("account", "suspend", duc.address).exit_code == 0

    def refused() -> bool:
        with gateway.inbound() as client:
            client.mail("partner@example.org")
            return client.rcpt(duc.address) == (550, b"5.2.1 Mailbox disabled")

    wait_until(refused, 5, "the suspension to reach RCPT (directory_refresh = 0.3 s)")

    # oversize: refused at MAIL when the client announces SIZE, and at the end of DATA otherwise
    big = message("partner@example.org", [lam.address], body="x" * 990 + "\r\n" + ("y" * 900 + "\r\n") * 25)
    assert len(big) > 20_000
    with gateway.inbound() as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as raised:
            client.sendmail("partner@example.org", [lam.address], big)
        assert raised.value.smtp_code == 552
    with gateway.inbound() as client:
        assert client.mail("partner@example.org")[0] == 250  # no SIZE parameter
        assert client.rcpt(lam.address)[0] == 250
        assert client.data(big) == (552, b"Error: Too much mail data")
        # the session goes on, and a normal message still goes through
        small = message("partner@example.org", [lam.address])
        assert client.sendmail("partner@example.org", [lam.address], small) == {}
    assert gateway.delivered(lam.address) == [small]
    assert [e.direction for e in gateway.events()] == ["received"]


def test_addresses_keep_receiving_after_their_agency_changes_domain(gateway, tmp_path):
    # Regression: the hosted domains were the agencies' current ones only, so after a domain
    # change the existing addresses (which keep their domain, by design) got "550 Relaying denied".
    lam = gateway.officials["lamnt"]
    changes = tmp_path / "agencies.csv"
    changes.write_text(f"code,domain\n{PROVINCE},phutho.gov.vn\n", encoding="utf-8")
    result = gateway.gm.cli("agency", "import", str(changes))
    assert result.exit_code == 0, result.output
    assert json.loads(gateway.gm.cli("--format", "json", "account", "show", lam.address).stdout)["address"] \
        == lam.address
    created = gateway.gm.cli("--format", "json", "account", "create", "--agency", PROVINCE, "--name", "Vũ Văn Nam")
    assert created.exit_code == 0, created.output
    nam = json.loads(created.stdout)["address"]
    assert nam == "namvv@phutho.gov.vn"

    def both_accepted() -> bool:
        with gateway.inbound() as client:
            client.mail("partner@example.org")
            return client.rcpt(nam)[0] == 250 and client.rcpt(lam.address)[0] == 250

    wait_until(both_accepted, 5, "the new domain to be hosted")
    content = message("partner@example.org", [lam.address, nam])
    with gateway.inbound() as client:
        assert client.sendmail("partner@example.org", [lam.address, nam], content) == {}
    assert gateway.delivered(lam.address) == [content] and gateway.delivered(nam) == [content]


# --- 5. delivery and usage -------------------------------------------------------------------------

def test_delivery_and_usage_events_counted_once_with_no_content_stored(gateway):
    lam, duc, tuyet = (gateway.officials[k] for k in ("lamnt", "ductv", "tuyetlta"))
    ids = {k: gateway.account_id(o.address) for k, o in gateway.officials.items()}
    subject, body = "Ke hoach mat 7f3a2c", "Noi dung mat 9c2e41 - Nội dung cuộc họp."
    content = message(lam.address, [duc.address, tuyet.address], subject=subject, body=body)
    with gateway.submission(lam) as client:
        assert client.sendmail(lam.address, [duc.address, tuyet.address], content) == {}
        # the same message again (a client retry): the same file, no second usage event
        assert client.sendmail(lam.address, [duc.address, tuyet.address], content) == {}
    for box in (duc, tuyet):
        new = gateway.maildir / box.address / "new"
        assert [p.name for p in new.iterdir()] == [f"{identity(content)}.govmail"]
        assert gateway.delivered(box.address) == [content]
    assert not (gateway.maildir / lam.address).exists()
    events = events_of(gateway, content)
    assert sorted((e.direction, e.account_id) for e in events) == sorted([
        ("sent_internal", ids["lamnt"]), ("received", ids["ductv"]), ("received", ids["tuyetlta"])])
    for e in events:
        assert (e.recipients_internal, e.recipients_external, e.size, e.automatic) == (2, 0, len(content), False)
        assert e.agency_id and e.at is not None

    # automatic messages: an auto-reply through submission, a bounce (null sender) inbound
    auto = message(duc.address, [lam.address], subject="Tự động trả lời", headers={"Auto-Submitted": "auto-replied"})
    with gateway.submission(duc) as client:
        assert client.sendmail(duc.address, [lam.address], auto) == {}
    bounce = message(f"MAILER-DAEMON@{DOMAIN}", [tuyet.address], subject="Undelivered Mail")
    with gateway.inbound() as client:
        assert client.sendmail("<>", [tuyet.address], bounce) == {}
    human = message("partner@example.org", [tuyet.address], headers={"Auto-Submitted": "no"})
    with gateway.inbound() as client:
        assert client.sendmail("partner@example.org", [tuyet.address], human) == {}
    assert sorted((e.direction, e.automatic) for e in events_of(gateway, auto)) == [
        ("received", True), ("sent_internal", True)]
    assert [(e.direction, e.automatic) for e in events_of(gateway, bounce)] == [("received", True)]
    assert [(e.direction, e.automatic) for e in events_of(gateway, human)] == [("received", False)]
    assert len(gateway.events()) == 3 + 2 + 1 + 1

    # nothing of the content anywhere in the database: every value of every table
    columns = {c["name"] for c in inspect(gateway.gm.factory.kw["bind"]).get_columns("usage_events")}
    assert columns == {"id", "at", "account_id", "agency_id", "direction", "recipients_internal",
                       "recipients_external", "size", "automatic", "message_hash"}
    markers = ("7f3a2c", "9c2e41", "Nội dung", "Ke hoach", "Tự động", "Undelivered", "partner@", "MAILER-DAEMON",
               message_id_of(content).strip("<>"))
    with gateway.gm.factory() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                for value in row:
                    shown = str(value)
                    assert not any(m in shown for m in markers), (table.name, shown)
    for e in gateway.events():
        assert e.direction in ("sent_internal", "received") and len(e.message_hash) == 64
        assert e.account_id in ids.values()


# --- 6. relay mode -----------------------------------------------------------------------------------

def test_relay_to_downstream_and_4xx_while_it_is_down(make_gateway, downstream):
    gateway = make_gateway(delivery="relay", relay_host="127.0.0.1", relay_port=downstream.port,
                           relay_starttls=False)
    lam, duc, tuyet = (gateway.officials[k] for k in ("lamnt", "ductv", "tuyetlta"))
    first = message(lam.address, [duc.address, "partner@example.org"])
    with gateway.submission(lam) as client:
        assert client.sendmail(lam.address, [duc.address, "partner@example.org"], first) == {}
    inbound = message("partner@example.org", [tuyet.address])
    with gateway.inbound() as client:
        assert client.rcpt("other@example.net")[0] == 503  # no MAIL yet
        assert client.sendmail("partner@example.org", [tuyet.address], inbound) == {}
        client.mail("partner@example.org")
        assert client.rcpt("other@example.net") == (550, b"5.7.1 Relaying denied")  # inbound never relays out
    assert downstream.messages == [(lam.address, [duc.address, "partner@example.org"], first),
                                   ("partner@example.org", [tuyet.address], inbound)]
    assert not gateway.maildir.exists()
    assert sorted((e.direction, e.recipients_internal, e.recipients_external)
                  for e in events_of(gateway, first)) == [("received", 1, 1), ("sent_external", 1, 1)]
    assert [e.direction for e in events_of(gateway, inbound)] == ["received"]
    recorded = len(gateway.events())

    # downstream down: 451 (the sender keeps the message), nothing recorded
    downstream.stop()
    retried = message(lam.address, [duc.address])
    with gateway.submission(lam) as client, pytest.raises(smtplib.SMTPDataError) as raised:
        client.sendmail(lam.address, [duc.address], retried)
    assert (raised.value.smtp_code, raised.value.smtp_error) == TEMPORARY
    assert len(gateway.events()) == recorded and len(downstream.messages) == 2
    # downstream back: the client's retry of the same message is accepted, delivered and recorded once
    downstream.start()
    with gateway.submission(lam) as client:
        assert client.sendmail(lam.address, [duc.address], retried) == {}
    assert [m for m in downstream.messages if m[2] == retried] == [(lam.address, [duc.address], retried)]
    assert sorted(e.direction for e in events_of(gateway, retried)) == ["received", "sent_internal"]
    assert len(gateway.events()) == recorded + 2


# --- 7. robustness ------------------------------------------------------------------------------------

def test_malformed_input_gets_errors_and_the_server_stays_up(gateway):
    lam = gateway.officials["lamnt"]
    raw = RawSmtp(gateway.host, gateway.inbound_port)
    assert raw.greeting[0] == 220
    assert raw.command(b"HELLO THERE ;; DROP TABLE usage_events")[0] == 500
    assert raw.command(b"\x00\xff\xfe\x80 \x01binary")[0] == 500
    assert raw.command(b"MAIL FROM:<x@example.org>")[0] == 503  # before EHLO
    assert raw.command(b"EHLO sender.example.org")[0] == 250
    assert raw.command(b"RCPT TO:<" + lam.address.encode() + b">")[0] == 503  # RCPT before MAIL
    assert raw.command(b"DATA")[0] == 503
    assert raw.command(b"MAIL FROM:<<<>")[0] in (501, 553)
    assert raw.command(b"MAIL FROM:<a@b> SIZE=abc")[0] == 501
    assert raw.command(b"NOOP " + b"x" * 10_000)[0] == 500  # a 10,000-byte line
    assert raw.command(b"MAIL FROM:<" + "đức@example.org".encode() + b"\xff>")[0] in (250, 501, 553)
    assert raw.command(b"RSET")[0] == 250
    assert raw.command(b"NOOP")[0] == 250
    raw.close()

    # too many unknown commands: the server hangs up on that client only
    raw = RawSmtp(gateway.host, gateway.inbound_port)
    codes = []
    try:
        for n in range(10):
            codes.append(raw.command(b"XYZZY%d" % n)[0])
    except ConnectionError:
        pass
    raw.close()
    assert codes[:5] == [500] * 4 + [502], codes

    # abrupt disconnects: mid-DATA, mid-AUTH and in the TLS handshake
    raw = RawSmtp(gateway.host, gateway.inbound_port)
    for line in (b"EHLO x", b"MAIL FROM:<partner@example.org>", b"RCPT TO:<" + lam.address.encode() + b">"):
        assert raw.command(line)[0] == 250
    assert raw.command(b"DATA")[0] == 354
    raw.send(b"Subject: cut\r\nMessage-ID: <cut@example.org>\r\n\r\nhalf a mess")
    raw.close()
    raw = RawSmtp(gateway.host, gateway.submission_port)
    assert raw.command(b"EHLO x")[0] == 250
    assert raw.command(b"STARTTLS")[0] == 220
    raw.send(b"this is not a TLS ClientHello\r\n" * 3)
    raw.close()
    with gateway.submission() as client:
        client.send(b"AUTH LOGIN\r\n")
        assert client.getreply()[0] == 334
        client.sock.close()
        client.sock = None

    # the server is up: both listeners, a normal message goes through and nothing of the above was kept
    assert try_login(gateway, lam.address, lam.password)[0] == 235
    content = message("partner@example.org", [lam.address])
    with gateway.inbound() as client:
        assert client.sendmail("partner@example.org", [lam.address], content) == {}
    assert gateway.delivered(lam.address) == [content]
    assert [e.message_hash for e in gateway.events()] == [identity(content)]


def test_internal_errors_answer_4xx_without_details_and_a_retry_is_counted_once(gateway, monkeypatch):
    lam = gateway.officials["lamnt"]
    content = message("partner@example.org", [lam.address])

    def send() -> tuple[int, bytes]:
        with gateway.inbound() as client:
            try:
                client.sendmail("partner@example.org", [lam.address], content)
            except smtplib.SMTPDataError as exc:
                return exc.smtp_code, exc.smtp_error
            return 250, b""

    # the mailbox cannot be written (a file where its directory should be): 451, nothing recorded
    gateway.maildir.mkdir()
    blocker = gateway.maildir / lam.address
    blocker.write_text("in the way")
    assert send() == TEMPORARY
    assert gateway.events() == []
    blocker.unlink()

    # the usage table is unusable: the message was written but not recorded, so the answer is 451
    with gateway.gm.factory() as session, session.begin():
        session.execute(text("ALTER TABLE usage_events RENAME TO usage_events_away"))
    try:
        code, reply = send()
    finally:
        with gateway.gm.factory() as session, session.begin():
            session.execute(text("ALTER TABLE usage_events_away RENAME TO usage_events"))
    assert (code, reply) == TEMPORARY
    assert_no_leak(reply)
    assert gateway.events() == []

    # an unexpected exception in a hook: aiosmtpd asks our handle_exception, which hides the text
    def broken(self: Snapshot, address: str) -> bool:
        raise RuntimeError(f"secret internal detail /var/lib/govmail for {address}")

    monkeypatch.setattr(Snapshot, "hosted", broken)
    with gateway.inbound() as client:
        assert client.mail("partner@example.org")[0] == 250
        code, reply = client.rcpt(lam.address)
        assert (code, reply) == (451, b"4.3.0 Internal error, please try again later")
        assert_no_leak(reply)
    monkeypatch.undo()

    # the sender's retry succeeds: one file, one event
    assert send() == (250, b"")
    assert gateway.delivered(lam.address) == [content]
    assert [(e.direction, e.account_id) for e in gateway.events()] == [("received", gateway.account_id(lam.address))]


# --- 8. govmail gateway check -----------------------------------------------------------------------

def test_gateway_check_reports_both_listeners(gateway):
    result = gateway.gm.cli("--format", "json", "gateway", "check")
    assert result.exit_code == 0, result.output
    rows = {r["listener"]: r for r in json.loads(result.stdout)}
    assert {k: (r["status"], r["address"]) for k, r in rows.items()} == {
        "inbound": ("ok", f"127.0.0.1:{gateway.inbound_port}"),
        "submission": ("ok", f"127.0.0.1:{gateway.submission_port}")}
    assert "STARTTLS" in rows["submission"]["offers"].split() and "AUTH" not in rows["submission"]["offers"]
    assert "SIZE" in rows["inbound"]["offers"].split()
    gateway.stop()
    result = gateway.gm.cli("--format", "json", "gateway", "check")
    assert result.exit_code == 1, result.output
    assert [r["status"].split()[0] for r in json.loads(result.stdout)] == ["down", "down"]


def test_a_taken_port_fails_the_start_and_leaves_nothing_running(make_gateway):
    # Regression: when the submission port was taken, start() raised with the inbound listener
    # still bound and the recorder thread still running.
    gateway = make_gateway(start=False)
    with socket.socket() as squatter:
        squatter.bind((gateway.host, gateway.submission_port))
        squatter.listen()
        with pytest.raises(AssertionError, match="address already in use"):
            gateway.start()
    with socket.socket() as probe:
        probe.bind((gateway.host, gateway.inbound_port))  # released again
    wait_until(lambda: not any(t.name == "usage-recorder" for t in threading.enumerate()), 5,
               "the recorder thread to end")


# --- 9. SIGKILL under load ------------------------------------------------------------------------

class GatewayProcess:
    """``python -m cli --config FILE gateway run`` with its stderr kept in a file."""

    def __init__(self, gw: RunningGateway, log: Path) -> None:
        self.gw, self.log = gw, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli", "--config", str(self.gw.gm.config_file), "gateway", "run"],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"govmail gateway run exited with {self.proc.returncode}:\n"
                                     f"{self.log.read_text(errors='replace')}")
            try:
                with smtplib.SMTP(self.gw.host, self.gw.inbound_port, timeout=2) as client:
                    return client.ehlo()[0] == 250
            except OSError:
                return False

        wait_until(ready, 30, "govmail gateway run to listen")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(20)


def send_all(gw: RunningGateway, todo: list[tuple[str, list[str], bytes]], accepted: set[str],
             lock: threading.Lock, threads: int = 6) -> None:
    """Send every message from ``threads`` connections; the Message-ID of each one answered 250
    goes into ``accepted``. A worker stops when the gateway cannot be reached."""
    work: queue.Queue[tuple[str, list[str], bytes]] = queue.Queue()
    for item in todo:
        work.put(item)

    def worker() -> None:
        client: smtplib.SMTP | None = None
        while True:
            try:
                mid, rcpts, content = work.get_nowait()
            except queue.Empty:
                break
            try:
                if client is None:
                    client = gw.inbound()
                client.sendmail("partner@example.org", rcpts, content)
            except (smtplib.SMTPException, OSError):
                if client is not None:
                    try:
                        client.close()
                    except OSError:
                        pass
                client = None
                try:  # is the gateway still there? if not, leave the rest for later
                    gw.inbound().close()
                except OSError:
                    break
                continue
            with lock:
                accepted.add(mid)
        if client is not None:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert not w.is_alive(), "a sending thread hung"


def test_sigkill_under_load_loses_and_duplicates_nothing(make_gateway, tmp_path):
    gw = make_gateway(start=False)
    boxes = [o.address for o in gw.officials.values()]
    messages = []
    for i in range(300):
        rcpts = [boxes[i % 4]] + ([boxes[(i + 1) % 4]] if i % 3 == 0 else [])
        content = message("partner@example.org", rcpts, subject=f"Tin {i}", body=f"Noi dung {i} secretbody")
        messages.append((message_id_of(content), rcpts, content))
    seed = random.randrange(1 << 30)
    kill_after = random.Random(seed).randint(20, 240)
    why = f"(seed {seed}: killed after {kill_after} accepted)"

    process = GatewayProcess(gw, tmp_path / "gateway.log")
    process.start()
    accepted: set[str] = set()
    lock = threading.Lock()

    def killer() -> None:
        wait_until(lambda: len(accepted) >= kill_after, 60, f"{kill_after} messages accepted {why}")
        process.kill()

    killing = threading.Thread(target=killer, daemon=True)
    try:
        killing.start()
        send_all(gw, messages, accepted, lock)
        killing.join(60)
        assert process.proc is not None and process.proc.returncode == -signal.SIGKILL, why
        before = set(accepted)
        assert kill_after <= len(before) < len(messages), why

        # every 250 before the kill was already in the Maildir and recorded
        recorded = {e.message_hash for e in gw.events() if e.direction == "received"}
        by_id = {mid: (rcpts, content) for mid, rcpts, content in messages}
        for mid in before:
            assert identity(by_id[mid][1]) in recorded, f"{mid} got 250 but was not recorded {why}"
            for rcpt in by_id[mid][0]:
                assert (gw.maildir / rcpt / "new" / f"{identity(by_id[mid][1])}.govmail").read_bytes() == by_id[mid][1], why

        # restart; resend what did not get 250 until it does
        process.start()
        for _ in range(5):
            left = [m for m in messages if m[0] not in accepted]
            if not left:
                break
            send_all(gw, left, accepted, lock)
        assert len(accepted) == len(messages), why
        assert process.terminate() == 0
    finally:
        process.kill()

    # exactly once in each recipient's Maildir, exactly one `received` event per recipient
    ids = {o.address: gw.account_id(o.address) for o in gw.officials.values()}
    in_maildir = Counter()
    for box in boxes:
        for content in gw.delivered(box):
            in_maildir[(message_id_of(content), box)] += 1
    expected = {(mid, rcpt) for mid, rcpts, _ in messages for rcpt in rcpts}
    assert set(in_maildir) == expected and set(in_maildir.values()) == {1}, why
    events = Counter((e.message_hash, e.account_id, e.direction) for e in gw.events())
    identities = {mid: identity(content) for mid, _, content in messages}
    assert set(events) == {(identities[mid], ids[rcpt], "received") for mid, rcpt in expected}, why
    assert set(events.values()) == {1}, why
    # the log is JSON lines and carries no message content
    log = (tmp_path / "gateway.log").read_text(encoding="utf-8")
    assert "secretbody" not in log and "Tin 1" not in log
    for line in filter(None, log.splitlines()):
        assert json.loads(line)["logger"].startswith("govmail"), line


# --- regressions found in review ------------------------------------------------------------------

def test_lockout_holds_for_every_spelling_of_the_login(gateway):
    lam = gateway.officials["lamnt"]
    assert gateway.gm.cli("account", "update", lam.address, "--add-alias", "lam.nguyen").exit_code == 0
    wait_until(lambda: try_login(gateway, f"lam.nguyen@{DOMAIN}", lam.password)[0] == 235, 10, "alias known")
    for _ in range(3):
        assert try_login(gateway, lam.address, "wrong password") == REFUSED
    # locked per account: not by address, alias or bare local part either
    for spelling in (lam.address, f"lam.nguyen@{DOMAIN}", "lamnt", "LAMNT@VINHPHUC.GOV.VN"):
        assert try_login(gateway, spelling, lam.password) == REFUSED, spelling


def test_inbound_listener_offers_no_login(gateway):
    with smtplib.SMTP(gateway.host, gateway.inbound_port, timeout=5) as client:
        client.ehlo("probe")
        if client.has_extn("starttls"):
            client.starttls(context=gateway.tls.client_context())
            client.ehlo("probe")
        assert not client.has_extn("auth")
        lam = gateway.officials["lamnt"]
        code, _ = client.docmd("AUTH", "PLAIN " + b64(f"\0{lam.address}\0{lam.password}"))
        assert code != 235


def test_a_reused_message_id_neither_replaces_nor_hides_the_first_message(gateway):
    lam, duc = gateway.officials["lamnt"], gateway.officials["ductv"]
    original = message(duc.address, [lam.address], body="Bản gốc", message_id="<same@x>")
    forged = message("outsider@example.org", [lam.address], body="Giả mạo", message_id="<same@x>")
    with gateway.submission(duc) as client:
        assert client.sendmail(duc.address, [lam.address], original) == {}
    with gateway.inbound() as client:
        assert client.sendmail("outsider@example.org", [lam.address], forged) == {}
    assert sorted(gateway.delivered(lam.address)) == sorted([original, forged])
    received = [e for e in gateway.events() if e.direction == "received"]
    assert len(received) == 2 and len({e.message_hash for e in received}) == 2


# --- delegated shared mailboxes, From headers, unchanged passwords --------------------------------

def test_a_delegated_official_sends_as_the_shared_mailbox_until_the_delegation_ends(gateway):
    lam, duc = gateway.officials["lamnt"], gateway.officials["ductv"]
    shared = f"vanthu@{DOMAIN}"
    result = gateway.gm.cli("account", "create", "--agency", PROVINCE, "--name", "Văn thư UBND tỉnh",
                            "--shared", "--address", "vanthu")
    assert result.exit_code == 0, result.output
    with gateway.submission(lam) as client:  # not delegated yet
        assert client.mail(shared)[0] == 553
    result = gateway.gm.cli("--format", "json", "account", "delegate", shared, "--to", lam.address)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"mailbox": shared, "delegates": [lam.address]}
    # the delegation is read at AUTH: a new session may send as the mailbox
    content = message(shared, [duc.address], subject="Công văn đến")
    with gateway.submission(lam) as client:
        assert client.sendmail(shared, [duc.address], content) == {}
    assert gateway.delivered(duc.address) == [content]
    # one event for the official who sent, one for the shared mailbox (counted apart), one received
    assert sorted((e.direction, e.account_id) for e in events_of(gateway, content)) == sorted([
        ("sent_internal", gateway.account_id(lam.address)), ("sent_internal", gateway.account_id(shared)),
        ("received", gateway.account_id(duc.address))])
    with gateway.submission(duc) as client:  # a colleague who is not delegated may not
        assert client.mail(shared)[0] == 553
    # a personal mailbox cannot be delegated; a second grant is a conflict; both say why
    result = gateway.gm.cli("account", "delegate", duc.address, "--to", lam.address)
    assert result.exit_code == 2 and "not a shared one" in result.output
    result = gateway.gm.cli("account", "delegate", shared, "--to", lam.address)
    assert result.exit_code != 0 and "already" in result.output
    # transferring the official away ends the delegation (audited)
    assert gateway.gm.cli("agency", "add", "000.00.31.H62", "--name", "Sở Nội vụ", "--level", "province",
                          "--parent", PROVINCE).exit_code == 0
    assert gateway.gm.cli("account", "transfer", lam.address, "--to", "000.00.31.H62").exit_code == 0
    shown = json.loads(gateway.gm.cli("--format", "json", "account", "show", shared).stdout)
    assert shown["delegates"] == []
    history = gateway.gm.cli("--format", "json", "account", "history", shared).stdout
    assert "account.delegate" in history and "account.undelegate" in history
    with gateway.submission(lam) as client:
        assert client.mail(shared)[0] == 553


def test_the_from_header_must_be_an_address_of_the_login(gateway):
    lam, duc = gateway.officials["lamnt"], gateway.officials["ductv"]
    forged = message(lam.address, [duc.address], headers={"From": f"Giám đốc <giamdoc@{DOMAIN}>"})
    with gateway.submission(lam) as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail(lam.address, [duc.address], forged)
    assert refused.value.smtp_code == 553
    alone = message(f"giamdoc@{DOMAIN}", [duc.address])  # the only From line, envelope sender right
    with gateway.submission(lam) as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail(lam.address, [duc.address], alone)
    assert refused.value.smtp_code == 553
    assert gateway.delivered(duc.address) == [] and events_of(gateway, forged) == events_of(gateway, alone) == []
    own = message(lam.address, [duc.address], headers={"From": f"=?utf-8?q?Nguy=E1=BB=85n_Th=E1=BB=8B_L=C3=A2m?= <{lam.address.upper()}>"})
    with gateway.submission(lam) as client:
        assert client.sendmail(lam.address, [duc.address], own) == {}
    assert gateway.delivered(duc.address) == [own]


def test_an_unchanged_initial_password_can_be_refused_with_its_own_reason(make_gateway):
    gw = make_gateway(refuse_unchanged_password=True)
    lam, hung = gw.officials["lamnt"], gw.officials["hungpv"]
    chosen = "Quiet river 7 autumn"
    assert gw.gm.cli("account", "reset-password", hung.address, "--password-stdin", input=chosen + "\n").exit_code == 0
    code, reply = try_login(gw, lam.address, lam.password)  # still the generated one
    assert code == 535 and b"Change your initial password" in reply
    assert try_login(gw, lam.address, "wrong password") == REFUSED  # a wrong one says nothing more
    assert try_login(gw, hung.address, chosen)[0] == 235


# --- several gateway processes on one database ----------------------------------------------------

def test_two_gateway_processes_share_lockouts_and_count_each_message_once(make_gateway, tmp_path):
    first, second = make_gateway(start=False), make_gateway(start=False)
    processes = [GatewayProcess(first, tmp_path / "first.log"), GatewayProcess(second, tmp_path / "second.log")]
    try:
        for process in processes:
            process.start()
        lam, duc = first.officials["lamnt"], first.officials["ductv"]
        # failures at either process count together: 2 + 1 lock the account at both (limit 3)
        assert try_login(first, lam.address, "sai 1") == REFUSED
        assert try_login(second, lam.address, "sai 2") == REFUSED
        assert try_login(first, lam.address, "sai 3") == REFUSED
        assert try_login(second, lam.address, lam.password) == REFUSED
        assert try_login(first, duc.address, duc.password)[0] == 235
        # messages spread over both processes at once; every one also retried at the other one
        boxes = [o.address for o in first.officials.values()]
        messages = []
        for i in range(120):
            content = message("partner@example.org", [boxes[i % 4]], subject=f"Tin {i}")
            messages.append((message_id_of(content), [boxes[i % 4]], content))
        accepted: set[str] = set()
        lock = threading.Lock()
        senders = [threading.Thread(target=send_all, args=(gw, batch, accepted, lock, 3))
                   for gw, batch in ((first, messages), (second, messages[::-1]))]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(120)
        assert len(accepted) == len(messages)
        assert all(process.terminate() == 0 for process in processes)
    finally:
        for process in processes:
            process.kill()
    in_maildir = Counter(message_id_of(c) for box in boxes for c in first.delivered(box))
    assert set(in_maildir) == {mid for mid, _, _ in messages} and set(in_maildir.values()) == {1}
    received = Counter(e.message_hash for e in first.events() if e.direction == "received")
    assert set(received) == {identity(c) for _, _, c in messages} and set(received.values()) == {1}
