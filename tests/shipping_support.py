"""Helpers for shipping, after-sales and review tests: paid goods orders through the real
checkout and sandbox payment (API), or straight into the database (authorization rules, where
each role gets a fresh world and no API client), signed carrier notifications, moving time."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from o2o.config import Settings
from o2o.db import Database
from o2o.orders.models import Checkout, Order, OrderLine
from o2o.payments.models import Payment
from o2o.shipping import carriers
from o2o.shipping.models import AfterSalesLine, AfterSalesRequest
from o2o.timeutil import utcnow
from tests.checkout_support import ADDRESS, goods_item, make_goods, pay_sandbox, place

SF_NUMBERS = iter(f"SF{n:013d}" for n in range(1_000_000_000_000, 9_999_999_999_999))


def sf_number() -> str:
    return next(SF_NUMBERS)


@dataclass
class PaidOrder:
    order_no: str
    line_ids: list[int]
    listing_ids: list[int]
    amounts: list[int]
    payable_fen: int


def paid_goods_order(
    api: Any,
    world: Any,
    *,
    lines: int = 1,
    price_fen: int = 3000,
    quantity: int = 1,
    shipping_fee_fen: int = 0,
    merchant: str = "a",
    consumer: str = "consumer",
) -> PaidOrder:
    """A paid goods order of merchant A (or B) with ``lines`` lines, through checkout + sandbox."""
    m = getattr(world, merchant)
    items = [
        make_goods(
            world.db,
            m.id,
            world.category_id,
            price_fen=price_fen * (i + 1),
            stock=50,
            shipping_fee_fen=shipping_fee_fen,
            title=f"商品{i + 1}",
        )
        for i in range(lines)
    ]
    token = world.tokens[consumer]
    r = place(api, token, [goods_item(g, quantity) for g in items], address=ADDRESS)
    assert r.status_code == 201, r.text
    body = r.json()
    pay_sandbox(api, token, body["payment"]["payment_no"])
    order_no = body["orders"][0]["order_no"]
    with world.db.transaction(readonly=True) as session:
        order = session.scalar(select(Order).where(Order.order_no == order_no))
        assert order.status == "paid"
        found = session.scalars(
            select(OrderLine).where(OrderLine.order_id == order.id).order_by(OrderLine.id)
        ).all()
        return PaidOrder(
            order_no,
            [line.id for line in found],
            [line.listing_id for line in found],
            [line.amount_fen for line in found],
            order.payable_fen,
        )


def orm_goods_order(
    world: Any,
    *,
    status: str = "paid",
    lines: int = 2,
    price_fen: int = 2000,
    merchant: str = "a",
    user_id: int | None = None,
    shipped_ago: timedelta = timedelta(hours=1),
    completed_ago: timedelta = timedelta(hours=1),
) -> PaidOrder:
    """A paid (sandbox) goods order written straight into the database, in ``status``
    (paid, shipped, completed); no ledger postings, no stock."""
    m = getattr(world, merchant)
    user_id = user_id or world.consumer_id
    goods = [
        make_goods(world.db, m.id, world.category_id, price_fen=price_fen, title=f"直写商品{i}")
        for i in range(lines)
    ]
    now = utcnow()
    total = price_fen * lines
    no = f"T{time.time_ns() % 10**18:018d}"
    with world.db.transaction() as session:
        checkout = Checkout(checkout_no="C" + no, user_id=user_id, total_fen=total)
        session.add(checkout)
        session.flush()
        payment = Payment(
            payment_no="P" + no,
            checkout_id=checkout.id,
            user_id=user_id,
            amount_fen=total,
            status="succeeded",
            provider="sandbox",
            method="cashier",
            expires_at=now + timedelta(minutes=15),
            paid_at=now,
        )
        session.add(payment)
        session.flush()
        order = Order(
            order_no="O" + no,
            checkout_id=checkout.id,
            payment_id=payment.id,
            user_id=user_id,
            merchant_id=m.id,
            kind="goods",
            status=status,
            items_fen=total,
            payable_fen=total,
            shipping_address=ADDRESS,
            paid_at=now,
            shipped_at=now - shipped_ago if status in ("shipped", "completed") else None,
            completed_at=now - completed_ago if status == "completed" else None,
        )
        session.add(order)
        session.flush()
        rows = [
            OrderLine(
                order_id=order.id,
                listing_id=g.listing_id,
                sku_id=g.sku_id,
                title=f"直写商品{i}",
                unit_price_fen=price_fen,
                quantity=1,
                amount_fen=price_fen,
                commission_bp=600,
            )
            for i, g in enumerate(goods)
        ]
        session.add_all(rows)
        session.flush()
        return PaidOrder(
            order.order_no,
            [r.id for r in rows],
            [g.listing_id for g in goods],
            [price_fen] * lines,
            total,
        )


def orm_after_sales(world: Any, *, respond_in: timedelta = timedelta(hours=48)) -> int:
    """A ``requested`` after-sales request on a received order of merchant A (first line)."""
    order = orm_goods_order(world, status="completed")
    now = utcnow()
    with world.db.transaction() as session:
        found = session.scalar(select(Order).where(Order.order_no == order.order_no))
        request = AfterSalesRequest(
            order_id=found.id,
            user_id=found.user_id,
            merchant_id=found.merchant_id,
            kind="refund_only",
            status="requested",
            reason="质量问题",
            amount_fen=order.amounts[0],
            respond_by=now + respond_in,
            created_at=now,
            updated_at=now,
        )
        session.add(request)
        session.flush()
        session.add(
            AfterSalesLine(
                request_id=request.id, order_line_id=order.line_ids[0], amount_fen=order.amounts[0]
            )
        )
        return request.id


def shift_order(db: Database, order_no: str, **fields: datetime | None) -> None:
    """Move an order's timestamps (shipped_at, completed_at …) into the past."""
    with db.transaction() as session:
        session.execute(update(Order).where(Order.order_no == order_no).values(**fields))


def signed(
    settings: Settings,
    carrier: str,
    payload: Any,
    *,
    timestamp: int | None = None,
    secret: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    ts = int(time.time()) if timestamp is None else timestamp
    key = secret if secret is not None else carriers.carrier_secret(settings, carrier)
    return body, {
        "Content-Type": "application/json",
        "X-Logistics-Timestamp": str(ts),
        "X-Logistics-Signature": carriers.sign(key, ts, body),
    }


def notify_tracking(
    api: Any, settings: Settings, carrier: str, tracking_no: str, events: list[dict[str, Any]]
) -> Any:
    body, headers = signed(settings, carrier, {"tracking_no": tracking_no, "events": events})
    return api.post(f"/api/v1/logistics/notify/{carrier}", content=body, headers=headers)
