"""The payment provider interface: the core (payments/service.py) talks to every provider —
the embedded ``sandbox`` and WeChat Pay v3 — only through these shapes.

Providers never touch the database: they turn our requests into provider calls and provider
messages (notifications, query answers) into ``PaymentEvent`` / ``RefundEvent``, which the core
applies once (DESIGN.md law 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

# Payment event statuses a provider may report.
EVENT_SUCCEEDED, EVENT_FAILED, EVENT_CLOSED, EVENT_PENDING = (
    "succeeded",
    "failed",
    "closed",
    "pending",
)
# Refund event statuses. ``abnormal``: the provider took the money from the merchant account
# but could not pay it into the payer's (WeChat Pay's 退款异常): not a failure, nothing to release;
# the operator has it sent elsewhere (异常退款).
REFUND_PROCESSING, REFUND_SUCCEEDED, REFUND_FAILED = "processing", "succeeded", "failed"
REFUND_ABNORMAL = "abnormal"


@dataclass(frozen=True)
class SubOrder:
    """One merchant's order inside a payment (a sub-order of a WeChat Pay 合单 payment)."""

    order_no: str
    amount_fen: int
    description: str
    sub_mchid: str | None = None  # WeChat Pay partner mode: the merchant's sub-merchant id


@dataclass(frozen=True)
class PaymentRequest:
    payment_no: str
    amount_fen: int
    description: str
    expires_at: datetime
    sub_orders: tuple[SubOrder, ...]
    currency: str = "CNY"

    @property
    def is_combined(self) -> bool:
        return len(self.sub_orders) > 1


@dataclass(frozen=True)
class RefundRequest:
    refund_no: str
    payment_no: str
    order_no: str
    amount_fen: int
    # What was paid for the trade being refunded (the sub-order for combined payments).
    trade_total_fen: int
    reason: str = ""
    sub_mchid: str | None = None
    combined: bool = False


@dataclass(frozen=True)
class PaymentEvent:
    """What a provider says about a payment (from a notification or an active query)."""

    provider: str
    payment_no: str
    status: str
    amount_fen: int
    currency: str = "CNY"
    provider_txn_id: str = ""
    paid_at: datetime | None = None
    # Per-order transaction ids for combined payments: order_no → provider txn id.
    sub_txn_ids: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RefundEvent:
    provider: str
    refund_no: str
    status: str
    amount_fen: int
    provider_refund_id: str = ""
    # When the provider accepted the refund (WeChat Pay create_time), when it says so.
    accepted_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProfitSharingEvent:
    """What a provider says about a profit-sharing order (WeChat Pay 分账动账 notifications): one
    receiver's share moved (``status`` ``succeeded``) or came back (``returned``)."""

    provider: str
    out_order_no: str
    status: str
    receiver_type: str
    receiver_account: str
    amount_fen: int
    transaction_id: str = ""
    provider_order_id: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)


SHARING_SUCCEEDED, SHARING_RETURNED = "succeeded", "returned"


class NotificationRejected(Exception):
    """A notification failed verification (signature, serial, stale timestamp, decryption)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ProviderUnavailable(Exception):
    """The provider could not be reached or asked us to retry; the call may be repeated with the
    same payment/refund number."""


class ProviderRefused(Exception):
    """The provider refused the request for good (e.g. invalid amount)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


@dataclass(frozen=True)
class NotificationAnswer:
    """The HTTP answer a provider expects to a notification."""

    status_code: int
    body: bytes = b""
    media_type: str = "application/json"


class PaymentProvider(Protocol):
    name: str

    def prepare(
        self,
        payment: PaymentRequest,
        *,
        method: str,
        payer_openid: str | None = None,
        payer_appid: str | None = None,
        client_ip: str | None = None,
    ) -> dict[str, Any]:
        """What the client needs to pay: a cashier URL (sandbox), JSAPI parameters (for the
        payer's openid in app ``payer_appid``), a Native ``code_url`` or an H5 ``h5_url``
        (WeChat Pay). Idempotent for the same payment_no."""
        ...

    def query(self, payment: PaymentRequest) -> PaymentEvent:
        """Active query of the payment's state at the provider."""
        ...

    def close(self, payment: PaymentRequest) -> None:
        """Close an unpaid payment at the provider (payment timeout)."""
        ...

    def refund(self, refund: RefundRequest) -> RefundEvent:
        """Ask for a refund; repeated with the same refund_no until the provider accepts."""
        ...

    def query_refund(self, refund: RefundRequest) -> RefundEvent: ...

    def parse_notification(
        self, headers: Mapping[str, str], body: bytes
    ) -> PaymentEvent | RefundEvent | ProfitSharingEvent:
        """Verify and decode a notification; raise NotificationRejected if it is not genuine."""
        ...

    def answer(self, ok: bool, message: str = "") -> NotificationAnswer: ...
