"""结算 / 订单: a checkout, its orders (one per merchant and kind) and their lines.

Order statuses move only along ``ORDER_STATUS`` (DESIGN.md law 6).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from o2o.db import Base, BigIntId, UTCDateTime
from o2o.statemachine import StateMachine
from o2o.timeutil import utcnow

GOODS, SERVICE = "goods", "service"

PENDING_PAYMENT, PAID, SHIPPED, COMPLETED = "pending_payment", "paid", "shipped", "completed"
CANCELLED, REFUNDING, REFUNDED = "cancelled", "refunding", "refunded"
ORDER_STATUSES = (PENDING_PAYMENT, PAID, SHIPPED, COMPLETED, CANCELLED, REFUNDING, REFUNDED)

# Why an order was cancelled: it decides what a late payment does (revive vs. refund).
CANCELLED_BY_CONSUMER, CANCELLED_BY_TIMEOUT = "consumer", "payment_timeout"

ORDER_STATUS = StateMachine(
    "订单",
    {
        (PENDING_PAYMENT, "pay"): PAID,
        (PENDING_PAYMENT, "cancel"): CANCELLED,
        # Money arrived after the payment timeout and the stock could be held again.
        (CANCELLED, "revive"): PAID,
        # Goods (the fulfilment issue drives these).
        (PAID, "ship"): SHIPPED,
        (SHIPPED, "complete"): COMPLETED,
        # Services: complete once vouchers are used (fulfilment issue).
        (PAID, "complete"): COMPLETED,
        # A manager undid the redemption that completed it: a voucher is unused again.
        (COMPLETED, "reopen"): PAID,
        # A full refund of an order not yet shipped: it must not ship while the money goes back.
        (PAID, "request_refund"): REFUNDING,
        (REFUNDING, "refund_failed"): PAID,
        # Everything paid for the order has come back (one full or several partial refunds).
        (REFUNDING, "all_refunded"): REFUNDED,
        (PAID, "all_refunded"): REFUNDED,
        (SHIPPED, "all_refunded"): REFUNDED,
        (COMPLETED, "all_refunded"): REFUNDED,
    },
    labels={
        PENDING_PAYMENT: "待支付",
        PAID: "已支付",
        SHIPPED: "已发货",
        COMPLETED: "已完成",
        CANCELLED: "已取消",
        REFUNDING: "退款中",
        REFUNDED: "已退款",
    },
)


# The order timeline's words for each move (short, for the pages).
ORDER_ACTION_LABELS = {
    "place": "下单",
    "pay": "支付成功",
    "cancel": "订单取消",
    "revive": "逾期付款，订单恢复",
    "ship": "商家发货",
    "complete": "订单完成",
    "reopen": "撤销核销，订单恢复",
    "request_refund": "申请退款",
    "refund_failed": "退款失败",
    "all_refunded": "退款完成",
}
# Why (cancel reasons and other codes stored as the reason) in words.
ORDER_REASON_LABELS = {
    CANCELLED_BY_CONSUMER: "顾客取消",
    CANCELLED_BY_TIMEOUT: "超时未支付",
    "late_payment": "取消后收到付款",
}


class Checkout(Base):
    """结算: one consumer action; its orders are paid by one payment."""

    __tablename__ = "checkouts"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    checkout_no: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    total_fen: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(40), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Order(Base):
    """订单: one merchant, one kind. ``order_no`` is the public id."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("kind IN ('goods', 'service')", name="kind"),
        CheckConstraint("payable_fen >= 0", name="payable_not_negative"),
        # Refunds (including those in flight) never exceed what was paid (DESIGN.md law 4).
        CheckConstraint("refunded_fen >= 0 AND refunded_fen <= payable_fen", name="refund_cap"),
        Index("ix_orders_user_id_id", "user_id", "id"),
        Index("ix_orders_merchant_id_status_id", "merchant_id", "status", "id"),
        # The auto-confirm sweep: shipped orders by the time of their last shipment.
        Index("ix_orders_status_shipped_at", "status", "shipped_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    order_no: Mapped[str] = mapped_column(String(32), unique=True)
    checkout_id: Mapped[int] = mapped_column(ForeignKey("checkouts.id"), index=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    kind: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20), default=PENDING_PAYMENT)
    items_fen: Mapped[int] = mapped_column(Integer)
    shipping_fee_fen: Mapped[int] = mapped_column(Integer, default=0)
    discount_fen: Mapped[int] = mapped_column(Integer, default=0)
    payable_fen: Mapped[int] = mapped_column(Integer)
    # Reserved by refunds not failed (pending, processing, succeeded): the cap is checked on it.
    refunded_fen: Mapped[int] = mapped_column(Integer, default=0)
    shipping_address: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(String(200), default="")
    # Traffic entry point (渠道) code; attribution comes with the channels issue.
    channel: Mapped[str] = mapped_column(String(40), default="")
    cancel_reason: Mapped[str] = mapped_column(String(20), default="")
    # The provider's transaction id for this order's money: the payment's own, or for a combined
    # payment (WeChat Pay 合单) the id of this order's sub-order.
    provider_txn_id: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    shipped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OrderLine(Base):
    """A line snapshots what was bought: title, unit price, quantity, commission rate."""

    __tablename__ = "order_lines"
    __table_args__ = (
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        CheckConstraint("refunded_fen >= 0 AND refunded_fen <= amount_fen", name="refund_cap"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    listing_id: Mapped[int] = mapped_column(ForeignKey("listings.id"), index=True)
    sku_id: Mapped[int | None] = mapped_column(ForeignKey("skus.id"))
    slot_id: Mapped[int | None] = mapped_column(ForeignKey("time_slots.id"), index=True)
    title: Mapped[str] = mapped_column(String(100))
    sku_name: Mapped[str] = mapped_column(String(60), default="")
    unit_price_fen: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[int] = mapped_column(Integer)
    amount_fen: Mapped[int] = mapped_column(Integer)
    commission_bp: Mapped[int] = mapped_column(Integer)
    # The units held for the line: SKU stock or slot capacity; ``extra_hold_id`` is a slot
    # service's own deal stock when it has one. None = unlimited.
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("inventory_holds.id"))
    extra_hold_id: Mapped[int | None] = mapped_column(ForeignKey("inventory_holds.id"))
    refunded_fen: Mapped[int] = mapped_column(Integer, default=0)

    @property
    def hold_ids(self) -> list[int]:
        return [h for h in (self.hold_id, self.extra_hold_id) if h is not None]


class OrderHistory(Base):
    """订单记录: one row per move of ``Order.status`` (written by ``orders.service._move``, the
    only writer of the status): who (actor kind and id), when, from, to, why."""

    __tablename__ = "order_history"
    __table_args__ = (Index("ix_order_history_order_id_id", "order_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    action: Mapped[str] = mapped_column(String(20))
    # "" for the row written when the order is placed.
    from_status: Mapped[str] = mapped_column(String(20), default="")
    to_status: Mapped[str] = mapped_column(String(20))
    # user, staff, operator, provider, worker (``o2o.events.ACTOR_KINDS``).
    actor_kind: Mapped[str] = mapped_column(String(10))
    actor_id: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(200), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
