"""``Idempotency-Key`` for POSTs that must not happen twice (checkout, payment, refund, redemption).

The key row is inserted first, inside the caller's transaction: a concurrent duplicate waits on
the unique index and, once the first commits, gets the stored response instead of doing the work
again. The same key with a different body is a 409.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from o2o.db import Base, BigIntId, Database, UTCDateTime
from o2o.errors import Conflict, ValidationFailed
from o2o.timeutil import utcnow

MAX_KEY_LENGTH = 100


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    scope: Mapped[str] = mapped_column(String(120))
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer, default=0)
    response: Mapped[Any] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def fingerprint(payload: Any) -> str:
    return hashlib.sha256(
        json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False).encode()
    ).hexdigest()


def run_once(
    db: Database,
    *,
    scope: str,
    key: str | None,
    payload: Any,
    action: Callable[[Session], tuple[int, Any]],
) -> tuple[int, Any]:
    """Run ``action(session) -> (status, json_body)`` once per ``(scope, key)``.

    Without a key the action simply runs in its own transaction.
    """
    if key is None:
        with db.transaction() as session:
            return action(session)
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationFailed("Idempotency-Key 格式无效", field="Idempotency-Key")
    request_hash = fingerprint(payload)
    for attempt in range(3):
        # A new key is the common case: claim it at once; look for a stored answer only after
        # the claim failed (a replay, or a duplicate that was in flight).
        if attempt:
            stored = _stored(db, scope, key)
            if stored is not None:
                return _replay(stored, request_hash)
        try:
            with db.transaction() as session:
                record = IdempotencyRecord(scope=scope, key=key, request_hash=request_hash)
                session.add(record)
                session.flush()  # claims the key; a concurrent duplicate waits here
                status, body = action(session)
                record.status_code = status
                record.response = body
                return status, body
        except IntegrityError:
            continue  # someone else claimed the key first: replay theirs
    raise Conflict("同一幂等键的请求正在处理中，请稍后重试", code="idempotency_in_progress")


def _stored(db: Database, scope: str, key: str) -> IdempotencyRecord | None:
    with db.transaction(readonly=True) as session:
        return session.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.scope == scope, IdempotencyRecord.key == key
            )
        )


def _replay(stored: IdempotencyRecord, request_hash: str) -> tuple[int, Any]:
    if stored.request_hash != request_hash:
        raise Conflict("该幂等键已用于另一个不同的请求", code="idempotency_key_reused")
    return stored.status_code, stored.response
