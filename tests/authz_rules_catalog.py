"""Authorization rules for the catalogue's routes (loaded by tests/test_authorization.py).

Listings are created through the service as merchant A's owner, fresh for every role.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from o2o.accounts.models import User
from o2o.catalog import service
from o2o.catalog.schemas import GoodsListingIn, ServiceListingIn, SkuIn, SlotIn
from o2o.merchants.access import load_actor
from o2o.timeutil import utcnow


def make_listing(
    world: Any,
    *,
    kind: str = "goods",
    publish: bool = True,
    requires_slot: bool = False,
    stock: int | None = None,
    slots: int = 0,
    close_slots: bool = False,
) -> dict[str, Any]:
    """A listing of merchant A (goods with two SKUs, or a deal at both stores)."""
    with world.db.transaction() as session:
        actor = load_actor(session, session.get(User, world.a.owner_id))
        if kind == "goods":
            data: Any = GoodsListingIn(
                kind="goods",
                title="三体 全三册",
                category_id=world.category_id,
                shipping_fee_fen=0,
                skus=[
                    SkuIn(name="平装", price_fen=9300, stock=10),
                    SkuIn(name="精装", price_fen=16800, stock=5),
                ],
            )
        else:
            data = ServiceListingIn(
                kind="service",
                title="重庆老火锅双人套餐",
                category_id=world.category_id,
                price_fen=19800,
                original_price_fen=29800,
                store_ids=world.a.store_ids,
                valid_days=90,
                stock=stock,
                requires_slot=requires_slot,
            )
        listing = service.create_listing(session, actor, world.a.id, data)
        slot_ids = []
        if slots:
            start = utcnow().replace(microsecond=0) + timedelta(days=1)
            created = service.add_slots(
                session,
                actor,
                listing.id,
                [
                    SlotIn(
                        store_id=world.a.store_ids[i % 2],
                        starts_at=start + timedelta(hours=i),
                        ends_at=start + timedelta(hours=i + 1),
                        capacity=5,
                    )
                    for i in range(slots)
                ],
            )
            slot_ids = [s.id for s in created]
            if close_slots:
                for slot_id in slot_ids:
                    service.set_slot_open(session, actor, listing.id, slot_id, is_open=False)
        if publish:
            service.publish(session, actor, listing.id)
        return {
            "listing_id": listing.id,
            "sku_id": listing.skus[0].id if listing.skus else None,
            "slot_id": slot_ids[0] if slot_ids else None,
            "merchant_id": world.a.id,
        }


def _slot_body(world: Any) -> list[dict[str, Any]]:
    start = utcnow().replace(microsecond=0) + timedelta(days=2)
    return [
        {
            "store_id": world.a.store_ids[1],
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=1)).isoformat(),
            "capacity": 4,
        }
    ]


def rules(Rule, EVERYONE, SIGNED_IN, A_MANAGERS, OPERATOR, a_params) -> dict:
    def goods(w: Any) -> dict[str, Any]:
        return make_listing(w)

    def deal_with_stock(w: Any) -> dict[str, Any]:
        return make_listing(w, kind="service", stock=20)

    def slotted(w: Any) -> dict[str, Any]:
        return make_listing(w, kind="service", requires_slot=True, slots=2)

    base = "/api/v1/listings/{listing_id}"
    return {
        ("POST", "/api/v1/merchants/{merchant_id}/listings"): Rule(
            A_MANAGERS,
            a_params,
            body=lambda w: {
                "kind": "goods",
                "title": "深圳传",
                "category_id": w.category_id,
                "skus": [{"name": "单册", "price_fen": 5800, "stock": 3}],
            },
        ),
        ("GET", "/api/v1/merchants/{merchant_id}/listings"): Rule(EVERYONE, a_params),
        ("GET", base): Rule(EVERYONE, goods, query="?lat=22.54&lng=113.95"),
        ("PATCH", base): Rule(A_MANAGERS, goods, body=lambda w: {"title": "三体 典藏版"}),
        ("POST", base + "/publish"): Rule(A_MANAGERS, lambda w: make_listing(w, publish=False)),
        ("POST", base + "/unpublish"): Rule(A_MANAGERS, goods),
        ("POST", base + "/skus"): Rule(
            A_MANAGERS, goods, body=lambda w: {"name": "签名版", "price_fen": 29900, "stock": 2}
        ),
        ("PATCH", base + "/skus/{sku_id}"): Rule(
            A_MANAGERS, goods, body=lambda w: {"price_fen": 8800, "stock": 20, "reason": "补货"}
        ),
        ("POST", base + "/stock-adjustments"): Rule(
            A_MANAGERS, deal_with_stock, body=lambda w: {"delta": 5, "reason": "加推 5 份"}
        ),
        ("GET", base + "/stock-adjustments"): Rule(A_MANAGERS | OPERATOR, deal_with_stock),
        ("POST", base + "/slots"): Rule(A_MANAGERS, slotted, body=_slot_body),
        ("GET", base + "/slots"): Rule(EVERYONE, slotted),
        ("POST", base + "/slots/{slot_id}/close"): Rule(A_MANAGERS, slotted),
        ("POST", base + "/slots/{slot_id}/reopen"): Rule(
            A_MANAGERS,
            lambda w: make_listing(
                w, kind="service", requires_slot=True, slots=1, close_slots=True
            ),
        ),
    }
