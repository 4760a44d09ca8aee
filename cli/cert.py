"""``govmail cert ...``: digital certificates bound to officials and agencies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import click
from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from cli.app import EXIT_FAILED, App, discard, warn
from provisioning import cert_bulk, cert_reminders, certificates, trust
from provisioning.errors import GovmailError
from provisioning.models import AuditEntry

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group()
def cert() -> None:
    """Digital certificates: bind them to officials and agencies, check them, remind holders.

    \b
    Example:
      govmail cert bind lamnt.cer --account lamnt@vinhphuc.gov.vn
      govmail cert list --expiring 30d
      govmail cert check
    """


def _fetch_crls(app: App, store: trust.TrustStore, leaves: Iterable[x509.Certificate] | None) -> list[tuple[str, bytes]]:
    """With ``fetch_crl`` on: download the CRLs worth refreshing (outside any transaction, so no
    database lock is held while the network answers). Failures only warn: imported CRLs still count."""
    if not app.settings.certificates.fetch_crl:
        return []
    with app.factory() as session:
        urls = certificates.crl_sources(session, leaves)
    fetched = []
    for url in urls:
        try:
            fetched.append((url, trust.fetch(url, app.settings.certificates.crl_timeout)))
        except (OSError, ValueError) as exc:
            warn(f"could not fetch the CRL at {url} ({type(exc).__name__}); using the CRLs already imported")
    return fetched


def _import_fetched(app: App, session: Session, store: trust.TrustStore, fetched: list[tuple[str, bytes]]) -> None:
    for url, data in fetched:
        try:
            with session.begin_nested():
                certificates.import_crl(session, app.actor, store, data, url)
        except GovmailError as exc:
            warn(f"ignored the CRL fetched from {url}: {exc}")


@cert.command("bind")
@click.argument("file", type=FILE)
@click.option("--account", help="Address (or local part) of the official.")
@click.option("--agency", help="Code of the agency.")
@click.pass_obj
def cert_bind(app: App, file: Path, account: str | None, agency: str | None) -> None:
    """Bind the certificate in FILE (PEM, DER or PKCS#7) to an official or an agency.

    Only a valid certificate is bound: trusted chain, within its dates, not revoked, made for
    signing, and (if it carries an e-mail address) issued to that holder. It is then published on
    the holder's directory entry.

    \b
    Example:
      govmail cert bind lamnt.cer --account lamnt@vinhphuc.gov.vn
      govmail cert bind skhdt.p7b --agency 000.00.15.H62
    """
    store = trust.load_trust_store(app.settings)
    parsed = certificates.parse(trust.read_file(file), str(file))
    fetched = _fetch_crls(app, store, [parsed.leaf])
    with app.unit() as session:
        _import_fetched(app, session, store, fetched)
        holder = certificates.resolve_holder(session, account, agency)
        view = certificates.snapshot(certificates.bind(session, app.actor, store, parsed, holder))
    app.publish()
    app.emit(view)


@cert.command("unbind")
@click.argument("key")
@click.pass_obj
def cert_unbind(app: App, key: str) -> None:
    """Unbind a certificate (by fingerprint, its first 8+ hex digits, or serial); it leaves the directory.

    \b
    Example:
      govmail cert unbind 3f9a1c2e7b004d51
    """
    with app.unit() as session:
        view = certificates.snapshot(certificates.unbind(session, app.actor, key))
    app.publish()
    app.emit(view)


@cert.command("show")
@click.argument("key")
@click.pass_obj
def cert_show(app: App, key: str) -> None:
    """Show one certificate and its binding (by fingerprint, prefix or serial).

    \b
    Example:
      govmail cert show 3f9a1c2e7b004d51 --format json
    """
    with app.unit() as session:
        view = certificates.snapshot(certificates.get_certificate(session, key))
    app.emit(view)


@cert.command("history")
@click.argument("key")
@click.pass_obj
def cert_history(app: App, key: str) -> None:
    """Every bind, unbind, status change and reminder of one certificate, oldest first.

    \b
    Example:
      govmail cert history 3f9a1c2e7b004d51 --format json
    """
    with app.unit() as session:
        found = certificates.get_certificate(session, key)
        entries = session.scalars(select(AuditEntry).where(AuditEntry.object_kind == "certificate",
                                                           AuditEntry.object_id == found.id).order_by(AuditEntry.id))
        rows = [{"at": e.at.isoformat(timespec="seconds"), "action": e.action, "actor": e.actor, "source": e.source,
                 "label": e.object_label, "before": json.loads(e.before) if e.before else None,
                 "after": json.loads(e.after) if e.after else None} for e in entries]
    app.emit(rows, ["at", "action", "actor", "source", "label"])


@cert.command("list")
@click.option("--agency", "agency_code", help="Only certificates of this agency and its officials.")
@click.option("--expiring", help="Only those expiring within this many days, e.g. 30d.")
@click.option("--status", type=click.Choice(certificates.STATUSES), help="Only certificates with this status.")
@click.option("--all", "include_unbound", is_flag=True, help="Include certificates that were unbound.")
@click.pass_obj
def cert_list(app: App, agency_code: str | None, expiring: str | None, status: str | None, include_unbound: bool) -> None:
    """List bound certificates, soonest expiry first.

    \b
    Example:
      govmail cert list --agency 000.00.15.H62 --expiring 30d
      govmail cert list --status revoked --format csv
    """
    days = certificates.parse_days(expiring) if expiring is not None else None
    with app.unit() as session:
        rows = [certificates.row(c) for c in certificates.list_certificates(
            session, agency=agency_code, expiring_days=days, status=status, include_unbound=include_unbound)]
    app.emit(rows, certificates.LIST_COLUMNS)


@cert.command("import-crl")
@click.argument("file", type=FILE)
@click.pass_obj
def cert_import_crl(app: App, file: Path) -> None:
    """Import a CRL (PEM or DER) of a configured authority; certificates it lists become revoked.

    \b
    Example:
      govmail cert import-crl ca-subordinate.crl
    """
    store = trust.load_trust_store(app.settings)
    data = trust.read_file(file)
    with app.unit() as session:
        summary = certificates.import_crl(session, app.actor, store, data, str(file))
    app.publish()
    if not summary["imported"]:
        warn(f"a CRL of {summary['issuer']} as new or newer (this update {summary['this_update']}) is already "
             f"imported; nothing changed")
    app.emit(summary)


@cert.command("check")
@click.pass_obj
def cert_check(app: App) -> None:
    """Re-validate every bound certificate: dates, chain, revocation (daily, from cron).

    Expired, revoked and no longer trusted certificates are recorded and leave the directory.
    With [certificates] fetch_crl, CRLs are first fetched from the distribution points.

    \b
    Example:
      govmail cert check --format json
    """
    store = trust.load_trust_store(app.settings)
    fetched = _fetch_crls(app, store, None)
    with app.unit() as session:
        _import_fetched(app, session, store, fetched)
        rows = certificates.check(session, app.actor, store)
    app.publish()
    app.emit(rows, [*certificates.LIST_COLUMNS, "changed"])
    bad = sum(1 for r in rows if r["status"] != "valid")
    click.echo(f"{len(rows)} checked, {sum(r['changed'] for r in rows)} changed, {bad} not valid.", err=True)


@cert.command("remind")
@click.option("--dry-run", is_flag=True, help="List the reminders that are due; send nothing.")
@click.pass_obj
def cert_remind(app: App, dry_run: bool) -> None:
    """E-mail holders and their agency about certificates expiring soon, once per window (from cron).

    Windows come from [certificates] reminder_windows (default 30, 14 and 7 days).

    \b
    Example:
      govmail cert remind --dry-run
      govmail cert remind
    """
    with app.factory() as session:
        due = cert_reminders.due(session, app.settings)
    sendable = [r for r in due if r.recipients]
    errors = [] if dry_run else cert_reminders.deliver(
        app.settings, [cert_reminders.compose(app.settings, r) for r in sendable])
    outcome = dict(zip((r.fingerprint for r in sendable), errors))
    if not dry_run:
        with app.unit() as session:
            for reminder in sendable:
                if not outcome[reminder.fingerprint]:
                    cert_reminders.record(session, app.actor, reminder)
    rows = []
    for reminder in due:
        result = ("would send" if dry_run else outcome[reminder.fingerprint] or "sent") if reminder.recipients \
            else "no recipient"
        rows.append({**reminder.view(), "result": result})
    app.emit(rows, ["holder", "not_after", "days_left", "window", "recipients", "result"])
    failed = sum(1 for r in rows if r["result"] not in ("sent", "would send"))
    if failed:
        click.echo(f"{failed} reminder(s) were not sent; they will be tried again on the next run.", err=True)
        raise SystemExit(EXIT_FAILED)


@cert.command("bulk-bind")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Validate every row and show what would happen; write nothing.")
@click.pass_obj
def cert_bulk_bind(app: App, source: Path, dry_run: bool) -> None:
    """Bind many certificates: SOURCE is a folder of files named after their holder, or a CSV
    with columns file and account or agency. All or nothing; safe to run again.

    \b
    Example:
      govmail cert bulk-bind certificates/ --dry-run
      govmail cert bulk-bind holders.csv
    """
    store = trust.load_trust_store(app.settings)
    items = cert_bulk.read_source(source)
    with app.unit() as session:
        rows = cert_bulk.bulk_bind(session, app.actor, store, items)
        failed = sum(1 for r in rows if r["action"] == "error")
        if failed or dry_run:
            discard(session)
    app.emit(rows, cert_bulk.COLUMNS)
    if failed:
        click.echo(f"{failed} row(s) have errors; nothing was bound. Fix them and run again.", err=True)
        raise SystemExit(EXIT_FAILED)
    if not dry_run:
        app.publish()
