"""The ``o2o`` command as a new user runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from o2o import demo, migrate
from o2o.catalog.models import Listing
from o2o.cli import app as cli
from o2o.config import get_settings
from o2o.db import Database
from o2o.merchants.models import Merchant, Store

runner = CliRunner()


@pytest.fixture
def empty_db_url(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def run(args: list[str], url: str, media_dir: Path | None = None) -> str:
    get_settings.cache_clear()
    env = {"O2O_DATABASE_URL": url}
    if media_dir is not None:
        env["O2O_MEDIA_DIR"] = str(media_dir)
    try:
        result = runner.invoke(cli, args, env=env)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_db_commands(empty_db_url: str) -> None:
    assert "(空数据库)" in run(["db", "current"], empty_db_url)
    run(["db", "upgrade"], empty_db_url)
    assert migrate.head() in run(["db", "current"], empty_db_url)
    run(["db", "downgrade", "base"], empty_db_url)
    assert migrate.current(empty_db_url) is None


def test_admin_create_and_demo_are_idempotent(db_url: str, tmp_path: Path) -> None:
    run(["admin", "create", "--phone", "13812345678", "--password", "strong-pass-1"], db_url)
    run(["admin", "create", "--phone", "13812345678", "--password", "strong-pass-2"], db_url)
    run(["demo"], db_url, tmp_path / "media")
    database = Database.from_url(db_url)
    try:
        with database.transaction(readonly=True) as session:
            merchants = session.scalar(select(func.count()).select_from(Merchant))
        files = sorted((tmp_path / "media").rglob("*.webp"))
        run(["demo"], db_url, tmp_path / "media")
        with database.transaction(readonly=True) as session:
            assert session.scalar(select(func.count()).select_from(Merchant)) == merchants
            names = set(session.scalars(select(Merchant.name)))
            # Every demo listing and store has a picture (drawn, stored once: the second run
            # added none), every deal its contents and rules, every store structured hours.
            listings = session.scalars(select(Listing)).all()
            stores = session.scalars(select(Store)).all()
            assert listings and all(x.images for x in listings)
            deals = [x for x in listings if x.kind == "service"]
            assert [x.title for x in deals if not (x.deal_items and x.deal_rules)] == []
            assert all(s.photos and s.hours for s in stores)
        assert sorted((tmp_path / "media").rglob("*.webp")) == files
        assert len(files) == 2 * (len(listings) + len(stores))
        assert merchants == len(demo.MERCHANTS) + 1  # plus one application waiting for review
        assert "蜀香居重庆老火锅" in names
    finally:
        database.dispose()


def test_admin_create_rejects_bad_input(empty_db_url: str) -> None:
    get_settings.cache_clear()
    result = runner.invoke(
        cli,
        ["admin", "create", "--phone", "12", "--password", "x"],
        env={"O2O_DATABASE_URL": empty_db_url},
    )
    assert result.exit_code == 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, float]]:
    """``o2o serve`` in an empty folder, as a new user runs it: embedded SQLite, demo data."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("O2O_")}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "o2o.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise AssertionError(proc.stdout.read().decode() if proc.stdout else "exited")
            time.sleep(0.1)
        else:
            raise AssertionError("server did not become ready in 30 s")
        yield base, time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_serve_from_an_empty_folder_with_demo_data(
    served: tuple[str, float], tmp_path: Path
) -> None:
    base, startup = served
    print(f"\n`o2o serve` ready in {startup:.2f}s (first start: migrate + demo data)")
    assert (tmp_path / "o2o.db").exists()
    assert (tmp_path / ".o2o-secret").exists()
    token = httpx.post(
        f"{base}/api/v1/auth/token",
        json={"phone": demo.OPERATOR[0], "password": demo.OPERATOR[1]},
    )
    assert token.status_code == 200
    me = httpx.get(
        f"{base}/api/v1/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"}
    ).json()
    assert me["is_admin"] is True
    pending = httpx.get(
        f"{base}/api/v1/admin/merchants?status=approved",
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
    ).json()
    assert len(pending["items"]) == len(demo.MERCHANTS)
    consumer = httpx.post(
        f"{base}/api/v1/auth/token",
        json={"phone": demo.CONSUMER[0], "password": demo.CONSUMER[1]},
    )
    assert consumer.status_code == 200
    categories = [c["name"] for c in httpx.get(f"{base}/api/v1/categories").json()]
    assert {"美食", "休闲娱乐", "丽人", "电影", "数码", "食品生鲜", "图书"} <= set(categories)
