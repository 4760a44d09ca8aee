"""Account spans: when each account was usable, and in which agency (for the usage statistics).

The statistics count an account only for the working days it was eligible. :func:`track` keeps
``account_spans`` in step with every account change, in the change's own transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from provisioning.models import Account, AccountSpan


def track(session: Session, account: Account, before: dict[str, Any] | None, at: datetime) -> None:
    """Open or close ``account``'s span after a change (``before``: its view before, None on create).

    A span is open while the account is active; a transfer of an active account ends the span in
    the old agency and opens one in the new agency.
    """
    was_active = before is not None and before["status"] == "active"
    is_active = account.status == "active"
    moved = before is not None and before["agency"] != account.agency.code
    if was_active and (not is_active or moved):
        close(session, account.id, at)
    if is_active and (not was_active or moved):
        open_span(session, account.id, account.agency_id, at)


def open_span(session: Session, account_id: str, agency_id: str, at: datetime) -> None:
    """Start a span for an account that has none open."""
    session.add(AccountSpan(account_id=account_id, agency_id=agency_id, started_at=at, ended_at=None))


def close(session: Session, account_id: str, at: datetime) -> None:
    """End the account's open span, if it has one."""
    session.execute(
        update(AccountSpan).where(AccountSpan.account_id == account_id, AccountSpan.ended_at.is_(None))
        .values(ended_at=at)
    )

