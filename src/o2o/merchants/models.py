from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from o2o.db import Base, BigIntId, UTCDateTime
from o2o.timeutil import utcnow


class Category(Base):
    """类目: a tree; carries the default commission rate in basis points."""

    __tablename__ = "categories"
    __table_args__ = (CheckConstraint("commission_bp BETWEEN 0 AND 10000", name="commission_bp"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"), index=True)
    name: Mapped[str] = mapped_column(String(50))
    commission_bp: Mapped[int] = mapped_column(Integer, default=500)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    icon: Mapped[str] = mapped_column(String(20), default="")


class Merchant(Base):
    """商户: status pending → approved | rejected; approved ⇄ suspended."""

    __tablename__ = "merchants"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    contact_phone: Mapped[str] = mapped_column(String(20))
    license_no: Mapped[str] = mapped_column(String(50))
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    status_reason: Mapped[str] = mapped_column(String(500), default="")
    # Overrides the category's default commission when set (basis points).
    commission_bp: Mapped[int | None] = mapped_column(Integer)
    # WeChat Pay sub-merchant id for service-provider (partner) mode.
    sub_mchid: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reviewed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    stores: Mapped[list[Store]] = relationship(back_populates="merchant", order_by="Store.id")


class Store(Base):
    """门店: a physical place with GCJ-02 coordinates (stored as given)."""

    __tablename__ = "stores"
    __table_args__ = (Index("ix_stores_lat_lng", "lat", "lng"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(300))
    city: Mapped[str] = mapped_column(String(50))
    district: Mapped[str] = mapped_column(String(50))
    lat: Mapped[float] = mapped_column(Float)
    lng: Mapped[float] = mapped_column(Float)
    phone: Mapped[str] = mapped_column(String(20), default="")
    opening_hours: Mapped[str] = mapped_column(String(100), default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    merchant: Mapped[Merchant] = relationship(back_populates="stores")


class Membership(Base):
    """店员: a user acting for a merchant as owner, manager or clerk."""

    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "merchant_id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    stores: Mapped[list[MembershipStore]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def store_ids(self) -> list[int]:
        return sorted(s.store_id for s in self.stores)


class MembershipStore(Base):
    """The stores a clerk may act for."""

    __tablename__ = "membership_stores"

    membership_id: Mapped[int] = mapped_column(
        ForeignKey("memberships.id", ondelete="CASCADE"), primary_key=True
    )
    store_id: Mapped[int] = mapped_column(ForeignKey("stores.id"), primary_key=True)


class StaffInvitation(Base):
    """An invitation to act for a merchant (owner, manager or clerk): it becomes a membership
    only when the invited user accepts it. pending → accepted | declined | revoked."""

    __tablename__ = "staff_invitations"
    __table_args__ = (Index("ix_staff_invitations_user_status", "user_id", "status"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    role: Mapped[str] = mapped_column(String(20))
    store_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    invited_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MerchantReview(Base):
    """审核记录: every decision on a merchant (apply, approve, reject, suspend, resubmit), kept
    — the merchant row only shows the latest."""

    __tablename__ = "merchant_reviews"
    __table_args__ = (Index("ix_merchant_reviews_merchant_id_id", "merchant_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"))
    action: Mapped[str] = mapped_column(String(20))
    from_status: Mapped[str] = mapped_column(String(20), default="")
    to_status: Mapped[str] = mapped_column(String(20))
    actor_kind: Mapped[str] = mapped_column(String(10))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(String(500), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
