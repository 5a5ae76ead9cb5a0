"""API shapes of the catalogue: listings (goods | service, a union on ``kind``), SKUs, slots,
stock adjustments. Field bounds live here; rules that span fields or need the database
(original ≥ price, validity, stores of the merchant, category exists) live in the service."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, Strict

from o2o.catalog.deal_terms import DealItems, DealRules
from o2o.inventory.service import MAX_UNITS
from o2o.schemas import Id, LongText, Name, Quantity, Schema, ShortText, line

# Per unit: ¥1,000,000 is far above anything sold here and keeps sums inside 32-bit columns.
MAX_PRICE_FEN = 100_000_000
MAX_SHIPPING_FEN = 1_000_000
MAX_VALID_DAYS = 3650
MAX_SLOTS_PER_REQUEST = 500
MAX_SKUS = 100

PriceFen = Annotated[
    int, Strict(), Field(ge=1, le=MAX_PRICE_FEN, description="price in fen (分), ≥ 1")
]
ShippingFen = Annotated[
    int, Strict(), Field(ge=0, le=MAX_SHIPPING_FEN, description="shipping fee in fen")
]
Stock = Annotated[int, Strict(), Field(ge=0, le=MAX_UNITS, description="units that can be sold")]
Capacity = Annotated[int, Strict(), Field(ge=1, le=100_000, description="places in the slot")]
ValidDays = Annotated[
    int, Strict(), Field(ge=1, le=MAX_VALID_DAYS, description="days valid after purchase")
]
Delta = Annotated[int, Strict(), Field(ge=-MAX_UNITS, le=MAX_UNITS)]
SkuName = line(min_length=1, max_length=60)
Reason = line(min_length=1, max_length=200)
ImageUrl = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^(https?://|/)\S+$")]
MAX_IMAGES = 9
Images = Annotated[list[ImageUrl], Field(max_length=MAX_IMAGES)]
StoreIds = Annotated[list[Id], Field(min_length=1, max_length=200)]


class SkuIn(Schema):
    name: SkuName
    price_fen: PriceFen
    stock: Stock


class SkuUpdate(Schema):
    # Left out: unchanged; null: 422 (the columns cannot be empty).
    name: SkuName = None
    price_fen: PriceFen = None
    is_active: bool = None
    # Sets what can still be sold (available); audited with ``reason``.
    stock: Stock | None = None
    reason: ShortText = ""


class GoodsListingIn(Schema):
    kind: Literal["goods"]
    title: Name
    description: LongText = ""
    category_id: Id
    images: Images = []
    shipping_fee_fen: ShippingFen = 0
    skus: Annotated[list[SkuIn], Field(min_length=1, max_length=MAX_SKUS)]


class ServiceListingIn(Schema):
    kind: Literal["service"]
    title: Name
    description: LongText = ""
    category_id: Id
    images: Images = []
    price_fen: PriceFen
    original_price_fen: PriceFen
    store_ids: StoreIds
    valid_days: ValidDays | None = None
    valid_until: AwareDatetime | None = None
    stock: Stock | None = None  # None = unlimited
    per_user_limit: Quantity | None = None
    refund_anytime: bool = True
    auto_refund_on_expiry: bool = True
    requires_slot: bool = False
    # 团购详情: contents (their total may not be below the price) and rules of use.
    items: DealItems = []
    rules: DealRules | None = None


ListingIn = Annotated[GoodsListingIn | ServiceListingIn, Field(discriminator="kind")]


class ListingUpdate(Schema):
    """Fields of the other kind are refused (422) by the service."""

    # Left out: unchanged; null: 422 where the column cannot be empty.
    title: Name = None
    description: LongText = None
    category_id: Id = None
    images: Images = None
    # goods
    shipping_fee_fen: ShippingFen = None
    # service
    price_fen: PriceFen = None
    original_price_fen: PriceFen = None
    store_ids: StoreIds = None
    valid_days: ValidDays | None = None
    valid_until: AwareDatetime | None = None
    stock: Stock | None = None  # explicit null = unlimited
    stock_reason: ShortText = ""
    per_user_limit: Quantity | None = None  # explicit null = no limit
    refund_anytime: bool = None
    auto_refund_on_expiry: bool = None
    requires_slot: bool = None
    items: DealItems = None
    rules: DealRules | None = None  # explicit null = no rules


class SlotIn(Schema):
    store_id: Id
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    capacity: Capacity


SlotsIn = Annotated[list[SlotIn], Field(min_length=1, max_length=MAX_SLOTS_PER_REQUEST)]


class StockAdjustmentIn(Schema):
    """Exactly one target: a SKU, a slot, or (neither) a deal's own stock."""

    sku_id: Id | None = None
    slot_id: Id | None = None
    delta: Delta
    reason: Reason


# --- responses ------------------------------------------------------------------------------


class LevelsOut(Schema):
    total: int
    available: int
    held: int
    sold: int


class SkuOut(Schema):
    id: int
    name: str
    price_fen: int
    is_active: bool
    available: int
    in_stock: bool
    levels: LevelsOut | None = None  # staff only


class OpenStateOut(Schema):
    state: Literal["open", "closing_soon", "closed"]
    label: str  # 营业中 / 即将打烊 / 已打烊
    detail: str  # e.g. "22:00 打烊"


class StoreBrief(Schema):
    id: int
    name: str
    address: str
    city: str
    district: str
    lat: float
    lng: float
    phone: str
    opening_hours: str
    distance_m: int | None = None
    photos: list[str] = []
    open_state: OpenStateOut | None = None


class SlotOut(Schema):
    id: int
    store_id: int
    starts_at: datetime
    ends_at: datetime
    capacity: int
    remaining: int
    is_open: bool
    levels: LevelsOut | None = None  # staff only


class DealItemOut(Schema):
    name: str
    quantity: int
    unit_price_fen: int
    subtotal_fen: int


class RuleLine(Schema):
    label: str
    text: str


class MerchantBrief(Schema):
    id: int
    name: str


class RefundRules(Schema):
    refund_anytime: bool
    auto_refund_on_expiry: bool


class ListingSummary(Schema):
    id: int
    merchant_id: int
    kind: str
    title: str
    status: str
    category_id: int
    price_fen: int
    original_price_fen: int
    image: str | None
    requires_slot: bool
    sales_count: int
    rating: float | None
    rating_count: int
    updated_at: datetime


class ListingDetail(Schema):
    id: int
    kind: Literal["goods", "service"]
    status: Literal["draft", "published", "unpublished"]
    title: str
    description: str
    category_id: int
    images: list[str]
    merchant: MerchantBrief
    price_fen: int
    original_price_fen: int
    # goods
    shipping_fee_fen: int
    skus: list[SkuOut]
    # service
    stores: list[StoreBrief]
    valid_days: int | None
    valid_until: datetime | None
    per_user_limit: int | None
    requires_slot: bool
    refund_rules: RefundRules
    items: list[DealItemOut] = []
    items_total_fen: int = 0
    rules: DealRules | None = None
    rules_text: list[RuleLine] = []
    available: int | None  # a deal's own stock; None = unlimited (goods: sum of active SKUs)
    upcoming_slots: list[SlotOut]
    sales_count: int
    rating: float | None
    rating_count: int
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None
    stock_levels: LevelsOut | None = None  # staff only: a deal's own stock


class AdjustmentOut(Schema):
    id: int
    item_id: int
    sku_id: int | None
    slot_id: int | None
    delta: int
    total_after: int
    reason: str
    actor_user_id: int | None
    created_at: datetime


class AdjustmentResult(Schema):
    adjustment: AdjustmentOut
    levels: LevelsOut
