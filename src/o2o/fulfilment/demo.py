"""Demo vouchers: the demo consumer (张小凡) has paid service orders with vouchers in every state
— unused, redeemed, refunded (随时退), expired — and a booked slot, so the merchant side (蜀香居,
its clerk 13600000001) is not empty on first start.

Built through the services: checkout, the sandbox payment applied as a verified event, the
redemption, 随时退 and the expiry sweep. Idempotent: the orders carry a demo note and are made
once.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o.accounts.models import User
from o2o.catalog import service as catalog
from o2o.catalog.models import PUBLISHED, Listing, TimeSlot
from o2o.catalog.schemas import ServiceListingIn
from o2o.config import get_settings
from o2o.demo import CONSUMER
from o2o.fulfilment import redemption, vouchers
from o2o.fulfilment.models import Voucher
from o2o.merchants.access import OWNER, load_actor
from o2o.merchants.models import Membership, Merchant
from o2o.orders import service as orders
from o2o.orders.models import Order
from o2o.payments import service as payments
from o2o.payments.models import PENDING, Refund
from o2o.payments.providers import EVENT_SUCCEEDED, REFUND_SUCCEEDED, PaymentEvent, RefundEvent
from o2o.timeutil import utcnow

DEMO_ORDER = 50
NOTE = "演示订单"
HOTPOT = "蜀香居重庆老火锅"
SALON = "丝域造型沙龙"
# An offer without 随时退 / 过期自动退, to show an expired voucher (and refund_not_allowed).
STRICT_DEAL = "工作日午市双人餐（不支持退款）"


def _user(session: Session, phone: str) -> User | None:
    return session.scalar(select(User).where(User.phone == phone))


def _merchant(session: Session, name: str) -> Merchant | None:
    merchant = session.scalar(select(Merchant).where(Merchant.name == name))
    return merchant if merchant is not None and merchant.status == "approved" else None


def _listing(session: Session, merchant_id: int, title: str) -> Listing | None:
    listing = session.scalar(
        select(Listing).where(Listing.merchant_id == merchant_id, Listing.title == title)
    )
    return listing if listing is not None and listing.status == PUBLISHED else None


def _owner(session: Session, merchant_id: int) -> User | None:
    return session.scalar(
        select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.merchant_id == merchant_id, Membership.role == OWNER)
    )


def _strict_deal(session: Session, merchant: Merchant, owner: User) -> Listing:
    listing = _listing(session, merchant.id, STRICT_DEAL)
    if listing is not None:
        return listing
    actor = load_actor(session, owner)
    assert merchant.category_id is not None
    listing = catalog.create_listing(
        session,
        actor,
        merchant.id,
        ServiceListingIn(
            kind="service",
            title=STRICT_DEAL,
            description="工作日 11:00–14:00 可用，特价不支持退款。",
            category_id=merchant.category_id,
            price_fen=9900,
            original_price_fen=16800,
            store_ids=[s.id for s in merchant.stores],
            valid_days=30,
            refund_anytime=False,
            auto_refund_on_expiry=False,
        ),
    )
    return catalog.publish(session, actor, listing.id)


def _buy_and_pay(
    session: Session, user_id: int, listing_id: int, quantity: int, slot_id: int | None = None
) -> tuple[Order, list[Voucher]]:
    body = orders.checkout(
        session,
        get_settings(),
        user_id=user_id,
        items=[orders.CartItem(listing_id, quantity, slot_id=slot_id)],
        note=NOTE,
    )
    payment = payments.lock_payment(session, payment_no=body["payment"]["payment_no"])
    assert payment is not None
    payment.provider, payment.status, payment.method = "sandbox", PENDING, "cashier"
    payment.started_at = utcnow()
    payments.apply_payment_event(
        session,
        PaymentEvent("sandbox", payment.payment_no, EVENT_SUCCEEDED, payment.amount_fen),
    )
    order = session.scalar(select(Order).where(Order.order_no == body["orders"][0]["order_no"]))
    assert order is not None
    issued = list(
        session.scalars(select(Voucher).where(Voucher.order_id == order.id).order_by(Voucher.id))
    )
    return order, issued


def _refund_money_back(session: Session, refund: Refund | None) -> None:
    """The sandbox provider says the money arrived (what the worker's sweep would learn)."""
    if refund is not None:
        payments.apply_refund_event(
            session, RefundEvent("sandbox", refund.refund_no, REFUND_SUCCEEDED, refund.amount_fen)
        )


def load_demo(session: Session) -> int:
    consumer = _user(session, CONSUMER[0])
    hotpot = _merchant(session, HOTPOT)
    if consumer is None or hotpot is None:
        return 0
    if session.scalar(
        select(Order.id).where(Order.user_id == consumer.id, Order.note == NOTE).limit(1)
    ):
        return 0  # made before
    owner = _owner(session, hotpot.id)
    pair = _listing(session, hotpot.id, "重庆老火锅双人套餐")
    family = _listing(session, hotpot.id, "重庆老火锅4人套餐")
    if owner is None or pair is None or family is None:
        return 0
    strict = _strict_deal(session, hotpot, owner)
    store_ids = sorted(s.id for s in hotpot.stores)
    clerk = session.scalar(
        select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.merchant_id == hotpot.id, Membership.role == "clerk")
    )
    staff = load_actor(session, clerk or owner)
    rules = vouchers.redemption_settings()
    now = utcnow()

    def redeem(voucher: Voucher) -> None:
        redemption.redeem_in(session, staff, hotpot.id, voucher.code, store_ids[0], rules=rules)

    made = 0
    # 1. Three of the pair deal: one eaten, one refunded (随时退, money back), one still to use.
    order, issued = _buy_and_pay(session, consumer.id, pair.id, 3)
    redeem(issued[0])
    _refund_money_back(
        session,
        vouchers.refund_vouchers(
            session,
            user_id=consumer.id,
            order_no=order.order_no,
            codes=[issued[1].code],
            reason="朋友临时来不了",
        ),
    )
    made += 1
    # 2. The family deal, redeemed: the order is completed.
    _order, issued = _buy_and_pay(session, consumer.id, family.id, 1)
    redeem(issued[0])
    made += 1
    # 3. The strict deal, bought long ago and never used: expired, no refund.
    _order, issued = _buy_and_pay(session, consumer.id, strict.id, 1)
    for voucher in issued:
        voucher.valid_from = now - timedelta(days=40)
        voucher.valid_until = now - timedelta(days=10)
    session.flush()
    vouchers.expire_locked(session, issued, now)
    made += 1
    # 4. A pair deal bought just now: two unused vouchers to redeem at the till.
    _buy_and_pay(session, consumer.id, pair.id, 2)
    made += 1
    # 5. A booked haircut tomorrow (slot voucher), if the salon's slots exist.
    salon = _merchant(session, SALON)
    haircut = _listing(session, salon.id, "资深发型师洗剪吹") if salon else None
    if haircut is not None:
        slot = session.scalar(
            select(TimeSlot)
            .where(
                TimeSlot.listing_id == haircut.id,
                TimeSlot.is_open.is_(True),
                TimeSlot.starts_at > now + timedelta(hours=20),
            )
            .order_by(TimeSlot.starts_at)
            .limit(1)
        )
        if slot is not None:
            _buy_and_pay(session, consumer.id, haircut.id, 1, slot_id=slot.id)
            made += 1
    return made
