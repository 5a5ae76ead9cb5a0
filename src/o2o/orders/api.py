"""Routes for checkout and orders (thin: the rules live in orders.service / payments.service)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from o2o.channels.middleware import visitor_id as channel_visitor_id
from o2o.deps import ActorDep, DbDep, IdempotencyKey, ReadSessionDep, SettingsDep
from o2o.fulfilment import vouchers
from o2o.idempotency import answer_early, run_once
from o2o.orders import service
from o2o.orders.models import ORDER_STATUS, Checkout, Order
from o2o.orders.schemas import (
    CheckoutIn,
    CheckoutOut,
    MerchantOrderOut,
    OrderKind,
    OrderLineOut,
    OrderLineStaffOut,
    OrderOut,
    OrderRefundOut,
    OrderStatus,
    RefundIn,
    RefundOut,
    TimelineEntryOut,
)
from o2o.payments import service as payments
from o2o.payments.models import REFUND_STATUS, Payment, Refund
from o2o.schemas import Id, Page, PageLimit
from o2o.security import require_user_id

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["orders"])

UserIdDep = Annotated[int, Depends(require_user_id)]
OrderNo = Annotated[str, Path(min_length=1, max_length=32)]
Cursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")]


@router.post("/checkout", status_code=201, response_model=CheckoutOut)
def checkout(
    body: CheckoutIn,
    request: Request,
    user_id: UserIdDep,
    db: DbDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """One checkout across merchants: orders per merchant and kind, one payment, stock held."""
    items = [service.CartItem(i.listing_id, i.quantity, i.sku_id, i.slot_id) for i in body.items]
    # Last-touch attribution: the visitor id the channel middleware assigned or the client sent.
    visitor = channel_visitor_id(request)
    address = body.shipping_address.model_dump() if body.shipping_address else None

    def action(session: Session) -> tuple[int, dict]:
        result = service.checkout(
            session,
            settings,
            user_id=user_id,
            items=items,
            shipping_address=address,
            channel=body.channel,
            note=body.note,
            visitor_id=visitor,
            before_decrements=lambda result: answer_early(session, 201, result),
        )
        return 201, result

    payload = body.model_dump(mode="json")
    for attempt in range(3):
        try:
            status, result = run_once(
                db, scope=f"checkout:{user_id}", key=idempotency_key, payload=payload, action=action
            )
            return JSONResponse(result, status_code=status)
        except IntegrityError:
            # A new order number collided (one in 10^12 per day): draw again.
            if attempt == 2:
                raise
            log.warning("checkout number collision; retrying")
    raise AssertionError("unreachable")


def orders_out(
    session: Session, orders: Sequence[Order], *, staff: bool = False
) -> list[OrderOut] | list[MerchantOrderOut]:
    ids = [o.id for o in orders]
    lines = service.lines_by_order(session, ids)
    names = service.merchant_names(session, [o.merchant_id for o in orders])
    refunds = payments.refunds_of_orders(session, ids)
    checkout_nos = dict(
        session.execute(
            select(Checkout.id, Checkout.checkout_no).where(
                Checkout.id.in_({o.checkout_id for o in orders})
            )
        ).all()
    )
    payment_nos = dict(
        session.execute(
            select(Payment.id, Payment.payment_no).where(
                Payment.id.in_({o.payment_id for o in orders})
            )
        ).all()
    )
    voucher_views = vouchers.order_vouchers_out(session, orders, staff=staff)
    shape = MerchantOrderOut if staff else OrderOut
    line_shape = OrderLineStaffOut if staff else OrderLineOut
    result = []
    for o in orders:
        result.append(
            shape.model_validate(
                {
                    **{c: getattr(o, c) for c in _ORDER_FIELDS},
                    "checkout_id": checkout_nos[o.checkout_id],
                    "payment_no": payment_nos[o.payment_id],
                    "merchant_name": names.get(o.merchant_id, ""),
                    "status_label": ORDER_STATUS.label(o.status),
                    "lines": [line_shape.model_validate(line) for line in lines[o.id]],
                    "vouchers": voucher_views[o.id],
                    "refunds": [
                        OrderRefundOut.model_validate(
                            {
                                "refund_no": r.refund_no,
                                "amount_fen": r.amount_fen,
                                "status": r.status,
                                "status_label": REFUND_STATUS.label(r.status),
                                "reason": r.reason,
                                "created_at": r.created_at,
                                "succeeded_at": r.succeeded_at,
                            }
                        )
                        for r in refunds[o.id]
                    ],
                }
            )
        )
    return result  # type: ignore[return-value]


_ORDER_FIELDS = (
    "order_no",
    "merchant_id",
    "kind",
    "status",
    "items_fen",
    "shipping_fee_fen",
    "discount_fen",
    "payable_fen",
    "refunded_fen",
    "shipping_address",
    "note",
    "channel",
    "cancel_reason",
    "created_at",
    "paid_at",
    "cancelled_at",
    "user_id",
)


def _next(items: Sequence[Order], limit: int) -> str | None:
    return str(items[-1].id) if len(items) == limit else None


@router.get("/orders", response_model=Page[OrderOut])
def list_orders(
    user_id: UserIdDep,
    session: ReadSessionDep,
    status: OrderStatus | None = None,
    kind: OrderKind | None = None,
    limit: PageLimit = 20,
    cursor: Cursor = None,
) -> Page[OrderOut]:
    """The consumer's own orders, newest first."""
    found = service.list_own_orders(
        session,
        user_id,
        status=status,
        kind=kind,
        limit=limit,
        before_id=int(cursor) if cursor else None,
    )
    return Page[OrderOut](items=orders_out(session, found), next_cursor=_next(found, limit))


@router.get("/orders/{order_no}", response_model=OrderOut)
def get_order(order_no: OrderNo, user_id: UserIdDep, session: ReadSessionDep) -> OrderOut:
    order = service.get_own_order(session, user_id, order_no)
    out = orders_out(session, [order])[0]
    out.timeline = [
        TimelineEntryOut(
            at=t["at"],
            action=t["action"],
            label=t["label"],
            to_status=t["to_status"],
            actor_kind=t["actor_kind"],
            actor_label=t["actor"],
            reason=t["reason"],
        )
        for t in service.timeline(session, order.id)
    ]
    return out


@router.post("/orders/{order_no}/cancel", response_model=OrderOut)
def cancel_order(
    order_no: OrderNo, user_id: UserIdDep, db: DbDep, settings: SettingsDep
) -> OrderOut:
    """Cancel while unpaid: every order of the same payment is cancelled, holds released."""
    payments.cancel_order(db, settings, user_id=user_id, order_no=order_no)
    with db.transaction(readonly=True) as session:
        return orders_out(session, [service.get_own_order(session, user_id, order_no)])[0]


@router.post("/orders/{order_no}/refunds", status_code=201, response_model=RefundOut)
def request_refund(
    order_no: OrderNo,
    body: RefundIn,
    user_id: UserIdDep,
    db: DbDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """The consumer's full refund of a paid goods order not yet shipped (partial refunds and
    vouchers come through after-sales and fulfilment, on the same mechanism)."""
    if body.voucher_codes:
        # 随时退 of vouchers: the fulfilment rule (same as POST /vouchers/{code}/refund).
        status, result = vouchers.consumer_refund(
            db,
            settings,
            user_id=user_id,
            order_no=order_no,
            codes=body.voucher_codes,
            reason=body.reason,
            idempotency_key=idempotency_key,
        )
        return JSONResponse(result, status_code=status)

    def action(session: Session) -> tuple[int, dict]:
        refund = payments.consumer_full_refund(
            session,
            user_id=user_id,
            order_no=order_no,
            reason=body.reason,
            line_ids=body.line_ids,
            amount_fen=body.amount_fen,
        )
        return 201, {
            "refund_no": refund.refund_no,
            "order_no": order_no,
            "amount_fen": refund.amount_fen,
            "status": refund.status,
            "status_label": REFUND_STATUS.label(refund.status),
            "reason": refund.reason,
            "created_at": refund.created_at.isoformat(),
        }

    status, result = run_once(
        db,
        scope=f"refund:{user_id}:{order_no}",
        key=idempotency_key,
        payload=body.model_dump(mode="json"),
        action=action,
    )
    result = dict(result)
    with db.transaction(readonly=True) as session:
        refund_id = session.scalar(select(Refund.id).where(Refund.refund_no == result["refund_no"]))
    # Send it to the provider now (outside the transaction); the worker retries if this fails.
    try:
        payments.submit_refund(db, settings, refund_id)
    except Exception:
        log.exception("submitting refund %s failed; the worker retries", result["refund_no"])
    with db.transaction(readonly=True) as session:
        current = session.scalar(select(Refund.status).where(Refund.id == refund_id))
    result["status"] = current
    result["status_label"] = REFUND_STATUS.label(current or "")
    return JSONResponse(result, status_code=status)


@router.get("/merchants/{merchant_id}/orders", response_model=Page[MerchantOrderOut])
def list_merchant_orders(
    merchant_id: Id,
    actor: ActorDep,
    session: ReadSessionDep,
    status: OrderStatus | None = None,
    kind: OrderKind | None = None,
    store_id: Id | None = None,
    limit: PageLimit = 20,
    cursor: Cursor = None,
) -> Page[MerchantOrderOut]:
    """Staff: owners and managers see all orders; clerks service orders for their stores."""
    found = service.list_merchant_orders(
        session,
        actor,
        merchant_id,
        status=status,
        kind=kind,
        store_id=store_id,
        limit=limit,
        before_id=int(cursor) if cursor else None,
    )
    return Page[MerchantOrderOut](
        items=orders_out(session, found, staff=True),  # type: ignore[arg-type]
        next_cursor=_next(found, limit),
    )


@router.get("/merchants/{merchant_id}/orders/{order_no}", response_model=MerchantOrderOut)
def get_merchant_order(
    merchant_id: Id, order_no: OrderNo, actor: ActorDep, session: ReadSessionDep
) -> MerchantOrderOut:
    """Staff: one order, by the list's rule (a clerk: service orders for its stores)."""
    order = service.get_merchant_order(session, actor, merchant_id, order_no)
    return orders_out(session, [order], staff=True)[0]  # type: ignore[return-value]


routers = [router]
