"""Alembic, driven from code: the CLI, ``serve`` and the tests all migrate through here."""

from __future__ import annotations

import re
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from o2o.db import make_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


# Database-specific full-text structures (SQLite FTS5 tables and their shadow tables, PostgreSQL
# tsvector columns and GIN indexes) exist only in migrations, not in the models: comparisons
# between the two leave out every name with an `fts` word in it.
_FTS_NAME = re.compile(r"(^|_)fts(_|$)")


def include_name(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    """Alembic ``include_name`` hook for autogenerate and model/migration comparisons."""
    return not (name and _FTS_NAME.search(name))


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "-1") -> None:
    command.downgrade(alembic_config(database_url), revision)


def current(database_url: str) -> str | None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()
