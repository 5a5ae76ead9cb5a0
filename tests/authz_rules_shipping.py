"""Authorization rules for shipments, tracking notifications, receipt and after-sales (loaded by
tests/test_authorization.py). Orders and requests are written straight into the database for
every role (each role gets a fresh world)."""

from __future__ import annotations

from typing import Any

from tests.shipping_support import orm_after_sales, orm_goods_order, sf_number


def _order(world: Any, status: str) -> Any:
    """One order of merchant A's consumer per world and status (params and body share it)."""
    cache = world.__dict__.setdefault("_authz_orders", {})
    if status not in cache:
        cache[status] = orm_goods_order(world, status=status)
    return cache[status]


def _request_id(world: Any) -> int:
    if "_authz_request" not in world.__dict__:
        world.__dict__["_authz_request"] = orm_after_sales(world)
    return world.__dict__["_authz_request"]


def rules(Rule, EVERYONE, SIGNED_IN, A_MANAGERS, OPERATOR, a_params) -> dict:
    consumer = {"consumer"}

    def order_params(status: str) -> Any:
        return lambda w: {"merchant_id": w.a.id, "order_no": _order(w, status).order_no}

    def request_params(w: Any) -> dict[str, Any]:
        return {"merchant_id": w.a.id, "request_id": _request_id(w)}

    return {
        ("GET", "/api/v1/logistics/carriers"): Rule(EVERYONE),
        ("POST", "/api/v1/merchants/{merchant_id}/orders/{order_no}/shipments"): Rule(
            A_MANAGERS,
            order_params("paid"),
            body=lambda w: {"carrier": "SF", "tracking_no": sf_number()},
        ),
        ("GET", "/api/v1/merchants/{merchant_id}/orders/{order_no}/shipments"): Rule(
            A_MANAGERS, order_params("shipped")
        ),
        ("GET", "/api/v1/orders/{order_no}/shipments"): Rule(consumer, order_params("shipped")),
        # Signed by the carrier, never by a person: without the signature everyone is refused.
        ("POST", "/api/v1/logistics/notify/{carrier}"): Rule(
            set(),
            lambda w: {"carrier": "SF"},
            body=lambda w: {"tracking_no": "SF1234567890123", "events": []},
        ),
        ("POST", "/api/v1/orders/{order_no}/confirm-receipt"): Rule(
            consumer, order_params("shipped")
        ),
        ("POST", "/api/v1/orders/{order_no}/after-sales"): Rule(
            consumer,
            order_params("completed"),
            body=lambda w: {
                "kind": "refund_only",
                "reason": "破损",
                "line_ids": _order(w, "completed").line_ids[:1],
                "amount_fen": 100,
            },
        ),
        ("GET", "/api/v1/after-sales"): Rule(SIGNED_IN),
        ("POST", "/api/v1/after-sales/{request_id}/cancel"): Rule(consumer, request_params),
        ("GET", "/api/v1/merchants/{merchant_id}/after-sales"): Rule(A_MANAGERS, a_params),
        ("POST", "/api/v1/merchants/{merchant_id}/after-sales/{request_id}/approve"): Rule(
            A_MANAGERS, request_params
        ),
        ("POST", "/api/v1/merchants/{merchant_id}/after-sales/{request_id}/reject"): Rule(
            A_MANAGERS, request_params, body=lambda w: {"reason": "不符合售后条件"}
        ),
    }
