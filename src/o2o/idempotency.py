"""``Idempotency-Key`` for POSTs that must not happen twice (checkout, payment, refund, redemption).

The key row is claimed first, inside the action's transaction, with ``INSERT … ON CONFLICT DO
NOTHING``: a concurrent duplicate waits on the unique index and, once the first commits, finds
nothing inserted and gets the stored response instead of doing the work again (if the first rolls
back, the duplicate's insert goes through and it does the work). The same key with a different
body is a 409. Claim and answer are two prebuilt Core statements: this runs on every checkout,
where the ORM's unit of work cost more than the SQL itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, UniqueConstraint, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
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


_KEYS = IdempotencyRecord.__table__
# The claim: a row id when the key was free, nothing when someone holds (or held) it.
_CLAIM = {
    dialect.__name__.rsplit(".", 1)[-1]: dialect.insert(_KEYS)
    .on_conflict_do_nothing(index_elements=["scope", "key"])
    .returning(_KEYS.c.id)
    for dialect in (postgresql, sqlite)
}
_ANSWER = (
    _KEYS.update()
    .where(_KEYS.c.id == bindparam("record_id"))
    .values(
        status_code=bindparam("answer_status", type_=_KEYS.c.status_code.type),
        response=bindparam("answer_body", type_=_KEYS.c.response.type),
    )
)


# session.info keys: the claimed record of this transaction, and the answer already stored.
_RECORD = "o2o_idempotency_record"
_ANSWERED = "o2o_idempotency_answered"


def answer_early(session: Session, status: int, body: Any) -> None:
    """Store the action's answer now, from inside the action, ahead of its last statements.

    For an action that ends holding a hot row lock (checkout's stock decrements): answering
    before them keeps that round trip out of the time the lock is held. ``run_once`` then
    writes nothing after the action unless it returns something else. If a later statement
    fails, the transaction (answer included) rolls back. A no-op without an Idempotency-Key.
    """
    record_id = session.info.get(_RECORD)
    if record_id is None:
        return
    session.connection().execute(
        _ANSWER, {"record_id": record_id, "answer_status": status, "answer_body": body}
    )
    session.info[_ANSWERED] = (status, body)


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
    claim = _CLAIM[db.dialect]
    for _attempt in range(3):
        # A new key is the common case: claim it at once; look for a stored answer only when
        # the claim found the key taken (a replay, or a duplicate that was in flight).
        try:
            with db.transaction() as session:
                conn = session.connection()
                record_id = conn.execute(
                    claim,
                    {
                        "scope": scope,
                        "key": key,
                        "request_hash": request_hash,
                        "status_code": 0,
                        "created_at": utcnow(),
                    },
                ).scalar()
                if record_id is not None:
                    session.info[_RECORD] = record_id
                    status, body = action(session)
                    if session.info.get(_ANSWERED) != (status, body):
                        conn.execute(
                            _ANSWER,
                            {"record_id": record_id, "answer_status": status, "answer_body": body},
                        )
                    return status, body
        except IntegrityError:
            continue  # the action's own insert collided (e.g. a drawn number): try again
        stored = _stored(db, scope, key)
        if stored is not None:
            return _replay(stored, request_hash)
        # The holder rolled back between our claim and our read: claim again.
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
