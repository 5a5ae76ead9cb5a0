"""The ledger wired into the money events: each event posts exactly one balanced transaction per
thing it moves, inside the event's own database transaction, idempotently (DESIGN.md law 4).

The rules (see ``o2o.ledger.service`` for the money flows and the sign convention):

=====================================  =========================================================
event (``o2o.events``)                 posting (idempotency key)
=====================================  =========================================================
``payment.succeeded``, including late  ``post_payment_received`` (``payment:{payment_no}``)
money that revives or is refunded
``voucher.redeemed``                   ``post_earned`` of the voucher's share of what was paid
                                       (discounts included; the unit price when there is none)
                                       at the line's snapshotted commission
                                       (``earned:voucher:{code}``; after an undo the next
                                       redemption earns again as ``earned:voucher:{code}#2`` …)
``voucher.expired`` (kept: the offer   ``post_earned`` of the voucher's share: the merchant
has no 过期自动退)                      keeps it (``earned:voucher:{code}:expired``)
``voucher.undone``                     ``reverse`` of that voucher's live earned posting
                                       (``reverse:{earned key}``)
``parcel.received``: by the consumer   ``post_earned`` per line of what is left of it after
or the worker's auto-confirm           refunds (``earned:line:{line_id}``), and the shipping fee
                                       at 0 commission (``earned:shipping:{order_id}``)
``refund.succeeded`` — money has left  for lines (or the shipping fee) earned before the refund
                                       was asked: ``post_refund_after_earned`` per earned
                                       posting (commission given back in proportion); the rest
                                       (随时退, 过期自动退, an unshipped full refund, late money):
                                       ``post_refund_before_earned`` (``refund:{refund_no}:…``)
=====================================  =========================================================

Payouts are posted by the settlement side with ``ledger.service.post_payout``.

A payment that succeeded before the ledger was wired in has no ``payment_received`` posting;
the first event that needs it posts it then, from the payment row (``ensure_payment_posted``).

The handlers run inside the event's transaction; ``o2o.wiring`` subscribes them.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o import events
from o2o.errors import Conflict
from o2o.fulfilment.models import Voucher
from o2o.ledger import service as ledger
from o2o.ledger.models import LedgerTransaction
from o2o.orders.models import Order, OrderLine
from o2o.payments.models import SUCCEEDED, Payment, Refund

# --- keys ----------------------------------------------------------------------------------------


def voucher_earned_key(code: str, redemption_no: int = 1) -> str:
    """The n-th redemption of a voucher (an undo makes the next one the (n+1)-th)."""
    base = f"earned:voucher:{code}"
    return base if redemption_no == 1 else f"{base}#{redemption_no}"


def line_earned_key(line_id: int) -> str:
    return f"earned:line:{line_id}"


def shipping_earned_key(order_id: int) -> str:
    return f"earned:shipping:{order_id}"


# --- the payment ---------------------------------------------------------------------------------


def _payment_order_no(session: Session, payment: Payment) -> str | None:
    """The order a payment is for, when it pays exactly one (a combined payment has several)."""
    found = session.scalars(
        select(Order.order_no).where(Order.payment_id == payment.id).order_by(Order.id).limit(2)
    ).all()
    return found[0] if len(found) == 1 else None


def ensure_payment_posted(session: Session, payment: Payment) -> None:
    """``payment_received`` for a succeeded payment, once (a replay returns the first posting)."""
    if payment.status != SUCCEEDED or not payment.provider:
        raise Conflict(
            f"支付单 {payment.payment_no} 未支付成功，不能记账", code="ledger_payment_not_succeeded"
        )
    if ledger.transaction_by_key(session, f"payment:{payment.payment_no}") is not None:
        return
    ledger.post_payment_received(
        session,
        payment_no=payment.payment_no,
        provider=payment.provider,
        amount_fen=payment.amount_fen,
        order_no=_payment_order_no(session, payment),
        at=payment.paid_at,
    )


def _payment_of_order(session: Session, order_id: int) -> tuple[Order, Payment]:
    row = session.execute(
        select(Order, Payment)
        .join(Payment, Payment.id == Order.payment_id)
        .where(Order.id == order_id)
    ).one()
    order, payment = row
    ensure_payment_posted(session, payment)
    return order, payment


def on_payment_succeeded(session: Session, event: events.PaymentSucceeded) -> None:
    payment = session.get(Payment, event.payment_id)  # locked by the payment core
    assert payment is not None
    ensure_payment_posted(session, payment)


# --- earning: vouchers ---------------------------------------------------------------------------


def _reversed_ids(session: Session, ids: Sequence[int]) -> set[int]:
    if not ids:
        return set()
    return set(
        session.scalars(
            select(LedgerTransaction.related_id).where(
                LedgerTransaction.kind == ledger.REVERSAL, LedgerTransaction.related_id.in_(ids)
            )
        )
    )


def voucher_postings(
    session: Session, order_no: str, code: str
) -> tuple[list[LedgerTransaction], list[LedgerTransaction]]:
    """(all earned postings of the voucher, oldest first; those not reversed)."""
    base = voucher_earned_key(code)
    found = [
        txn
        for txn in session.scalars(
            select(LedgerTransaction)
            .where(LedgerTransaction.order_no == order_no, LedgerTransaction.kind == ledger.EARNED)
            .order_by(LedgerTransaction.id)
        )
        if txn.idempotency_key == base or txn.idempotency_key.startswith(base + "#")
    ]
    reversed_ = _reversed_ids(session, [t.id for t in found])
    return found, [t for t in found if t.id not in reversed_]


def on_voucher_redeemed(session: Session, event: events.VoucherRedeemed) -> None:
    """The voucher's share of the payment becomes the merchant's, less commission. The voucher
    row is locked by the redemption's conditional update, so counting earlier postings is safe."""
    order, payment = _payment_of_order(session, event.order_id)
    found, live = voucher_postings(session, order.order_no, event.code)
    if live:
        return  # this redemption is already earned (a replayed event)
    commission_bp = session.scalar(
        select(OrderLine.commission_bp).where(OrderLine.id == event.order_line_id)
    )
    assert commission_bp is not None
    ledger.post_earned(
        session,
        key=voucher_earned_key(event.code, len(found) + 1),
        payment_no=payment.payment_no,
        merchant_id=order.merchant_id,
        gross_fen=event.amount_fen,
        commission_bp=commission_bp,
        order_no=order.order_no,
        line_id=event.order_line_id,
    )


def on_redemption_undone(session: Session, event: events.RedemptionUndone) -> None:
    """The redemption is taken back: so is what it earned (a re-redemption earns again)."""
    _found, live = voucher_postings(session, event.order_no, event.code)
    for txn in live:
        ledger.reverse(
            session,
            txn.id,
            key=f"reverse:{txn.idempotency_key}",
            memo=f"撤销核销 {event.code[-4:]}",
        )


def on_vouchers_expired(session: Session, event: events.VouchersExpired) -> None:
    """An offer without 过期自动退 expired unused (``kept``): the merchant keeps the money (less
    commission), as it would have on redemption — otherwise it would sit as unearned forever.
    Expired vouchers that are refunded post with their refund."""
    if not event.kept:
        return
    kept = [session.get(Voucher, voucher_id) for voucher_id in event.voucher_ids]
    order, payment = _payment_of_order(session, event.order_id)
    rates = dict(
        session.execute(
            select(OrderLine.id, OrderLine.commission_bp).where(OrderLine.order_id == order.id)
        ).all()
    )
    for voucher in sorted((v for v in kept if v is not None), key=lambda v: v.id):
        _earn_once(
            session,
            key=f"{voucher_earned_key(voucher.code)}:expired",
            payment=payment,
            order=order,
            gross_fen=voucher.amount_fen,
            commission_bp=rates[voucher.order_line_id],
            line_id=voucher.order_line_id,
        )


# --- earning: goods ------------------------------------------------------------------------------


def on_goods_received(session: Session, event: events.ParcelReceived) -> None:
    """收货: each line is earned for what is left of it after refunds asked before receipt
    (a refund asked later is a refund after earning); the shipping fee too, at no commission."""
    order, payment = _payment_of_order(session, event.order_id)
    lines = session.scalars(select(OrderLine).where(OrderLine.order_id == order.id)).all()
    # Straight from the rows: refunds reserve with Core updates the session does not see.
    refunded = dict(
        session.execute(
            select(OrderLine.id, OrderLine.refunded_fen).where(OrderLine.order_id == order.id)
        ).all()
    )
    for line in sorted(lines, key=lambda line: line.id):
        _earn_once(
            session,
            key=line_earned_key(line.id),
            payment=payment,
            order=order,
            gross_fen=line.amount_fen - refunded.get(line.id, 0),
            commission_bp=line.commission_bp,
            line_id=line.id,
        )
    order_refunded = session.scalar(select(Order.refunded_fen).where(Order.id == order.id)) or 0
    shipping_refunded = max(order_refunded - sum(refunded.values()), 0)
    _earn_once(
        session,
        key=shipping_earned_key(order.id),
        payment=payment,
        order=order,
        gross_fen=max(order.shipping_fee_fen - shipping_refunded, 0),
        commission_bp=0,
        line_id=None,
    )


def _earn_once(
    session: Session,
    *,
    key: str,
    payment: Payment,
    order: Order,
    gross_fen: int,
    commission_bp: int,
    line_id: int | None,
) -> None:
    if gross_fen <= 0 or ledger.transaction_by_key(session, key) is not None:
        return
    ledger.post_earned(
        session,
        key=key,
        payment_no=payment.payment_no,
        merchant_id=order.merchant_id,
        gross_fen=gross_fen,
        commission_bp=commission_bp,
        order_no=order.order_no,
        line_id=line_id,
    )


# --- refunds -------------------------------------------------------------------------------------


def _earned_before(
    session: Session, key: str, refund: Refund
) -> tuple[LedgerTransaction, int] | None:
    """The earned posting under ``key`` if it was posted before the refund was asked (so its
    gross did not leave the refund out) and is not reversed, with what is left of it."""
    earned = ledger.transaction_by_key(session, key)
    if earned is None or earned.kind != ledger.EARNED or earned.created_at > refund.created_at:
        return None
    if _reversed_ids(session, [earned.id]):
        return None
    gross = dict(ledger.entries_of(earned))[ledger.CONSUMER_UNEARNED]
    return earned, gross - ledger.refunded_after_earned(session, earned)


def on_refund_succeeded(session: Session, event: events.RefundSucceeded) -> None:
    """Money has gone back to the consumer: out of what was earned (received goods: after-sales)
    or out of what was still unearned (vouchers, unshipped goods, late money)."""
    refund = session.get(Refund, event.refund_id)  # locked by the payment core
    assert refund is not None
    order, payment = _payment_of_order(session, refund.order_id)
    left = refund.amount_fen
    if not refund.voucher_codes:  # a refunded voucher was never redeemed: never earned
        parts = [(line_earned_key(p["line_id"]), p["amount_fen"]) for p in refund.lines or []]
        unattributed = refund.amount_fen - sum(amount for _, amount in parts)
        if unattributed > 0:
            parts.append((shipping_earned_key(order.id), unattributed))
        for key, amount in parts:
            found = _earned_before(session, key, refund)
            if found is None:
                continue
            take = min(amount, found[1])
            if take > 0:
                ledger.post_refund_after_earned(
                    session, refund_no=refund.refund_no, earned_key=key, amount_fen=take
                )
                left -= take
    ledger.post_refund_before_earned(
        session,
        refund_no=refund.refund_no,
        payment_no=payment.payment_no,
        amount_fen=left,
        order_no=order.order_no,
    )
