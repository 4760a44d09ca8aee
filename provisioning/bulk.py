"""Bulk provisioning from an HR spreadsheet: plan, then apply; safe to repeat and to interrupt.

* **Plan** validates every row before anything is written and decides, per row: ``create`` (with
  the address it will get), ``update``, ``unchanged``, ``conflict`` or ``error``.
* **Matching** (what makes a re-run create nothing twice): a row belongs to the existing account
  with the same employee code; failing that, to the one live account with the same full name in
  the same agency that has no employee code yet (it gets the row's code). Two rows that would
  match the same account are a conflict, and so is a name found more than once where it decides.
* **Apply** writes creates in batches, each in one transaction with its audit and directory-outbox
  rows. Each batch's generated passwords are appended to the credentials file and flushed to disk
  *before* the batch commits, so an interrupted run loses no password; :func:`compact_credentials`
  later drops lines of batches that never committed (their password does not match any account).

An empty cell never clears a field: HR exports often leave out what they do not know.
"""

from __future__ import annotations

import csv
import json
import os
import unicodedata
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from provisioning import accounts, passwords
from provisioning.addresses import base_local_part, normalize_full_name, numbered_candidates, validate_local_part
from provisioning.agencies import clean_text, validate_code
from provisioning.audit import Actor
from provisioning.config import Settings
from provisioning.csvinput import decode_bytes, parse_rows, safe_cell
from provisioning.errors import GovmailError, InvalidInput, NotFound
from provisioning.models import Account, AccountSpan, Agency, AuditEntry, IssuedAddress, OutboxEntry, utcnow

HEADERS: dict[str, tuple[str, ...]] = {
    "full_name": ("full_name", "full name", "name", "họ và tên", "họ tên", "ho va ten", "ho ten"),
    "family_name": ("family_name", "family name", "last name", "surname", "họ", "họ đệm", "họ và tên đệm"),
    "given_name": ("given_name", "given name", "first name", "tên"),
    "title": ("title", "position", "job title", "chức vụ", "chức danh"),
    "employee_code": ("employee_code", "employee code", "employee id", "staff id", "mã cán bộ", "mã cb",
                      "mã nhân viên", "mã số cán bộ", "mã cbccvc"),
    "personal_email": ("personal_email", "personal email", "email", "email cá nhân", "thư cá nhân"),
    "phone": ("phone", "mobile", "telephone", "điện thoại", "số điện thoại", "sđt", "di động"),
    "agency": ("agency", "agency code", "agency_code", "mã cơ quan", "mã đơn vị", "mã định danh cơ quan"),
    "address": ("address", "mail address", "mailbox", "địa chỉ thư", "email công vụ", "thư công vụ"),
    "quota_mb": ("quota_mb", "quota", "quota (mib)", "dung lượng", "dung lượng (mb)"),
}
ACTIONS = ("create", "update", "unchanged", "conflict", "error")
COMPARED = ("full_name", "title", "phone", "personal_email", "quota_mb")


@dataclass
class Row:
    """The plan for one line of the file; after apply, ``action`` says what happened."""

    line: int
    action: str
    full_name: str = ""
    agency: str = ""
    employee_code: str | None = None
    address: str = ""
    detail: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    account_id: str | None = None
    changes: dict[str, Any] = field(default_factory=dict)

    def result(self, applied: bool = True) -> dict[str, Any]:
        """The row as reported: what was done (``created``) or, for a plan, what will be (``create``)."""
        done = {"create": "created", "update": "updated"}.get(self.action, self.action) if applied else self.action
        return {"line": self.line, "action": done, "address": self.address, "full_name": self.full_name,
                "agency": self.agency, "employee_code": self.employee_code or "", "detail": self.detail}


@dataclass
class Plan:
    rows: list[Row]

    def count(self, action: str) -> int:
        return sum(1 for r in self.rows if r.action == action)

    @property
    def failed(self) -> int:
        return self.count("conflict") + self.count("error")

    def summary(self) -> dict[str, int]:
        return {a: self.count(a) for a in ACTIONS}


def read_file(path: Path) -> list[tuple[int, dict[str, str]]]:
    """Rows of an HR file (any encoding, delimiter and header language ``csvinput`` reads).

    :raises InvalidInput: unreadable file, no name column.
    """
    text, _ = decode_bytes(path.read_bytes(), path.name)
    rows = list(parse_rows(text, HEADERS, name=path.name))
    if rows and "full_name" not in rows[0][1] and not {"family_name", "given_name"} <= rows[0][1].keys():
        raise InvalidInput(path.name, None, "has no column for the full name",
                           "add a 'Họ và tên' (full name) column, or 'Họ đệm' and 'Tên' columns")
    return rows


def _fold_name(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def _validate(raw: Mapping[str, str], default_agency: str | None, known: Mapping[str, Agency]) -> tuple[dict[str, Any], list[str]]:
    """Clean every field of a row; returns the values and one message per bad field."""
    values: dict[str, Any] = {}
    errors: list[str] = []

    def check(name: str, func: Callable[[], Any]) -> None:
        try:
            values[name] = func()
        except GovmailError as exc:
            errors.append(str(exc))

    full = raw.get("full_name") or " ".join(p for p in (raw.get("family_name", ""), raw.get("given_name", "")) if p)
    check("full_name", lambda: normalize_full_name(full))
    code = raw.get("agency") or default_agency or ""

    def agency() -> str:
        if not code:
            raise InvalidInput("agency", None, "is empty", "fill the agency column or give --agency")
        agency_code = validate_code(code, "agency")
        found = known.get(agency_code)
        if found is None:
            raise InvalidInput("agency", code, "is not a known agency", "see: govmail agency list")
        if found.status != "active":
            raise InvalidInput("agency", code, f"is {found.status}", "accounts go to active agencies")
        return agency_code

    check("agency", agency)
    check("title", lambda: clean_text(raw["title"], "title", 128) if raw.get("title") else None)
    check("phone", lambda: accounts.clean_phone(raw.get("phone")))
    check("personal_email", lambda: accounts.clean_personal_email(raw.get("personal_email")))
    check("employee_code", lambda: accounts.clean_employee_code(raw.get("employee_code")))
    check("address", lambda: validate_local_part(raw["address"].split("@")[0], "address") if raw.get("address") else None)

    def quota() -> int | None:
        text = (raw.get("quota_mb") or "").strip()
        if not text:
            return None
        if not text.isdigit():
            raise InvalidInput("quota_mb", text, "is not a whole number of MiB")
        return accounts.check_quota(int(text))

    check("quota_mb", quota)
    return values, errors


def _load_accounts(session: Session) -> tuple[dict[str, dict], dict[tuple[str, str], list[dict]]]:
    """Live accounts indexed by employee code and by (agency, folded full name)."""
    by_code: dict[str, dict] = {}
    by_name: dict[tuple[str, str], list[dict]] = {}
    query = select(Account.id, Account.local_part, Account.domain, Account.full_name, Account.title,
                   Account.phone, Account.personal_email, Account.employee_code, Account.quota_mb,
                   Account.status, Agency.code.label("agency")).join(Agency).where(Account.status != "purged")
    for row in session.execute(query).mappings():
        record = dict(row)
        if record["employee_code"]:
            by_code[record["employee_code"]] = record
        by_name.setdefault((record["agency"], _fold_name(record["full_name"])), []).append(record)
    return by_code, by_name


def make_plan(session: Session, settings: Settings, raw_rows: Iterable[tuple[int, Mapping[str, str]]],
              default_agency: str | None = None) -> Plan:
    """Validate and match every row; nothing is written.

    :raises NotFound: ``default_agency`` does not exist.
    """
    known = {a.code: a for a in session.scalars(select(Agency))}
    if default_agency is not None:
        default_agency = validate_code(default_agency, "--agency")
        if default_agency not in known:
            raise NotFound("agency", default_agency, "see: govmail agency list")
    by_code, by_name = _load_accounts(session)
    taken = set(session.scalars(select(IssuedAddress.local_part))) | accounts.reserved_names(settings)
    claimed: dict[str, int] = {}  # account id or file key -> first line
    rows: list[Row] = []
    for line, raw in raw_rows:
        values, errors = _validate(raw, default_agency, known)
        row = Row(line, "error", full_name=values.get("full_name") or raw.get("full_name", ""),
                  agency=values.get("agency") or raw.get("agency") or default_agency or "",
                  employee_code=values.get("employee_code"), values=values)
        rows.append(row)
        if errors:
            row.detail = "; ".join(errors)
            continue
        code = values["employee_code"]
        namesakes = by_name.get((values["agency"], _fold_name(values["full_name"])), [])
        if code:
            key = f"code:{code}"
            match = by_code.get(code)
            # An account created before codes were known is adopted by the one coded row for it.
            namesakes = [r for r in namesakes if not r["employee_code"]] if match is None else []
            hint = f"set the code on the right one: govmail account update ADDRESS --employee-code {code}"
        else:
            key = f"name:{values['agency']}:{_fold_name(values['full_name'])}"
            match = None
            hint = "add the employee code"
        if match is None and len(namesakes) > 1:
            listed = ", ".join(r["local_part"] + "@" + r["domain"] for r in sorted(namesakes, key=lambda r: r["local_part"]))
            row.action = "conflict"
            row.detail = (f"{len(namesakes)} accounts named {values['full_name']} in {values['agency']}"
                          f"{' without an employee code' if code else ''} ({listed}); {hint}")
            continue
        match = match or (namesakes[0] if namesakes else None)
        key = match["id"] if match else key
        if key in claimed:
            row.action = "conflict"
            row.detail = f"the same official as line {claimed[key]} (one row per official; add employee codes to tell namesakes apart)"
            continue
        claimed[key] = line
        if match is None:
            _plan_create(settings, row, known[values["agency"]], taken)
        else:
            _plan_update(row, match, values)
    return Plan(rows)


def _plan_create(settings: Settings, row: Row, agency: Agency, taken: set[str]) -> None:
    explicit = row.values.get("address")
    if explicit:
        if explicit in taken:
            row.action, row.detail = "conflict", f"address {explicit!r} is reserved or was already issued (choose another)"
            return
        local = explicit
    else:
        base = base_local_part(row.values["full_name"], settings.accounts.address_style)  # type: ignore[arg-type]
        local = next(c for c in numbered_candidates(base) if c not in taken)
    taken.add(local)
    row.action, row.address = "create", f"{local}@{agency.domain}"


def _plan_update(row: Row, match: dict, values: dict[str, Any]) -> None:
    row.account_id, row.address = match["id"], f"{match['local_part']}@{match['domain']}"
    if match["status"] == "retired":
        row.action = "conflict"
        row.detail = f"{row.address} is retired (restore it first: govmail account restore {row.address})"
        return
    changes = {k: values[k] for k in COMPARED if values.get(k) is not None and values[k] != match[k]}
    if not match["employee_code"] and values.get("employee_code"):
        changes["employee_code"] = values["employee_code"]
    if values["agency"] != match["agency"]:
        changes["agency"] = values["agency"]
    row.changes = changes
    row.action = "update" if changes else "unchanged"
    row.detail = "; ".join(f"{k}: {match.get(k)!s} -> {v}" for k, v in changes.items())


# --- apply -------------------------------------------------------------------------------------


class CredentialsFile:
    """The agency's handover file: address, name, initial password; mode 0600, appended durably."""

    HEADER = ("address", "full_name", "agency", "initial_password")

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, lines: Sequence[tuple[str, str, str, str]]) -> None:
        """Append and fsync (before the batch that created these passwords commits)."""
        new = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                handle.write("\ufeff")  # Excel opens UTF-8 with a BOM correctly
                writer.writerow(self.HEADER)
            writer.writerows(lines)
            handle.flush()
            os.fsync(handle.fileno())


def compact_credentials(session: Session, path: Path) -> int:
    """Keep only the lines whose password still opens its account (once each); returns how many.

    Lines written for a batch that never committed, or for an account whose password was reset
    since, are dropped. The file is replaced atomically, keeping mode 0600.
    """
    if not path.exists():
        return 0
    with path.open(encoding="utf-8-sig", newline="") as handle:
        lines = list(csv.DictReader(handle))
    hashes = dict(session.execute(select(Account.local_part, Account.password_hash)).all())
    kept, seen = [], set()
    for line in lines:
        stored = hashes.get(line["address"].split("@")[0])
        if line["address"] not in seen and stored and passwords.verify(line["initial_password"], stored):
            kept.append(tuple(line[k] for k in CredentialsFile.HEADER))
            seen.add(line["address"])
    temp = path.with_name(path.name + ".tmp")
    temp.unlink(missing_ok=True)
    CredentialsFile(temp).append(kept)
    os.replace(temp, path)
    return len(kept)


@dataclass
class ApplyResult:
    created: int = 0
    updated: int = 0
    failed: int = 0


def _account_rows(settings: Settings, actor: Actor, rows: Sequence[Row], agencies: Mapping[str, Agency]):  # type: ignore[no-untyped-def]
    """Insert parameters for a batch of creates, and their credentials lines."""
    now = utcnow()
    acc, issued, audits, outbox, spans, creds = [], [], [], [], [], []
    for row in rows:
        local, domain = row.address.split("@")
        agency = agencies[row.values["agency"]]
        account_id = str(uuid.uuid4())
        initial = passwords.generate_initial(settings.passwords.initial_length)
        v = row.values
        record = dict(
            id=account_id, local_part=local, domain=domain, kind="personal", full_name=v["full_name"],
            title=v.get("title"), phone=v.get("phone"), employee_code=v.get("employee_code"),
            personal_email=v.get("personal_email"), agency_id=agency.id, status="active",
            quota_mb=v.get("quota_mb") or settings.accounts.default_quota_mb,
            password_hash=passwords.hash_initial(initial), must_change_password=True,
            created_at=now, updated_at=now, suspended_at=None, retired_at=None, purge_after=None, purged_at=None,
        )
        acc.append(record)
        issued.append(dict(local_part=local, account_id=account_id, purpose="account", issued_at=now))
        spans.append(dict(account_id=account_id, agency_id=agency.id, started_at=now, ended_at=None))
        after = accounts.view(record, agency.code, [])
        audits.append(dict(at=now, actor=actor.name, source=actor.source, client=actor.client, action="account.create",
                           object_kind="account", object_id=account_id, object_label=row.address, before=None,
                           after=json.dumps(after, ensure_ascii=False)))
        outbox.append(dict(object_kind="account", object_id=account_id, hint="create", created_at=now,
                           next_attempt_at=now, attempts=0))
        creds.append((row.address, v["full_name"], agency.code, initial))
        row.account_id = account_id
    return acc, issued, audits, outbox, spans, creds


def _reallocate(session: Session, settings: Settings, rows: Sequence[Row], agencies: Mapping[str, Agency]) -> None:
    """Give a batch fresh addresses after another writer took some of the planned ones."""
    taken = set(session.scalars(select(IssuedAddress.local_part))) | accounts.reserved_names(settings)
    for row in rows:
        _plan_create(settings, row, agencies[row.values["agency"]], taken)


def apply_plan(
    factory: sessionmaker[Session], settings: Settings, actor: Actor, plan: Plan, credentials: CredentialsFile,
    *, batch: int = 500, progress: Callable[[int], None] | None = None,
    after_batch: Callable[[], None] | None = None,
) -> ApplyResult:
    """Write the plan's creates and updates; rows with errors or conflicts are left alone.

    Creates go in batches of ``batch`` rows, one transaction each; ``after_batch`` runs after
    each commit (the caller publishes to the directory there).
    """
    result = ApplyResult()
    creates = [r for r in plan.rows if r.action == "create"]
    with factory() as session:
        agencies = {a.code: a for a in session.scalars(select(Agency))}
        session.expunge_all()
    for start in range(0, len(creates), batch):
        chunk = creates[start:start + batch]
        for attempt in range(3):
            try:
                with factory() as session, session.begin():
                    acc, issued, audits, outbox, spans, creds = _account_rows(settings, actor, chunk, agencies)
                    conn = session.connection()  # Core executemany: the ORM's bulk path costs 3x
                    for model, params in ((Account, acc), (IssuedAddress, issued), (AuditEntry, audits),
                                          (OutboxEntry, outbox), (AccountSpan, spans)):
                        conn.execute(insert(model.__table__), params)
                    credentials.append(creds)
                break
            except IntegrityError:
                if attempt == 2:
                    raise
                with factory() as session:
                    _reallocate(session, settings, chunk, agencies)
        result.created += len(chunk)
        if progress:
            progress(len(chunk))
        if after_batch:
            after_batch()
    for row in (r for r in plan.rows if r.action == "update"):
        try:
            with factory() as session, session.begin():
                _apply_update(session, settings, actor, row)
            result.updated += 1
        except GovmailError as exc:
            row.action, row.detail = "error", str(exc)
            result.failed += 1
        if progress:
            progress(1)
    if after_batch and result.updated:
        after_batch()
    return result


def _apply_update(session: Session, settings: Settings, actor: Actor, row: Row) -> None:
    changes = dict(row.changes)
    address = row.address
    if "agency" in changes:
        accounts.transfer(session, settings, actor, address, changes.pop("agency"))
    if "full_name" in changes:
        accounts.rename(session, settings, actor, address, full_name=changes.pop("full_name"))
    if changes:
        accounts.update(session, settings, actor, address, **changes)


def write_results(path: Path, plan: Plan, applied: bool = True) -> None:
    """The per-row results file (UTF-8 with BOM for Excel), written atomically."""
    temp = path.with_name(path.name + ".tmp")
    with temp.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        columns = ("line", "action", "address", "full_name", "agency", "employee_code", "detail")
        writer.writerow(columns)
        for row in plan.rows:
            result = row.result(applied)
            writer.writerow([safe_cell(result[c]) for c in columns])
    os.replace(temp, path)

