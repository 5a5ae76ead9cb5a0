"""Demo data posts to the ledger through the services it drives (payments, redemptions,
receipts, refunds): this module only makes sure the postings' listeners are registered before
any demo step runs (``o2o.demo`` imports every domain's ``demo`` module first)."""

from __future__ import annotations

from sqlalchemy.orm import Session

import o2o.ledger.postings  # noqa: F401  (registers the ledger's listeners)

DEMO_ORDER = 99


def load_demo(session: Session) -> int:
    """Nothing of its own to create."""
    return 0
