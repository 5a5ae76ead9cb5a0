from __future__ import annotations

from datetime import datetime
from typing import Any

from o2o.schemas import Page, Schema


class OutboxDeliveryOut(Schema):
    id: int
    key: str
    event_id: str
    event_name: str
    event_version: int
    handler: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str
    created_at: datetime
    delivered_at: datetime | None
    failed_at: datetime | None
    payload: dict[str, Any]


class OutboxSummaryOut(Schema):
    pending: int
    retrying: int
    delivered: int
    failed: int


class OutboxPage(Page[OutboxDeliveryOut]):
    summary: OutboxSummaryOut


class WiringRowOut(Schema):
    event: str
    when: str
    handler: str
