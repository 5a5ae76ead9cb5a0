"""Worker jobs of settlement: statements for ended periods, 分账 under way, the daily WeChat Pay
trade bill (对账)."""

from __future__ import annotations

from o2o.config import Settings
from o2o.db import Database
from o2o.settlement import bills, service, sharing
from o2o.worker import job


@job("settlement_statements")
def settlement_statements(db: Database, settings: Settings) -> int:
    """Statements for every merchant with unsettled postings in an ended period."""
    return service.generate_statements(db, settings)


@job("settlement_profit_sharing")
def settlement_profit_sharing(db: Database, settings: Settings) -> int:
    """Ask WeChat Pay how the 分账 of statements under way went; settle the finished ones."""
    return sharing.advance_all(db, settings)


@job("settlement_trade_bill")
def settlement_trade_bill(db: Database, settings: Settings) -> int:
    """Yesterday's WeChat Pay trade bill after 10:00 Beijing time: download, check its hash,
    reconcile, store (retried while WeChat Pay is still generating it)."""
    return bills.download_due(db, settings)
