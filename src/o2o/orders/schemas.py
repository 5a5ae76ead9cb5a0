"""API shapes for checkout and orders."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, Strict, model_validator

from o2o.fulfilment.schemas import VoucherOut, VoucherStaffOut
from o2o.money import Fen
from o2o.orders.service import MAX_ITEMS, MAX_LINE_QUANTITY
from o2o.schemas import Id, Name, Phone, Schema, ShortText, line

OrderStatus = Literal[
    "pending_payment", "paid", "shipped", "completed", "cancelled", "refunding", "refunded"
]
OrderKind = Literal["goods", "service"]
ChannelCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,40}$")]
LineQuantity = Annotated[int, Strict(), Field(ge=1, le=MAX_LINE_QUANTITY)]


class CartItemIn(Schema):
    listing_id: Id
    sku_id: Id | None = None
    slot_id: Id | None = None
    quantity: LineQuantity = 1


class ShippingAddress(Schema):
    name: Name
    phone: Phone
    province: line(min_length=1, max_length=20)
    city: line(min_length=1, max_length=30)
    district: line(min_length=1, max_length=30)
    detail: line(min_length=1, max_length=200)


class CheckoutIn(Schema):
    items: Annotated[list[CartItemIn], Field(min_length=1, max_length=MAX_ITEMS)]
    shipping_address: ShippingAddress | None = None
    channel: ChannelCode | None = None
    note: ShortText = ""


class CheckoutOrderOut(Schema):
    order_no: str
    merchant_id: int
    kind: OrderKind
    status: OrderStatus
    items_fen: int
    shipping_fee_fen: int
    payable_fen: int


class CheckoutPaymentOut(Schema):
    payment_no: str
    amount_fen: int
    status: str
    expires_at: datetime


class CheckoutOut(Schema):
    checkout_id: str
    orders: list[CheckoutOrderOut]
    payment: CheckoutPaymentOut


class OrderLineOut(Schema):
    id: int
    listing_id: int
    sku_id: int | None
    slot_id: int | None
    title: str
    sku_name: str
    unit_price_fen: int
    quantity: int
    amount_fen: int
    refunded_fen: int


class OrderLineStaffOut(OrderLineOut):
    commission_bp: int


class OrderRefundOut(Schema):
    refund_no: str
    amount_fen: int
    status: str
    status_label: str
    reason: str
    created_at: datetime
    succeeded_at: datetime | None


class TimelineEntryOut(Schema):
    """One move of the order's status (order_history): what, by whom (kind only), why."""

    at: datetime
    action: str
    label: str
    to_status: OrderStatus
    actor_kind: str
    actor_label: str
    reason: str


class OrderOut(Schema):
    order_no: str
    checkout_id: str
    payment_no: str
    merchant_id: int
    merchant_name: str
    kind: OrderKind
    status: OrderStatus
    status_label: str
    items_fen: int
    shipping_fee_fen: int
    discount_fen: int
    payable_fen: int
    refunded_fen: int
    shipping_address: dict[str, Any] | None
    note: str
    channel: str
    cancel_reason: str
    created_at: datetime
    paid_at: datetime | None
    cancelled_at: datetime | None
    lines: list[OrderLineOut]
    refunds: list[OrderRefundOut] = []
    # Service orders: one voucher per unit (fulfilment); staff never see the codes.
    vouchers: list[VoucherOut] = []
    # The order detail only (GET /orders/{order_no}): the moves of its status, oldest first.
    timeline: list[TimelineEntryOut] = []


class MerchantOrderOut(OrderOut):
    user_id: int
    lines: list[OrderLineStaffOut]  # type: ignore[assignment]
    vouchers: list[VoucherStaffOut] = []  # type: ignore[assignment]


class RefundIn(Schema):
    line_ids: Annotated[list[Id], Field(max_length=MAX_ITEMS)] | None = None
    voucher_codes: (
        Annotated[list[Annotated[str, Field(max_length=40)]], Field(max_length=100)] | None
    ) = None
    amount_fen: Annotated[Fen, Field(ge=1)] | None = None
    reason: ShortText = ""

    @model_validator(mode="after")
    def _one_kind(self) -> RefundIn:
        if self.line_ids and self.voucher_codes:
            raise ValueError("line_ids 与 voucher_codes 只能选一种")
        return self


class RefundOut(Schema):
    refund_no: str
    order_no: str
    amount_fen: int
    status: str
    status_label: str
    reason: str
    created_at: datetime
