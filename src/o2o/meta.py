"""Small key/value facts about the installation (e.g. whether demo data was loaded)."""

from __future__ import annotations

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, Session, mapped_column

from o2o.db import Base


class MetaValue(Base):
    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text, default="")


def get_value(session: Session, key: str) -> str | None:
    row = session.get(MetaValue, key)
    return None if row is None else row.value


def set_value(session: Session, key: str, value: str) -> None:
    row = session.get(MetaValue, key)
    if row is None:
        session.add(MetaValue(key=key, value=value))
    else:
        row.value = value
    session.flush()
