"""POST /api/v1/checkout: validation first, holds last, one order per merchant and kind, one
payment; idempotency; 409 naming the item with nothing held. Both databases."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from o2o.catalog.models import Listing, Sku, TimeSlot
from o2o.channels import service as channels
from o2o.channels.models import Channel, Visit
from o2o.merchants.models import Merchant
from o2o.orders.models import Checkout, Order, OrderLine
from o2o.payments.models import Payment
from o2o.timeutil import utcnow
from tests.checkout_support import (
    ADDRESS,
    assert_units_reconcile,
    checkout_goods,
    goods_item,
    levels,
    make_deal,
    make_goods,
    make_slot_deal,
    pay_sandbox,
    place,
)


def make_channel(db: Any, code: str, *, active: bool = True) -> None:
    with db.transaction() as session:
        channels.create_channel(session, code=code, name=f"渠道{code}", kind="other")
        if not active:
            session.scalar(select(Channel).where(Channel.code == code)).is_active = False


def order_channels(db: Any, checkout: dict[str, Any]) -> set[str]:
    nos = [o["order_no"] for o in checkout["orders"]]
    with db.transaction(readonly=True) as session:
        found = set(session.scalars(select(Order.channel).where(Order.order_no.in_(nos))))
        found |= set(
            session.scalars(
                select(Checkout.channel).where(Checkout.checkout_no == checkout["checkout_id"])
            )
        )
    return found


def count(db: Any, model: Any) -> int:
    with db.transaction(readonly=True) as session:
        return session.scalar(select(func.count()).select_from(model))


def test_end_to_end_checkout_pay_with_sandbox(api: Any, world: Any, db: Any) -> None:
    goods = make_goods(
        db, world.a.id, world.category_id, price_fen=2590, stock=5, shipping_fee_fen=800
    )
    token = world.tokens["consumer"]
    body = checkout_goods(api, token, goods, quantity=2)

    assert body["checkout_id"].startswith("C")
    [order] = body["orders"]
    assert order["merchant_id"] == world.a.id
    assert order["kind"] == "goods"
    assert order["status"] == "pending_payment"
    assert (order["items_fen"], order["shipping_fee_fen"], order["payable_fen"]) == (
        5180,
        800,
        5980,
    )
    payment = body["payment"]
    assert payment["amount_fen"] == 5980
    assert payment["status"] == "created"
    assert "+00:00" in payment["expires_at"] or payment["expires_at"].endswith("Z")
    assert len(order["order_no"]) == 20 and order["order_no"].isdigit()
    lv = levels(db, goods.item_id)
    assert (lv.available, lv.held, lv.sold) == (3, 2, 0)

    started = api.post(
        f"/api/v1/payments/{payment['payment_no']}/pay", json={"provider": "sandbox"}, as_=token
    )
    assert started.status_code == 200, started.text
    cashier_url = started.json()["cashier_url"]
    page = api.get(cashier_url, as_=token)  # the payer's own cashier
    assert page.status_code == 200
    assert "¥59.80" in page.text and "支付成功" in page.text and "支付失败" in page.text

    done = api.post(cashier_url, json={"result": "success"}, as_=token)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "succeeded"

    detail = api.get(f"/api/v1/orders/{order['order_no']}", as_=token).json()
    assert detail["status"] == "paid"
    assert detail["paid_at"] is not None
    assert detail["lines"][0]["quantity"] == 2
    assert detail["lines"][0]["unit_price_fen"] == 2590
    assert detail["shipping_address"]["city"] == "深圳市"
    pay = api.get(f"/api/v1/payments/{payment['payment_no']}", as_=token).json()
    assert pay["status"] == "succeeded" and pay["order_nos"] == [order["order_no"]]
    lv = assert_units_reconcile(db, goods.item_id)
    assert (lv.available, lv.held, lv.sold) == (3, 0, 2)
    with db.transaction(readonly=True) as session:
        assert (
            session.scalar(select(Listing.sales_count).where(Listing.id == goods.listing_id)) == 2
        )


def test_cashier_form_posts_back_to_the_page(api: Any, world: Any, db: Any) -> None:
    goods = make_goods(db, world.a.id, world.category_id)
    token = world.tokens["consumer"]
    body = checkout_goods(api, token, goods)
    no = body["payment"]["payment_no"]
    api.post(f"/api/v1/payments/{no}/pay", json={"provider": "sandbox"}, as_=token)
    r = api.post(
        f"/sandbox/cashier/{no}", data={"result": "success"}, follow_redirects=False, as_=token
    )
    assert r.status_code == 303
    page = api.get(r.headers["location"], as_=token)
    assert "已支付" in page.text and "支付成功</button>" not in page.text
    # After paying, the way back to the consumer's order page.
    order_no = body["orders"][0]["order_no"]
    assert f'href="/orders/{order_no}">返回订单</a>' in page.text
    assert api.get(f"/orders/{order_no}", follow_redirects=False).status_code != 404


def test_multi_merchant_checkout_makes_one_order_per_merchant_and_kind(
    api: Any, world: Any, db: Any
) -> None:
    goods = make_goods(
        db, world.a.id, world.category_id, price_fen=1000, stock=3, shipping_fee_fen=500
    )
    goods2 = make_goods(
        db, world.a.id, world.category_id, price_fen=300, stock=3, shipping_fee_fen=200
    )
    deal_a = make_deal(db, world.a.id, world.category_id, world.a.store_ids, price_fen=4000)
    deal_b = make_deal(
        db, world.b.id, world.category_id, world.b.store_ids, price_fen=6000, stock=2
    )
    make_channel(db, "wechat_entry")
    token = world.tokens["consumer"]
    r = place(
        api,
        token,
        [
            goods_item(goods, 2),
            {"listing_id": deal_a.listing_id, "quantity": 1},
            {"listing_id": deal_b.listing_id, "quantity": 2},
            goods_item(goods2, 1),
        ],
        address=ADDRESS,
        channel="wechat_entry",
        note="请尽快发货",
    )
    assert r.status_code == 201, r.text
    body = r.json()
    orders = {(o["merchant_id"], o["kind"]): o for o in body["orders"]}
    assert set(orders) == {(world.a.id, "goods"), (world.a.id, "service"), (world.b.id, "service")}
    # one goods order with both goods lines; the highest shipping fee of the order
    assert orders[(world.a.id, "goods")]["items_fen"] == 2300
    assert orders[(world.a.id, "goods")]["shipping_fee_fen"] == 500
    assert orders[(world.a.id, "service")]["payable_fen"] == 4000
    assert orders[(world.b.id, "service")]["payable_fen"] == 12000
    assert body["payment"]["amount_fen"] == 2800 + 4000 + 12000
    assert count(db, Payment) == 1
    with db.transaction(readonly=True) as session:
        rows = session.execute(select(Order.kind, Order.shipping_address, Order.channel)).all()
        assert all(ch == "wechat_entry" for _, _, ch in rows)
        assert all((addr is not None) == (kind == "goods") for kind, addr, _ in rows)
        bps = set(session.scalars(select(OrderLine.commission_bp)))
    assert bps == {600}  # the category's default
    assert levels(db, deal_b.item_id).held == 2

    # all three orders are paid by the one payment
    pay_sandbox(api, token, body["payment"]["payment_no"])
    listed = api.get("/api/v1/orders", as_=token).json()["items"]
    assert sorted(o["status"] for o in listed) == ["paid", "paid", "paid"]


def test_commission_snapshot_uses_the_merchant_override(api: Any, world: Any, db: Any) -> None:
    goods = make_goods(db, world.a.id, world.category_id)
    with db.transaction() as session:
        session.get(Merchant, world.a.id).commission_bp = 250
    body = checkout_goods(api, world.tokens["consumer"], goods)
    with db.transaction() as session:
        line = session.scalar(select(OrderLine))
        assert line.commission_bp == 250
        session.get(Merchant, world.a.id).commission_bp = 900  # later changes don't move it
    detail = api.get(f"/api/v1/merchants/{world.a.id}/orders", as_=world.tokens["owner"]).json()[
        "items"
    ][0]
    assert detail["order_no"] == body["orders"][0]["order_no"]
    assert detail["lines"][0]["commission_bp"] == 250


def test_slot_service_holds_slot_capacity_and_deal_stock(api: Any, world: Any, db: Any) -> None:
    slot = make_slot_deal(
        db, world.a.id, world.category_id, world.a.store_ids[0], capacity=3, stock=10
    )
    token = world.tokens["consumer"]
    item = {"listing_id": slot.listing_id, "slot_id": slot.slot_id, "quantity": 2}
    r = place(api, token, [item])
    assert r.status_code == 201, r.text
    assert levels(db, slot.slot_item_id).held == 2
    assert levels(db, slot.deal_item_id).held == 2
    again = place(api, token, [item])
    assert again.status_code == 409
    assert again.json()["code"] == "out_of_stock"
    assert "影厅场次" in again.json()["detail"]
    # nothing held by the refused checkout, including the deal stock it could have had
    assert levels(db, slot.slot_item_id).held == 2
    assert levels(db, slot.deal_item_id).held == 2
    pay_sandbox(api, token, r.json()["payment"]["payment_no"])
    assert levels(db, slot.slot_item_id).sold == 2
    assert levels(db, slot.deal_item_id).sold == 2


def test_out_of_stock_names_the_item_and_holds_nothing(api: Any, world: Any, db: Any) -> None:
    plenty = make_goods(db, world.a.id, world.category_id, stock=10, title="充足商品")
    scarce = make_goods(db, world.a.id, world.category_id, stock=1, title="紧俏商品")
    deal = make_deal(db, world.b.id, world.category_id, world.b.store_ids, stock=5)
    r = place(
        api,
        world.tokens["consumer"],
        [
            goods_item(plenty, 3),
            {"listing_id": deal.listing_id, "quantity": 2},
            goods_item(scarce, 2),
        ],
        address=ADDRESS,
    )
    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["code"] == "out_of_stock"
    assert "紧俏商品" in problem["detail"]
    assert problem["listing_id"] == scarce.listing_id and problem["sku_id"] == scarce.sku_id
    assert r.headers["content-type"].startswith("application/problem+json")
    for item in (plenty.item_id, scarce.item_id, deal.item_id):
        lv = assert_units_reconcile(db, item)
        assert lv.held == 0
    assert count(db, Order) == 0 and count(db, Payment) == 0


def test_unlimited_deal_needs_no_hold(api: Any, world: Any, db: Any) -> None:
    deal = make_deal(db, world.a.id, world.category_id, world.a.store_ids)
    r = place(api, world.tokens["consumer"], [{"listing_id": deal.listing_id, "quantity": 99}])
    assert r.status_code == 201, r.text
    with db.transaction(readonly=True) as session:
        line = session.scalar(select(OrderLine))
        assert line.hold_id is None and line.extra_hold_id is None


@pytest.mark.parametrize(
    ("change", "code", "status"),
    [
        ("unpublished", "listing_unavailable", 409),
        ("merchant_suspended", "listing_unavailable", 409),
        ("sku_inactive", "sku_inactive", 409),
        ("missing_listing", "listing_not_found", 404),
    ],
)
def test_listing_must_be_on_sale(
    api: Any, world: Any, db: Any, change: str, code: str, status: int
) -> None:
    goods = make_goods(db, world.a.id, world.category_id)
    with db.transaction() as session:
        if change == "unpublished":
            session.get(Listing, goods.listing_id).status = "unpublished"
        elif change == "merchant_suspended":
            session.get(Merchant, world.a.id).status = "suspended"
        elif change == "sku_inactive":
            session.get(Sku, goods.sku_id).is_active = False
    item = goods_item(goods)
    if change == "missing_listing":
        item["listing_id"] = 999_999
    r = place(api, world.tokens["consumer"], [item], address=ADDRESS)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    assert levels(db, goods.item_id).held == 0


def test_sku_and_slot_must_belong_to_the_listing(api: Any, world: Any, db: Any) -> None:
    goods = make_goods(db, world.a.id, world.category_id)
    other = make_goods(db, world.b.id, world.category_id)
    slot = make_slot_deal(db, world.a.id, world.category_id, world.a.store_ids[0])
    other_slot = make_slot_deal(db, world.a.id, world.category_id, world.a.store_ids[0])
    deal = make_deal(db, world.a.id, world.category_id, world.a.store_ids)
    token = world.tokens["consumer"]
    cases = [
        ({"listing_id": goods.listing_id, "sku_id": other.sku_id}, ADDRESS),
        ({"listing_id": goods.listing_id}, ADDRESS),  # goods need a SKU
        ({"listing_id": slot.listing_id, "slot_id": other_slot.slot_id}, None),
        ({"listing_id": slot.listing_id}, None),  # a slot deal needs a slot
        ({"listing_id": deal.listing_id, "slot_id": slot.slot_id}, None),
        ({"listing_id": deal.listing_id, "sku_id": goods.sku_id}, None),
    ]
    for item, address in cases:
        r = place(api, token, [item], address=address)
        assert r.status_code in (404, 409, 422), (item, r.text)
    assert count(db, Order) == 0


def test_closed_or_started_slots_cannot_be_bought(api: Any, world: Any, db: Any) -> None:
    slot = make_slot_deal(db, world.a.id, world.category_id, world.a.store_ids[0])
    token = world.tokens["consumer"]
    item = {"listing_id": slot.listing_id, "slot_id": slot.slot_id}
    with db.transaction() as session:
        session.get(TimeSlot, slot.slot_id).is_open = False
    assert place(api, token, [item]).json()["code"] == "slot_closed"
    with db.transaction() as session:
        ts = session.get(TimeSlot, slot.slot_id)
        ts.is_open = True
        ts.starts_at = ts.starts_at - timedelta(days=2)
        ts.ends_at = ts.starts_at + timedelta(hours=1)
    assert place(api, token, [item]).json()["code"] == "slot_started"


def test_address_required_iff_goods(api: Any, world: Any, db: Any) -> None:
    goods = make_goods(db, world.a.id, world.category_id)
    deal = make_deal(db, world.a.id, world.category_id, world.a.store_ids)
    token = world.tokens["consumer"]
    r = place(api, token, [goods_item(goods)])
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "shipping_address"
    r = place(api, token, [{"listing_id": deal.listing_id}], address=ADDRESS)
    assert r.status_code == 422
    bad = {**ADDRESS, "phone": "123"}
    assert place(api, token, [goods_item(goods)], address=bad).status_code == 422
    assert count(db, Order) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"items": []},
        {"items": [{"listing_id": 1, "quantity": 0}]},
        {"items": [{"listing_id": 1, "quantity": 100}]},
        {"items": [{"listing_id": 1, "quantity": 10**30}]},
        {"items": [{"listing_id": 10**30}]},
        {"items": [{"listing_id": -1}]},
        {"items": [{"listing_id": 1}] * 51},
        {"items": [{"listing_id": 1}], "channel": "bad code!"},
        {"items": [{"listing_id": 1}], "note": "x" * 201},
        {"items": [{"listing_id": 1, "sku_id": "abc"}]},
        {"items": "nope"},
    ],
)
def test_bad_bodies_are_422(api: Any, world: Any, body: dict[str, Any]) -> None:
    r = api.post("/api/v1/checkout", json=body, as_=world.tokens["consumer"])
    assert r.status_code == 422, r.text


def test_merged_duplicate_lines_are_bounded(api: Any, world: Any, db: Any) -> None:
    goods = make_goods(db, world.a.id, world.category_id, stock=500)
    r = place(
        api,
        world.tokens["consumer"],
        [goods_item(goods, 60), goods_item(goods, 60)],
        address=ADDRESS,
    )
    assert r.status_code == 422
    r = place(
        api, world.tokens["consumer"], [goods_item(goods, 2), goods_item(goods, 3)], address=ADDRESS
    )
    assert r.status_code == 201
    with db.transaction(readonly=True) as session:
        assert session.scalars(select(OrderLine.quantity)).all() == [5]


def test_per_user_limit_counts_non_cancelled_orders(api: Any, world: Any, db: Any) -> None:
    deal = make_deal(db, world.a.id, world.category_id, world.a.store_ids, per_user_limit=2)
    token = world.tokens["consumer"]
    item = {"listing_id": deal.listing_id, "quantity": 2}
    first = place(api, token, [item])
    assert first.status_code == 201
    again = place(api, token, [{"listing_id": deal.listing_id, "quantity": 1}])
    assert again.status_code == 422 and again.json()["code"] == "per_user_limit"
    # another consumer has their own allowance
    assert place(api, world.tokens["other_consumer"], [item]).status_code == 201
    # cancelling gives the allowance back
    order_no = first.json()["orders"][0]["order_no"]
    assert api.post(f"/api/v1/orders/{order_no}/cancel", as_=token).status_code == 200
    assert place(api, token, [item]).status_code == 201


def test_per_user_limit_holds_under_concurrency(app: Any, world: Any, db: Any) -> None:
    from tests.support import ApiClient

    deal = make_deal(db, world.a.id, world.category_id, world.a.store_ids, per_user_limit=1)
    token = world.tokens["consumer"]
    results: list[int] = []

    def buy() -> None:
        with ApiClient(app) as client:
            results.append(place(client, token, [{"listing_id": deal.listing_id}]).status_code)

    threads = [threading.Thread(target=buy) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201] + [422] * 5


def test_idempotency_key_same_body_same_result(api: Any, world: Any, db: Any) -> None:
    goods = make_goods(db, world.a.id, world.category_id, stock=5)
    token = world.tokens["consumer"]
    first = place(api, token, [goods_item(goods)], address=ADDRESS, key="k-1")
    again = place(api, token, [goods_item(goods)], address=ADDRESS, key="k-1")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert count(db, Order) == 1 and levels(db, goods.item_id).held == 1
    other = place(api, token, [goods_item(goods, 2)], address=ADDRESS, key="k-1")
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    # keys are per consumer: another consumer's same key is their own checkout
    theirs = place(
        api, world.tokens["other_consumer"], [goods_item(goods)], address=ADDRESS, key="k-1"
    )
    assert theirs.status_code == 201 and theirs.json() != first.json()
    assert count(db, Order) == 2


def test_idempotency_key_concurrent_duplicates_create_one_checkout(
    app: Any, world: Any, db: Any
) -> None:
    from tests.support import ApiClient

    goods = make_goods(db, world.a.id, world.category_id, stock=50)
    token = world.tokens["consumer"]
    bodies: list[Any] = []

    def buy() -> None:
        with ApiClient(app) as client:
            r = place(client, token, [goods_item(goods)], address=ADDRESS, key="same-key")
            bodies.append((r.status_code, r.json()))

    threads = [threading.Thread(target=buy) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [b for s, b in bodies if s == 201]
    assert ok and all(b == ok[0] for b in ok)
    assert all(s in (201, 409) for s, _ in bodies)
    assert count(db, Order) == 1 and levels(db, goods.item_id).held == 1


def test_anonymous_cannot_checkout(api: Any, world: Any, db: Any) -> None:
    goods = make_goods(db, world.a.id, world.category_id)
    r = api.post(
        "/api/v1/checkout", json={"items": [goods_item(goods)], "shipping_address": ADDRESS}
    )
    assert r.status_code == 401


# --- channel attribution (last touch) ------------------------------------------------------------


def test_a_visit_through_a_channel_attributes_the_later_checkout(
    api: Any, world: Any, db: Any
) -> None:
    """An anonymous visit with ?ch= sets the visitor cookie; the checkout that follows (same
    browser, signed in) is attributed to that channel without any body field."""
    make_channel(db, "metro-poster")
    make_channel(db, "search-ad")
    goods = make_goods(db, world.a.id, world.category_id, stock=10)
    token = world.tokens["consumer"]
    landing = api.get("/api/v1/search?q=x&ch=METRO-POSTER")
    assert "o2o_vid" in api.cookies
    assert landing.status_code < 500
    assert order_channels(db, checkout_goods(api, token, goods)) == {"metro-poster"}

    # A later touch (X-Channel header) wins: last touch.
    api.get("/api/v1/search?q=y", headers={"X-Channel": "search-ad"})
    assert order_channels(db, checkout_goods(api, token, goods)) == {"search-ad"}

    # An explicit, known channel in the body wins over the touches.
    make_channel(db, "wechat-home")
    body = place(api, token, [goods_item(goods)], address=ADDRESS, channel="wechat-home")
    assert order_channels(db, body.json()) == {"wechat-home"}

    # An unknown (or inactive) explicit code is ignored: the last touch still counts.
    make_channel(db, "paused", active=False)
    for code in ("no-such-code", "paused"):
        body = place(api, token, [goods_item(goods)], address=ADDRESS, channel=code)
        assert body.status_code == 201, body.text
        assert order_channels(db, body.json()) == {"search-ad"}


def test_visitor_header_and_unknown_channels(api: Any, world: Any, db: Any) -> None:
    make_channel(db, "partner-a")
    goods = make_goods(db, world.a.id, world.category_id, stock=10)
    token = world.tokens["consumer"]
    # No visit at all, an unknown explicit code: no channel.
    body = place(api, token, [goods_item(goods)], address=ADDRESS, channel="nope")
    assert body.status_code == 201 and order_channels(db, body.json()) == {""}
    # An app that sends X-Visitor-Id instead of the cookie.
    headers = {"X-Visitor-Id": "app-visitor-0001"}
    api.get("/api/v1/search?q=x&ch=partner-a", headers=headers)
    api.cookies.clear()
    r = api.post(
        "/api/v1/checkout",
        json={"items": [goods_item(goods)], "shipping_address": ADDRESS},
        headers={**headers, "Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 201, r.text
    assert order_channels(db, r.json()) == {"partner-a"}
    # The checkout request itself may carry the channel.
    r = api.post(
        "/api/v1/checkout?ch=partner-a",
        json={"items": [goods_item(goods)], "shipping_address": ADDRESS},
        headers={
            "X-Visitor-Id": "other-visitor-01",
            "Authorization": f"Bearer {world.tokens['other_consumer']}",
        },
    )
    assert r.status_code == 201, r.text
    assert order_channels(db, r.json()) == {"partner-a"}


def test_a_visit_outside_the_window_attributes_nothing(api: Any, world: Any, db: Any) -> None:
    make_channel(db, "old-poster")
    goods = make_goods(db, world.a.id, world.category_id, stock=10)
    token = world.tokens["consumer"]
    window = channels.channel_settings().attribution_window_days
    with db.transaction() as session:
        channel_id = session.scalar(select(Channel.id).where(Channel.code == "old-poster"))
        session.add(
            Visit(
                channel_id=channel_id,
                visitor_id="stale-visitor-01",
                user_id=world.consumer_id,
                path="/",
                created_at=utcnow() - timedelta(days=window, minutes=5),
            )
        )
    api.cookies.set("o2o_vid", "stale-visitor-01")
    assert order_channels(db, checkout_goods(api, token, goods)) == {""}
    # Inside the window, the same visit would count.
    with db.transaction() as session:
        session.execute(
            update(Visit)
            .where(Visit.visitor_id == "stale-visitor-01")
            .values(created_at=utcnow() - timedelta(days=window) + timedelta(minutes=5))
        )
    assert order_channels(db, checkout_goods(api, token, goods)) == {"old-poster"}
