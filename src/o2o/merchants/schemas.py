from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, Strict, model_validator

from o2o.merchants.hours import StoreHours
from o2o.schemas import (
    BasisPoints,
    Id,
    Latitude,
    Longitude,
    LongText,
    Name,
    Phone,
    Schema,
    ShortText,
    Text,
    line,
)

# Mainland China, generously: GCJ-02 coordinates of a store must fall inside it.
CHINA_LAT = (3.5, 54.0)
CHINA_LNG = (73.0, 136.0)

ContactPhone = Annotated[str, Field(pattern=r"^(1[3-9][0-9]{9}|0[0-9]{2,3}-?[0-9]{7,8})$")]
# A store's phone as printed: ASCII digits, "+", "-" and spaces only.
StorePhone = Annotated[str, Field(max_length=20, pattern=r"^[0-9+ -]*$")]
Address = line(min_length=1, max_length=300)
PhotoUrl = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^(https?://|/)\S+$")]
StorePhotos = Annotated[list[PhotoUrl], Field(max_length=9)]
Place = line(min_length=1, max_length=50)
LicenseNo = Annotated[str, Field(min_length=6, max_length=30, pattern=r"^[0-9A-Za-z-]+$")]


def _strip_nonempty(v: str) -> str:
    if not v.strip():
        raise ValueError("不能为空")
    return v


class MerchantApply(Schema):
    name: Name
    contact_phone: ContactPhone
    license_no: LicenseNo
    category_id: Id | None = None
    description: LongText = ""


class MerchantUpdate(Schema):
    # Left out: unchanged; null: 422 where the column cannot be empty.
    name: Name = None
    contact_phone: ContactPhone = None
    license_no: LicenseNo = None
    category_id: Id | None = None
    description: LongText = None


class MerchantOut(Schema):
    id: int
    name: str
    contact_phone: str
    license_no: str
    category_id: int | None
    description: str
    status: Literal["pending", "approved", "rejected", "suspended"]
    status_reason: str
    commission_bp: int | None
    sub_mchid: str | None
    created_at: datetime
    reviewed_at: datetime | None


class MerchantPublic(Schema):
    id: int
    name: str
    category_id: int | None
    description: str
    status: str


class ReviewDecision(Schema):
    reason: Annotated[
        str, Field(min_length=1, max_length=500), AfterValidator(_strip_nonempty), Text
    ]


class MerchantSettings(Schema):
    """Operator-only settings of a merchant."""

    commission_bp: BasisPoints | None = None
    sub_mchid: Annotated[str, Field(pattern=r"^[0-9]{8,32}$")] | None = None


class StoreIn(Schema):
    name: Name
    address: Address
    city: Place
    district: Place
    lat: Latitude
    lng: Longitude
    phone: StorePhone = ""
    opening_hours: ShortText = ""
    # Structured hours (营业中/已打烊 need them); when given, opening_hours becomes their summary.
    hours: StoreHours | None = None
    photos: StorePhotos = []

    @model_validator(mode="after")
    def _in_china(self) -> StoreIn:
        check_in_china(self.lat, self.lng)
        return self


def check_in_china(lat: float | None, lng: float | None) -> None:
    if lat is not None and not CHINA_LAT[0] <= lat <= CHINA_LAT[1]:
        raise ValueError("纬度不在中国境内（GCJ-02）")
    if lng is not None and not CHINA_LNG[0] <= lng <= CHINA_LNG[1]:
        raise ValueError("经度不在中国境内（GCJ-02）")


class StoreUpdate(Schema):
    # Left out: unchanged; null: 422 (the columns cannot be empty).
    name: Name = None
    address: Address = None
    city: Place = None
    district: Place = None
    lat: Latitude = None
    lng: Longitude = None
    phone: StorePhone = None
    opening_hours: ShortText = None
    hours: StoreHours | None = None  # explicit null: no structured hours
    photos: StorePhotos = None
    is_active: bool = None

    @model_validator(mode="after")
    def _in_china(self) -> StoreUpdate:
        check_in_china(self.lat, self.lng)
        return self


class StoreOut(Schema):
    id: int
    merchant_id: int
    name: str
    address: str
    city: str
    district: str
    lat: float
    lng: float
    phone: str
    opening_hours: str
    is_active: bool
    hours: StoreHours | None = None
    photos: list[str] = []


class StaffIn(Schema):
    phone: Phone
    role: Literal["owner", "manager", "clerk"]
    store_ids: Annotated[list[Id], Field(max_length=200)] = []


class InvitationOut(Schema):
    id: int
    merchant_id: int
    merchant_name: str
    user_id: int
    phone: str
    name: str
    role: Literal["owner", "manager", "clerk"]
    store_ids: list[int]
    status: Literal["pending", "accepted", "declined", "revoked"]
    created_at: datetime


class StaffOut(Schema):
    user_id: int
    phone: str
    name: str
    role: str
    store_ids: list[int]


class CategoryIn(Schema):
    name: line(min_length=1, max_length=50)
    parent_id: Id | None = None
    commission_bp: BasisPoints = 500
    sort_order: Annotated[int, Strict(), Field(ge=0, le=10_000)] = 0
    icon: line(max_length=20) = ""


class CategoryUpdate(Schema):
    # Left out: unchanged; null: 422 (the columns cannot be empty).
    name: line(min_length=1, max_length=50) = None
    commission_bp: BasisPoints = None
    sort_order: Annotated[int, Strict(), Field(ge=0, le=10_000)] = None
    icon: line(max_length=20) = None


class CategoryOut(Schema):
    id: int
    parent_id: int | None
    name: str
    commission_bp: int
    sort_order: int
    icon: str
    children: list[CategoryOut] = []
