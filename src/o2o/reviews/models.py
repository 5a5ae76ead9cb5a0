"""评价: one review per order line, by the order's consumer, after consumption; one merchant
reply. Listing ratings live on ``listings.rating_sum/rating_count``; store and merchant ratings
in ``ratings`` (one row per subject, updated atomically)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from o2o.db import Base, BigIntId, UTCDateTime
from o2o.timeutil import utcnow

MERCHANT, STORE = "merchant", "store"
SUBJECT_TYPES = (MERCHANT, STORE)


class Review(Base):
    __tablename__ = "reviews"
    __table_args__ = (
        CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),
        Index("ix_reviews_listing_id_id", "listing_id", "id"),
        Index("ix_reviews_merchant_id_id", "merchant_id", "id"),
        Index("ix_reviews_store_id_id", "store_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    # Once per line, whatever runs concurrently.
    order_line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id"), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    listing_id: Mapped[int] = mapped_column(ForeignKey("listings.id"))
    # Services: the store where the order's voucher was redeemed; goods: none.
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    rating: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(String(1000), default="")
    reply: Mapped[str | None] = mapped_column(String(500))
    replied_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Rating(Base):
    """Rating aggregate of a merchant or a store (listings keep theirs on the listing row)."""

    __tablename__ = "ratings"
    __table_args__ = (
        CheckConstraint("subject_type IN ('merchant', 'store')", name="subject_type"),
    )

    subject_type: Mapped[str] = mapped_column(String(10), primary_key=True)
    subject_id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=False)
    rating_sum: Mapped[int] = mapped_column(Integer, default=0)
    rating_count: Mapped[int] = mapped_column(Integer, default=0)

    @property
    def rating(self) -> float | None:
        return round(self.rating_sum / self.rating_count, 1) if self.rating_count else None
