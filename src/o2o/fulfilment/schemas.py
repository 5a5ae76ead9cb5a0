"""API shapes for vouchers and redemption."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from o2o.catalog.schemas import DealItemOut, RuleLine
from o2o.schemas import Id, Schema, ShortText, line

VoucherStatus = Literal["unused", "redeemed", "refunded", "expired"]
# What a clerk typed or a scanner sent: digits, maybe grouped with spaces or dashes. Anything
# that cannot be a code is answered like an unknown code (404), never 422: no oracle.
CodeText = line(min_length=1, max_length=40)
Reason = line(min_length=1, max_length=200)


class VoucherOut(Schema):
    """The consumer's voucher (with its code and QR)."""

    code: str
    code_display: str
    status: VoucherStatus
    status_label: str
    listing_id: int
    order_line_id: int
    title: str
    amount_fen: int
    store_ids: list[int]
    slot_id: int | None
    slot_starts_at: datetime | None
    slot_ends_at: datetime | None
    valid_from: datetime
    valid_until: datetime
    refund_anytime: bool
    auto_refund_on_expiry: bool
    refundable: bool
    redeemed_at: datetime | None
    redeemed_store_id: int | None
    refunded_at: datetime | None
    expired_at: datetime | None
    qr_url: str


class VoucherStaffOut(Schema):
    """A voucher in the merchant's order view: never the code, only its last four digits."""

    code_tail: str
    status: VoucherStatus
    status_label: str
    order_line_id: int
    slot_id: int | None
    valid_until: datetime
    redeemed_at: datetime | None
    redeemed_store_id: int | None


class SlotOut(Schema):
    id: int
    store_id: int | None
    starts_at: datetime | None
    ends_at: datetime | None


class VoucherPreviewOut(Schema):
    code: str
    code_display: str
    status: VoucherStatus
    status_label: str
    listing_id: int
    listing_title: str
    quantity: int = Field(description="units this voucher stands for (always 1)")
    line_quantity: int = Field(description="units bought on the same order line")
    unused_of_line: int = Field(description="unused vouchers left on that line")
    order_no: str
    holder_phone: str = Field(description="masked, e.g. 138****0000")
    valid_from: datetime
    valid_until: datetime
    store_ids: list[int]
    slot: SlotOut | None
    redeemed_at: datetime | None
    redeemed_store_id: int | None
    items: list[DealItemOut] = []
    rules_text: list[RuleLine] = []
    unusable_reason: str | None = Field(
        default=None, description="why the deal's rules refuse it right now (None: usable)"
    )


class RedeemIn(Schema):
    code: CodeText
    store_id: Id


class RedeemedVoucherOut(Schema):
    code: str
    code_display: str
    status: Literal["redeemed"]
    redeemed_at: datetime
    store_id: int


class RedemptionOut(Schema):
    voucher: RedeemedVoucherOut
    order_no: str
    listing_title: str


class UndoIn(Schema):
    reason: Reason


class UndoneVoucherOut(Schema):
    code: str
    code_display: str
    status: Literal["unused"]
    status_label: str


class UndoOut(Schema):
    voucher: UndoneVoucherOut
    order_no: str
    listing_title: str
    undone_at: datetime
    reason: str


class RedemptionAttemptOut(Schema):
    id: int
    action: Literal["redeem", "preview", "undo"]
    result: str = Field(description='"ok", "replayed" or the problem code of the refusal')
    code: str
    store_id: int | None
    user_id: int
    user_name: str
    listing_title: str | None
    order_no: str | None
    reason: str
    created_at: datetime


class VoucherRefundIn(Schema):
    reason: ShortText = ""


class VoucherRefundOut(Schema):
    """Same shape as ``POST /orders/{order_no}/refunds`` answers, plus the codes."""

    refund_no: str
    order_no: str
    amount_fen: int
    status: str
    status_label: str
    reason: str
    created_at: datetime
    voucher_codes: list[str]
