"""API shapes of the reports. Money is integer fen (``*_fen``); rates are decimals rounded half up
to 4 places from the integers (JSON numbers such as ``0.8571``), ``null`` when there is nothing to
divide by. Definitions: ``o2o.reports.service``."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, PlainSerializer

from o2o.schemas import Schema

Rate = Annotated[
    Decimal | None,
    PlainSerializer(
        lambda v: None if v is None else float(v), return_type=float | None, when_used="json"
    ),
    Field(description="rate rounded half up to 4 places (0.8571 = 85.71%), null if no base"),
]
ReportFormat = Literal["json", "csv"]


class ReportWindow(Schema):
    from_date: date = Field(serialization_alias="from")
    to_date: date = Field(serialization_alias="to")
    timezone: str
    generated_at: datetime


class ChannelRow(Schema):
    channel_code: str = Field(description='channel code; "" = direct / no channel; "*" = total')
    channel_name: str
    channel_kind: str
    visits: int
    unique_visitors: int
    checkouts: int
    orders: int
    paid_orders: int
    gmv_fen: int
    consumed_orders: int
    vouchers_redeemed: int
    goods_received_orders: int
    refunded_orders: int
    refunded_fen: int
    checkout_rate: Rate
    paid_rate: Rate
    consumed_rate: Rate
    visitor_paid_rate: Rate
    refund_rate: Rate


class ChannelsReport(ReportWindow):
    rows: list[ChannelRow]
    total: ChannelRow


class ModelMetrics(Schema):
    model: Literal["service", "goods"]
    orders: int
    paid_orders: int
    paid_rate: Rate
    gmv_fen: int
    avg_order_value_fen: int
    refunded_fen: int
    refund_rate: Rate
    buyers: int
    repeat_buyers: int
    repeat_rate: Rate
    vouchers_issued: int
    vouchers_redeemed: int
    vouchers_refunded: int
    redemption_rate: Rate
    shipped_orders: int
    received_orders: int
    receipt_rate: Rate
    commission_fen: int


class ModelsRow(Schema):
    id: int | None = Field(description="category or merchant id; null for the platform total")
    name: str
    o2o: ModelMetrics
    goods: ModelMetrics
    reading: str


class ModelsReport(ReportWindow):
    category_id: int | None
    merchant_id: int | None
    min_sample: int
    total: ModelsRow
    categories: list[ModelsRow]
    merchants: list[ModelsRow]


class MerchantDay(Schema):
    day: date | None = Field(description="China-time day; null on the total row")
    orders: int
    paid_orders: int
    gmv_fen: int
    vouchers_redeemed: int
    shipped_orders: int
    received_orders: int
    refunds: int
    refunded_fen: int
    earned_fen: int
    commission_fen: int
    net_fen: int


class MerchantSummary(ReportWindow):
    merchant_id: int
    merchant_name: str
    days: list[MerchantDay]
    total: MerchantDay
