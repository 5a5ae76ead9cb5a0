"""Routes for shipments, carrier tracking notifications, receipt and after-sales (thin: the
rules live in shipping.service and shipping.aftersales)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from o2o.config import Settings
from o2o.db import Database
from o2o.deps import ActorDep, DbDep, ReadSessionDep, SessionDep, SettingsDep
from o2o.errors import AppError, ValidationFailed
from o2o.orders import service as orders
from o2o.orders.models import ORDER_STATUS, SHIPPED, Order
from o2o.schemas import Id, Page, PageLimit
from o2o.security import require_user_id
from o2o.shipping import aftersales, carriers, service
from o2o.shipping.schemas import (
    AfterSalesIn,
    AfterSalesOut,
    AfterSalesStatus,
    CarrierOut,
    MerchantAfterSalesOut,
    OrderShipmentsOut,
    ReceiptOut,
    RejectIn,
    ShipmentIn,
    ShipmentOut,
    ShipOut,
    TrackingNotifyIn,
    TrackingNotifyOut,
)

router = APIRouter(prefix="/api/v1", tags=["shipping"])

UserIdDep = Annotated[int, Depends(require_user_id)]
OrderNo = Annotated[str, Path(min_length=1, max_length=32)]
CarrierPath = Annotated[str, Path(pattern=r"^[A-Za-z]{2,8}$")]
Cursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")]
MAX_NOTIFICATION_BYTES = 64 * 1024


def _order_shipments(session: Any, order: Order, settings: Settings) -> OrderShipmentsOut:
    auto_at = None
    if order.status == SHIPPED and order.shipped_at is not None:
        auto_at = order.shipped_at + timedelta(days=settings.auto_confirm_days)
    return OrderShipmentsOut(
        order_no=order.order_no,
        order_status=order.status,
        order_status_label=ORDER_STATUS.label(order.status),
        shipped_at=order.shipped_at,
        completed_at=order.completed_at,
        auto_confirm_at=auto_at,
        shipments=[
            ShipmentOut.model_validate(s)
            for s in service.shipments_out(session, [order.id])[order.id]
        ],
    )


# --- carriers and shipments ---------------------------------------------------------------------


@router.get("/logistics/carriers", response_model=list[CarrierOut])
def list_carriers() -> list[CarrierOut]:
    """The carriers a merchant can ship with, and their tracking-number formats."""
    return [
        CarrierOut(code=c.code, name=c.name, tracking_no_format=c.format_hint)
        for c in carriers.CARRIERS.values()
    ]


@router.post(
    "/merchants/{merchant_id}/orders/{order_no}/shipments", status_code=201, response_model=ShipOut
)
def ship(
    merchant_id: Id, order_no: OrderNo, body: ShipmentIn, actor: ActorDep, session: SessionDep
) -> ShipOut:
    """发货 (owner, manager): some or all remaining lines of a paid goods order in one parcel."""
    shipment = service.ship(
        session,
        actor,
        merchant_id,
        order_no,
        carrier=body.carrier,
        tracking_no=body.tracking_no,
        line_ids=body.line_ids,
    )
    order = session.get(Order, shipment.order_id)
    assert order is not None
    out = service.shipments_out(session, [order.id])[order.id]
    return ShipOut(
        order_no=order.order_no,
        order_status=order.status,
        order_status_label=ORDER_STATUS.label(order.status),
        shipment=ShipmentOut.model_validate(next(s for s in out if s["id"] == shipment.id)),
    )


@router.get(
    "/merchants/{merchant_id}/orders/{order_no}/shipments", response_model=OrderShipmentsOut
)
def merchant_shipments(
    merchant_id: Id,
    order_no: OrderNo,
    actor: ActorDep,
    session: ReadSessionDep,
    settings: SettingsDep,
) -> OrderShipmentsOut:
    order = service.merchant_goods_order(session, actor, merchant_id, order_no)
    return _order_shipments(session, order, settings)


@router.get("/orders/{order_no}/shipments", response_model=OrderShipmentsOut)
def order_shipments(
    order_no: OrderNo, user_id: UserIdDep, session: ReadSessionDep, settings: SettingsDep
) -> OrderShipmentsOut:
    """The consumer's parcels of an order, each with its tracking timeline."""
    return _order_shipments(session, orders.get_own_order(session, user_id, order_no), settings)


# --- tracking notifications ---------------------------------------------------------------------


def _notify(
    db: Database, settings: Settings, carrier_code: str, headers: dict[str, str], body: bytes
) -> TrackingNotifyOut:
    carrier = carriers.get_carrier(carrier_code)
    carriers.verify(settings, carrier, headers, body, time.time())
    try:
        data = TrackingNotifyIn.model_validate_json(body)
    except ValidationError as exc:
        errors = [
            {
                "field": ".".join(str(part) for part in err["loc"]) or "body",
                "in": "body",
                "message": err["msg"],
                "type": err["type"],
            }
            for err in exc.errors()
        ]
        raise ValidationFailed("物流通知内容无效", errors=errors) from None
    events = [service.Event(e.time, e.status, e.description, e.location) for e in data.events]
    with db.transaction() as session:
        result = service.apply_tracking(session, carrier.code, data.tracking_no, events)
    return TrackingNotifyOut(
        accepted=result.accepted, duplicates=result.duplicates, status=result.status
    )


@router.post("/logistics/notify/{carrier}", response_model=TrackingNotifyOut)
async def logistics_notify(
    carrier: CarrierPath, request: Request, db: DbDep, settings: SettingsDep
) -> TrackingNotifyOut:
    """Where carriers push tracking events. No login: the carrier's signature decides
    (``X-Logistics-Timestamp``, ``X-Logistics-Signature``; see ``o2o.shipping.carriers``)."""
    body = await request.body()
    if len(body) > MAX_NOTIFICATION_BYTES:
        raise AppError("通知内容过大", status=413, code="payload_too_large")
    headers = dict(request.headers.items())
    return await run_in_threadpool(_notify, db, settings, carrier, headers, body)


# --- receipt ------------------------------------------------------------------------------------


@router.post("/orders/{order_no}/confirm-receipt", response_model=ReceiptOut)
def confirm_receipt(order_no: OrderNo, user_id: UserIdDep, session: SessionDep) -> ReceiptOut:
    """确认收货 (the order's consumer): shipped → completed."""
    order = service.confirm_receipt(session, user_id, order_no)
    return ReceiptOut(
        order_no=order.order_no,
        status=order.status,
        status_label=ORDER_STATUS.label(order.status),
        completed_at=order.completed_at,
    )


# --- after-sales --------------------------------------------------------------------------------


def _next(items: Any, limit: int) -> str | None:
    return str(items[-1].id) if len(items) == limit else None


@router.post("/orders/{order_no}/after-sales", status_code=201, response_model=AfterSalesOut)
def open_after_sales(
    order_no: OrderNo, body: AfterSalesIn, user_id: UserIdDep, session: SessionDep
) -> AfterSalesOut:
    """申请售后 within 7 days of receipt: refund only, or return and refund."""
    request = aftersales.open_request(
        session,
        user_id,
        order_no,
        kind=body.kind,
        reason=body.reason,
        line_ids=body.line_ids,
        amount_fen=body.amount_fen,
    )
    return AfterSalesOut.model_validate(aftersales.requests_out(session, [request])[0])


@router.get("/after-sales", response_model=Page[AfterSalesOut])
def my_after_sales(
    user_id: UserIdDep,
    session: ReadSessionDep,
    status: AfterSalesStatus | None = None,
    limit: PageLimit = 20,
    cursor: Cursor = None,
) -> Page[AfterSalesOut]:
    """The consumer's own after-sales requests, newest first."""
    found = aftersales.list_for_consumer(
        session, user_id, status=status, limit=limit, before_id=int(cursor) if cursor else None
    )
    return Page[AfterSalesOut](
        items=[AfterSalesOut.model_validate(r) for r in aftersales.requests_out(session, found)],
        next_cursor=_next(found, limit),
    )


@router.post("/after-sales/{request_id}/cancel", response_model=AfterSalesOut)
def cancel_after_sales(request_id: Id, user_id: UserIdDep, session: SessionDep) -> AfterSalesOut:
    """The consumer withdraws a request the merchant has not answered."""
    request = aftersales.cancel_request(session, user_id, request_id)
    return AfterSalesOut.model_validate(aftersales.requests_out(session, [request])[0])


@router.get("/merchants/{merchant_id}/after-sales", response_model=Page[MerchantAfterSalesOut])
def merchant_after_sales(
    merchant_id: Id,
    actor: ActorDep,
    session: ReadSessionDep,
    status: AfterSalesStatus | None = None,
    limit: PageLimit = 20,
    cursor: Cursor = None,
) -> Page[MerchantAfterSalesOut]:
    """The merchant's after-sales requests (owner, manager), newest first."""
    found = aftersales.list_for_merchant(
        session,
        actor,
        merchant_id,
        status=status,
        limit=limit,
        before_id=int(cursor) if cursor else None,
    )
    return Page[MerchantAfterSalesOut](
        items=[
            MerchantAfterSalesOut.model_validate(r)
            for r in aftersales.requests_out(session, found, staff=True)
        ],
        next_cursor=_next(found, limit),
    )


def _merchant_out(db: Database, request_id: int) -> MerchantAfterSalesOut:
    with db.transaction(readonly=True) as session:
        request = session.get(aftersales.AfterSalesRequest, request_id)
        assert request is not None
        return MerchantAfterSalesOut.model_validate(
            aftersales.requests_out(session, [request], staff=True)[0]
        )


@router.post(
    "/merchants/{merchant_id}/after-sales/{request_id}/approve",
    response_model=MerchantAfterSalesOut,
)
def approve_after_sales(
    merchant_id: Id, request_id: Id, actor: ActorDep, db: DbDep, settings: SettingsDep
) -> MerchantAfterSalesOut:
    """同意 (owner, manager): the refund is created and sent to the payment provider."""
    with db.transaction() as session:
        request = aftersales.approve(session, actor, merchant_id, request_id)
        refund_id = request.refund_id
    assert refund_id is not None
    # Sent after the commit, outside any transaction; the refund sweep retries if this fails.
    aftersales.send_refund(db, settings, refund_id)
    return _merchant_out(db, request_id)


@router.post(
    "/merchants/{merchant_id}/after-sales/{request_id}/reject",
    response_model=MerchantAfterSalesOut,
)
def reject_after_sales(
    merchant_id: Id, request_id: Id, body: RejectIn, actor: ActorDep, db: DbDep
) -> MerchantAfterSalesOut:
    """拒绝 (owner, manager) with a reason the consumer sees."""
    with db.transaction() as session:
        aftersales.reject(session, actor, merchant_id, request_id, body.reason)
    return _merchant_out(db, request_id)


routers = [router]
