"""``govmail portal ...``: run the portal and /api/v1; manage administrators and API tokens."""

from __future__ import annotations

import os

import click

from cli.app import App
from provisioning import notify, roles, secretbox, signin
from provisioning.accounts import get_account
from provisioning.roles import Principal


@click.group()
def portal() -> None:
    """The agency self-service portal: run it, name its administrators, issue API tokens.

    \b
    Example:
      govmail portal grant nguyenvana@vinhphuc.gov.vn            # a province administrator
      govmail portal grant lamnt@vinhphuc.gov.vn --agency 000.00.15.H62
      govmail portal run
    """


def _province(app: App) -> Principal:
    return Principal(name=app.actor.name, source="cli", province=True)


@portal.command("run")
@click.option("--host", help="Address to listen on (default: [portal] host).")
@click.option("--port", type=int, help="Port (default: [portal] port).")
@click.option("--workers", type=int, help="Worker processes (default: [portal] workers; >1 needs PostgreSQL).")
@click.pass_obj
def run(app: App, host: str | None, port: int | None, workers: int | None) -> None:
    """Serve the portal and /api/v1 until Ctrl-C or SIGTERM (put a TLS reverse proxy in front).

    \b
    Example:
      govmail portal run --port 8080
    """
    import uvicorn

    settings = app.settings
    secretbox.load(settings)  # create the key once, before several workers race for it
    if settings.config_file is not None:
        os.environ["GOVMAIL_CONFIG"] = str(settings.config_file)
    uvicorn.run("portal.app:app_from_environment", factory=True, host=host or settings.portal.host,
                port=port or settings.portal.port, workers=workers or settings.portal.workers,
                proxy_headers=True, server_header=False, log_level="info")


@portal.command("grant")
@click.argument("address")
@click.option("--agency", help="Agency code: administrator of it and those below it (default: of the province).")
@click.pass_obj
def grant(app: App, address: str, agency: str | None) -> None:
    """Make an official a province administrator, or the administrator of an agency.

    \b
    Example:
      govmail portal grant lamnt@vinhphuc.gov.vn --agency 000.00.15.H62
    """
    with app.unit() as session:
        role = roles.grant(session, app.actor, address, agency)
        row = _role_row(role)
    app.emit(row)


@portal.command("revoke")
@click.argument("address")
@click.option("--agency", help="Agency code of the role to take away (default: the province role).")
@click.pass_obj
def revoke(app: App, address: str, agency: str | None) -> None:
    """Take an administrator role away.

    \b
    Example:
      govmail portal revoke lamnt@vinhphuc.gov.vn --agency 000.00.15.H62
    """
    with app.unit() as session:
        roles.revoke(session, app.actor, address, agency)
    app.emit({"address": address, "role": "agency_admin" if agency else "province_admin", "agency": agency or "",
              "revoked": True})


def _role_row(role) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"address": role.account.address, "role": role.role, "agency": role.agency.code if role.agency else "",
            "granted_by": role.granted_by, "granted_at": role.granted_at.isoformat(timespec="seconds")}


@portal.command("roles")
@click.pass_obj
def list_roles(app: App) -> None:
    """List the administrators.

    \b
    Example:
      govmail portal roles --format json
    """
    with app.unit() as session:
        rows = [_role_row(r) for r in roles.list_roles(session)]
    app.emit(rows, ["address", "role", "agency", "granted_by", "granted_at"])


@portal.command("token")
@click.option("--agency", required=True, help="Agency code the token may act for (and those below it).")
@click.option("--name", required=True, help="What uses it, e.g. 'HR system'.")
@click.pass_obj
def token(app: App, agency: str, name: str) -> None:
    """Issue an API token for an agency; it is printed once.

    \b
    Example:
      govmail portal token --agency 000.00.15.H62 --name "HR system"
    """
    with app.unit() as session:
        made, secret = roles.create_token(session, _province(app), agency, name)
        row = {"id": made.id, "name": made.name, "agency": made.agency.code, "token": secret}
    app.emit(row)


@portal.command("reset-totp")
@click.argument("address")
@click.pass_obj
def reset_totp(app: App, address: str) -> None:
    """Remove an official's two-step verification (a lost phone) and end their sessions; an
    administrator enrols again at the next sign-in. Check who is asking before you run it.

    \b
    Example:
      govmail portal reset-totp lamnt@vinhphuc.gov.vn
    """
    with app.unit() as session:
        account = get_account(session, address)
        signin.remove_totp(session, app.actor, account.id, reset=True)
        row = {"address": account.address, "totp": "removed"}
    app.emit(row)


@portal.command("notify")
@click.pass_obj
def send_notifications(app: App) -> None:
    """Send the notification e-mails still waiting (the portal sends them after each change).

    \b
    Example:
      govmail portal notify
    """
    sent = notify.flush(app.factory, app.settings)
    with app.unit() as session:
        waiting = notify.pending_count(session)
    app.emit({"sent": sent, "waiting": waiting})
    if waiting:
        raise SystemExit(1)

