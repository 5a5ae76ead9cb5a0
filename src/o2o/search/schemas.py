"""API shapes of search: listing hits and nearby stores."""

from __future__ import annotations

from typing import Literal

from o2o.schemas import Page, Schema


class MerchantRef(Schema):
    id: int
    name: str


class NearestStore(Schema):
    id: int
    name: str
    distance_m: int


class SearchHit(Schema):
    listing_id: int
    title: str
    kind: Literal["goods", "service"]
    price_fen: int
    original_price_fen: int
    merchant: MerchantRef
    nearest_store: NearestStore | None
    sales: int
    score: float
    rating: float | None
    rating_count: int


class NearbyStore(Schema):
    store_id: int
    name: str
    address: str
    district: str
    lat: float
    lng: float
    distance_m: int
    merchant: MerchantRef


SearchPage = Page[SearchHit]
NearbyPage = Page[NearbyStore]
