"""The usage rollup: per-account daily and weekly activity, kept up to date incrementally.

Reports read ``usage_weekly`` (one row per account and active week) instead of rescanning raw
events. :func:`refresh` folds in the gateway's events recorded since the last refresh;
:func:`record_logins` folds in mailbox logins as they are imported. Both take the rollup's lock (a
row of ``usage_rollup_state``), so concurrent refreshes never count an event twice.

An event is folded in once it is :data:`SETTLE` old: several gateway processes commit events a few
milliseconds after their timestamp, and the watermark must not pass an event still in flight.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Callable, Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

from sqlalchemy import Date, and_, case, delete, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from provisioning.config import Settings
from provisioning.models import LoginEvent, UsageDaily, UsageEvent, UsageRollupState, UsageWeekly, utcnow
from provisioning.workcalendar import WorkCalendar

SETTLE = timedelta(minutes=2)
STATE = "events"
_CHUNK = 500
_WHOLE_WEEK = 2000  # above this many touched accounts, a week is recomputed for everyone


@dataclass(frozen=True)
class Login:
    """One successful mailbox login read from the mail store's log."""

    account_id: str
    at: datetime
    protocol: str
    client: str | None
    line_hash: str


@dataclass
class RefreshResult:
    events: int = 0
    days: int = 0
    weeks: int = 0
    rebuilt: bool = False
    watermark: datetime | None = None


Counts = dict[tuple[str, date], list[int]]  # (account, day) -> [sent, logins]
Touched = dict[date, set[str]]  # week (Monday) -> accounts whose days in it changed


def refresh(session: Session, settings: Settings, now: datetime | None = None,
            progress: Callable[[int], None] | None = None) -> RefreshResult:
    """Fold the gateway's events up to ``now - SETTLE`` into the rollup.

    When the time zone or the working calendar changed since the last refresh, the rollup is first
    rebuilt (time zone) or its working-day flags recomputed (calendar).
    """
    state = _lock(session)
    cal, tz = WorkCalendar(settings.stats), ZoneInfo(settings.stats.timezone)
    result = RefreshResult()
    zone, _, fingerprint = (state.calendar or "").partition("|")
    if state.calendar is not None and zone != settings.stats.timezone:
        _restart(session, state, cal, tz)
        result.rebuilt = True
    elif state.calendar is not None and fingerprint != cal.fingerprint():
        _reflag(session, cal)
        result.rebuilt = True
    state.calendar = f"{settings.stats.timezone}|{cal.fingerprint()}"
    cutoff = (now or utcnow()) - SETTLE
    query = select(UsageEvent.at, UsageEvent.account_id).where(
        UsageEvent.direction != "received", UsageEvent.automatic.is_(False), UsageEvent.at <= cutoff,
    )
    if state.watermark is not None:
        query = query.where(UsageEvent.at > state.watermark)
    counts: Counts = defaultdict(lambda: [0, 0])
    for at, account_id in session.execute(query.execution_options(yield_per=20_000)):
        counts[(account_id, at.astimezone(tz).date())][0] += 1
        result.events += 1
        if progress and result.events % 20_000 == 0:
            progress(20_000)
    result.days, result.weeks = _fold(session, cal, counts)
    state.watermark = cutoff if state.watermark is None or cutoff > state.watermark else state.watermark
    result.watermark = state.watermark
    return result


def pending(session: Session, rebuild: bool = False) -> int:
    """How many sent events a refresh (or a rebuild) would read at most: for progress bars."""
    query = select(func.count()).select_from(UsageEvent).where(UsageEvent.direction != "received")
    watermark = None if rebuild else session.scalar(select(UsageRollupState.watermark).where(UsageRollupState.name == STATE))
    return session.scalar(query if watermark is None else query.where(UsageEvent.at > watermark)) or 0


def rebuild(session: Session, settings: Settings, now: datetime | None = None,
            progress: Callable[[int], None] | None = None) -> RefreshResult:
    """Recompute the whole rollup from the stored events and logins (after a bug fix or a restore)."""
    _restart(session, _lock(session), WorkCalendar(settings.stats), ZoneInfo(settings.stats.timezone))
    result = refresh(session, settings, now, progress)
    result.rebuilt = True
    return result


def record_logins(session: Session, settings: Settings, logins: Sequence[Login],
                  touched: Touched | None = None) -> int:
    """Store the logins not seen before (by ``line_hash``) and fold them into the rollup.

    A long import passes ``touched`` (an empty dict) to every call and then calls
    :func:`recompute_weeks` once with it, instead of rewriting the same weeks for every batch.

    :returns: how many were new.
    """
    if not logins:
        return 0
    _lock(session)
    unique = list({login.line_hash: login for login in logins}.values())
    seen: set[str] = set()
    for start in range(0, len(unique), _CHUNK):
        hashes = [login.line_hash for login in unique[start:start + _CHUNK]]
        seen.update(session.scalars(select(LoginEvent.line_hash).where(LoginEvent.line_hash.in_(hashes))))
    new = [login for login in unique if login.line_hash not in seen]
    if new:
        session.execute(insert(LoginEvent), [
            dict(at=login.at, account_id=login.account_id, protocol=login.protocol, client=login.client,
                 line_hash=login.line_hash) for login in new
        ])
        tz = ZoneInfo(settings.stats.timezone)
        _fold(session, WorkCalendar(settings.stats), _login_counts([(n.account_id, n.at) for n in new], tz), touched)
    return len(new)


def _lock(session: Session) -> UsageRollupState:
    """The rollup state row, locked for this transaction (SQLite: the database's write lock)."""
    stamp = utcnow()
    if session.execute(update(UsageRollupState).where(UsageRollupState.name == STATE)
                       .values(updated_at=stamp)).rowcount == 0:
        session.execute(_upsert(session, UsageRollupState).values(name=STATE, updated_at=stamp)
                        .on_conflict_do_nothing(index_elements=["name"]))
    return session.execute(
        select(UsageRollupState).where(UsageRollupState.name == STATE).with_for_update()
    ).scalar_one()


def _upsert(session: Session, model: type) -> postgresql.Insert | sqlite.Insert:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def _restart(session: Session, state: UsageRollupState, cal: WorkCalendar, tz: ZoneInfo) -> None:
    """Empty the rollup and fold the stored logins back in; events follow from an empty watermark."""
    session.execute(delete(UsageWeekly))
    session.execute(delete(UsageDaily))
    state.watermark = state.calendar = None
    rows = session.execute(select(LoginEvent.account_id, LoginEvent.at).execution_options(yield_per=20_000))
    touched: Touched = {}
    for chunk in rows.partitions():
        _fold(session, cal, _login_counts(chunk, tz), touched)
    recompute_weeks(session, touched)  # once, not once per chunk


def _login_counts(logins: Iterable[tuple[str, datetime]], tz: ZoneInfo) -> Counts:
    counts: Counts = defaultdict(lambda: [0, 0])
    for account_id, at in logins:
        counts[(account_id, at.astimezone(tz).date())][1] += 1
    return counts


def _fold(session: Session, cal: WorkCalendar, counts: Mapping[tuple[str, date], list[int]],
          touched: Touched | None = None) -> tuple[int, int]:
    """Add ``counts`` to ``usage_daily`` and recompute the weeks they touch; returns (days, weeks).

    With ``touched``, the weeks are only noted there, for :func:`recompute_weeks` later.
    """
    if not counts:
        return 0, 0
    stmt = _upsert(session, UsageDaily)
    stmt = stmt.on_conflict_do_update(
        index_elements=["account_id", "day"],
        set_={"sent": UsageDaily.sent + stmt.excluded.sent, "logins": UsageDaily.logins + stmt.excluded.logins},
    )
    rows = [dict(account_id=a, day=d, sent=s, logins=n, working=cal.is_working(d)) for (a, d), (s, n) in counts.items()]
    for start in range(0, len(rows), 10_000):
        session.execute(stmt, rows[start:start + 10_000])
    weeks: Touched = {} if touched is None else touched
    for account_id, day in counts:
        weeks.setdefault(day - timedelta(days=day.weekday()), set()).add(account_id)
    if touched is None:
        recompute_weeks(session, weeks)
    return len(rows), len({d - timedelta(days=d.weekday()) for _, d in counts})


def recompute_weeks(session: Session, touched: Touched) -> None:
    """Rewrite the weekly rollup of the given weeks and accounts from the daily one."""
    for monday, accounts in sorted(touched.items()):
        _recompute_week(session, monday, None if len(accounts) > _WHOLE_WEEK else sorted(accounts))


def _recompute_week(session: Session, monday: date, accounts: list[str] | None) -> None:
    """Rewrite ``usage_weekly`` for one week from ``usage_daily`` (for ``accounts``, or everyone)."""
    chunks = [None] if accounts is None else [accounts[i:i + _CHUNK] for i in range(0, len(accounts), _CHUNK)]
    for chunk in chunks:
        where = and_(UsageDaily.day >= monday, UsageDaily.day <= monday + timedelta(days=6))
        gone = UsageWeekly.week == monday
        if chunk is not None:
            where, gone = and_(where, UsageDaily.account_id.in_(chunk)), and_(gone, UsageWeekly.account_id.in_(chunk))
        session.execute(delete(UsageWeekly).where(gone))
        summed = select(
            literal(monday, Date()), UsageDaily.account_id, func.count(),
            func.sum(case((UsageDaily.working, 1), else_=0)), func.sum(UsageDaily.sent), func.max(UsageDaily.day),
        ).where(where).group_by(UsageDaily.account_id)
        session.execute(insert(UsageWeekly).from_select(
            ["week", "account_id", "active_days", "working_days", "sent", "last_day"], summed))


def _reflag(session: Session, cal: WorkCalendar) -> None:
    """Recompute every day's working flag under ``cal`` and then every week."""
    days = list(session.scalars(select(UsageDaily.day).distinct()))
    for flag in (True, False):
        chosen = [d for d in days if cal.is_working(d) is flag]
        for start in range(0, len(chosen), _CHUNK):
            session.execute(update(UsageDaily).where(UsageDaily.day.in_(chosen[start:start + _CHUNK]))
                            .values(working=flag))
    for monday in sorted({d - timedelta(days=d.weekday()) for d in days}):
        _recompute_week(session, monday, None)
