"""Test fixtures: every test that takes ``db_url`` runs on SQLite and on PostgreSQL.

PostgreSQL runs when ``O2O_TEST_POSTGRES_URL`` points at a server where we may create databases
(e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``). Without it those tests are skipped and
say why; with ``O2O_REQUIRE_POSTGRES=1`` (CI) a missing server fails them instead.
Each backend gets one freshly migrated database per test process; tables are emptied before
every test.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from o2o import migrate
from o2o.app import create_app
from o2o.config import Settings
from o2o.db import Base, Database
from tests.support import ApiClient

POSTGRES_URL_ENV = "O2O_TEST_POSTGRES_URL"
POSTGRES_SKIP_REASON = f"PostgreSQL tests skipped: set {POSTGRES_URL_ENV} to run them"


def postgres_admin_url() -> str | None:
    return os.environ.get(POSTGRES_URL_ENV) or None


def _worker_suffix() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def create_postgres_database(prefix: str = "o2o_test") -> str:
    admin_url = postgres_admin_url()
    assert admin_url
    name = f"{prefix}_{_worker_suffix()}_{secrets.token_hex(4)}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    admin_url = postgres_admin_url()
    assert admin_url
    name = make_url(url).database
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def require_postgres() -> None:
    if postgres_admin_url() is None:
        if os.environ.get("O2O_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{POSTGRES_URL_ENV} is required (O2O_REQUIRE_POSTGRES=1)")
        pytest.skip(POSTGRES_SKIP_REASON)


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sqlite") / "o2o-test.db"
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    require_postgres()
    url = create_postgres_database()
    try:
        migrate.upgrade(url)
        yield url
    finally:
        drop_postgres_database(url)


def empty_all_tables(url: str) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    tables = [t.name for t in Base.metadata.sorted_tables]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for name in reversed(tables):
                conn.execute(text(f"DELETE FROM {name}"))
            if conn.execute(
                text("SELECT 1 FROM sqlite_master WHERE name='sqlite_sequence'")
            ).first():
                conn.execute(text("DELETE FROM sqlite_sequence"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty database on each backend."""
    if request.param == "postgres":
        require_postgres()
    url = request.getfixturevalue(f"{request.param}_database")
    empty_all_tables(url)
    return url


@pytest.fixture
def backend(db_url: str) -> str:
    return "postgresql" if db_url.startswith("postgresql") else "sqlite"


def make_settings(db_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "secret_key": "test-secret-" + "x" * 40,
        "demo": False,
        "data_dir": tmp_path,
        "embedded_worker": False,
        # Off by default; the tests buy through the sandbox cashier.
        "sandbox_payments": True,
    }
    return Settings(**{**values, **overrides})


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return make_settings(db_url, tmp_path)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database.from_url(settings.database_url)
    yield database
    database.dispose()


@pytest.fixture
def app(settings: Settings) -> Any:
    return create_app(settings)


@pytest.fixture
def api(app: Any) -> Iterator[ApiClient]:
    with ApiClient(app) as client:
        yield client


def pytest_report_header(config: pytest.Config) -> str:
    if postgres_admin_url():
        return f"PostgreSQL tests: on ({POSTGRES_URL_ENV} is set)"
    return f"PostgreSQL tests: SKIPPED — {POSTGRES_URL_ENV} is not set"


@pytest.fixture
def world(db: Database, app: Any) -> Any:
    from tests.support import build_world

    return build_world(db, app)
