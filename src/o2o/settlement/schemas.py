from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import Field

from o2o.schemas import Schema


class StatementOut(Schema):
    statement_no: str
    merchant_id: int
    period_start: datetime
    period_end: datetime
    sequence: int
    status: str
    status_label: str
    line_count: int
    gross_fen: int
    commission_fen: int
    refunds_fen: int
    net_fen: int
    carried_in_fen: int
    payable_fen: int
    payout_via: str
    payout_no: str
    bank_reference: str
    paid_at: datetime | None
    failure_reason: str
    created_at: datetime


class StatementLineOut(Schema):
    transaction_id: int
    kind: str
    order_no: str | None
    payment_no: str | None
    refund_no: str | None
    line_id: int | None
    posted_at: datetime
    gross_fen: int
    commission_fen: int
    refunds_fen: int
    net_fen: int


class ProfitSharingOut(Schema):
    out_order_no: str
    payment_no: str
    order_no: str
    sub_mchid: str
    transaction_id: str
    commission_fen: int
    net_fen: int
    unfreeze: bool
    state: str
    wechat_order_id: str
    last_error: str


class StatementDetailOut(StatementOut):
    lines: list[StatementLineOut]
    profit_sharing: list[ProfitSharingOut]


class MarkPaidIn(Schema):
    bank_reference: Annotated[str, Field(min_length=1, max_length=100)]
    paid_at: datetime | None = None


# A day's trade bill of a large merchant is a few MB; refuse anything far beyond.
MAX_BILL_CHARS = 20_000_000


class ReconciliationIn(Schema):
    bill: Annotated[str, Field(min_length=1, max_length=MAX_BILL_CHARS)]
    bill_date: date | None = None


class FindingOut(Schema):
    kind: str
    label: str
    out_trade_no: str
    refund_no: str
    bill_fen: int | None
    our_fen: int | None
    detail: str


class ReconciliationOut(Schema):
    import_id: int | None
    date_from: str
    date_to: str
    bill_rows: int
    bill_payments_fen: int
    bill_refunds_fen: int
    matched: int
    ok: bool
    findings: list[FindingOut]

    @classmethod
    def of(cls, report: Any) -> ReconciliationOut:
        return cls.model_validate({**report.__dict__, "ok": report.ok})
