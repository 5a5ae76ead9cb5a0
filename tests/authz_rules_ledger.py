"""Authorization rules for the ledger's routes (see tests/test_authorization.py)."""

from __future__ import annotations

from typing import Any


def rules(
    Rule: Any, EVERYONE: set, SIGNED_IN: set, A_MANAGERS: set, OPERATOR: set, a_params: Any
) -> dict[tuple[str, str], Any]:
    return {
        ("GET", "/api/v1/admin/ledger/accounts"): Rule(OPERATOR),
        ("GET", "/api/v1/admin/ledger/transactions"): Rule(OPERATOR, query="?kind=payout"),
        ("GET", "/api/v1/merchants/{merchant_id}/ledger/balance"): Rule(A_MANAGERS, a_params),
    }
