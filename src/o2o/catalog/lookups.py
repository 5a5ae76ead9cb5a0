"""Read-only lookups of listings for other pages: covers for search results, 团购详情 for
vouchers, what a store offers. (Kept apart from the rules in ``service``.)"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o.catalog import deal_terms
from o2o.catalog.models import GOODS, PUBLISHED, SERVICE, Listing, ListingStore
from o2o.catalog.service import listing_summary
from o2o.merchants.models import Store


def covers(session: Session, listing_ids: Sequence[int]) -> dict[int, str]:
    """listing id → its cover image (the first of its gallery), for lists and search results."""
    if not listing_ids:
        return {}
    rows = session.execute(
        select(Listing.id, Listing.images).where(Listing.id.in_(sorted(set(listing_ids))))
    )
    return {row.id: row.images[0] for row in rows if row.images}


def deal_terms_of(session: Session, listing_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """listing id → its 团购详情 (contents and rule lines), for vouchers and order pages."""
    if not listing_ids:
        return {}
    rows = session.execute(
        select(Listing.id, Listing.deal_items, Listing.deal_rules).where(
            Listing.id.in_(sorted(set(listing_ids)))
        )
    )
    return {
        row.id: {
            "items": deal_terms.items_out(row.deal_items or []),
            "rules_text": [
                {"label": k, "text": v}
                for k, v in deal_terms.rules_lines(deal_terms.load_rules(row.deal_rules))
            ],
        }
        for row in rows
    }


STORE_PAGE_LISTINGS = 50


def store_listings(session: Session, store: Store) -> list[dict[str, Any]]:
    """What a store's page offers: published deals usable there, then its merchant's goods."""
    deals = session.scalars(
        select(Listing)
        .join(ListingStore, ListingStore.listing_id == Listing.id)
        .where(
            ListingStore.store_id == store.id,
            Listing.status == PUBLISHED,
            Listing.kind == SERVICE,
        )
        .order_by(Listing.sales_count.desc(), Listing.id)
        .limit(STORE_PAGE_LISTINGS)
    ).all()
    goods = session.scalars(
        select(Listing)
        .where(
            Listing.merchant_id == store.merchant_id,
            Listing.status == PUBLISHED,
            Listing.kind == GOODS,
        )
        .order_by(Listing.sales_count.desc(), Listing.id)
        .limit(STORE_PAGE_LISTINGS)
    ).all()
    return [listing_summary(x) for x in [*deals, *goods]]
