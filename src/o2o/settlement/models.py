"""结算单 / 打款 / 对账: settlement statements, their lines, WeChat Pay profit-sharing orders and
trade-bill reconciliation imports.

A statement line *is* a ledger transaction that moved the merchant's payable (an ``earned``
posting, a refund after earning, a reversal, an adjustment): ``transaction_id`` is unique, so
every posting is settled exactly once. Statuses move only along ``STATEMENT_STATUS``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
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

READY, SHARING, SHARING_FAILED, PAID, CARRIED = (
    "ready",
    "sharing",
    "sharing_failed",
    "paid",
    "carried",
)

STATEMENT_STATUS = StateMachine(
    "结算单",
    {
        # Bank transfer done outside; the operator records the bank reference.
        (READY, "mark_paid"): PAID,
        # WeChat Pay partner mode: 分账 requested; paid once WeChat Pay says it finished.
        (READY, "start_sharing"): SHARING,
        (SHARING, "finish_sharing"): PAID,
        (SHARING, "sharing_failed"): SHARING_FAILED,
        # After a failed 分账 the operator settles by hand (the findings are on the statement).
        (SHARING_FAILED, "mark_paid"): PAID,
        # Nothing (or less than nothing) to pay: carried into the merchant's next statement.
        (READY, "carry"): CARRIED,
    },
    labels={
        READY: "待打款",
        SHARING: "分账中",
        SHARING_FAILED: "分账失败",
        PAID: "已打款",
        CARRIED: "已结转",
    },
)


class SettlementStatement(Base):
    """One merchant, one period (``sequence`` > 1: postings that arrived after the first
    statement of that period was generated)."""

    __tablename__ = "settlement_statements"
    __table_args__ = (
        UniqueConstraint("merchant_id", "period_start", "sequence"),
        Index("ix_settlement_statements_merchant_id_period_start", "merchant_id", "period_start"),
        Index("ix_settlement_statements_status_period_start", "status", "period_start"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    statement_no: Mapped[str] = mapped_column(String(40), unique=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    period_start: Mapped[datetime] = mapped_column(UTCDateTime)
    period_end: Mapped[datetime] = mapped_column(UTCDateTime)
    sequence: Mapped[int] = mapped_column(Integer, default=1)
    line_count: Mapped[int] = mapped_column(Integer, default=0)
    gross_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    commission_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    refunds_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # gross − commission − refunds: what the lines moved on the merchant's payable.
    net_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # Earlier statements with nothing to pay (≤ 0) carried into this one.
    carried_in_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # net + carried in: what a payout of this statement pays.
    payable_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(20), default=READY)
    carried_into_id: Mapped[int | None] = mapped_column(ForeignKey("settlement_statements.id"))
    # bank | wechat_profit_sharing
    payout_via: Mapped[str] = mapped_column(String(30), default="")
    payout_no: Mapped[str] = mapped_column(String(40), default="")
    payout_transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
    bank_reference: Mapped[str] = mapped_column(String(100), default="")
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paid_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    failure_reason: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SettlementLine(Base):
    """A ledger transaction settled by a statement (each one exactly once)."""

    __tablename__ = "settlement_lines"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    statement_id: Mapped[int] = mapped_column(ForeignKey("settlement_statements.id"), index=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    order_no: Mapped[str | None] = mapped_column(String(40))
    payment_no: Mapped[str | None] = mapped_column(String(40))
    refund_no: Mapped[str | None] = mapped_column(String(40))
    line_id: Mapped[int | None] = mapped_column(BigInteger)
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    gross_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    commission_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    refunds_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    net_fen: Mapped[int] = mapped_column(BigInteger, default=0)


# WeChat Pay profit-sharing order states, plus ours: pending (not sent yet / no answer),
# skipped (nothing to share and nothing to unfreeze yet).
SHARE_PENDING, SHARE_PROCESSING, SHARE_FINISHED, SHARE_FAILED, SHARE_SKIPPED = (
    "pending",
    "processing",
    "finished",
    "failed",
    "skipped",
)


class ProfitSharingOrder(Base):
    """分账单: one WeChat Pay order (transaction) of a statement — the commission of the
    statement's lines of that order goes to the platform; the rest is unfrozen to the
    sub-merchant once nothing more can be earned on the order."""

    __tablename__ = "settlement_profit_sharing"
    __table_args__ = (UniqueConstraint("statement_id", "order_no"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    statement_id: Mapped[int] = mapped_column(ForeignKey("settlement_statements.id"), index=True)
    out_order_no: Mapped[str] = mapped_column(String(64), unique=True)
    payment_no: Mapped[str] = mapped_column(String(40))
    order_no: Mapped[str] = mapped_column(String(40))
    sub_mchid: Mapped[str] = mapped_column(String(32))
    transaction_id: Mapped[str] = mapped_column(String(64), default="")
    commission_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    net_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    unfreeze: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(20), default=SHARE_PENDING)
    wechat_order_id: Mapped[str] = mapped_column(String(64), default="")
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


SOURCE_UPLOAD, SOURCE_CLI, SOURCE_DOWNLOAD = "upload", "cli", "download"
SOURCE_LABELS = {SOURCE_UPLOAD: "手动导入", SOURCE_CLI: "命令行", SOURCE_DOWNLOAD: "自动下载"}


class ReconciliationImport(Base):
    """对账: one imported WeChat Pay trade bill and what it disagreed on (kept for audit)."""

    __tablename__ = "reconciliation_imports"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(20), default="wechatpay")
    date_from: Mapped[str] = mapped_column(String(10), default="")
    date_to: Mapped[str] = mapped_column(String(10), default="")
    bill_rows: Mapped[int] = mapped_column(Integer, default=0)
    bill_payments_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    bill_refunds_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    matched: Mapped[int] = mapped_column(Integer, default=0)
    finding_count: Mapped[int] = mapped_column(Integer, default=0)
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    imported_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # upload (admin page / API) | cli | download (the worker fetched the bill from WeChat Pay)
    source: Mapped[str] = mapped_column(String(20), default=SOURCE_UPLOAD)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


BILL_PENDING, BILL_DONE = "pending", "done"


class TradeBillDownload(Base):
    """One day's WeChat Pay trade bill, fetched by the worker (``settlement_trade_bill``): one
    row per bill day, so several workers download it once; retried until WeChat Pay has it."""

    __tablename__ = "settlement_trade_bill_downloads"
    __table_args__ = (
        UniqueConstraint("provider", "bill_date"),
        Index("ix_settlement_trade_bill_downloads_status_next", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(20), default="wechatpay")
    bill_date: Mapped[str] = mapped_column(String(10))
    # pending (not fetched yet: not generated, unreachable, hash wrong) | done (reconciled)
    status: Mapped[str] = mapped_column(String(12), default=BILL_PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A worker holds the row while it downloads (a crashed one's lease runs out).
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    hash_type: Mapped[str] = mapped_column(String(10), default="")
    hash_value: Mapped[str] = mapped_column(String(128), default="")
    import_id: Mapped[int | None] = mapped_column(ForeignKey("reconciliation_imports.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
