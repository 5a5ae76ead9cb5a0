"""One home for money: amounts are integer fen (分) everywhere; never floats."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from pydantic import Field, Strict

# Upper bound keeps every amount inside a 64-bit column with room for sums (¥10 billion).
MAX_FEN = 1_000_000_000_000

# Strict: a JSON number, never "100" or true (o2o.schemas explains; page forms convert text).
Fen = Annotated[int, Strict(), Field(ge=0, le=MAX_FEN, description="amount in fen (分), integer")]
PositiveFen = Annotated[
    int, Strict(), Field(ge=1, le=MAX_FEN, description="amount in fen (分), at least 1")
]

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


_YUAN_INPUT = re.compile(r"^(\d{1,12})(?:\.(\d*))?$", re.ASCII)


def parse_yuan(text: str) -> int:
    """What a person types in a price box → fen, exactly (no floats): ``"12.5"`` → ``1250``,
    ``"0.10"`` → ``10``, ``"¥1,280"`` → ``128000``. ValueError (in Chinese) otherwise."""
    # NFKC: full-width digits and points typed with a Chinese IME ("１２．５") count as ASCII.
    cleaned = unicodedata.normalize("NFKC", text).strip().lstrip("¥￥").replace(",", "").strip()
    if cleaned.startswith("-"):
        raise ValueError("金额不能为负数")
    match = _YUAN_INPUT.match(cleaned)
    if not match:
        raise ValueError("请输入金额，如 12.50")
    whole, fraction = match.group(1), match.group(2) or ""
    if fraction[2:].strip("0"):
        raise ValueError("金额最多两位小数（精确到分）")
    fen = int(whole) * 100 + int(fraction[:2].ljust(2, "0"))
    if fen > MAX_FEN:
        raise ValueError("金额过大")
    return fen
