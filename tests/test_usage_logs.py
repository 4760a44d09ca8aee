"""Mailbox logins from Dovecot's log: a real Dovecot's log imported once, hand-written lines of every
timestamp style, years without a year, users by address, alias or local part, and the CLI."""

from __future__ import annotations

import gzip
import imaplib
import json
import os
from datetime import datetime, timezone
from hashlib import sha256
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from directory.slapd import free_port
from dovecot_server import DovecotServer
from provisioning.errors import InvalidInput
from provisioning.models import Account, LoginEvent, UsageDaily
from provisioning.usage_logs import DovecotParser, ImportResult, YearPlacer, import_dovecot_log
from tests.conftest import Govmail

AGENCY = "000.00.00.H62"
DOMAIN = "vinhphuc.gov.vn"
VN = ZoneInfo("Asia/Ho_Chi_Minh")
# A login line with bytes that are not UTF-8 (a client ID in Windows-1258).
WINDOWS_1258 = (b"Dec 01 10:00:09 imap-login: Info: Login: user=<ductv>, method=PLAIN, rip=1.2.3.4, "
                b"session=<L\xe2m>")
TAIL = ", method=PLAIN, rip=203.113.1.7, lip=10.0.0.2, mpid=4242, secured, session=<Abc{n}>"


def cli_ok(gm: Govmail, *args: str) -> str:
    result = gm.cli(*args)
    assert result.exit_code == 0, f"govmail {' '.join(args)} -> {result.exit_code}\n{result.output}"
    return result.stdout


def make_accounts(gm: Govmail) -> dict[str, str]:
    """lamnt (alias lam.nguyen) and ductv through the CLI; returns {address: initial password}."""
    cli_ok(gm, "agency", "add", AGENCY, "--name", "UBND tỉnh Vĩnh Phúc", "--level", "province", "--domain", DOMAIN)
    passwords = {}
    for name in ("Nguyễn Thị Lâm", "Trần Văn Đức"):
        created = json.loads(cli_ok(gm, "--format", "json", "account", "create", "--agency", AGENCY,
                                    "--name", name))
        passwords[created["address"]] = created["initial_password"]
    cli_ok(gm, "account", "update", f"lamnt@{DOMAIN}", "--add-alias", "lam.nguyen")
    return passwords


def logins(gm: Govmail) -> list[tuple[str, str, str | None, datetime]]:
    """(local part, protocol, client, time) of every stored login, in time order."""
    with gm.session() as session:
        rows = session.execute(select(Account.local_part, LoginEvent.protocol, LoginEvent.client, LoginEvent.at)
                               .join(Account, Account.id == LoginEvent.account_id).order_by(LoginEvent.at))
        return [tuple(row) for row in rows]  # type: ignore[misc]


def write_log(path: Path, lines: list[str | bytes], mtime: datetime | None = None) -> Path:
    data = b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    if mtime is not None:
        os.utime(path, (mtime.timestamp(), mtime.timestamp()))
    return path


def login(stamp: str, user: str, n: int = 1, service: str = "imap", syslog: bool = False) -> str:
    prefix = "mailhost dovecot: " if syslog else ""
    level = "" if syslog else "Info: "
    return f"{stamp} {prefix}{service}-login: {level}Login: user=<{user}>{TAIL.format(n=n)}"


def run_import(gm: Govmail, path: Path, **kwargs: Any) -> ImportResult:
    with gm.session() as session:
        result = import_dovecot_log(session, gm.settings, path, **kwargs)
        session.commit()
    return result


# -- a real Dovecot -------------------------------------------------------------------------------------

def imap(server: DovecotServer, user: str, password: str) -> bool:
    client = imaplib.IMAP4("127.0.0.1", server.port, timeout=10)
    try:
        client.login(user, password)
        return client.select("INBOX")[0] == "OK"
    except imaplib.IMAP4.error:
        return False
    finally:
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


def test_real_dovecot_log_is_imported_once(gm: Govmail, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    passwords = make_accounts(gm)
    lam, duc = f"lamnt@{DOMAIN}", f"ductv@{DOMAIN}"
    d = gm.settings.directory
    server = DovecotServer(tmp_path / "dovecot", port=free_port(), ldap_url=gm.slapd.url, bind_dn=d.bind_dn,
                           bind_password=d.bind_password.reveal(), people_dn=f"ou=people,{d.base_dn}")
    monkeypatch.setenv("TZ", "Asia/Ho_Chi_Minh")  # the log's local time is the default [stats] timezone
    before = datetime.now(timezone.utc).replace(microsecond=0)
    server.start()
    try:
        assert imap(server, lam, passwords[lam]), server.diagnosis()
        assert imap(server, f"lam.nguyen@{DOMAIN}", passwords[lam]), server.diagnosis()
        assert imap(server, duc, passwords[duc]), server.diagnosis()
        assert not imap(server, duc, passwords[duc] + "x")
        assert not imap(server, f"nobody@{DOMAIN}", passwords[duc])
    finally:
        server.stop()
    after = datetime.now(timezone.utc)

    result = json.loads(cli_ok(gm, "--format", "json", "usage", "import-log", str(server.log_path)))
    assert (result["logins"], result["new"], result["duplicates"], result["unknown"]) == (3, 3, 0, 0), result
    stored = logins(gm)
    # The alias login is logged under the account's address (the passdb returns mail as the user).
    assert sorted((who, protocol, client) for who, protocol, client, _ in stored) == [
        ("ductv", "imap", "127.0.0.1"), ("lamnt", "imap", "127.0.0.1"), ("lamnt", "imap", "127.0.0.1")]
    assert all(before <= at <= after for *_, at in stored), (before, stored, after)
    with gm.session() as session:
        assert session.scalar(select(func.sum(UsageDaily.logins))) == 3

    again = json.loads(cli_ok(gm, "--format", "json", "usage", "import-log", str(server.log_path)))
    assert (again["logins"], again["new"], again["duplicates"]) == (3, 0, 3)
    assert len(logins(gm)) == 3


# -- the parser -------------------------------------------------------------------------------------------

def parse(line: str | bytes, year: int | None = None, reference: datetime | None = None,
          tz: str = "Asia/Ho_Chi_Minh") -> tuple[datetime, str, str, str | None] | None:
    parser = DovecotParser(ZoneInfo(tz), YearPlacer(year, reference))
    return parser.parse(line.decode("utf-8", "surrogateescape") if isinstance(line, bytes) else line)


@pytest.mark.parametrize("line, at", [
    # Dovecot's own log_path, default log_timestamp "%b %d %H:%M:%S "
    (login("Dec 02 10:15:01", "lamnt@vinhphuc.gov.vn"), datetime(2025, 12, 2, 10, 15, 1, tzinfo=VN)),
    # syslog (rsyslog's traditional format pads the day with a space)
    (login("Dec  2 10:15:01", "lamnt@vinhphuc.gov.vn", syslog=True), datetime(2025, 12, 2, 10, 15, 1, tzinfo=VN)),
    # journalctl -o short (with the pid) and -o short-iso / short-iso-precise
    ("Dec 02 10:15:01 mailhost dovecot[812]: imap-login: Login: user=<lamnt@vinhphuc.gov.vn>, rip=203.113.1.7",
     datetime(2025, 12, 2, 10, 15, 1, tzinfo=VN)),
    ("2025-12-02T10:15:01+0700 mailhost dovecot[812]: imap-login: Login: user=<lamnt@vinhphuc.gov.vn>, "
     "rip=203.113.1.7",
     datetime(2025, 12, 2, 3, 15, 1, tzinfo=timezone.utc)),
    (login("2025-12-02T10:15:01.123456+07:00", "lamnt@vinhphuc.gov.vn", syslog=True),
     datetime(2025, 12, 2, 3, 15, 1, 123456, tzinfo=timezone.utc)),
    # log_timestamp = "%Y-%m-%d %H:%M:%S ": local time
    (login("2025-12-02 10:15:01", "lamnt@vinhphuc.gov.vn"), datetime(2025, 12, 2, 10, 15, 1, tzinfo=VN)),
])
def test_timestamp_styles(line: str, at: datetime) -> None:
    when, protocol, user, client = parse(line, reference=datetime(2025, 12, 3))
    assert (when, protocol, user, client) == (at, "imap", "lamnt@vinhphuc.gov.vn", "203.113.1.7")


def test_protocol_client_and_what_is_not_a_login() -> None:
    assert parse(login("Dec 02 10:15:01", "lamnt", service="pop3"), 2025)[1:] == ("pop3", "lamnt", "203.113.1.7")
    assert parse("Dec 02 10:15:01 imap-login: Info: Login: user=<lamnt>, method=PLAIN, rip=2001:db8::1, lip=::1",
                 2025)[3] == "2001:db8::1"
    assert parse("Dec 02 10:15:01 imap-login: Info: Login: user=<lamnt>, method=PLAIN", 2025)[3] is None
    in_utc = datetime(2025, 12, 2, 10, 15, 1, tzinfo=timezone.utc)
    assert parse(login("Dec 02 10:15:01", "ductv"), 2025, tz="UTC")[0] == in_utc
    for other in [
        "Dec 02 10:15:01 imap-login: Info: Disconnected: Aborted login by logging out (auth failed, 1 attempts "
        "in 0 secs): user=<lamnt>, method=PLAIN, rip=127.0.0.1, lip=127.0.0.1, secured, session=<x>",
        "Dec 02 10:15:01 auth: Info: ldap(lamnt,127.0.0.1,<x>): Password mismatch (for LDAP bind)",
        "Dec 02 10:15:01 imap(lamnt)<1><x>: Info: Disconnected: Logged out in=32 out=788",
        "Dec 02 10:15:01 imap-login: Info: Login: user=<>, method=EXTERNAL, rip=127.0.0.1",
        "Feb 30 10:15:01 imap-login: Info: Login: user=<lamnt>, rip=127.0.0.1",
        "02.12.2025 10:15:01 imap-login: Info: Login: user=<lamnt>, rip=127.0.0.1",
        # a user name cannot forge a login inside another process's line
        "Dec 02 10:15:01 imap-login: Info: Disconnected (auth failed): user=<x imap-login: Login: user=<lamnt>>",
        "",
    ]:
        assert parse(other, 2025) is None, other


def years(lines: list[str], year: int | None = None, reference: datetime | None = None) -> list[int]:
    parser = DovecotParser(VN, YearPlacer(year, reference))
    return [parser.parse(login(stamp, "lamnt"))[0].year for stamp in lines]


def test_years_of_syslog_timestamps() -> None:
    rollover = ["Dec 30 09:00:00", "Dec 31 23:59:58", "Jan 01 00:00:02", "Dec 31 23:59:59", "Jan 02 08:00:00"]
    # --year: the year of the first line; December then January moves on; a straggler stays behind.
    assert years(rollover, year=2025) == [2025, 2025, 2026, 2025, 2026]
    # No --year: the log ends at its modification time; December lines before a January mtime are
    # from the year before.
    assert years(rollover, reference=datetime(2026, 1, 2, 8, 0, 5)) == [2025, 2025, 2026, 2025, 2026]
    assert years(["Mar 03 08:00:00", "Sep 09 08:00:00"], reference=datetime(2026, 9, 10)) == [2026, 2026]
    assert years(["Nov 30 08:00:00"], reference=datetime(2026, 3, 1)) == [2025]
    # within a day after the mtime (a clock a little ahead) is still that year
    assert years(["Mar 01 20:00:00"], reference=datetime(2026, 3, 1, 8)) == [2026]
    assert years(["Feb 28 08:00:00", "Feb 29 08:00:00", "Mar 01 08:00:00"], year=2028) == [2028] * 3


def test_years_follow_lines_that_are_not_logins(gm: Govmail, tmp_path: Path) -> None:
    make_accounts(gm)
    path = write_log(tmp_path / "dovecot.log", [
        login("Dec 31 08:00:00", "lamnt", 1),
        "Jan 01 00:00:01 master: Info: Dovecot v2.3.19.1 starting up for imap",
        "Jan 01 00:00:02 imap(lamnt)<1><x>: Info: Disconnected: Logged out in=32 out=788",
        login("Dec 29 08:00:00", "lamnt", 2),  # more than a day back: a year later
    ], mtime=datetime(2026, 12, 29, 9, tzinfo=VN))
    run_import(gm, path)
    assert [at.astimezone(VN).date().isoformat() for *_, at in logins(gm)] == ["2025-12-31", "2026-12-29"]


# -- imports into the database ----------------------------------------------------------------------------

def test_users_by_address_alias_or_local_part_and_unknown_users(gm: Govmail, tmp_path: Path) -> None:
    make_accounts(gm)
    path = write_log(tmp_path / "dovecot.log", [
        "Dec 01 09:59:59 master: Info: Dovecot v2.3.19.1 (9b53102964) starting up for imap, pop3",
        login("Dec 01 10:00:00", "LamNT@VinhPhuc.gov.vn", 1),
        login("Dec 01 10:00:01", "lam.nguyen@vinhphuc.gov.vn", 2, service="pop3"),
        login("Dec 01 10:00:02", "ductv", 3, syslog=True),
        login("Dec 01 10:00:03", "nobody@vinhphuc.gov.vn", 4),
        login("Dec 01 10:00:04", "nobody@vinhphuc.gov.vn", 5),
        login("Dec 01 10:00:05", "lamnt@other.gov.vn", 6),
        b"Dec 01 10:00:06 imap-login: Info: Login: user=<l\xe2mnt>, method=PLAIN, rip=1.2.3.4, session=<7>",
        b"\xff\xfe garbage \x00 line",
        "Dec 01 10:00:07 imap-login: Info: Login: user=<lamnt>, method=PLAIN, rip=1.2.3.4, session=<8>",
        "not a log line at all",
        "01/12/2025 10:00:08 imap-login: Info: Login: user=<lamnt>, rip=1.2.3.4",
        WINDOWS_1258,
    ], mtime=datetime(2025, 12, 1, 18, tzinfo=VN))
    result = run_import(gm, path)
    assert (result.lines, result.logins, result.new, result.duplicates, result.unknown) == (13, 9, 5, 0, 4)
    assert result.unknown_users == {"nobody@vinhphuc.gov.vn": 2, "lamnt@other.gov.vn": 1, "l\ufffdmnt": 1}
    assert (result.unreadable, result.first_unreadable) == (1, 12)
    assert result.first == datetime(2025, 12, 1, 10, 0, 0, tzinfo=VN)
    assert result.last == datetime(2025, 12, 1, 10, 0, 9, tzinfo=VN)
    assert [(who, protocol) for who, protocol, *_ in logins(gm)] == [
        ("lamnt", "imap"), ("lamnt", "pop3"), ("ductv", "imap"), ("lamnt", "imap"), ("ductv", "imap")]
    with gm.session() as session:  # the hash is of the line's own bytes, whatever their encoding
        stored = select(LoginEvent.id).where(LoginEvent.line_hash == sha256(WINDOWS_1258).hexdigest())
        assert session.scalar(stored) is not None


def test_idempotent_across_batches_growing_logs_and_gzip(gm: Govmail, tmp_path: Path) -> None:
    make_accounts(gm)
    first = [login(f"Dec 01 10:00:{n:02}", "lamnt", n) for n in range(5)]
    path = write_log(tmp_path / "dovecot.log", first, mtime=datetime(2025, 12, 2, tzinfo=VN))
    assert run_import(gm, path, batch=2).new == 5
    # The same log, grown (and a line repeated inside a batch): only the new lines count.
    grown = first + [login(f"Dec 02 10:00:{n:02}", "ductv", n) for n in range(3)] + [first[0]]
    write_log(path, grown, mtime=datetime(2025, 12, 3, tzinfo=VN))
    result = run_import(gm, path, batch=2)
    assert (result.logins, result.new, result.duplicates) == (9, 3, 6)
    # The rotated, compressed copy adds nothing either; progress counts the bytes of the file read.
    rotated = write_log(tmp_path / "dovecot.log.1.gz", grown, mtime=datetime(2025, 12, 3, tzinfo=VN))
    read: list[int] = []
    assert (run_import(gm, rotated, progress=read.append).new, len(logins(gm))) == (0, 8)
    assert sum(read) == rotated.stat().st_size


def test_unfinished_last_line_waits_for_the_next_import(gm: Govmail, tmp_path: Path) -> None:
    make_accounts(gm)
    path = tmp_path / "dovecot.log"
    whole, partial = login("Dec 01 10:00:00", "lamnt", 1), login("Dec 01 10:00:01", "lamnt", 2)
    path.write_text(f"{whole}\n{partial[:-8]}", encoding="utf-8")
    result = run_import(gm, path, year=2025)
    assert (result.new, result.unfinished) == (1, 1)
    path.write_text(f"{whole}\n{partial}\n", encoding="utf-8")
    assert run_import(gm, path, year=2025).new == 1


def test_bad_arguments_are_invalid_input(gm: Govmail, tmp_path: Path) -> None:
    path = write_log(tmp_path / "dovecot.log", [login("Dec 01 10:00:00", "lamnt")])
    with gm.session() as session:
        with pytest.raises(InvalidInput, match="Mars/Olympus"):
            import_dovecot_log(session, gm.settings, path, tz="Mars/Olympus")
        with pytest.raises(InvalidInput, match="year"):
            import_dovecot_log(session, gm.settings, path, year=25)
        broken = tmp_path / "broken.log.gz"
        broken.write_bytes(gzip.compress(login("Dec 01 10:00:00", "lamnt").encode() * 1000)[:-20])
        with pytest.raises(InvalidInput, match="broken.log.gz.*cannot be read to the end"):
            import_dovecot_log(session, gm.settings, broken, year=2025)


# -- the command line -------------------------------------------------------------------------------------

def test_cli_summary_and_errors(gm: Govmail, tmp_path: Path) -> None:
    make_accounts(gm)
    path = write_log(tmp_path / "dovecot.log", [
        login("Dec 01 10:00:00", "lamnt", 1), login("Dec 01 10:00:01", "stranger", 2),
    ], mtime=datetime(2025, 12, 1, 18, tzinfo=VN))
    result = gm.cli("--format", "json", "usage", "import-log", str(path), "--timezone", "UTC",
                    "--format", "dovecot")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary == {
        "file": str(path), "lines": 2, "logins": 2, "new": 1, "duplicates": 0, "unknown": 1,
        "unknown_users": 1, "unknown_examples": {"stranger": 1}, "unreadable": 0,
        "first_login": "2025-12-01T10:00:00+00:00", "last_login": "2025-12-01T10:00:00+00:00",
    }
    assert "skipped 1 login(s) by 1 user(s) govmail does not know: stranger" in result.stderr
    table = gm.cli("usage", "import-log", str(path), "--year", "2025")
    assert table.exit_code == 0 and "duplicates" in table.stdout and "stranger (1)" in table.stdout
    again = gm.cli("usage", "import-log", str(path), "--format", "json")
    assert again.exit_code == 0 and json.loads(again.stdout)["duplicates"] == 1

    missing = tmp_path / "nowhere" / "dovecot.log"
    result = gm.cli("usage", "import-log", str(missing))
    assert result.exit_code == 2
    assert str(missing) in result.stderr and "No such file" in result.stderr
    result = gm.cli("usage", "import-log", str(path), "--timezone", "Hanoi")
    assert result.exit_code == 2 and "'Hanoi'" in result.stderr and "time zone" in result.stderr
    assert len(logins(gm)) == 1
