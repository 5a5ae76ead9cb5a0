"""Traffic entry points (渠道/流量入口) and the visits they bring."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from o2o.db import Base, BigIntId, UTCDateTime
from o2o.timeutil import utcnow

CHANNEL_KINDS = ("superapp_entry", "partner_site", "poster_qr", "search_ad", "other")


class Channel(Base):
    """A traffic entry point. ``code`` is what links carry (``?ch=CODE``); it never changes."""

    __tablename__ = "channels"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('superapp_entry', 'partner_site', 'poster_qr', 'search_ad', 'other')",
            name="kind",
        ),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Visit(Base):
    """One arrival through a channel by an anonymous visitor (cookie ``o2o_vid`` or header
    ``X-Visitor-Id``), and the signed-in user when known."""

    __tablename__ = "visits"
    __table_args__ = (
        Index("ix_visits_visitor_id_created_at", "visitor_id", "created_at"),
        Index("ix_visits_user_id_created_at", "user_id", "created_at"),
        Index("ix_visits_channel_id_created_at", "channel_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    visitor_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    path: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
