"""``govmail stats ...``: figures for the province's annual report."""

from __future__ import annotations

import click

from cli.app import App
from provisioning import cert_stats


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
