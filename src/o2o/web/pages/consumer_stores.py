"""门店页: a store's photos, address, hours and whether it is open now, tap-to-call phone, 导航
(a ``geo:`` link the phone hands to its map apps, and Amap's web link), everything it offers
(deals usable there, its merchant's goods) and the reviews written about it."""

from __future__ import annotations

from fastapi.responses import Response

from o2o.catalog import lookups
from o2o.geo import haversine_m
from o2o.merchants import hours
from o2o.merchants import service as merchants
from o2o.reviews import service as reviews
from o2o.schemas import Id
from o2o.timeutil import utcnow
from o2o.web.context import PageDep, page_router
from o2o.web.pages.consumer import format_distance
from o2o.web.pages.consumer_shop import _location, add_covers, geo_link, map_link

router = page_router()

STORE_REVIEWS = 5


@router.get("/stores/{store_id}", name="consumer_store")
def store_page(page: PageDep, store_id: Id) -> Response:
    location = _location(page)
    with page.read() as session:
        store = merchants.public_store(session, store_id, page.actor)
        merchant = merchants.get_merchant(session, store.merchant_id)
        offers = lookups.store_listings(session, store)
        items = [
            {
                "listing_id": x["id"],
                "title": x["title"],
                "kind": x["kind"],
                "price_fen": x["price_fen"],
                "original_price_fen": x["original_price_fen"],
                "merchant": {"id": merchant.id, "name": merchant.name},
                "nearest_store": None,
                "sales": x["sales_count"],
                "rating": x["rating"],
            }
            for x in offers
        ]
        add_covers(session, items)
        found = reviews.merchant_reviews(
            session, store.merchant_id, page.actor, store_id=store.id, limit=STORE_REVIEWS
        )
        review_rows = reviews.reviews_out(session, found)
        structured = hours.load(store.hours)
    distance = (
        round(haversine_m(location.lat, location.lng, store.lat, store.lng)) if location else None
    )
    return page.render(
        "consumer/store.html",
        store=store,
        merchant=merchant,
        deals=[x for x in items if x["kind"] == "service"],
        goods=[x for x in items if x["kind"] == "goods"],
        reviews=review_rows,
        state=hours.open_state(structured, utcnow()),
        week=hours.week_rows(structured),
        closed_dates=structured.closed_dates if structured else [],
        distance=distance,
        geo=geo_link(store.lat, store.lng, store.name),
        amap=map_link(store.lat, store.lng, store.name),
        format_distance=format_distance,
    )
