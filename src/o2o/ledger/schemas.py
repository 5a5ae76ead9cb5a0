from __future__ import annotations

from datetime import datetime

from o2o.schemas import Schema


class AccountOut(Schema):
    code: str
    type: str
    label: str
    merchant_id: int | None
    # Natural sign: positive is the account's usual balance (held, owed, earned, paid out).
    balance_fen: int


class EntryOut(Schema):
    account_code: str
    # Debit positive, credit negative.
    amount_fen: int


class TransactionOut(Schema):
    id: int
    kind: str
    idempotency_key: str
    order_no: str | None
    payment_no: str | None
    refund_no: str | None
    payout_no: str | None
    line_id: int | None
    merchant_id: int | None
    related_id: int | None
    memo: str
    created_at: datetime
    entries: list[EntryOut]


class MerchantBalanceOut(Schema):
    merchant_id: int
    payable_fen: int
    paid_out_fen: int
    commission_fen: int
