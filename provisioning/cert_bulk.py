"""Binding many certificates at once, from a folder or from a CSV of files -> holders.

* **Folder**: every ``.pem .crt .cer .der .p7b .p7c`` file; the file name (without its suffix)
  names the holder: an agency code (``000.00.15.H62.cer``) or an account (``lamnt.pem``,
  ``lamnt@vinhphuc.gov.vn.pem``).
* **CSV** (UTF-8, UTF-16 or Windows-1258; comma, semicolon or tab): a ``file`` column (relative to
  the CSV's folder) and an ``account`` or ``agency`` column per row.

All or nothing: every row is read, validated and bound inside one transaction (each row in a
savepoint, so one bad row cannot spoil another's check), and the caller commits only when no row
failed. A row whose certificate is already bound to the same holder is ``unchanged``, so the same
source can be run again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from sqlalchemy.orm import Session

from provisioning import certificates, trust
from provisioning.agencies import validate_code
from provisioning.audit import Actor
from provisioning.csvinput import read_rows
from provisioning.errors import GovmailError, InvalidInput

SUFFIXES = (".pem", ".crt", ".cer", ".der", ".p7b", ".p7c")
HEADERS = {
    "file": ("file", "certificate", "tệp", "tệp chứng thư", "chứng thư số"),
    "account": ("account", "address", "email", "tài khoản", "địa chỉ thư"),
    "agency": ("agency", "agency_code", "mã định danh", "mã cơ quan", "cơ quan"),
}
COLUMNS = ("row", "file", "holder", "action", "fingerprint", "error")


@dataclass(frozen=True)
class Item:
    """One certificate file to bind: where it was named (``row``), the file and the holder."""

    row: str
    path: Path
    account: str | None
    agency: str | None


def read_source(source: Path) -> list[Item]:
    """The items of a folder or CSV file (see the module docstring).

    :raises InvalidInput: an empty folder, a CSV without a file column or without holders.
    """
    if source.is_dir():
        items = []
        for path in sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES):
            try:
                items.append(Item(path.name, path, None, validate_code(path.stem)))
            except InvalidInput:
                items.append(Item(path.name, path, path.stem, None))
        if not items:
            raise InvalidInput("folder", str(source), "holds no certificate files",
                               f"name them after their holder with one of {', '.join(SUFFIXES)}")
        return items
    rows = read_rows(source, HEADERS, required=("file",))
    return [Item(f"{source.name} line {line}", source.parent / values["file"],
                 values.get("account") or None, values.get("agency") or None) for line, values in rows]


def bulk_bind(
    session: Session, actor: Actor, store: trust.TrustStore, items: Sequence[Item], now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Bind every item; one result row per item (action ``bound``, ``unchanged`` or ``error``).

    The caller commits only when no row has ``action == "error"``.
    """
    results = []
    for item in items:
        result = {"row": item.row, "file": item.path.name, "holder": item.account or item.agency or "",
                  "action": "error", "fingerprint": "", "error": ""}
        try:
            with session.begin_nested():
                source = item.row if item.row == item.path.name else f"{item.row} ({item.path.name})"
                parsed = certificates.parse(trust.read_file(item.path), source)
                result["fingerprint"] = parsed.fingerprint
                holder = certificates.resolve_holder(session, item.account, item.agency)
                result["holder"] = holder.label
                existing = certificates.find_bound(session, parsed)
                if existing is not None and (existing.account_id, existing.agency_id) == (
                        holder.account.id if holder.account else None, holder.agency.id if holder.agency else None):
                    result["action"] = "unchanged"
                else:
                    certificates.bind(session, actor, store, parsed, holder, now)
                    result["action"] = "bound"
        except GovmailError as exc:
            result["error"] = str(exc)
        results.append(result)
    return results
