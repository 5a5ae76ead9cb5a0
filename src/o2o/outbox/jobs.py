"""Worker job of the outbox: deliver due after-commit events (``o2o.outbox.service``)."""

from __future__ import annotations

from o2o.config import Settings
from o2o.db import Database
from o2o.outbox import service
from o2o.worker import job


@job("event_outbox")
def event_outbox(db: Database, settings: Settings) -> int:
    """Safe with several workers and API processes at once (SKIP LOCKED)."""
    return service.drain(db)
