"""事件投递 (event outbox): one row per (event, after-commit handler), written in the transaction
that published the event, delivered by the worker (``o2o.outbox.service.drain``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from o2o.db import Base, BigIntId, UTCDateTime
from o2o.timeutil import utcnow

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
OUTBOX_STATUS_LABELS = {PENDING: "待投递", DELIVERED: "已投递", FAILED: "投递失败"}


class OutboxDelivery(Base):
    """One delivery of one event to one handler. ``failed``: retries used up (the operator
    sends it again); a row that failed once but has retries left stays ``pending`` with its
    ``last_error`` and ``attempts`` showing."""

    __tablename__ = "event_outbox"
    __table_args__ = (
        # The idempotency key (event_id:handler) is unique: one delivery per handler.
        UniqueConstraint("event_id", "handler", name="uq_event_outbox_event_id_handler"),
        # The drain: due pending rows, oldest first.
        Index("ix_event_outbox_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(32))
    event_name: Mapped[str] = mapped_column(String(60))
    event_version: Mapped[int] = mapped_column(Integer, default=1)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    handler: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(12), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str] = mapped_column(String(1000), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def key(self) -> str:
        return f"{self.event_id}:{self.handler}"
