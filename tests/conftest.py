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
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from o2o import migrate, wiring
from o2o.app import create_app
from o2o.config import Settings
from o2o.db import Base, Database
from o2o.registry import load_models
from tests.support import ApiClient

# Like the app, the worker and the CLI at start-up: every table, and the events' handlers.
load_models()
wiring.install()

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


# --- the demo, loaded once per test process and backend, copied for each test that needs it ---
# Loading the demo replays a month of checkouts through the real services: seconds on a quiet
# machine, many more on a busy one. Tests about the demo data read (and may change) a private
# copy of one loaded database instead of loading it again each time.


def _copy_sqlite(source_url: str, target: Path) -> str:
    source = sqlite3.connect(make_url(source_url).database or "")
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()
    return f"sqlite:///{target}"


def _copy_postgres(template_url: str) -> str:
    url = create_postgres_database("o2o_demo")
    name = make_url(url).database
    drop_postgres_database(url)  # re-made from the template (CREATE DATABASE … TEMPLATE)
    engine = create_engine(postgres_admin_url() or "", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        template = make_url(template_url).database
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def _demo_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """backend → the URL of a migrated database with the whole demo loaded (made on first use)."""
    made: dict[str, str] = {}
    yield made
    if "postgres" in made:
        drop_postgres_database(made["postgres"])


def _demo_template(backend: str, made: dict[str, str], tmp_path_factory: Any) -> str:
    from o2o import demo

    if backend not in made:
        if backend == "postgres":
            url = create_postgres_database("o2o_demo_template")
        else:
            url = f"sqlite:///{tmp_path_factory.mktemp('demo-template') / 'o2o.db'}"
        migrate.upgrade(url)
        database = Database.from_url(url)
        try:
            demo.load(database)
        finally:
            database.dispose()  # a PostgreSQL template must have no connections
        made[backend] = url
    return made[backend]


@pytest.fixture
def demo_db(
    db_url: str,
    _demo_templates: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
) -> Iterator[Database]:
    """A private database holding the whole demo (as ``o2o.demo.load`` leaves it)."""
    backend = "postgres" if db_url.startswith("postgresql") else "sqlite"
    template = _demo_template(backend, _demo_templates, tmp_path_factory)
    if backend == "postgres":
        url = _copy_postgres(template)
    else:
        url = _copy_sqlite(template, tmp_path / "demo-copy.db")
    database = Database.from_url(url)
    try:
        yield database
    finally:
        database.dispose()
        if backend == "postgres":
            drop_postgres_database(url)


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
