"""Worker jobs of vouchers: 过期自动退 (expire unused vouchers past their validity; refund those
whose offer promises it)."""

from __future__ import annotations

from o2o.config import Settings
from o2o.db import Database
from o2o.fulfilment import vouchers
from o2o.worker import job


@job("voucher_expiry")
def voucher_expiry(db: Database, settings: Settings) -> int:
    """Idempotent; several workers at once take different vouchers (SKIP LOCKED)."""
    return vouchers.expire_due(db, settings)
