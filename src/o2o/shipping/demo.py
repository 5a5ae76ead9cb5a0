"""Demo goods orders of the demo consumer in every state, so the merchant side is not empty:
waiting to ship, partly shipped, in transit (with a tracking timeline), received, and received
with an after-sales request waiting for the merchant.

Everything goes through the real services (checkout, a sandbox payment event, ship, tracking,
confirm receipt, after-sales), so stock, sales, the ledger and vouchers stay consistent.
Idempotent: each demo order is found again by its buyer's note.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o.accounts import service as accounts
from o2o.accounts.models import User
from o2o.catalog.models import GOODS, PUBLISHED, Listing, Sku
from o2o.config import get_settings
from o2o.demo import CONSUMER
from o2o.merchants.access import OWNER, Actor, load_actor
from o2o.merchants.models import Membership, Merchant
from o2o.orders import service as orders
from o2o.orders.models import Order
from o2o.payments import service as payments
from o2o.payments.models import Payment
from o2o.payments.providers import EVENT_SUCCEEDED, PaymentEvent
from o2o.shipping import aftersales, service
from o2o.timeutil import utcnow

DEMO_ORDER = 55

ADDRESS = {
    "name": CONSUMER[2],
    "phone": CONSUMER[0],
    "province": "广东省",
    "city": "深圳市",
    "district": "南山区",
    "detail": "粤海街道科苑路15号科兴科学园A栋1201",
}


@dataclass(frozen=True)
class Pick:
    merchant: str
    title_prefix: str
    quantity: int = 1


def goods_items(session: Session, picks: Sequence[Pick]) -> list[orders.CartItem] | None:
    """Cart items for the picks (first SKU of the first matching published listing); None when
    the catalogue demo has not created them."""
    items = []
    for pick in picks:
        row = session.execute(
            select(Listing.id, Sku.id)
            .join(Merchant, Merchant.id == Listing.merchant_id)
            .join(Sku, Sku.listing_id == Listing.id)
            .where(
                Merchant.name == pick.merchant,
                Listing.kind == GOODS,
                Listing.status == PUBLISHED,
                Listing.title.startswith(pick.title_prefix),
            )
            .order_by(Listing.id, Sku.id)
            .limit(1)
        ).first()
        if row is None:
            return None
        items.append(orders.CartItem(row[0], pick.quantity, sku_id=row[1]))
    return items


def find_demo_order(session: Session, user_id: int, note: str) -> Order | None:
    return session.scalar(
        select(Order).where(Order.user_id == user_id, Order.note == note).order_by(Order.id)
    )


def paid_demo_order(
    session: Session, user: User, picks: Sequence[Pick], note: str
) -> tuple[Order | None, bool]:
    """(the order, created now): checkout, then the sandbox's payment event, applied once."""
    found = find_demo_order(session, user.id, note)
    if found is not None:
        return found, False
    items = goods_items(session, picks)
    if items is None:
        return None, False
    result = orders.checkout(
        session, get_settings(), user_id=user.id, items=items, shipping_address=ADDRESS, note=note
    )
    payment = session.scalar(
        select(Payment).where(Payment.payment_no == result["payment"]["payment_no"])
    )
    assert payment is not None
    payment.provider, payment.method = "sandbox", "cashier"
    session.flush()
    payments.apply_payment_event(
        session,
        PaymentEvent("sandbox", payment.payment_no, EVENT_SUCCEEDED, payment.amount_fen),
    )
    order = find_demo_order(session, user.id, note)
    assert order is not None and order.status == "paid"
    return order, True


def owner_actor(session: Session, merchant_id: int) -> Actor:
    owner_id = session.scalar(
        select(Membership.user_id).where(
            Membership.merchant_id == merchant_id, Membership.role == OWNER
        )
    )
    user = session.get(User, owner_id)
    assert user is not None
    return load_actor(session, user)


def tracking_no(carrier: str, order: Order, part: int = 0) -> str:
    """Demo numbers in each carrier's format, distinct per order."""
    n = order.id * 10 + part
    return {"SF": f"SF7{n:012d}", "ZTO": f"7{n:011d}", "JD": f"JDVA{n:011d}"}[carrier]


TIMELINE = [
    ("collected", "【深圳市】快递员已揽收", "深圳福田营业部"),
    ("in_transit", "【深圳市】已到达 深圳转运中心", "深圳转运中心"),
    ("in_transit", "【深圳市】已离开 深圳转运中心，发往 深圳南山", "深圳转运中心"),
    ("delivering", "【深圳市】快递员正在派送中，请保持电话畅通", "深圳南山科技园营业点"),
    ("delivered", "【深圳市】已签收，签收人：本人，感谢使用", "深圳南山科技园营业点"),
]


def ship_with_timeline(
    session: Session,
    order: Order,
    carrier: str,
    shipped_at: datetime,
    steps: int,
    *,
    line_ids: Sequence[int] | None = None,
    part: int = 0,
) -> None:
    actor = owner_actor(session, order.merchant_id)
    shipment = service.ship(
        session,
        actor,
        order.merchant_id,
        order.order_no,
        carrier=carrier,
        tracking_no=tracking_no(carrier, order, part),
        line_ids=line_ids,
        now=shipped_at,
    )
    events = [
        service.Event(shipped_at + timedelta(hours=2 + 6 * i), status, text, where)
        for i, (status, text, where) in enumerate(TIMELINE[:steps])
    ]
    if events:
        service.apply_tracking(session, carrier, shipment.tracking_no, events, now=utcnow())


def received_demo_order(
    session: Session, user: User, picks: Sequence[Pick], note: str, *, days_ago: int = 3
) -> tuple[Order | None, bool]:
    """A goods order shipped, delivered and confirmed received ``days_ago`` days ago."""
    order, created = paid_demo_order(session, user, picks, note)
    if order is None or not created:
        return order, created
    now = utcnow()
    ship_with_timeline(session, order, "SF", now - timedelta(days=days_ago + 2), len(TIMELINE))
    service.confirm_receipt(session, user.id, order.order_no, now=now - timedelta(days=days_ago))
    return order, True


def load_demo(session: Session) -> int:
    user = accounts.find_by_phone(session, CONSUMER[0])
    if user is None:
        return 0
    created = 0
    now = utcnow()

    # 待发货
    _order, new = paid_demo_order(
        session, user, [Pick("深城书房", "《三体》")], "演示订单：请尽快发货"
    )
    created += new

    # 部分发货: the earphones left, the charger waits
    order, new = paid_demo_order(
        session,
        user,
        [Pick("华强北数码优品", "华为 FreeBuds"), Pick("华强北数码优品", "安克 65W")],
        "演示订单：分两个包裹发货",
    )
    if order is not None and new:
        first_line = orders.lines_by_order(session, [order.id])[order.id][0]
        ship_with_timeline(
            session, order, "JD", now - timedelta(hours=20), 2, line_ids=[first_line.id]
        )
    created += new

    # 运输中, with a timeline
    order, new = paid_demo_order(
        session, user, [Pick("鲜果园生鲜", "智利进口车厘子")], "演示订单：冷链配送"
    )
    if order is not None and new:
        ship_with_timeline(session, order, "SF", now - timedelta(days=1), 3)
        assert order.status == "shipped"
    created += new

    # 已收货 (reviewed by the reviews demo)
    for picks, note, days in (
        ([Pick("深城书房", "《明朝那些事儿》")], "演示订单：已收货", 2),
        ([Pick("鲜果园生鲜", "海南金煌芒果")], "演示订单：水果已收到", 1),
        ([Pick("华强北数码优品", "小米 20000mAh")], "演示订单：充电宝已收到", 4),
    ):
        _order, new = received_demo_order(session, user, picks, note, days_ago=days)
        created += new

    # 售后中: received yesterday, a refund request waiting for the merchant
    order, new = received_demo_order(
        session,
        user,
        [Pick("深城书房", "《猜猜我有多爱你》", 2)],
        "演示订单：有一本封面破损",
        days_ago=1,
    )
    if order is not None and new:
        line = orders.lines_by_order(session, [order.id])[order.id][0]
        aftersales.open_request(
            session,
            user.id,
            order.order_no,
            kind="refund_only",
            reason="收到的两本中有一本封面破损，申请退一本的钱",
            line_ids=[line.id],
            amount_fen=line.unit_price_fen,
        )
    created += new
    return created
