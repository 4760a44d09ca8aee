"""``govmail usage ...``: bring usage data from the mail servers into the statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.app import FORMATS, App, progress, warn
from provisioning import usage_logs, usage_rollup

SHOWN_UNKNOWN = 10
LOG_FORMATS = ("dovecot",)


@click.group()
def usage() -> None:
    """Usage data for the regular-use statistics (mailbox logins from the mail store's log).

    \b
    Example:
      govmail usage import-log /var/log/dovecot.log
    """


def _format(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """``--format`` names the log's format or the output's: only the output's needs keeping."""
    if value in FORMATS:
        ctx.find_object(App).fmt = value


@usage.command("import-log")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--format", type=click.Choice([*LOG_FORMATS, *FORMATS]), expose_value=False, callback=_format,
              help="dovecot: the log's format (Dovecot 2.3: its log_path file, syslog or journald; the default "
                   "and only one so far). table, csv or json: the output's.")
@click.option("--year", type=int, help="Year of the log's first line, for timestamps without a year "
              "(default: found from the file's modification time).")
@click.option("--timezone", "tz", help="Time zone of timestamps without one (default: [stats] timezone).")
@click.pass_obj
def import_log(app: App, file: Path, year: int | None, tz: str | None) -> None:
    """Record the successful IMAP/POP3 logins in a Dovecot log FILE (plain or .gz).

    An official counts as active on a day they logged into their mailbox. Importing the same
    file again, or a later copy of a growing log, records nothing twice. Logins by users govmail
    does not know are skipped and listed. Formats and Dovecot settings: docs/statistics.md.

    \b
    Example:
      govmail usage import-log /var/log/dovecot.log --format dovecot
      govmail --format json usage import-log /var/log/dovecot.log.1 --year 2025
      journalctl -u dovecot -o short-iso > logins.log && govmail usage import-log logins.log
    """
    length = file.stat().st_size if file.is_file() else 0
    with app.unit() as session, progress(f"reading {file.name}", length) as update:
        result = usage_logs.import_dovecot_log(session, app.settings, file, year=year, tz=tz, progress=update)
    _warn(result)
    app.emit(_summary(app, result))


def _summary(app: App, result: usage_logs.ImportResult) -> dict[str, Any]:
    top = sorted(result.unknown_users.items(), key=lambda item: (-item[1], item[0]))[:SHOWN_UNKNOWN]
    shown: Any = dict(top) if app.fmt == "json" else [f"{user} ({count})" for user, count in top]
    return {
        "file": result.file, "lines": result.lines, "logins": result.logins, "new": result.new,
        "duplicates": result.duplicates, "unknown": result.unknown,
        "unknown_users": len(result.unknown_users), "unknown_examples": shown,
        "unreadable": result.unreadable,
        "first_login": result.first.isoformat() if result.first else None,
        "last_login": result.last.isoformat() if result.last else None,
    }


def _warn(result: usage_logs.ImportResult) -> None:
    if result.unknown:
        more = len(result.unknown_users) - SHOWN_UNKNOWN
        names = ", ".join(sorted(result.unknown_users, key=lambda u: -result.unknown_users[u])[:SHOWN_UNKNOWN])
        warn(f"skipped {result.unknown} login(s) by {len(result.unknown_users)} user(s) govmail does not "
             f"know: {names}{f' and {more} more' if more > 0 else ''}")
    if result.unreadable:
        warn(f"{result.unreadable} line(s) look like logins but their time or user could not be read "
             f"(first: line {result.first_unreadable}); is log_timestamp one of the formats in "
             "docs/statistics.md?")
    if result.unfinished:
        warn("the last line has no line end (still being written?); it is left for the next import")
    if result.lines and not result.logins and not result.unreadable:
        warn(f"no successful login lines in {result.file}: is it Dovecot's log, with its info lines?")


@usage.command("refresh")
@click.option("--rebuild", is_flag=True, help="Recompute everything from the stored events and logins.")
@click.pass_obj
def refresh(app: App, rebuild: bool) -> None:
    """Fold the gateway's new usage events into the daily and weekly rollup the reports read.

    Reports refresh first anyway; from cron (e.g. hourly) it keeps them quick. Events are folded in
    once they are two minutes old. --rebuild starts again from the stored events (after restoring
    a backup, say).

    \b
    Example:
      govmail usage refresh
      govmail usage refresh --rebuild --format json
    """
    with app.unit() as session, progress("usage events", usage_rollup.pending(session, rebuild)) as update:
        result = (usage_rollup.rebuild if rebuild else usage_rollup.refresh)(session, app.settings, progress=update)
    app.emit({"events": result.events, "days": result.days, "weeks": result.weeks, "rebuilt": result.rebuilt,
              "folded_up_to": result.watermark.isoformat(timespec="seconds") if result.watermark else None})
