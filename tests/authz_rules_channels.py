"""Authorization rules for the channels' routes (see tests/test_authorization.py)."""

from __future__ import annotations

import itertools
from typing import Any

from o2o.channels.models import Channel

_codes = itertools.count(1)


def _channel_id(world: Any) -> dict[str, Any]:
    with world.db.transaction() as session:
        channel = Channel(code=f"authz-{next(_codes)}", name="测试渠道", kind="other")
        session.add(channel)
        session.flush()
        return {"channel_id": channel.id}


def rules(
    Rule: Any, EVERYONE: set, SIGNED_IN: set, A_MANAGERS: set, OPERATOR: set, a_params: Any
) -> dict[tuple[str, str], Any]:
    return {
        ("POST", "/api/v1/admin/channels"): Rule(
            OPERATOR,
            body=lambda w: {"code": f"new-{next(_codes)}", "name": "新渠道", "kind": "poster_qr"},
        ),
        ("GET", "/api/v1/admin/channels"): Rule(OPERATOR, query="?kind=other"),
        ("PATCH", "/api/v1/admin/channels/{channel_id}"): Rule(
            OPERATOR, _channel_id, body=lambda w: {"is_active": False}
        ),
    }
