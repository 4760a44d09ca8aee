"""Mailbox logins read from Dovecot's log, for the regular-use statistics.

Only successful logins count: lines ``<service>-login: [Info: ]Login: user=<...>, ...``, as written
by Dovecot 2.3 to its own ``log_path`` (``Dec 02 10:15:01 imap-login: Info: Login: ...``) or through
syslog/journald (``Dec  2 10:15:01 mailhost dovecot: imap-login: Login: ...``), with a syslog
timestamp (no year) or an ISO one (``2025-12-02T10:15:01.123456+07:00``, ``2025-12-02 10:15:01``).
Every other line (failed logins, mail processes, ...) is ignored.

Years of syslog timestamps: the first line is in ``year`` when given, else in the latest year that
puts it no later than one day after the file's modification time; after that each line takes the
year that puts it at the earliest moment not more than one day before the line above it (so
December followed by January moves to the next year, and a straggler from 31 December written just
after midnight stays in the old year). A log must therefore span less than a year.

Each login is stored once, keyed by the SHA-256 of its line: importing a file again, or a later
copy of a growing log, adds only the lines not seen before.
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from hashlib import sha256
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning.config import Settings
from provisioning.errors import InvalidInput
from provisioning.models import Account, Alias
from provisioning.usage_rollup import Login, Touched, record_logins, recompute_weeks

BATCH = 5000
_MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}
_STAMP = re.compile(
    r"(?P<ts>(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(?P<day>\d{1,2}) "
    r"(?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d)(?:\.\d+)?"
    r"|(?P<iso>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,6})?)(?P<off>Z|[+-]\d\d:?\d\d)?)\s+")
# Between the time and "-login: ": the service, after syslog's "host tag[pid]: " if any.
_SERVICE = re.compile(r"(?:\S+ [^\s:]+: )?([a-z][a-z0-9-]{0,15})")
_LOOKS_LIKE_LOGIN = re.compile(r"-login: (?:Info: )?Login: user=<")
_CLIENT = re.compile(r"[0-9A-Fa-f:.]{1,64}")
SLACK = timedelta(days=1)


@dataclass
class ImportResult:
    """What an import read: ``logins`` = ``new`` + ``duplicates`` + ``unknown``.

    ``unknown_users`` counts the skipped logins per user name govmail does not know;
    ``unreadable`` counts lines that look like logins but whose time or user cannot be read (the
    first one is line ``first_unreadable``); ``unfinished`` is 1 when the last line had no line end
    (still being written) and was left for the next import.
    """

    file: str
    lines: int = 0
    logins: int = 0
    new: int = 0
    duplicates: int = 0
    unknown: int = 0
    unknown_users: dict[str, int] = field(default_factory=dict)
    unreadable: int = 0
    first_unreadable: int | None = None
    unfinished: int = 0
    first: datetime | None = None
    last: datetime | None = None


class YearPlacer:
    """Gives year-less (syslog) timestamps their year, following the log line by line (see module doc)."""

    def __init__(self, year: int | None, reference: datetime | None) -> None:
        self.year = year
        self.reference = reference  # the file's modification time, local and naive
        self.previous: datetime | None = None
        self._day: tuple[int, int] = (0, 0)  # (month, day) of the last line placed ...
        self._year = 0  # ... and its year

    def place(self, month: int, day: int, hour: int, minute: int, second: int) -> int | None:
        """The year of a line's local time, or None when no year makes the date exist (29 Feb)."""
        if self._day == (month, day):
            return self._year
        if self.previous is not None:
            base, earliest = self.previous.year, self.previous - SLACK
            options = [_make(y, month, day, hour, minute, second) for y in (base - 1, base, base + 1)]
            found = next((t for t in options if t is not None and t >= earliest), None)
        elif self.year is not None:
            found = _make(self.year, month, day, hour, minute, second)
        else:
            ref = self.reference or datetime.now()
            options = [_make(y, month, day, hour, minute, second) for y in range(ref.year, ref.year - 5, -1)]
            found = next((t for t in options if t is not None and t <= ref + SLACK), None)
        if found is None:
            return None
        self.saw(found)
        return found.year

    def saw(self, local: datetime) -> None:
        """A line with a full date (ISO timestamp) moves the reference on."""
        self.previous = local.replace(tzinfo=None)
        self._day, self._year = (local.month, local.day), local.year


def _make(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime | None:
    try:
        return datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None


def zone(name: str) -> ZoneInfo:
    """The time zone called ``name``. :raises InvalidInput: not a time zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput("timezone", name, "is not a time zone", "e.g. Asia/Ho_Chi_Minh or UTC") from None


def address_map(session: Session) -> dict[str, str]:
    """Lower-case address, alias and bare local part of every account (any status) → account id."""
    users: dict[str, str] = {}
    for account_id, local_part, domain in session.execute(select(Account.id, Account.local_part, Account.domain)):
        users[f"{local_part}@{domain}".lower()] = account_id
        users.setdefault(local_part.lower(), account_id)
    for account_id, address in session.execute(select(Alias.account_id, Alias.address)):
        users.setdefault(address.lower(), account_id)
        users.setdefault(address.partition("@")[0].lower(), account_id)
    return users


class DovecotParser:
    """Reads Dovecot log lines: the time of every line (for the years), the logins in detail."""

    def __init__(self, tz: tzinfo, years: YearPlacer) -> None:
        self.tz = tz
        self.years = years
        self._head = ""
        self._stamp: tuple[str, datetime | None] = ("", None)  # the last timestamp's text and time

    def track(self, line: str) -> None:
        """Follow the date of a line that is not a login (only when it changed), for the years."""
        head = line[:10]
        if head != self._head:
            self._head = head
            self._time(line)

    def parse(self, line: str) -> tuple[datetime, str, str, str | None] | None:
        """(aware time, protocol, user, client address) of a successful login line, else None.

        A login is ``TIME [HOST TAG: ]SERVICE-login: [Info: ]Login: user=<USER>, ..., rip=ADDR, ...``.
        """
        stamp = self._time(line)
        marker = line.find("-login: ")
        if stamp is None or marker < stamp[1]:
            return None
        service = _SERVICE.fullmatch(line, stamp[1], marker)
        start = marker + 8 + (6 if line.startswith("Info: ", marker + 8) else 0)
        if service is None or not line.startswith("Login: user=<", start):
            return None
        end = line.find(">", start + 13)
        user = line[start + 13:end].strip() if end > 0 else ""
        self._head = line[:10]
        at = stamp[0]
        if at is None or not user:
            return None
        rip = line.find("rip=", end)
        client = _CLIENT.match(line, rip + 4) if rip > 0 and line[rip - 1] in ", " else None
        return at, service[1], user, client[0] if client else None

    def _time(self, line: str) -> tuple[datetime | None, int] | None:
        """(time or None when the date cannot exist, where the text after it starts) of a line that
        starts with a timestamp; None when it does not."""
        last, at = self._stamp
        if last and line.startswith(last):  # busy logs write many lines a second
            return at, len(last)
        match = _STAMP.match(line)
        if match is None:
            return None
        at = None
        if match["iso"] is None:
            month, day, hour, minute, second = (_MONTHS[match["mon"]], int(match["day"]), int(match["h"]),
                                                int(match["m"]), int(match["s"]))
            year = self.years.place(month, day, hour, minute, second)
            if year is not None:
                at = datetime(year, month, day, hour, minute, second, tzinfo=self.tz)
        else:
            try:
                at = datetime.fromisoformat(match["iso"].replace(",", ".") + (match["off"] or ""))
            except ValueError:
                pass
            else:
                at = at.replace(tzinfo=self.tz) if at.tzinfo is None else at
                self.years.saw(at.astimezone(self.tz))
        self._stamp = (match[0], at)
        return at, match.end()


def _open(path: Path) -> tuple[BinaryIO, TextIO, float]:
    """(raw file, text lines, modification time); gunzipped when the name ends in .gz.

    Lines are decoded with ``surrogateescape``, so bytes that are not UTF-8 survive and encode back
    to the very bytes of the file (the line hash), and line ends are kept as written.
    """
    try:
        mtime = path.stat().st_mtime
        raw = open(path, "rb")  # closed by the caller
    except OSError as exc:
        raise InvalidInput("file", str(path), f"cannot be read ({exc.strerror})", "check the path") from None
    binary: BinaryIO = gzip.GzipFile(fileobj=raw) if path.name.endswith(".gz") else raw  # type: ignore[assignment]
    return raw, io.TextIOWrapper(binary, "utf-8", "surrogateescape", newline=""), mtime


def _lines(path: Path, stream: TextIO) -> Iterator[str]:
    try:
        yield from stream
    except (OSError, EOFError, zlib.error) as exc:
        raise InvalidInput("file", str(path), f"cannot be read to the end ({exc})",
                           "give the log file itself, or a complete .gz copy of it") from None


def _printable(text: str) -> str:
    """``text`` with the bytes that were not UTF-8 shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def import_dovecot_log(
    session: Session, settings: Settings, path: Path, *, year: int | None = None, tz: str | None = None,
    progress: Callable[[int], None] | None = None, batch: int = BATCH,
) -> ImportResult:
    """Record the successful mailbox logins in Dovecot log ``path`` (plain or .gz), each line once.

    Read as a stream, ``batch`` logins at a time, into ``session``'s transaction (the caller commits).
    Times without a zone are local in ``tz`` (default ``[stats] timezone``); see the module doc for
    years. Logins by users govmail does not know are skipped and counted, not an error.
    ``progress`` is called with the number of bytes of the file read since its last call.

    :raises InvalidInput: the file is missing, unreadable or a broken .gz; ``year`` or ``tz`` is invalid.
    """
    if year is not None and not 1900 <= year <= 9998:
        raise InvalidInput("year", year, "is not a year", "e.g. 2025")
    local_zone = zone(tz or settings.stats.timezone)
    users = address_map(session)
    raw_file, stream, mtime = _open(path)
    reference = datetime.fromtimestamp(mtime, local_zone).replace(tzinfo=None)
    parser = DovecotParser(local_zone, YearPlacer(year, reference))
    result = ImportResult(file=str(path))
    pending: list[Login] = []
    touched: Touched = {}
    lines = logins = unknown = done = 0
    unknown_users = result.unknown_users
    first = last = None
    with raw_file, stream:
        for line in _lines(path, stream):
            lines += 1
            if progress is not None and lines % 10_000 == 0:
                done = _report(progress, raw_file, done)
            if "Login: user=<" not in line or "-login: " not in line:
                parser.track(line)
                continue
            if not line.endswith("\n"):
                result.unfinished = 1  # being written: its hash would change once it is complete
                continue
            line = line.rstrip("\r\n")
            found = parser.parse(line)
            if found is None:
                if _LOOKS_LIKE_LOGIN.search(line):
                    result.unreadable += 1
                    result.first_unreadable = result.first_unreadable or lines
                continue
            at, protocol, user, client = found
            logins += 1
            account_id = users.get(user.lower())
            if account_id is None:
                unknown += 1
                user = _printable(user)
                unknown_users[user] = unknown_users.get(user, 0) + 1
                continue
            if first is None or at < first:
                first = at
            if last is None or at > last:
                last = at
            line_hash = sha256(line.encode("utf-8", "surrogateescape")).hexdigest()
            pending.append(Login(account_id, at, protocol, client, line_hash))
            if len(pending) >= batch:
                result.new += record_logins(session, settings, pending, touched)
                pending = []
        result.new += record_logins(session, settings, pending, touched)
        recompute_weeks(session, touched)
        if progress is not None:
            _report(progress, raw_file, done)
    result.lines, result.logins, result.unknown, result.first, result.last = lines, logins, unknown, first, last
    result.duplicates = logins - unknown - result.new
    return result


def _report(progress: Callable[[int], None], raw_file: BinaryIO, done: int) -> int:
    position = raw_file.tell()
    progress(position - done)
    return position
