"""API shapes for shipments, tracking notifications, receipt and after-sales."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from o2o.money import PositiveFen
from o2o.schemas import Id, Schema, line
from o2o.shipping.service import MAX_EVENTS_PER_NOTIFICATION
from o2o.timeutil import CHINA_TZ

CarrierCode = Annotated[str, Field(pattern=r"^[A-Za-z]{2,8}$", description="e.g. SF, ZTO, JD")]
TrackingNo = line(min_length=1, max_length=40)
LineIds = Annotated[list[Id], Field(min_length=1, max_length=50)]
TrackingStatus = Literal["collected", "in_transit", "delivering", "delivered", "exception"]
AfterSalesKind = Literal["refund_only", "return_refund"]
AfterSalesStatus = Literal[
    "requested", "approved", "rejected", "cancelled", "refunded", "refund_failed"
]
Reason = line(min_length=1, max_length=200)


def _china_if_naive(value: datetime) -> datetime:
    """Carriers in China send Beijing time; a time without an offset is taken as such."""
    return value.replace(tzinfo=CHINA_TZ) if value.tzinfo is None else value


# --- carriers -----------------------------------------------------------------------------------


class CarrierOut(Schema):
    code: str
    name: str
    tracking_no_format: str


# --- shipments ----------------------------------------------------------------------------------


class ShipmentIn(Schema):
    carrier: CarrierCode
    tracking_no: TrackingNo
    line_ids: LineIds | None = Field(
        default=None, description="order lines in this parcel; default: all not yet shipped"
    )


class ShipmentLineOut(Schema):
    line_id: int
    title: str
    sku_name: str
    quantity: int


class TrackingEventOut(Schema):
    time: datetime
    status: str
    status_label: str
    description: str
    location: str


class ShipmentOut(Schema):
    id: int
    carrier: str
    carrier_name: str
    tracking_no: str
    status: str
    status_label: str
    shipped_at: datetime
    delivered_at: datetime | None
    lines: list[ShipmentLineOut]
    events: list[TrackingEventOut] = Field(description="tracking timeline, newest first")


class ShipOut(Schema):
    order_no: str
    order_status: str
    order_status_label: str
    shipment: ShipmentOut


class OrderShipmentsOut(Schema):
    order_no: str
    order_status: str
    order_status_label: str
    shipped_at: datetime | None
    completed_at: datetime | None
    auto_confirm_at: datetime | None = Field(
        description="when the order is confirmed received automatically, while shipped"
    )
    shipments: list[ShipmentOut]


# --- tracking notifications ---------------------------------------------------------------------


class TrackingEventIn(Schema):
    time: Annotated[datetime, AfterValidator(_china_if_naive)]
    status: TrackingStatus
    description: Annotated[str, Field(max_length=200)] = ""
    location: Annotated[str, Field(max_length=100)] = ""


class TrackingNotifyIn(Schema):
    tracking_no: TrackingNo
    events: Annotated[
        list[TrackingEventIn], Field(min_length=1, max_length=MAX_EVENTS_PER_NOTIFICATION)
    ]


class TrackingNotifyOut(Schema):
    accepted: int
    duplicates: int
    status: str


# --- receipt ------------------------------------------------------------------------------------


class ReceiptOut(Schema):
    order_no: str
    status: str
    status_label: str
    completed_at: datetime | None


# --- after-sales --------------------------------------------------------------------------------


class AfterSalesIn(Schema):
    kind: AfterSalesKind
    reason: Reason
    line_ids: LineIds
    amount_fen: PositiveFen


class RejectIn(Schema):
    reason: Reason


class AfterSalesLineOut(Schema):
    line_id: int
    title: str
    amount_fen: int


class AfterSalesRefundOut(Schema):
    refund_no: str
    amount_fen: int
    status: str
    status_label: str


class AfterSalesOut(Schema):
    id: int
    order_no: str
    merchant_id: int
    kind: str
    kind_label: str
    status: str
    status_label: str
    reason: str
    amount_fen: int
    lines: list[AfterSalesLineOut]
    reject_reason: str
    respond_by: datetime
    created_at: datetime
    decided_at: datetime | None
    decided_automatically: bool
    cancelled_at: datetime | None
    refunded_at: datetime | None
    refund: AfterSalesRefundOut | None


class MerchantAfterSalesOut(AfterSalesOut):
    consumer_name: str
