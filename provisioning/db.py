"""Database engines, sessions and migrations.

SQLite runs in WAL mode with foreign keys on and a busy timeout, so a second writer waits instead of
failing; PostgreSQL is used as given by its URL (``postgresql+psycopg://...``).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def make_engine(url: str, echo: bool = False, lock_timeout: float = 30.0, durable: bool = False) -> Engine:
    """An engine for ``url``. A writer waits at most ``lock_timeout`` seconds for another one's
    lock, then fails. SQLite files also get WAL, foreign keys and ``BEGIN IMMEDIATE`` transactions;
    ``durable``: each SQLite commit is synced to disk (the gateway's 250 must survive a power cut;
    otherwise WAL keeps the database consistent but may lose the last commits)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"timeout": lock_timeout})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            # Take transaction control from pysqlite, whose implicit BEGIN breaks SAVEPOINTs.
            dbapi_conn.isolation_level = None
            # SQLite's own lower() folds ASCII only: "Đặng" would not match a search for "đặng".
            dbapi_conn.create_function("lower", 1, _lower, deterministic=True)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
            # IMMEDIATE: a writer waits (busy timeout) for another instead of failing later when
            # its read snapshot turns out to be stale.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    parsed = make_url(url)
    # psycopg prepares a statement after 5 runs; PostgreSQL may then give it a generic plan, which
    # for the reports' "account_id IN (500 ids) AND day BETWEEN" queries walked a whole month of
    # usage_daily per chunk (9.6 s instead of 9 ms). Custom plans cost a few hundred µs of planning.
    options = " ".join(filter(None, (parsed.query.get("options"), f"-c lock_timeout={int(lock_timeout * 1000)}",
                                     "-c plan_cache_mode=force_custom_plan")))
    return create_engine(parsed.difference_update_query(["options"]), echo=echo, pool_pre_ping=True,
                         connect_args={"options": options})


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commits when the block ends normally, rolls back on any exception."""
    with factory() as session, session.begin():
        yield session


def _alembic_config(engine: Engine):  # type: ignore[no-untyped-def]
    from alembic.config import Config  # imported here: alembic costs every command ~0.1 s to load

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    from alembic import command

    command.upgrade(_alembic_config(engine), "head")


def schema_status(engine: Engine) -> tuple[str | None, str]:
    """(current revision in the database, newest revision shipped)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config(engine)).get_current_head() or ""
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, head
