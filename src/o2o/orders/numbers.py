"""Public numbers: readable (China date first), unique (unique index), not guessable.

``20261126`` + 12 digits from ``secrets``: 10^12 per day keeps the chance of a collision
negligible, and a collision is only a unique-index error that the caller retries.
All numbers fit WeChat Pay's ``out_trade_no`` / ``out_refund_no`` (6–32 of [0-9A-Za-z_-|*]).
"""

from __future__ import annotations

import secrets

from o2o.timeutil import to_china, utcnow

RANDOM_DIGITS = 12
RANDOM_SPACE = 10**RANDOM_DIGITS


def new_number(prefix: str = "") -> str:
    today = to_china(utcnow()).strftime("%Y%m%d")
    return f"{prefix}{today}{secrets.randbelow(RANDOM_SPACE):0{RANDOM_DIGITS}d}"


def new_order_no() -> str:
    return new_number()


def new_checkout_no() -> str:
    return new_number("C")


def new_payment_no() -> str:
    return new_number("P")


def new_refund_no() -> str:
    return new_number("R")
