"""Portal latency under load: agency overview and account search pages with 50 concurrent clients,
against the same server's static file as the baseline, on SQLite and PostgreSQL, in one run.

1. A throw-away data directory and database (a SQLite file, or a fresh PostgreSQL schema), migrated;
   a sample province (``provisioning.sample``: the province root and ~60 agencies below it, Vietnamese
   names); its officials created through the bulk engine (``provisioning.bulk`` plan + apply); a
   province administrator and the administrator of the department with the most accounts (chosen
   passwords, so no forced change); 30 days of mailbox activity in ``usage_daily`` (what the overview's
   "used recently" figure reads); one API token of that department. PostgreSQL is ANALYZEd (untimed),
   as autovacuum would have done on a production server.
2. Sessions are opened directly with ``signin.open_session(stage="full")``, one per load client and
   administrator: signing in through the form would need a fresh TOTP code per client. The pages are
   then the same as after a real sign-in (cookie -> session row -> account -> roles).
3. The portal runs in its own process (``uvicorn portal.app:app_from_environment --factory``, as
   ``govmail portal run`` does, with ``--workers``; SQLite always 1; access log off) on a free
   loopback port; the directory is an unreachable URL with ``sync_after_change = false`` (the load
   changes nothing that would go to the directory).
4. Each scenario: ``--clients`` closed-loop clients (each sends its next request when the previous
   one has answered; no think time unless ``--think``), one keep-alive connection each, ``--warmup``
   seconds unrecorded, then ``--seconds`` recorded (what completes in the window counts, also if it
   started in the warm-up; an error counts wherever it happens). The load generator is a minimal
   asyncio HTTP/1.1 client, so it takes little of the machine's CPU. The cores busy in the portal,
   in PostgreSQL, in the generator and in anything else are printed: "other" well above 0 means
   someone else's work disturbed the figures.

Scenarios (``--only`` picks some):
  static         baseline: GET /static/style.css -- the floor of the stack (uvicorn, Starlette, middleware)
  overview-dept  GET /agencies/<department>, as its administrator
  overview-root  GET /agencies/<province>, as the province administrator (its subtree: every account)
  search-dept    GET /agencies/<department>/accounts, a mix of page 1, a random later page, a search
                 by a common name fragment and a status filter, as the department's administrator
  search-root    the same mix on the province, as the province administrator
  api-search     GET /api/v1/agencies/<department>/accounts?q=...&per_page=50 with the Bearer token

Target (issue): p95 under 100 ms with 50 clients and 10,000 accounts. Printed per scenario: requests,
throughput, p50/p95/p99, errors, ratio = target / p95 (>= 1.00: met) and p95 / the baseline's p95.
Every response must be 200 (and the expected page); any other is counted and makes the exit status 1.

Usage: python benchmarks/portal_load.py [--db sqlite|postgresql|both] [--accounts N] [--agencies N]
       [--clients N] [--seconds S] [--warmup S] [--think S] [--workers W] [--only a,b] [--json FILE] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, text  # noqa: E402

from benchmarks.usage_report import PG_URL, bulk_insert, say, scratch_database  # noqa: E402
from directory.slapd import free_port  # noqa: E402
from provisioning import accounts, agencies, bulk, roles, secretbox, signin  # noqa: E402
from provisioning.audit import Actor  # noqa: E402
from provisioning.config import load_settings  # noqa: E402
from provisioning.db import make_engine, migrate, session_factory  # noqa: E402
from provisioning.models import Account, Agency, UsageDaily  # noqa: E402
from tests.conftest import write_config  # noqa: E402  (the configuration files the tests write)
from provisioning.sample import province  # noqa: E402

TARGET_MS = 100.0  # p95 of the agency overview and account search pages (issue)
BASELINE = "static"
ACTOR = Actor(name="benchmark", source="cli")
ADMIN_PASSWORD = "một cụm mật khẩu dài 2025"
FRAGMENTS = ("nguyễn", "thị", "lan", "minh", "trần")  # common name fragments (nguyễn ~40% of names)
REQUEST_TIMEOUT = 60.0
KEEPALIVE_IDLE = 4.0  # seconds; uvicorn closes an idle keep-alive connection after 5
TZ = ZoneInfo("Asia/Ho_Chi_Minh")


# --- the world: data dir, database, province, people, sessions ------------------------------------


@dataclass
class World:
    config_file: Path
    root_code: str
    root_name: str
    dept_code: str
    dept_name: str
    root_total: int
    dept_total: int
    agencies: int
    accounts: int
    usage_rows: int
    dept_cookies: list[str]
    root_cookies: list[str]
    token: str
    setup_seconds: dict[str, float] = field(default_factory=dict)


def build_world(url: str, work: Path, opts: argparse.Namespace) -> World:
    """Everything the portal serves, in ``work`` and the database at ``url``."""
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    config_file = write_config(work / "govmail.toml", {
        "data_dir": str(work),
        "database": {"url": url},
        # No writes reach the directory during the load: an unreachable server, no sync after changes.
        "directory": {"urls": ["ldap://127.0.0.1:9"], "embedded": False, "sync_after_change": False, "timeout": 1},
        "portal": {"cookie_secure": False, "host": "127.0.0.1"},
        "passwords": {"argon2_memory_kib": 8192, "argon2_time_cost": 1},  # the two administrators' hashes only
    })
    settings = load_settings(config_file, env={})
    secretbox.load(settings)  # the portal key, made once before the workers start (as govmail portal run)
    engine = make_engine(settings.database.url)
    migrate(engine)
    factory = session_factory(engine)
    times["migrate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    agency_rows, staff = province(max(0, opts.accounts - 2), seed=opts.seed, agencies=opts.agencies)
    with factory() as s, s.begin():
        result = agencies.import_agencies(s, settings, ACTOR, [(i + 2, r) for i, r in enumerate(agency_rows)])
        if result.failed:
            raise SystemExit(f"agency import failed: {[r for r in result.rows if r['error']][:3]}")
    with factory() as s:
        plan = bulk.make_plan(s, settings, [(i + 2, r) for i, r in enumerate(staff)])
    if plan.failed:
        raise SystemExit(f"bulk plan: {plan.failed} rows failed: {[r.detail for r in plan.rows if r.detail][:3]}")
    bulk.apply_plan(factory, settings, ACTOR, plan, bulk.CredentialsFile(work / "credentials.csv"), batch=1000)
    times["agencies + bulk create"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    root = agency_rows[0]
    sizes = Counter(r["agency"] for r in staff)
    dept = max((r for r in agency_rows[1:]), key=lambda r: (sizes[r["code"]], r["code"]))
    with factory() as s, s.begin():
        province_admin, _ = accounts.create_account(
            s, settings, ACTOR, accounts.NewAccount(agency=root["code"], full_name="Nguyễn Văn Quản",
                                                    title="Chánh Văn phòng"), ADMIN_PASSWORD)
        dept_admin, _ = accounts.create_account(
            s, settings, ACTOR, accounts.NewAccount(agency=dept["code"], full_name="Trần Thị Quyên",
                                                    title="Chánh Văn phòng"), ADMIN_PASSWORD)
        roles.grant(s, ACTOR, province_admin.address, None)
        roles.grant(s, ACTOR, dept_admin.address, dept["code"])
        dept_principal = roles.principal_for_account(s, dept_admin)
        _, token = roles.create_token(s, dept_principal, dept["code"], "HR system (load test)")
        dept_cookies = [signin.open_session(s, settings, dept_admin.id, "full", "127.0.0.1")
                        for _ in range(opts.clients)]
        root_cookies = [signin.open_session(s, settings, province_admin.id, "full", "127.0.0.1")
                        for _ in range(opts.clients)]
    times["administrators, sessions, token"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    usage_rows = load_usage(engine, opts.seed)
    times["usage_daily"] = time.perf_counter() - t0
    if engine.dialect.name == "postgresql":
        t0 = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        times["ANALYZE"] = time.perf_counter() - t0

    with factory() as s:
        ids = {a.code: a.id for a in s.scalars(select(Agency))}
        count = s.scalar(select(func.count()).select_from(Account)) or 0
        dept_total = s.scalar(select(func.count()).select_from(Account).where(Account.agency_id == ids[dept["code"]]))
    engine.dispose()
    return World(config_file, root["code"], root["name"], dept["code"], dept["name"], count, dept_total or 0,
                 len(ids), count, usage_rows, dept_cookies, root_cookies, token, times)


def load_usage(engine: Any, seed: int) -> int:
    """30 days of mailbox activity (the overview's "used in the last 30 days"): each personal account
    is active on a working day with its own probability (a quarter never, the rest 20-95%); weekends
    rarely. Inserted straight into the table (COPY on PostgreSQL)."""
    rng = random.Random(seed)
    today = datetime.now(TZ).date()
    days = [today - timedelta(days=d) for d in range(1, 36)]
    with engine.connect() as conn:
        ids = list(conn.execute(select(Account.id).where(Account.kind == "personal").order_by(Account.id)).scalars())
    rows = []
    for account_id in ids:
        p = 0.0 if rng.random() < 0.25 else rng.uniform(0.2, 0.95)
        for day in days:
            working = day.weekday() < 5
            if p and rng.random() < (p if working else p * 0.05):
                rows.append({"account_id": account_id, "day": day, "sent": rng.randint(0, 12),
                             "logins": rng.randint(1, 8), "working": working})
    with engine.begin() as conn:
        bulk_insert(conn, UsageDaily.__table__, rows)
    return len(rows)


# --- the server ----------------------------------------------------------------------------------


class Server:
    """The portal under uvicorn in a child process (started and stopped here, by its pid)."""

    def __init__(self, config_file: Path, workers: int, log: Path) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOVMAIL_")}
        env["GOVMAIL_CONFIG"] = str(config_file)
        self.log = log
        self._log_handle = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "portal.app:app_from_environment", "--factory",
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers),
             "--log-level", "warning", "--no-access-log", "--no-server-header"],
            cwd=ROOT, env=env, stdout=self._log_handle, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the portal exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                status = asyncio.run(probe(self.port, "/static/style.css"))
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"the portal did not answer within {timeout:.0f} s:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log_handle.close()



def cpu_snapshot(server_pid: int) -> dict[str, Any]:
    """CPU seconds used so far (user + system) per process of the portal (the uvicorn process and its
    workers) and of PostgreSQL, by this load generator, and by the whole machine (/proc/stat)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    postgres: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2:].split()  # from the state on
        pid, seconds = int(entry), (int(fields[11]) + int(fields[12])) / tick
        parents[pid], used[pid] = int(fields[1]), seconds
        if comm.startswith("postgres"):
            postgres[pid] = seconds
    tree, todo = set(), [server_pid]
    while todo:
        current = todo.pop()
        if current not in tree:
            tree.add(current)
            todo.extend(p for p, parent in parents.items() if parent == current)
    with open("/proc/stat") as handle:
        ticks = [int(v) for v in handle.readline().split()[1:]]
    machine = (sum(ticks[:8]) - ticks[3] - ticks[4]) / tick  # all but idle and iowait
    return {"portal": {p: used[p] for p in tree if p in used}, "postgres": postgres,
            "generator": time.process_time(), "machine": machine}


def cpu_cores(before: dict[str, Any], after: dict[str, Any], wall: float) -> dict[str, float]:
    """Cores busy in between: per process what it used since (all of it for a process started
    since; a process that ended is missed); ``other``: the rest of the machine (other people's work
    skews the figures)."""
    cores = {k: sum(v - before[k].get(p, 0.0) for p, v in after[k].items()) / wall for k in ("portal", "postgres")}
    for k in ("generator", "machine"):
        cores[k] = (after[k] - before[k]) / wall
    cores["other"] = max(0.0, cores["machine"] - cores["portal"] - cores["postgres"] - cores["generator"])
    return cores


# --- the load generator --------------------------------------------------------------------------


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, server closes) of one HTTP/1.1 response."""
    line = await reader.readline()
    if not line:
        raise ConnectionResetError("connection closed by the server")
    status = int(line.split(None, 2)[1])
    length, chunked, close = None, False, False
    while True:
        header = await reader.readline()
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            close = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            parts.append(await reader.readexactly(size))
            await reader.readline()
        body = b"".join(parts)
    elif length is not None:
        body = await reader.readexactly(length)
    else:
        body, close = await reader.read(), True
    return status, body, close


def request_bytes(path: str, port: int, headers: list[str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept-Language: vi", *headers, "", ""]
    return "\r\n".join(lines).encode("ascii")


async def probe(port: int, path: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_bytes(path, port, ["Connection: close"]))
        status, _, _ = await asyncio.wait_for(read_response(reader), 10)
        return status
    finally:
        writer.close()


@dataclass
class Scenario:
    name: str
    label: str
    auth: list[str]  # one header line per client (cycled), or empty
    pick: Callable[[random.Random], tuple[str, str]]  # rng -> (kind of request, path)
    marker: dict[str, bytes]  # kind -> bytes a right answer contains
    target: bool = True  # does the 100 ms target apply


@dataclass
class Outcome:
    scenario: str
    label: str
    target: bool
    seconds: float
    latencies: dict[str, list[float]]  # kind -> ms
    errors: Counter
    error_samples: list[str]
    cpu: dict[str, float]  # cores busy over the recorded window (see cpu_cores)

    @property
    def all(self) -> list[float]:
        return sorted(x for v in self.latencies.values() for x in v)

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


async def run_load(port: int, sc: Scenario, clients: int, warmup: float, seconds: float, think: float, seed: int,
                   server: Server) -> Outcome:
    start = time.perf_counter()
    record_from, end = start + warmup, start + warmup + seconds
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: Counter = Counter()
    samples: list[str] = []

    async def exchange(connection: list[Any], path: str, headers: list[str]) -> tuple[int, bytes, bool]:
        """One request on the client's keep-alive connection ([reader, writer, last used] or empty),
        opened when there is none or it has idled near the server's keep-alive timeout; a reused
        connection the server closed meanwhile is retried once on a new one, as browsers do."""
        if connection and time.perf_counter() - connection[2] > KEEPALIVE_IDLE:
            connection.pop(1).close()
            connection.clear()
        for attempt in (1, 2):
            reused = bool(connection)
            if not reused:
                connection[:] = [*await asyncio.open_connection("127.0.0.1", port), 0.0]
            try:
                connection[1].write(request_bytes(path, port, headers))
                status, body, close = await asyncio.wait_for(read_response(connection[0]), REQUEST_TIMEOUT)
            except (ConnectionError, asyncio.IncompleteReadError):
                connection.pop(1).close()
                connection.clear()
                if reused and attempt == 1:
                    continue
                raise
            connection[2] = time.perf_counter()
            if close:
                connection.pop(1).close()
                connection.clear()
            return status, body, close
        raise AssertionError("unreachable")

    async def client(i: int) -> None:
        rng = random.Random(f"{seed}:{sc.name}:{i}")
        headers = [sc.auth[i % len(sc.auth)]] if sc.auth else []
        connection: list[Any] = []
        if think:  # people do not all click at the same moment
            await asyncio.sleep(rng.uniform(0, think))
        try:
            while True:
                kind, path = sc.pick(rng)
                t = time.perf_counter()
                if t >= end:
                    break
                problem = None
                try:
                    status, body, _ = await exchange(connection, path, headers)
                    if status != 200:
                        problem = f"HTTP {status}"
                    elif sc.marker.get(kind, b"") not in body:
                        problem = "unexpected page"
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError) as exc:
                    status, body, problem = 0, repr(exc).encode(), type(exc).__name__
                    if connection:
                        connection.pop(1).close()
                        connection.clear()
                done = time.perf_counter()
                if done >= record_from:  # what completes in the window, also if it started in the warm-up
                    latencies[kind].append((done - t) * 1000)
                if problem:  # an error counts wherever it happens, the warm-up included
                    errors[problem if done >= record_from else f"{problem} (warm-up)"] += 1
                    if len(samples) < 5:
                        samples.append(f"{problem} after {done - t:.1f} s for {path}: "
                                       f"{body[:300].decode('utf-8', 'replace')!r}")
                if think:
                    await asyncio.sleep(rng.uniform(0.5, 1.5) * think)
                elif problem and status == 0:
                    await asyncio.sleep(0.1)  # the server is not answering: do not spin
        finally:
            if connection:
                connection[1].close()

    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    await asyncio.sleep(max(0.0, record_from - time.perf_counter()))
    cpu0, wall0 = cpu_snapshot(server.proc.pid), time.perf_counter()
    await asyncio.sleep(max(0.0, end - time.perf_counter()))
    # CPU up to the end of the window, while every client is still busy: once the load stops, the
    # portal's pool closes its overflow connections and their PostgreSQL processes (and figures) go.
    cpu1, wall1 = cpu_snapshot(server.proc.pid), time.perf_counter()
    await asyncio.gather(*tasks)
    return Outcome(sc.name, sc.label, sc.target, time.perf_counter() - wall0, dict(latencies), errors, samples,
                   cpu_cores(cpu0, cpu1, wall1 - wall0))


def scenarios(world: World) -> list[Scenario]:
    dept_auth = [f"Cookie: {signin.SESSION_COOKIE}={c}" for c in world.dept_cookies]
    root_auth = [f"Cookie: {signin.SESSION_COOKIE}={c}" for c in world.root_cookies]
    token = [f"Authorization: Bearer {world.token}"]

    def search_mix(code: str, total: int) -> Callable[[random.Random], tuple[str, str]]:
        base = f"/agencies/{quote(code)}/accounts"
        pages = max(1, math.ceil(total / 50))

        def pick(rng: random.Random) -> tuple[str, str]:
            kind = rng.choice(("page 1", "later page", "name search", "status filter"))
            if kind == "page 1":
                return kind, base
            if kind == "later page":
                return kind, f"{base}?page={rng.randint(min(2, pages), pages)}"
            if kind == "name search":
                return kind, f"{base}?q={quote(rng.choice(FRAGMENTS))}"
            return kind, f"{base}?status=active&page={rng.randint(1, min(3, pages))}"  # every account is active
        return pick

    def api_pick(rng: random.Random) -> tuple[str, str]:
        q = rng.choice(FRAGMENTS + ("",))
        return "api", f"/api/v1/agencies/{quote(world.dept_code)}/accounts?q={quote(q)}&per_page=50"

    page_marker = {k: b'id="accounts"' for k in ("page 1", "later page", "name search", "status filter")}
    return [
        Scenario("static", "baseline: GET /static/style.css", [], lambda rng: ("static", "/static/style.css"),
                 {"static": b"{"}, target=False),
        Scenario("overview-dept", f"overview of the department ({world.dept_total:,} accounts)", dept_auth,
                 lambda rng: ("overview", f"/agencies/{quote(world.dept_code)}"), {"overview": b'id="total"'}),
        Scenario("overview-root", f"overview of the province ({world.root_total:,} accounts)", root_auth,
                 lambda rng: ("overview", f"/agencies/{quote(world.root_code)}"), {"overview": b'id="total"'}),
        Scenario("search-dept", f"account search, department ({world.dept_total:,})", dept_auth,
                 search_mix(world.dept_code, world.dept_total), page_marker),
        Scenario("search-root", f"account search, province ({world.root_total:,})", root_auth,
                 search_mix(world.root_code, world.root_total), page_marker),
        Scenario("api-search", f"API search, department ({world.dept_total:,})", token, api_pick,
                 {"api": b'"items"'}),
    ]


# --- figures -------------------------------------------------------------------------------------


def pct(sorted_ms: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    if not sorted_ms:
        return float("nan")
    return sorted_ms[max(0, math.ceil(p / 100 * len(sorted_ms)) - 1)]


def figures(values: list[float], seconds: float) -> dict[str, float]:
    v = sorted(values)
    return {"requests": len(v), "rps": len(v) / seconds if seconds else 0.0, "p50": pct(v, 50), "p95": pct(v, 95),
            "p99": pct(v, 99), "max": v[-1] if v else float("nan")}


def table(db: str, outcomes: list[Outcome]) -> list[dict[str, Any]]:
    base = next((o for o in outcomes if o.scenario == BASELINE), None)
    base_p95 = pct(base.all, 95) if base else None
    say(f"\n{db}: ratio = target {TARGET_MS:g} ms / p95 (>= 1.00: met); vs base = p95 / the baseline's p95")
    say(f"{'scenario':48} {'requests':>8} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'errors':>6} {'ratio':>6} {'vs base':>7}  {'portal':>6} {'pg':>4} {'gen':>4} {'other':>5}")
    rows = []
    for o in outcomes:
        f = figures(o.all, o.seconds)
        ratio = TARGET_MS / f["p95"] if o.target and f["requests"] else None
        rel = f["p95"] / base_p95 if base_p95 and f["requests"] and o.scenario != BASELINE else None
        row = {"db": db, "scenario": o.scenario, "label": o.label, **f, "errors": o.error_count,
               "error_kinds": dict(o.errors), "ratio": ratio, "p95_vs_baseline": rel, "target_applies": o.target,
               "cpu_cores": o.cpu, "seconds": o.seconds,
               "by_kind": {k: figures(v, o.seconds) for k, v in o.latencies.items()}}
        rows.append(row)
        say(f"{o.label[:48]:48} {f['requests']:8,} {f['rps']:7.1f} {f['p50']:7.1f} {f['p95']:7.1f} {f['p99']:7.1f} "
            f"{f['max']:7.0f} {o.error_count:6} {format(ratio, '6.2f') if ratio else '     -'} "
            f"{format(rel, '6.1f') + 'x' if rel else '      -'}  {o.cpu['portal']:6.2f} {o.cpu['postgres']:4.2f} "
            f"{o.cpu['generator']:4.2f} {o.cpu['other']:5.2f}")
        if len(o.latencies) > 1:
            for kind, stats in sorted(row["by_kind"].items()):
                say(f"{'   · ' + kind:48} {stats['requests']:8,} {stats['rps']:7.1f} {stats['p50']:7.1f} "
                    f"{stats['p95']:7.1f} {stats['p99']:7.1f} {stats['max']:7.0f}")
        for sample in o.error_samples:
            say(f"   ! {sample}")
    return rows


def revision() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "portal", "provisioning"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes in portal/ or provisioning/" if dirty else "")


# --- main ----------------------------------------------------------------------------------------


def run_database(db: str, opts: argparse.Namespace, chosen: list[str]) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="govmail-portal-load-"))
    schema = f"bench_portal_{uuid.uuid4().hex[:10]}"
    admin, server = None, None
    workers = opts.workers if db == "postgresql" else 1
    try:
        url, admin = scratch_database(db, work, opts.pg_url, schema)
        say(f"\n=== {db}: {url.split('@')[-1]}   (data dir {work})")
        if workers != opts.workers:
            say(f"  note: SQLite runs with 1 worker (--workers {opts.workers} applies to PostgreSQL only)")
        started = time.perf_counter()
        world = build_world(url, work, opts)
        say(f"  setup {time.perf_counter() - started:.1f} s ("
            + ", ".join(f"{k} {v:.1f} s" for k, v in world.setup_seconds.items()) + ")")
        say(f"  {world.agencies} agencies, {world.accounts:,} accounts, {world.usage_rows:,} usage_daily rows; "
            f"province {world.root_code} {world.root_name} ({world.root_total:,} accounts in its subtree); "
            f"department {world.dept_code} {world.dept_name} ({world.dept_total:,} accounts)")
        say(f"  sessions opened directly (signin.open_session, stage full), not through the sign-in form: "
            f"{len(world.dept_cookies)} for the department's administrator, {len(world.root_cookies)} for the "
            f"province administrator; 1 API token of the department")

        server = Server(world.config_file, workers, work / "portal.log")
        server.wait_ready()
        say(f"  portal: uvicorn on 127.0.0.1:{server.port}, {workers} worker(s), pid {server.proc.pid}")
        before = cpu_snapshot(server.proc.pid)
        time.sleep(2)
        idle = cpu_cores(before, cpu_snapshot(server.proc.pid), 2.0)
        busy = max(0.0, idle["machine"] - idle["generator"])
        say(f"  before the load: {busy:.2f} of {os.cpu_count()} cores busy"
            + (" -- other work is running on this machine: the figures will be pessimistic" if busy > 0.2 else ""))
        outcomes = []
        for sc in scenarios(world):
            if sc.name not in chosen:
                continue
            outcome = asyncio.run(run_load(server.port, sc, opts.clients, opts.warmup, opts.seconds, opts.think,
                                           opts.seed, server))
            f = figures(outcome.all, outcome.seconds)
            say(f"  {sc.name:14} {f['requests']:7,} requests, {f['rps']:6.1f}/s, p95 {f['p95']:7.1f} ms, "
                f"errors {outcome.error_count}")
            outcomes.append(outcome)
        if server.proc.poll() is not None:
            say(f"  the portal exited during the run ({server.proc.returncode}):\n{server.tail()}")
        log = server.tail(1_000_000)
        if log.strip():
            errors = [line for line in log.splitlines() if line and not line.startswith((" ", "Traceback"))]
            say(f"  portal log: {log.count('Traceback')} tracebacks; last lines: " + " | ".join(errors[-3:])[:1000])
        return {"world": {k: v for k, v in world.__dict__.items() if k not in ("dept_cookies", "root_cookies",
                                                                               "token", "config_file")},
                "workers": workers, "outcomes": outcomes, "busy_before_load_cores": busy}
    finally:
        if server is not None:
            server.stop()
        if admin is not None:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()
        if opts.keep:
            say(f"  kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    names = ("static", "overview-dept", "overview-root", "search-dept", "search-root", "api-search")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--pg-url", default=PG_URL)
    parser.add_argument("--accounts", type=int, default=10_000, help="accounts in the province (default 10,000)")
    parser.add_argument("--agencies", type=int, default=60, help="agencies, the province root included (default 60)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent closed-loop clients (default 50)")
    parser.add_argument("--seconds", type=float, default=20.0, help="recorded seconds per scenario (default 20)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unrecorded seconds before each (default 2)")
    parser.add_argument("--think", type=float, default=0.0,
                        help="seconds a client waits between an answer and its next request (uniform 0.5-1.5x; "
                             "default 0: the closed loop of the issue)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers (PostgreSQL; SQLite always 1)")
    parser.add_argument("--only", help=f"comma-separated scenarios ({', '.join(names)}); the baseline always runs")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true",
                        help="keep the data directories (PostgreSQL schemas are dropped all the same)")
    opts = parser.parse_args()
    chosen = list(names) if not opts.only else [BASELINE] + [n.strip() for n in opts.only.split(",")]
    for n in chosen:
        if n not in names:
            parser.error(f"--only: unknown scenario {n!r} (one of {', '.join(names)})")
    if opts.clients < 1 or opts.seconds <= 0 or opts.workers < 1 or opts.accounts < 3:
        parser.error("--clients, --seconds and --workers must be positive, --accounts at least 3")
    databases = ["sqlite", "postgresql"] if opts.db == "both" else [opts.db]
    opts.warmup = max(opts.warmup, opts.think)  # with think time, clients start spread over the first think time
    config = {"accounts": opts.accounts, "agencies": opts.agencies, "clients": opts.clients,
              "seconds": opts.seconds, "warmup": opts.warmup, "think": opts.think, "workers": opts.workers,
              "db": databases,
              "cpus": os.cpu_count(), "python": platform.python_version(), "code": revision(),
              "target_p95_ms": TARGET_MS, "seed": opts.seed}
    say("portal load benchmark: " + ", ".join(f"{k} {v}" for k, v in config.items()))
    if not opts.think:
        say(f"  closed loop, no think time: mean latency = clients / throughput (Little's law), so a p95 under "
            f"{TARGET_MS:g} ms with {opts.clients} clients needs well over {opts.clients / (TARGET_MS / 1000):,.0f} "
            f"requests/s")
    started = time.perf_counter()
    results = {db: run_database(db, opts, chosen) for db in databases}

    rows: list[dict[str, Any]] = []
    for db, result in results.items():
        rows += table(f"{db} ({result['workers']} worker{'s' if result['workers'] > 1 else ''})", result["outcomes"])
    say(f"\nconfiguration: {opts.accounts:,} accounts, {opts.agencies} agencies, {opts.clients} clients, "
        f"{opts.seconds:g} s per scenario (+{opts.warmup:g} s warm-up), workers {opts.workers} (PostgreSQL), "
        f"databases {', '.join(databases)}, {os.cpu_count()} CPUs; CPU columns = cores busy during the recorded "
        f"window: portal = the uvicorn process and its workers, pg = PostgreSQL's processes, gen = this load "
        f"generator, other = everything else on the machine (should be ~0: other work skews the figures)")
    for row in rows:
        if row["target_applies"]:
            verdict = "no data" if not row["requests"] else "met" if row["ratio"] and row["ratio"] >= 1 else "NOT met"
            say(f"  {row['db']:28} {row['label'][:48]:48} p95 {row['p95']:7.1f} ms: target {verdict}")
    errors = sum(r["errors"] for r in rows)
    say(f"errors (non-200 or unexpected page): {errors}")
    say(f"total wall time: {(time.perf_counter() - started) / 60:.1f} min")
    if opts.json:
        opts.json.write_text(json.dumps({"config": config, "results": rows,
                                         "worlds": {db: r["world"] for db, r in results.items()}},
                                        ensure_ascii=False, indent=2, default=str), encoding="utf-8")
        say(f"figures written to {opts.json}")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
