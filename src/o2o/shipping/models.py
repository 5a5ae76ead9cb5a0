"""发货/物流 and 售后: shipments of goods orders, their tracking events, after-sales requests.

Shipments and after-sales requests move only along the written tables below (DESIGN.md law 6).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from o2o.db import Base, BigIntId, UTCDateTime
from o2o.statemachine import StateMachine
from o2o.timeutil import utcnow

# --- shipment ---------------------------------------------------------------------------------

# A shipment starts "shipped" (the merchant handed it over); the carrier's tracking events move
# it on. Event statuses are the same words as the shipment statuses they lead to.
SHIPPED, COLLECTED, IN_TRANSIT = "shipped", "collected", "in_transit"
DELIVERING, DELIVERED, EXCEPTION = "delivering", "delivered", "exception"
TRACKING_STATUSES = (COLLECTED, IN_TRANSIT, DELIVERING, DELIVERED, EXCEPTION)
_FORWARD = (SHIPPED, COLLECTED, IN_TRANSIT, DELIVERING, DELIVERED)


def _shipment_transitions() -> dict[tuple[str, str], str]:
    """Forward only (a late "in transit" never undoes "delivered"); an exception can happen
    before delivery, and the parcel moves on from it."""
    table: dict[tuple[str, str], str] = {}
    for i, current in enumerate(_FORWARD[:-1]):
        for later in _FORWARD[i + 1 :]:
            table[(current, later)] = later
        table[(current, EXCEPTION)] = EXCEPTION
    for later in _FORWARD[1:]:
        table[(EXCEPTION, later)] = later
    return table


SHIPMENT_STATUS = StateMachine(
    "包裹",
    _shipment_transitions(),
    labels={
        SHIPPED: "已发货",
        COLLECTED: "已揽收",
        IN_TRANSIT: "运输中",
        DELIVERING: "派送中",
        DELIVERED: "已签收",
        EXCEPTION: "物流异常",
    },
)


class Shipment(Base):
    """One parcel: a carrier and its tracking number, for some lines of one goods order."""

    __tablename__ = "shipments"
    __table_args__ = (
        # A tracking number is one parcel: notifications find the shipment by it.
        UniqueConstraint("carrier", "tracking_no"),
        Index("ix_shipments_merchant_id_id", "merchant_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    carrier: Mapped[str] = mapped_column(String(8))
    tracking_no: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(12), default=SHIPPED)
    # Time of the tracking event that set ``status`` (None: none yet); older events never move it.
    status_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    shipped_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    shipped_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ShipmentLine(Base):
    """An order line in a parcel. A line ships once (unique), whatever runs concurrently."""

    __tablename__ = "shipment_lines"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    shipment_id: Mapped[int] = mapped_column(ForeignKey("shipments.id"), index=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    order_line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id"), unique=True)
    quantity: Mapped[int] = mapped_column(Integer)


class TrackingEvent(Base):
    """A step of the parcel as the carrier reports it. Replays are deduplicated by
    (shipment, time, status)."""

    __tablename__ = "tracking_events"
    __table_args__ = (UniqueConstraint("shipment_id", "occurred_at", "status"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    shipment_id: Mapped[int] = mapped_column(ForeignKey("shipments.id"))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(12))
    description: Mapped[str] = mapped_column(String(200), default="")
    location: Mapped[str] = mapped_column(String(100), default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- after-sales ------------------------------------------------------------------------------

REFUND_ONLY, RETURN_REFUND = "refund_only", "return_refund"
AFTER_SALES_KINDS = (REFUND_ONLY, RETURN_REFUND)
AFTER_SALES_KIND_LABELS = {REFUND_ONLY: "仅退款", RETURN_REFUND: "退货退款"}

REQUESTED, APPROVED, REJECTED = "requested", "approved", "rejected"
CANCELLED, REFUNDED, REFUND_FAILED = "cancelled", "refunded", "refund_failed"

AFTER_SALES_STATUS = StateMachine(
    "售后申请",
    {
        (REQUESTED, "approve"): APPROVED,
        (REQUESTED, "reject"): REJECTED,
        (REQUESTED, "cancel"): CANCELLED,
        # The refund created on approval succeeded at the payment provider.
        (APPROVED, "refund_succeeded"): REFUNDED,
        # The provider refused the refund for good: never left silently "approved". The worker
        # sends it again later (a few times), then it waits for the operator's retry.
        (APPROVED, "refund_failed"): REFUND_FAILED,
        (REFUND_FAILED, "retry_refund"): APPROVED,
    },
    labels={
        REQUESTED: "待商家处理",
        APPROVED: "已同意，退款中",
        REJECTED: "商家已拒绝",
        CANCELLED: "已撤销",
        REFUNDED: "已退款",
        REFUND_FAILED: "退款失败，等待重试",
    },
)


class AfterSalesRequest(Base):
    """售后申请: the consumer asks for money back for some lines of a received goods order."""

    __tablename__ = "after_sales_requests"
    __table_args__ = (
        CheckConstraint("kind IN ('refund_only', 'return_refund')", name="kind"),
        CheckConstraint("amount_fen >= 1", name="amount_positive"),
        # The auto-approve sweep: unanswered requests by deadline.
        Index("ix_after_sales_requests_status_respond_by", "status", "respond_by"),
        Index("ix_after_sales_requests_merchant_id_id", "merchant_id", "id"),
        Index("ix_after_sales_requests_user_id_id", "user_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(20), default=REQUESTED)
    reason: Mapped[str] = mapped_column(String(200))
    amount_fen: Mapped[int] = mapped_column(Integer)
    reject_reason: Mapped[str] = mapped_column(String(200), default="")
    refund_id: Mapped[int | None] = mapped_column(ForeignKey("refunds.id"), index=True)
    # Who decided: merchant:<user id> or system:timeout.
    decided_by: Mapped[str] = mapped_column(String(60), default="")
    # Unanswered by then: approved by the worker.
    respond_by: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AfterSalesLine(Base):
    """What part of the request's amount is for which order line."""

    __tablename__ = "after_sales_lines"
    __table_args__ = (CheckConstraint("amount_fen >= 1", name="amount_positive"),)

    request_id: Mapped[int] = mapped_column(ForeignKey("after_sales_requests.id"), primary_key=True)
    order_line_id: Mapped[int] = mapped_column(
        ForeignKey("order_lines.id"), primary_key=True, index=True
    )
    amount_fen: Mapped[int] = mapped_column(Integer)
