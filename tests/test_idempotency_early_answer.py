"""Checkout stores its Idempotency-Key answer *before* the stock decrements (so the answer's
round trip is not made while a hot row is locked). A decrement that then fails must take the
stored answer with it: the key stays free and a retry after a restock does the work. Both DBs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from o2o.idempotency import IdempotencyRecord
from o2o.inventory.models import InventoryItem
from o2o.orders.models import Order
from tests.checkout_support import ADDRESS, goods_item, levels, make_goods, place


def test_refused_checkout_leaves_the_key_free_and_a_retry_does_the_work(
    api: Any, world: Any, db: Any
) -> None:
    scarce = make_goods(db, world.a.id, world.category_id, stock=1, title="紧俏商品")
    token = world.tokens["consumer"]
    refused = place(api, token, [goods_item(scarce, 2)], address=ADDRESS, key="k-early-1")
    assert refused.status_code == 409 and refused.json()["code"] == "out_of_stock"
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(IdempotencyRecord)) == 0
        assert session.scalar(select(func.count()).select_from(Order)) == 0
    with db.transaction() as session:
        session.execute(
            InventoryItem.__table__.update()
            .where(InventoryItem.id == scarce.item_id)
            .values(total=5, available=5)
        )
    done = place(api, token, [goods_item(scarce, 2)], address=ADDRESS, key="k-early-1")
    assert done.status_code == 201, done.text
    again = place(api, token, [goods_item(scarce, 2)], address=ADDRESS, key="k-early-1")
    assert again.status_code == 201 and again.json() == done.json()
    assert levels(db, scarce.item_id).held == 2
    with db.transaction(readonly=True) as session:
        stored = session.scalar(select(IdempotencyRecord))
        assert stored.status_code == 201 and stored.response == done.json()
        assert session.scalar(select(func.count()).select_from(Order)) == 1
    other = place(api, token, [goods_item(scarce, 1)], address=ADDRESS, key="k-early-1")
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
