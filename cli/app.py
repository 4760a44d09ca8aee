"""What every command shares: settings, one transaction per command, output and error mapping."""

from __future__ import annotations

import csv
import getpass
import io
import json
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import click
from sqlalchemy.orm import Session, sessionmaker

from directory.ldap import Directory
from provisioning import outbox
from provisioning.audit import Actor
from provisioning.config import Settings, load_settings
from provisioning.csvinput import safe_cell
from provisioning.db import make_engine, session_factory
from provisioning.errors import ConfigError, DirectoryUnavailable, GovmailError, InvalidInput

FORMATS = ("table", "csv", "json")
# Exit codes (design): 0 ok, 1 some items failed, 2 usage or configuration error.
EXIT_FAILED, EXIT_USAGE = 1, 2


@dataclass
class App:
    """Per-invocation state, built lazily from the global options."""

    config_path: Path | None
    fmt: str
    actor: Actor = field(default_factory=lambda: Actor(name=getpass.getuser(), source="cli"))

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_path)

    @cached_property
    def factory(self) -> sessionmaker[Session]:
        db = self.settings.database
        return session_factory(make_engine(db.url, db.echo, db.lock_timeout))

    def close(self) -> None:
        """Release database connections (called when the command ends)."""
        if "factory" in self.__dict__:
            self.factory.kw["bind"].dispose()

    @cached_property
    def directory(self) -> Directory:
        return Directory(self.settings.directory)

    @contextmanager
    def unit(self) -> Iterator[Session]:
        """One transaction: committed when the command's work succeeds, rolled back on an error
        or when the command called :func:`discard` (dry runs, all-or-nothing imports)."""
        with self.factory() as session:
            try:
                yield session
            except BaseException:
                session.rollback()
                raise
            if session.info.pop("discard", False):
                session.rollback()
            else:
                session.commit()

    def publish(self) -> None:
        """Publish queued directory changes now, if configured; a directory outage only warns."""
        if not self.settings.directory.sync_after_change:
            return
        from directory.sync import sync

        try:
            result = sync(self.factory, self.directory)
        except DirectoryUnavailable as exc:
            with self.factory() as session:
                waiting = outbox.pending_count(session)
            warn(f"{exc}\n{waiting} change(s) are queued and will be published by: govmail directory sync")
            return
        for error in result.errors:
            warn(f"directory refused {error} (will retry; see: govmail doctor)")

    def emit(self, data: dict[str, Any] | Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
        """Print one record or a list of records in the chosen format."""
        click.echo(render(data, self.fmt, columns), nl=False)


@contextmanager
def progress(label: str, length: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal's stderr (nothing when stderr is a file or pipe)."""
    if not sys.stderr.isatty():
        yield lambda _n: None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield bar.update


def discard(session: Session) -> None:
    """Make :meth:`App.unit` roll back instead of committing."""
    session.info["discard"] = True


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def render(data: dict[str, Any] | Sequence[dict[str, Any]], fmt: str, columns: Sequence[str] | None = None) -> str:
    """Records as ``table``, ``csv`` or ``json`` text (JSON keeps Vietnamese text as written)."""
    if fmt == "json":
        return json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n"
    rows = [data] if isinstance(data, dict) else list(data)
    if isinstance(data, dict) and fmt == "table":
        width = max((len(k) for k in data), default=0)
        return "".join(f"{k:<{width}}  {_text(v)}\n" for k, v in data.items())
    cols = list(columns or (rows[0].keys() if rows else []))
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(cols)
        writer.writerows([safe_cell(r.get(c)) for c in cols] for r in rows)
        return buf.getvalue()
    if not rows:
        return "(none)\n"
    cells = [[_text(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(cols, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines) + "\n"


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def read_password_stdin() -> str:
    """One line from standard input, without its newline (for --password-stdin)."""
    line = sys.stdin.readline()
    if not line.strip():
        raise InvalidInput("password", None, "nothing was read from standard input",
                           "pipe the password in, e.g. from a password manager")
    return line.rstrip("\r\n")


def write_private_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Write a CSV readable by its owner only (0600 from the start, never briefly wider).

    The last column (a generated password, which never starts with a formula character) is
    written as it is; the others are made safe for spreadsheets.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([*(safe_cell(v) for v in row[:-1]), row[-1]] for row in rows)


def exit_code_for(error: GovmailError) -> int:
    return EXIT_USAGE if isinstance(error, (InvalidInput, ConfigError)) else EXIT_FAILED


def is_lock_timeout(error: BaseException) -> bool:
    """SQLite's 'database is locked' or PostgreSQL's lock_timeout."""
    from sqlalchemy.exc import OperationalError

    text = str(getattr(error, "orig", "")).lower()
    return isinstance(error, OperationalError) and ("database is locked" in text or "lock timeout" in text)


def describe(error: Exception) -> str:
    """One line about an unexpected error, without the SQL parameters (they may hold password
    hashes) or a database's 'Failing row contains' detail."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(error, DBAPIError) and error.orig is not None:
        first = str(error.orig).strip().splitlines()[0] if str(error.orig).strip() else ""
        return f"{type(error.orig).__name__}: {first}"
    return f"{type(error).__name__}: {error}"


class GovmailGroup(click.Group):
    """A click group that turns govmail errors into one plain line and the design's exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GovmailError as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(exit_code_for(error))
        except (click.exceptions.Exit, click.ClickException, SystemExit, KeyboardInterrupt):
            raise
        except Exception as error:
            if is_lock_timeout(error):
                click.echo("error: the database is busy: another writer held its lock longer than "
                           "[database] lock_timeout. What this step was writing was rolled back; "
                           "run the same command again.", err=True)
                ctx.exit(EXIT_FAILED)
            if os.environ.get("GOVMAIL_DEBUG"):
                raise
            click.echo(f"internal error: {describe(error)}\n"
                       "Nothing was committed by the failed step. Run again with GOVMAIL_DEBUG=1 "
                       "for the traceback and report it.", err=True)
            ctx.exit(EXIT_FAILED)
