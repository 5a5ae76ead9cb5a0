"""The status words a consumer reads, per order kind and status, and which amount is 实付."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from o2o.web.consumer_words import VOUCHER_WORDS, amount_label, order_word


@pytest.mark.parametrize(
    ("kind", "status", "word", "amount"),
    [
        ("service", "pending_payment", "待付款", "应付"),
        ("service", "paid", "待使用", "实付"),
        ("goods", "paid", "待发货", "实付"),
        ("goods", "shipped", "待收货", "实付"),
        ("service", "completed", "已完成", "实付"),
        ("goods", "refunding", "退款中", "实付"),
        ("service", "refunded", "已退款", "实付"),
        ("goods", "cancelled", "已取消", "订单金额"),
    ],
)
def test_order_words(kind: str, status: str, word: str, amount: str) -> None:
    order = SimpleNamespace(kind=kind, status=status)
    assert order_word(order) == word
    assert amount_label(order) == amount


def test_voucher_words() -> None:
    assert VOUCHER_WORDS == {
        "unused": "待使用",
        "redeemed": "已使用",
        "refunded": "已退款",
        "expired": "已过期",
    }
