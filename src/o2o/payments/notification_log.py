"""What is kept of provider notifications, bounded, and the replay of those a crash left behind.

* **Rejected notifications** (bad signature, stale, undecryptable: anyone on the internet can
  send them) are kept only as evidence, never as a way to fill the database: a sample of the
  body (``REJECTED_SAMPLE_CHARS``) and a few headers; the same body again only counts
  (``repeat_count`` on the row already kept, matched by a fingerprint within a day); and past
  ``REJECTED_ROWS_PER_HOUR`` new rows an hour, further ones are only counted in the log.
* **Verified notifications** are stored before they are applied (``payments.service``), with
  the event itself (``event``), so that one a crash left in ``received`` can be applied again by
  the worker (:func:`replay_received`, job ``notification_replay``): applying is idempotent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from o2o.db import Database
from o2o.payments.models import PaymentNotification
from o2o.payments.providers import PaymentEvent, RefundEvent
from o2o.timeutil import utcnow

log = logging.getLogger(__name__)

REJECTED_SAMPLE_CHARS = 1024
REJECTED_HEADER_CHARS = 200
REJECTED_MAX_HEADERS = 12
REJECTED_ROWS_PER_HOUR = 200
REPEAT_WINDOW = timedelta(days=1)
# A verified notification still ``received`` this long after it arrived was not applied (the
# process died in between): the worker applies it.
REPLAY_AFTER = timedelta(minutes=1)
REPLAY_BATCH = 50

_N = PaymentNotification


# --- rejected --------------------------------------------------------------------------------


def _fingerprint(provider: str, reason: str, body: str) -> str:
    return hashlib.sha256(f"{provider}\0{reason}\0{body}".encode()).hexdigest()


def store_rejected(
    db: Database, *, provider: str, headers: Mapping[str, str], body: str, reason: str
) -> str:
    """Keep a rejected notification within bounds: ``"stored"``, ``"counted"`` (a repeat of a
    kept one) or ``"dropped"`` (over the hourly cap; logged)."""
    now = utcnow()
    fingerprint = _fingerprint(provider, reason, body)
    with db.transaction() as session:
        repeated = session.execute(
            update(_N)
            .where(
                _N.fingerprint == fingerprint,
                _N.result == "rejected",
                _N.received_at > now - REPEAT_WINDOW,
            )
            .values(repeat_count=_N.repeat_count + 1, processed_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if repeated:
            return "counted"
        recent = session.scalar(
            select(func.count()).where(
                _N.result == "rejected", _N.received_at > now - timedelta(hours=1)
            )
        )
        if (recent or 0) >= REJECTED_ROWS_PER_HOUR:
            log.warning("%s rejected notification not stored (hourly cap): %s", provider, reason)
            return "dropped"
        kept = dict(list(headers.items())[:REJECTED_MAX_HEADERS])
        session.add(
            _N(
                provider=provider[:20],
                headers={k[:100]: str(v)[:REJECTED_HEADER_CHARS] for k, v in kept.items()},
                body=body[:REJECTED_SAMPLE_CHARS],
                verified=False,
                result="rejected",
                detail=reason[:500],
                fingerprint=fingerprint,
                repeat_count=1,
                received_at=now,
                processed_at=now,
            )
        )
    return "stored"


# --- verified: the event, and its replay -----------------------------------------------------


# The event fields that are times: stored as ISO 8601 text in the JSON column, parsed back.
_TIME_FIELDS = ("paid_at", "accepted_at")


def event_json(event: PaymentEvent | RefundEvent) -> dict[str, Any]:
    """The event as stored with its notification (``raw`` is the body already kept)."""
    data = {k: v for k, v in dataclasses.asdict(event).items() if k != "raw"}
    data["kind"] = "payment" if isinstance(event, PaymentEvent) else "refund"
    for name in _TIME_FIELDS:
        if isinstance(data.get(name), datetime):
            data[name] = data[name].isoformat()
    return data


def event_from_json(data: Mapping[str, Any]) -> PaymentEvent | RefundEvent:
    fields = {k: v for k, v in data.items() if k != "kind"}
    for name in _TIME_FIELDS:
        if fields.get(name):
            fields[name] = datetime.fromisoformat(fields[name])
    if data.get("kind") == "refund":
        return RefundEvent(**fields)
    return PaymentEvent(**fields)


def replay_received(db: Database, *, now: datetime | None = None) -> list[tuple[int, ...]]:
    """Apply verified notifications left in ``received``; each in its own transaction, the row
    locked (SKIP LOCKED: several workers take different ones). The refunds each one asks for
    (late payments are refunded) are returned for the caller to submit."""
    from o2o.payments.service import apply_payment_event, apply_refund_event

    cutoff = (now or utcnow()) - REPLAY_AFTER
    with db.transaction(readonly=True) as session:
        ids = session.scalars(
            select(_N.id)
            .where(_N.result == "received", _N.verified.is_(True), _N.received_at < cutoff)
            .order_by(_N.id)
            .limit(REPLAY_BATCH)
        ).all()
    refunds: list[tuple[int, ...]] = []
    for notification_id in ids:
        with db.transaction() as session:
            record = session.scalar(
                select(_N)
                .where(_N.id == notification_id, _N.result == "received")
                .with_for_update(skip_locked=True)
            )
            if record is None:
                continue  # another worker has it, or it was applied meanwhile
            if not record.event:
                record.result, record.detail = "error", "stored without its event: cannot replay"
                record.processed_at = utcnow()
                continue
            event = event_from_json(record.event)
            if isinstance(event, PaymentEvent):
                applied = apply_payment_event(session, event)
            else:
                applied = apply_refund_event(session, event)
            record.result, record.detail = applied.result, f"replayed: {applied.detail}"[:500]
            record.processed_at = utcnow()
            log.warning("notification %s replayed: %s", notification_id, applied.result)
            refunds.append(applied.refund_ids)
    return refunds
