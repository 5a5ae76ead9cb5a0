"""Worker job of the reports: keep the per-order facts up to date (``o2o.reports.facts``)."""

from __future__ import annotations

from o2o.config import Settings
from o2o.db import Database
from o2o.reports import facts
from o2o.worker import job

# Batches per sweep (each its own transaction): enough to keep up with busy hours.
BATCHES_PER_RUN = 10


@job("report_facts")
def report_facts(db: Database, settings: Settings) -> int:
    """Dirty orders turned into stored facts, a few batches per sweep. Idempotent; several
    workers take different orders (SKIP LOCKED). Reports stay exact without it, only slower."""
    done = 0
    for _ in range(BATCHES_PER_RUN):
        with db.transaction() as session:
            moved = facts.refresh(session)
        done += moved
        if moved < facts.BATCH:
            break
    return done
