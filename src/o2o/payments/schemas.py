"""API shapes for payments and refunds."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from o2o.schemas import Schema

ProviderName = Literal["sandbox", "wechatpay"]
PayMethod = Literal["cashier", "jsapi", "native"]
RefundStatus = Literal["pending", "processing", "succeeded", "failed"]


class PayIn(Schema):
    provider: ProviderName = "sandbox"
    # sandbox: cashier; wechatpay: jsapi (inside WeChat, needs openid) or native (QR code).
    method: PayMethod | None = None
    openid: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\w\-]+$")] | None = None


class PaymentOut(Schema):
    payment_no: str
    amount_fen: int
    currency: str
    status: str
    status_label: str
    provider: str | None
    method: str | None
    expires_at: datetime
    paid_at: datetime | None
    closed_at: datetime | None
    resolution: str
    order_nos: list[str]


class SandboxResultIn(Schema):
    result: Literal["success", "fail"]


class SandboxResultOut(Schema):
    payment_no: str
    status: str


class RefundAdminOut(Schema):
    refund_no: str
    order_no: str
    payment_no: str
    provider: str
    amount_fen: int
    status: str
    status_label: str
    reason: str
    initiator: str
    attempts: int
    last_error: str
    provider_refund_id: str
    created_at: datetime
    accepted_at: datetime | None
    succeeded_at: datetime | None
    failed_at: datetime | None
    next_attempt_at: datetime
    # Open for more than an hour: someone should look (a refund shown as done must be done).
    stuck: bool
