"""``govmail account bulk-create`` and ``bulk-retire``: whole agencies from an HR spreadsheet."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import click
from sqlalchemy import select

from cli.account import account
from cli.app import EXIT_FAILED, App, discard, progress, warn
from directory.sync import SyncResult, sync
from provisioning import accounts, bulk
from provisioning.csvinput import decode_bytes, parse_rows
from provisioning.errors import DirectoryUnavailable, GovmailError
from provisioning.models import Account
from provisioning.outbox import pending_count

PLAN_COLUMNS = ["line", "action", "address", "full_name", "agency", "detail"]


class Publisher:
    """Publishes committed batches in a background thread while the next batch is written."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish")
        self.pending: Future[SyncResult] | None = None
        self.result = SyncResult()
        self.unavailable: str | None = None

    def _collect(self) -> None:
        if self.pending is None:
            return
        try:
            self.result.add(self.pending.result())
        except DirectoryUnavailable as exc:
            self.unavailable = str(exc)
        self.pending = None

    def kick(self) -> None:
        """Start publishing what is queued, unless a run is still going or the directory is down."""
        if self.pending is not None and not self.pending.done():
            return
        self._collect()
        if self.unavailable is None:
            self.pending = self.pool.submit(sync, self.app.factory, self.app.directory)

    def finish(self) -> SyncResult:
        """Wait, then publish whatever is left (including rows an interrupted run left behind)."""
        self._collect()
        self.pool.shutdown()
        if self.unavailable is None:
            try:
                self.result.add(sync(self.app.factory, self.app.directory))
            except DirectoryUnavailable as exc:
                self.unavailable = str(exc)
        if self.unavailable is not None:
            with self.app.factory() as session:
                self.result.remaining = pending_count(session)
        return self.result


def _default(file: Path, suffix: str) -> Path:
    return file.with_name(f"{file.stem}.{suffix}.csv")


def _show(app: App, plan: bulk.Plan, summary: dict[str, object], applied: bool) -> None:
    if app.fmt == "json":
        app.emit({**summary, "rows": [r.result(applied) for r in plan.rows if r.action != "unchanged"]})
        return
    if app.fmt == "csv":
        app.emit([r.result(applied) for r in plan.rows], PLAN_COLUMNS)
        return
    interesting = [r.result(applied) for r in plan.rows if r.action in ("conflict", "error")]
    if not applied:  # a dry run shows the whole plan, less the rows that stay as they are
        interesting = [r.result(applied) for r in plan.rows if r.action != "unchanged"]
    if interesting:
        app.emit(interesting, PLAN_COLUMNS)
    flat = {k: v for k, v in summary.items() if not isinstance(v, dict)}
    for name, value in summary.items():
        if isinstance(value, dict):
            flat.update({f"{name} {k}": v for k, v in value.items()})
    app.emit(flat)


@account.command("bulk-create")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--agency", "agency_code", help="Agency for rows without an agency column or value.")
@click.option("--dry-run", is_flag=True, help="Validate and show the plan; write no account.")
@click.option("--all-or-nothing", is_flag=True, help="Apply nothing when any row has an error or conflict.")
@click.option("--results", "--output", "results", type=click.Path(dir_okay=False, path_type=Path),
              help="Per-row results file (default: FILE.results.csv, or FILE.plan.csv for a dry run).")
@click.option("--credentials", type=click.Path(dir_okay=False, path_type=Path),
              help="Initial passwords for the handover, mode 0600 (default: FILE.credentials.csv). "
                   "Use the same file when you run again.")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10000),
              help="Accounts written per transaction.")
@click.pass_obj
def bulk_create(app: App, file: Path, agency_code: str | None, dry_run: bool, all_or_nothing: bool,
                results: Path | None, credentials: Path | None, batch_size: int) -> None:
    """Create (or update) the accounts listed in an HR spreadsheet (CSV).

    Every row is validated before anything is written. Rows match existing accounts by employee
    code (else by name within the agency), so running the same file again creates nothing twice
    and an interrupted run can simply be run again. See docs/bulk.md for the file format.

    \b
    Example:
      govmail account bulk-create staff.csv --agency 000.00.15.H62 --dry-run
      govmail account bulk-create staff.csv --agency 000.00.15.H62
    """
    raw_rows = bulk.read_file(file)
    with app.factory() as session:
        plan = bulk.make_plan(session, app.settings, raw_rows, agency_code)
    results = results or _default(file, "plan" if dry_run else "results")
    credentials = credentials or _default(file, "credentials")
    summary: dict[str, object] = {"file": str(file), "rows": len(plan.rows), **plan.summary()}
    if dry_run or (all_or_nothing and plan.failed):
        bulk.write_results(results, plan, applied=False)
        summary["results"] = str(results)
        _show(app, plan, summary, applied=False)
        if plan.failed:
            click.echo(f"{plan.failed} row(s) need attention" + ("; nothing was applied." if all_or_nothing and not dry_run else "."), err=True)
            raise SystemExit(EXIT_FAILED)
        return
    publisher = Publisher(app)
    with progress("provisioning", plan.count("create") + plan.count("update")) as update:
        outcome = bulk.apply_plan(app.factory, app.settings, app.actor, plan, bulk.CredentialsFile(credentials),
                                  batch=batch_size, progress=update, after_batch=publisher.kick)
    published = publisher.finish()
    with app.factory() as session:
        kept = bulk.compact_credentials(session, credentials)
    bulk.write_results(results, plan)
    summary.update(results=str(results), credentials=str(credentials) if kept else None,
                   directory={"published": published.applied, "failed": published.failed,
                              "waiting": published.remaining})
    _show(app, plan, summary, applied=True)
    if publisher.unavailable:
        warn(f"{publisher.unavailable}\n{published.remaining} change(s) are queued: run the same command "
             f"again (or govmail directory sync) when the directory is back.")
    for error in published.errors:
        warn(f"directory refused {error}")
    if published.remaining and not publisher.unavailable:
        warn(f"{published.remaining} change(s) still wait to be published (see: govmail doctor)")
    if plan.failed or outcome.failed or published.remaining or published.failed:
        raise SystemExit(EXIT_FAILED)


RETIRE_HEADERS = {"employee_code": bulk.HEADERS["employee_code"], "address": bulk.HEADERS["address"]}


@account.command("bulk-retire")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Show what would be retired; change nothing.")
@click.pass_obj
def bulk_retire(app: App, file: Path, dry_run: bool) -> None:
    """Retire departing officials listed by employee code or address (one transaction).

    Accounts already retired are reported unchanged; unknown rows are errors, and then nothing is
    retired.

    \b
    Example:
      govmail account bulk-retire departures.csv --dry-run
    """
    text, _ = decode_bytes(file.read_bytes(), file.name)
    rows = list(parse_rows(text, RETIRE_HEADERS, name=file.name))
    report = []
    with app.unit() as session:
        for line, raw in rows:
            key = raw.get("address") or ""
            try:
                if not key and raw.get("employee_code"):
                    found = session.scalar(select(Account).where(Account.employee_code == raw["employee_code"]))
                    key = found.address if found else ""
                if not key:
                    raise GovmailError(f"no account with employee code {raw.get('employee_code')!r} and no address")
                target = accounts.get_account(session, key)
                if target.status in ("retired", "purged"):
                    report.append({"line": line, "address": target.address, "action": "unchanged", "detail": target.status})
                    continue
                accounts.retire(session, app.settings, app.actor, key)
                report.append({"line": line, "address": target.address, "action": "retired", "detail": ""})
            except GovmailError as exc:
                report.append({"line": line, "address": key, "action": "error", "detail": str(exc)})
        failed = any(r["action"] == "error" for r in report)
        if dry_run or failed:
            discard(session)
    app.emit(report, ["line", "address", "action", "detail"])
    if failed:
        click.echo("Some rows have errors; nothing was retired.", err=True)
        raise SystemExit(EXIT_FAILED)
    if not dry_run:
        app.publish()
