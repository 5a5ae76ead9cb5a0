"""Authorization rules for the search routes: public, like a shop window."""

from __future__ import annotations

from typing import Any


def rules(
    Rule: Any, EVERYONE: Any, SIGNED_IN: Any, A_MANAGERS: Any, OPERATOR: Any, a_params: Any
) -> dict[tuple[str, str], Any]:
    return {
        ("GET", "/api/v1/search"): Rule(
            EVERYONE, query="?q=火锅&lat=22.53&lng=113.93&radius_m=3000"
        ),
        ("GET", "/api/v1/stores/nearby"): Rule(EVERYONE, query="?lat=22.53&lng=113.93&q=火锅"),
    }
