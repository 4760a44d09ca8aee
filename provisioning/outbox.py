"""The directory outbox: rows written in the same transaction as each change.

A row names an object (``account`` or ``agency``) whose LDAP entry must be made to match its SQL
state; the syncer (``directory.sync``) applies and deletes rows. A directory outage therefore
delays publication but loses nothing.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from provisioning.models import OutboxEntry

KINDS = ("account", "agency")


def enqueue(session: Session, kind: str, object_id: str, hint: str | None = None) -> None:
    """Ask for the object's directory entry to be (re)published after this transaction commits.

    ``hint="create"`` says the object is new, so the syncer may add its entry without looking first.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown outbox kind {kind!r}")
    session.add(OutboxEntry(object_kind=kind, object_id=object_id, hint=hint))


def pending_count(session: Session) -> int:
    """How many outbox rows wait to be applied."""
    return session.scalar(select(func.count()).select_from(OutboxEntry)) or 0
