"""商品: listings of kind goods (with SKUs) or service (deals, with stores and maybe time slots)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from o2o.db import Base, BigIntId, UTCDateTime
from o2o.timeutil import utcnow

GOODS, SERVICE = "goods", "service"
DRAFT, PUBLISHED, UNPUBLISHED = "draft", "published", "unpublished"


class Listing(Base):
    __tablename__ = "listings"
    __table_args__ = (
        CheckConstraint("kind IN ('goods', 'service')", name="kind"),
        Index("ix_listings_status_kind", "status", "kind"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    title: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"), index=True)
    images: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(12), default=DRAFT)

    # Price shown in lists: a service's price; for goods the lowest active SKU price (derived
    # when SKUs change, so search can sort by price without a join).
    price_fen: Mapped[int] = mapped_column(Integer, default=0)
    original_price_fen: Mapped[int] = mapped_column(Integer, default=0)
    # goods
    shipping_fee_fen: Mapped[int] = mapped_column(Integer, default=0)
    # service (deal / 团购套餐)
    valid_days: Mapped[int | None] = mapped_column(Integer)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    per_user_limit: Mapped[int | None] = mapped_column(Integer)
    refund_anytime: Mapped[bool] = mapped_column(Boolean, default=True)
    auto_refund_on_expiry: Mapped[bool] = mapped_column(Boolean, default=True)
    requires_slot: Mapped[bool] = mapped_column(Boolean, default=False)
    # A deal's own stock; None = unlimited. (Goods stock lives on SKUs, slot capacity on slots.)
    inventory_item_id: Mapped[int | None] = mapped_column(ForeignKey("inventory_items.id"))
    # 团购详情 as data (o2o.catalog.deal_terms): what the deal contains (name, quantity, unit
    # price) and its rules (usable days and hours, excluded dates, booking, people, extras).
    deal_items: Mapped[list[dict[str, Any]]] = mapped_column(
        JSON, default=list, server_default=text("'[]'")
    )
    deal_rules: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    sales_count: Mapped[int] = mapped_column(Integer, default=0)
    rating_sum: Mapped[int] = mapped_column(Integer, default=0)
    rating_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    skus: Mapped[list[Sku]] = relationship(back_populates="listing", order_by="Sku.id")
    store_links: Mapped[list[ListingStore]] = relationship(cascade="all, delete-orphan")

    @property
    def store_ids(self) -> list[int]:
        return sorted(link.store_id for link in self.store_links)

    @property
    def rating(self) -> float | None:
        return round(self.rating_sum / self.rating_count, 1) if self.rating_count else None

    def snapshot(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "kind": self.kind}


class ListingStore(Base):
    """The stores of its merchant where a deal can be used."""

    __tablename__ = "listing_stores"

    listing_id: Mapped[int] = mapped_column(
        ForeignKey("listings.id", ondelete="CASCADE"), primary_key=True
    )
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"), primary_key=True, index=True)


class Sku(Base):
    """规格: a goods variant with its price and stock."""

    __tablename__ = "skus"
    __table_args__ = (CheckConstraint("price_fen >= 1", name="price_positive"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    listing_id: Mapped[int] = mapped_column(ForeignKey("listings.id"), index=True)
    name: Mapped[str] = mapped_column(String(60))
    price_fen: Mapped[int] = mapped_column(Integer)
    inventory_item_id: Mapped[int] = mapped_column(ForeignKey("inventory_items.id"))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)

    listing: Mapped[Listing] = relationship(back_populates="skus")


class TimeSlot(Base):
    """场次/时段: capacity of a service at one store for one time range."""

    __tablename__ = "time_slots"
    __table_args__ = (
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        Index("ix_time_slots_listing_starts", "listing_id", "starts_at"),
        # One slot per store and start time: a repeated bulk upload cannot double the capacity.
        UniqueConstraint("listing_id", "store_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    listing_id: Mapped[int] = mapped_column(ForeignKey("listings.id"))
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    inventory_item_id: Mapped[int] = mapped_column(ForeignKey("inventory_items.id"))
    is_open: Mapped[bool] = mapped_column(Boolean, default=True)
