"""One owner per state, with a history: only the orders domain writes ``Order.status`` and
every move leaves an ``order_history`` row (who, when, from, to, why), shown as a timeline on
the consumer's order page, the console's and the admin's; merchant review decisions are kept."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from o2o.merchants.models import MerchantReview
from o2o.orders.models import Order, OrderHistory
from o2o.payments import service as payments
from o2o.timeutil import utcnow
from tests.checkout_support import ADDRESS, goods_item, make_goods, place
from tests.shipping_support import paid_goods_order, sf_number
from tests.test_merchants import apply
from tests.voucher_support import a_deal, buy, deal_item, redeem
from tests.web.support import PageClient

SRC = Path(__file__).resolve().parent.parent / "src" / "o2o"


def history(db: Any, order_no: str) -> list[tuple[str, str, str, str, int | None, str]]:
    with db.transaction(readonly=True) as session:
        rows = session.execute(
            select(
                OrderHistory.action,
                OrderHistory.from_status,
                OrderHistory.to_status,
                OrderHistory.actor_kind,
                OrderHistory.actor_id,
                OrderHistory.reason,
            )
            .join(Order, Order.id == OrderHistory.order_id)
            .where(Order.order_no == order_no)
            .order_by(OrderHistory.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_a_goods_order_timeline_names_each_actor_and_shows_on_three_pages(
    api: Any, app: Any, world: Any, db: Any
) -> None:
    order = paid_goods_order(api, world)
    r = api.post(
        f"/api/v1/merchants/{world.a.id}/orders/{order.order_no}/shipments",
        json={"carrier": "SF", "tracking_no": sf_number()},
        as_=world.tokens["manager"],
    )
    assert r.status_code == 201, r.text
    r = api.post(f"/api/v1/orders/{order.order_no}/confirm-receipt", as_=world.tokens["consumer"])
    assert r.status_code == 200, r.text
    assert history(db, order.order_no) == [
        ("place", "", "pending_payment", "user", world.consumer_id, ""),
        ("pay", "pending_payment", "paid", "provider", None, ""),
        ("ship", "paid", "shipped", "staff", world.a.manager_id, ""),
        ("complete", "shipped", "completed", "user", world.consumer_id, ""),
    ]
    detail = api.get(f"/api/v1/orders/{order.order_no}", as_=world.tokens["consumer"]).json()
    assert [(t["action"], t["to_status"], t["actor_kind"]) for t in detail["timeline"]] == [
        ("place", "pending_payment", "user"),
        ("pay", "paid", "provider"),
        ("ship", "shipped", "staff"),
        ("complete", "completed", "user"),
    ]
    assert detail["timeline"][2]["label"] == "商家发货" and "actor_id" not in detail["timeline"][2]
    with PageClient(app) as pages:
        pages.sign_in(world.consumer_id)
        mine = pages.get(f"/orders/{order.order_no}").text
        assert 'data-testid="order-timeline"' in mine
        steps = re.findall(r'data-action="([a-z_]+)" data-actor="([a-z]+)"', mine)
        assert steps == [
            ("place", "user"),
            ("pay", "provider"),
            ("ship", "staff"),
            ("complete", "user"),
        ]
        assert "商家发货" in mine and "支付机构" in mine
        assert f"#{world.a.manager_id}" not in mine  # staff ids stay in the back office
        pages.sign_in(world.a.manager_id)
        console = pages.get(f"/console/m/{world.a.id}/orders/{order.order_no}").text
        assert 'data-testid="order-timeline"' in console and "订单完成" in console
        assert f"商家 #{world.a.manager_id}" in console


def test_cancellations_say_who_and_why_and_vouchers_complete_by_staff(
    api: Any, world: Any, db: Any, settings: Any
) -> None:
    token = world.tokens["consumer"]
    goods = make_goods(db, world.a.id, world.category_id, stock=10)
    mine = place(api, token, [goods_item(goods)], address=ADDRESS).json()
    assert (
        api.post(f"/api/v1/orders/{mine['orders'][0]['order_no']}/cancel", as_=token).status_code
        == 200
    )
    assert history(db, mine["orders"][0]["order_no"])[-1] == (
        "cancel",
        "pending_payment",
        "cancelled",
        "user",
        world.consumer_id,
        "consumer",
    )
    late = place(api, token, [goods_item(goods)], address=ADDRESS).json()
    payments.close_expired(db, settings, now=utcnow() + timedelta(days=1))
    assert history(db, late["orders"][0]["order_no"])[-1] == (
        "cancel",
        "pending_payment",
        "cancelled",
        "worker",
        None,
        "payment_timeout",
    )
    bought = buy(api, token, [deal_item(a_deal(world))])
    assert redeem(api, world, bought.codes[0]).status_code == 200
    assert history(db, bought.order_no)[-1] == (
        "complete",
        "paid",
        "completed",
        "staff",
        world.a.clerk_id,
        "",
    )


def test_merchant_review_decisions_are_kept(api: Any, app: Any, world: Any, db: Any) -> None:
    _uid, applicant = api.register()
    merchant_id = apply(api, applicant, category_id=world.category_id)["id"]
    op = world.tokens["operator"]
    base = f"/api/v1/admin/merchants/{merchant_id}"
    assert api.post(f"{base}/reject", json={"reason": "执照模糊"}, as_=op).status_code == 200
    fixed = api.patch(
        f"/api/v1/merchants/{merchant_id}", json={"license_no": "91440300MA5ABCDE2"}, as_=applicant
    )
    assert fixed.status_code == 200, fixed.text
    with PageClient(app) as pages:
        pages.sign_in(world.operator_id)
        waiting = pages.get("/admin/applications").text
        assert 'data-testid="review-history"' in waiting and "执照模糊" in waiting
    assert api.post(f"{base}/approve", as_=op).status_code == 200
    assert api.post(f"{base}/suspend", json={"reason": "投诉较多"}, as_=op).status_code == 200
    with db.transaction(readonly=True) as session:
        rows = session.execute(
            select(
                MerchantReview.action,
                MerchantReview.to_status,
                MerchantReview.actor_kind,
                MerchantReview.reason,
            )
            .where(MerchantReview.merchant_id == merchant_id)
            .order_by(MerchantReview.id)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("apply", "pending", "user", ""),
        ("reject", "rejected", "operator", "执照模糊"),
        ("resubmit", "pending", "user", ""),
        ("approve", "approved", "operator", ""),
        ("suspend", "suspended", "operator", "投诉较多"),
    ]


def test_only_the_orders_domain_writes_order_status() -> None:
    """Payments, shipping and fulfilment ask ``orders.set_status``; nobody else assigns it."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if path.parts[-2:] == ("orders", "service.py"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\border\.status\s*=[^=]", line):
                offenders.append(f"{path.relative_to(SRC)}:{n}: {line.strip()}")
    assert not offenders, offenders
