"""One home for time: the platform stores and compares aware UTC datetimes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta, timezone

CHINA_TZ = timezone(timedelta(hours=8), name="Asia/Shanghai")

# Set only by ``clock_at`` (demo history): the time ``utcnow`` reports in this context.
_clock: ContextVar[datetime | None] = ContextVar("o2o_clock", default=None)


def utcnow() -> datetime:
    fixed = _clock.get()
    return datetime.now(UTC) if fixed is None else fixed


@contextmanager
def clock_at(moment: datetime) -> Iterator[None]:
    """Within the block, ``utcnow()`` is ``moment`` (this thread / task only). For replaying
    the real services in the past (demo history: every row, ledger posting and number gets the
    time it would have had); never on a request path."""
    token = _clock.set(as_utc(moment))
    try:
        yield
    finally:
        _clock.reset(token)


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC (that is how the database keeps them)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def to_china(value: datetime) -> datetime:
    return as_utc(value).astimezone(CHINA_TZ)


def format_china(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return "" if value is None else to_china(value).strftime(fmt)
