"""The audit log: who changed what, when, from where, with the state before and after."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from sqlalchemy.orm import Session

from provisioning.models import AuditEntry

SOURCES = ("cli", "portal", "api", "gateway", "system")


@dataclass(frozen=True)
class Actor:
    """Who makes a change and through which door (``cli``, ``portal``, ``api`` ...)."""

    name: str
    source: str = "cli"
    client: str | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"unknown audit source {self.source!r} (one of {', '.join(SOURCES)})")


def record(
    session: Session, actor: Actor, action: str, kind: str, object_id: str, label: str,
    before: Mapping[str, Any] | None = None, after: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Add one audit row to the session's transaction.

    ``before``/``after`` are snapshots made by the caller; they must not contain secrets
    (password hashes are never part of a snapshot).
    """
    entry = AuditEntry(
        actor=actor.name, source=actor.source, client=actor.client, action=action,
        object_kind=kind, object_id=object_id, object_label=label,
        before=None if before is None else json.dumps(before, ensure_ascii=False, default=str),
        after=None if after is None else json.dumps(after, ensure_ascii=False, default=str),
    )
    session.add(entry)
    return entry
