"""The annual "regular use" report against its target, on SQLite and PostgreSQL, side by side in one run.

1. Generate a province-year of usage (default 10,000 accounts, ~2.5 million events) straight into the
   tables (SQLAlchemy Core executemany on SQLite; COPY on PostgreSQL, where executemany was 3-4 times
   slower): ~60 agencies (province, a few district, commune; ``provisioning.sample`` names and staff
   counts), personal accounts and ~2% shared ones with unique local parts, one span each (~3%
   created during the year, ~2% suspended for a few weeks: two spans), mailbox logins and gateway
   events over the year's working days (heavy, steady, occasional, rare and dormant users;
   ~10% received, ~5% automatic). Both databases get exactly the same rows (same seed).
2. ``usage_rollup.rebuild`` (the one-off initial rollup, ``now`` = the day after the period), then an
   incremental ``refresh`` after one more day of events has arrived.
3. ``usage_stats.regular_use`` for the year by agency and by level (``--repeat`` runs each: best and
   median), by agency with ``compare`` and with ``trend`` (one run each). Every phase runs in its own
   session and transaction, as a CLI command does; the report refreshes the rollup first (``refresh=True``).

Target (issue 5): the annual report by agency and by level under 2 s on each database. The ratio
printed is target / measured: >= 1.00 means the target is met (2.00: twice as fast as needed). The
issue names no target for the national scale: there the times are printed without a ratio.

``--national``: 1,000,000 accounts (34 provinces' worth of agencies) and one month of events (~21 per
account; ``--events`` overrides), PostgreSQL only; the report is timed for that month (best/median)
and for the whole year by agency (one run).

On PostgreSQL the tables are ANALYZEd after loading and after the rebuild (untimed): a production
server's autovacuum would have done it, the test server here may have autovacuum off.
``--profile`` adds a cProfile of one report by agency and the time spent per SQL statement.

Usage: python benchmarks/usage_report.py [--accounts N] [--events N] [--year Y] [--db sqlite,postgresql]
       [--pg-url URL] [--national] [--seed S] [--repeat R] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import hashlib
import io
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from datetime import time as dtime
from pathlib import Path
from typing import Any, Callable, Iterator
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Engine, create_engine, event, func, insert, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provisioning import usage_rollup, usage_stats  # noqa: E402
from provisioning.config import DatabaseSettings, Settings  # noqa: E402
from provisioning.db import make_engine, migrate, session_factory  # noqa: E402
from provisioning.models import (  # noqa: E402
    Account, AccountSpan, Agency, LoginEvent, UsageDaily, UsageEvent, UsageWeekly,
)
from provisioning.sample import province  # noqa: E402
from provisioning.workcalendar import Period, WorkCalendar, parse_period  # noqa: E402

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET = 2.0  # seconds, the annual report by agency and by level (issue 5)
EVENTS_PER_ACCOUNT_YEAR = 250
NATIONAL_ACCOUNTS = 1_000_000
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
ACCOUNTS_SINCE = datetime(2024, 6, 1, 8, tzinfo=TZ)  # the mail system's launch: every first span opens here
PASSWORD_HASH = "$argon2id$v=19$m=65536,t=3,p=1$YmVuY2htYXJr$bm90LWEtcmVhbC1oYXNoLWJlbmNobWFyay1vbmx5"
BATCH = 20_000  # rows per executemany
COMMIT_EVERY = 500_000  # event rows per transaction while loading

# The 34 provinces and cities after the 2025 merger (national run: one sample province each).
PROVINCES = (
    "Hà Nội", "Huế", "Lai Châu", "Điện Biên", "Sơn La", "Lạng Sơn", "Quảng Ninh", "Thanh Hóa", "Nghệ An",
    "Hà Tĩnh", "Cao Bằng", "Tuyên Quang", "Lào Cai", "Thái Nguyên", "Phú Thọ", "Bắc Ninh", "Hưng Yên",
    "Hải Phòng", "Ninh Bình", "Quảng Trị", "Đà Nẵng", "Quảng Ngãi", "Gia Lai", "Khánh Hòa", "Lâm Đồng",
    "Đắk Lắk", "Hồ Chí Minh", "Đồng Nai", "Tây Ninh", "Cần Thơ", "Vĩnh Long", "Đồng Tháp", "Cà Mau", "An Giang",
)

# name, share of personal accounts, weekly activity probability (low, high), share of an active
# week's working days used, send intensity (log scale; heavier users send more per active day),
# weight of mailbox logins (readers who open mail without sending).
PROFILES = (
    ("heavy", 0.30, (0.93, 1.00), 0.85, 0.8, 1.0),
    ("steady", 0.25, (0.78, 0.95), 0.55, 0.4, 1.5),
    ("occasional", 0.25, (0.25, 0.65), 0.30, 0.0, 2.0),
    ("rare", 0.10, (0.02, 0.15), 0.25, -0.4, 0.5),
    ("dormant", 0.10, (0.0, 0.0), 0.0, -0.4, 0.05),  # half never used it, half stopped during the period
)
DIRECTIONS = ("sent_internal", "sent_external", "received")


def say(message: str) -> None:
    print(message, flush=True)


def ascii_fold(value: str) -> str:
    """'Đặng Thị Ánh' -> 'dang thi anh'."""
    value = unicodedata.normalize("NFD", value.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in value if not unicodedata.combining(c)).lower()


def local_midnight(day: date) -> datetime:
    return datetime.combine(day, dtime(), TZ).astimezone(timezone.utc)


# --- the generated world (independent of the database) ------------------------------------------


@dataclass
class Plan:
    """Everything to insert, kept compact (numpy arrays, lists); rows are built batch by batch."""

    agencies: list[dict[str, Any]]
    account_ids: list[str]
    account_agency: list[str]  # agency id of each account
    account_domain: list[str]
    local_parts: list[str]
    full_names: list[str]
    kinds: list[str]
    created: list[datetime]
    spans: list[tuple[int, datetime, datetime | None]]  # (account index, started, ended)
    days: list[date]  # the event window, every calendar day
    sends: np.ndarray  # uint16 [account, day]: non-automatic sends
    received: tuple[np.ndarray, np.ndarray]  # (account, day) of each received event, sorted by day
    automatic: tuple[np.ndarray, np.ndarray]
    logins: tuple[np.ndarray, np.ndarray]
    extra: tuple[np.ndarray, np.ndarray]  # (account, kind 0 send / 1 received / 2 automatic) on extra_day
    extra_day: date
    profile_counts: dict[str, int]
    notes: list[str] = field(default_factory=list)

    @property
    def events(self) -> int:
        return int(self.sends.sum(dtype=np.int64)) + len(self.received[0]) + len(self.automatic[0])


def make_plan(accounts: int, events: int, window: tuple[date, date], agencies_per_province: int,
              provinces: int, logins: int, extra: int | None, seed: int) -> Plan:
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    notes: list[str] = []

    # Agencies and officials: provisioning.sample, one province per `provinces`.
    agency_rows: list[dict[str, Any]] = []
    staff_agency: list[int] = []
    names: list[str] = []
    launched = local_midnight(date(2024, 5, 1))
    sizes = [accounts // provinces + (1 if p < accounts % provinces else 0) for p in range(provinces)]
    for p, size in enumerate(sizes):
        if provinces == 1:
            name, code, domain = "Vĩnh Phúc", "H62", "vinhphuc.gov.vn"
        else:
            name = PROVINCES[p % len(PROVINCES)]
            code, domain = f"P{p + 1:02d}", ascii_fold(name).replace(" ", "") + ".gov.vn"
        rows, staff = province(size, seed=seed + p, province_code=code, domain=domain, province_name=name,
                               agencies=min(agencies_per_province, max(3, size // 20)))
        communes = [r for r in rows if r["level"] == "commune"]
        for r in communes[:3] if len(communes) > 6 else []:  # the former towns and districts
            kind, place = re.fullmatch(r"UBND (phường|xã) (.+)", r["name"]).groups()  # type: ignore[union-attr]
            r["name"] = f"UBND {'thành phố' if kind == 'phường' else 'huyện'} {place}"
            r["level"] = "district"
        ids = {r["code"]: str(uuid.UUID(bytes=rng.bytes(16), version=4)) for r in rows}
        index = {r["code"]: len(agency_rows) + i for i, r in enumerate(rows)}
        for r in rows:
            agency_rows.append({
                "id": ids[r["code"]], "code": r["code"], "name": r["name"],
                "short_name": r["short_name"] if provinces == 1 else f"{r['short_name']}-{code.lower()}",
                "domain": r["domain"], "level": r["level"], "parent_id": ids.get(r["parent"]),
                "status": "active", "staff_count": int(r["staff_count"]), "created_at": launched,
                "updated_at": launched,
            })
        for s in staff:
            staff_agency.append(index[s["agency"]])
            names.append(s["full_name"])
        if provinces > 1 and (p + 1) % 5 == 0:
            say(f"  names: {p + 1}/{provinces} provinces, {len(names):,} officials")
    n = len(names)

    # Accounts: ~2% shared mailboxes, unique local parts as the engine makes them (given + initials, 2, 3...).
    shared = rng.random(n) < 0.02
    seen: dict[str, int] = defaultdict(int)
    local_parts, full_names, kinds = [], [], []
    for i, full_name in enumerate(names):
        if shared[i]:
            local_parts.append(f"vanthu.{i}")
            full_names.append(f"Văn thư {agency_rows[staff_agency[i]]['name']}"[:128])
            kinds.append("shared")
            continue
        words = ascii_fold(full_name).split()
        base = words[-1] + "".join(w[0] for w in words[:-1])
        seen[base] += 1
        local_parts.append(base if seen[base] == 1 else f"{base}{seen[base]}")
        full_names.append(full_name)
        kinds.append("personal")
    raw = rng.bytes(16 * n)
    account_ids = [str(uuid.UUID(bytes=raw[16 * i:16 * i + 16], version=4)) for i in range(n)]
    account_agency = [agency_rows[a]["id"] for a in staff_agency]
    account_domain = [agency_rows[a]["domain"] for a in staff_agency]

    # The window, its working days and weeks.
    cal = WorkCalendar(Settings().stats)
    first, last = window
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    nd = len(days)
    working = np.array([cal.is_working(d) for d in days])
    monday0 = first - timedelta(days=first.weekday())
    week_of = np.array([(d - monday0).days // 7 for d in days])
    nweeks = int(week_of.max()) + 1
    week_days = [np.nonzero((week_of == w) & working)[0] for w in range(nweeks)]

    # Spans: everyone since the launch; ~3% created during the window, ~2% suspended a few weeks.
    begin = np.zeros(n, dtype=np.int64)  # first usable day index
    gap_from = np.full(n, -1, dtype=np.int64)  # suspended from this day index (excluded) ...
    gap_to = np.full(n, -1, dtype=np.int64)  # ... until this one (usable again)
    roll = rng.random(n)
    late = np.nonzero(roll < 0.03)[0]
    paused = np.nonzero((roll >= 0.03) & (roll < 0.05))[0]
    begin[late] = rng.integers(int(nd * 0.1), int(nd * 0.8) + 1, len(late))
    gap_from[paused] = rng.integers(int(nd * 0.05), int(nd * 0.7) + 1, len(paused))
    gap_to[paused] = gap_from[paused] + np.maximum(3, (nd * rng.uniform(0.04, 0.12, len(paused))).astype(np.int64))
    spans: list[tuple[int, datetime, datetime | None]] = []
    created: list[datetime] = []
    for i in range(n):
        opened = ACCOUNTS_SINCE if begin[i] == 0 else datetime.combine(days[begin[i]], dtime(8), TZ)
        created.append(opened)
        if gap_from[i] >= 0:
            spans.append((i, opened, datetime.combine(days[gap_from[i]], dtime(8), TZ)))
            spans.append((i, datetime.combine(first + timedelta(days=int(gap_to[i])), dtime(8), TZ), None))
        else:
            spans.append((i, opened, None))

    def usable(acc: np.ndarray, day: np.ndarray | int) -> np.ndarray:
        return (day >= begin[acc]) & ~((day >= gap_from[acc]) & (day < gap_to[acc]))

    # Profiles: shared mailboxes behave like steady users.
    shares = np.array([p[1] for p in PROFILES])
    profile = rng.choice(len(PROFILES), n, p=shares / shares.sum())
    profile[shared] = 1
    lo = np.array([p[2][0] for p in PROFILES])[profile]
    hi = np.array([p[2][1] for p in PROFILES])[profile]
    p_week = rng.uniform(lo, hi)
    day_share = np.array([p[3] for p in PROFILES])[profile]
    intensity = np.exp(np.array([p[4] for p in PROFILES])[profile] + rng.normal(0, 0.5, n))
    login_weight = np.array([p[5] for p in PROFILES])[profile]
    dormant = profile == len(PROFILES) - 1
    leavers = np.nonzero(dormant & (rng.random(n) < 0.5))[0]
    stop = np.full(n, nd, dtype=np.int64)
    stop[leavers] = rng.integers(int(nd * 0.1), int(nd * 0.6) + 1, len(leavers))
    p_week[leavers] = 0.6
    profile_counts = {p[0]: int((profile == k).sum()) for k, p in enumerate(PROFILES)}

    # Active days: an active week has one chosen working day plus each other working day with the
    # profile's share; weekends and holidays rarely.
    week_active = rng.random((n, nweeks), dtype=np.float32) < p_week[:, None].astype(np.float32)
    forced = np.zeros((n, nd), dtype=bool)
    active = np.zeros((n, nd), dtype=bool)
    everyone = np.arange(n)
    for w, wd in enumerate(week_days):
        if len(wd):
            who = np.nonzero(week_active[:, w])[0]
            forced[who, wd[rng.integers(0, len(wd), len(who))]] = True
    for j in range(nd):
        share = day_share if working[j] else day_share * 0.03
        active[:, j] = week_active[:, week_of[j]] & (rng.random(n) < share) | forced[:, j]
        active[:, j] &= usable(everyone, j) & (j < stop)
        forced[:, j] &= active[:, j]

    n_received, n_automatic = round(events * 0.10), round(events * 0.05)
    n_send = events - n_received - n_automatic
    active_days = int(active.sum(dtype=np.int64))
    if active_days > n_send / 1.2:  # too few events for this much activity: drop optional days
        must = int(forced.sum(dtype=np.int64))
        keep = max(0.0, n_send / 1.2 - must) / max(1, active_days - must)
        for j in range(nd):
            active[:, j] = forced[:, j] | (active[:, j] & (rng.random(n) < keep))
        notes.append(f"{events:,} events are few for {n:,} accounts: kept {keep:.0%} of the optional active days")
        active_days = int(active.sum(dtype=np.int64))
    del forced, week_active
    weight = float(intensity @ active.sum(axis=1, dtype=np.int64))
    lam = max(0.0, n_send - active_days) / weight if weight else 0.0
    sends = np.zeros((n, nd), dtype=np.uint16)
    for j in range(nd):
        who = np.nonzero(active[:, j])[0]
        sends[who, j] = np.minimum(1 + rng.poisson(lam * intensity[who]), 60_000)
    del active

    day_weight = np.where(working, 1.0, 0.05)
    day_weight /= day_weight.sum()

    def scatter(count: int, account_p: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """``count`` (account, day) pairs on usable days, sorted by day."""
        accs, dys = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        while len(accs) < count:
            size = int((count - len(accs)) * 1.3) + 100
            a = rng.choice(n, size, p=account_p) if account_p is not None else rng.integers(0, n, size)
            d = rng.choice(nd, size, p=day_weight)
            ok = usable(a, d) & (d < stop[a])
            accs, dys = np.concatenate([accs, a[ok]]), np.concatenate([dys, d[ok]])
        order = np.argsort(dys[:count], kind="stable")
        return accs[:count][order], dys[:count][order]

    received = scatter(n_received, None)
    automatic = scatter(n_automatic, intensity / intensity.sum())
    login_p = login_weight / login_weight.sum()
    login_pairs = scatter(logins, login_p) if logins else (np.empty(0, np.int64), np.empty(0, np.int64))

    working_days = int(working.sum())
    n_extra = extra if extra is not None else round(events / max(1, working_days))
    alive = usable(everyone, nd) & (nd <= stop)
    extra_p = np.where(alive, intensity, 0.0)
    extra_acc = rng.choice(n, n_extra, p=extra_p / extra_p.sum())
    extra_kind = rng.choice(3, n_extra, p=[0.85, 0.10, 0.05])

    plan = Plan(agency_rows, account_ids, account_agency, account_domain, local_parts, full_names, kinds, created,
                spans, days, sends, received, automatic, login_pairs, (extra_acc, extra_kind),
                last + timedelta(days=1), profile_counts, notes)
    say(f"plan: {len(agency_rows)} agencies, {n:,} accounts ({int(shared.sum()):,} shared), {len(spans):,} spans, "
        f"{plan.events:,} events over {nd} days ({working_days} working), {len(login_pairs[0]):,} logins, "
        f"{n_extra:,} events on {plan.extra_day} -- {time.perf_counter() - start:.1f} s")
    say("  profiles: " + ", ".join(f"{k} {v:,}" for k, v in profile_counts.items()))
    for note in notes:
        say(f"  note: {note}")
    return plan


# --- loading -------------------------------------------------------------------------------------


def event_rows(plan: Plan, day_index: int, accs: np.ndarray, kinds: np.ndarray, counter: int,
               seed: int) -> list[dict[str, Any]]:
    """The event rows of one day (kind 0 send, 1 received, 2 automatic), in time order."""
    rng = np.random.default_rng([seed, 7, day_index])
    n = len(accs)
    offsets = np.where(rng.random(n) < 0.95, rng.integers(7 * 3600 + 1800, 17 * 3600 + 1800, n),
                       rng.integers(17 * 3600 + 1800, 23 * 3600, n))
    order = np.argsort(offsets, kind="stable")
    accs, kinds, offsets = accs[order], kinds[order], offsets[order]
    external = rng.random(n) < 0.25
    direction = np.where(kinds == 1, 2, external.astype(np.int64))
    r_int = np.where(external, rng.integers(0, 2, n), 1 + rng.geometric(0.5, n))
    r_ext = np.where(external, rng.integers(1, 4, n), 0)
    r_int = np.where(kinds == 1, 1, r_int)
    r_ext = np.where(kinds == 1, 0, r_ext)
    size = np.minimum(rng.lognormal(np.log(30_000), 1.2, n), 25_000_000).astype(np.int64)
    day = plan.days[day_index] if day_index < len(plan.days) else plan.extra_day
    base = local_midnight(day)
    ids, agency = plan.account_ids, plan.account_agency
    rows = []
    for k, (a, kind, off, d, ri, re_, sz) in enumerate(zip(accs.tolist(), kinds.tolist(), offsets.tolist(),
                                                          direction.tolist(), r_int.tolist(), r_ext.tolist(),
                                                          size.tolist())):
        rows.append({
            "at": base + timedelta(seconds=off), "account_id": ids[a], "agency_id": agency[a],
            "direction": DIRECTIONS[d], "recipients_internal": ri, "recipients_external": re_, "size": sz,
            "automatic": kind == 2,
            "message_hash": hashlib.sha256(f"{seed}:{counter + k}".encode()).hexdigest(),
        })
    return rows


def day_events(plan: Plan, seed: int) -> Iterator[list[dict[str, Any]]]:
    """Each day's events, in time order, as the gateway would have recorded them."""
    counter = 0
    rec_acc, rec_day = plan.received
    auto_acc, auto_day = plan.automatic
    for j in range(len(plan.days)):
        col = plan.sends[:, j]
        who = np.nonzero(col)[0]
        r0, r1 = np.searchsorted(rec_day, [j, j + 1])
        a0, a1 = np.searchsorted(auto_day, [j, j + 1])
        accs = np.concatenate([np.repeat(who, col[who]), rec_acc[r0:r1], auto_acc[a0:a1]])
        kinds = np.concatenate([np.zeros(int(col[who].sum(dtype=np.int64)), np.int64),
                                np.ones(r1 - r0, np.int64), np.full(a1 - a0, 2, np.int64)])
        rows = event_rows(plan, j, accs, kinds, counter, seed)
        counter += len(rows)
        yield rows


def extra_events(plan: Plan, seed: int) -> list[dict[str, Any]]:
    acc, kind = plan.extra
    return event_rows(plan, len(plan.days), acc, kind, plan.events, seed)


def bulk_insert(conn: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    """Rows straight into ``table``: Core executemany on SQLite, COPY on PostgreSQL (psycopg's
    executemany managed only 6,000-9,000 event rows/s on the test server, COPY about 20,000-25,000)."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        for s in range(0, len(rows), BATCH):
            conn.execute(insert(table), rows[s:s + BATCH])
        return
    columns = list(rows[0])
    with conn.connection.driver_connection.cursor() as cursor:
        with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])


def load(engine: Engine, plan: Plan, seed: int) -> dict[str, float]:
    """Insert the plan; returns seconds per phase."""
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    n = len(plan.account_ids)
    with engine.begin() as conn:
        conn.execute(insert(Agency.__table__), plan.agencies)
        for s in range(0, n, BATCH):
            bulk_insert(conn, Account.__table__, [{
                "id": plan.account_ids[i], "local_part": plan.local_parts[i], "domain": plan.account_domain[i],
                "kind": plan.kinds[i], "full_name": plan.full_names[i], "agency_id": plan.account_agency[i],
                "status": "active", "quota_mb": 2048, "password_hash": PASSWORD_HASH, "must_change_password": False,
                "created_at": plan.created[i], "updated_at": plan.created[i],
            } for i in range(s, min(n, s + BATCH))])
        for s in range(0, len(plan.spans), BATCH):
            bulk_insert(conn, AccountSpan.__table__, [{
                "account_id": plan.account_ids[i], "agency_id": plan.account_agency[i], "started_at": started,
                "ended_at": ended,
            } for i, started, ended in plan.spans[s:s + BATCH]])
    times["agencies, accounts, spans"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    login_acc, login_day = plan.logins
    rng = np.random.default_rng([seed, 11])
    offsets = rng.integers(7 * 3600, 22 * 3600, len(login_acc)).tolist()
    protocols = np.where(rng.random(len(login_acc)) < 0.9, "imap", "pop3").tolist()
    with engine.begin() as conn:
        for s in range(0, len(login_acc), BATCH):
            bulk_insert(conn, LoginEvent.__table__, [{
                "at": local_midnight(plan.days[d]) + timedelta(seconds=offsets[k]), "account_id": plan.account_ids[a],
                "protocol": protocols[k], "client": f"10.{a % 250}.{(a // 250) % 250}.{k % 250 + 1}",
                "line_hash": hashlib.sha256(f"login:{seed}:{k}".encode()).hexdigest(),
            } for k, a, d in zip(range(s, s + BATCH), login_acc[s:s + BATCH].tolist(),
                                 login_day[s:s + BATCH].tolist())])
    times["logins"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    total, done, pending, last_print = plan.events, 0, 0, time.perf_counter()
    conn = engine.connect()
    try:
        tx = conn.begin()
        for rows in day_events(plan, seed):
            bulk_insert(conn, UsageEvent.__table__, rows)
            done += len(rows)
            pending += len(rows)
            if pending >= COMMIT_EVERY:
                tx.commit()
                tx, pending = conn.begin(), 0
            if time.perf_counter() - last_print > 15:
                elapsed = time.perf_counter() - t0
                say(f"  events: {done:,}/{total:,} ({100 * done / total:.0f}%), {done / elapsed:,.0f}/s, "
                    f"~{(total - done) * elapsed / done:.0f} s left")
                last_print = time.perf_counter()
        tx.commit()
    finally:
        conn.close()
    times["events"] = time.perf_counter() - t0
    return times


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {m.__tablename__: conn.execute(select(func.count()).select_from(m)).scalar_one()
                for m in (Agency, Account, AccountSpan, LoginEvent, UsageEvent, UsageDaily, UsageWeekly)}


# --- timing --------------------------------------------------------------------------------------


class SqlLog:
    """Counts statements (and their time, per statement text) on an engine."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        self.detail = False
        self.by_statement: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, params, context, executemany) -> None:  # type: ignore[no-untyped-def]
        self.count += 1
        conn.info["bench_start"] = time.perf_counter()

    def _after(self, conn, cursor, statement, params, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if self.detail:
            key = re.sub(r"\s+", " ", statement)
            key = re.sub(r"(%\(\w+\)s|\?|\$\d+)(, (%\(\w+\)s|\?|\$\d+))+", "...", key)
            entry = self.by_statement[key[:230]]
            entry[0] += 1
            entry[1] += time.perf_counter() - conn.info.pop("bench_start", time.perf_counter())


@dataclass
class Phase:
    name: str
    runs: list[float]
    queries: int
    target: float | None = None
    note: str = ""


def unit(factory, sql: SqlLog, work: Callable[[Any], Any]) -> tuple[float, int, Any]:  # type: ignore[no-untyped-def]
    """One CLI-like unit of work: a new session, one transaction, committed at the end."""
    before = sql.count
    start = time.perf_counter()
    with factory() as session, session.begin():
        result = work(session)
    return time.perf_counter() - start, sql.count - before, result


def analyze(engine: Engine) -> None:
    if engine.dialect.name == "postgresql":
        t0 = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        say(f"  ANALYZE (untimed): {time.perf_counter() - t0:.1f} s")


def run_database(kind: str, url: str, plan: Plan, period: Period, opts: argparse.Namespace,
                 extra_periods: list[Period]) -> dict[str, Any]:
    settings = dataclasses.replace(Settings(), database=DatabaseSettings(url=url))
    say(f"\n=== {kind}: {url.split('@')[-1]}")
    engine = make_engine(url)
    migrate(engine)
    if kind == "sqlite":  # loading only: a bigger page cache and no syncs, on a separate engine
        loader = make_engine(url)

        @event.listens_for(loader, "connect")
        def _bulk_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_conn.execute("PRAGMA cache_size=-262144")
            dbapi_conn.execute("PRAGMA synchronous=OFF")
    else:
        loader = engine
    t0 = time.perf_counter()
    load_times = load(loader, plan, opts.seed)
    generated = time.perf_counter() - t0
    if loader is not engine:
        loader.dispose()
    rows = counts(engine)
    say(f"loaded in {generated:.1f} s (" + ", ".join(f"{k} {v:.1f} s" for k, v in load_times.items())
        + f"; {rows['usage_events'] / load_times['events']:,.0f} events/s)")
    say("  rows: " + ", ".join(f"{k} {v:,}" for k, v in rows.items()))
    analyze(engine)

    factory = session_factory(engine)
    sql = SqlLog(engine)
    phases: list[Phase] = []
    rebuild_now = local_midnight(plan.extra_day)
    say("rebuild (initial rollup) ...")
    folded = [0]

    def progress(step: int) -> None:
        folded[0] += step
        if folded[0] % 500_000 == 0:
            say(f"  rebuild: {folded[0]:,} events read")

    seconds, queries, result = unit(factory, sql, lambda s: usage_rollup.rebuild(s, settings, now=rebuild_now,
                                                                                  progress=progress))
    phases.append(Phase(f"rebuild ({result.events:,} events, {result.days:,} days, {result.weeks} weeks)",
                        [seconds], queries))
    say(f"  {seconds:.1f} s")
    analyze(engine)
    rows = counts(engine)
    say(f"  usage_daily {rows['usage_daily']:,} rows, usage_weekly {rows['usage_weekly']:,} rows")

    extra = extra_events(plan, opts.seed)
    with engine.begin() as conn:
        bulk_insert(conn, UsageEvent.__table__, extra)
    seconds, queries, result = unit(factory, sql, lambda s: usage_rollup.refresh(
        s, settings, now=rebuild_now + timedelta(days=1)))
    phases.append(Phase(f"refresh (+1 day: {len(extra):,} events, {result.events:,} folded)", [seconds], queries))
    say(f"refresh: {seconds:.2f} s")

    reports: dict[str, Any] = {}

    def report(label: str, p: Period, target: float | None, repeat: int, **kwargs: Any) -> None:
        runs, queries = [], 0
        for _ in range(repeat):
            seconds, queries, rep = unit(factory, sql, lambda s: usage_stats.regular_use(
                s, settings, p, refresh=True, **kwargs))
            runs.append(seconds)
            say(f"{label}: {seconds:.2f} s ({queries:,} statements)")
            reports[label] = rep
            if seconds > 60:
                break  # too slow to repeat
        phases.append(Phase(label, runs, queries, target))

    target = None if opts.national else TARGET  # issue 5 names no target for the national scale
    report(f"report {period.label} by agency", period, target, opts.repeat, by="agency")
    report(f"report {period.label} by level", period, target, opts.repeat, by="level")
    report(f"report {period.label} by agency + compare", period, None, 1, by="agency", compare=True)
    report(f"report {period.label} by agency + trend", period, None, 1, by="agency", trend=True)
    for p in extra_periods:
        report(f"report {p.label} by agency", p, target, 1, by="agency")

    if opts.profile:
        profile_report(factory, sql, settings, period)

    engine.dispose()
    main = reports[f"report {period.label} by agency"]
    return {"phases": phases, "load": load_times, "generated": generated, "rows": rows,
            "by_level": main.by_level, "agencies": len(main.by_agency)}


def profile_report(factory, sql: SqlLog, settings: Settings, period: Period) -> None:  # type: ignore[no-untyped-def]
    """One report by agency under cProfile, with the time per SQL statement."""
    sql.detail, sql.by_statement = True, defaultdict(lambda: [0, 0.0])
    profiler = cProfile.Profile()
    start = time.perf_counter()
    with factory() as session, session.begin():
        profiler.enable()
        usage_stats.regular_use(session, settings, period, by="agency", refresh=True)
        profiler.disable()
    total = time.perf_counter() - start
    sql.detail = False
    say(f"\n--- profile: report {period.label} by agency, {total:.2f} s (under cProfile)")
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(r"provisioning/(usage_stats|usage_rollup|workcalendar)", 25)
    say("\n".join(line for line in out.getvalue().splitlines() if line.strip() and "Ordered by" not in line
                  and "List reduced" not in line and "function calls" not in line)[:6000])
    say("SQL: statements by execute time (count, seconds, statement; SQLite computes rows as they are "
        "fetched, which falls in the Python profile above)")
    for key, (count, seconds) in sorted(sql.by_statement.items(), key=lambda kv: -kv[1][1])[:10]:
        say(f"  {count:7,} {seconds:8.3f}  {key}")


def summary(kind: str, result: dict[str, Any]) -> None:
    say(f"\n{kind}: summary   (ratio = target / measured; >= 1.00 means the target is met)")
    say(f"{'phase':62} {'best s':>8} {'median s':>9} {'target s':>9} {'ratio':>6} {'stmts':>8}")
    for ph in result["phases"]:
        best, median = min(ph.runs), statistics.median(ph.runs)
        target = f"{ph.target:9.2f}" if ph.target else f"{'-':>9}"
        ratio = f"{ph.target / best:6.2f}" if ph.target else f"{'-':>6}"
        med = f"{median:9.2f}" if len(ph.runs) > 1 else f"{'':>9}"
        runs = f" (x{len(ph.runs)})" if len(ph.runs) > 1 else ""
        say(f"{(ph.name + runs)[:62]:62} {best:8.2f} {med} {target} {ratio} {ph.queries:8,}")
    for ph in result["phases"]:
        if ph.target:
            best, median = min(ph.runs), statistics.median(ph.runs)
            say(f"  {ph.name}: best {best:.2f} s (ratio {ph.target / best:.2f}), median {median:.2f} s "
                f"(ratio {ph.target / median:.2f}): target {ph.target:g} s "
                f"{'met' if median <= ph.target else 'NOT met'}")
    say(f"{'level':10} {'mailboxes':>9} {'staff':>7} {'cover%':>6} {'eligible':>8} {'regular':>7} {'reg%':>6} "
        f"{'daily%':>6} {'dormant':>7} {'shared':>6}")
    for row in result["by_level"]:
        say(f"{row['key']:10} {row['mailboxes']:9,} {row['staff'] or 0:7,} {row['coverage_pct'] or 0:6.1f} "
            f"{row['eligible']:8,} {row['regular']:7,} {row['regular_pct'] or 0:6.1f} {row['daily_pct'] or 0:6.1f} "
            f"{row['dormant']:7,} {row['shared']:6,}")


def revision() -> str:
    """The commit measured, and whether the statistics code differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "provisioning"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes in provisioning/" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, help="default 10,000 (--national: 1,000,000)")
    parser.add_argument("--events", type=int, help=f"default {EVENTS_PER_ACCOUNT_YEAR} per account and year "
                                                   "(--national: a month's share)")
    parser.add_argument("--year", type=int, default=2025)
    parser.add_argument("--month", type=int, default=11, help="--national: the month of events (default 11)")
    parser.add_argument("--db", help="sqlite,postgresql (default both; --national: postgresql)")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--national", action="store_true", help="1,000,000 accounts, one month of events")
    parser.add_argument("--agencies", type=int, help="agencies per province (default 60; --national: 120)")
    parser.add_argument("--logins", type=int, help="mailbox logins (default events / 50)")
    parser.add_argument("--extra", type=int, help="events of the extra day for the refresh (default: a day's worth)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each report (best, median)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="cProfile one report and time its SQL statements")
    opts = parser.parse_args()
    started = time.perf_counter()
    accounts = opts.accounts or (NATIONAL_ACCOUNTS if opts.national else 10_000)
    if opts.national:
        first = date(opts.year, opts.month, 1)
        window = (first, (first + timedelta(days=32)).replace(day=1) - timedelta(days=1))
        period = parse_period(f"{opts.year}-{opts.month:02d}")
        events = opts.events or round(accounts * EVENTS_PER_ACCOUNT_YEAR / 12)
        provinces, databases = len(PROVINCES), (opts.db or "postgresql").split(",")
        extra_periods = [parse_period(str(opts.year))]
    else:
        window = (date(opts.year, 1, 1), date(opts.year, 12, 31))
        period = parse_period(str(opts.year))
        events = opts.events or accounts * EVENTS_PER_ACCOUNT_YEAR
        provinces, databases = 1, (opts.db or "sqlite,postgresql").split(",")
        extra_periods = []
    for db in databases:
        if db not in ("sqlite", "postgresql"):
            parser.error(f"--db: unknown database {db!r} (sqlite, postgresql)")
    say(f"usage report benchmark: {accounts:,} accounts, {events:,} events, {window[0]}..{window[1]}, "
        f"report {period.label}, databases {', '.join(databases)}, seed {opts.seed}; code {revision()}")
    plan = make_plan(accounts, events, window, opts.agencies or (120 if opts.national else 60), provinces,
                     opts.logins if opts.logins is not None else events // 50, opts.extra, opts.seed)

    results: dict[str, dict[str, Any]] = {}
    for db in databases:
        work = Path(tempfile.mkdtemp(prefix="govmail-usage-")) if db == "sqlite" else None
        schema = f"bench_usage_{uuid.uuid4().hex[:10]}"
        admin = None
        try:
            url, admin = scratch_database(db, work, opts.pg_url, schema)
            results[db] = run_database(db, url, plan, period, opts, extra_periods)
            if db == "sqlite":
                size = sum(f.stat().st_size for f in work.iterdir())  # type: ignore[union-attr]
                say(f"  SQLite files: {size / 1e9:.2f} GB")
            else:
                with admin.connect() as conn:  # type: ignore[union-attr]
                    size = conn.execute(text(
                        "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
                        "ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relkind = 'r'"), {"s": schema}).scalar()
                say(f"  PostgreSQL schema: {float(size or 0) / 1e9:.2f} GB")
        finally:
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)
            if admin is not None:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                admin.dispose()

    for db, result in results.items():
        summary(db, result)
    if len(results) == 2:
        a, b = (results[d]["by_level"][-1] for d in ("sqlite", "postgresql"))
        same = all(a[k] == b[k] for k in ("eligible", "regular", "daily", "dormant", "mailboxes"))
        say(f"\nSQLite and PostgreSQL reports agree: {'yes' if same else 'NO'}")
    for db, result in results.items():
        t = result["by_level"][-1]
        say(f"{db}: province total: eligible {t['eligible']:,}, regular {t['regular']:,}, "
            f"regular_pct {t['regular_pct']}%")
    say(f"total wall time: {(time.perf_counter() - started) / 60:.1f} min")


def scratch_database(db: str, work: Path | None, pg_url: str, schema: str) -> tuple[str, Any]:
    """(URL, admin engine or None): a SQLite file in ``work``, or a new schema ``schema`` on ``pg_url``
    (the caller drops it with the admin engine)."""
    if db == "sqlite":
        return f"sqlite:///{work / 'govmail.db'}", None  # type: ignore[operator]
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    return f"{pg_url}{'&' if '?' in pg_url else '?'}options=-csearch_path%3D{schema}", admin


if __name__ == "__main__":
    main()
