"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from provisioning.db import make_engine, migrate
from provisioning.models import Base


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert differences == []


def test_downgrade_to_nothing_and_back(db_url: str) -> None:
    from alembic import command

    from provisioning.db import _alembic_config

    engine = make_engine(db_url)
    migrate(engine)
    command.downgrade(_alembic_config(engine), "base")
    migrate(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()
