"""支付 / 退款: payments, every raw provider notification, refunds.

Statuses move only along the written tables below (DESIGN.md law 6).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from o2o.db import Base, BigIntId, UTCDateTime
from o2o.statemachine import StateMachine
from o2o.timeutil import utcnow

# --- payment ---------------------------------------------------------------------------------

CREATED, PENDING, SUCCEEDED, FAILED, CLOSED = "created", "pending", "succeeded", "failed", "closed"
# Statuses in which the payment can still be paid (until it expires).
PAYABLE = (CREATED, PENDING, FAILED)

PAYMENT_STATUS = StateMachine(
    "支付单",
    {
        (CREATED, "start"): PENDING,
        (PENDING, "start"): PENDING,
        (FAILED, "start"): PENDING,
        (CREATED, "succeed"): SUCCEEDED,
        (PENDING, "succeed"): SUCCEEDED,
        (FAILED, "succeed"): SUCCEEDED,
        # Money that arrives after the timeout closed the payment is never ignored: the orders
        # are revived or the money goes back (see service.apply_payment_event).
        (CLOSED, "succeed"): SUCCEEDED,
        # A failed attempt leaves the payment payable until it expires.
        (CREATED, "fail"): FAILED,
        (PENDING, "fail"): FAILED,
        (CREATED, "close"): CLOSED,
        (PENDING, "close"): CLOSED,
        (FAILED, "close"): CLOSED,
    },
    labels={
        CREATED: "待支付",
        PENDING: "支付中",
        SUCCEEDED: "已支付",
        FAILED: "支付失败",
        CLOSED: "已关闭",
    },
)

# What happened to money that arrived for a closed payment.
REVIVED, AUTO_REFUNDED = "revived", "auto_refunded"


class Payment(Base):
    """One payment for all the orders of a checkout."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount_fen >= 1", name="amount_positive"),
        # The timeout sweep: open payments by expiry.
        Index("ix_payments_status_expires_at", "status", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    payment_no: Mapped[str] = mapped_column(String(32), unique=True)
    checkout_id: Mapped[int] = mapped_column(ForeignKey("checkouts.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    status: Mapped[str] = mapped_column(String(12), default=CREATED)
    # Set when the consumer starts paying; never changes afterwards (no double payment).
    provider: Mapped[str | None] = mapped_column(String(20))
    method: Mapped[str | None] = mapped_column(String(20))
    provider_txn_id: Mapped[str] = mapped_column(String(64), default="")
    # revived | auto_refunded: what became of money that arrived after the payment closed.
    resolution: Mapped[str] = mapped_column(String(20), default="")
    close_reason: Mapped[str] = mapped_column(String(20), default="")
    failure_reason: Mapped[str] = mapped_column(String(200), default="")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    queried_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PaymentNotification(Base):
    """Every raw notification (and every active query answer), stored before it is applied."""

    __tablename__ = "payment_notifications"
    __table_args__ = (Index("ix_payment_notifications_received_at", "received_at"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    # notification | query
    source: Mapped[str] = mapped_column(String(20), default="notification")
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    body: Mapped[str] = mapped_column(Text, default="")
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    # received | applied | duplicate | rejected | amount_mismatch | unknown | ignored |
    # revived | auto_refunded | failed_recorded | error
    result: Mapped[str] = mapped_column(String(30), default="received")
    detail: Mapped[str] = mapped_column(String(500), default="")
    payment_no: Mapped[str | None] = mapped_column(String(32), index=True)
    refund_no: Mapped[str | None] = mapped_column(String(32), index=True)
    event_status: Mapped[str] = mapped_column(String(20), default="")
    amount_fen: Mapped[int | None] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# --- refund ----------------------------------------------------------------------------------

REFUND_PENDING, REFUND_PROCESSING = "pending", "processing"
REFUND_SUCCEEDED, REFUND_FAILED = "succeeded", "failed"
# 退款异常 (WeChat Pay ABNORMAL): the money has left the merchant account but the payer's account
# could not take it. Not failed: the amount stays reserved until the operator has it sent to a
# bank card (异常退款) and it succeeds.
REFUND_ABNORMAL = "abnormal"
REFUND_OPEN = (REFUND_PENDING, REFUND_PROCESSING)
# What the refund sweep looks at: open refunds, and abnormal ones now and then (the operator may
# have handled one in the merchant platform).
REFUND_SWEPT = (*REFUND_OPEN, REFUND_ABNORMAL)
# Ways to have an abnormal refund paid (WeChat Pay's 异常退款 ``type``).
ABNORMAL_TO_USER_CARD, ABNORMAL_TO_MERCHANT_CARD = "USER_BANK_CARD", "MERCHANT_BANK_CARD"
ABNORMAL_HANDLING_LABELS = {
    ABNORMAL_TO_USER_CARD: "退至用户银行卡",
    ABNORMAL_TO_MERCHANT_CARD: "退至交易商户银行账户",
}

REFUND_STATUS = StateMachine(
    "退款单",
    {
        # The provider accepted the refund; the money is on its way.
        (REFUND_PENDING, "accept"): REFUND_PROCESSING,
        # Only the provider (notification or query) says the money has arrived.
        (REFUND_PENDING, "succeed"): REFUND_SUCCEEDED,
        (REFUND_PROCESSING, "succeed"): REFUND_SUCCEEDED,
        (REFUND_PENDING, "fail"): REFUND_FAILED,
        (REFUND_PROCESSING, "fail"): REFUND_FAILED,
        # The operator sends a failed refund again (same refund_no).
        (REFUND_FAILED, "retry"): REFUND_PENDING,
        # The provider took the money but the payer's account refused it (退款异常).
        (REFUND_PENDING, "abnormal"): REFUND_ABNORMAL,
        (REFUND_PROCESSING, "abnormal"): REFUND_ABNORMAL,
        # The operator has it sent to a bank card (异常退款): on its way again.
        (REFUND_ABNORMAL, "apply_abnormal"): REFUND_PROCESSING,
        # Handled in the merchant platform instead: the provider says it arrived, or closed it.
        (REFUND_ABNORMAL, "succeed"): REFUND_SUCCEEDED,
        (REFUND_ABNORMAL, "fail"): REFUND_FAILED,
    },
    labels={
        REFUND_PENDING: "待提交",
        REFUND_PROCESSING: "退款中",
        REFUND_SUCCEEDED: "退款成功",
        REFUND_FAILED: "退款失败",
        REFUND_ABNORMAL: "退款异常",
    },
)


class Refund(Base):
    """退款: goes through the provider that took the payment, retried with the same number."""

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount_fen >= 1", name="amount_positive"),
        # The worker's sweep: open refunds that are due.
        Index("ix_refunds_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    refund_no: Mapped[str] = mapped_column(String(32), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    provider: Mapped[str] = mapped_column(String(20))
    amount_fen: Mapped[int] = mapped_column(Integer)
    # [{line_id, amount_fen}] — what the amount is for, when it is for particular lines.
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    voucher_codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    reason: Mapped[str] = mapped_column(String(200), default="")
    # Who asked: consumer:<user id>, merchant:<user id>, operator:<user id>, system:<why>.
    initiator: Mapped[str] = mapped_column(String(60), default="")
    status: Mapped[str] = mapped_column(String(12), default=REFUND_PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    provider_refund_id: Mapped[str] = mapped_column(String(64), default="")
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the provider accepted it (WeChat Pay's create_time, 发起退款成功时间): the day the
    # provider's trade bill lists it on, whenever it lands.
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    succeeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # 退款异常: when the provider reported it, and how the operator had it handled (异常退款).
    abnormal_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    abnormal_handling: Mapped[str] = mapped_column(String(30), default="")
    abnormal_handled_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    abnormal_handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
