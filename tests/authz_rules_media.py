"""Authorization rules for photo uploads (loaded by tests/test_authorization.py)."""

from __future__ import annotations

from typing import Any

from tests import media_support as pics


def rules(
    Rule: Any, everyone: Any, signed_in: Any, a_managers: Any, operator: Any, a_params: Any
) -> dict[tuple[str, str], Any]:
    return {
        ("POST", "/api/v1/merchants/{merchant_id}/media"): Rule(
            a_managers, a_params, files=lambda w: {"file": ("shop.png", pics.png(), "image/png")}
        ),
    }
