"""What the portal's agency pages and the API show: an agency's figures and an account search.

Both read only indexed columns, so they stay fast with tens of thousands of accounts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, MutableMapping

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from provisioning.accounts import STATUSES
from provisioning.agencies import subtree_ids
from provisioning.errors import InvalidInput
from provisioning.models import Account, Agency, Certificate, UsageDaily, utcnow

RECENT_DAYS = 30
EXPIRING_DAYS = 30
USAGE_CACHE_SECONDS = 300  # the 30-day usage figure reads a month of rollup rows; it moves slowly


def _in_agencies(session: Session, agency: Agency) -> list[Any]:
    """The filter for accounts of ``agency`` and those below it: none when that is every agency."""
    ids = subtree_ids(session, agency)
    everything = session.scalar(select(func.count()).select_from(Agency)) or 0
    return [] if len(ids) >= everything else [Account.agency_id.in_(ids)]


def _used_recently(session: Session, scope: list[Any], since: date) -> int:
    return session.scalar(
        select(func.count(func.distinct(UsageDaily.account_id)))
        .join(Account, Account.id == UsageDaily.account_id)
        .where(UsageDaily.day >= since, *scope, Account.status == "active", Account.kind == "personal")) or 0


def agency_overview(session: Session, agency: Agency, now: datetime | None = None,
                    cache: MutableMapping[str, tuple[float, int]] | None = None) -> dict[str, Any]:
    """Figures for ``agency`` and the agencies below it: accounts by status, the share of active
    personal accounts used in the last 30 days (from the usage rollup), and certificates expiring
    within 30 days. With ``cache`` (a dict kept by the caller), the usage count is reused for up to
    five minutes; every other figure is read afresh."""
    now = now or utcnow()
    scope = _in_agencies(session, agency)
    by_status = dict(session.execute(
        select(Account.status, func.count()).where(*scope).group_by(Account.status)).all())
    active_personal = session.scalar(select(func.count()).select_from(Account).where(
        *scope, Account.status == "active", Account.kind == "personal")) or 0
    since: date = (now - timedelta(days=RECENT_DAYS)).date()
    key, clock = f"{agency.id}:{since}", time.monotonic()
    if cache is not None and key in cache and cache[key][0] > clock:
        used = cache[key][1]
    else:
        used = _used_recently(session, scope, since)
        if cache is not None:
            cache[key] = (clock + USAGE_CACHE_SECONDS, used)
    expiring = list(session.execute(
        select(Certificate.not_after, Certificate.subject, Account.local_part, Account.domain)
        .join(Account, Account.id == Certificate.account_id)
        .where(*scope, Certificate.unbound_at.is_(None), Certificate.status == "valid",
               Certificate.not_after <= now + timedelta(days=EXPIRING_DAYS))
        .order_by(Certificate.not_after).limit(50)).all())
    children = list(session.scalars(select(Agency).where(Agency.parent_id == agency.id).order_by(Agency.code)))
    return {
        "code": agency.code, "name": agency.name, "level": agency.level, "domain": agency.domain,
        "status": agency.status, "staff_count": agency.staff_count,
        "accounts": {s: by_status.get(s, 0) for s in STATUSES}, "total": sum(by_status.values()),
        "active_personal": active_personal, "used_recently": used,
        "used_recently_pct": round(100 * used / active_personal, 1) if active_personal else None,
        "recent_days": RECENT_DAYS,
        "certificates_expiring": [
            {"address": f"{local}@{domain}", "subject": subject, "not_after": not_after.isoformat()}
            for not_after, subject, local, domain in expiring],
        "children": [{"code": c.code, "name": c.name} for c in children],
    }


@dataclass(frozen=True)
class Page:
    total: int
    page: int
    per_page: int
    items: list[Account]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def search_accounts(
    session: Session, agency: Agency, *, q: str = "", status: str | None = None, page: int = 1,
    per_page: int = 50,
) -> Page:
    """Accounts of ``agency`` and those below it, by address, matching ``q`` in the address, the
    name or the employee code, one page at a time.

    :raises InvalidInput: an unknown status, a page below 1 or a page size outside 1..200.
    """
    if status and status not in STATUSES:
        raise InvalidInput("status", status, "is not an account status", f"use one of: {', '.join(STATUSES)}")
    if page < 1:
        raise InvalidInput("page", page, "must be 1 or more")
    if not q.isprintable():
        raise InvalidInput("q", None, "contains control characters", "type letters, digits or an address")
    if not 1 <= per_page <= 200:
        raise InvalidInput("per_page", per_page, "must be between 1 and 200")
    where = _in_agencies(session, agency)
    if status:
        where.append(Account.status == status)
    text = q.strip().lower()[:100]
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(or_(Account.local_part.like(pattern, escape="\\"),
                         func.lower(Account.full_name).like(pattern, escape="\\"),
                         Account.employee_code.like(pattern, escape="\\")))
    total = session.scalar(select(func.count()).select_from(Account).where(*where)) or 0
    items = list(session.scalars(select(Account).where(*where).order_by(Account.local_part)
                                 .offset((page - 1) * per_page).limit(per_page)))
    return Page(total=total, page=page, per_page=per_page, items=items)
