"""Mail gateway throughput and latency against a bare aiosmtpd server, side by side in one run.

Two servers, each in a process of its own, under the same load from this process:

- baseline: aiosmtpd's ``SMTP`` with a handler whose ``handle_DATA`` only answers 250 (it accepts
  and discards), with the gateway's SMTP options (hostname, size limit, SMTPUTF8);
- ``govmail gateway run`` on a fresh data directory (SQLite + its own slapd, one agency tree with
  50 accounts), ``delivery = "maildir"``: every message is written to the recipient's Maildir
  (fsync), its usage event committed, and only then answered 250.

The load goes to the inbound listener (mail for the hosted mailboxes, no AUTH): small messages
(about 1 KB, unique Message-IDs, one recipient each, spread over the 50 mailboxes), the same
messages for both servers, sent by a minimal asyncio SMTP client on raw streams (EHLO, MAIL, RCPT,
DATA, QUIT; no pipelining):

(a) one connection per message, C clients in a closed loop;
(b) persistent sessions: C connections, each sending its messages one after the other;
(c) open loop: a fixed offered rate (default 1,000 messages/s for 5 s) over persistent sessions
    taken from a pool that grows when all are busy; latency counts from the scheduled send time,
    so a server that falls behind is charged for the queueing.

Latency: "txn" is the whole transaction as the client sees it (a: connect, banner, EHLO, MAIL,
RCPT, DATA, body -> 250; b and c: MAIL -> the 250 after the body); "data" is the last step alone:
from the end of the body ("." sent) to the 250, which is where the gateway does its work.
QUIT is not timed (but is part of the closed loop of (a)). "server CPU" is the server process's
CPU time (all its threads) per accepted message, "client CPU" the load generator's (this process).

Prints a table, the ratios gateway/bare for (a) and (b), whether the targets are met, and checks
that the gateway recorded every message it accepted (usage_events rows with direction 'received'
= the number of 250s) and that the Maildir holds as many files.
Targets (issue): gateway >= 0.9x the bare throughput; p99 < 10 ms at 1,000 messages/s.

Usage: python benchmarks/gateway.py [--messages N] [--clients C[,C...]] [--rate R] [--seconds S]
                                    [--log-level L] [--profile FILE] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HOST = "127.0.0.1"
HOSTNAME = "mail.govmail.local"  # the gateway's default [gateway] hostname, for the bare server too
SIZE_LIMIT = 26_214_400  # the gateway's default max_message_bytes
ACCOUNTS = 50
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the baseline server (run as a child process: this script with --serve-bare PORT) ----------

def serve_bare(port: int) -> None:
    from aiosmtpd.smtp import SMTP

    class Discard:
        async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
            return "250 OK"

    async def run() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(lambda: SMTP(Discard(), hostname=HOSTNAME, data_size_limit=SIZE_LIMIT,
                                              enable_SMTPUTF8=True, timeout=300),
                                 host=HOST, port=port)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()

    asyncio.run(run())


# --- the load generator --------------------------------------------------------------------------

PADDING = b"".join(b"Line %02d of a small test message, padded to make it about one kilobyte.\r\n" % i
                   for i in range(10))


def message(tag: str, i: int, rcpt: str) -> bytes:
    """About 1 KB, a unique Message-ID per (tag, i); no line starts with a dot."""
    return (b"From: Bench Sender <sender@bench.example>\r\n"
            b"To: <%s>\r\n"
            b"Subject: benchmark message %d\r\n"
            b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
            b"Message-ID: <%s.%d@bench.example>\r\n"
            b"MIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"\r\n%s.\r\n") % (rcpt.encode(), i, tag.encode(), i, PADDING)


class SmtpError(Exception):
    pass


class Client:
    """One SMTP connection on raw asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection(HOST, port)
        client = cls(reader, writer)
        await client.expect(None, 220)
        await client.expect(b"EHLO bench.example\r\n", 250)
        return client

    async def reply(self) -> int:
        while True:
            line = await self.reader.readline()
            if not line:
                raise SmtpError("connection closed by the server")
            if line[3:4] != b"-":
                return int(line[:3])

    async def expect(self, command: bytes | None, code: int) -> None:
        if command is not None:
            self.writer.write(command)
        got = await self.reply()
        if got != code:
            raise SmtpError(f"{command!r}: {got}")

    async def send(self, rcpt: str, body: bytes) -> tuple[int, float]:
        """MAIL, RCPT, DATA, body: (final code, perf_counter when the body's end was written)."""
        await self.expect(b"MAIL FROM:<sender@bench.example>\r\n", 250)
        await self.expect(b"RCPT TO:<%s>\r\n" % rcpt.encode(), 250)
        await self.expect(b"DATA\r\n", 354)
        self.writer.write(body)
        sent = time.perf_counter()
        return await self.reply(), sent

    async def quit(self) -> None:
        try:
            self.writer.write(b"QUIT\r\n")
            await self.reply()  # 221; the server closes first, so TIME_WAIT stays on its side
            await self.reader.read()
        except (OSError, SmtpError):
            pass
        self.writer.close()


@dataclass
class Result:
    server: str
    mode: str
    clients: int | str
    messages: int = 0  # answered 250
    failed: int = 0
    seconds: float = 0.0
    txn: list[float] = field(default_factory=list)
    data: list[float] = field(default_factory=list)
    cpu: float = 0.0  # server CPU seconds
    gen_cpu: float = 0.0  # the load generator's (this process's) CPU seconds
    offered: float = 0.0  # open loop: the rate actually offered
    pool: int = 0  # open loop: connections used
    timed_out: bool = False

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] * 1000


class Load:
    def __init__(self, port: int, recipients: list[str], tag: str, result: Result) -> None:
        self.port, self.recipients, self.tag, self.result = port, recipients, tag, result

    def _body(self, i: int) -> tuple[str, bytes]:
        rcpt = self.recipients[i % len(self.recipients)]
        return rcpt, message(self.tag, i, rcpt)

    def _done(self, code: int, start: float, sent: float) -> None:
        now = time.perf_counter()
        if code == 250:
            self.result.messages += 1
            self.result.txn.append(now - start)
            self.result.data.append(now - sent)
        else:
            self.result.failed += 1

    async def per_connection(self, work: itertools.count, n: int) -> None:
        for i in work:
            if i >= n:
                return
            rcpt, body = self._body(i)
            start = time.perf_counter()
            client = None
            try:
                client = await Client.connect(self.port)
                code, sent = await client.send(rcpt, body)
            except (OSError, SmtpError):
                self.result.failed += 1
                if client is not None:
                    client.writer.close()
                continue
            self._done(code, start, sent)
            await client.quit()

    async def session(self, work: itertools.count, n: int) -> None:
        client = await Client.connect(self.port)
        for i in work:
            if i >= n:
                break
            rcpt, body = self._body(i)
            start = time.perf_counter()
            try:
                code, sent = await client.send(rcpt, body)
            except (OSError, SmtpError):  # refused or cut: start again on a new connection
                self.result.failed += 1
                client.writer.close()
                client = await Client.connect(self.port)
                continue
            self._done(code, start, sent)
        await client.quit()

    async def closed_loop(self, mode: str, clients: int, n: int) -> None:
        work = itertools.count()
        worker = self.per_connection if mode == "conn" else self.session
        start = time.perf_counter()
        await asyncio.gather(*(worker(work, n) for _ in range(clients)))
        self.result.seconds = time.perf_counter() - start

    async def open_loop(self, rate: float, seconds: float, max_conns: int) -> None:
        """Send at ``rate`` whatever the answers; a message waits for a free connection when
        ``max_conns`` are busy, and that wait counts in its latency."""
        idle: asyncio.Queue[Client] = asyncio.Queue()
        made = 0

        async def one(i: int, due: float) -> None:
            nonlocal made
            rcpt, body = self._body(i)
            try:
                if idle.empty() and made < max_conns:
                    made += 1
                    client = await Client.connect(self.port)
                else:
                    client = await idle.get()
                code, sent = await client.send(rcpt, body)
            except (OSError, SmtpError):
                self.result.failed += 1
                made -= 1  # that connection is gone
                return
            self._done(code, due, sent)
            idle.put_nowait(client)

        warm = min(16, max_conns)  # connections opened before the clock starts
        for client in await asyncio.gather(*(Client.connect(self.port) for _ in range(warm))):
            idle.put_nowait(client)
        made = warm
        n = int(rate * seconds)
        tasks = []
        t0 = time.perf_counter() + 0.05
        try:
            for i in range(n):
                due = t0 + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i, due)))
            self.result.offered = n / (time.perf_counter() - t0)
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            self.result.seconds = time.perf_counter() - t0
            self.result.pool = made
        clients = [idle.get_nowait() for _ in range(idle.qsize())]
        await asyncio.gather(*(c.quit() for c in clients))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime: all threads


async def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server on port {port} exited with {proc.returncode} before answering")
        try:
            client = await Client.connect(port)
            await client.quit()
            return
        except (OSError, SmtpError):
            if time.monotonic() > deadline:
                raise SystemExit(f"server on port {port} did not answer within {timeout:.0f} s") from None
            await asyncio.sleep(0.1)


async def measure(server: str, proc: subprocess.Popen, port: int, recipients: list[str], tag: str,
                  mode: str, clients: int | str, **kw: float) -> Result:
    result = Result(server, mode, clients)
    load = Load(port, recipients, tag, result)
    before, gen_before = cpu_seconds(proc.pid), time.process_time()
    if mode == "open":
        expected = int(kw["rate"] * kw["seconds"])
        run = load.open_loop(kw["rate"], kw["seconds"], int(kw["max_conns"]))
        limit = kw["seconds"] + 60
    else:
        expected = int(kw["n"])
        run = load.closed_loop(mode, int(clients), expected)
        limit = 60 + expected / 50  # even 50 messages/s would finish
    try:
        await asyncio.wait_for(run, limit)
    except TimeoutError:
        result.timed_out = True
        result.failed = expected - result.messages
        if not result.seconds:
            result.seconds = limit
    result.cpu = cpu_seconds(proc.pid) - before
    result.gen_cpu = time.process_time() - gen_before
    return result


# --- the govmail side ------------------------------------------------------------------------------

def govmail(data: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GOVMAIL_CONFIG": str(data / "govmail.toml")}
    run = subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=False)
    if run.returncode != 0:
        raise SystemExit(f"govmail {' '.join(args)} failed ({run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    return run


def provision(data: Path) -> list[str]:
    """A fresh data directory with slapd up, a few agencies and ACCOUNTS accounts: their addresses."""
    from directory.slapd import free_port

    govmail(data, "init", "--data-dir", str(data), "--port", str(free_port()))
    govmail(data, "up")
    sample = data / "sample"
    govmail(data, "sample", "province", "--accounts", str(ACCOUNTS), "--seed", "1", "--out", str(sample))
    govmail(data, "agency", "import", str(sample / "agencies.csv"))
    govmail(data, "account", "bulk-create", str(sample / "staff.csv"))
    with sqlite3.connect(data / "govmail.db") as db:
        rows = db.execute("SELECT local_part || '@' || domain FROM accounts WHERE status = 'active' "
                          "ORDER BY local_part").fetchall()
    return [r[0] for r in rows]


def start_gateway(data: Path, inbound: int, submission: int, log_level: str, profile: Path | None) -> subprocess.Popen:
    env = {**os.environ, "GOVMAIL_CONFIG": str(data / "govmail.toml"),
           "GOVMAIL_GATEWAY_INBOUND_PORT": str(inbound), "GOVMAIL_GATEWAY_SUBMISSION_PORT": str(submission),
           "GOVMAIL_GATEWAY_PLAIN_AUTH_ON_LOOPBACK": "true", "GOVMAIL_GATEWAY_DELIVERY": "maildir"}
    prefix = ["-m", "cProfile", "-o", str(profile)] if profile else []
    with open(data / "gateway.log", "wb") as log:  # a JSON line per message at INFO: never a pipe nobody reads
        return subprocess.Popen([sys.executable, *prefix, "-m", "cli", "gateway", "run", "--log-level", log_level],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)


def stop(proc: subprocess.Popen | None, name: str) -> int | None:
    if proc is None or proc.poll() is not None:
        return proc.returncode if proc else None
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        print(f"{name} did not stop after SIGTERM; killing it", file=sys.stderr)
        proc.kill()
        return proc.wait()


def recorded(data: Path) -> tuple[int, int]:
    """(usage_events rows with direction 'received', files in the Maildir's new/ folders)."""
    with sqlite3.connect(data / "govmail.db") as db:
        events = db.execute("SELECT count(*) FROM usage_events WHERE direction = 'received'").fetchone()[0]
    files = sum(len(os.listdir(box / "new")) for box in (data / "mail").iterdir()) if (data / "mail").exists() else 0
    return events, files


# --- the run ---------------------------------------------------------------------------------------

def row(r: Result) -> str:
    extra = f"  offered {r.offered:,.0f}/s, {r.pool} conns" if r.mode == "open" else ""
    fails = f"  FAILED {r.failed}" if r.failed else ""
    fails += "  TIMED OUT" if r.timed_out else ""
    cpu = r.cpu / r.messages * 1e6 if r.messages else float("nan")
    gen = r.gen_cpu / r.messages * 1e6 if r.messages else float("nan")
    return (f"{r.server:8} {r.mode:5} {r.clients!s:>7} {r.messages:8,} {r.seconds:7.2f} {r.rate:9,.0f} "
            f"{pct(r.txn, 50):7.2f} {pct(r.txn, 99):7.2f} {pct(r.data, 50):7.2f} {pct(r.data, 99):7.2f} "
            f"{cpu:7.0f} {gen:7.0f}{extra}{fails}")


async def benchmark(opts: argparse.Namespace, recipients: list[str], servers: dict[str, tuple[subprocess.Popen, int]]
                    ) -> tuple[list[Result], list[Result]]:
    for name, (proc, port) in servers.items():
        await wait_ready(port, proc)
    # warm-up (untimed): thread pools, caches, the first SQLite pages
    warm = []
    for name, (proc, port) in servers.items():
        warm.append(Result(name, "warm", 4))
        await Load(port, recipients, "warm", warm[-1]).closed_loop("sess", 4, min(500, opts.messages))
    results = []
    for mode, label in (("conn", "one connection per message"), ("sess", "persistent sessions")):
        for clients in opts.clients:
            for name, (proc, port) in servers.items():
                print(f"  {label}, {clients} clients, {opts.messages:,} messages: {name} ...", flush=True)
                results.append(await measure(name, proc, port, recipients, f"{mode}{clients}", mode, clients,
                                             n=opts.messages))
    for name, (proc, port) in servers.items():
        print(f"  open loop, {opts.rate:,.0f} messages/s for {opts.seconds:g} s: {name} ...", flush=True)
        results.append(await measure(name, proc, port, recipients, "open", "open", "-",
                                     rate=opts.rate, seconds=opts.seconds, max_conns=opts.max_conns))
    return warm, results


def report(opts: argparse.Namespace, results: list[Result], warm_accepted: int, check: tuple[int, int] | None) -> None:
    print(f"\n{'server':8} {'mode':5} {'clients':>7} {'messages':>8} {'seconds':>7} {'msg/s':>9} "
          f"{'txn p50':>7} {'txn p99':>7} {'data50':>7} {'data99':>7} {'server':>7} {'client':>7}")
    print(f"{'':8} {'':5} {'':>7} {'':>8} {'':>7} {'':>9} {'ms':>7} {'ms':>7} {'ms':>7} {'ms':>7} {'CPU µs':>7} {'CPU µs':>7}")
    for r in results:
        print(row(r))
    print()
    ok = True
    by = {(r.server, r.mode, r.clients): r for r in results}
    for mode, label in (("conn", "one connection per message"), ("sess", "persistent sessions")):
        for clients in opts.clients:
            bare, gw = by[("bare", mode, clients)], by[("gateway", mode, clients)]
            ratio = gw.rate / bare.rate if bare.rate else 0.0
            met = ratio >= 0.9
            ok &= met
            print(f"ratio gateway / bare, {label}, {clients} clients: {ratio:.2f}  "
                  f"(target >= 0.90: {'met' if met else 'NOT met'})")
    gw = by[("gateway", "open", "-")]
    p99 = pct(gw.txn, 99)
    kept_up = gw.failed == 0 and gw.rate >= 0.95 * opts.rate
    met = p99 < 10 and kept_up
    ok &= met
    print(f"gateway p99 at {opts.rate:,.0f} messages/s offered: {p99:.2f} ms, achieved {gw.rate:,.0f}/s  "
          f"(target < 10 ms: {'met' if met else 'NOT met'})")
    if check is not None:
        accepted = warm_accepted + sum(r.messages for r in results if r.server == "gateway")
        events, files = check
        good = events == accepted == files
        ok &= good
        print(f"gateway accepted {accepted:,} messages (250s, warm-up included); usage_events 'received': "
              f"{events:,}; Maildir files: {files:,}  ({'all recorded' if good else 'MISMATCH'})")
    print(f"\nall targets {'met' if ok else 'NOT met'}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-bare":
        serve_bare(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000, help="messages per closed-loop run (default 20,000)")
    parser.add_argument("--clients", default="16", help="concurrent clients, or a comma list, e.g. 8,16,50 (default 16)")
    parser.add_argument("--rate", type=float, default=1000.0, help="open loop: messages/s offered (default 1,000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="open loop: how long (default 5)")
    parser.add_argument("--max-conns", type=int, default=100,
                        help="open loop: at most this many connections (default 100)")
    parser.add_argument("--log-level", default="INFO", help="the gateway's --log-level (default INFO, as deployed)")
    parser.add_argument("--profile", type=Path, help="run the gateway under cProfile, writing the stats here")
    parser.add_argument("--keep", type=Path, help="work here and keep the files")
    opts = parser.parse_args()
    opts.clients = [int(c) for c in opts.clients.split(",")]
    from directory.slapd import free_port

    signal.signal(signal.SIGTERM, _interrupt)  # clean up (servers, slapd, work dir) on SIGTERM too
    work = (opts.keep or Path(tempfile.mkdtemp(prefix="govmail-gwbench-"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = work / "govmail"
    bare = gateway = None
    try:
        t = time.perf_counter()
        recipients = provision(data)
        print(f"{len(recipients)} mailboxes in a fresh data directory ({time.perf_counter() - t:.1f} s); "
              f"work dir {work}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
        if os.getloadavg()[0] > 0.5:
            print("  note: the machine is not idle; other processes compete with the servers for the CPUs")
        bare_port, inbound, submission = free_port(), free_port(), free_port()
        bare = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(bare_port)],
                                stdout=subprocess.DEVNULL)
        gateway = start_gateway(data, inbound, submission, opts.log_level, opts.profile)
        servers = {"bare": (bare, bare_port), "gateway": (gateway, inbound)}
        print(f"bare aiosmtpd on {HOST}:{bare_port}, govmail gateway inbound on {HOST}:{inbound} "
              f"(log level {opts.log_level}{', under cProfile' if opts.profile else ''})")
        warm, results = asyncio.run(benchmark(opts, recipients, servers))
        code = stop(gateway, "gateway")
        if code != 0:
            print(f"the gateway exited with {code}; see {data / 'gateway.log'}", file=sys.stderr)
        report(opts, results, sum(r.messages for r in warm if r.server == "gateway"), recorded(data))
    finally:
        stop(gateway, "gateway")
        stop(bare, "bare server")
        if (data / "govmail.toml").exists():
            subprocess.run([sys.executable, "-m", "cli", "directory", "stop"], cwd=ROOT, check=False,
                           env={**os.environ, "GOVMAIL_CONFIG": str(data / "govmail.toml")},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if opts.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
