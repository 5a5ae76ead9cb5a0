"""Orders: the consumer's list and detail, the merchant's list (clerks: their stores), cancel,
and the written transition table (law 6). Both databases."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from sqlalchemy import select

from o2o import events, wiring
from o2o.errors import InvalidTransition
from o2o.orders import service as orders
from o2o.orders.models import ORDER_STATUS, Order
from o2o.payments.models import Payment
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


def test_consumer_lists_own_orders_with_filters_and_pages(api: Any, world: Any, db: Any) -> None:
    goods = make_goods(db, world.a.id, world.category_id, stock=50)
    deal = make_deal(db, world.b.id, world.category_id, world.b.store_ids)
    token = world.tokens["consumer"]
    made = [checkout_goods(api, token, goods) for _ in range(3)]
    service = place(api, token, [{"listing_id": deal.listing_id}]).json()
    pay_sandbox(api, token, made[0]["payment"]["payment_no"])
    checkout_goods(api, world.tokens["other_consumer"], goods)  # not theirs

    all_mine = api.get("/api/v1/orders", as_=token).json()
    assert [o["order_no"] for o in all_mine["items"]] == [
        service["orders"][0]["order_no"],
        *[m["orders"][0]["order_no"] for m in reversed(made)],
    ]
    assert all_mine["next_cursor"] is None
    paid = api.get("/api/v1/orders?status=paid", as_=token).json()["items"]
    assert [o["order_no"] for o in paid] == [made[0]["orders"][0]["order_no"]]
    assert paid[0]["status_label"] == "已支付"
    services = api.get("/api/v1/orders?kind=service", as_=token).json()["items"]
    assert [o["kind"] for o in services] == ["service"]

    page1 = api.get("/api/v1/orders?limit=2", as_=token).json()
    page2 = api.get(f"/api/v1/orders?limit=2&cursor={page1['next_cursor']}", as_=token).json()
    assert len(page1["items"]) == 2 and len(page2["items"]) == 2
    assert not {o["order_no"] for o in page1["items"]} & {o["order_no"] for o in page2["items"]}
    assert api.get("/api/v1/orders?status=bogus", as_=token).status_code == 422
    assert api.get("/api/v1/orders?cursor=abc", as_=token).status_code == 422


def test_order_detail_is_owner_only(api: Any, world: Any, db: Any) -> None:
    goods = make_goods(db, world.a.id, world.category_id)
    body = checkout_goods(api, world.tokens["consumer"], goods)
    no = body["orders"][0]["order_no"]
    mine = api.get(f"/api/v1/orders/{no}", as_=world.tokens["consumer"])
    assert mine.status_code == 200
    assert mine.json()["payment_no"] == body["payment"]["payment_no"]
    assert mine.json()["checkout_id"] == body["checkout_id"]
    assert mine.json()["merchant_name"] == "甲火锅"
    for role in ("other_consumer", "owner", "operator"):
        assert api.get(f"/api/v1/orders/{no}", as_=world.tokens[role]).status_code == 404
    assert (
        api.get("/api/v1/orders/00000000000000000000", as_=world.tokens["consumer"]).status_code
        == 404
    )
    assert api.get(f"/api/v1/orders/{no}").status_code == 401


def test_merchant_orders_managers_see_all_clerks_their_stores(
    api: Any, world: Any, db: Any
) -> None:
    token = world.tokens["consumer"]
    goods = make_goods(db, world.a.id, world.category_id)
    at_store0 = make_deal(
        db, world.a.id, world.category_id, [world.a.store_ids[0]], title="一号店套餐"
    )
    at_store1 = make_deal(
        db, world.a.id, world.category_id, [world.a.store_ids[1]], title="二号店套餐"
    )
    slot1 = make_slot_deal(db, world.a.id, world.category_id, world.a.store_ids[1])
    b_deal = make_deal(db, world.b.id, world.category_id, world.b.store_ids)
    g = checkout_goods(api, token, goods)["orders"][0]["order_no"]
    s0 = place(api, token, [{"listing_id": at_store0.listing_id}]).json()["orders"][0]["order_no"]
    s1 = place(api, token, [{"listing_id": at_store1.listing_id}]).json()["orders"][0]["order_no"]
    sl = place(api, token, [{"listing_id": slot1.listing_id, "slot_id": slot1.slot_id}]).json()
    sl = sl["orders"][0]["order_no"]
    place(api, token, [{"listing_id": b_deal.listing_id}])

    def nos(role: str, query: str = "") -> set[str]:
        r = api.get(f"/api/v1/merchants/{world.a.id}/orders{query}", as_=world.tokens[role])
        assert r.status_code == 200, r.text
        return {o["order_no"] for o in r.json()["items"]}

    assert nos("owner") == nos("manager") == {g, s0, s1, sl}
    assert nos("clerk") == {s0}  # the clerk works at store_ids[0] only; goods are back office
    assert nos("manager", f"?store_id={world.a.store_ids[1]}") == {s1, sl}
    assert nos("manager", "?kind=goods") == {g}
    assert nos("manager", "?status=paid") == set()
    assert nos("clerk", f"?store_id={world.a.store_ids[0]}") == {s0}
    r = api.get(
        f"/api/v1/merchants/{world.a.id}/orders?store_id={world.a.store_ids[1]}",
        as_=world.tokens["clerk"],
    )
    assert r.status_code == 403
    for role in ("consumer", "other_manager"):
        r = api.get(f"/api/v1/merchants/{world.a.id}/orders", as_=world.tokens[role])
        assert r.status_code == 403
    staff_view = api.get(
        f"/api/v1/merchants/{world.a.id}/orders?kind=goods", as_=world.tokens["owner"]
    )
    assert staff_view.json()["items"][0]["user_id"] == world.consumer_id

    # One order, by the same rule (API and the public service function pages use).
    def one(role: str, order_no: str, merchant: Any = world.a) -> int:
        r = api.get(f"/api/v1/merchants/{merchant.id}/orders/{order_no}", as_=world.tokens[role])
        if r.status_code == 200:
            assert r.json()["order_no"] == order_no and r.json()["user_id"] == world.consumer_id
        return r.status_code

    assert [one("manager", no) for no in (g, s0, s1, sl)] == [200] * 4
    assert [one("clerk", no) for no in (g, s0, s1, sl)] == [404, 200, 404, 404]
    assert one("owner", "00000000000000000000") == 404
    assert one("other_manager", s0) == 403
    assert one("other_manager", s0, world.b) == 404  # another merchant's order looks absent
    assert one("consumer", s0) == 403


def test_cancel_releases_holds_and_cancels_every_order_of_the_payment(
    api: Any, world: Any, db: Any
) -> None:
    goods = make_goods(db, world.a.id, world.category_id, stock=5)
    deal = make_deal(db, world.b.id, world.category_id, world.b.store_ids, stock=4)
    token = world.tokens["consumer"]
    body = place(
        api,
        token,
        [goods_item(goods, 2), {"listing_id": deal.listing_id, "quantity": 3}],
        address=ADDRESS,
    ).json()
    assert levels(db, goods.item_id).held == 2 and levels(db, deal.item_id).held == 3
    first = body["orders"][0]["order_no"]
    r = api.post(f"/api/v1/orders/{first}/cancel", as_=token)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["cancel_reason"] == "consumer"
    for o in body["orders"]:
        assert api.get(f"/api/v1/orders/{o['order_no']}", as_=token).json()["status"] == "cancelled"
    for item in (goods.item_id, deal.item_id):
        lv = assert_units_reconcile(db, item)
        assert lv.held == 0 and lv.sold == 0
    payment = api.get(f"/api/v1/payments/{body['payment']['payment_no']}", as_=token).json()
    assert payment["status"] == "closed"
    # cancelling again, or paying a closed payment: 409 with a clear message
    again = api.post(f"/api/v1/orders/{first}/cancel", as_=token)
    assert again.status_code == 409 and again.json()["code"] == "invalid_transition"
    assert "已取消" in again.json()["detail"]
    pay = api.post(
        f"/api/v1/payments/{body['payment']['payment_no']}/pay",
        json={"provider": "sandbox"},
        as_=token,
    )
    assert pay.status_code == 409


def test_paid_orders_cannot_be_cancelled_and_others_cannot_cancel(
    api: Any, world: Any, db: Any
) -> None:
    goods = make_goods(db, world.a.id, world.category_id)
    token = world.tokens["consumer"]
    body = checkout_goods(api, token, goods)
    no = body["orders"][0]["order_no"]
    assert (
        api.post(f"/api/v1/orders/{no}/cancel", as_=world.tokens["other_consumer"]).status_code
        == 404
    )
    assert api.post(f"/api/v1/orders/{no}/cancel", as_=world.tokens["owner"]).status_code == 404
    pay_sandbox(api, token, body["payment"]["payment_no"])
    r = api.post(f"/api/v1/orders/{no}/cancel", as_=token)
    assert r.status_code == 409 and r.json()["code"] == "invalid_transition"
    assert levels(db, goods.item_id).sold == 1


def test_order_transition_table_refuses_everything_else(world: Any, db: Any, api: Any) -> None:
    goods = make_goods(db, world.a.id, world.category_id)
    no = checkout_goods(api, world.tokens["consumer"], goods)["orders"][0]["order_no"]
    with db.transaction() as session:
        order = session.scalar(select(Order).where(Order.order_no == no))
        for action in ("ship", "complete", "revive", "request_refund", "all_refunded"):
            with pytest.raises(InvalidTransition):
                orders.set_status(session, order, action, by=events.BY_WORKER)
        assert order.status == "pending_payment"
    # every status in the table is reachable only through its listed actions
    assert ORDER_STATUS.next_state("paid", "ship") == "shipped"
    assert ORDER_STATUS.next_state("shipped", "complete") == "completed"
    assert not ORDER_STATUS.can("shipped", "request_refund")
    assert not ORDER_STATUS.can("cancelled", "pay")
    assert not ORDER_STATUS.can("refunded", "all_refunded")


def test_paid_hook_is_called_once_with_the_lines(api: Any, world: Any, db: Any) -> None:
    goods = make_goods(db, world.a.id, world.category_id)
    calls: list[tuple[str, int]] = []

    def hook(session: Any, event: events.OrderPaid) -> None:
        lines = orders.lines_by_order(session, [event.order_id])[event.order_id]
        calls.append((event.order_no, sum(line.quantity for line in lines)))

    with wiring.extra_in_transaction(events.OrderPaid, hook):
        body = checkout_goods(api, world.tokens["consumer"], goods, quantity=2)
        no = body["payment"]["payment_no"]
        pay_sandbox(api, world.tokens["consumer"], no)
        api.post(f"/sandbox/cashier/{no}", json={"result": "success"}, as_=world.tokens["consumer"])
    assert calls == [(body["orders"][0]["order_no"], 2)]


def test_order_numbers_are_unique_and_not_sequential(api: Any, world: Any, db: Any) -> None:
    goods = make_goods(db, world.a.id, world.category_id, stock=100)
    nos = [
        checkout_goods(api, world.tokens["consumer"], goods)["orders"][0]["order_no"]
        for _ in range(20)
    ]
    assert len(set(nos)) == 20
    assert len({n[:8] for n in nos}) == 1  # the China date
    tails = sorted(int(n[8:]) for n in nos)
    gaps = {b - a for a, b in itertools.pairwise(tails)}
    assert min(gaps) > 1000  # random, not a counter
    with db.transaction(readonly=True) as session:
        payment_nos = list(session.scalars(select(Payment.payment_no)))
    assert all(p.startswith("P") and len(p) == 21 for p in payment_nos)
