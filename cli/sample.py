"""``govmail sample ...``: realistic sample files for demos, tests and benchmarks (no database)."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from cli.app import EXIT_USAGE, App
from provisioning import sample as samples
from provisioning.addresses import validate_domain
from provisioning.errors import InvalidInput


@click.group()
def sample() -> None:
    """Sample data: a made-up province to try govmail on (needs no configuration or database).

    \b
    Example:
      govmail sample province --accounts 1000 --out demo
      govmail agency import demo/agencies.csv
      govmail account bulk-create demo/staff.csv
    """


@sample.command("province")
@click.option("--accounts", type=click.IntRange(min=1), required=True, help="Number of officials (staff rows).")
@click.option("--seed", type=int, default=1, show_default=True,
              help="Random seed: the same seed always writes the same files.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Directory for agencies.csv and staff.csv (created if missing).")
@click.option("--agencies", type=click.IntRange(min=1),
              help="Number of agencies (default: one per 100 officials, 3 to 120).")
@click.option("--province-code", default="H62", show_default=True,
              help="Province part of the agency codes (H62 = Vĩnh Phúc): 000.00.15.H62.")
@click.option("--province-name", default="Vĩnh Phúc", show_default=True, help="Name in 'UBND tỉnh ...'.")
@click.option("--domain", default="vinhphuc.gov.vn", show_default=True, help="Mail domain of every agency.")
@click.option("--force", is_flag=True, help="Overwrite agencies.csv and staff.csv if they exist.")
@click.pass_obj
def sample_province(app: App, accounts: int, seed: int, out: Path, agencies: int | None, province_code: str,
                    province_name: str, domain: str, force: bool) -> None:
    """Write DIR/agencies.csv and DIR/staff.csv: a province with agencies at each level and
    officials whose names follow the real shares of Vietnamese family names (so addresses
    collide as in real life: lamnt, lamnt2, ...).

    agencies.csv is what `govmail agency import` reads; staff.csv (with an agency column) is what
    `govmail account bulk-create` reads. About 70% of the officials have a phone and 30% a
    personal email. Existing files are not overwritten unless --force is given.

    \b
    Example:
      govmail sample province --accounts 5000 --seed 7 --out /tmp/vinhphuc
      govmail agency import /tmp/vinhphuc/agencies.csv
      govmail account bulk-create /tmp/vinhphuc/staff.csv --dry-run
    """
    try:
        validate_domain(domain.strip().lower(), "domain")
        agency_rows, staff_rows = samples.province(
            accounts, seed=seed, province_code=province_code.strip().upper(), domain=domain.strip().lower(),
            province_name=province_name.strip(), agencies=agencies)
    except (ValueError, InvalidInput) as exc:
        raise click.BadParameter(str(exc)) from None
    agencies_file, staff_file = out / "agencies.csv", out / "staff.csv"
    existing = [str(p) for p in (agencies_file, staff_file) if p.exists()]
    if existing and not force:
        verb = "exists" if len(existing) == 1 else "exist"
        click.echo(f"error: {' and '.join(existing)} already {verb}; nothing was written "
                   f"(choose another --out or give --force to overwrite)", err=True)
        raise SystemExit(EXIT_USAGE)
    out.mkdir(parents=True, exist_ok=True)
    samples.write_csv(agencies_file, agency_rows)
    samples.write_csv(staff_file, staff_rows)
    next_steps = [f"govmail agency import {shlex.quote(str(agencies_file))}",
                  f"govmail account bulk-create {shlex.quote(str(staff_file))}"]
    if app.fmt != "table":
        app.emit({"agencies_file": str(agencies_file), "agencies": len(agency_rows),
                  "staff_file": str(staff_file), "staff": len(staff_rows), "seed": seed, "next": next_steps})
        return
    levels = {level: sum(1 for r in agency_rows if r["level"] == level) for level in ("province", "commune")}
    click.echo(f"Wrote {agencies_file}: {len(agency_rows)} agencies ({levels['province']} at province level, "
               f"{levels['commune']} communes and wards)")
    click.echo(f"Wrote {staff_file}: {len(staff_rows)} officials (seed {seed})")
    click.echo("Next:\n" + "".join(f"  {step}\n" for step in next_steps), nl=False)
