"""The payment core: starting a payment, applying provider events exactly once, timeouts,
refunds. Providers are reached only through ``o2o.payments.providers`` shapes.

Law 3 (DESIGN.md) — a payment is applied at most once:
* every raw notification is stored (its own transaction) before it is applied;
* applying locks the payment row (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE``
  serialises writers), checks amount and currency, and moves the payment along
  ``PAYMENT_STATUS`` — a replay, an out-of-order or a concurrent duplicate finds it already
  moved and changes nothing;
* a crash between storing and applying loses nothing: the provider delivers again (we only
  answer success after the apply committed), and the timeout sweep asks the provider first.

Providers are never called while a database transaction (and so a row lock) is open.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from o2o import events
from o2o.config import Settings
from o2o.db import Database
from o2o.errors import AppError, Conflict, NotFound, ValidationFailed
from o2o.events import BY_PROVIDER, BY_WORKER, USER, Who
from o2o.inventory import service as inventory
from o2o.merchants.models import Merchant
from o2o.orders import service as orders
from o2o.orders.models import (
    CANCELLED,
    CANCELLED_BY_CONSUMER,
    CANCELLED_BY_TIMEOUT,
    GOODS,
    ORDER_STATUS,
    PENDING_PAYMENT,
    REFUNDING,
    Order,
    OrderLine,
)
from o2o.orders.numbers import new_refund_no
from o2o.payments import registry
from o2o.payments.models import (
    AUTO_REFUNDED,
    CLOSED,
    CREATED,
    PAYABLE,
    PAYMENT_STATUS,
    PENDING,
    REFUND_ABNORMAL,
    REFUND_OPEN,
    REFUND_PENDING,
    REFUND_STATUS,
    REFUND_SUCCEEDED,
    REFUND_SWEPT,
    REVIVED,
    SUCCEEDED,
    Payment,
    PaymentNotification,
    Refund,
)
from o2o.payments.notification_log import event_json, store_rejected
from o2o.payments.providers import (
    EVENT_FAILED,
    EVENT_SUCCEEDED,
    REFUND_FAILED,
    NotificationAnswer,
    NotificationRejected,
    PaymentEvent,
    PaymentProvider,
    PaymentRequest,
    ProfitSharingEvent,
    ProviderRefused,
    ProviderUnavailable,
    RefundEvent,
    RefundRequest,
    SubOrder,
)
from o2o.payments.providers import (
    REFUND_ABNORMAL as EVENT_REFUND_ABNORMAL,
)
from o2o.payments.providers import (
    REFUND_PROCESSING as EVENT_REFUND_PROCESSING,
)
from o2o.payments.providers import (
    REFUND_SUCCEEDED as EVENT_REFUND_SUCCEEDED,
)
from o2o.timeutil import utcnow
from o2o.wechat import service as wechat_identities

log = logging.getLogger(__name__)

MAX_NOTIFICATION_BYTES = 64 * 1024
# Active query (GET payment): only once the payment is this old, and not more often than this.
ACTIVE_QUERY_AFTER = timedelta(minutes=1)
ACTIVE_QUERY_EVERY = timedelta(seconds=10)
# Refund retries: 5 s, 10 s, 20 s … at most an hour apart. A refund the provider has accepted
# is queried on the same schedule until it says the money arrived.
REFUND_RETRY_FIRST = timedelta(seconds=5)
REFUND_RETRY_MAX = timedelta(hours=1)
# A refund open for longer than this is shown to the operator as stuck.
REFUND_STUCK_AFTER = timedelta(hours=1)
# An abnormal refund is asked about this often (the operator may handle it in the merchant
# platform instead of here).
ABNORMAL_QUERY_EVERY = timedelta(hours=1)
SENSITIVE_HEADERS = frozenset({"authorization", "cookie", "x-api-key"})

# The two hooks other domains give the payment core, set by ``o2o.wiring.install`` (events go
# through ``o2o.events`` instead):
# - applies a provider's profit-sharing event (分账动账) and says what became of it ("applied",
#   "duplicate", "unknown" …): (db, settings, event) -> str; the settlement domain's. Unset, the
#   event is recorded and ignored;
# - vetoes on the consumer's full refund, (session, order) -> None raising Conflict: the
#   shipping domain refuses once any line of the order has shipped.
profit_sharing_applier: Callable[[Database, Settings, ProfitSharingEvent], str] | None = None
full_refund_checks: tuple[Callable[[Session, Order], None], ...] = ()


class ProviderUnavailableError(AppError):
    status, code, title = 503, "provider_unavailable", "支付服务暂不可用"


class ProviderRefusedError(AppError):
    status, code, title = 409, "provider_refused", "支付机构拒绝了请求"


# --- reading and locking ---------------------------------------------------------------------


def lock_payment(
    session: Session, *, payment_no: str | None = None, payment_id: int | None = None
) -> Payment | None:
    stmt = select(Payment).with_for_update().execution_options(populate_existing=True)
    if payment_no is not None:
        stmt = stmt.where(Payment.payment_no == payment_no)
    else:
        stmt = stmt.where(Payment.id == payment_id)
    return session.scalar(stmt)


def get_own_payment(session: Session, user_id: int, payment_no: str) -> Payment:
    payment = session.scalar(select(Payment).where(Payment.payment_no == payment_no))
    if payment is None or payment.user_id != user_id:
        raise NotFound("支付单不存在", code="payment_not_found")
    return payment


def payment_request(session: Session, payment: Payment) -> PaymentRequest:
    """The provider's view of a payment: its orders are the sub-orders (合单)."""
    its_orders = orders.orders_of_payment(session, payment.id)
    merchants = {
        m.id: m
        for m in session.scalars(
            select(Merchant).where(Merchant.id.in_({o.merchant_id for o in its_orders}))
        )
    }
    lines = orders.lines_by_order(session, [o.id for o in its_orders])
    subs = []
    for order in its_orders:
        merchant = merchants[order.merchant_id]
        first = lines[order.id][0].title if lines[order.id] else "订单"
        more = "等" if len(lines[order.id]) > 1 else ""
        subs.append(
            SubOrder(
                order_no=order.order_no,
                amount_fen=order.payable_fen,
                description=f"{merchant.name}-{first}{more}",
                sub_mchid=merchant.sub_mchid,
            )
        )
    description = subs[0].description if len(subs) == 1 else f"{len(subs)}个商户的订单"
    return PaymentRequest(
        payment_no=payment.payment_no,
        amount_fen=payment.amount_fen,
        description=description,
        expires_at=payment.expires_at,
        sub_orders=tuple(subs),
        currency=payment.currency,
    )


def order_nos(session: Session, payment_id: int) -> list[str]:
    return list(
        session.scalars(
            select(Order.order_no).where(Order.payment_id == payment_id).order_by(Order.id)
        )
    )


# --- paying ----------------------------------------------------------------------------------

DEFAULT_METHODS = {registry.SANDBOX: "cashier", registry.WECHATPAY: "jsapi"}


def start_payment(
    db: Database,
    settings: Settings,
    *,
    user_id: int,
    payment_no: str,
    provider_name: str,
    method: str | None = None,
    client_ip: str | None = None,
) -> dict[str, Any]:
    """The consumer pays: fix the provider on the payment, then ask the provider (outside the
    transaction) for what the client needs — a cashier URL, JSAPI parameters, a QR code URL, an
    H5 URL. A JSAPI payer's openid is the consumer's own WeChat identity for an app id the
    provider can pay for (``payer_appids``), never one a client sends."""
    provider = registry.get_provider(provider_name, settings)
    payer_appids: list[str] = list(getattr(provider, "payer_appids", list)())
    now = utcnow()
    with db.transaction() as session:
        payment = get_own_payment(session, user_id, payment_no)
        payer = wechat_identities.openid_for(session, user_id, payer_appids)
        if method is None:
            method = "jsapi" if payer else ("native" if payer_appids else None)
            method = method or DEFAULT_METHODS.get(provider_name, "cashier")
        if method == "jsapi" and payer_appids and payer is None:
            raise Conflict(
                "请在微信中打开页面完成支付（需要微信授权登录）", code="wechat_identity_required"
            )
        payment = lock_payment(session, payment_id=payment.id)
        assert payment is not None
        next_status = PAYMENT_STATUS.next_state(payment.status, "start")
        if payment.expires_at <= now:
            raise Conflict("支付已超时，订单将自动取消", code="payment_expired")
        if payment.provider is not None and payment.provider != provider_name:
            # One provider per payment: two started providers could both take the money.
            raise Conflict(
                f"该支付单已选择「{registry.PROVIDER_LABELS.get(payment.provider)}」",
                code="provider_locked",
            )
        payment.status = next_status
        payment.provider = provider_name
        payment.method = method
        payment.started_at = payment.started_at or now
        payment.updated_at = now
        request = payment_request(session, payment)
    payer_args: dict[str, Any] = {}
    if method == "jsapi" and payer is not None:
        payer_args = {"payer_openid": payer[1], "payer_appid": payer[0]}
    try:
        prepared = provider.prepare(request, method=method, client_ip=client_ip, **payer_args)
    except ProviderUnavailable as exc:
        raise ProviderUnavailableError("支付服务暂时无法连接，请稍后重试") from exc
    except ProviderRefused as exc:
        raise ProviderRefusedError(exc.message, provider_code=exc.code) from exc
    except ValueError as exc:
        raise ValidationFailed(str(exc), code="payment_method_invalid", field="method") from exc
    return {
        "payment_no": payment_no,
        "provider": provider_name,
        "method": method,
        "amount_fen": request.amount_fen,
        "expires_at": request.expires_at.isoformat(),
        **prepared,
    }


# --- applying events (the hot path of law 3) ---------------------------------------------------


@dataclass(frozen=True)
class Applied:
    result: str
    detail: str = ""
    refund_ids: tuple[int, ...] = ()


def apply_payment_event(session: Session, event: PaymentEvent) -> Applied:
    """Apply what a (verified) provider says about a payment, once."""
    payment = lock_payment(session, payment_no=event.payment_no)
    if payment is None:
        return Applied("unknown", "no such payment")
    if payment.provider != event.provider:
        return Applied("rejected", f"payment uses provider {payment.provider!r}")
    now = utcnow()
    if event.status == EVENT_SUCCEEDED:
        if event.amount_fen != payment.amount_fen or event.currency != payment.currency:
            log.error(
                "payment %s: provider says %s %s, we expect %s %s — not applied",
                payment.payment_no,
                event.amount_fen,
                event.currency,
                payment.amount_fen,
                payment.currency,
            )
            return Applied(
                "amount_mismatch",
                f"paid {event.amount_fen} {event.currency}, "
                f"expected {payment.amount_fen} {payment.currency}",
            )
        if payment.status == SUCCEEDED:
            same = not event.provider_txn_id or event.provider_txn_id == payment.provider_txn_id
            return Applied("duplicate", "" if same else f"other txn {event.provider_txn_id}")
        was = payment.status
        payment.status = PAYMENT_STATUS.next_state(was, "succeed")
        payment.paid_at = event.paid_at or now
        payment.provider_txn_id = event.provider_txn_id[:64]
        payment.updated_at = now
        paid_orders = orders.orders_of_payment(session, payment.id)
        _record_txn_ids(paid_orders, event)
        # The money is here, whatever becomes of the orders: the event first (the ledger posts
        # it before any order is paid, revived or refunded).
        events.publish(
            session,
            events.PaymentSucceeded(
                payment_id=payment.id, payment_no=payment.payment_no, amount_fen=payment.amount_fen
            ),
        )
        if was != CLOSED:
            orders.mark_paid(session, [o for o in paid_orders if o.status == PENDING_PAYMENT], now)
            return Applied("applied")
        return _late_money(session, payment, now)
    if event.status == EVENT_FAILED:
        if payment.status in (CREATED, PENDING):
            payment.status = PAYMENT_STATUS.next_state(payment.status, "fail")
            payment.failure_reason = str(event.raw.get("reason", ""))[:200]
            payment.updated_at = now
            return Applied("failed_recorded")
        return Applied("ignored", f"payment is {payment.status}")
    return Applied("ignored", f"event status {event.status}")


def _record_txn_ids(paid_orders: Sequence[Order], event: PaymentEvent) -> None:
    """Each order keeps the provider's transaction id for its money: a combined payment's
    sub-order id (合单: one per order) or else the payment's own id."""
    for order in paid_orders:
        txn = event.sub_txn_ids.get(order.order_no) or event.provider_txn_id
        if txn:
            order.provider_txn_id = txn[:64]


def _late_money(session: Session, payment: Payment, now: datetime) -> Applied:
    """Money for a payment already closed: revive orders the timeout cancelled if their stock
    can be held again now; otherwise (or if the consumer cancelled) send the money back."""
    cancelled = orders.orders_of_payment(session, payment.id, status=CANCELLED)
    by_timeout = all(o.cancel_reason == CANCELLED_BY_TIMEOUT for o in cancelled)
    if cancelled and by_timeout and orders.revive(session, cancelled, now):
        payment.resolution = REVIVED
        log.warning("payment %s arrived after closing: orders revived", payment.payment_no)
        return Applied("revived")
    payment.resolution = AUTO_REFUNDED
    refund_ids = []
    for order in cancelled:
        remaining = order.payable_fen - order.refunded_fen
        if remaining > 0:
            refund = request_refund(
                session,
                order,
                amount_fen=remaining,
                reason="订单已取消后才收到付款，自动退款",
                initiator="system:late_payment",
            )
            refund_ids.append(refund.id)
    log.warning("payment %s arrived after closing: refunded automatically", payment.payment_no)
    return Applied("auto_refunded", refund_ids=tuple(refund_ids))


def apply_refund_event(session: Session, event: RefundEvent) -> Applied:
    """Apply what a provider says about a refund, once."""
    refund = session.scalar(
        select(Refund)
        .where(Refund.refund_no == event.refund_no)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if refund is None:
        return Applied("unknown", "no such refund")
    if refund.provider != event.provider:
        return Applied("rejected", f"refund uses provider {refund.provider!r}")
    now = utcnow()
    if event.provider_refund_id and not refund.provider_refund_id:
        refund.provider_refund_id = event.provider_refund_id[:64]
    if refund.accepted_at is None and event.status != REFUND_FAILED:
        # The provider has it: the day its bill lists the refund on (发起退款成功时间).
        refund.accepted_at = event.accepted_at or now
    if event.status == EVENT_REFUND_SUCCEEDED:
        if refund.status == REFUND_SUCCEEDED:
            return Applied("duplicate")
        if event.amount_fen != refund.amount_fen:
            log.error("refund %s: provider says %s fen", refund.refund_no, event.amount_fen)
            return Applied("amount_mismatch", f"refunded {event.amount_fen}")
        if not REFUND_STATUS.can(refund.status, "succeed"):
            # Marked failed here but the provider says the money went back: the operator decides.
            log.error(
                "refund %s: succeeded at the provider but %s here", refund.refund_no, refund.status
            )
            return Applied("needs_attention", f"refund is {refund.status}")
        refund.status = REFUND_STATUS.next_state(refund.status, "succeed")
        refund.succeeded_at = now
        refund.updated_at = now
        _after_refund_succeeded(session, refund, now)
        return Applied("applied")
    if event.status == EVENT_REFUND_PROCESSING:
        if refund.status == REFUND_PENDING:
            refund.status = REFUND_STATUS.next_state(refund.status, "accept")
            refund.updated_at = now
            return Applied("applied")
        return Applied("duplicate")
    if event.status == EVENT_REFUND_ABNORMAL:
        if refund.status in REFUND_OPEN:
            _refund_abnormal(session, refund, str(event.raw.get("reason", "")), now)
            return Applied("applied")
        return Applied("duplicate" if refund.status == REFUND_ABNORMAL else "ignored")
    if event.status == REFUND_FAILED:
        if refund.status in REFUND_SWEPT:
            _fail_refund(session, refund, str(event.raw.get("reason", "provider says failed")), now)
            return Applied("applied")
        return Applied("duplicate" if refund.status == REFUND_FAILED else "ignored")
    return Applied("ignored", f"event status {event.status}")


def _after_refund_succeeded(session: Session, refund: Refund, now: datetime) -> None:
    order = orders.lock_order(session, refund.order_id)
    back = session.scalar(
        select(func.coalesce(func.sum(Refund.amount_fen), 0)).where(
            Refund.order_id == order.id, Refund.status == REFUND_SUCCEEDED
        )
    )
    if back >= order.payable_fen and ORDER_STATUS.can(order.status, "all_refunded"):
        unshipped_goods = order.kind == GOODS and order.shipped_at is None
        order.refunded_at = now
        orders.set_status(session, order, "all_refunded", by=BY_PROVIDER, now=now)
        if unshipped_goods:
            # The units never left the warehouse: they can be sold again.
            lines = orders.lines_by_order(session, [order.id])[order.id]
            for hold_id, _item_id in orders.holds_in_lock_order(session, lines):
                inventory.give_back(session, hold_id)
    session.flush()
    events.publish(
        session,
        events.RefundSucceeded(
            refund_id=refund.id,
            refund_no=refund.refund_no,
            order_id=order.id,
            amount_fen=refund.amount_fen,
        ),
    )


def _refund_abnormal(session: Session, refund: Refund, reason: str, now: datetime) -> None:
    """退款异常: the money has left the merchant account, so nothing is released — the amount
    stays reserved and the order stays as it is; the operator sees it (admin 退款) and has it
    sent to a bank card (异常退款). The sweep asks the provider now and then meanwhile."""
    refund.status = REFUND_STATUS.next_state(refund.status, "abnormal")
    refund.abnormal_at = now
    refund.updated_at = now
    refund.last_error = (reason or "退款异常")[:500]
    refund.next_attempt_at = now + ABNORMAL_QUERY_EVERY
    log.error(
        "refund %s is abnormal: %s — the operator must apply 异常退款", refund.refund_no, reason
    )
    session.flush()
    events.publish(
        session,
        events.RefundAbnormal(
            refund_id=refund.id,
            refund_no=refund.refund_no,
            order_id=refund.order_id,
            reason=refund.last_error,
        ),
    )


def _fail_refund(session: Session, refund: Refund, error: str, now: datetime) -> None:
    """The provider refused for good: the reserved amount is free again; the order can ship."""
    refund.status = REFUND_STATUS.next_state(refund.status, "fail")
    refund.failed_at = now
    refund.updated_at = now
    refund.last_error = error[:500]
    _unreserve(session, refund)
    order = orders.lock_order(session, refund.order_id)
    if order.status == REFUNDING:
        orders.set_status(session, order, "refund_failed", by=BY_PROVIDER, reason=error, now=now)
    log.error("refund %s failed: %s", refund.refund_no, error)
    session.flush()
    events.publish(
        session,
        events.RefundFailed(
            refund_id=refund.id,
            refund_no=refund.refund_no,
            order_id=order.id,
            amount_fen=refund.amount_fen,
            error=refund.last_error,
        ),
    )


def _unreserve(session: Session, refund: Refund) -> None:
    session.execute(
        update(Order)
        .where(Order.id == refund.order_id)
        .values(refunded_fen=Order.refunded_fen - refund.amount_fen)
        .execution_options(synchronize_session=False)
    )
    for part in refund.lines or []:
        session.execute(
            update(OrderLine)
            .where(OrderLine.id == part["line_id"])
            .values(refunded_fen=OrderLine.refunded_fen - part["amount_fen"])
            .execution_options(synchronize_session=False)
        )


# --- notifications ---------------------------------------------------------------------------


def _store_notification(db: Database, **fields: Any) -> int:
    with db.transaction() as session:
        record = PaymentNotification(**fields)
        session.add(record)
        session.flush()
        return record.id


def _event_fields(event: PaymentEvent | RefundEvent) -> dict[str, Any]:
    if isinstance(event, PaymentEvent):
        return {
            "payment_no": event.payment_no[:32],
            "event_status": event.status[:20],
            "amount_fen": event.amount_fen,
        }
    return {
        "refund_no": event.refund_no[:32],
        "event_status": event.status[:20],
        "amount_fen": event.amount_fen,
    }


def record_and_apply(
    db: Database,
    event: PaymentEvent | RefundEvent,
    *,
    source: str = "notification",
    headers: Mapping[str, str] | None = None,
    body: str = "",
) -> Applied:
    """Store the (verified) event, then apply it in its own transaction; the stored record
    says what became of it. Raises if the apply failed (the provider should deliver again)."""
    notification_id = _store_notification(
        db,
        provider=event.provider[:20],
        source=source,
        headers=dict(headers or {}),
        body=body,
        verified=True,
        event=event_json(event),
        **_event_fields(event),
    )
    try:
        with db.transaction() as session:
            if isinstance(event, PaymentEvent):
                applied = apply_payment_event(session, event)
            else:
                applied = apply_refund_event(session, event)
            session.execute(
                update(PaymentNotification)
                .where(PaymentNotification.id == notification_id)
                .values(result=applied.result, detail=applied.detail[:500], processed_at=utcnow())
            )
    except Exception as exc:
        log.exception("applying %s notification %s failed", event.provider, notification_id)
        with db.transaction() as session:
            session.execute(
                update(PaymentNotification)
                .where(PaymentNotification.id == notification_id)
                .values(result="error", detail=repr(exc)[:500], processed_at=utcnow())
            )
        raise
    return applied


def handle_notification(
    db: Database, settings: Settings, provider_name: str, headers: Mapping[str, str], body: bytes
) -> NotificationAnswer:
    """POST /api/v1/payments/notify/{provider}: verify, store, apply once, answer the provider
    in its own format. The sandbox cashier sends its notifications through here too."""
    provider = registry.get_provider(provider_name, settings)
    kept = {k.lower(): v for k, v in headers.items() if k.lower() not in SENSITIVE_HEADERS}
    text = body.decode("utf-8", errors="replace")
    try:
        event = provider.parse_notification(headers, body)
    except NotificationRejected as exc:
        log.warning("%s notification rejected: %s", provider_name, exc.reason)
        # Anyone can send these: kept within bounds (a sample; repeats only counted; capped).
        store_rejected(db, provider=provider_name, headers=kept, body=text, reason=exc.reason)
        return provider.answer(False, exc.reason)
    try:
        if isinstance(event, ProfitSharingEvent):
            record_and_apply_sharing(db, settings, event, headers=kept, body=text)
            return provider.answer(True)
        applied = record_and_apply(db, event, headers=kept, body=text)
    except Exception:
        return provider.answer(False, "处理失败，请重试")
    _submit_refunds(db, settings, applied.refund_ids)
    return provider.answer(True)


def record_and_apply_sharing(
    db: Database,
    settings: Settings,
    event: ProfitSharingEvent,
    *,
    headers: Mapping[str, str] | None = None,
    body: str = "",
) -> str:
    """A profit-sharing event (分账动账): stored like every notification, then handed to the
    settlement domain's listener (it owns the sharing orders). Raises if that failed: the
    provider delivers again."""
    notification_id = _store_notification(
        db,
        provider=event.provider[:20],
        headers=dict(headers or {}),
        body=body,
        verified=True,
        event_status=f"sharing_{event.status}"[:20],
        amount_fen=event.amount_fen,
    )
    result, detail = "ignored", f"分账单 {event.out_order_no}"
    try:
        if profit_sharing_applier is not None:
            result = profit_sharing_applier(db, settings, event)
    except Exception as exc:
        log.exception("applying %s sharing notification %s failed", event.provider, notification_id)
        result, detail = "error", repr(exc)
        raise
    finally:
        with db.transaction() as session:
            session.execute(
                update(PaymentNotification)
                .where(PaymentNotification.id == notification_id)
                .values(result=result[:30], detail=detail[:500], processed_at=utcnow())
            )
    return result


def _submit_refunds(db: Database, settings: Settings, refund_ids: Sequence[int]) -> None:
    for refund_id in refund_ids:
        try:
            submit_refund(db, settings, refund_id)
        except Exception:
            log.exception("submitting refund %s failed; the worker retries", refund_id)


def refresh_payment(
    db: Database,
    settings: Settings,
    payment: Payment,
    *,
    after: timedelta = ACTIVE_QUERY_AFTER,
    every: timedelta = ACTIVE_QUERY_EVERY,
) -> bool:
    """Active query: a payment still waiting ``after`` (a minute) after it started asks its
    provider (not more often than ``every``, 10 s). True when that changed something."""
    now = utcnow()
    if payment.status not in (PENDING,) or payment.provider is None or payment.started_at is None:
        return False
    if now - payment.started_at < after:
        return False
    if payment.queried_at is not None and now - payment.queried_at < every:
        return False
    provider = registry.find_provider(payment.provider, settings)
    if provider is None:
        return False
    unchanged = (
        Payment.queried_at.is_(None)
        if payment.queried_at is None
        else Payment.queried_at == payment.queried_at
    )
    with db.transaction() as session:
        claimed = session.execute(
            update(Payment)
            .where(Payment.id == payment.id, unchanged)
            .values(queried_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:
            return False  # someone else is asking right now
        request = payment_request(session, payment)
    return _query_and_apply(db, settings, provider, request)


def _query_and_apply(
    db: Database, settings: Settings, provider: PaymentProvider, request: PaymentRequest
) -> bool:
    try:
        event = provider.query(request)
    except (ProviderUnavailable, ProviderRefused, ValueError) as exc:
        log.warning("querying payment %s failed: %s", request.payment_no, exc)
        return False
    if event.status != EVENT_SUCCEEDED:
        return False
    applied = record_and_apply(db, event, source="query", body=repr(dict(event.raw))[:10_000])
    _submit_refunds(db, settings, applied.refund_ids)
    return applied.result in ("applied", "revived", "auto_refunded")


# --- closing: consumer cancel and payment timeout ---------------------------------------------


def close_payment(session: Session, payment: Payment, reason: str, now: datetime) -> bool:
    """Close an unpaid payment (row locked by the caller) and cancel its orders. Idempotent."""
    return bool(close_payments(session, [payment], reason, now))


def close_payments(
    session: Session, payments: Sequence[Payment], reason: str, now: datetime
) -> list[Payment]:
    """Close unpaid payments (rows locked by the caller), cancel their orders and release the
    holds of all of them in one item-id order (no deadlock with checkouts). Returns those
    closed now; the others were not payable any more."""
    closing = [p for p in payments if p.status in PAYABLE]
    for payment in closing:
        payment.status = PAYMENT_STATUS.next_state(payment.status, "close")
        payment.closed_at = now
        payment.close_reason = reason
        payment.updated_at = now
    if closing:
        pending = session.scalars(
            select(Order)
            .where(
                Order.payment_id.in_([p.id for p in closing]),
                Order.status == PENDING_PAYMENT,
            )
            .order_by(Order.id)
        ).all()
        # The consumer's own cancellation, or the worker's payment timeout.
        by = Who(USER, closing[0].user_id) if reason == CANCELLED_BY_CONSUMER else BY_WORKER
        orders.cancel(session, pending, reason, now, by=by)
    return closing


def _close_at_provider(settings: Settings, provider_name: str, request: PaymentRequest) -> None:
    """Best effort: if it fails and the consumer still pays, the late-money path handles it."""
    provider = registry.find_provider(provider_name, settings)
    if provider is None:
        return
    try:
        provider.close(request)
    except Exception as exc:
        log.warning("closing payment %s at %s failed: %s", request.payment_no, provider_name, exc)


def cancel_order(db: Database, settings: Settings, *, user_id: int, order_no: str) -> Order:
    """The consumer cancels an unpaid order. One payment pays all the orders of a checkout, so
    cancelling one cancels them all (and closes the payment)."""
    now = utcnow()
    with db.transaction() as session:
        order = orders.get_own_order(session, user_id, order_no)
        payment = lock_payment(session, payment_id=order.payment_id)
        assert payment is not None
        session.refresh(order)
        if order.status != PENDING_PAYMENT:
            ORDER_STATUS.next_state(order.status, "cancel")  # raises the 409
        close_payment(session, payment, CANCELLED_BY_CONSUMER, now)
        started = payment.provider if payment.started_at else None
        request = payment_request(session, payment) if started else None
    if started and request:
        _close_at_provider(settings, started, request)
    return order


def close_expired(
    db: Database, settings: Settings, *, now: datetime | None = None, batch: int = 100
) -> int:
    """The payment timeout: close expired unpaid payments, cancel their orders, release their
    holds. Several workers at once each take different rows (SKIP LOCKED); running it twice
    changes nothing the second time."""
    now = now or utcnow()
    _ask_before_closing(db, settings, now, batch)
    closed = 0
    while True:
        started: list[tuple[str, PaymentRequest]] = []
        with db.transaction() as session:
            due = session.scalars(
                select(Payment)
                .where(Payment.status.in_(PAYABLE), Payment.expires_at <= now)
                .order_by(Payment.expires_at, Payment.id)
                .limit(batch)
                .with_for_update(skip_locked=True)
            ).all()
            for payment in close_payments(session, due, CANCELLED_BY_TIMEOUT, now):
                closed += 1
                if payment.started_at and payment.provider:
                    started.append((payment.provider, payment_request(session, payment)))
        for provider_name, request in started:
            _close_at_provider(settings, provider_name, request)
        if len(due) < batch:
            return closed


def _ask_before_closing(db: Database, settings: Settings, now: datetime, batch: int) -> None:
    """A notification may have been lost: ask the provider about started payments before the
    timeout closes them, so paid money is applied rather than revived or refunded."""
    with db.transaction(readonly=True) as session:
        due = session.scalars(
            select(Payment)
            .where(
                Payment.status.in_(PAYABLE),
                Payment.expires_at <= now,
                Payment.started_at.is_not(None),
                Payment.provider != registry.SANDBOX,  # the sandbox keeps no state to ask
            )
            .order_by(Payment.expires_at)
            .limit(batch)
        ).all()
        asks = []
        for payment in due:
            provider = registry.find_provider(payment.provider or "", settings)
            if provider is not None:
                asks.append((provider, payment_request(session, payment)))
    for provider, request in asks:
        _query_and_apply(db, settings, provider, request)


# --- refunds ---------------------------------------------------------------------------------


def request_refund(
    session: Session,
    order: Order,
    *,
    amount_fen: int | None = None,
    lines: Sequence[tuple[int, int | None]] | None = None,
    reason: str = "",
    initiator: str = "",
    voucher_codes: Sequence[str] = (),
) -> Refund:
    """The refund mechanism every rule uses (consumer, after-sales, vouchers, late payments).

    ``lines``: ``(line_id, amount_fen or None = what is left of the line)``. Without lines and
    amount, everything not yet refunded. The amount is reserved on the order (and lines) with
    conditional updates, so concurrent refunds can never add up to more than was paid. The
    refund starts ``pending``; ``submit_refund`` (API right after commit, then the worker)
    sends it to the provider that took the payment.
    """
    payment = session.get(Payment, order.payment_id)
    assert payment is not None
    if order.status == PENDING_PAYMENT or payment.status != SUCCEEDED:
        raise Conflict("订单尚未支付，请直接取消订单", code="order_not_paid")
    if order.status == CANCELLED and payment.resolution != AUTO_REFUNDED:
        raise Conflict("已取消的订单没有可退的款项", code="order_not_paid")
    parts: list[dict[str, int]] = []
    if lines:
        own = {line.id: line for line in orders.lines_by_order(session, [order.id])[order.id]}
        for line_id, line_amount in lines:
            line = own.get(line_id)
            if line is None:
                raise ValidationFailed("订单中没有该商品", field="line_ids")
            value = line.amount_fen - line.refunded_fen if line_amount is None else line_amount
            if value <= 0:
                raise Conflict(f"「{line.title}」已全部退款", code="nothing_to_refund")
            parts.append({"line_id": line_id, "amount_fen": value})
        total = sum(p["amount_fen"] for p in parts)
        if amount_fen is not None and amount_fen != total:
            raise ValidationFailed("退款金额与所选商品金额不一致", field="amount_fen")
        amount_fen = total
    if amount_fen is None:
        amount_fen = _refundable(session, order.id)
    if amount_fen <= 0:
        raise Conflict("该订单已没有可退的金额", code="nothing_to_refund")
    # All or nothing even if the caller catches the 409 and goes on with its transaction.
    with session.begin_nested():
        _reserve(session, order.id, amount_fen, parts)
    now = utcnow()
    refund = Refund(
        refund_no=new_refund_no(),
        order_id=order.id,
        payment_id=payment.id,
        provider=payment.provider or "",
        amount_fen=amount_fen,
        lines=parts,
        voucher_codes=list(voucher_codes),
        reason=reason[:200],
        initiator=initiator[:60],
        status=REFUND_PENDING,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(refund)
    session.flush()
    events.publish(
        session,
        events.RefundRequested(
            refund_id=refund.id,
            refund_no=refund.refund_no,
            order_id=order.id,
            amount_fen=amount_fen,
            initiator=refund.initiator,
        ),
    )
    return refund


def _reserve(
    session: Session, order_id: int, amount_fen: int, parts: Sequence[Mapping[str, int]]
) -> None:
    """Reserve the amount on the order and its lines with conditional updates: concurrent
    refunds can never add up to more than was paid (DESIGN.md law 4)."""
    if not orders.add_refunded(session, order_id, amount_fen):
        raise Conflict("退款金额超过订单实付金额", code="refund_exceeds_paid")
    for part in parts:
        result = session.execute(
            update(OrderLine)
            .where(
                OrderLine.id == part["line_id"],
                OrderLine.order_id == order_id,
                OrderLine.refunded_fen + part["amount_fen"] <= OrderLine.amount_fen,
            )
            .values(refunded_fen=OrderLine.refunded_fen + part["amount_fen"])
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            raise Conflict("退款金额超过该商品实付金额", code="refund_exceeds_paid")


def _refundable(session: Session, order_id: int) -> int:
    """What is left to refund, read from the row (reservations are atomic UPDATEs)."""
    return int(
        session.scalar(select(Order.payable_fen - Order.refunded_fen).where(Order.id == order_id))
        or 0
    )


def consumer_full_refund(
    session: Session,
    *,
    user_id: int,
    order_no: str,
    reason: str,
    line_ids: Sequence[int] | None = None,
    amount_fen: int | None = None,
) -> Refund:
    """This issue's consumer rule: the full refund of a paid goods order not yet shipped.
    ``line_ids`` / ``amount_fen`` may be given but must then mean the whole order. (Vouchers —
    随时退 / 过期自动退 — and goods after-sales come with fulfilment, on ``request_refund``.)"""
    found = orders.get_own_order(session, user_id, order_no)
    order = orders.lock_order(session, found.id)
    if order.status == PENDING_PAYMENT:
        raise Conflict("订单尚未支付，请直接取消订单", code="order_not_paid")
    if order.kind != GOODS:
        raise Conflict("团购订单请按券码申请退款", code="refund_by_voucher")
    # Vetoes first: once anything has shipped (even when the order is ``shipped`` or
    # ``completed``) the answer is "use after-sales", with its own stable code.
    for check in full_refund_checks:
        check(session, order)
    ORDER_STATUS.next_state(order.status, "request_refund")  # 409 unless paid
    all_lines = orders.lines_by_order(session, [order.id])[order.id]
    whole_lines = line_ids is None or set(line_ids) == {line.id for line in all_lines}
    whole_amount = amount_fen is None or amount_fen == _refundable(session, order.id)
    if not (whole_lines and whole_amount):
        raise Conflict("目前仅支持整单退款；部分退款请联系商家售后", code="partial_refund")
    refund = request_refund(
        session,
        order,
        lines=[(line.id, None) for line in all_lines if line.amount_fen > line.refunded_fen],
        reason=reason or "买家申请退款",
        initiator=f"consumer:{user_id}",
    )
    # The shipping fee goes back too: a full refund is everything that was paid.
    shipping = _refundable(session, order.id)
    if shipping > 0:
        if not orders.add_refunded(session, order.id, shipping):
            raise Conflict("退款金额超过订单实付金额", code="refund_exceeds_paid")
        refund.amount_fen += shipping
    orders.set_status(session, order, "request_refund", by=Who(USER, user_id), reason=refund.reason)
    return refund


def refund_request(session: Session, refund: Refund) -> RefundRequest:
    order = session.get(Order, refund.order_id)
    payment = session.get(Payment, refund.payment_id)
    assert order is not None and payment is not None
    merchant = session.get(Merchant, order.merchant_id)
    combined = (session.scalar(select(func.count()).where(Order.payment_id == payment.id)) or 0) > 1
    return RefundRequest(
        refund_no=refund.refund_no,
        payment_no=payment.payment_no,
        order_no=order.order_no,
        amount_fen=refund.amount_fen,
        trade_total_fen=order.payable_fen if combined else payment.amount_fen,
        reason=refund.reason,
        sub_mchid=merchant.sub_mchid if merchant else None,
        combined=combined,
    )


def _backoff(attempts: int) -> timedelta:
    return min(REFUND_RETRY_FIRST * (2 ** max(attempts - 1, 0)), REFUND_RETRY_MAX)


def submit_refund(
    db: Database, settings: Settings, refund_id: int, *, now: datetime | None = None
) -> str:
    """One attempt: claim the refund (so two workers never send it at once), ask the provider
    — ``refund`` while pending, ``query_refund`` once accepted — outside any transaction, then
    apply its answer. The same refund_no every time, so the provider never refunds twice."""
    now = now or utcnow()
    with db.transaction() as session:
        claimed = session.execute(
            update(Refund)
            .where(
                Refund.id == refund_id,
                Refund.status.in_(REFUND_SWEPT),
                Refund.next_attempt_at <= now,
            )
            .values(attempts=Refund.attempts + 1, updated_at=now)
            .returning(Refund.attempts, Refund.status, Refund.provider)
            .execution_options(synchronize_session=False)
        ).first()
        if claimed is None:
            return "skipped"
        attempts, status, provider_name = claimed
        wait = ABNORMAL_QUERY_EVERY if status == REFUND_ABNORMAL else _backoff(attempts)
        session.execute(
            update(Refund)
            .where(Refund.id == refund_id)
            .values(next_attempt_at=now + wait)
            .execution_options(synchronize_session=False)
        )
        refund = session.get(Refund, refund_id)
        assert refund is not None
        request = refund_request(session, refund)
    provider = registry.find_provider(provider_name, settings)
    if provider is None:
        return _refund_error(db, refund_id, f"provider {provider_name} is not configured")
    try:
        if status == REFUND_PENDING:
            event = provider.refund(request)
        else:
            event = provider.query_refund(request)
    except ProviderUnavailable as exc:
        return _refund_error(db, refund_id, f"unavailable: {exc}")
    except ProviderRefused as exc:
        with db.transaction() as session:
            refund = session.scalar(select(Refund).where(Refund.id == refund_id).with_for_update())
            # Never for an abnormal refund: its money has left; only the provider's word moves it.
            if refund is not None and refund.status in REFUND_OPEN:
                _fail_refund(session, refund, f"{exc.code}: {exc.message}", utcnow())
        return "failed"
    except Exception as exc:  # our configuration (ValueError) or a bug: retry later, visibly
        log.exception("refund %s attempt failed", request.refund_no)
        return _refund_error(db, refund_id, repr(exc))
    applied = record_and_apply(db, event, source="refund_call", body=repr(dict(event.raw))[:10_000])
    return applied.result


def _refund_error(db: Database, refund_id: int, error: str) -> str:
    with db.transaction() as session:
        session.execute(
            update(Refund)
            .where(Refund.id == refund_id)
            .values(last_error=error[:500], updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
    return "retry"


def process_refunds(
    db: Database, settings: Settings, *, now: datetime | None = None, batch: int = 50
) -> int:
    """The refund sweep: submit pending refunds, query accepted ones, retry failures of reach."""
    now = now or utcnow()
    with db.transaction(readonly=True) as session:
        due = list(
            session.scalars(
                select(Refund.id)
                .where(Refund.status.in_(REFUND_SWEPT), Refund.next_attempt_at <= now)
                .order_by(Refund.next_attempt_at)
                .limit(batch)
            )
        )
    moved = 0
    for refund_id in due:
        if submit_refund(db, settings, refund_id, now=now) not in ("skipped", "retry"):
            moved += 1
    return moved


def retry_refund(session: Session, refund_no: str) -> Refund:
    """The operator sends a failed refund again (same refund_no), if it still fits the cap."""
    refund = session.scalar(select(Refund).where(Refund.refund_no == refund_no).with_for_update())
    if refund is None:
        raise NotFound("退款单不存在", code="refund_not_found")
    refund.status = REFUND_STATUS.next_state(refund.status, "retry")
    with session.begin_nested():
        _reserve(session, refund.order_id, refund.amount_fen, refund.lines or [])
    now = utcnow()
    refund.next_attempt_at = now
    refund.updated_at = now
    refund.failed_at = None
    session.flush()
    events.publish(
        session,
        events.RefundRetried(
            refund_id=refund.id, refund_no=refund.refund_no, order_id=refund.order_id
        ),
    )
    return refund


def list_refunds(
    session: Session, *, status: str | None, limit: int, before_id: int | None
) -> Sequence[Refund]:
    stmt = select(Refund).order_by(Refund.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(Refund.status == status)
    if before_id:
        stmt = stmt.where(Refund.id < before_id)
    return session.scalars(stmt).all()


def refunds_of_orders(session: Session, order_ids: Sequence[int]) -> dict[int, list[Refund]]:
    result: dict[int, list[Refund]] = {oid: [] for oid in order_ids}
    if order_ids:
        for refund in session.scalars(
            select(Refund).where(Refund.order_id.in_(order_ids)).order_by(Refund.id)
        ):
            result[refund.order_id].append(refund)
    return result


def is_stuck(refund: Refund, now: datetime | None = None) -> bool:
    return (
        refund.status in REFUND_OPEN and (now or utcnow()) - refund.created_at > REFUND_STUCK_AFTER
    )


# --- the sandbox cashier ---------------------------------------------------------------------


def sandbox_result(
    db: Database, settings: Settings, payment_no: str, success: bool, user_id: int
) -> str:
    """The sandbox cashier's buttons (the payer's own payment only): a signed notification
    through the same notify path."""
    provider = registry.get_provider(registry.SANDBOX, settings)
    with db.transaction(readonly=True) as session:
        payment = get_own_payment(session, user_id, payment_no)
        if payment.provider != registry.SANDBOX:
            raise Conflict("该支付单未选择沙箱支付", code="provider_mismatch")
        amount, currency = payment.amount_fen, payment.currency
    headers, body = provider.payment_notification(  # type: ignore[attr-defined]
        payment_no, amount, success=success, currency=currency
    )
    answer = handle_notification(db, settings, registry.SANDBOX, headers, body)
    if answer.status_code >= 300:
        raise AppError("支付结果处理失败，请重试", status=503, code="notification_failed")
    with db.transaction(readonly=True) as session:
        status = session.scalar(select(Payment.status).where(Payment.payment_no == payment_no))
    return status or ""


def sandbox_cashier_view(session: Session, payment_no: str, *, user_id: int) -> dict[str, Any]:
    payment = get_own_payment(session, user_id, payment_no)
    request = payment_request(session, payment)
    return {
        "payment_no": payment.payment_no,
        "amount_fen": payment.amount_fen,
        "status": payment.status,
        "status_label": PAYMENT_STATUS.label(payment.status),
        "provider": payment.provider,
        "description": request.description,
        "expires_at": payment.expires_at,
        "orders": [s.order_no for s in request.sub_orders],
    }


__all__ = [
    "Applied",
    "apply_payment_event",
    "apply_refund_event",
    "cancel_order",
    "close_expired",
    "close_payment",
    "consumer_full_refund",
    "handle_notification",
    "process_refunds",
    "record_and_apply",
    "record_and_apply_sharing",
    "request_refund",
    "start_payment",
    "submit_refund",
]
