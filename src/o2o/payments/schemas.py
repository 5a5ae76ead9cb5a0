"""API shapes for payments and refunds."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from o2o.schemas import Schema

ProviderName = Literal["sandbox", "wechatpay"]
PayMethod = Literal["cashier", "jsapi", "native", "h5"]
RefundStatus = Literal["pending", "processing", "succeeded", "failed", "abnormal"]
AbnormalRefundType = Literal["USER_BANK_CARD", "MERCHANT_BANK_CARD"]


class PayIn(Schema):
    provider: ProviderName = "sandbox"
    # sandbox: cashier; wechatpay: jsapi (inside WeChat: the payer's openid comes from their
    # own WeChat sign-in, never from the request), h5 (a phone browser) or native (QR code).
    method: PayMethod | None = None


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
    # 退款异常: reported when; how the operator had it handled (异常退款), by whom, when.
    abnormal_at: datetime | None = None
    abnormal_handling: str = ""
    abnormal_handled_at: datetime | None = None


class AbnormalRefundIn(Schema):
    """异常退款: where an abnormal refund's money goes. ``USER_BANK_CARD`` needs the payer's bank
    (WeChat Pay's bank type, e.g. ``ICBC_DEBIT``), card number and name — sent to WeChat Pay
    encrypted, never stored; ``MERCHANT_BANK_CARD`` sends it back to the merchant's bank account
    (to be paid to the consumer outside WeChat Pay)."""

    type: AbnormalRefundType
    bank_type: (
        Annotated[str, Field(min_length=2, max_length=32, pattern=r"^[A-Z][A-Z0-9_]+$")] | None
    ) = None
    bank_account: Annotated[str, Field(min_length=8, max_length=30, pattern=r"^\d+$")] | None = None
    real_name: Annotated[str, Field(min_length=1, max_length=50)] | None = None
