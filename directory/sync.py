"""The outbox syncer: publishes queued changes to LDAP, idempotently, with retries.

Each batch goes through three short steps so no database lock is held while LDAP works:

1. *claim* (one transaction): pick due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several
   workers share the queue), push their ``next_attempt_at`` a lease ahead, and render the current
   SQL state of their objects;
2. *apply* each object to LDAP (add, modify, move or delete until the entry matches); objects that
   were only just created are added pipelined (``directory.pipeline``), without a look first;
3. *settle* (one transaction): delete the rows that were applied, and give failed rows their error
   and a back-off.

A crash between steps leaves the rows claimed until the lease ends, then they are retried; applying
an object twice is harmless. Losing the directory mid-batch stops the run with
:class:`DirectoryUnavailable` and leaves the rest queued.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Callable, Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from directory.entries import (
    READ_ATTRS, Desired, account_entry, add_attributes, agency_entry, decode, differences, published_certificates,
)
from directory.ldap import LEVEL, Directory, LDAPOperationResult, escape_filter_chars
from directory.pipeline import ALREADY_EXISTS, SUCCESS, add_many
from provisioning.db import transaction
from provisioning.models import Account, Agency, OutboxEntry, utcnow

LEASE = timedelta(seconds=60)
MAX_BACKOFF = timedelta(hours=1)


@dataclass
class SyncResult:
    applied: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    remaining: int = 0

    def add(self, other: SyncResult) -> None:
        """Count ``other``'s work in; ``remaining`` becomes ``other``'s (the later count)."""
        self.applied += other.applied
        self.failed += other.failed
        self.errors += other.errors
        self.remaining = other.remaining


def _ou(directory: Directory, kind: str) -> str:
    return directory.people_dn if kind == "account" else directory.agencies_dn


def find_entry(conn, directory: Directory, kind: str, object_id: str) -> tuple[str, dict] | None:  # type: ignore[no-untyped-def]
    """(dn, decoded attributes) of the entry carrying ``govmailId=object_id``, or None."""
    conn.search(_ou(directory, kind), f"(govmailId={escape_filter_chars(object_id)})",
                search_scope=LEVEL, attributes=READ_ATTRS)
    if not conn.response:
        return None
    found = [r for r in conn.response if r.get("type") == "searchResEntry"]
    return (found[0]["dn"], decode(found[0]["raw_attributes"])) if found else None


def _read(conn, dn: str) -> dict | None:  # type: ignore[no-untyped-def]
    try:
        conn.search(dn, "(objectClass=*)", search_scope="BASE", attributes=READ_ATTRS)
    except LDAPOperationResult as exc:
        if exc.result == 32:  # noSuchObject
            return None
        raise
    return decode(conn.response[0]["raw_attributes"]) if conn.response else None


def publish(conn, directory: Directory, desired: Desired) -> str:  # type: ignore[no-untyped-def]
    """Make the directory hold exactly ``desired`` (managed attributes only).

    Returns what was done: ``added``, ``modified``, ``moved``, or ``unchanged``.
    :raises LDAPOperationResult: the server refused (schema, access, a foreign entry in the way).
    """
    action = "unchanged"
    found = find_entry(conn, directory, desired.kind, desired.object_id)
    if found is not None and found[0].lower() != desired.dn.lower():
        new_rdn = desired.dn.split(",", 1)[0]
        conn.modify_dn(found[0], new_rdn)
        action = "moved"
        found = (desired.dn, found[1])
    current = found[1] if found else _read(conn, desired.dn)
    if current is None:
        conn.add(desired.dn, attributes=add_attributes(desired))
        return "added"
    changes = differences(desired, current)
    if changes:
        conn.modify(desired.dn, changes)
        action = "modified" if action == "unchanged" else action
    return action


def unpublish(conn, directory: Directory, kind: str, object_id: str) -> bool:  # type: ignore[no-untyped-def]
    """Delete the entry of ``object_id`` if there is one; True when something was deleted."""
    found = find_entry(conn, directory, kind, object_id)
    if found is None:
        return False
    conn.delete(found[0])
    return True


def render(session: Session, directory: Directory, kind: str, ids: Iterable[str]) -> dict[str, Desired | None]:
    """Desired entries for objects of one kind; None for objects that must not be published."""
    ids = list(ids)
    out: dict[str, Desired | None] = dict.fromkeys(ids)
    certs = published_certificates(session, kind, ids)
    if kind == "account":
        for account in session.scalars(select(Account).where(Account.id.in_(ids))):
            out[account.id] = None if account.status == "purged" else account_entry(
                directory, account, certs.get(account.id, ()))
    else:
        for agency in session.scalars(select(Agency).where(Agency.id.in_(ids))):
            out[agency.id] = agency_entry(directory, agency, certs.get(agency.id, ()))
    return out


def _claim(factory: sessionmaker[Session], directory: Directory, batch: int, after: int,
           due_only: bool) -> tuple[list[int], dict]:
    with transaction(factory) as session:
        now = utcnow()
        query = select(OutboxEntry).where(OutboxEntry.id > after)
        if due_only:
            query = query.where(OutboxEntry.next_attempt_at <= now)
        rows = list(session.scalars(query.order_by(OutboxEntry.id).limit(batch).with_for_update(skip_locked=True)))
        by_kind: dict[str, list[str]] = {}
        row_objects: dict[int, tuple[str, str]] = {}
        updated: set[tuple[str, str]] = set()
        for row in rows:
            row.next_attempt_at = now + LEASE
            by_kind.setdefault(row.object_kind, []).append(row.object_id)
            row_objects[row.id] = (row.object_kind, row.object_id)
            if row.hint != "create":
                updated.add((row.object_kind, row.object_id))
        desired = {(kind, oid): d for kind, ids in by_kind.items()
                   for oid, d in render(session, directory, kind, dict.fromkeys(ids)).items()}
        fresh = {obj for obj, d in desired.items() if d is not None and obj not in updated}
        return [r.id for r in rows], {"rows": row_objects, "desired": desired, "fresh": fresh}


def _settle(factory: sessionmaker[Session], row_objects: dict[int, tuple[str, str]], errors: dict) -> None:
    with transaction(factory) as session:
        done = [rid for rid, obj in row_objects.items() if obj not in errors]
        if done:
            session.execute(delete(OutboxEntry).where(OutboxEntry.id.in_(done)))
        failed = [rid for rid, obj in row_objects.items() if obj in errors]
        for row in session.scalars(select(OutboxEntry).where(OutboxEntry.id.in_(failed))):
            row.attempts += 1
            row.last_error = errors[(row.object_kind, row.object_id)][:2000]
            row.next_attempt_at = utcnow() + min(MAX_BACKOFF, timedelta(seconds=5 * 2 ** min(row.attempts, 12)))


def _add_fresh(conn, directory: Directory, desired: list[Desired], errors: dict) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """Add new objects' entries pipelined; returns the objects settled here (added, or refused
    for a reason other than 'already exists', which is left to a full :func:`publish`)."""
    if not desired:
        return set()
    settled = set()
    results = add_many(conn, [(d.dn, add_attributes(d)) for d in desired])
    for d, (code, message) in zip(desired, results):
        if code == ALREADY_EXISTS:
            continue
        settled.add((d.kind, d.object_id))
        if code != SUCCESS:
            errors[(d.kind, d.object_id)] = f"{d.kind} {d.label}: result {code}: {message}"
    return settled


def sync(
    factory: sessionmaker[Session], directory: Directory, *, batch: int = 500, due_only: bool = False,
    progress: Callable[[int], None] | None = None,
) -> SyncResult:
    """Apply the queued outbox rows, each at most once per call; returns counts and the errors of
    rows that stay queued for a retry.

    By default every row is taken, also one that is backing off after an error or that a worker
    which died had claimed (applying twice is harmless): what a person running a sync expects.
    ``due_only=True`` respects back-off and claims, for workers that sync in a loop.

    :raises DirectoryUnavailable: the directory cannot be reached (rows stay queued).
    """
    result = SyncResult()
    with factory() as session:
        if session.scalar(select(OutboxEntry.id).limit(1)) is None:
            return result  # nothing queued: no need to reach the directory
    # The next batch is claimed and rendered while this one's adds are in flight, so the
    # directory is never left waiting for the database.
    with directory.connect() as conn, ThreadPoolExecutor(1, thread_name_prefix="claim") as ahead:
        directory.ensure_tree(conn)
        upcoming = ahead.submit(_claim, factory, directory, batch, 0, due_only)
        while True:
            row_ids, claimed = upcoming.result()
            if not row_ids:
                break
            upcoming = ahead.submit(_claim, factory, directory, batch, max(row_ids), due_only)
            errors: dict[tuple[str, str], str] = {}
            fresh = [obj for obj in claimed["desired"] if obj in claimed["fresh"]]
            done = _add_fresh(conn, directory, [claimed["desired"][obj] for obj in fresh], errors)
            for (kind, object_id), desired in claimed["desired"].items():
                if (kind, object_id) in done:
                    continue
                try:
                    if desired is None:
                        unpublish(conn, directory, kind, object_id)
                    else:
                        publish(conn, directory, desired)
                except LDAPOperationResult as exc:
                    label = desired.label if desired else object_id
                    errors[(kind, object_id)] = f"{kind} {label}: {exc.description}: {exc.message}"
            _settle(factory, claimed["rows"], errors)
            result.applied += len(claimed["desired"]) - len(errors)
            result.failed += len(errors)
            result.errors.extend(errors.values())
            if progress:
                progress(len(row_ids))
    with factory() as session:
        result.remaining = session.query(OutboxEntry).count()
    return result
