"""The embedded ``sandbox`` provider: a new user can buy end to end with no external account.

It behaves like a real provider as far as the core can tell: the cashier page produces a
notification signed with HMAC-SHA256 (key derived from the app secret), which enters through
the same path as WeChat Pay's (``payments.service.handle_notification``); a tampered or stale one
is rejected. Refunds are accepted as ``processing`` and reported ``succeeded`` when queried (the
worker's refund sweep) or by a signed refund notification — never at once, like a real bank.

Notification body (JSON)::

    {"id", "create_time" (unix seconds), "event_type": "payment" | "refund",
     "resource": {...}, "signature": hex HMAC-SHA256 over the canonical JSON of the rest}

The signature lives in the body (not headers) so any HTTP client can replay one verbatim.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from o2o.payments.providers import (
    EVENT_FAILED,
    EVENT_PENDING,
    EVENT_SUCCEEDED,
    REFUND_FAILED,
    REFUND_PROCESSING,
    REFUND_SUCCEEDED,
    NotificationAnswer,
    NotificationRejected,
    PaymentEvent,
    PaymentRequest,
    RefundEvent,
    RefundRequest,
)

PROVIDER_NAME = "sandbox"
CASHIER_PATH = "/sandbox/cashier/{payment_no}"
# Like WeChat Pay: a notification more than 5 minutes off our clock is refused.
MAX_SKEW_SECONDS = 300
_KEY_LABEL = b"o2o-sandbox-payments-v1"


def derive_key(app_secret: str) -> bytes:
    """The sandbox signing key: the app secret never signs anything directly."""
    return hmac.new(app_secret.encode(), _KEY_LABEL, hashlib.sha256).digest()


def _canonical(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class SandboxProvider:
    name = PROVIDER_NAME

    def __init__(self, app_secret: str, *, clock: Callable[[], float] = time.time) -> None:
        self._key = derive_key(app_secret)
        self._clock = clock

    # --- the provider interface ------------------------------------------------------------

    def prepare(
        self,
        payment: PaymentRequest,
        *,
        method: str = "cashier",
        payer_openid: str | None = None,
        payer_appid: str | None = None,
        client_ip: str | None = None,
    ) -> dict[str, Any]:
        if method != "cashier":
            raise ValueError("the sandbox only has a cashier page (method 'cashier')")
        return {"cashier_url": CASHIER_PATH.format(payment_no=payment.payment_no)}

    def query(self, payment: PaymentRequest) -> PaymentEvent:
        # The sandbox keeps no state: what happened is only known from its notifications.
        return PaymentEvent(self.name, payment.payment_no, EVENT_PENDING, 0, payment.currency)

    def close(self, payment: PaymentRequest) -> None:
        return None

    def refund(self, refund: RefundRequest) -> RefundEvent:
        return RefundEvent(
            self.name,
            refund.refund_no,
            REFUND_PROCESSING,
            refund.amount_fen,
            provider_refund_id=self._refund_id(refund.refund_no),
        )

    def query_refund(self, refund: RefundRequest) -> RefundEvent:
        return RefundEvent(
            self.name,
            refund.refund_no,
            REFUND_SUCCEEDED,
            refund.amount_fen,
            provider_refund_id=self._refund_id(refund.refund_no),
        )

    def apply_abnormal_refund(
        self, refund: RefundRequest, *, provider_refund_id: str, kind: str, **_bank: str | None
    ) -> RefundEvent:
        """异常退款 in the sandbox: accepted, on its way again (a query then says it arrived)."""
        return RefundEvent(
            self.name,
            refund.refund_no,
            REFUND_PROCESSING,
            refund.amount_fen,
            provider_refund_id=provider_refund_id or self._refund_id(refund.refund_no),
        )

    def parse_notification(
        self, headers: Mapping[str, str], body: bytes
    ) -> PaymentEvent | RefundEvent:
        try:
            message = json.loads(body)
            signature = message.pop("signature")
            resource = message["resource"]
            created = int(message["create_time"])
            event_type = message["event_type"]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise NotificationRejected("malformed: not a sandbox notification") from exc
        expected = hmac.new(self._key, _canonical(message), hashlib.sha256).hexdigest()
        if not isinstance(signature, str) or not hmac.compare_digest(signature, expected):
            raise NotificationRejected("signature: does not verify")
        if abs(self._clock() - created) > MAX_SKEW_SECONDS:
            raise NotificationRejected("stale: timestamp more than 5 minutes off")
        try:
            if event_type == "payment":
                paid_at = resource.get("paid_at")
                return PaymentEvent(
                    provider=self.name,
                    payment_no=str(resource["payment_no"]),
                    status=str(resource["status"]),
                    amount_fen=int(resource["amount_fen"]),
                    currency=str(resource.get("currency", "CNY")),
                    provider_txn_id=str(resource.get("txn_id", "")),
                    paid_at=datetime.fromtimestamp(int(paid_at), UTC) if paid_at else None,
                    raw=message,
                )
            if event_type == "refund":
                return RefundEvent(
                    provider=self.name,
                    refund_no=str(resource["refund_no"]),
                    status=str(resource["status"]),
                    amount_fen=int(resource["amount_fen"]),
                    provider_refund_id=str(resource.get("refund_id", "")),
                    raw=message,
                )
        except (ValueError, TypeError, KeyError) as exc:
            raise NotificationRejected("malformed: resource fields") from exc
        raise NotificationRejected(f"unsupported: event_type {event_type!r}")

    def answer(self, ok: bool, message: str = "") -> NotificationAnswer:
        if ok:
            return NotificationAnswer(200, b'{"code":"SUCCESS"}')
        body = json.dumps({"code": "FAIL", "message": message or "失败"}, ensure_ascii=False)
        return NotificationAnswer(400, body.encode())

    # --- the sandbox "bank": signed notifications ------------------------------------------

    def _refund_id(self, refund_no: str) -> str:
        return "SR" + hashlib.sha256(self._key + refund_no.encode()).hexdigest()[:24]

    def sign(self, event_type: str, resource: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
        message: dict[str, Any] = {
            "id": secrets.token_hex(12),
            "create_time": int(self._clock()),
            "event_type": event_type,
            "resource": dict(resource),
        }
        message["signature"] = hmac.new(self._key, _canonical(message), hashlib.sha256).hexdigest()
        return {"content-type": "application/json"}, _canonical(message)

    def payment_notification(
        self, payment_no: str, amount_fen: int, *, success: bool = True, currency: str = "CNY"
    ) -> tuple[dict[str, str], bytes]:
        """What the cashier sends when the consumer presses 支付成功 / 支付失败."""
        now = int(self._clock())
        return self.sign(
            "payment",
            {
                "payment_no": payment_no,
                "status": EVENT_SUCCEEDED if success else EVENT_FAILED,
                "amount_fen": amount_fen,
                "currency": currency,
                "txn_id": f"SB{payment_no}" if success else "",
                "paid_at": now if success else None,
            },
        )

    def refund_notification(
        self, refund_no: str, amount_fen: int, *, success: bool = True
    ) -> tuple[dict[str, str], bytes]:
        return self.sign(
            "refund",
            {
                "refund_no": refund_no,
                "status": REFUND_SUCCEEDED if success else REFUND_FAILED,
                "amount_fen": amount_fen,
                "refund_id": self._refund_id(refund_no),
            },
        )
