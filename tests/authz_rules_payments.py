"""Authorization rules for payment, notification, sandbox cashier and refund-console routes."""

from __future__ import annotations

from typing import Any

from tests.checkout_support import (
    abnormal_refund,
    failed_refund,
    order_for,
    signed_success,
    started_payment,
)

OWNER_ONLY = {"consumer"}


def _notification(w: Any) -> dict[str, Any]:
    _order_no, payment_no = started_payment(w.db, w)
    return signed_success(payment_no, w.db)


def rules(Rule, EVERYONE, SIGNED_IN, A_MANAGERS, OPERATOR, a_params) -> dict:
    return {
        ("POST", "/api/v1/payments/{payment_no}/pay"): Rule(
            OWNER_ONLY,
            lambda w: {"payment_no": order_for(w.db, w)[1]},
            body=lambda w: {"provider": "sandbox"},
        ),
        ("GET", "/api/v1/payments/{payment_no}"): Rule(
            OWNER_ONLY, lambda w: {"payment_no": order_for(w.db, w)[1]}
        ),
        # Providers are not users: the signature decides, for anyone who delivers it.
        ("POST", "/api/v1/payments/notify/{provider}"): Rule(
            EVERYONE, lambda w: {"provider": "sandbox"}, body=_notification
        ),
        # The sandbox cashier (on only with O2O_SANDBOX_PAYMENTS=true) is the payer's own:
        # anyone else who knows the payment number must not be able to mark it paid.
        ("GET", "/sandbox/cashier/{payment_no}"): Rule(
            OWNER_ONLY, lambda w: {"payment_no": started_payment(w.db, w)[1]}
        ),
        ("POST", "/sandbox/cashier/{payment_no}"): Rule(
            OWNER_ONLY,
            lambda w: {"payment_no": started_payment(w.db, w)[1]},
            body=lambda w: {"result": "success"},
        ),
        ("GET", "/api/v1/admin/refunds"): Rule(OPERATOR, query="?status=processing"),
        ("POST", "/api/v1/admin/refunds/{refund_no}/retry"): Rule(
            OPERATOR, lambda w: {"refund_no": failed_refund(w.db, w)}
        ),
        ("POST", "/api/v1/admin/refunds/{refund_no}/abnormal-refund"): Rule(
            OPERATOR,
            lambda w: {"refund_no": abnormal_refund(w.db, w)},
            body=lambda w: {"type": "MERCHANT_BANK_CARD"},
        ),
    }
