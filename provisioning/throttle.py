"""Failed-login throttling shared by every process that uses the same database (gateway, portal).

Each failure adds a row per key (``account:<id>`` or the login as typed when it names no account,
and ``client:<address>``); a key with ``limit`` rows inside the window is refused until they age
out. Rows older than the window are deleted as new failures arrive.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from provisioning.models import AuthFailure


def blocked(session: Session, limits: dict[str, int], window: float, now: datetime) -> bool:
    """Whether any key has reached its limit of failures in the last ``window`` seconds."""
    since = now - timedelta(seconds=window)
    counts = dict(session.execute(
        select(AuthFailure.key, func.count()).where(AuthFailure.key.in_(limits), AuthFailure.at >= since)
        .group_by(AuthFailure.key)).all())
    return any(counts.get(key, 0) >= limit for key, limit in limits.items())


def fail(session: Session, keys: list[str], window: float, now: datetime) -> None:
    """Record one failure for each key (in the caller's transaction) and forget expired ones."""
    session.execute(delete(AuthFailure).where(AuthFailure.at < now - timedelta(seconds=window)))
    session.execute(insert(AuthFailure), [{"key": key[:400], "at": now} for key in keys])
