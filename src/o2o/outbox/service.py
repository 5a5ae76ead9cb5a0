"""Writing and delivering the outbox.

``enqueue`` runs inside the publishing transaction (``o2o.events.publish``): the rows commit or
roll back with the change, so an event of a rolled-back change is never delivered.

``drain`` (the worker's ``event_outbox`` job) delivers due rows one at a time, each in its own
transaction that holds the row's lock (PostgreSQL ``FOR UPDATE SKIP LOCKED``: several workers
and API processes take different rows; SQLite has one writer). The handler runs in a savepoint
of that transaction and the row is marked delivered in it: what a handler writes to the database
commits exactly once with the mark. A worker killed mid-delivery commits nothing, the lock goes
with its connection and the row is delivered again: at least once for anything outside the
database — ``Delivery.key`` (``{event_id}:{handler}``) is the idempotency key to dedupe on.
A failure is retried after 5 s, 10 s, 20 s … (at most an hour apart); after ``MAX_ATTEMPTS`` the
row is ``failed`` and shown to the operator (admin 事件投递, ``GET /api/v1/admin/outbox``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from o2o import events, wiring
from o2o.db import Database
from o2o.errors import Conflict, NotFound
from o2o.outbox.models import DELIVERED, FAILED, PENDING, OutboxDelivery
from o2o.timeutil import utcnow

log = logging.getLogger(__name__)

RETRY_FIRST = timedelta(seconds=5)
RETRY_MAX = timedelta(hours=1)
MAX_ATTEMPTS = 12
_INSERT = insert(OutboxDelivery.__table__)


@dataclass(frozen=True)
class Delivery:
    """What an after-commit handler is told besides the event."""

    key: str  # stable across retries: the handler's idempotency key
    attempt: int  # 1 for the first try


def enqueue(session: Session, event: events.Event, handlers: Iterable[str]) -> None:
    now = utcnow()
    payload = event.payload()
    session.execute(
        _INSERT,
        [
            {
                "event_id": event.event_id,
                "event_name": event.name,
                "event_version": event.version,
                "payload": payload,
                "handler": handler,
                "status": PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "last_error": "",
                "created_at": now,
            }
            for handler in handlers
        ],
    )


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failure: 5 s, 10 s, 20 s … at most an hour."""
    return min(RETRY_FIRST * (2 ** max(attempts - 1, 0)), RETRY_MAX)


def _claim(session: Session, now: datetime) -> OutboxDelivery | None:
    return session.scalar(
        select(OutboxDelivery)
        .where(OutboxDelivery.status == PENDING, OutboxDelivery.next_attempt_at <= now)
        .order_by(OutboxDelivery.next_attempt_at, OutboxDelivery.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


def deliver_one(db: Database, *, now: datetime | None = None) -> str | None:
    """Take one due row and deliver it: "delivered", "retry", "failed", or None (none due)."""
    with db.transaction() as session:
        row = _claim(session, now or utcnow())
        if row is None:
            return None
        row.attempts += 1
        handler = wiring.after_commit_handler(row.event_name, row.handler)
        try:
            if handler is None:
                raise LookupError(f"handler {row.handler!r} is not wired for {row.event_name}")
            event = events.from_payload(row.event_name, row.payload)
            with session.begin_nested():
                handler(session, event, Delivery(key=row.key, attempt=row.attempts))
        except Exception as exc:
            at = utcnow()
            row.last_error = f"{type(exc).__name__}: {exc}"[:1000]
            if row.attempts >= MAX_ATTEMPTS:
                row.status = FAILED
                row.failed_at = at
                log.error("outbox %s (%s) failed for good: %s", row.id, row.key, exc)
                return "failed"
            row.next_attempt_at = at + backoff(row.attempts)
            log.warning("outbox %s (%s) attempt %s failed: %s", row.id, row.key, row.attempts, exc)
            return "retry"
        row.status = DELIVERED
        row.delivered_at = utcnow()
        return "delivered"


def drain(db: Database, *, now: datetime | None = None, limit: int = 200) -> int:
    """Deliver due rows until none is left (or ``limit``). Returns how many were attempted."""
    done = 0
    while done < limit and deliver_one(db, now=now) is not None:
        done += 1
    return done


# --- the operator ------------------------------------------------------------------------------


def summary(session: Session) -> dict[str, int]:
    counts = dict(
        session.execute(
            select(OutboxDelivery.status, func.count()).group_by(OutboxDelivery.status)
        ).all()
    )
    retrying = session.scalar(
        select(func.count()).where(OutboxDelivery.status == PENDING, OutboxDelivery.attempts > 0)
    )
    return {
        "pending": int(counts.get(PENDING, 0)),
        "retrying": int(retrying or 0),
        "delivered": int(counts.get(DELIVERED, 0)),
        "failed": int(counts.get(FAILED, 0)),
    }


def list_deliveries(
    session: Session,
    *,
    status: str | None = None,
    with_errors: bool = False,
    limit: int = 50,
    before_id: int | None = None,
) -> Sequence[OutboxDelivery]:
    stmt = select(OutboxDelivery).order_by(OutboxDelivery.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(OutboxDelivery.status == status)
    if with_errors:
        stmt = stmt.where(OutboxDelivery.last_error != "")
    if before_id:
        stmt = stmt.where(OutboxDelivery.id < before_id)
    return session.scalars(stmt).all()


def retry(session: Session, delivery_id: int) -> OutboxDelivery:
    """The operator sends a failed delivery again (same key): attempts start over."""
    row = session.scalar(
        select(OutboxDelivery).where(OutboxDelivery.id == delivery_id).with_for_update()
    )
    if row is None:
        raise NotFound("投递记录不存在", code="outbox_delivery_not_found")
    if row.status != FAILED:
        raise Conflict("只有投递失败的记录可以重新投递", code="outbox_not_failed")
    row.status = PENDING
    row.attempts = 0
    row.next_attempt_at = utcnow()
    row.failed_at = None
    session.flush()
    return row
