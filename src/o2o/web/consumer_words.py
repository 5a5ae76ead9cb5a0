"""Status words a consumer expects (the words of Meituan and Taobao), not the state machine's:
an unused deal is 待使用 rather than 已支付, a paid parcel 待发货, a shipped one 待收货."""

from __future__ import annotations

from typing import Any

ORDER_WORDS = {
    "pending_payment": "待付款",
    "shipped": "待收货",
    "completed": "已完成",
    "refunding": "退款中",
    "refunded": "已退款",
    "cancelled": "已取消",
}
VOUCHER_WORDS = {
    "unused": "待使用",
    "redeemed": "已使用",
    "refunded": "已退款",
    "expired": "已过期",
}


def order_word(order: Any) -> str:
    if order.status == "paid":
        return "待使用" if order.kind == "service" else "待发货"
    return ORDER_WORDS.get(order.status, order.status)


def amount_label(order: Any) -> str:
    """实付 only for money actually paid: a cancelled or unpaid order shows 订单金额 / 应付."""
    if order.status == "cancelled":
        return "订单金额"
    if order.status == "pending_payment":
        return "应付"
    return "实付"
