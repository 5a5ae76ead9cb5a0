"""Worker job of the reports: keep the per-order facts up to date (``o2o.reports.facts``)."""

from __future__ import annotations

from o2o.config import Settings
from o2o.db import Database
from o2o.reports import facts
from o2o.worker import job


@job("report_facts")
def report_facts(db: Database, settings: Settings) -> int:
    """One batch of dirty orders turned into stored facts. Idempotent; several workers take
    different orders (SKIP LOCKED). Reports stay exact without it, only slower."""
    with db.transaction() as session:
        return facts.refresh(session)
