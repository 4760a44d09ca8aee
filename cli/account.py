"""``govmail account ...``: the lifecycle of one account."""

from __future__ import annotations

import json
from pathlib import Path

import click
from sqlalchemy import select

from cli.app import App, read_password_stdin, write_private_csv
from provisioning import accounts, delegations
from provisioning.models import AuditEntry

LIST_COLUMNS = ["address", "full_name", "agency", "status", "title", "employee_code"]


@click.group()
def account() -> None:
    """Accounts: create, change and retire officials' mailboxes.

    \b
    Example:
      govmail account create --agency 000.00.15.H62 --name "Nguyễn Thị Lâm" --title "Chuyên viên"
      govmail account list --agency 000.00.15.H62 --format json
    """


def _handover(app: App, view: dict, initial: str | None, credentials: Path | None) -> None:
    """Show the account; a generated password goes to the credentials file when one is given."""
    if initial is not None and credentials is not None:
        write_private_csv(credentials, ["address", "full_name", "initial_password"],
                          [[view["address"], view["full_name"], initial]])
        click.echo(f"Initial password written to {credentials} (mode 0600).", err=True)
    elif initial is not None:
        view = {**view, "initial_password": initial}
    app.emit(view)


@account.command("create")
@click.option("--agency", "agency_code", required=True, help="Code of the agency.")
@click.option("--name", "full_name", required=True, help="Full name, Vietnamese order (Họ đệm tên).")
@click.option("--title", help="Position (Chức vụ).")
@click.option("--phone", help="Phone number.")
@click.option("--employee-code", help="HR code (Mã cán bộ); one account per code.")
@click.option("--personal-email", help="Personal address for recovery notices.")
@click.option("--address", help="Choose the address instead of generating it (local part or full address).")
@click.option("--shared", is_flag=True, help="A shared agency mailbox (needs --address).")
@click.option("--quota", "quota_mb", type=int, help="Mailbox quota in MiB (default from the configuration).")
@click.option("--alias", "aliases", multiple=True, help="Extra address; repeat for several.")
@click.option("--password-stdin", is_flag=True, help="Read a chosen password from standard input instead of generating one.")
@click.option("--credentials", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the generated password to this file (0600) instead of printing it.")
@click.pass_obj
def account_create(app: App, agency_code: str, full_name: str, shared: bool, password_stdin: bool,
                   credentials: Path | None, aliases: tuple[str, ...], **fields: object) -> None:
    """Create an account; the address is generated from the name (Nguyễn Thị Lâm -> lamnt).

    The generated initial password is printed once (or written to --credentials) and must be
    changed at first use.

    \b
    Example:
      govmail account create --agency 000.00.15.H62 --name "Nguyễn Thị Lâm" --title "Chuyên viên"
      govmail account create --agency 000.00.15.H62 --shared --name "Văn thư Sở KHĐT" --address vanthu
    """
    password = read_password_stdin() if password_stdin else None
    new = accounts.NewAccount(agency=agency_code, full_name=full_name, kind="shared" if shared else "personal",
                              aliases=aliases, **fields)  # type: ignore[arg-type]
    with app.unit() as session:
        created, initial = accounts.create_account(session, app.settings, app.actor, new, password)
        view = accounts.snapshot(created)
    app.publish()
    _handover(app, view, initial, credentials)


@account.command("show")
@click.argument("address")
@click.pass_obj
def account_show(app: App, address: str) -> None:
    """Show one account (by address, alias or local part).

    \b
    Example:
      govmail account show lamnt@vinhphuc.gov.vn --format json
    """
    with app.unit() as session:
        account = accounts.get_account(session, address)
        view = accounts.snapshot(account)
        if account.kind == "shared":
            view["delegates"] = delegations.delegate_addresses(session, account)
        else:
            view["sends_as"] = delegations.mailbox_addresses(session, account)
    app.emit(view)


@account.command("list")
@click.option("--agency", "agency_code", help="Only accounts of this agency.")
@click.option("--recursive", is_flag=True, help="With --agency: include the agencies below it.")
@click.option("--status", help="active, suspended, retired or purged.")
@click.option("--search", help="Text found in the address or the name.")
@click.option("--limit", type=int, help="At most this many.")
@click.option("--offset", type=int, default=0, help="Skip this many first.")
@click.pass_obj
def account_list(app: App, agency_code: str | None, recursive: bool, status: str | None,
                 search: str | None, limit: int | None, offset: int) -> None:
    """List accounts, ordered by address.

    \b
    Example:
      govmail account list --agency 000.00.15.H62 --format json
      govmail account list --agency 000.00.00.H62 --recursive --status suspended
    """
    with app.unit() as session:
        rows = [accounts.snapshot(a) for a in accounts.list_accounts(
            session, agency=agency_code, include_subagencies=recursive, status=status, search=search,
            limit=limit, offset=offset)]
    app.emit(rows, LIST_COLUMNS)


def _lifecycle(name: str, func, summary: str, example: str) -> None:  # type: ignore[no-untyped-def]
    @account.command(name, help=f"{summary}\n\n\b\nExample:\n  {example}")
    @click.argument("address")
    @click.pass_obj
    def command(app: App, address: str) -> None:
        with app.unit() as session:
            view = accounts.snapshot(func(session, app.settings, app.actor, address))
        app.publish()
        app.emit(view)


_lifecycle("suspend", accounts.suspend, "Suspend an account: login and incoming mail are refused.",
           "govmail account suspend lamnt@vinhphuc.gov.vn")
_lifecycle("restore", accounts.restore, "Make a suspended or retired (not purged) account active again.",
           "govmail account restore lamnt@vinhphuc.gov.vn")
_lifecycle("retire", accounts.retire,
           "Retire an account (official left): refused at once, purged after the retention period.",
           "govmail account retire lamnt@vinhphuc.gov.vn")


@account.command("transfer")
@click.argument("address")
@click.option("--to", "agency_code", required=True, help="Code of the new agency.")
@click.pass_obj
def account_transfer(app: App, address: str, agency_code: str) -> None:
    """Move an account to another agency; its address stays.

    \b
    Example:
      govmail account transfer lamnt@vinhphuc.gov.vn --to 000.00.16.H62
    """
    with app.unit() as session:
        view = accounts.snapshot(accounts.transfer(session, app.settings, app.actor, address, agency_code))
    app.publish()
    app.emit(view)


@account.command("delegate")
@click.argument("mailbox")
@click.option("--to", "official", required=True, help="Address of the official who may send as MAILBOX.")
@click.pass_obj
def account_delegate(app: App, mailbox: str, official: str) -> None:
    """Let an official send as a shared mailbox of their agency (e.g. the clerk as vanthu@).

    The delegation ends by itself when either account is retired or the official is transferred.

    \b
    Example:
      govmail account delegate vanthu@skhdt.vinhphuc.gov.vn --to lamnt@skhdt.vinhphuc.gov.vn
    """
    with app.unit() as session:
        box = delegations.grant(session, app.actor, mailbox, official)
        view = {"mailbox": box.address, "delegates": delegations.delegate_addresses(session, box)}
    app.emit(view)


@account.command("undelegate")
@click.argument("mailbox")
@click.option("--from", "official", required=True, help="Address of the official who may no longer send as MAILBOX.")
@click.pass_obj
def account_undelegate(app: App, mailbox: str, official: str) -> None:
    """End an official's right to send as a shared mailbox.

    \b
    Example:
      govmail account undelegate vanthu@skhdt.vinhphuc.gov.vn --from lamnt@skhdt.vinhphuc.gov.vn
    """
    with app.unit() as session:
        box = delegations.revoke(session, app.actor, mailbox, official)
        view = {"mailbox": box.address, "delegates": delegations.delegate_addresses(session, box)}
    app.emit(view)


@account.command("rename")
@click.argument("address")
@click.option("--name", "full_name", help="Corrected full name.")
@click.option("--address", "new_address", help="New address; the old one is kept as an alias.")
@click.pass_obj
def account_rename(app: App, address: str, full_name: str | None, new_address: str | None) -> None:
    """Correct the name and/or change the address of an account.

    \b
    Example:
      govmail account rename lamnt@vinhphuc.gov.vn --name "Nguyễn Thị Lâm Anh" --address anhntl
    """
    with app.unit() as session:
        view = accounts.snapshot(accounts.rename(session, app.settings, app.actor, address,
                                                 full_name=full_name, new_address=new_address))
    app.publish()
    app.emit(view)


@account.command("update")
@click.argument("address")
@click.option("--title", help="Position; empty to clear.")
@click.option("--phone", help="Phone; empty to clear.")
@click.option("--employee-code", help="HR code; empty to clear.")
@click.option("--personal-email", help="Personal address; empty to clear.")
@click.option("--quota", "quota_mb", type=int, help="Quota in MiB.")
@click.option("--add-alias", multiple=True, help="Add an alias; repeat for several.")
@click.option("--remove-alias", multiple=True, help="Remove an alias (it is never re-issued).")
@click.pass_obj
def account_update(app: App, address: str, add_alias: tuple[str, ...], remove_alias: tuple[str, ...],
                   **fields: object) -> None:
    """Change title, phone, employee code, quota or aliases.

    \b
    Example:
      govmail account update lamnt@vinhphuc.gov.vn --title "Phó Giám đốc" --quota 4096 --add-alias lam.nguyen
    """
    with app.unit() as session:
        changed = accounts.update(session, app.settings, app.actor, address, add_aliases=add_alias,
                                  remove_aliases=remove_alias, **fields)  # type: ignore[arg-type]
        view = accounts.snapshot(accounts.get_account(session, address))
    if changed:
        app.publish()
    else:
        click.echo("Nothing changed.", err=True)
    app.emit(view)


@account.command("reset-password")
@click.argument("address")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
@click.option("--credentials", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the generated password to this file (0600) instead of printing it.")
@click.pass_obj
def account_reset_password(app: App, address: str, password_stdin: bool, credentials: Path | None) -> None:
    """Give an account a new generated password (change forced at next use), or a chosen one.

    \b
    Example:
      govmail account reset-password lamnt@vinhphuc.gov.vn
      printf '%s\\n' "$NEW_PASSWORD" | govmail account reset-password lamnt --password-stdin
    """
    password = read_password_stdin() if password_stdin else None
    with app.unit() as session:
        changed, initial = accounts.reset_password(session, app.settings, app.actor, address, password)
        view = accounts.snapshot(changed)
    app.publish()
    _handover(app, view, initial, credentials)


@account.command("purge")
@click.option("--due", is_flag=True, required=True, help="Purge retired accounts whose retention has ended.")
@click.pass_obj
def account_purge(app: App, due: bool) -> None:
    """Purge retired accounts past their retention period (run daily from cron).

    The directory entry is removed; the record, its history and its addresses stay.

    \b
    Example:
      govmail account purge --due
    """
    with app.unit() as session:
        rows = [accounts.snapshot(a) for a in accounts.purge_due(session, app.settings, app.actor)]
    app.publish()
    app.emit(rows, ["address", "agency", "retired_at", "purge_after"])


@account.command("history")
@click.argument("address")
@click.pass_obj
def account_history(app: App, address: str) -> None:
    """The audit log of one account: who changed what, when, from where.

    \b
    Example:
      govmail account history lamnt@vinhphuc.gov.vn --format json
    """
    with app.unit() as session:
        target = accounts.get_account(session, address)
        entries = session.scalars(select(AuditEntry).where(
            AuditEntry.object_kind == "account", AuditEntry.object_id == target.id).order_by(AuditEntry.id))
        rows = [{"at": e.at.isoformat(timespec="seconds"), "action": e.action, "actor": e.actor,
                 "source": e.source, "client": e.client,
                 "before": json.loads(e.before) if e.before else None,
                 "after": json.loads(e.after) if e.after else None} for e in entries]
    if app.fmt != "json":
        rows = [{**r, "changed": _changes(r["before"], r["after"])} for r in rows]
    app.emit(rows, ["at", "action", "actor", "source", "changed"])


def _changes(before: dict | None, after: dict | None) -> str:
    if before is None:
        return "created"
    return "; ".join(f"{k}: {before.get(k)} -> {v}" for k, v in (after or {}).items()
                     if before.get(k) != v and k != "created_at") or "-"
