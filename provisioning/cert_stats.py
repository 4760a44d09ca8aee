"""Certificate statistics for the annual report: agencies, officials and leaders holding a valid
certificate, per agency and per level.

Counted at the moment of the query: a holder "has a certificate" when one is bound to it and its
status is ``valid`` (run ``govmail cert check`` first so expiries are up to date). Officials are
live personal accounts (active or suspended); leaders are those whose title starts with one of
``[certificates] leader_titles`` (Giám đốc, Phó Giám đốc, Chủ tịch, Trưởng phòng ...).
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from typing import Any, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning.config import Settings
from provisioning.errors import InvalidInput
from provisioning.models import Account, Agency, Certificate

AGENCY_COLUMNS = ("agency", "name", "level", "agency_certificate", "officials", "officials_certified",
                  "officials_pct", "leaders", "leaders_certified", "leaders_pct")
LEVEL_COLUMNS = ("level", "agencies", "agencies_certified", "agencies_pct", "officials", "officials_certified",
                 "officials_pct", "leaders", "leaders_certified", "leaders_pct")


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


def is_leader(title: str | None, leader_titles: Sequence[str]) -> bool:
    """Whether a title names a leadership position (starts with a configured title, any case)."""
    if not title:
        return False
    folded = _fold(" ".join(title.split()))
    return any(folded == t or folded.startswith(t + " ") for t in map(_fold, leader_titles))


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def certificate_stats(session: Session, settings: Settings, by: str = "agency") -> list[dict[str, Any]]:
    """One row per active agency (``by="agency"``) or per level (``by="level"``, plus an ``all``
    row), with counts and percentages (None when there is nothing to divide by).

    :raises InvalidInput: ``by`` is neither agency nor level.
    """
    if by not in ("agency", "level"):
        raise InvalidInput("by", by, "is not a grouping", "use agency or level")
    valid = select(Certificate).where(Certificate.unbound_at.is_(None), Certificate.status == "valid")
    certified_accounts = set(session.scalars(valid.with_only_columns(Certificate.account_id)
                                             .where(Certificate.account_id.is_not(None))))
    certified_agencies = set(session.scalars(valid.with_only_columns(Certificate.agency_id)
                                             .where(Certificate.agency_id.is_not(None))))
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for account_id, agency_id, title in session.execute(
        select(Account.id, Account.agency_id, Account.title)
        .where(Account.kind == "personal", Account.status.in_(("active", "suspended")))
    ):
        row = counts[agency_id]
        certified = account_id in certified_accounts
        row["officials"] += 1
        row["officials_certified"] += certified
        if is_leader(title, settings.certificates.leader_titles):
            row["leaders"] += 1
            row["leaders_certified"] += certified
    agencies = list(session.scalars(select(Agency).where(Agency.status == "active").order_by(Agency.code)))
    if by == "agency":
        return [_agency_row(a, counts[a.id], a.id in certified_agencies) for a in agencies]
    levels: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    order = list(settings.agencies.levels)
    for agency in agencies:
        for key in (agency.level, "all"):
            total = levels[key]
            total["agencies"] += 1
            total["agencies_certified"] += agency.id in certified_agencies
            for name, value in counts[agency.id].items():
                total[name] += value
    keys = sorted((k for k in levels if k != "all"), key=lambda k: order.index(k) if k in order else len(order))
    return [_level_row(k, levels[k]) for k in [*keys, "all"] if k in levels]


def _agency_row(agency: Agency, c: dict[str, int], certified: bool) -> dict[str, Any]:
    return {"agency": agency.code, "name": agency.name, "level": agency.level, "agency_certificate": certified,
            "officials": c["officials"], "officials_certified": c["officials_certified"],
            "officials_pct": _pct(c["officials_certified"], c["officials"]),
            "leaders": c["leaders"], "leaders_certified": c["leaders_certified"],
            "leaders_pct": _pct(c["leaders_certified"], c["leaders"])}


def _level_row(level: str, c: dict[str, int]) -> dict[str, Any]:
    return {"level": level, "agencies": c["agencies"], "agencies_certified": c["agencies_certified"],
            "agencies_pct": _pct(c["agencies_certified"], c["agencies"]),
            "officials": c["officials"], "officials_certified": c["officials_certified"],
            "officials_pct": _pct(c["officials_certified"], c["officials"]),
            "leaders": c["leaders"], "leaders_certified": c["leaders_certified"],
            "leaders_pct": _pct(c["leaders_certified"], c["leaders"])}
