"""Reviews: only the order's consumer, only after consumption (goods received; a voucher of the
line redeemed), once per line (also concurrently); one merchant reply; listing, merchant and
store ratings and the search document follow. Both databases."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import inspect, select, update

from o2o.catalog.models import Listing
from o2o.errors import Conflict
from o2o.orders.models import Order
from o2o.reviews import service
from o2o.reviews.models import Review
from o2o.search.models import SearchDocument
from o2o.timeutil import utcnow
from tests.checkout_support import make_deal, pay_sandbox, place
from tests.shipping_support import PaidOrder, paid_goods_order, sf_number


def received(api: Any, world: Any, **kw: Any) -> PaidOrder:
    order = paid_goods_order(api, world, **kw)
    r = api.post(
        f"/api/v1/merchants/{world.a.id}/orders/{order.order_no}/shipments",
        json={"carrier": "SF", "tracking_no": sf_number()},
        as_=world.tokens["manager"],
    )
    assert r.status_code == 201, r.text
    r = api.post(f"/api/v1/orders/{order.order_no}/confirm-receipt", as_=world.tokens["consumer"])
    assert r.status_code == 200, r.text
    return order


def review(api: Any, order_no: str, token: str, **body: Any) -> Any:
    payload = {"rating": 5, "text": "很好", **body}
    return api.post(f"/api/v1/orders/{order_no}/reviews", json=payload, as_=token)


def listing_row(db: Any, listing_id: int) -> Listing:
    with db.transaction(readonly=True) as session:
        return session.get(Listing, listing_id)


def search_doc(db: Any, listing_id: int) -> SearchDocument | None:
    with db.transaction(readonly=True) as session:
        return session.scalar(select(SearchDocument).where(SearchDocument.listing_id == listing_id))


def test_goods_reviews_after_receipt_once_per_line(api: Any, world: Any, db: Any) -> None:
    token = world.tokens["consumer"]
    order = paid_goods_order(api, world, lines=2)
    r = review(api, order.order_no, token, line_id=order.line_ids[0])
    assert r.status_code == 409 and r.json()["code"] == "not_consumed"  # paid only
    api.post(
        f"/api/v1/merchants/{world.a.id}/orders/{order.order_no}/shipments",
        json={"carrier": "SF", "tracking_no": sf_number()},
        as_=world.tokens["manager"],
    )
    r = review(api, order.order_no, token, line_id=order.line_ids[0])
    assert r.status_code == 409 and r.json()["code"] == "not_consumed"  # shipped, not received
    assert (
        api.get(f"/api/v1/orders/{order.order_no}/reviews", as_=token).json()["reviewable_line_ids"]
        == []
    )
    api.post(f"/api/v1/orders/{order.order_no}/confirm-receipt", as_=token)
    assert (
        api.get(f"/api/v1/orders/{order.order_no}/reviews", as_=token).json()["reviewable_line_ids"]
        == order.line_ids
    )

    # two lines: say which
    r = review(api, order.order_no, token)
    assert r.status_code == 422
    r = review(api, order.order_no, token, line_id=order.line_ids[0], rating=4, text="包装完好")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["rating"] == 4 and body["text"] == "包装完好" and body["reply"] is None
    assert body["line_id"] == order.line_ids[0] and body["store_id"] is None
    assert body["consumer_name"] == "顾**"
    again = review(api, order.order_no, token, line_id=order.line_ids[0])
    assert again.status_code == 409 and again.json()["code"] == "already_reviewed"
    assert (
        review(api, order.order_no, token, line_id=order.line_ids[1], rating=2).status_code == 201
    )
    mine = api.get(f"/api/v1/orders/{order.order_no}/reviews", as_=token).json()
    assert [i["line_id"] for i in mine["items"]] == order.line_ids
    assert mine["reviewable_line_ids"] == []

    # ratings: each listing, the merchant, and the search document
    first = listing_row(db, order.listing_ids[0])
    assert (first.rating_sum, first.rating_count) == (4, 1)
    doc = search_doc(db, order.listing_ids[0])
    assert doc is not None and doc.rating == 4.0 and doc.rating_count == 1
    merchant = api.get(f"/api/v1/merchants/{world.a.id}/reviews").json()
    assert merchant["rating"] == 3.0 and merchant["rating_count"] == 2
    listing = api.get(f"/api/v1/listings/{order.listing_ids[1]}/reviews").json()
    assert listing["rating"] == 2.0 and [i["rating"] for i in listing["items"]] == [2]


def test_review_gating_and_input(api: Any, world: Any, db: Any) -> None:
    order = received(api, world)
    no = order.order_no
    # someone else's order looks like no order; staff are not its consumer
    for role in ("other_consumer", "manager", "operator"):
        assert review(api, no, world.tokens[role]).status_code == 404
    assert api.post(f"/api/v1/orders/{no}/reviews", json={"rating": 5}).status_code == 401
    assert review(api, "NOPE", world.tokens["consumer"]).status_code == 404
    for bad in (
        {"rating": 0},
        {"rating": 6},
        {"rating": 10**30},
        {"rating": "five"},
        {"text": "好" * 1001},
        {"text": "好\x00"},
        {"line_id": 10**9},
        {"line_id": 2**70},
    ):
        r = review(api, no, world.tokens["consumer"], **bad)
        assert r.status_code == 422, (bad, r.text)
    with db.transaction(readonly=True) as session:
        assert session.scalars(select(Review)).all() == []
    # one line: line_id may be omitted; empty text is fine
    r = review(api, no, world.tokens["consumer"], text="")
    assert r.status_code == 201, r.text


def test_merchant_replies_once(api: Any, world: Any, db: Any) -> None:
    order = received(api, world)
    review_id = review(api, order.order_no, world.tokens["consumer"], rating=3).json()["id"]
    url = f"/api/v1/merchants/{world.a.id}/reviews/{review_id}/reply"
    for role in ("clerk", "consumer", "other_manager"):
        assert api.post(url, json={"text": "谢谢"}, as_=world.tokens[role]).status_code == 403
    other = f"/api/v1/merchants/{world.b.id}/reviews/{review_id}/reply"
    assert (
        api.post(other, json={"text": "谢谢"}, as_=world.tokens["other_manager"]).status_code == 404
    )
    assert api.post(url, json={"text": ""}, as_=world.tokens["manager"]).status_code == 422
    assert api.post(url, json={"text": "x" * 501}, as_=world.tokens["manager"]).status_code == 422
    r = api.post(url, json={"text": "感谢您的评价，我们会改进"}, as_=world.tokens["manager"])
    assert r.status_code == 200, r.text
    assert r.json()["reply"] == "感谢您的评价，我们会改进" and r.json()["replied_at"] is not None
    again = api.post(url, json={"text": "再说一次"}, as_=world.tokens["owner"])
    assert again.status_code == 409 and again.json()["code"] == "already_replied"
    public = api.get(f"/api/v1/listings/{order.listing_ids[0]}/reviews").json()["items"]
    assert public[0]["reply"] == "感谢您的评价，我们会改进"
    replied = api.get(f"/api/v1/merchants/{world.a.id}/reviews?replied=true").json()["items"]
    assert [i["id"] for i in replied] == [review_id]
    assert api.get(f"/api/v1/merchants/{world.a.id}/reviews?replied=false").json()["items"] == []


def test_public_lists_paginate_and_hide_unpublished(api: Any, world: Any, db: Any) -> None:
    order = received(api, world, lines=1, quantity=1)
    listing_id = order.listing_ids[0]
    review(api, order.order_no, world.tokens["consumer"], rating=5)
    ids = []
    for _ in range(2):
        more = received(api, world)
        ids.append(review(api, more.order_no, world.tokens["consumer"], rating=4).json()["id"])
    page1 = api.get(f"/api/v1/merchants/{world.a.id}/reviews?limit=2").json()
    assert [i["id"] for i in page1["items"]] == list(reversed(ids))
    page2 = api.get(
        f"/api/v1/merchants/{world.a.id}/reviews?limit=2&cursor={page1['next_cursor']}"
    ).json()
    assert len(page2["items"]) == 1 and page2["next_cursor"] is None
    assert page1["rating"] == 4.3 and page1["rating_count"] == 3
    assert api.get(f"/api/v1/merchants/{world.a.id}/reviews?cursor=x").status_code == 422
    assert api.get(f"/api/v1/merchants/{world.a.id}/reviews?limit=1000").status_code == 422
    assert api.get(f"/api/v1/merchants/{world.b.id}/reviews").json()["items"] == []
    assert api.get(f"/api/v1/merchants/{world.pending_merchant_id}/reviews").status_code == 404
    assert (
        api.get(
            f"/api/v1/merchants/{world.a.id}/reviews?store_id={world.b.store_ids[0]}"
        ).status_code
        == 404
    )
    assert api.get("/api/v1/listings/999999/reviews").status_code == 404
    with db.transaction() as session:
        session.execute(
            update(Listing).where(Listing.id == listing_id).values(status="unpublished")
        )
    assert api.get(f"/api/v1/listings/{listing_id}/reviews").status_code == 404
    staff = api.get(f"/api/v1/listings/{listing_id}/reviews", as_=world.tokens["manager"])
    assert staff.status_code == 200 and len(staff.json()["items"]) == 1


def test_concurrent_reviews_of_one_line_one_wins(api: Any, world: Any, db: Any) -> None:
    order = received(api, world)
    results: list[str] = []
    barrier = threading.Barrier(6)

    def attempt() -> None:
        barrier.wait()
        try:
            with db.transaction() as session:
                service.create_review(session, world.consumer_id, order.order_no, rating=5)
            results.append("ok")
        except Conflict as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 1, results
    assert set(results) == {"ok", "already_reviewed"}
    row = listing_row(db, order.listing_ids[0])
    assert (row.rating_sum, row.rating_count) == (5, 1)
    merchant = api.get(f"/api/v1/merchants/{world.a.id}/reviews").json()
    assert merchant["rating_count"] == 1


# --- services: after a voucher of the line was redeemed ------------------------------------------


def _vouchers_installed(db: Any) -> bool:
    return "vouchers" in inspect(db.engine).get_table_names()


def paid_deal(api: Any, world: Any, db: Any) -> tuple[str, int, list[str]]:
    deal = make_deal(db, world.a.id, world.category_id, world.a.store_ids)
    token = world.tokens["consumer"]
    body = place(api, token, [{"listing_id": deal.listing_id, "quantity": 2}]).json()
    pay_sandbox(api, token, body["payment"]["payment_no"])
    no = body["orders"][0]["order_no"]
    vouchers = api.get(f"/api/v1/orders/{no}/vouchers", as_=token)
    assert vouchers.status_code == 200, vouchers.text
    return no, deal.listing_id, [v["code"] for v in vouchers.json()]


def test_service_review_after_a_redemption_credits_the_store(api: Any, world: Any, db: Any) -> None:
    if not _vouchers_installed(db):
        pytest.skip("vouchers table not migrated yet")
    token = world.tokens["consumer"]
    no, listing_id, codes = paid_deal(api, world, db)
    assert len(codes) == 2
    r = review(api, no, token)
    assert r.status_code == 409 and r.json()["code"] == "not_consumed"
    # the clerk redeems one at the store (the real redemption path)
    store_id = world.a.store_ids[0]
    r = api.post(
        f"/api/v1/merchants/{world.a.id}/redemptions",
        json={"code": codes[0], "store_id": store_id},
        as_=world.tokens["clerk"],
    )
    assert r.status_code == 200, r.text
    r = review(api, no, token, rating=4, text="服务很好")
    assert r.status_code == 201, r.text
    assert r.json()["store_id"] == store_id and r.json()["store_name"] == "甲火锅0号店"
    store = api.get(f"/api/v1/merchants/{world.a.id}/reviews?store_id={store_id}").json()
    assert store["rating"] == 4.0 and store["rating_count"] == 1
    other_store = api.get(
        f"/api/v1/merchants/{world.a.id}/reviews?store_id={world.a.store_ids[1]}"
    ).json()
    assert other_store["items"] == [] and other_store["rating_count"] == 0
    assert listing_row(db, listing_id).rating_count == 1


def test_service_review_with_a_voucher_redeemed_directly(api: Any, world: Any, db: Any) -> None:
    """The service path on its own: a voucher marked redeemed in the table is consumption."""
    if not _vouchers_installed(db):
        pytest.skip("vouchers table not migrated yet")
    from o2o.fulfilment.models import Voucher

    no, _listing_id, codes = paid_deal(api, world, db)
    with db.transaction() as session, pytest.raises(Conflict):
        service.create_review(session, world.consumer_id, no, rating=5)
    with db.transaction() as session:
        session.execute(
            update(Voucher)
            .where(Voucher.code == codes[1])
            .values(status="redeemed", redeemed_at=utcnow(), redeemed_store_id=world.a.store_ids[1])
        )
    with db.transaction() as session:
        created = service.create_review(session, world.consumer_id, no, rating=3)
        assert created.store_id == world.a.store_ids[1]


# --- demo ----------------------------------------------------------------------------------------


def test_demo_goods_orders_and_reviews_idempotent(db: Any) -> None:
    from o2o import demo
    from o2o.catalog import demo as catalog_demo
    from o2o.reviews import demo as reviews_demo
    from o2o.shipping import demo as shipping_demo
    from o2o.shipping.models import AfterSalesRequest, Shipment, TrackingEvent

    steps = [demo.load_accounts_and_merchants, catalog_demo.load_demo]
    steps += [shipping_demo.load_demo, reviews_demo.load_demo]
    for step in steps:
        with db.transaction() as session:
            step(session)
    with db.transaction(readonly=True) as session:
        statuses = sorted(session.scalars(select(Order.status).where(Order.kind == "goods")))
        counts = (
            len(session.scalars(select(Shipment.id)).all()),
            len(session.scalars(select(TrackingEvent.id)).all()),
            len(session.scalars(select(Review.id)).all()),
        )
        assert {"paid", "shipped", "completed"} <= set(statuses)
        assert session.scalars(select(AfterSalesRequest.status)).all() == ["requested"]
        assert counts[1] > counts[0] > 0 and counts[2] > 0
        assert session.scalars(select(Review.id).where(Review.reply.is_not(None))).first()
    for step in (shipping_demo.load_demo, reviews_demo.load_demo):
        with db.transaction() as session:
            assert step(session) == 0
    with db.transaction(readonly=True) as session:
        again = (
            len(session.scalars(select(Shipment.id)).all()),
            len(session.scalars(select(TrackingEvent.id)).all()),
            len(session.scalars(select(Review.id)).all()),
        )
        assert again == counts
        assert (
            sorted(session.scalars(select(Order.status).where(Order.kind == "goods"))) == statuses
        )
