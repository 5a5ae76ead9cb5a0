"""Demo data posts to the ledger through the services it drives (payments, redemptions,
receipts, refunds) and their events (``o2o.wiring``): nothing of its own to create."""

from __future__ import annotations

from sqlalchemy.orm import Session

DEMO_ORDER = 99


def load_demo(session: Session) -> int:
    """Nothing of its own to create."""
    return 0
