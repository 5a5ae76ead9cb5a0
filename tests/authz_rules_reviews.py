"""Authorization rules for reviews (loaded by tests/test_authorization.py). A received order
(and a review of it) is written for every role (each role gets a fresh world)."""

from __future__ import annotations

from typing import Any

from o2o.reviews import service
from tests.shipping_support import orm_goods_order


def _received(world: Any) -> Any:
    if "_authz_received" not in world.__dict__:
        world.__dict__["_authz_received"] = orm_goods_order(world, status="completed", lines=1)
    return world.__dict__["_authz_received"]


def _review_id(world: Any) -> int:
    order = _received(world)
    with world.db.transaction() as session:
        return service.create_review(session, world.consumer_id, order.order_no, rating=4).id


def rules(Rule, EVERYONE, SIGNED_IN, A_MANAGERS, OPERATOR, a_params) -> dict:
    consumer = {"consumer"}
    return {
        ("POST", "/api/v1/orders/{order_no}/reviews"): Rule(
            consumer,
            lambda w: {"order_no": _received(w).order_no},
            body=lambda w: {"rating": 5, "text": "不错"},
        ),
        ("GET", "/api/v1/orders/{order_no}/reviews"): Rule(
            consumer, lambda w: {"order_no": _received(w).order_no}
        ),
        ("POST", "/api/v1/merchants/{merchant_id}/reviews/{review_id}/reply"): Rule(
            A_MANAGERS,
            lambda w: {"merchant_id": w.a.id, "review_id": _review_id(w)},
            body=lambda w: {"text": "谢谢惠顾"},
        ),
        ("GET", "/api/v1/listings/{listing_id}/reviews"): Rule(
            EVERYONE, lambda w: {"listing_id": _received(w).listing_ids[0]}
        ),
        ("GET", "/api/v1/merchants/{merchant_id}/reviews"): Rule(EVERYONE, a_params),
    }
