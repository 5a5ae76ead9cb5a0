"""Every ``o2o`` command in a fresh process against a fresh database, SQLite and PostgreSQL.

In-process tests (``tests/test_cli.py``) share the test process's imports, so they cannot see a
command that forgets to load a model: ``o2o reconcile BILL.csv`` crashed with
``NoReferencedTableError … 'users'`` in a new process (issue 16). Here each command is a new
interpreter, as an operator runs it; exit codes and output are checked.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from o2o import migrate
from o2o.accounts.models import User
from o2o.db import Database
from o2o.merchants.models import Merchant
from o2o.settlement.models import ReconciliationImport
from tests.conftest import create_postgres_database, drop_postgres_database, require_postgres
from tests.test_cli import free_port

pytestmark = pytest.mark.slow

EMPTY_BILL = (
    "交易时间,商户订单号,交易状态\r\n总交易单数,应结订单总金额,退款总金额\r\n`0,`0.00,`0.00\r\n"
)
ADMIN_PHONE = "13912345678"


def o2o_command() -> list[str]:
    """The installed ``o2o`` script beside this interpreter (what the README runs)."""
    script = shutil.which("o2o", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "o2o.cli"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database nobody has touched (not even migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    require_postgres()
    url = create_postgres_database("o2o_cli")
    try:
        yield url
    finally:
        drop_postgres_database(url)


class Cli:
    def __init__(self, url: str, cwd: Path) -> None:
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("O2O_")}
        self.env.update(
            O2O_DATABASE_URL=url,
            O2O_SECRET_KEY="cli-test-secret-" + "c" * 40,
            O2O_DATA_DIR=str(cwd),
            O2O_DEMO="false",
            O2O_SANDBOX_PAYMENTS="true",
            O2O_LOG_LEVEL="info",
            O2O_WORKER_INTERVAL_SECONDS="0.2",
        )

    def run(self, *args: str, expect: int = 0) -> str:
        done = subprocess.run(
            [*o2o_command(), *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        output = done.stdout + done.stderr
        assert done.returncode == expect, f"o2o {' '.join(args)} → {done.returncode}\n{output}"
        assert "Traceback" not in output, output
        return output

    def start(self, *args: str) -> Running:
        return Running(
            subprocess.Popen(
                [*o2o_command(), *args],
                cwd=self.cwd,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )


class Running:
    """A long-running command whose output is collected on a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, ready: Callable[[], bool], what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise AssertionError(f"exited {self.proc.returncode} before {what}:\n{self.output}")
            time.sleep(0.05)
        self.proc.kill()
        raise AssertionError(f"no {what} in {timeout} s:\n{self.output}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self._reader.join(5)
        assert "Traceback" not in self.output, self.output
        return code


def count(url: str, model: type[Any]) -> int:
    db = Database.from_url(url)
    try:
        with db.transaction(readonly=True) as session:
            return session.scalar(select(func.count()).select_from(model)) or 0
    finally:
        db.dispose()


def test_every_command_in_a_fresh_process(fresh_url: str, tmp_path: Path) -> None:
    cli = Cli(fresh_url, tmp_path)
    head = migrate.head()

    assert f"当前版本: {head}" in cli.run("db", "upgrade")
    assert head in cli.run("db", "current")

    out = cli.run("admin", "create", "--phone", ADMIN_PHONE, "--password", "strong-pass-1")
    assert f"平台运营账号已就绪: {ADMIN_PHONE}" in out

    bill = tmp_path / "bill.csv"
    bill.write_bytes(("\ufeff" + EMPTY_BILL).encode("utf-8"))
    out = cli.run("reconcile", str(bill), "--date", "2024-03-01")  # stores the import (--keep)
    assert "全部相符" in out
    assert count(fresh_url, ReconciliationImport) == 1

    if fresh_url.startswith("postgresql"):
        # Seconds of work: once per run is enough (on SQLite `o2o serve` loads the demo data on
        # first start in a fresh process: tests/test_cli.py::test_serve_from_an_empty_folder…).
        assert "演示数据已就绪" in cli.run("demo")
        assert count(fresh_url, Merchant) > 1

    port = free_port()
    served = cli.start("serve", "--port", str(port))
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    served.wait_for(ready, "ready server")
    token = httpx.post(
        f"{base}/api/v1/auth/token", json={"phone": ADMIN_PHONE, "password": "strong-pass-1"}
    )
    assert token.status_code == 200, token.text
    assert served.stop() in (0, -signal.SIGTERM)  # uvicorn may re-raise SIGTERM after shutdown

    worker = cli.start("worker")
    worker.wait_for(lambda: "worker started" in worker.output, "worker start")
    # The first sweep starts right after that line (every 0.2 s after it); a sweep that has
    # started finishes before SIGTERM ends the loop, and a failing job logs "failed".
    time.sleep(1)
    assert worker.stop() == 0
    assert "failed" not in worker.output, worker.output

    assert count(fresh_url, User) >= 1
    assert "当前版本: (空数据库)" in cli.run("db", "downgrade", "base")
    assert migrate.current(fresh_url) is None
