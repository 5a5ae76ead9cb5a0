"""Authorization rules for vouchers and redemption (loaded by tests/test_authorization.py).

Every rule makes a fresh paid service order of merchant A's deal (valid at both of A's stores)
for the consumer, through the services.
"""

from __future__ import annotations

from typing import Any

from o2o.accounts.models import User
from o2o.fulfilment import redemption
from o2o.fulfilment.vouchers import redemption_settings
from o2o.merchants.access import load_actor
from tests.checkout_support import make_deal
from tests.voucher_support import paid_order


def _code(world: Any) -> str:
    deal = make_deal(world.db, world.a.id, world.category_id, world.a.store_ids)
    return paid_order(world.db, world.consumer_id, deal.listing_id).codes[0]


def _order_no(world: Any) -> str:
    deal = make_deal(world.db, world.a.id, world.category_id, world.a.store_ids)
    return paid_order(world.db, world.consumer_id, deal.listing_id).order_no


def _redeemed_code(world: Any) -> str:
    code = _code(world)
    with world.db.transaction() as session:
        actor = load_actor(session, session.get(User, world.a.owner_id))
        redemption.redeem_in(
            session, actor, world.a.id, code, world.a.store_ids[0], rules=redemption_settings()
        )
    return code


def rules(
    Rule: Any,
    EVERYONE: set[str],
    SIGNED_IN: set[str],
    A_MANAGERS: set[str],
    OPERATOR: set[str],
    a_params: Any,
) -> dict[tuple[str, str], Any]:
    a_staff = A_MANAGERS | {"clerk"}
    return {
        ("GET", "/api/v1/orders/{order_no}/vouchers"): Rule(
            {"consumer"}, lambda w: {"order_no": _order_no(w)}
        ),
        ("GET", "/api/v1/vouchers/{code}/qr.svg"): Rule({"consumer"}, lambda w: {"code": _code(w)}),
        ("POST", "/api/v1/vouchers/{code}/refund"): Rule(
            {"consumer"}, lambda w: {"code": _code(w)}, body=lambda w: {"reason": "不想去了"}
        ),
        # The clerk works at one of the deal's stores: it may preview.
        ("GET", "/api/v1/merchants/{merchant_id}/vouchers/{code}"): Rule(
            a_staff, lambda w: {**a_params(w), "code": _code(w)}
        ),
        # At the store the clerk does NOT work at: owners and managers only.
        ("POST", "/api/v1/merchants/{merchant_id}/redemptions"): Rule(
            A_MANAGERS,
            a_params,
            body=lambda w: {"code": _code(w), "store_id": w.a.store_ids[1]},
        ),
        ("POST", "/api/v1/merchants/{merchant_id}/redemptions/{code}/undo"): Rule(
            A_MANAGERS,
            lambda w: {**a_params(w), "code": _redeemed_code(w)},
            body=lambda w: {"reason": "扫错了"},
        ),
        ("GET", "/api/v1/merchants/{merchant_id}/redemptions"): Rule(a_staff, a_params),
    }
