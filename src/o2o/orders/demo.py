"""Demo checkouts of the demo consumer (张小凡): one checkout across three merchants (books, a
hotpot deal, a salon deal) paid with the sandbox, one left waiting for payment, one refunded
before shipping and one cancelled — so both the consumer's order list and the merchants' order
lists have something on first start.

Through the services (checkout; the sandbox success applied as a verified payment event), so
stock, sales and the paid hooks (vouchers, ledger) stay consistent. Idempotent: the demo
checkouts carry their own note and are made once. The goods and voucher demos (shipping,
fulfilment) add orders in every later state.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from o2o.accounts.models import User
from o2o.catalog.models import GOODS, PUBLISHED, SERVICE, Listing, Sku
from o2o.config import get_settings
from o2o.demo import CONSUMER
from o2o.merchants.models import Merchant
from o2o.orders import service as orders
from o2o.orders.models import CANCELLED_BY_CONSUMER, Order
from o2o.payments import service as payments
from o2o.payments.models import PENDING, Payment
from o2o.payments.providers import EVENT_SUCCEEDED, REFUND_SUCCEEDED, PaymentEvent, RefundEvent
from o2o.timeutil import utcnow

DEMO_ORDER = 40
PAID_NOTE = "演示结算：跨商户一次支付"
UNPAID_NOTE = "演示结算：待支付"
REFUNDED_NOTE = "演示结算：未发货已退款"
CANCELLED_NOTE = "演示结算：已取消"
ADDRESS = {
    "name": CONSUMER[2],
    "phone": CONSUMER[0],
    "province": "广东省",
    "city": "深圳市",
    "district": "南山区",
    "detail": "粤海街道科苑路15号科兴科学园A栋1201",
}


def _goods(session: Session, merchant: str) -> orders.CartItem | None:
    row = session.execute(
        select(Listing.id, Sku.id)
        .join(Merchant, Merchant.id == Listing.merchant_id)
        .join(Sku, Sku.listing_id == Listing.id)
        .where(
            Merchant.name == merchant,
            Listing.kind == GOODS,
            Listing.status == PUBLISHED,
            Sku.is_active.is_(True),
        )
        .order_by(Listing.id, Sku.id)
        .limit(1)
    ).first()
    return orders.CartItem(row[0], 1, row[1]) if row else None


def _deal(session: Session, merchant: str) -> orders.CartItem | None:
    listing_id = session.scalar(
        select(Listing.id)
        .join(Merchant, Merchant.id == Listing.merchant_id)
        .where(
            Merchant.name == merchant,
            Listing.kind == SERVICE,
            Listing.status == PUBLISHED,
            Listing.requires_slot.is_(False),
            # leave 限购 deals to the voucher demo, which buys up to their limits
            Listing.per_user_limit.is_(None),
        )
        .order_by(Listing.id)
        .limit(1)
    )
    return orders.CartItem(listing_id, 1) if listing_id else None


def _exists(session: Session, user_id: int, note: str) -> bool:
    return (
        session.scalar(
            select(Order.id).where(Order.user_id == user_id, Order.note == note).limit(1)
        )
        is not None
    )


def _pay_with_sandbox(session: Session, payment_no: str) -> None:
    """What the sandbox cashier does, minus HTTP: start, then apply the verified success."""
    payment = session.scalar(select(Payment).where(Payment.payment_no == payment_no))
    assert payment is not None
    session.execute(
        update(Payment)
        .where(Payment.id == payment.id)
        .values(provider="sandbox", method="cashier", status=PENDING, started_at=utcnow())
    )
    event = PaymentEvent(
        "sandbox",
        payment_no,
        EVENT_SUCCEEDED,
        payment.amount_fen,
        provider_txn_id=f"SB{payment_no}",
    )
    payments.apply_payment_event(session, event)


def load_demo(session: Session) -> int:
    consumer = session.scalar(select(User).where(User.phone == CONSUMER[0]))
    if consumer is None:
        return 0
    settings = get_settings()
    created = 0
    if not _exists(session, consumer.id, PAID_NOTE):
        items = [
            _goods(session, "深城书房"),
            _deal(session, "蜀香居重庆老火锅"),
            _deal(session, "丝域造型沙龙"),
        ]
        cart = [i for i in items if i is not None]
        if cart:
            has_goods = items[0] is not None
            body = orders.checkout(
                session,
                settings,
                user_id=consumer.id,
                items=cart,
                shipping_address=ADDRESS if has_goods else None,
                channel="wechat-home",  # a demo channel (channels demo runs first)
                note=PAID_NOTE,
            )
            _pay_with_sandbox(session, body["payment"]["payment_no"])
            created += len(body["orders"])
    if not _exists(session, consumer.id, UNPAID_NOTE):
        item = _goods(session, "鲜果园生鲜")
        if item is not None:
            body = orders.checkout(
                session,
                settings,
                user_id=consumer.id,
                items=[item],
                shipping_address=ADDRESS,
                note=UNPAID_NOTE,
            )
            created += len(body["orders"])
    if not _exists(session, consumer.id, REFUNDED_NOTE):
        item = _goods(session, "深城书房")
        if item is not None:
            # Paid, then the consumer's full refund before shipping; the sandbox bank pays back.
            body = orders.checkout(
                session,
                settings,
                user_id=consumer.id,
                items=[item],
                shipping_address=ADDRESS,
                note=REFUNDED_NOTE,
            )
            _pay_with_sandbox(session, body["payment"]["payment_no"])
            refund = payments.consumer_full_refund(
                session,
                user_id=consumer.id,
                order_no=body["orders"][0]["order_no"],
                reason="买错了规格",
            )
            payments.apply_refund_event(
                session,
                RefundEvent("sandbox", refund.refund_no, REFUND_SUCCEEDED, refund.amount_fen),
            )
            created += len(body["orders"])
    if not _exists(session, consumer.id, CANCELLED_NOTE):
        item = _deal(session, "蜀香居重庆老火锅")
        if item is not None:
            # Cancelled by the consumer before paying: the hold went back.
            body = orders.checkout(
                session, settings, user_id=consumer.id, items=[item], note=CANCELLED_NOTE
            )
            payment = payments.lock_payment(session, payment_no=body["payment"]["payment_no"])
            assert payment is not None
            payments.close_payment(session, payment, CANCELLED_BY_CONSUMER, utcnow())
            created += len(body["orders"])
    session.flush()
    return created
