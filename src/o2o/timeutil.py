"""One home for time: the platform stores and compares aware UTC datetimes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

CHINA_TZ = timezone(timedelta(hours=8), name="Asia/Shanghai")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC (that is how the database keeps them)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def to_china(value: datetime) -> datetime:
    return as_utc(value).astimezone(CHINA_TZ)


def format_china(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return "" if value is None else to_china(value).strftime(fmt)
