"""Inventory as one mechanism: SKU stock, offer stock and time-slot capacity are all items.

Law 1 (DESIGN.md): ``available`` changes only through one conditional UPDATE; every unit is in
exactly one of available / held (unpaid orders) / sold, so available + held + sold == total.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from o2o.db import Base, BigIntId, UTCDateTime
from o2o.timeutil import utcnow


class InventoryItem(Base):
    __tablename__ = "inventory_items"
    __table_args__ = (
        CheckConstraint("available >= 0", name="available_not_negative"),
        CheckConstraint("held >= 0", name="held_not_negative"),
        CheckConstraint("sold >= 0", name="sold_not_negative"),
        CheckConstraint("available + held + sold = total", name="units_add_up"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    # What the units are: "sku", "offer" (a deal's own stock) or "slot".
    kind: Mapped[str] = mapped_column(String(10))
    # Whose units these are, e.g. "listing:12" (a listing's SKUs, slots and deal stock), so an
    # audit can find every item of an owner, including ones it no longer points at.
    ref: Mapped[str] = mapped_column(String(60), default="", index=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    available: Mapped[int] = mapped_column(Integer, default=0)
    held: Mapped[int] = mapped_column(Integer, default=0)
    sold: Mapped[int] = mapped_column(Integer, default=0)


class InventoryHold(Base):
    """Units held for an order: held → committed (paid) | released (cancelled/timeout);
    committed → returned (refunded while the units can still be sold again)."""

    __tablename__ = "inventory_holds"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("inventory_items.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12), default="held", index=True)
    # Who holds it, e.g. "order_line:42" (kept generic so flash sales can hold too).
    ref: Mapped[str] = mapped_column(String(60), default="", index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class InventoryAdjustment(Base):
    """Audit of every stock change a merchant makes by hand."""

    __tablename__ = "inventory_adjustments"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("inventory_items.id"), index=True)
    delta: Mapped[int] = mapped_column(Integer)
    total_after: Mapped[int] = mapped_column(Integer)
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
