"""A live server for attack tests: ``o2o serve`` (uvicorn) in a subprocess on a fresh database,
with the settings a test module chooses, and a world of users built directly in its database."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

from o2o import migrate
from o2o.db import Database
from tests.conftest import create_postgres_database, drop_postgres_database, require_postgres
from tests.support import World, build_world
from tests.test_cli import free_port


@dataclass
class LiveServer:
    base: str
    backend: str
    db: Database
    world: World
    secret: str
    log: Path

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=60, **kw)

    def headers(self, role: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.world.tokens[role]}", **extra}

    def server_log(self) -> str:
        return self.log.read_text(errors="replace")


def serve(
    backend: str,
    tmp_path: Path,
    *,
    secret: str,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[LiveServer]:
    """Yield one live server on ``backend`` ("sqlite": one process; "postgres": two, and Redis
    for throttles when ``O2O_TEST_REDIS_URL`` is set)."""
    extra = dict(env or {})
    if backend == "postgres":
        require_postgres()
        url, workers = create_postgres_database("o2o_attack"), 2
        if os.environ.get("O2O_TEST_REDIS_URL"):
            extra.setdefault("O2O_REDIS_URL", os.environ["O2O_TEST_REDIS_URL"])
            extra.setdefault("O2O_REDIS_KEY_PREFIX", f"o2o-test-{os.getpid()}-{time.time_ns()}")
    else:
        url, workers = f"sqlite:///{tmp_path / 'live.db'}", 1
    db = None
    proc = None
    log_path = tmp_path / "server.log"
    try:
        migrate.upgrade(url)
        db = Database.from_url(url)
        world = build_world(db, SimpleNamespace(state=SimpleNamespace(secret_key=secret)))
        port = port or free_port()
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("O2O_")}
        child_env.update(
            O2O_DATABASE_URL=url,
            O2O_SECRET_KEY=secret,
            O2O_DEMO="false",
            O2O_SANDBOX_PAYMENTS="true",
            O2O_EMBEDDED_WORKER="false",
            O2O_LOG_LEVEL="warning",
            O2O_DATA_DIR=str(tmp_path),
            **extra,
        )
        log = open(log_path, "wb")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "o2o.cli",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            cwd=tmp_path,
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        for _ in range(1200):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise AssertionError(log_path.read_text(errors="replace"))
            time.sleep(0.1)
        else:
            raise AssertionError("server did not become ready in 120 s")
        yield LiveServer(base, backend, db, world, secret, log_path)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        if db is not None:
            db.dispose()
        if backend == "postgres":
            drop_postgres_database(url)


def at_once(n: int, call: Callable[[int, httpx.Client], Any]) -> list[Any]:
    """``call(i, client)`` from n threads released together, each on its own connection."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        with httpx.Client(timeout=120) as http:
            barrier.wait()
            try:
                results[i] = call(i, http)
            except Exception as exc:  # surfaces in the caller's assertions
                results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, errors
    return results
