"""券码 / 核销: vouchers (one per unit of a service bought) and the audit of every redemption
attempt. Voucher statuses move only along ``VOUCHER_STATUS`` (DESIGN.md law 6).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from o2o.db import Base, BigIntId, UTCDateTime
from o2o.statemachine import StateMachine
from o2o.timeutil import utcnow

UNUSED, REDEEMED, REFUNDED, EXPIRED = "unused", "redeemed", "refunded", "expired"
VOUCHER_STATUSES = (UNUSED, REDEEMED, REFUNDED, EXPIRED)

VOUCHER_STATUS = StateMachine(
    "券码",
    {
        (UNUSED, "redeem"): REDEEMED,
        # A manager takes back a mistaken redemption within the undo window.
        (REDEEMED, "undo"): UNUSED,
        # 随时退 (consumer, offers with refund_anytime).
        (UNUSED, "refund"): REFUNDED,
        # Validity ended unused (worker) …
        (UNUSED, "expire"): EXPIRED,
        # … and 过期自动退 when the offer promises it.
        (EXPIRED, "auto_refund"): REFUNDED,
    },
    labels={UNUSED: "未使用", REDEEMED: "已核销", REFUNDED: "已退款", EXPIRED: "已过期"},
)

# Every attempt is audited with what was tried; the code column is wide enough for junk input.
MAX_TRIED_CODE = 40
ACTION_REDEEM, ACTION_PREVIEW, ACTION_UNDO = "redeem", "preview", "undo"
RESULT_OK = "ok"


class Voucher(Base):
    """券码: one unit of a service bought. ``code`` is the secret the consumer shows."""

    __tablename__ = "vouchers"
    __table_args__ = (
        CheckConstraint(
            "status IN ('unused', 'redeemed', 'refunded', 'expired')", name="status_known"
        ),
        CheckConstraint("amount_fen >= 0", name="amount_not_negative"),
        # One voucher per unit of a line, whatever runs twice (paying twice never issues twice).
        UniqueConstraint("order_line_id", "unit_no"),
        # The expiry sweep: unused vouchers by end of validity.
        Index("ix_vouchers_status_valid_until", "status", "valid_until"),
        Index("ix_vouchers_merchant_id_redeemed_at", "merchant_id", "redeemed_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    # Digits only (a clerk can type it); unique platform-wide.
    code: Mapped[str] = mapped_column(String(20), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    order_line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id"))
    unit_no: Mapped[int] = mapped_column(Integer)
    listing_id: Mapped[int] = mapped_column(ForeignKey("listings.id"), index=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # Booked slot (snapshot of its times: the redemption window is checked without a join).
    slot_id: Mapped[int | None] = mapped_column(ForeignKey("time_slots.id"))
    slot_store_id: Mapped[int | None] = mapped_column(BigInteger)
    slot_starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    slot_ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Snapshots of the offer at payment: where it can be used and its refund promises.
    store_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    refund_anytime: Mapped[bool] = mapped_column(Boolean, default=True)
    auto_refund_on_expiry: Mapped[bool] = mapped_column(Boolean, default=True)
    # This unit's share of what the order paid: what a refund of it gives back.
    amount_fen: Mapped[int] = mapped_column(Integer)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(12), default=UNUSED)
    redeemed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    redeemed_store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    redeemed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    refund_id: Mapped[int | None] = mapped_column(ForeignKey("refunds.id"))
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RedemptionAttempt(Base):
    """核销记录: every redemption attempt (success or not), preview miss and undo — who, which
    merchant and store, the code tried, the result code, when. ``store_id`` and ``code`` are
    what the caller sent (no foreign key: junk input is audited too)."""

    __tablename__ = "redemption_attempts"
    __table_args__ = (Index("ix_redemption_attempts_merchant_id_id", "merchant_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    store_id: Mapped[int | None] = mapped_column(BigInteger)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    action: Mapped[str] = mapped_column(String(10), default=ACTION_REDEEM)
    code: Mapped[str] = mapped_column(String(MAX_TRIED_CODE))
    voucher_id: Mapped[int | None] = mapped_column(ForeignKey("vouchers.id"), index=True)
    # "ok" or the problem code of the refusal (voucher_not_found, too_many_requests …).
    result: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# Tables of other files of this package are imported here (so ``o2o.fulfilment.models``
# registers all of them). Shipments and after-sales live in ``o2o.shipping`` instead.
