"""``govmail directory ...``: the embedded slapd, the outbox syncer, verify and reconcile."""

from __future__ import annotations

import click

from cli.app import EXIT_FAILED, App, progress
from directory.embedded import local_slapd
from directory import reconcile
from directory.sync import sync
from provisioning import outbox


@click.group()
def directory() -> None:
    """The LDAP directory: run the embedded server, publish, verify, reconcile.

    \b
    Example:
      govmail directory sync
      govmail directory reconcile --repair
    """


def start_embedded(app: App) -> None:
    """Start the embedded slapd unless it already runs."""
    server = local_slapd(app.settings)
    if server.is_running():
        click.echo(f"slapd already running (pid {server.pid()}) at {server.url}", err=True)
        return
    server.start()
    click.echo(f"slapd started (pid {server.pid()}) at {server.url}; data in {server.config.state_dir}", err=True)


@directory.command("start")
@click.pass_obj
def directory_start(app: App) -> None:
    """Start the embedded slapd (a no-op when it runs already).

    \b
    Example:
      govmail directory start
    """
    start_embedded(app)


@directory.command("stop")
@click.pass_obj
def directory_stop(app: App) -> None:
    """Stop the embedded slapd.

    \b
    Example:
      govmail directory stop
    """
    server = local_slapd(app.settings)
    was = server.pid()
    server.stop()
    click.echo(f"slapd stopped (was pid {was})" if was else "slapd was not running")


@directory.command("status")
@click.pass_obj
def directory_status(app: App) -> None:
    """Whether the directory answers, and how many changes wait to be published.

    \b
    Example:
      govmail directory status --format json
    """
    d = app.settings.directory
    view: dict[str, object] = {"urls": list(d.urls), "base_dn": d.base_dn, "embedded": d.embedded}
    if d.embedded:
        server = local_slapd(app.settings)
        view["running"] = server.is_running()
        view["pid"] = server.pid()
    with app.factory() as session:
        view["outbox_pending"] = outbox.pending_count(session)
    app.emit(view)


@directory.command("sync")
@click.pass_obj
def directory_sync(app: App) -> None:
    """Publish every queued change to LDAP (safe to run any time, e.g. from cron).

    \b
    Example:
      govmail directory sync
    """
    with app.factory() as session:
        pending = outbox.pending_count(session)
    with progress("publishing", pending) as update:
        result = sync(app.factory, app.directory, progress=update)
    view = {"applied": result.applied, "failed": result.failed, "remaining": result.remaining,
            "errors": result.errors}
    app.emit(view)
    if result.failed:
        raise SystemExit(EXIT_FAILED)


def _drift_report(app: App) -> list:
    drift = reconcile.find_drift(app.factory, app.directory)
    if app.fmt == "table" and not drift:
        click.echo("The directory matches the system of record.")
    else:
        app.emit([d.as_dict() for d in drift], ["problem", "kind", "label", "dn", "detail"])
    return drift


@directory.command("verify")
@click.pass_obj
def directory_verify(app: App) -> None:
    """Check that LDAP matches SQL; exit 1 listing every difference (changes nothing).

    \b
    Example:
      govmail directory verify --format json
    """
    if _drift_report(app):
        raise SystemExit(EXIT_FAILED)


@directory.command("reconcile")
@click.option("--repair", is_flag=True, help="Make LDAP match SQL (default: only report).")
@click.pass_obj
def directory_reconcile(app: App, repair: bool) -> None:
    """Find drift between SQL and LDAP (missing, changed, moved or unknown entries) and, with
    --repair, fix it. Unknown entries under ou=people and ou=agencies are deleted on repair.

    \b
    Example:
      govmail directory reconcile            # report only
      govmail directory reconcile --repair
    """
    drift = reconcile.find_drift(app.factory, app.directory)
    if not repair:
        app.emit([d.as_dict() for d in drift], ["problem", "kind", "label", "dn", "detail"])
        if drift:
            click.echo(f"{len(drift)} difference(s); run with --repair to fix them.", err=True)
        return
    outcomes = reconcile.repair(app.directory, drift)
    app.emit([{**d.as_dict(), "outcome": outcome} for d, outcome in outcomes],
             ["problem", "kind", "label", "outcome", "detail"])
    if any(o.startswith("failed") for _, o in outcomes):
        raise SystemExit(EXIT_FAILED)
