"""Fixtures: a real slapd, real SQLite and PostgreSQL, and a ``gm`` bundle per test.

* One slapd per test session (Debian's binary, free loopback port). Each test gets its own subtree
  ``ou=t<N>,<suffix>`` as its base DN, so tests do not see each other's entries.
* Database tests run twice: on a fresh SQLite file and in a fresh PostgreSQL schema
  (``GOVMAIL_TEST_PG_URL``, default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``). A missing
  server is an error, never a skip.
"""

from __future__ import annotations

import itertools
import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from directory.ldap import Directory
from directory.slapd import LocalSlapd, SlapdConfig, free_port
from directory.sync import SyncResult, sync
from provisioning.audit import Actor
from provisioning.config import DirectorySettings, Secret, Settings, load_settings
from provisioning.db import make_engine, migrate, session_factory

pytest_plugins = [
    "tests.cert_fixtures",  # pki, rogue, cg: a test CA and a province trusting it
    "tests.usage_fixtures",  # ug: agencies, accounts and their activity for the usage statistics
    "tests.portal_fixtures",  # pw: a province with administrators and officials, and its portal
]

PG_URL = os.environ.get("GOVMAIL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
SUFFIX = "dc=test,dc=govmail"
ROOT_DN = f"cn=admin,{SUFFIX}"
_subtrees = itertools.count(1)


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlapd]:
    server = LocalSlapd(SlapdConfig(
        state_dir=tmp_path_factory.mktemp("slapd"), base_dn=SUFFIX, port=free_port(),
        root_dn=ROOT_DN, root_password=secrets.token_urlsafe(16),
    ))
    server.start()
    suffix = Directory(DirectorySettings(urls=(server.url,), base_dn=SUFFIX, bind_dn=ROOT_DN,
                                         bind_password=Secret(server.config.root_password)))
    with suffix.connect() as conn:
        suffix.ensure_tree(conn)
    yield server
    server.stop()


def _pg_schema_url(schema: str) -> str:
    return f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'govmail.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # fail loudly: a skipped real-server test is a failed test
        pytest.fail(f"PostgreSQL at {PG_URL} is not usable ({type(exc).__name__}: {exc}); "
                    f"start it or set GOVMAIL_TEST_PG_URL")
    yield _pg_schema_url(schema)
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, data: dict[str, Any]) -> Path:
    """Write a (flat, two-level) TOML configuration file."""
    lines = [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for section, values in data.items():
        if isinstance(values, dict):
            lines.append(f"\n[{section}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class Govmail:
    """Everything a test needs: settings, a session factory, the directory and the CLI."""

    settings: Settings
    factory: sessionmaker[Session]
    directory: Directory
    slapd: LocalSlapd
    config_file: Path
    actor: Actor = Actor(name="tester", source="cli")

    def session(self) -> Session:
        return self.factory()

    def sync(self) -> SyncResult:
        return sync(self.factory, self.directory)

    def cli(self, *args: str, input: str | None = None) -> Result:
        from cli.main import cli

        return CliRunner().invoke(cli, ["--config", str(self.config_file), *args], input=input,
                                  catch_exceptions=False)

    def slapd_bind_ok(self, local_part: str, password: str) -> bool:
        """Whether slapd accepts a simple bind as the account with ``password``."""
        from ldap3 import Connection, Server

        conn = Connection(Server(self.slapd.url), self.directory.account_dn(local_part), password)
        try:
            return bool(conn.bind())
        finally:
            conn.unbind()

    def entry(self, local_part: str) -> dict[str, list[str]] | None:
        """The LDAP entry of an account as {attribute: values}, read as the service account."""
        with self.directory.connect() as conn:
            conn.search(self.directory.people_dn, f"(uid={local_part})", attributes=["*"])
            if not conn.entries:
                return None
            return {k: [str(v) for v in vals] for k, vals in conn.entries[0].entry_attributes_as_dict.items()}


def config_data(slapd: LocalSlapd, db_url: str, base_dn: str, data_dir: Path) -> dict[str, Any]:
    return {
        "data_dir": str(data_dir),
        "database": {"url": db_url},
        "directory": {
            "urls": [slapd.url], "base_dn": base_dn, "bind_dn": ROOT_DN,
            "bind_password": slapd.config.root_password, "embedded": False, "timeout": 5,
        },
        "passwords": {"argon2_memory_kib": 8192, "argon2_time_cost": 1},
    }


@pytest.fixture
def gm(slapd: LocalSlapd, db_url: str, tmp_path: Path) -> Iterator[Govmail]:
    """A migrated database of each kind and this test's own directory subtree."""
    base_dn = f"ou=t{next(_subtrees)}-{os.getpid()},{SUFFIX}"
    config_file = write_config(tmp_path / "govmail.toml", config_data(slapd, db_url, base_dn, tmp_path))
    settings = load_settings(config_file, env={})
    engine = make_engine(settings.database.url)
    migrate(engine)
    yield Govmail(settings, session_factory(engine), Directory(settings.directory), slapd, config_file)
    engine.dispose()
