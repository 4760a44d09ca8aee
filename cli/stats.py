"""``govmail stats ...``: figures for the province's annual report."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterator

import click
from xlsxwriter.exceptions import FileCreateError

from cli.app import App, render
from provisioning import cert_stats, usage_export, usage_stats
from provisioning.errors import InvalidInput
from provisioning.workcalendar import parse_period

DORMANT_COLUMNS = ("agency", "address", "full_name", "last_active", "idle_days")


@click.group()
def stats() -> None:
    """Statistics for the annual report.

    \b
    Example:
      govmail stats certificates --by level --format csv
    """


@stats.command("certificates")
@click.option("--by", type=click.Choice(["agency", "level"]), default="agency", show_default=True,
              help="One row per agency, or per level with a total.")
@click.pass_obj
def stats_certificates(app: App, by: str) -> None:
    """Agencies, officials and leaders holding a valid digital certificate.

    Run `govmail cert check` first so that expired and revoked certificates are not counted.

    \b
    Example:
      govmail stats certificates --format csv > certificates.csv
      govmail stats certificates --by level
    """
    with app.unit() as session:
        rows = cert_stats.certificate_stats(session, app.settings, by)
    app.emit(rows, cert_stats.AGENCY_COLUMNS if by == "agency" else cert_stats.LEVEL_COLUMNS)


@stats.command("regular-use")
@click.option("--period", required=True, help="2025, 2025-Q3, 2025-11 or FROM..TO (e.g. 2025-01-01..2025-06-30).")
@click.option("--by", type=click.Choice(usage_stats.BREAKDOWNS), default="agency", show_default=True,
              help="One total for the province, or rows per level, per agency or per account.")
@click.option("--agency", help="Only this agency and the agencies below it.")
@click.option("--compare", is_flag=True, help="Add the same period a year earlier and the change in points.")
@click.option("--min-size", type=click.IntRange(min=0),
              help="Leave out the rates of agencies with fewer eligible officials (default: [stats] min_agency_size).")
@click.option("--lang", type=click.Choice(["en", "vi"]), default="en", show_default=True,
              help="Column headers and level names for csv and xlsx (vi: as in the annual report).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "xlsx"]),
              help="Output format (xlsx needs --output).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file instead of stdout.")
@click.pass_obj
def regular_use(app: App, period: str, by: str, agency: str | None, compare: bool, min_size: int | None, lang: str,
                fmt: str | None, output: Path | None) -> None:
    """Share of officials who have an official mailbox and who regularly use it.

    The measure and its thresholds are in docs/statistics.md ([stats] in the configuration).
    Rows per account are shown only with --by account.

    \b
    Example:
      govmail stats regular-use --period 2025 --by level
      govmail stats regular-use --period 2025 --by agency --compare --lang vi --format xlsx --output bao-cao-2025.xlsx
      govmail stats regular-use --period 2025-Q3 --agency 000.00.15.H62 --by account --format csv
    """
    fmt = fmt or app.fmt
    if fmt == "xlsx" and output is None:
        raise InvalidInput("--output", None, "is needed for --format xlsx", "e.g. --output regular-use-2025.xlsx")
    with app.unit() as session:
        report = usage_stats.regular_use(session, app.settings, parse_period(period), by, agency=agency,
                                         compare=compare, min_size=min_size, trend=fmt == "xlsx")
    if fmt == "xlsx":
        assert output is not None
        with _writing("--output", output):
            usage_export.write_xlsx(output, report, lang)
        click.echo(f"wrote {output}")
        return
    rows, columns = report.rows, report.columns
    if fmt != "json" and (lang == "vi" or fmt == "csv"):  # JSON keeps its keys for scripts
        names = usage_export.headers(columns, lang, by=by)
        rows = [{name: _cell(row, key, lang) for name, key in zip(names, columns)} for row in rows]
        columns = names
    text = render(rows, fmt, columns)
    if output is None:
        click.echo(text, nl=False)
    else:
        with _writing("--output", output):
            output.write_text(text, encoding="utf-8-sig" if fmt == "csv" else "utf-8")
        click.echo(f"wrote {output}")


@contextmanager
def _writing(option: str, path: Path) -> Iterator[None]:
    """Turn a file that cannot be written into a usage error naming it."""
    try:
        yield
    except (OSError, FileCreateError) as exc:
        reason = getattr(exc.args[0] if isinstance(exc, FileCreateError) else exc, "strerror", None) or str(exc)
        raise InvalidInput(option, str(path), f"cannot be written ({reason})",
                           "choose a folder that exists and that you may write to") from None


def _cell(row: dict[str, Any], key: str, lang: str) -> Any:
    """A level's name (and the total row's) in ``lang``; everything else as it is."""
    value = row[key]
    if key == "level" or key == "name" and row.get("key") == value:
        return usage_export.level_label(value, lang)
    return value


@stats.command("dormant")
@click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), help="The day to look back from (default: today).")
@click.option("--days", type=click.IntRange(min=1), help="Days without activity (default: [stats] dormant_days).")
@click.option("--agency", help="Only this agency and the agencies below it.")
@click.pass_obj
def dormant(app: App, as_of: datetime | None, days: int | None, agency: str | None) -> None:
    """Personal mailboxes nobody has used for a while (no send, no login), longest idle first.

    \b
    Example:
      govmail stats dormant --agency 000.00.15.H62
      govmail stats dormant --days 180 --format csv > dormant.csv
    """
    settings = app.settings
    if days is not None:
        settings = dataclasses.replace(settings, stats=dataclasses.replace(settings.stats, dormant_days=days))
    with app.unit() as session:
        rows = usage_stats.dormant_list(session, settings, as_of.date() if as_of else date.today(), agency)
    app.emit(rows, DORMANT_COLUMNS)


@stats.command("chart")
@click.option("--period", required=True, help="2025, 2025-Q3, 2025-11 or FROM..TO.")
@click.option("--agency", help="Only this agency and the agencies below it.")
@click.option("--lang", type=click.Choice(["en", "vi"]), default="en", show_default=True)
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."), show_default=True,
              help="Folder for the PNG files (created if missing).")
@click.pass_obj
def chart(app: App, period: str, agency: str | None, lang: str, output_dir: Path) -> None:
    """PNG charts: regular use by level, by agency, and the monthly trend.

    \b
    Example:
      govmail stats chart --period 2025 --lang vi --output-dir charts/
    """
    with app.unit() as session:
        report = usage_stats.regular_use(session, app.settings, parse_period(period), "agency", agency=agency,
                                         trend=True)
    with _writing("--output-dir", output_dir):
        paths = usage_export.write_charts(output_dir, report, lang)
    app.emit([{"chart": str(p)} for p in paths], ["chart"])
