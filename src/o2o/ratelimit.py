"""Throttling of failures (login, voucher guessing) that holds across processes.

Failures are rows in the database, written in their own transaction so that the caller's
rollback cannot erase them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Index, String, delete, func, select
from sqlalchemy.orm import Mapped, mapped_column

from o2o.db import Base, BigIntId, Database, UTCDateTime
from o2o.errors import TooManyRequests
from o2o.timeutil import utcnow


class RateEvent(Base):
    __tablename__ = "rate_events"
    __table_args__ = (Index("ix_rate_events_key_at", "key", "created_at"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    key: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def failures_within(db: Database, key: str, window_seconds: int) -> int:
    since = utcnow() - timedelta(seconds=window_seconds)
    with db.transaction(readonly=True) as session:
        return (
            session.scalar(
                select(func.count()).where(RateEvent.key == key, RateEvent.created_at >= since)
            )
            or 0
        )


def ensure_not_throttled(
    db: Database, key: str, *, limit: int, window_seconds: int, detail: str
) -> None:
    if failures_within(db, key, window_seconds) >= limit:
        raise TooManyRequests(detail, headers={"Retry-After": str(window_seconds)})


def record_failure(db: Database, key: str) -> None:
    with db.transaction() as session:
        session.add(RateEvent(key=key, created_at=utcnow()))


def clear(db: Database, key: str) -> None:
    with db.transaction() as session:
        session.execute(delete(RateEvent).where(RateEvent.key == key))


def purge_older_than(db: Database, seconds: int) -> int:
    """Worker job: forget failures older than any window in use."""
    cutoff = utcnow() - timedelta(seconds=seconds)
    with db.transaction() as session:
        return session.execute(delete(RateEvent).where(RateEvent.created_at < cutoff)).rowcount
