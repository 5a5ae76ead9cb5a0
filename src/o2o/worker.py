"""The background worker: timers that sweep due work (unpaid timeouts, expiries, auto-confirm…).

Domains put their jobs in ``o2o/<domain>/jobs.py`` with ``@job("name")``. Each job takes the database and the settings, does one bounded batch, and returns how many
things it moved. Jobs must be idempotent and safe with several workers at once (they claim rows
with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one writer anyway).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from o2o import ratelimit
from o2o.config import Settings
from o2o.db import Database, make_engine

log = logging.getLogger(__name__)

Job = Callable[[Database, Settings], int]


@dataclass(frozen=True)
class RegisteredJob:
    name: str
    run: Job


JOBS: list[RegisteredJob] = []


def job(name: str) -> Callable[[Job], Job]:
    """Register a worker job (domains call this at import time)."""

    def decorator(fn: Job) -> Job:
        if all(j.name != name for j in JOBS):
            JOBS.append(RegisteredJob(name, fn))
        return fn

    return decorator


@job("purge_rate_counters")
def _purge_rate_counters(db: Database, settings: Settings) -> int:
    return ratelimit.purge_expired(db)


@job("purge_expired_sessions")
def _purge_expired_sessions(db: Database, settings: Settings) -> int:
    from o2o.accounts.service import purge_expired_sessions

    with db.transaction() as session:
        return purge_expired_sessions(session)


def load_jobs() -> list[RegisteredJob]:
    from o2o import wiring
    from o2o.registry import domain_modules, load_models

    load_models()
    wiring.install()
    domain_modules("jobs")  # each domain's jobs.py registers its jobs with @job
    return list(JOBS)


def run_once(db: Database, settings: Settings) -> dict[str, int]:
    """One sweep of every job; a failing job is logged and does not stop the others."""
    results: dict[str, int] = {}
    for registered in load_jobs():
        try:
            results[registered.name] = registered.run(db, settings)
        except Exception:
            log.exception("worker job %s failed", registered.name)
            results[registered.name] = -1
    return results


def run_forever(db: Database, settings: Settings, stop: threading.Event) -> None:
    log.info("worker started (every %.1fs)", settings.worker_interval_seconds)
    while not stop.is_set():
        moved = run_once(db, settings)
        busy = {k: v for k, v in moved.items() if v}
        if busy:
            log.info("worker sweep: %s", busy)
        stop.wait(settings.worker_interval_seconds)


class BackgroundWorker:
    """The worker as a thread inside the API process (the embedded default), with a connection
    pool of its own: requests that take every pooled connection of the API cannot starve it."""

    def __init__(self, settings: Settings) -> None:
        self._db = Database(make_engine(settings.database_url, pool_size=2))
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=run_forever,
            args=(self._db, settings, self._stop),
            name="o2o-worker",
            daemon=True,
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._db.dispose()
