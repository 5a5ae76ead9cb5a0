"""Authorization rules for the event outbox's operator routes (see tests/test_authorization.py)."""

from __future__ import annotations

from typing import Any

from o2o.outbox.models import FAILED, OutboxDelivery


def failed_delivery(w: Any) -> dict[str, Any]:
    with w.db.transaction() as session:
        row = OutboxDelivery(
            event_id="e" * 32,
            event_name="order.paid",
            payload={},
            handler="authz",
            status=FAILED,
            attempts=12,
            last_error="boom",
        )
        session.add(row)
        session.flush()
        return {"delivery_id": row.id}


def rules(
    Rule: Any, EVERYONE: set, SIGNED_IN: set, A_MANAGERS: set, OPERATOR: set, a_params: Any
) -> dict[tuple[str, str], Any]:
    return {
        ("GET", "/api/v1/admin/outbox"): Rule(OPERATOR, query="?status=failed"),
        ("GET", "/api/v1/admin/outbox/wiring"): Rule(OPERATOR),
        ("POST", "/api/v1/admin/outbox/{delivery_id}/retry"): Rule(OPERATOR, failed_delivery),
    }
