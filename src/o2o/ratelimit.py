"""Throttles that hold under concurrency and across processes (sign-in, voucher guessing).

An attempt is counted *before* it is evaluated, in one atomic statement that also returns the
new count: ``INSERT … ON CONFLICT (key) DO UPDATE SET count = count + 1 … RETURNING count`` on the
database, ``INCR`` + ``PEXPIRE`` in one Lua script on Redis (when ``O2O_REDIS_URL`` is set). The
caller compares the count with its limit; of 50 concurrent attempts against a limit of 5, exactly
5 see a count ≤ 5, so at most 5 are evaluated. Attempts that turn out not to count (a right
password, a real voucher) are handed back with :meth:`Counters.refund`.

Counters are fixed windows: the first hit of a key opens a window of ``window_seconds``; hits
after it has ended open a new one. Each hit runs in its own transaction, so the caller's rollback
cannot erase it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Integer, String, case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from o2o.config import Settings
from o2o.db import Base, Database, UTCDateTime
from o2o.timeutil import utcnow


class RateCounter(Base):
    """One throttle key's attempts in its current window."""

    __tablename__ = "rate_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    window_ends: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Counters(Protocol):
    def hit(self, keys: Sequence[str], window_seconds: int) -> list[int]:
        """Count one attempt on each key; the counts after it, in the same order."""

    def refund(self, keys: Sequence[str]) -> None:
        """Take back one attempt from each key (never below zero)."""

    def clear(self, keys: Sequence[str]) -> None:
        """Forget the keys."""

    def count(self, key: str) -> int:
        """The attempts in the key's current window."""


_T = RateCounter.__table__
_C = _T.c


class DatabaseCounters:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._insert: Any = postgresql.insert if db.dialect == "postgresql" else sqlite.insert

    def _upsert(self, key: str, now: datetime, ends: datetime) -> Any:
        stmt = self._insert(_T).values(key=key, count=1, window_ends=ends)
        expired = _C.window_ends <= now
        return stmt.on_conflict_do_update(
            index_elements=[_C.key],
            set_={
                "count": case((expired, 1), else_=_C.count + 1),
                "window_ends": case((expired, ends), else_=_C.window_ends),
            },
        ).returning(_C.count)

    def hit(self, keys: Sequence[str], window_seconds: int) -> list[int]:
        now = utcnow()
        ends = now + timedelta(seconds=window_seconds)
        with self.db.transaction() as session:
            # Keys in a fixed order: two requests hitting the same keys cannot deadlock.
            counts = {
                key: session.execute(self._upsert(key, now, ends)).scalar_one()
                for key in sorted(set(keys))
            }
        return [counts[key] for key in keys]

    def refund(self, keys: Sequence[str]) -> None:
        with self.db.transaction() as session:
            for key in sorted(set(keys)):
                session.execute(
                    update(_T)
                    .where(_C.key == key, _C.count > 0, _C.window_ends > utcnow())
                    .values(count=_C.count - 1)
                )

    def clear(self, keys: Sequence[str]) -> None:
        with self.db.transaction() as session:
            session.execute(delete(_T).where(_C.key.in_(sorted(set(keys)))))

    def count(self, key: str) -> int:
        with self.db.transaction(readonly=True) as session:
            return (
                session.scalar(select(_C.count).where(_C.key == key, _C.window_ends > utcnow()))
                or 0
            )


_HIT = """
local out = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('PEXPIRE', key, ARGV[1]) end
  out[i] = n
end
return out
"""
_REFUND = """
for _, key in ipairs(KEYS) do
  local n = tonumber(redis.call('GET', key) or '0')
  if n > 0 then redis.call('DECR', key) end
end
return 0
"""


class RedisCounters:
    """The same counters in Redis: one Lua script per hit, so INCR and its expiry are atomic."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = f"{prefix}:rl:"
        self._hit = client.register_script(_HIT)
        self._refund = client.register_script(_REFUND)

    def _keys(self, keys: Sequence[str]) -> list[str]:
        return [self.prefix + k for k in keys]

    def hit(self, keys: Sequence[str], window_seconds: int) -> list[int]:
        return [int(n) for n in self._hit(keys=self._keys(keys), args=[window_seconds * 1000])]

    def refund(self, keys: Sequence[str]) -> None:
        self._refund(keys=self._keys(keys))

    def clear(self, keys: Sequence[str]) -> None:
        if keys:
            self.client.delete(*self._keys(keys))

    def count(self, key: str) -> int:
        return int(self.client.get(self.prefix + key) or 0)


_redis_clients: dict[str, Any] = {}
_redis_lock = threading.Lock()


def redis_client(url: str) -> Any:
    """One client (connection pool) per URL and process."""
    with _redis_lock:
        client = _redis_clients.get(url)
        if client is None:
            import redis

            client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
            _redis_clients[url] = client
        return client


def counters(db: Database, settings: Settings) -> Counters:
    """Redis when configured, else the database."""
    if settings.redis_url:
        return RedisCounters(redis_client(settings.redis_url), settings.redis_key_prefix)
    return DatabaseCounters(db)


def purge_expired(db: Database) -> int:
    """Worker job: forget counters whose window ended (Redis expires its own keys)."""
    with db.transaction() as session:
        return session.execute(delete(_T).where(_C.window_ends < utcnow())).rowcount
