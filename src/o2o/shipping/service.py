"""Shipping goods orders: shipments (partial allowed), carrier tracking notifications, the
consumer's confirmation of receipt and the worker's auto-confirmation.

Every change to an order happens with the order row locked (``orders.lock_order``), so two
shipments of the same lines, or a shipment racing a refund request, cannot both win; a line
ships at most once anyway (unique ``shipment_lines.order_line_id``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o import events
from o2o.config import Settings
from o2o.db import Database
from o2o.errors import Conflict, InvalidTransition, NotFound, ValidationFailed
from o2o.events import BY_WORKER, STAFF, USER, WORKER, Who
from o2o.merchants.access import MANAGERS, Actor
from o2o.orders import service as orders
from o2o.orders.models import GOODS, ORDER_STATUS, SHIPPED, Order, OrderLine
from o2o.shipping import carriers
from o2o.shipping.models import (
    DELIVERED,
    SHIPMENT_STATUS,
    Shipment,
    ShipmentLine,
    TrackingEvent,
)
from o2o.shipping.models import SHIPPED as SHIPMENT_SHIPPED
from o2o.timeutil import as_utc, utcnow

log = logging.getLogger(__name__)

MAX_EVENTS_PER_NOTIFICATION = 100
# A tracking event dated further ahead than this is a carrier's clock gone wrong.
FUTURE_TOLERANCE = timedelta(days=1)
SYSTEM = "system"


# --- finding orders -----------------------------------------------------------------------------


def merchant_goods_order(session: Session, actor: Actor, merchant_id: int, order_no: str) -> Order:
    """A goods order of this merchant, for its owner or manager (goods are handled by the back
    office, not by store clerks). Another merchant's order looks like no order: 404."""
    actor.require_staff(merchant_id, MANAGERS)
    order = session.scalar(select(Order).where(Order.order_no == order_no))
    if order is None or order.merchant_id != merchant_id:
        raise NotFound("订单不存在", code="order_not_found")
    if order.kind != GOODS:
        raise Conflict("团购订单无需发货", code="not_goods_order")
    return order


def has_shipments(session: Session, order_id: int) -> bool:
    """Whether any parcel of the order has left (a partly shipped order is still ``paid``)."""
    return (
        session.scalar(select(ShipmentLine.id).where(ShipmentLine.order_id == order_id).limit(1))
        is not None
    )


def refuse_full_refund_once_shipped(session: Session, order: Order) -> None:
    """The payment core's veto on the consumer's full refund: once any parcel has left, the
    money comes back through after-sales (the merchant has to get the goods back first)."""
    if order.kind == GOODS and (order.shipped_at is not None or has_shipments(session, order.id)):
        raise Conflict(
            "订单已发货，不能直接退款；请确认收货后申请售后",
            code="refund_after_shipping",
            order_no=order.order_no,
        )


def _shipped_line_ids(session: Session, order_id: int) -> set[int]:
    return set(
        session.scalars(select(ShipmentLine.order_line_id).where(ShipmentLine.order_id == order_id))
    )


# --- shipping -----------------------------------------------------------------------------------


def ship(
    session: Session,
    actor: Actor,
    merchant_id: int,
    order_no: str,
    *,
    carrier: str,
    tracking_no: str,
    line_ids: Sequence[int] | None = None,
    now: datetime | None = None,
) -> Shipment:
    """发货: one parcel with some (default: all not yet shipped) lines of a paid goods order.
    The order becomes ``shipped`` when its last line ships."""
    now = now or utcnow()
    found = merchant_goods_order(session, actor, merchant_id, order_no)
    if carrier.upper() not in carriers.CARRIERS:
        raise ValidationFailed("不支持的快递公司", code="unknown_carrier", field="carrier")
    chosen_carrier = carriers.CARRIERS[carrier.upper()]
    number = carriers.check_tracking_no(chosen_carrier, tracking_no)
    order = orders.lock_order(session, found.id)
    # Only a paid order ships (not one being refunded, nor one already shipped): 409 otherwise.
    ORDER_STATUS.next_state(order.status, "ship")
    lines = orders.lines_by_order(session, [order.id])[order.id]
    shipped = _shipped_line_ids(session, order.id)
    if line_ids is None:
        chosen = [line for line in lines if line.id not in shipped]
    else:
        by_id = {line.id: line for line in lines}
        chosen = []
        for line_id in dict.fromkeys(line_ids):
            line = by_id.get(line_id)
            if line is None:
                raise ValidationFailed(
                    "订单中没有该商品", code="line_not_in_order", field="line_ids"
                )
            if line_id in shipped:
                raise Conflict(f"「{line.title}」已经发货", code="line_already_shipped")
            chosen.append(line)
    if not chosen:
        raise Conflict("订单商品已全部发货", code="nothing_to_ship")
    taken = session.scalar(
        select(Shipment.id).where(
            Shipment.carrier == chosen_carrier.code, Shipment.tracking_no == number
        )
    )
    if taken is not None:
        raise Conflict("该运单号已被使用", code="tracking_no_in_use")
    shipment = Shipment(
        order_id=order.id,
        merchant_id=merchant_id,
        carrier=chosen_carrier.code,
        tracking_no=number,
        status=SHIPMENT_SHIPPED,
        shipped_by=actor.user_id,
        shipped_at=now,
        updated_at=now,
    )
    session.add(shipment)
    session.flush()
    session.add_all(
        ShipmentLine(
            shipment_id=shipment.id,
            order_id=order.id,
            order_line_id=line.id,
            quantity=line.quantity,
        )
        for line in chosen
    )
    session.flush()
    if len(shipped) + len(chosen) == len(lines):
        # Auto-confirmation counts from here: the last shipment.
        order.shipped_at = now
        orders.set_status(session, order, "ship", by=Who(STAFF, actor.user_id), now=now)
    events.publish(
        session,
        events.ParcelShipped(
            order_id=order.id,
            order_no=order.order_no,
            shipment_id=shipment.id,
            carrier=shipment.carrier,
            tracking_no=shipment.tracking_no,
        ),
    )
    return shipment


# --- reading shipments --------------------------------------------------------------------------


def shipments_out(session: Session, order_ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    """Shipments per order with their lines and tracking timeline (newest event first)."""
    ids = sorted(set(order_ids))
    result: dict[int, list[dict[str, Any]]] = {oid: [] for oid in ids}
    if not ids:
        return result
    shipments = session.scalars(
        select(Shipment).where(Shipment.order_id.in_(ids)).order_by(Shipment.id)
    ).all()
    shipment_ids = [s.id for s in shipments]
    lines: dict[int, list[dict[str, Any]]] = {sid: [] for sid in shipment_ids}
    events: dict[int, list[dict[str, Any]]] = {sid: [] for sid in shipment_ids}
    if shipment_ids:
        for sl, title, sku_name in session.execute(
            select(ShipmentLine, OrderLine.title, OrderLine.sku_name)
            .join(OrderLine, OrderLine.id == ShipmentLine.order_line_id)
            .where(ShipmentLine.shipment_id.in_(shipment_ids))
            .order_by(ShipmentLine.order_line_id)
        ):
            lines[sl.shipment_id].append(
                {
                    "line_id": sl.order_line_id,
                    "title": title,
                    "sku_name": sku_name,
                    "quantity": sl.quantity,
                }
            )
        for event in session.scalars(
            select(TrackingEvent)
            .where(TrackingEvent.shipment_id.in_(shipment_ids))
            .order_by(TrackingEvent.occurred_at.desc(), TrackingEvent.id.desc())
        ):
            events[event.shipment_id].append(
                {
                    "time": event.occurred_at,
                    "status": event.status,
                    "status_label": SHIPMENT_STATUS.label(event.status),
                    "description": event.description,
                    "location": event.location,
                }
            )
    for s in shipments:
        carrier = carriers.CARRIERS.get(s.carrier)
        result[s.order_id].append(
            {
                "id": s.id,
                "carrier": s.carrier,
                "carrier_name": carrier.name if carrier else s.carrier,
                "tracking_no": s.tracking_no,
                "status": s.status,
                "status_label": SHIPMENT_STATUS.label(s.status),
                "shipped_at": s.shipped_at,
                "delivered_at": s.delivered_at,
                "lines": lines[s.id],
                "events": events[s.id],
            }
        )
    return result


def consumer_shipments(session: Session, user_id: int, order_no: str) -> list[dict[str, Any]]:
    order = orders.get_own_order(session, user_id, order_no)
    return shipments_out(session, [order.id])[order.id]


def merchant_shipments(
    session: Session, actor: Actor, merchant_id: int, order_no: str
) -> list[dict[str, Any]]:
    order = merchant_goods_order(session, actor, merchant_id, order_no)
    return shipments_out(session, [order.id])[order.id]


# --- tracking notifications ---------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    time: datetime
    status: str
    description: str = ""
    location: str = ""


@dataclass(frozen=True)
class TrackingResult:
    accepted: int
    duplicates: int
    status: str


def apply_tracking(
    session: Session,
    carrier_code: str,
    tracking_no: str,
    events: Sequence[Event],
    *,
    now: datetime | None = None,
) -> TrackingResult:
    """Append a carrier's events to the parcel, once each (by time and status), and move the
    parcel's status forward. Replays and out-of-order deliveries change nothing twice."""
    now = now or utcnow()
    carrier = carriers.get_carrier(carrier_code)
    if len(events) > MAX_EVENTS_PER_NOTIFICATION:
        raise ValidationFailed(f"一次最多 {MAX_EVENTS_PER_NOTIFICATION} 条轨迹", field="events")
    shipment = session.scalar(
        select(Shipment)
        .where(
            Shipment.carrier == carrier.code,
            Shipment.tracking_no == carriers.normalize_tracking_no(tracking_no),
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if shipment is None:
        raise NotFound("运单不存在", code="tracking_not_found")
    seen = {
        (as_utc(at), status)
        for at, status in session.execute(
            select(TrackingEvent.occurred_at, TrackingEvent.status).where(
                TrackingEvent.shipment_id == shipment.id
            )
        )
    }
    accepted = duplicates = 0
    for event in sorted(events, key=lambda e: as_utc(e.time)):
        at = as_utc(event.time).replace(microsecond=0)
        if at > now + FUTURE_TOLERANCE:
            raise ValidationFailed("轨迹时间不能晚于当前时间", field="events.time")
        if (at, event.status) in seen:
            duplicates += 1
            continue
        seen.add((at, event.status))
        session.add(
            TrackingEvent(
                shipment_id=shipment.id,
                occurred_at=at,
                status=event.status,
                description=event.description,
                location=event.location,
                received_at=now,
            )
        )
        accepted += 1
        newer = shipment.status_at is None or at >= as_utc(shipment.status_at)
        if newer and SHIPMENT_STATUS.can(shipment.status, event.status):
            shipment.status = SHIPMENT_STATUS.next_state(shipment.status, event.status)
            shipment.status_at = at
            if shipment.status == DELIVERED:
                shipment.delivered_at = at
    if accepted:
        shipment.updated_at = now
    session.flush()
    return TrackingResult(accepted, duplicates, shipment.status)


# --- receipt ------------------------------------------------------------------------------------


def _receive(session: Session, order: Order, now: datetime, by: Who) -> None:
    """shipped → completed (收货). Goods that are paid but not shipped cannot be received."""
    if order.status != SHIPPED:
        raise InvalidTransition(
            f"订单当前状态为「{ORDER_STATUS.label(order.status)}」，不能确认收货",
            code="not_shipped",
            current_status=order.status,
            action="confirm_receipt",
        )
    order.completed_at = now
    orders.set_status(session, order, "complete", by=by, now=now)
    events.publish(
        session,
        events.ParcelReceived(
            order_id=order.id,
            order_no=order.order_no,
            merchant_id=order.merchant_id,
            automatic=by.kind == WORKER,
        ),
    )


def confirm_receipt(
    session: Session, user_id: int, order_no: str, *, now: datetime | None = None
) -> Order:
    """确认收货 by the order's consumer."""
    found = orders.get_own_order(session, user_id, order_no)
    if found.kind != GOODS:
        raise Conflict("团购订单无需确认收货", code="not_goods_order")
    order = orders.lock_order(session, found.id)
    _receive(session, order, now or utcnow(), Who(USER, user_id))
    return order


def auto_confirm(
    db: Database, settings: Settings, *, now: datetime | None = None, batch: int = 100
) -> int:
    """自动确认收货: goods orders shipped ``auto_confirm_days`` ago or more. Idempotent (only
    ``shipped`` orders qualify); several workers skip each other's rows (PostgreSQL)."""
    now = now or utcnow()
    cutoff = now - timedelta(days=settings.auto_confirm_days)
    with db.transaction() as session:
        due = session.scalars(
            select(Order)
            .where(Order.kind == GOODS, Order.status == SHIPPED, Order.shipped_at <= cutoff)
            .order_by(Order.shipped_at, Order.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        ).all()
        moved = 0
        for order in due:
            # One order's trouble (a listener refusing) must not hold back the others.
            savepoint = session.begin_nested()
            try:
                _receive(session, order, now, BY_WORKER)
            except Exception:
                savepoint.rollback()
                log.exception("auto-confirming order %s failed", order.order_no)
                continue
            savepoint.commit()
            moved += 1
        return moved
