"""Worker job of search: keep the popularity ranks of the index in step with sales and ratings.

Sales counts in the index move with every payment (``indexer.sales_changed``); the rank — the
document's key, which orders comparable matches — is recomputed here, a slice of the index per
sweep, so a busy checkout never pays for re-tokenizing a listing.
"""

from __future__ import annotations

from o2o.config import Settings
from o2o.db import Database
from o2o.search import indexer
from o2o.worker import job

# Documents read per sweep: the whole index is walked every few minutes at 100,000 listings.
SLICE = 5000

# Where the walk stopped in this process (a cursor over rank keys; it wraps around).
_cursor = {"after": -1}


@job("search_ranks")
def refresh_ranks(db: Database, settings: Settings) -> int:
    """Re-index the listings whose rank is stale in the next slice of the index. Idempotent;
    several workers may do the same slice, which only rewrites identical documents."""
    with db.transaction() as session:
        stale, last = indexer.stale_ranks(session, _cursor["after"], SLICE)
        indexer.reindex_listings(session, stale)
    _cursor["after"] = last  # -1 after the end: start over
    return len(stale)
