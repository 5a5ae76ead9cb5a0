from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from o2o.db import Base, BigIntId, UTCDateTime
from o2o.timeutil import utcnow


class User(Base):
    """A person. Every user is a consumer; staff memberships and ``is_admin`` add roles."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    phone: Mapped[str] = mapped_column(String(11), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(200))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
