"""``govmail agency ...``: add, list, show and import agencies."""

from __future__ import annotations

from pathlib import Path

import click

from cli.app import EXIT_FAILED, App, discard
from provisioning.csvinput import read_rows
from provisioning import agencies

AGENCY_HEADERS = {
    "code": ("code", "mã định danh", "ma dinh danh", "mã cơ quan"),
    "name": ("name", "tên cơ quan", "ten co quan", "tên"),
    "short_name": ("short_name", "short name", "tên viết tắt", "viết tắt", "abbr"),
    "level": ("level", "cấp"),
    "parent": ("parent", "parent_code", "cơ quan cấp trên", "mã cấp trên"),
    "domain": ("domain", "tên miền"),
    "staff_count": ("staff_count", "staff", "số cbccvc", "biên chế"),
    "status": ("status", "trạng thái"),
}


@click.group()
def agency() -> None:
    """Agencies: the province's tree of departments and communes.

    \b
    Example:
      govmail agency add 000.00.15.H62 --name "Sở Kế hoạch và Đầu tư" --level province \\
          --parent 000.00.00.H62 --short-name skhdt
    """


@agency.command("add")
@click.argument("code")
@click.option("--name", required=True, help="Vietnamese name, as it should be shown.")
@click.option("--level", required=True, help="central, province, district or commune (configurable).")
@click.option("--parent", help="Code of the agency above this one.")
@click.option("--domain", help="Mail domain (default: the parent's).")
@click.option("--short-name", help="Abbreviation, reserved as the agency mailbox (skhdt@...).")
@click.option("--staff-count", type=int, help="Number of officials (for coverage statistics).")
@click.pass_obj
def agency_add(app: App, code: str, **values: object) -> None:
    """Add an agency with its electronic identifier CODE.

    \b
    Example:
      govmail agency add 000.00.15.H62 --name "Sở Kế hoạch và Đầu tư" --level province \\
          --parent 000.00.00.H62 --domain vinhphuc.gov.vn --short-name skhdt
    """
    with app.unit() as session:
        fields = agencies.parse_fields(app.settings, {"code": code, **values})
        view = agencies.snapshot(agencies.add_agency(session, app.settings, app.actor, fields))
    app.publish()
    app.emit(view)


@agency.command("list")
@click.option("--parent", help="Only the agencies directly below this code.")
@click.option("--level", help="Only agencies of this level.")
@click.pass_obj
def agency_list(app: App, parent: str | None, level: str | None) -> None:
    """List agencies.

    \b
    Example:
      govmail agency list --level commune --format csv
    """
    with app.unit() as session:
        rows = [agencies.snapshot(a) for a in agencies.list_agencies(session, parent=parent, level=level)]
    app.emit(rows, ["code", "short_name", "level", "parent", "domain", "status", "name"])


@agency.command("show")
@click.argument("code")
@click.pass_obj
def agency_show(app: App, code: str) -> None:
    """Show one agency.

    \b
    Example:
      govmail agency show 000.00.15.H62 --format json
    """
    with app.unit() as session:
        view = agencies.snapshot(agencies.get_agency(session, code))
    app.emit(view)


@agency.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Validate and show what would change; write nothing.")
@click.pass_obj
def agency_import(app: App, file: Path, dry_run: bool) -> None:
    """Create or update agencies from a CSV file (all or nothing).

    Columns (English or Vietnamese headers): code, name, level, parent, domain, short_name,
    staff_count, status. Rows may list children before parents.

    \b
    Example:
      govmail agency import agencies.csv --dry-run
    """
    rows = read_rows(file, AGENCY_HEADERS, required=("code",))
    with app.unit() as session:
        result = agencies.import_agencies(session, app.settings, app.actor, rows)
        if result.failed or dry_run:
            discard(session)
    app.emit(result.rows, ["line", "code", "action", "error"])
    if result.failed:
        click.echo(f"{result.failed} row(s) have errors; nothing was imported. Fix them and run again.", err=True)
        raise SystemExit(EXIT_FAILED)
    if not dry_run:
        app.publish()
