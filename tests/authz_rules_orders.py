"""Authorization rules for checkout and order routes (see tests/test_authorization.py)."""

from __future__ import annotations

from typing import Any

from tests.checkout_support import ADDRESS, make_goods, order_for, paid_order

OWNER_ONLY = {"consumer"}  # the consumer who placed the order; everyone else gets 404


def _checkout_body(w: Any) -> dict[str, Any]:
    goods = make_goods(w.db, w.a.id, w.category_id)
    return {
        "items": [{"listing_id": goods.listing_id, "sku_id": goods.sku_id, "quantity": 1}],
        "shipping_address": ADDRESS,
    }


def rules(Rule, EVERYONE, SIGNED_IN, A_MANAGERS, OPERATOR, a_params) -> dict:
    return {
        ("POST", "/api/v1/checkout"): Rule(SIGNED_IN, body=_checkout_body),
        ("GET", "/api/v1/orders"): Rule(SIGNED_IN, query="?status=pending_payment"),
        ("GET", "/api/v1/orders/{order_no}"): Rule(
            OWNER_ONLY, lambda w: {"order_no": order_for(w.db, w)[0]}
        ),
        ("POST", "/api/v1/orders/{order_no}/cancel"): Rule(
            OWNER_ONLY, lambda w: {"order_no": order_for(w.db, w)[0]}
        ),
        ("POST", "/api/v1/orders/{order_no}/refunds"): Rule(
            OWNER_ONLY,
            lambda w: {"order_no": paid_order(w.db, w)[0]},
            body=lambda w: {"reason": "不想要了"},
        ),
        # Staff of merchant A: owners and managers see all orders, the clerk its store's.
        ("GET", "/api/v1/merchants/{merchant_id}/orders"): Rule(
            A_MANAGERS | {"clerk"}, a_params, query="?kind=service"
        ),
        # One order: a goods order is back office (owner, manager); the clerk gets 404.
        ("GET", "/api/v1/merchants/{merchant_id}/orders/{order_no}"): Rule(
            A_MANAGERS, lambda w: {**a_params(w), "order_no": order_for(w.db, w)[0]}
        ),
    }
