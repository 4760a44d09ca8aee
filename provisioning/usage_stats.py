"""The "regular use" measure of official mail, per account and summed per agency, level and province.

The measure (docs/statistics.md; every threshold in ``[stats]``):

* An account is **eligible** in a period when its spans (``account_spans``: created or restored
  until suspended, retired or transferred) cover at least ``min_eligible_days`` working days of it
  (all of them when the period has fewer). A span covers its local days from the day it opened up to
  the day before it closed. Personal mailboxes are the officials; shared mailboxes are counted apart.
* An **active day** has an authenticated, non-automatic send or a mailbox login. A week (Monday to
  Sunday, cut to the period) is a **working week** when it has a working day; it is one of the
  account's **eligible weeks** when the account was eligible on one of those working days.
* A **regular user** is eligible, was active in at least ``regular_week_share`` of its eligible weeks
  (on eligible days) and sent at least ``min_sent`` messages. A **daily user** was active on at least
  ``daily_day_share`` of its eligible working days.
* A period not over yet is cut at today (``2026`` becomes ``2026-01-01..<today>``).
* **Dormant**: a personal mailbox usable at the period's end
  for ``dormant_days`` days with no active day in them.
* **Coverage**: personal mailboxes usable at the period's end over the agencies' staff counts.

An account belongs to the agency of its last span in the period. Reports read the weekly rollup (and
the daily one for the partial weeks at the period's ends), never the raw events.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Iterable, Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, literal, select
from sqlalchemy.orm import Session

from provisioning import usage_rollup
from provisioning.agencies import get_agency, subtree_ids
from provisioning.config import Settings
from provisioning.errors import InvalidInput
from provisioning.models import Account, AccountSpan, Agency, UsageDaily, UsageWeekly
from provisioning.workcalendar import Period, Week, WorkCalendar

BREAKDOWNS = ("province", "level", "agency", "account")
AGGREGATE_COLUMNS = ("key", "name", "level", "staff", "mailboxes", "coverage_pct", "eligible", "regular",
                     "regular_pct", "daily", "daily_pct", "dormant", "shared", "shared_active", "suppressed")
COMPARE_COLUMNS = ("regular_pct_prev", "change_pts")
ACCOUNT_COLUMNS = ("agency", "address", "full_name", "kind", "eligible_days", "eligible_weeks", "active_weeks",
                   "active_days", "sent", "last_active", "eligible", "regular", "daily")


@dataclass
class AccountUsage:
    """One account's figures for a period (``eligible_*`` count working days and working weeks)."""

    account_id: str
    agency_id: str
    kind: str
    address: str
    full_name: str
    eligible_days: int = 0
    eligible_weeks: int = 0
    active_weeks: int = 0
    active_days: int = 0
    sent: int = 0
    last_active: date | None = None
    eligible: bool = False
    regular: bool = False
    daily: bool = False
    usable_at_end: bool = False


@dataclass
class UsageReport:
    """A report as asked for, plus what the summary sheet and charts need."""

    period: Period
    by: str
    columns: list[str]
    rows: list[dict[str, Any]]
    by_level: list[dict[str, Any]]
    by_agency: list[dict[str, Any]]
    trend: list[dict[str, Any]] = field(default_factory=list)
    previous: Period | None = None


@dataclass
class _Spans:
    """An account's usable days in the period, as (first, last) local days, and its agency."""

    agency_id: str
    kind: str
    address: str
    full_name: str
    ranges: list[tuple[date, date]] = field(default_factory=list)


def regular_use(
    session: Session, settings: Settings, period: Period, by: str = "agency", *, agency: str | None = None,
    compare: bool = False, min_size: int | None = None, trend: bool = False, refresh: bool = True,
    today: date | None = None,
) -> UsageReport:
    """The regular-use report for ``period``, broken down ``by`` province, level, agency or account.

    ``agency`` limits it to that agency and the agencies below it; ``compare`` adds the same period a
    year earlier; agencies with fewer than ``min_size`` eligible accounts (default
    ``[stats] min_agency_size``) have their rates left out; ``trend`` adds the monthly figures.
    The rollup is refreshed first unless ``refresh`` is false.

    A period not over yet is cut at ``today`` (default: today), so its rates are to date.

    :raises InvalidInput: an unknown breakdown, a negative ``min_size``, a period starting after
        ``today``. :raises NotFound: unknown agency.
    """
    today = today or date.today()
    if period.start > today:
        raise InvalidInput("period", period.label, "has not started yet", f"today is {today}")
    if period.end > today:
        period = Period(f"{period.start}..{today}", period.start, today)
    if by not in BREAKDOWNS:
        raise InvalidInput("by", by, "is not a breakdown", "use " + ", ".join(BREAKDOWNS))
    min_size = settings.stats.min_agency_size if min_size is None else min_size
    if min_size < 0:
        raise InvalidInput("min_size", min_size, "must not be negative", "e.g. 5")
    if refresh:
        usage_rollup.refresh(session, settings)
    agencies = _agencies(session, agency)
    spans = _spans(session, period, ZoneInfo(settings.stats.timezone))
    usages = account_usages(session, settings, period, set(agencies), spans)
    dormant = dormant_ids(session, settings, period.end, set(agencies), (period, spans))
    by_agency = _by_agency(agencies, usages, dormant, min_size)
    by_level = _by_level(settings, agencies, usages, dormant)
    report = UsageReport(period, by, [], [], by_level, by_agency)
    if compare:
        report.previous = period.previous_year()
        spans = _spans(session, report.previous, ZoneInfo(settings.stats.timezone))
        before = account_usages(session, settings, report.previous, set(agencies), spans)
        previous_dormant = dormant_ids(session, settings, report.previous.end, set(agencies), (report.previous, spans))
        _add_previous(by_agency, _by_agency(agencies, before, previous_dormant, min_size))
        _add_previous(by_level, _by_level(settings, agencies, before, previous_dormant))
    if by == "account":
        report.columns = list(ACCOUNT_COLUMNS)
        report.rows = [_account_row(u, agencies[u.agency_id]) for u in
                       sorted(usages, key=lambda u: (agencies[u.agency_id].code, u.address))]
    else:
        report.columns = list(AGGREGATE_COLUMNS) + (list(COMPARE_COLUMNS) if compare else [])
        total = by_level[-1]
        report.rows = {"province": [total], "level": by_level, "agency": [*by_agency, total]}[by]
    if trend:
        report.trend = [_month(session, settings, month, set(agencies)) for month in period.months()]
    return report


def account_usages(session: Session, settings: Settings, period: Period, agency_ids: set[str],
                   spans: dict[str, _Spans] | None = None) -> list[AccountUsage]:
    """Every account usable at some point of ``period`` whose last agency in it is in ``agency_ids``
    (``spans``: the period's spans, when read already)."""
    cal, tz = WorkCalendar(settings.stats), ZoneInfo(settings.stats.timezone)
    all_weeks = cal.weeks(period)
    weeks = [w for w in all_weeks if w.working]
    working = [d for w in weeks for d in w.working]
    need_days = min(settings.stats.min_eligible_days, len(working))
    spans = _spans(session, period, tz) if spans is None else spans
    whole, partial_weeks = [], {}
    usages: dict[str, AccountUsage] = {}
    for account_id, s in spans.items():
        if s.agency_id not in agency_ids:
            continue
        u = usages[account_id] = AccountUsage(account_id, s.agency_id, s.kind, s.address, s.full_name)
        u.usable_at_end = s.ranges[-1][1] == period.end
        if s.ranges == [(period.start, period.end)]:
            u.eligible_days, u.eligible_weeks = len(working), len(weeks)
            whole.append(u)
        else:
            days = [d for first, last in s.ranges for d in working[bisect_left(working, first):bisect_right(working, last)]]
            u.eligible_days = len(days)
            partial_weeks[account_id] = {d - timedelta(days=d.weekday()) for d in days}
            u.eligible_weeks = len(partial_weeks[account_id])
    _whole_activity(session, all_weeks, {u.account_id: u for u in whole})
    _partial_activity(session, period, {a: usages[a] for a in partial_weeks}, spans, partial_weeks)
    for u in usages.values():
        u.eligible = u.eligible_days >= need_days and u.eligible_days > 0
        u.regular = (u.eligible and u.sent >= settings.stats.min_sent
                     and u.active_weeks >= settings.stats.regular_week_share * u.eligible_weeks - 1e-9)
        u.daily = u.eligible and u.active_days >= settings.stats.daily_day_share * u.eligible_days - 1e-9
    return list(usages.values())


def dormant_ids(session: Session, settings: Settings, as_of: date, agency_ids: set[str],
                known: tuple[Period, dict[str, _Spans]] | None = None) -> set[str]:
    """Personal mailboxes usable on ``as_of`` (and for ``dormant_days`` before it) with no active day
    in the ``dormant_days`` days up to ``as_of``. ``known``: a period ending on ``as_of`` and its
    spans, read already (they answer when the period covers the window)."""
    first = as_of - timedelta(days=settings.stats.dormant_days - 1)
    if known is not None and known[0].start <= first and known[0].end == as_of:
        spans = known[1]
    else:
        spans = _spans(session, Period("dormant", first, as_of), ZoneInfo(settings.stats.timezone))
    candidates = {a for a, s in spans.items() if s.kind == "personal" and s.agency_id in agency_ids
                  and s.ranges[-1][0] <= first and s.ranges[-1][1] == as_of}
    return candidates - active_between(session, first, as_of)


def active_between(session: Session, first: date, last: date) -> set[str]:
    """Accounts with an active day from ``first`` to ``last`` (whole weeks from the weekly rollup)."""
    inner_first = first + timedelta(days=(7 - first.weekday()) % 7)
    inner_last = last - timedelta(days=(last.weekday() + 1) % 7)  # the last Sunday on or before ``last``
    active: set[str] = set()
    if inner_first + timedelta(days=6) <= inner_last:
        active.update(session.scalars(select(UsageWeekly.account_id).distinct().where(
            UsageWeekly.week >= inner_first, UsageWeekly.week <= inner_last - timedelta(days=6))))
        edges = [(first, inner_first - timedelta(days=1)), (inner_last + timedelta(days=1), last)]
    else:
        edges = [(first, last)]
    for a, b in edges:
        if a <= b:
            active.update(session.scalars(select(UsageDaily.account_id).distinct()
                                          .where(UsageDaily.day >= a, UsageDaily.day <= b)))
    return active


def dormant_list(session: Session, settings: Settings, as_of: date, agency: str | None = None) -> list[dict[str, Any]]:
    """The dormant mailboxes on ``as_of`` with their last active day (None: never), oldest first.

    :raises NotFound: unknown agency.
    """
    agencies = _agencies(session, agency)
    usage_rollup.refresh(session, settings)
    ids = dormant_ids(session, settings, as_of, set(agencies))
    last = dict(session.execute(select(UsageWeekly.account_id, func.max(UsageWeekly.last_day))
                                .where(UsageWeekly.last_day <= as_of).group_by(UsageWeekly.account_id)).all())
    rows = []
    for account in session.scalars(select(Account).where(Account.id.in_(ids))) if ids else []:
        seen = last.get(account.id)
        rows.append({"agency": account.agency.code, "address": account.address, "full_name": account.full_name,
                     "last_active": seen, "idle_days": (as_of - seen).days if seen else None})
    return sorted(rows, key=lambda r: (r["last_active"] or date.min, r["agency"], r["address"]))


def _agencies(session: Session, code: str | None) -> dict[str, Agency]:
    query = select(Agency)
    if code is not None:
        query = query.where(Agency.id.in_(subtree_ids(session, get_agency(session, code))))
    return {a.id: a for a in session.scalars(query)}


def _spans(session: Session, period: Period, tz: ZoneInfo) -> dict[str, _Spans]:
    """Each account's usable days within ``period`` (accounts with none are left out)."""
    start = datetime.combine(period.start, time(), tz)
    end = datetime.combine(period.end + timedelta(days=1), time(), tz)
    rows = session.execute(
        select(AccountSpan.account_id, AccountSpan.agency_id, AccountSpan.started_at, AccountSpan.ended_at,
               Account.kind, Account.local_part, Account.domain, Account.full_name)
        .join(Account, Account.id == AccountSpan.account_id)
        .where(AccountSpan.started_at < end, (AccountSpan.ended_at.is_(None)) | (AccountSpan.ended_at > start))
        .order_by(AccountSpan.account_id, AccountSpan.started_at)
    )
    out: dict[str, _Spans] = {}
    for account_id, agency_id, started, ended, kind, local, domain, name in rows:
        first = max(started.astimezone(tz).date(), period.start)
        last = period.end if ended is None else min(ended.astimezone(tz).date() - timedelta(days=1), period.end)
        if last < first:
            continue
        s = out.get(account_id)
        if s is None:
            s = out[account_id] = _Spans(agency_id, kind, f"{local}@{domain}", name)
        s.agency_id = agency_id
        if s.ranges and first <= s.ranges[-1][1] + timedelta(days=1):  # a transfer: one stretch of days
            s.ranges[-1] = (s.ranges[-1][0], max(last, s.ranges[-1][1]))
        else:
            s.ranges.append((first, last))
    return out


def _whole_activity(session: Session, weeks: Sequence[Week], usages: dict[str, AccountUsage]) -> None:
    """Activity of accounts usable for the whole period: whole weeks from ``usage_weekly``, the cut
    weeks at either end from ``usage_daily``. ``weeks`` are all the period's weeks."""
    if not usages:
        return
    whole = [w.monday for w in weeks if w.whole]
    if whole:
        idle = [w.monday for w in weeks if w.whole and not w.working]
        active_week = case((UsageWeekly.week.in_(idle), 0), else_=1) if idle else literal(1)
        _add(usages, session.execute(
            select(UsageWeekly.account_id, func.sum(active_week), func.sum(UsageWeekly.working_days),
                   func.sum(UsageWeekly.sent), func.max(UsageWeekly.last_day))
            .where(UsageWeekly.week >= whole[0], UsageWeekly.week <= whole[-1])
            .group_by(UsageWeekly.account_id)
        ))
    for w in weeks:
        if not w.whole:
            _add(usages, session.execute(
                select(UsageDaily.account_id, literal(1 if w.working else 0),
                       func.sum(case((UsageDaily.working, 1), else_=0)), func.sum(UsageDaily.sent),
                       func.max(UsageDaily.day))
                .where(UsageDaily.day >= w.start, UsageDaily.day <= w.end).group_by(UsageDaily.account_id)
            ))


def _add(usages: dict[str, AccountUsage], rows: Iterable[Any]) -> None:
    for account_id, weeks, days, sent, last in rows:
        u = usages.get(account_id)
        if u is None:
            continue
        u.active_weeks += int(weeks)
        u.active_days += int(days)
        u.sent += int(sent)
        u.last_active = last if u.last_active is None or last > u.last_active else u.last_active


def _partial_activity(session: Session, period: Period, usages: dict[str, AccountUsage],
                      spans: dict[str, _Spans], eligible_weeks: dict[str, set[date]]) -> None:
    """Activity of accounts usable for part of the period, day by day, on their usable days only."""
    ids = sorted(usages)
    for start in range(0, len(ids), 500):
        rows = session.execute(
            select(UsageDaily.account_id, UsageDaily.day, UsageDaily.sent, UsageDaily.working)
            .where(UsageDaily.account_id.in_(ids[start:start + 500]), UsageDaily.day >= period.start,
                   UsageDaily.day <= period.end)
        )
        active: dict[str, set[date]] = defaultdict(set)
        for account_id, day, sent, working in rows:
            if not any(a <= day <= b for a, b in spans[account_id].ranges):
                continue
            u = usages[account_id]
            monday = day - timedelta(days=day.weekday())
            if monday in eligible_weeks[account_id]:
                active[account_id].add(monday)
            u.active_days += 1 if working else 0
            u.sent += sent
            u.last_active = day if u.last_active is None or day > u.last_active else u.last_active
        for account_id, mondays in active.items():
            usages[account_id].active_weeks = len(mondays)


def _pct(part: int, whole: int | None) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def _summary(key: str, name: str, level: str | None, staff: int | None, usages: Iterable[AccountUsage],
             dormant: set[str]) -> dict[str, Any]:
    personal = [u for u in usages if u.kind == "personal"]
    shared = [u for u in usages if u.kind != "personal" and u.eligible]
    eligible = [u for u in personal if u.eligible]
    mailboxes = sum(1 for u in personal if u.usable_at_end)
    regular, daily = sum(u.regular for u in eligible), sum(u.daily for u in eligible)
    return {
        "key": key, "name": name, "level": level, "staff": staff, "mailboxes": mailboxes,
        "coverage_pct": _pct(mailboxes, staff), "eligible": len(eligible), "regular": regular,
        "regular_pct": _pct(regular, len(eligible)), "daily": daily, "daily_pct": _pct(daily, len(eligible)),
        "dormant": sum(1 for u in personal if u.account_id in dormant),
        "shared": len(shared), "shared_active": sum(1 for u in shared if u.active_weeks), "suppressed": False,
    }


def _by_agency(agencies: dict[str, Agency], usages: Sequence[AccountUsage], dormant: set[str],
               min_size: int) -> list[dict[str, Any]]:
    grouped: dict[str, list[AccountUsage]] = defaultdict(list)
    for u in usages:
        grouped[u.agency_id].append(u)
    rows = []
    for a in sorted(agencies.values(), key=lambda a: a.code):
        if a.status != "active" and not grouped[a.id]:
            continue
        row = _summary(a.code, a.name, a.level, a.staff_count, grouped[a.id], dormant)
        if row["eligible"] < min_size:  # counts would give the rates away
            row.update(regular=None, regular_pct=None, daily=None, daily_pct=None, dormant=None, suppressed=True)
        rows.append(row)
    return rows


def _by_level(settings: Settings, agencies: dict[str, Agency], usages: Sequence[AccountUsage],
              dormant: set[str]) -> list[dict[str, Any]]:
    grouped: dict[str, list[AccountUsage]] = defaultdict(list)
    for u in usages:
        grouped[agencies[u.agency_id].level].append(u)
    staff: dict[str, int | None] = {}
    for a in agencies.values():
        if a.status == "active" and a.staff_count is not None:
            staff[a.level] = (staff.get(a.level) or 0) + a.staff_count
    levels = [lv for lv in settings.agencies.levels if grouped[lv] or lv in staff]
    rows = [_summary(lv, lv, lv, staff.get(lv), grouped[lv], dormant) for lv in levels]
    total_staff = sum(v for v in staff.values() if v) if staff else None
    rows.append(_summary("total", "total", None, total_staff, usages, dormant))
    return rows


def _add_previous(rows: list[dict[str, Any]], previous: list[dict[str, Any]]) -> None:
    before = {r["key"]: r["regular_pct"] for r in previous}
    for row in rows:
        prev = before.get(row["key"])
        row["regular_pct_prev"] = prev
        row["change_pts"] = round(row["regular_pct"] - prev, 1) if row["regular_pct"] is not None and prev is not None else None


def _account_row(u: AccountUsage, agency: Agency) -> dict[str, Any]:
    return {"agency": agency.code, "address": u.address, "full_name": u.full_name, "kind": u.kind,
            "eligible_days": u.eligible_days, "eligible_weeks": u.eligible_weeks, "active_weeks": u.active_weeks,
            "active_days": u.active_days, "sent": u.sent, "last_active": u.last_active,
            "eligible": u.eligible, "regular": u.regular, "daily": u.daily}


def _month(session: Session, settings: Settings, month: Period, agency_ids: set[str]) -> dict[str, Any]:
    eligible = [u for u in account_usages(session, settings, month, agency_ids) if u.kind == "personal" and u.eligible]
    regular = sum(u.regular for u in eligible)
    return {"month": month.label, "eligible": len(eligible), "regular": regular, "regular_pct": _pct(regular, len(eligible))}
