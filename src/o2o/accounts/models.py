from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from o2o.db import Base, BigIntId, UTCDateTime
from o2o.timeutil import utcnow


class User(Base):
    """A person. Every user is a consumer; staff memberships and ``is_admin`` add roles."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    # Empty for a light account made by WeChat sign-in until a phone is bound.
    phone: Mapped[str | None] = mapped_column(String(11), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(200))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UserSession(Base):
    """A signed-in session: a page cookie or an API bearer token points at one of these.

    Signing out deletes it; a password change, a password reset and "sign out everywhere" delete
    all of a user's. A cookie or token whose row is gone is worth nothing, at once, in every
    process (it is checked on every request)."""

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(10))  # "page" | "api"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
