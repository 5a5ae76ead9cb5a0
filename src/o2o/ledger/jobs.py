"""The ledger has no timers of its own; importing this (the worker loads every ``jobs``
module) registers the postings' listeners, so money moved by worker jobs — auto-confirmed
receipts, expired vouchers refunded, refunds answered by the provider — is posted too."""

from __future__ import annotations

import o2o.ledger.postings  # noqa: F401  (registers the ledger's listeners)
