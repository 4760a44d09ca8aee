"""Drift between the SQL system of record and the directory: find it, report it, repair it.

Drift in both directions is found: entries missing from LDAP or moved/changed there, and entries in
``ou=people``/``ou=agencies`` that SQL does not know (created behind govmail's back, or left over
from a purged account). Repair always makes LDAP match SQL, through the same ``publish`` the
syncer uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from directory.entries import (
    READ_ATTRS, Desired, account_entry, agency_entry, decode, differences, published_certificates,
)
from directory.ldap import LEVEL, Directory, LDAPOperationResult
from directory.sync import publish
from provisioning.models import Account, Agency


@dataclass(frozen=True)
class Drift:
    """One difference. ``problem``: missing | changed | moved | unknown-entry."""

    problem: str
    kind: str
    label: str
    dn: str
    detail: str = ""
    desired: Desired | None = None

    def as_dict(self) -> dict[str, str]:
        return {"problem": self.problem, "kind": self.kind, "label": self.label, "dn": self.dn, "detail": self.detail}


def _desired_entries(session: Session, directory: Directory) -> dict[str, Desired]:
    out: dict[str, Desired] = {}
    agency_certs = published_certificates(session, "agency")
    for agency in session.scalars(select(Agency)):
        out[agency.id] = agency_entry(directory, agency, agency_certs.get(agency.id, ()))
    account_certs = published_certificates(session, "account")
    for account in session.scalars(select(Account).where(Account.status != "purged")):
        out[account.id] = account_entry(directory, account, account_certs.get(account.id, ()))
    return out


def _entries(conn, base: str):  # type: ignore[no-untyped-def]
    for item in conn.extend.standard.paged_search(
        base, "(objectClass=*)", search_scope=LEVEL, attributes=READ_ATTRS, paged_size=500, generator=True,
    ):
        if item.get("type") == "searchResEntry":
            yield item["dn"], decode(item["raw_attributes"])


def find_drift(factory: sessionmaker[Session], directory: Directory) -> list[Drift]:
    """Every difference between SQL and the directory, accounts and agencies.

    :raises DirectoryUnavailable: the directory cannot be reached.
    """
    with factory() as session:
        desired = _desired_entries(session, directory)
    drift: list[Drift] = []
    seen: set[str] = set()
    with directory.connect() as conn:
        directory.ensure_tree(conn)
        for kind, base in (("account", directory.people_dn), ("agency", directory.agencies_dn)):
            for dn, attrs in _entries(conn, base):
                ids = attrs.get("govmailid", ())
                want = desired.get(ids[0]) if ids else None
                if want is None or want.kind != kind or ids[0] in seen:
                    drift.append(Drift("unknown-entry", kind, dn.split(",", 1)[0], dn,
                                       "not in the system of record"))
                    continue
                seen.add(want.object_id)
                if dn.lower() != want.dn.lower():
                    drift.append(Drift("moved", kind, want.label, dn, f"should be {want.dn}", want))
                    continue
                changes = differences(want, attrs)
                if changes:
                    drift.append(Drift("changed", kind, want.label, dn, ", ".join(sorted(changes)), want))
    for object_id, want in desired.items():
        if object_id not in seen:
            drift.append(Drift("missing", want.kind, want.label, want.dn, "not in the directory", want))
    order = {"agency": 0, "account": 1}
    drift.sort(key=lambda d: (d.problem == "unknown-entry", order[d.kind], d.label))
    return drift


def repair(
    directory: Directory, drift: list[Drift], progress: Callable[[Drift], None] | None = None,
) -> list[tuple[Drift, str]]:
    """Make LDAP match SQL for each drift item; returns (item, outcome) pairs.

    Unknown entries are deleted; agencies are repaired before accounts. An item the server refuses
    gets the server's reason as its outcome and the rest go on.
    """
    outcomes: list[tuple[Drift, str]] = []
    with directory.connect() as conn:
        for item in drift:
            try:
                if item.desired is None:
                    conn.delete(item.dn)
                    outcome = "deleted"
                else:
                    outcome = publish(conn, directory, item.desired)
            except LDAPOperationResult as exc:
                outcome = f"failed: {exc.description}: {exc.message}"
            outcomes.append((item, outcome))
            if progress:
                progress(item)
    return outcomes
