"""``govmail doctor``: checks configuration, database, directory, outbox and the usage rollup, and says
how to fix them."""

from __future__ import annotations

from typing import Callable

import click
from sqlalchemy import func, select

from cli.app import EXIT_FAILED, App
from directory.embedded import local_slapd
from provisioning.db import schema_status
from provisioning.errors import GovmailError
from provisioning import notify, roles, secretbox, usage_rollup
from provisioning.models import Notification, OutboxEntry, TotpCredential, UsageEvent, UsageRollupState, utcnow

Check = tuple[str, str, str]  # (status ok|warn|fail, detail, fix)


def _config(app: App) -> Check:
    s = app.settings
    if s.config_file is None:
        return "warn", "no configuration file; built-in defaults", "govmail init --data-dir DIR; export GOVMAIL_CONFIG=DIR/govmail.toml"
    if not s.directory.bind_password:
        return "fail", f"no bind password ({s.path(s.directory.bind_password_file)})", "write it to that file (mode 0600) or set GOVMAIL_DIRECTORY_BIND_PASSWORD"
    return "ok", str(s.config_file), ""


def _database(app: App) -> Check:
    current, head = schema_status(app.factory.kw["bind"])
    where = app.settings.database.url.split("@")[-1]
    if current != head:
        return "fail", f"{where}: schema at {current or 'none'}, code expects {head}", "govmail up (applies migrations)"
    return "ok", f"{where}: schema {head}", ""


def _embedded(app: App) -> Check:
    if not app.settings.directory.embedded:
        return "ok", "external directory (not managed by govmail)", ""
    server = local_slapd(app.settings)
    if not server.is_running():
        return "fail", f"embedded slapd not running (log: {server.log_file})", "govmail up"
    return "ok", f"embedded slapd pid {server.pid()}", ""


def _directory(app: App) -> Check:
    with app.directory.connect() as conn:
        conn.search("cn=Subschema", "(objectClass=subschema)", search_scope="BASE", attributes=["objectClasses"])
        classes = " ".join(str(v) for v in conn.response[0]["attributes"].get("objectClasses", []))
    missing = [c for c in ("govmailAccount", "govmailAgency") if f"'{c}'" not in classes]
    if missing:
        return "fail", f"schema lacks {', '.join(missing)}", "load directory/schema/govmail.ldif (see docs/directory.md)"
    return "ok", f"bound as {app.settings.directory.bind_dn}; govmail schema loaded", ""


def _outbox(app: App) -> Check:
    with app.factory() as session:
        count, oldest, failing = session.execute(select(
            func.count(), func.min(OutboxEntry.created_at), func.count(OutboxEntry.last_error))).one()
        last_error = session.scalar(select(OutboxEntry.last_error).where(OutboxEntry.last_error.is_not(None)).limit(1))
    if not count:
        return "ok", "no changes waiting", ""
    age = utcnow() - (oldest if oldest.tzinfo else oldest.replace(tzinfo=utcnow().tzinfo))
    detail = f"{count} change(s) waiting, oldest {int(age.total_seconds())} s"
    if failing:
        return "fail", f"{detail}; {failing} failing, e.g. {last_error}", "fix the cause, then: govmail directory sync"
    return ("warn" if age.total_seconds() > 300 else "ok"), detail, "govmail directory sync"


def _usage(app: App) -> Check:
    with app.factory() as session:
        watermark = session.scalar(select(UsageRollupState.watermark).where(UsageRollupState.name == usage_rollup.STATE))
        query = select(func.count(), func.min(UsageEvent.at)).where(UsageEvent.direction != "received")
        waiting, oldest = session.execute(query if watermark is None else query.where(UsageEvent.at > watermark)).one()
    if not waiting:
        return "ok", (f"up to date (events to {watermark:%Y-%m-%d %H:%M} UTC)" if watermark else "no usage events yet"), ""
    age = utcnow() - oldest
    detail = f"{waiting} sent event(s) not in the statistics rollup yet, oldest {age.days} day(s) {age.seconds // 3600} h"
    return ("warn" if age.days >= 1 else "ok"), detail, "govmail usage refresh (hourly, from cron)"


def _portal(app: App) -> Check:
    key_file = app.settings.path(app.settings.portal.secret_key_file)
    with app.factory() as session:
        enrolled = session.scalar(select(func.count()).select_from(TotpCredential)) or 0
        admins = len(roles.province_admin_addresses(session))
        waiting = notify.pending_count(session)
        failing = session.scalar(select(func.count()).select_from(Notification).where(
            Notification.sent_at.is_(None), Notification.last_error.is_not(None))) or 0
    if not key_file.exists():
        if enrolled:
            return "fail", f"portal key {key_file} missing; {enrolled} TOTP enrolment(s) cannot be read", \
                "restore the key file from the backup"
        return "ok", "portal not started yet (its key is created on first run)", "govmail portal run"
    secretbox.load(app.settings, create=False)
    if not admins:
        return "warn", "no province administrator", "govmail portal grant ADDRESS"
    if failing:
        return "warn", f"{waiting} notification e-mail(s) waiting, {failing} failing", \
            "check [gateway] relay_host, then: govmail portal notify"
    return "ok", f"{admins} province administrator(s); {waiting} notification(s) waiting", ""


CHECKS: list[tuple[str, Callable[[App], Check]]] = [
    ("configuration", _config), ("database", _database), ("embedded slapd", _embedded),
    ("directory", _directory), ("outbox", _outbox), ("usage rollup", _usage), ("portal", _portal),
]


@click.command()
@click.pass_obj
def doctor(app: App) -> None:
    """Check configuration, database, directory (connection and schema), the outbox backlog,
    whether the usage statistics are refreshed, and the portal (its key, administrators, e-mails).

    Exit code 1 when a check fails; each failure says how to fix it.

    \b
    Example:
      govmail doctor --format json
    """
    rows = []
    for name, check in CHECKS:
        try:
            status, detail, fix = check(app)
        except GovmailError as exc:
            status, detail, fix = "fail", str(exc), ""
        except Exception as exc:  # a check must report, never crash the doctor
            status, detail, fix = "fail", f"{type(exc).__name__}: {exc}", ""
        rows.append({"check": name, "status": status, "detail": detail, "fix": fix})
    app.emit(rows, ["check", "status", "detail", "fix"])
    if any(r["status"] == "fail" for r in rows):
        raise SystemExit(EXIT_FAILED)
