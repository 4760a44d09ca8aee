"""Bulk provisioning speed against the directory's own ingest rate, side by side in one run.

1. ``govmail account bulk-create`` of N realistic officials (``govmail sample province``), end to end
   (CSV -> SQL -> LDAP, passwords generated and hashed), into a fresh data directory (SQLite + its
   own slapd), timed as one process from start to exit;
2. the same file again: the no-op re-run;
3. baseline: the entries govmail published, exported as LDIF, loaded with ``ldapadd`` into a fresh
   slapd with the same generated configuration (the suffix, OUs and agencies loaded first, untimed).

Prints both rates and their ratio. Targets (issue 3): ratio >= 0.8 at N = 10,000, no-op < 2 s.

Usage: python benchmarks/bulk_create.py [N] [--seed S] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from directory.slapd import free_port  # noqa: E402
from provisioning.sample import province, write_csv  # noqa: E402


def govmail(data: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "GOVMAIL_CONFIG": str(data / "govmail.toml")}
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, env=env, check=check,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def timed(func, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = func(*args, **kwargs)
    return time.perf_counter() - start, result


def fresh(data: Path) -> dict[str, str]:
    """A new data directory with its slapd running; returns how to bind as its administrator."""
    port = free_port()
    govmail(data, "init", "--data-dir", str(data), "--port", str(port))
    govmail(data, "up")
    return {"url": f"ldap://127.0.0.1:{port}", "dn": "cn=admin,dc=govmail,dc=local",
            "pwfile": str(data / "secrets" / "ldap-admin.password")}


def ldap(tool: str, server: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([tool, "-x", "-H", server["url"], "-D", server["dn"], "-y", server["pwfile"], *args],
                          check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def split_ldif(text: str) -> tuple[str, str]:
    """(everything but the accounts, the accounts) of an ldapsearch -LLL export."""
    records = [r for r in text.strip().split("\n\n") if r.strip()]
    people = [r for r in records if ",ou=people," in r.split("\n", 1)[0]]
    others = [r for r in records if ",ou=people," not in r.split("\n", 1)[0]]
    others.sort(key=lambda r: r.split("\n", 1)[0].count(","))  # parents first
    return "\n\n".join(others) + "\n", "\n\n".join(people) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", nargs="?", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="work here and keep the files")
    opts = parser.parse_args()
    work = opts.keep or Path(tempfile.mkdtemp(prefix="govmail-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    gov_dir, base_dir = work / "govmail", work / "ldapadd"
    try:
        agencies, staff = province(opts.n, seed=opts.seed)
        write_csv(work / "agencies.csv", agencies)
        write_csv(work / "staff.csv", staff)
        print(f"{opts.n} officials in {len(agencies)} agencies (seed {opts.seed}); work dir {work}")

        gov = fresh(gov_dir)
        govmail(gov_dir, "agency", "import", str(work / "agencies.csv"))
        t_gov, run = timed(govmail, gov_dir, "--format", "json", "account", "bulk-create", str(work / "staff.csv"),
                           check=False)
        if run.returncode != 0:
            sys.exit(f"bulk-create failed ({run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
        t_noop, rerun = timed(govmail, gov_dir, "account", "bulk-create", str(work / "staff.csv"))
        verify = govmail(gov_dir, "directory", "verify", check=False)
        export = ldap("ldapsearch", gov, "-LLL", "-b", "dc=govmail,dc=local", "(objectClass=*)", "*").stdout
        govmail(gov_dir, "directory", "stop")

        frame, people = split_ldif(export)
        count = people.count("\ndn: ") + 1
        (work / "frame.ldif").write_text(frame)
        (work / "people.ldif").write_text(people)
        base = fresh(base_dir)
        ldap("ldapadd", base, "-c", "-f", str(work / "frame.ldif"), check=False)  # `up` made the suffix and OUs
        t_add, _ = timed(ldap, "ldapadd", base, "-f", str(work / "people.ldif"))
        govmail(base_dir, "directory", "stop")

        rate_gov, rate_add = opts.n / t_gov, count / t_add
        ratio = rate_gov / rate_add
        print(f"\n{'':38} {'seconds':>8} {'accounts/s':>11}")
        print(f"{'ldapadd (directory ingest, baseline)':38} {t_add:8.2f} {rate_add:11.0f}")
        print(f"{'govmail account bulk-create':38} {t_gov:8.2f} {rate_gov:11.0f}")
        print(f"{'govmail re-run of the same file':38} {t_noop:8.2f}")
        print(f"\nratio govmail / ldapadd: {ratio:.2f}  (target >= 0.80: {'met' if ratio >= 0.8 else 'NOT met'})")
        print(f"no-op re-run: {t_noop:.2f} s  (target < 2 s: {'met' if t_noop < 2 else 'NOT met'})")
        print(f"directory verify after the run: {'clean' if verify.returncode == 0 else 'DRIFT'}; "
              f"entries compared: {count}")
    finally:
        for d in (gov_dir, base_dir):
            if (d / "govmail.toml").exists():
                govmail(d, "directory", "stop", check=False)
        if opts.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
