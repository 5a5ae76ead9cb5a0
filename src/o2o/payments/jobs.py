"""Worker jobs of the payment core: payment timeouts and the refund sweep."""

from __future__ import annotations

from o2o.config import Settings
from o2o.db import Database
from o2o.payments import notification_log, service
from o2o.worker import job


@job("payment_timeouts")
def payment_timeouts(db: Database, settings: Settings) -> int:
    """Unpaid past ``expires_at``: cancel the orders, release the holds, close the payment."""
    return service.close_expired(db, settings)


@job("refunds")
def refunds(db: Database, settings: Settings) -> int:
    """Send pending refunds, query accepted ones, retry those the provider could not take."""
    return service.process_refunds(db, settings)


@job("notification_replay")
def notification_replay(db: Database, settings: Settings) -> int:
    """Verified notifications a crash left in ``received`` are applied now (idempotently); the
    refunds they ask for are sent by the ``refunds`` job."""
    return len(notification_log.replay_received(db))
