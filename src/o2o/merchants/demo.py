"""Structured opening hours for the demo stores (o2o.demo makes them with a text line only):
by the merchant's category, with the Spring Festival closure. Idempotent: stores that already
have structured hours are left alone."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o.catalog.demo_terms import store_hours_for
from o2o.demo import MERCHANTS
from o2o.merchants import hours
from o2o.merchants.models import Category, Merchant, Store

DEMO_ORDER = 15


def load_demo(session: Session) -> int:
    changed = 0
    categories = {c.id: c.name for c in session.scalars(select(Category))}
    names = [m.name for m in MERCHANTS]
    rows = session.execute(
        select(Store, Merchant.category_id)
        .join(Merchant, Merchant.id == Store.merchant_id)
        .where(Merchant.name.in_(names))
    ).all()
    for store, category_id in rows:
        if store.hours:  # (a JSON null is not SQL NULL: checked here)
            continue
        structured = hours.StoreHours.model_validate(
            store_hours_for(categories.get(category_id, ""))
        )
        store.hours = hours.dump(structured)
        store.opening_hours = hours.summary(structured)
        changed += 1
    session.flush()
    return changed
