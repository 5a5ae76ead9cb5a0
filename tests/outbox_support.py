"""After-commit handlers for the outbox tests, importable by worker subprocesses.

Each delivery inserts a row into ``outbox_test_effects`` inside the delivering transaction (so
a duplicate delivery would show as a second row with the same key) and appends its key to the
attempts file (outside the database: shows redeliveries). With ``hang_key_file`` set, the
first delivery whose key is not yet in it hangs after writing its effect, before the commit —
the moment the test SIGKILLs the process.

Run as ``python -m tests.outbox_support DATABASE_URL WORKDIR [hang | after:NAME]``: a worker
draining the outbox in a loop until ``WORKDIR/stop`` exists; ``after:NAME`` starts draining only
once ``WORKDIR/NAME`` exists (the test starts every process at once: one start-up's wait).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from o2o import events, wiring
from o2o.db import Database
from o2o.registry import load_models

HANDLERS = ("test.first", "test.second")
EFFECTS_DDL = (
    "CREATE TABLE IF NOT EXISTS outbox_test_effects "
    "(delivery_key VARCHAR(200) NOT NULL, handler VARCHAR(40) NOT NULL, pid INTEGER NOT NULL)"
)


def reset_effects(url: str) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(text(EFFECTS_DDL))
        conn.execute(text("DELETE FROM outbox_test_effects"))
    engine.dispose()


def effects(url: str) -> list[tuple[str, str]]:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT delivery_key, handler FROM outbox_test_effects")).all()
    engine.dispose()
    return [(r[0], r[1]) for r in rows]


class Recorder:
    def __init__(self, handler: str, workdir: Path, hang: bool = False) -> None:
        self.handler = handler
        self.workdir = workdir
        self.hang = hang

    def __call__(self, session: Any, event: events.Event, delivery: Any) -> None:
        session.execute(
            text(
                "INSERT INTO outbox_test_effects (delivery_key, handler, pid) VALUES (:k, :h, :p)"
            ),
            {"k": delivery.key, "h": self.handler, "p": os.getpid()},
        )
        with (self.workdir / "attempts").open("a") as f:
            f.write(delivery.key + "\n")
        hang_file = self.workdir / "hanging"
        if self.hang and not hang_file.exists():
            hang_file.write_text(delivery.key)
            session.flush()
            time.sleep(600)  # killed here, mid-delivery: the effect is written, not committed


def subscriptions(workdir: Path, hang: bool = False) -> dict[type[events.Event], dict[str, Any]]:
    return {events.MerchantApplied: {h: Recorder(h, workdir, hang) for h in HANDLERS}}


def main() -> None:
    from o2o.outbox import service

    url, workdir = sys.argv[1], Path(sys.argv[2])
    mode = sys.argv[3] if len(sys.argv) > 3 else ""
    hang = mode == "hang"
    load_models()
    wiring.install()
    db = Database.from_url(url)
    with wiring.extra_after_commit(subscriptions(workdir, hang)):
        if mode.startswith("after:"):
            while not (workdir / mode.removeprefix("after:")).exists():
                time.sleep(0.02)
        while not (workdir / "stop").exists():
            if service.drain(db) == 0:
                time.sleep(0.05)
    db.dispose()


if __name__ == "__main__":
    main()
