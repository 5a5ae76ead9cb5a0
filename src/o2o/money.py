"""One home for money: amounts are integer fen (分) everywhere; never floats."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

# Upper bound keeps every amount inside a 64-bit column with room for sums (¥10 billion).
MAX_FEN = 1_000_000_000_000

Fen = Annotated[int, Field(ge=0, le=MAX_FEN, description="amount in fen (分), integer")]
PositiveFen = Annotated[int, Field(ge=1, le=MAX_FEN, description="amount in fen (分), at least 1")]

BASIS_POINTS = 10_000


def format_yuan(fen: int) -> str:
    """``12345`` → ``¥123.45`` (exact: integer arithmetic only)."""
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}¥{fen // 100}.{fen % 100:02d}"


def apply_rate(amount_fen: int, rate_bp: int) -> int:
    """Commission in fen for ``rate_bp`` basis points, rounded half up to the fen."""
    return (amount_fen * rate_bp + BASIS_POINTS // 2) // BASIS_POINTS


def split_proportionally(total_fen: int, weights: list[int]) -> list[int]:
    """Split ``total_fen`` over ``weights`` so the parts sum exactly to the total.

    Largest-remainder method: the fen lost to rounding go to the largest remainders.
    """
    if not weights:
        return []
    weight_sum = sum(weights)
    if weight_sum == 0:
        parts = [0] * len(weights)
        parts[0] = total_fen
        return parts
    parts = [total_fen * w // weight_sum for w in weights]
    remainders = sorted(
        range(len(weights)), key=lambda i: (total_fen * weights[i]) % weight_sum, reverse=True
    )
    for i in remainders[: total_fen - sum(parts)]:
        parts[i] += 1
    return parts
