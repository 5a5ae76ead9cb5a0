"""Helpers for checkout, order, payment and refund tests: listings straight into the database
(so these tests do not depend on the catalogue API), and the API steps a consumer takes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from o2o.catalog.models import Listing, ListingStore, Sku, TimeSlot
from o2o.db import Database
from o2o.inventory import service as inventory
from o2o.inventory.models import InventoryHold, InventoryItem
from o2o.payments.models import Payment
from o2o.payments.sandbox import SandboxProvider
from o2o.timeutil import utcnow

# tests.conftest.make_settings signs with this secret; the sandbox key derives from it.
TEST_SECRET = "test-secret-" + "x" * 40

ADDRESS = {
    "name": "张三",
    "phone": "13912345678",
    "province": "广东省",
    "city": "深圳市",
    "district": "南山区",
    "detail": "科技园科苑路15号",
}


@dataclass(frozen=True)
class Goods:
    listing_id: int
    sku_id: int
    item_id: int
    price_fen: int


@dataclass(frozen=True)
class Deal:
    listing_id: int
    item_id: int | None
    price_fen: int


@dataclass(frozen=True)
class SlotDeal:
    listing_id: int
    slot_id: int
    slot_item_id: int
    deal_item_id: int | None
    store_id: int
    price_fen: int


def _listing(session: Any, merchant_id: int, category_id: int, **fields: Any) -> Listing:
    now = utcnow()
    listing = Listing(
        merchant_id=merchant_id,
        category_id=category_id,
        status="published",
        created_at=now,
        updated_at=now,
        published_at=now,
        **fields,
    )
    session.add(listing)
    session.flush()
    return listing


def make_goods(
    db: Database,
    merchant_id: int,
    category_id: int,
    *,
    price_fen: int = 1000,
    stock: int = 10,
    shipping_fee_fen: int = 0,
    title: str = "测试商品",
) -> Goods:
    with db.transaction() as session:
        listing = _listing(
            session,
            merchant_id,
            category_id,
            kind="goods",
            title=title,
            price_fen=price_fen,
            shipping_fee_fen=shipping_fee_fen,
        )
        item = inventory.create_item(session, "sku", stock)
        sku = Sku(
            listing_id=listing.id, name="标准款", price_fen=price_fen, inventory_item_id=item.id
        )
        session.add(sku)
        session.flush()
        return Goods(listing.id, sku.id, item.id, price_fen)


def make_deal(
    db: Database,
    merchant_id: int,
    category_id: int,
    store_ids: list[int],
    *,
    price_fen: int = 5000,
    stock: int | None = None,
    per_user_limit: int | None = None,
    title: str = "双人套餐",
) -> Deal:
    with db.transaction() as session:
        item_id = inventory.create_item(session, "offer", stock).id if stock is not None else None
        listing = _listing(
            session,
            merchant_id,
            category_id,
            kind="service",
            title=title,
            price_fen=price_fen,
            original_price_fen=price_fen * 2,
            valid_days=30,
            per_user_limit=per_user_limit,
            inventory_item_id=item_id,
        )
        for store_id in store_ids:
            session.add(ListingStore(listing_id=listing.id, store_id=store_id))
        session.flush()
        return Deal(listing.id, item_id, price_fen)


def make_slot_deal(
    db: Database,
    merchant_id: int,
    category_id: int,
    store_id: int,
    *,
    price_fen: int = 8000,
    capacity: int = 5,
    stock: int | None = None,
    starts_in: timedelta = timedelta(days=1),
    title: str = "影厅场次",
) -> SlotDeal:
    with db.transaction() as session:
        deal_item = inventory.create_item(session, "offer", stock).id if stock is not None else None
        listing = _listing(
            session,
            merchant_id,
            category_id,
            kind="service",
            title=title,
            price_fen=price_fen,
            original_price_fen=price_fen,
            valid_days=30,
            requires_slot=True,
            inventory_item_id=deal_item,
        )
        session.add(ListingStore(listing_id=listing.id, store_id=store_id))
        slot_item = inventory.create_item(session, "slot", capacity)
        starts = utcnow() + starts_in
        slot = TimeSlot(
            listing_id=listing.id,
            store_id=store_id,
            starts_at=starts,
            ends_at=starts + timedelta(hours=2),
            inventory_item_id=slot_item.id,
        )
        session.add(slot)
        session.flush()
        return SlotDeal(listing.id, slot.id, slot_item.id, deal_item, store_id, price_fen)


def levels(db: Database, item_id: int) -> inventory.Levels:
    with db.transaction(readonly=True) as session:
        return inventory.levels(session, item_id)


def holds_by_status(db: Database, item_id: int) -> dict[str, int]:
    with db.transaction(readonly=True) as session:
        rows = session.execute(
            select(InventoryHold.status, func.sum(InventoryHold.quantity))
            .where(InventoryHold.item_id == item_id)
            .group_by(InventoryHold.status)
        )
        return {status: int(n) for status, n in rows}


def assert_units_reconcile(db: Database, item_id: int) -> inventory.Levels:
    """available + held + sold == total, and held/sold equal the live hold records."""
    lv = levels(db, item_id)
    holds = holds_by_status(db, item_id)
    assert lv.available + lv.held + lv.sold == lv.total, lv
    assert lv.held == holds.get("held", 0), (lv, holds)
    assert lv.sold == holds.get("committed", 0), (lv, holds)
    return lv


def all_items(db: Database) -> list[int]:
    with db.transaction(readonly=True) as session:
        return list(session.scalars(select(InventoryItem.id)))


def sandbox(secret: str = TEST_SECRET) -> SandboxProvider:
    return SandboxProvider(secret)


def place(
    api: Any,
    token: str,
    items: list[dict[str, Any]],
    *,
    address: dict[str, Any] | None = None,
    key: str | None = None,
    **extra: Any,
) -> Any:
    body: dict[str, Any] = {"items": items, **extra}
    if address is not None:
        body["shipping_address"] = address
    headers = {"Idempotency-Key": key} if key else {}
    return api.post("/api/v1/checkout", json=body, as_=token, headers=headers)


def goods_item(goods: Goods, quantity: int = 1) -> dict[str, Any]:
    return {"listing_id": goods.listing_id, "sku_id": goods.sku_id, "quantity": quantity}


def checkout_goods(api: Any, token: str, goods: Goods, quantity: int = 1) -> dict[str, Any]:
    r = place(api, token, [goods_item(goods, quantity)], address=ADDRESS)
    assert r.status_code == 201, r.text
    return r.json()


def start_sandbox(api: Any, token: str, payment_no: str) -> dict[str, Any]:
    r = api.post(f"/api/v1/payments/{payment_no}/pay", json={"provider": "sandbox"}, as_=token)
    assert r.status_code == 200, r.text
    return r.json()


def pay_sandbox(api: Any, token: str, payment_no: str, result: str = "success") -> dict[str, Any]:
    start_sandbox(api, token, payment_no)
    r = api.post(f"/sandbox/cashier/{payment_no}", json={"result": result}, as_=token)
    assert r.status_code == 200, r.text
    return r.json()


def notify(api: Any, headers: dict[str, str], body: bytes, provider: str = "sandbox") -> Any:
    return api.post(f"/api/v1/payments/notify/{provider}", content=body, headers=headers)


# --- straight through the service layer (authorization rules, fixtures) -----------------------


def _settings() -> Any:
    from o2o.config import Settings

    return Settings(
        database_url="sqlite://", secret_key=TEST_SECRET, demo=False, sandbox_payments=True
    )


def order_for(db: Database, world: Any, *, user_id: int | None = None) -> tuple[str, str]:
    """A goods order of merchant A for the consumer, unpaid: (order_no, payment_no)."""
    from o2o.orders import service as orders

    goods = make_goods(db, world.a.id, world.category_id)
    with db.transaction() as session:
        body = orders.checkout(
            session,
            _settings(),
            user_id=user_id or world.consumer_id,
            items=[orders.CartItem(goods.listing_id, 1, goods.sku_id)],
            shipping_address=ADDRESS,
        )
    return body["orders"][0]["order_no"], body["payment"]["payment_no"]


def started_payment(db: Database, world: Any) -> tuple[str, str]:
    """An unpaid order whose payment the consumer started with the sandbox."""
    order_no, payment_no = order_for(db, world)
    with db.transaction() as session:
        session.execute(
            update(Payment)
            .where(Payment.payment_no == payment_no)
            .values(provider="sandbox", method="cashier", status="pending", started_at=utcnow())
        )
    return order_no, payment_no


def paid_order(db: Database, world: Any) -> tuple[str, str]:
    """A paid goods order (sandbox), applied through the payment core."""
    from o2o.payments import service as payments
    from o2o.payments.providers import PaymentEvent

    order_no, payment_no = started_payment(db, world)
    with db.transaction() as session:
        payment = session.scalar(select(Payment).where(Payment.payment_no == payment_no))
        event = PaymentEvent("sandbox", payment_no, "succeeded", payment.amount_fen)
        assert payments.apply_payment_event(session, event).result == "applied"
    return order_no, payment_no


def signed_success(payment_no: str, db: Database) -> dict[str, Any]:
    """The JSON of a genuine sandbox success notification for the payment."""
    import json

    with db.transaction(readonly=True) as session:
        amount = session.scalar(select(Payment.amount_fen).where(Payment.payment_no == payment_no))
    _headers, body = sandbox().payment_notification(payment_no, amount)
    return json.loads(body)


def abnormal_refund(db: Database, world: Any) -> str:
    """A refund the provider took but could not pay back (退款异常). Returns the refund_no."""
    from o2o.orders.models import Order
    from o2o.payments import service as payments

    order_no, _payment_no = paid_order(db, world)
    with db.transaction() as session:
        order = session.scalar(select(Order).where(Order.order_no == order_no))
        refund = payments.request_refund(session, order, initiator="operator:test")
        payments._refund_abnormal(session, refund, "ABNORMAL: 用户银行卡已注销", utcnow())
        return refund.refund_no


def failed_refund(db: Database, world: Any) -> str:
    """A refund the provider refused: the operator may retry it. Returns the refund_no."""
    from o2o.orders.models import Order
    from o2o.payments import service as payments

    order_no, _payment_no = paid_order(db, world)
    with db.transaction() as session:
        order = session.scalar(select(Order).where(Order.order_no == order_no))
        refund = payments.request_refund(session, order, initiator="operator:test")
        payments._fail_refund(session, refund, "NOT_ENOUGH: 余额不足", utcnow())
        return refund.refund_no
