"""Worker jobs for goods: auto-confirm receipt, auto-approve unanswered after-sales requests."""

from __future__ import annotations

from o2o.config import Settings
from o2o.db import Database
from o2o.shipping import aftersales, service
from o2o.worker import job


@job("auto_confirm_receipt")
def auto_confirm_receipt(db: Database, settings: Settings) -> int:
    """Shipped goods orders ``auto_confirm_days`` after their last shipment → completed."""
    return service.auto_confirm(db, settings)


@job("after_sales_auto_approve")
def after_sales_auto_approve(db: Database, settings: Settings) -> int:
    """After-sales requests unanswered for 48 hours → approved and refunded."""
    return aftersales.auto_approve(db, settings)


@job("after_sales_refund_retry")
def after_sales_refund_retry(db: Database, settings: Settings) -> int:
    """Refused after-sales refunds → sent again an hour later (a few times), then the operator."""
    return aftersales.retry_failed_refunds(db, settings)
