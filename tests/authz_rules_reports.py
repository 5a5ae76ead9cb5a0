"""Authorization rules for the reports' routes (see tests/test_authorization.py)."""

from __future__ import annotations

from typing import Any


def rules(
    Rule: Any, EVERYONE: set, SIGNED_IN: set, A_MANAGERS: set, OPERATOR: set, a_params: Any
) -> dict[tuple[str, str], Any]:
    return {
        ("GET", "/api/v1/admin/reports/channels"): Rule(
            OPERATOR, query="?from=2026-03-01&to=2026-03-31"
        ),
        ("GET", "/api/v1/admin/reports/models"): Rule(OPERATOR, query="?format=csv"),
        ("GET", "/api/v1/merchants/{merchant_id}/reports/summary"): Rule(
            A_MANAGERS, a_params, query="?format=csv"
        ),
    }
