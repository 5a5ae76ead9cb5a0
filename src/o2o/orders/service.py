"""Checkout and orders: the rules, callable from the API, pages, CLI and worker.

Checkout (the hot path, PERFORMANCE.md): everything is validated first with the catalogue's
``resolve_purchase``; then the checkout, payment, orders, hold records and lines are inserted;
the conditional stock decrements come LAST, one per inventory item in item-id order, so the hot
row lock is held only from the decrement to the commit and two checkouts never deadlock.
If any decrement finds too little stock the whole transaction rolls back: nothing is held.

Order moves that follow a payment (paid, cancelled, revived) are here too; the payment core
(``o2o.payments.service``) calls them with the payment row locked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session, joinedload

from o2o import events
from o2o.accounts.models import User
from o2o.catalog import service as catalog
from o2o.catalog.models import GOODS, Listing, ListingStore, Sku, TimeSlot
from o2o.channels import service as channels
from o2o.config import Settings
from o2o.errors import NotFound, ValidationFailed
from o2o.events import ACTOR_LABELS, BY_PROVIDER, USER, Who
from o2o.inventory import service as inventory
from o2o.inventory.models import InventoryHold
from o2o.inventory.service import OutOfStock
from o2o.merchants.access import Actor
from o2o.merchants.models import Category, Merchant
from o2o.orders.models import (
    CANCELLED,
    COMPLETED,
    ORDER_ACTION_LABELS,
    ORDER_REASON_LABELS,
    ORDER_STATUS,
    PENDING_PAYMENT,
    REFUNDED,
    Checkout,
    Order,
    OrderHistory,
    OrderLine,
)
from o2o.orders.numbers import new_checkout_no, new_order_no, new_payment_no
from o2o.payments.models import CREATED, Payment
from o2o.timeutil import format_china, utcnow

MAX_LINE_QUANTITY = 99
MAX_ITEMS = 50
# A WeChat Pay prepay id lives 2 hours: the payment window must end inside it (with a margin
# for the time between checkout and the consumer pressing "pay").
PREPAY_VALIDITY = timedelta(hours=2)
PAYMENT_WINDOW_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class CartItem:
    listing_id: int
    quantity: int
    sku_id: int | None = None
    slot_id: int | None = None


@dataclass
class _Line:
    item: catalog.Purchasable
    quantity: int

    @property
    def amount_fen(self) -> int:
        return self.item.unit_price_fen * self.quantity


def payment_window(settings: Settings) -> timedelta:
    limit = PREPAY_VALIDITY - PAYMENT_WINDOW_MARGIN
    return min(timedelta(seconds=settings.payment_timeout_seconds), limit)


def _merge(items: Sequence[CartItem]) -> list[CartItem]:
    """The same listing/SKU/slot twice in one cart is one line with the quantities added."""
    merged: dict[tuple[int, int | None, int | None], int] = {}
    for item in items:
        if item.quantity < 1:
            raise ValidationFailed("购买数量至少为 1", field="items")
        key = (item.listing_id, item.sku_id, item.slot_id)
        merged[key] = merged.get(key, 0) + item.quantity
    result = []
    for (listing_id, sku_id, slot_id), quantity in merged.items():
        if quantity > MAX_LINE_QUANTITY:
            raise ValidationFailed(f"单个商品最多购买 {MAX_LINE_QUANTITY} 件", field="items")
        result.append(CartItem(listing_id, quantity, sku_id, slot_id))
    return result


# The hot path's statements, built once (SQLAlchemy then only looks up the compiled form).
_PRELOAD = (
    select(Listing, Merchant, Category)
    .join(Merchant, Merchant.id == Listing.merchant_id)
    .outerjoin(Category, Category.id == Listing.category_id)
    .where(Listing.id.in_(bindparam("listing_ids", expanding=True)))
    .options(joinedload(Listing.store_links))
)
_PRELOAD_WITH_SKUS = _PRELOAD.add_columns(Sku).outerjoin(
    Sku,
    and_(Sku.listing_id == Listing.id, Sku.id.in_(bindparam("sku_ids", expanding=True))),
)
_PRELOAD_SLOTS = select(TimeSlot).where(TimeSlot.id.in_(bindparam("slot_ids", expanding=True)))
_INSERT_CHECKOUT = insert(Checkout.__table__).returning(Checkout.__table__.c.id)
_INSERT_PAYMENT = insert(Payment.__table__).returning(Payment.__table__.c.id)
_INSERT_ORDERS = insert(Order.__table__).returning(
    Order.__table__.c.id, sort_by_parameter_order=True
)
_INSERT_HOLDS = insert(InventoryHold.__table__).returning(
    InventoryHold.__table__.c.id, sort_by_parameter_order=True
)
_INSERT_LINES = insert(OrderLine.__table__)
_INSERT_HISTORY = insert(OrderHistory.__table__)


def _preload(session: Session, items: Sequence[CartItem]) -> list[Any]:
    """Load every listing (with merchant, category, stores and the chosen SKU) in one query,
    and the slots in another, so the catalogue's ``resolve_purchase`` — the one place that
    says what can be bought — finds them in the identity map instead of querying one by one."""
    params: dict[str, Any] = {"listing_ids": sorted({i.listing_id for i in items})}
    sku_ids = sorted({i.sku_id for i in items if i.sku_id is not None})
    if sku_ids:
        params["sku_ids"] = sku_ids
    stmt = _PRELOAD_WITH_SKUS if sku_ids else _PRELOAD
    loaded: list[Any] = list(session.execute(stmt, params).unique().all())
    slot_ids = sorted({i.slot_id for i in items if i.slot_id is not None})
    if slot_ids:
        loaded.extend(session.scalars(_PRELOAD_SLOTS, {"slot_ids": slot_ids}))
    return loaded  # the identity map holds objects weakly: the caller keeps them alive


def _check_per_user_limits(session: Session, user_id: int, lines: Sequence[_Line]) -> None:
    """限购: units of a listing in the user's orders that are not cancelled or refunded."""
    wanted: dict[int, int] = {}
    limits: dict[int, tuple[int, str]] = {}
    for line in lines:
        if line.item.per_user_limit is not None:
            wanted[line.item.listing_id] = wanted.get(line.item.listing_id, 0) + line.quantity
            limits[line.item.listing_id] = (line.item.per_user_limit, line.item.title)
    if not wanted:
        return
    # Serialise this user's limited checkouts (PostgreSQL; SQLite has one writer anyway) so two
    # concurrent carts cannot both pass the count below.
    session.execute(select(User.id).where(User.id == user_id).with_for_update())
    bought = dict(
        session.execute(
            select(OrderLine.listing_id, func.coalesce(func.sum(OrderLine.quantity), 0))
            .join(Order, Order.id == OrderLine.order_id)
            .where(
                Order.user_id == user_id,
                Order.status.not_in((CANCELLED, REFUNDED)),
                OrderLine.listing_id.in_(list(wanted)),
            )
            .group_by(OrderLine.listing_id)
        ).all()
    )
    for listing_id, quantity in wanted.items():
        limit, title = limits[listing_id]
        already = int(bought.get(listing_id, 0))
        if already + quantity > limit:
            raise ValidationFailed(
                f"「{title}」每人限购 {limit} 件，您已购买 {already} 件",
                code="per_user_limit",
                field="items",
            )


def checkout(
    session: Session,
    settings: Settings,
    *,
    user_id: int,
    items: Sequence[CartItem],
    shipping_address: dict[str, Any] | None = None,
    channel: str | None = None,
    note: str = "",
    visitor_id: str | None = None,
    before_decrements: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """One checkout: orders per (merchant, kind), one payment, stock held. Returns the 201 body.

    ``channel`` is what the client claims (checkout's ``channel`` field); the code stored on the
    checkout and its orders is what ``channels.attribute`` decides: that channel if it exists and
    is active, else the last touch of ``visitor_id`` (``channels.middleware.visitor_id(request)``)
    or of the user within the attribution window, else none. Unknown codes are ignored.

    ``before_decrements(body)`` is called with the response once everything but the stock
    decrements is written (the API stores its Idempotency-Key answer there, so that round trip
    is not made while a hot stock row is locked)."""
    if not items:
        raise ValidationFailed("购物车是空的", field="items")
    if len(items) > MAX_ITEMS:
        raise ValidationFailed(f"一次最多结算 {MAX_ITEMS} 种商品", field="items")
    merged = _merge(items)
    loaded = _preload(session, merged)
    lines = [
        _Line(
            catalog.resolve_purchase(
                session, item.listing_id, sku_id=item.sku_id, slot_id=item.slot_id
            ),
            item.quantity,
        )
        for item in merged
    ]
    del loaded
    has_goods = any(line.item.kind == GOODS for line in lines)
    if has_goods and not shipping_address:
        raise ValidationFailed("实物商品需要填写收货地址", field="shipping_address")
    if not has_goods and shipping_address:
        raise ValidationFailed("团购套餐无需收货地址", field="shipping_address")
    _check_per_user_limits(session, user_id, lines)
    channel = channels.attribute(session, visitor_id, user_id, channel=channel or None) or ""

    # Group into orders: one per merchant and kind, in the order the cart names them.
    groups: dict[tuple[int, str], list[_Line]] = {}
    for line in lines:
        groups.setdefault((line.item.merchant_id, line.item.kind), []).append(line)

    now = utcnow()
    expires_at = now + payment_window(settings)
    order_rows: list[dict[str, Any]] = []
    for (merchant_id, kind), group in groups.items():
        items_fen = sum(line.amount_fen for line in group)
        # One shipping fee per goods order: the highest of its listings' fees.
        shipping = max(line.item.shipping_fee_fen for line in group) if kind == GOODS else 0
        order_rows.append(
            {
                "order_no": new_order_no(),
                "user_id": user_id,
                "merchant_id": merchant_id,
                "kind": kind,
                "status": PENDING_PAYMENT,
                "items_fen": items_fen,
                "shipping_fee_fen": shipping,
                "discount_fen": 0,
                "payable_fen": items_fen + shipping,
                "refunded_fen": 0,
                "shipping_address": shipping_address if kind == GOODS else None,
                "note": note,
                "channel": channel,
                "created_at": now,
                "updated_at": now,
            }
        )
    total = sum(row["payable_fen"] for row in order_rows)
    if total < 1:
        raise ValidationFailed("订单金额必须大于 0", field="items")

    # Core on the session's connection: the ORM session's execute machinery is not needed for
    # plain inserts and costs more than the SQL itself on this path.
    conn = session.connection()
    checkout_no = new_checkout_no()
    checkout_id = conn.execute(
        _INSERT_CHECKOUT,
        {
            "checkout_no": checkout_no,
            "user_id": user_id,
            "total_fen": total,
            "channel": channel,
            "created_at": now,
        },
    ).scalar_one()
    payment_no = new_payment_no()
    payment_id = conn.execute(
        _INSERT_PAYMENT,
        {
            "payment_no": payment_no,
            "checkout_id": checkout_id,
            "user_id": user_id,
            "amount_fen": total,
            "currency": "CNY",
            "status": CREATED,
            "expires_at": expires_at,
            "created_at": now,
            "updated_at": now,
        },
    ).scalar_one()
    for row in order_rows:
        row["checkout_id"] = checkout_id
        row["payment_id"] = payment_id
    order_ids = list(conn.execute(_INSERT_ORDERS, order_rows).scalars())

    # Hold records first (status "held"), the decrements they stand for last.
    hold_rows: list[dict[str, Any]] = []
    hold_of: list[tuple[int, int]] = []  # (line index, position among the line's items)
    flat = [(order_index, line) for order_index, g in enumerate(groups.values()) for line in g]
    for index, (order_index, line) in enumerate(flat):
        for position, item_id in enumerate(line.item.inventory_item_ids):
            hold_rows.append(
                {
                    "item_id": item_id,
                    "quantity": line.quantity,
                    "status": inventory.HELD,
                    "ref": f"order:{order_rows[order_index]['order_no']}",
                    "created_at": now,
                    "updated_at": now,
                }
            )
            hold_of.append((index, position))
    hold_ids: list[int] = []
    if hold_rows:
        hold_ids = list(conn.execute(_INSERT_HOLDS, hold_rows).scalars())
    line_holds: dict[int, list[int]] = {}
    for (index, _position), hold_id in zip(hold_of, hold_ids, strict=True):
        line_holds.setdefault(index, []).append(hold_id)
    line_rows = []
    for index, (order_index, line) in enumerate(flat):
        held = line_holds.get(index, [])
        line_rows.append(
            {
                "order_id": order_ids[order_index],
                "listing_id": line.item.listing_id,
                "sku_id": line.item.sku_id,
                "slot_id": line.item.slot_id,
                "title": line.item.title,
                "sku_name": line.item.sku_name or "",
                "unit_price_fen": line.item.unit_price_fen,
                "quantity": line.quantity,
                "amount_fen": line.amount_fen,
                "commission_bp": line.item.commission_bp,
                "hold_id": held[0] if held else None,
                "extra_hold_id": held[1] if len(held) > 1 else None,
                "refunded_fen": 0,
            }
        )
    conn.execute(_INSERT_LINES, line_rows)
    conn.execute(
        _INSERT_HISTORY,
        [
            {
                "order_id": order_id,
                "action": "place",
                "from_status": "",
                "to_status": PENDING_PAYMENT,
                "actor_kind": USER,
                "actor_id": user_id,
                "reason": "",
                "at": now,
            }
            for order_id in order_ids
        ],
    )
    for order_id, row in zip(order_ids, order_rows, strict=True):
        events.publish(
            session,
            events.OrderPlaced(
                order_id=order_id,
                order_no=row["order_no"],
                user_id=user_id,
                merchant_id=row["merchant_id"],
                kind=row["kind"],
                payable_fen=row["payable_fen"],
            ),
        )

    result = {
        "checkout_id": checkout_no,
        "orders": [
            {
                "order_no": row["order_no"],
                "merchant_id": row["merchant_id"],
                "kind": row["kind"],
                "status": PENDING_PAYMENT,
                "items_fen": row["items_fen"],
                "shipping_fee_fen": row["shipping_fee_fen"],
                "payable_fen": row["payable_fen"],
            }
            for row in order_rows
        ],
        "payment": {
            "payment_no": payment_no,
            "amount_fen": total,
            "status": CREATED,
            "expires_at": expires_at.isoformat(),
        },
    }
    if before_decrements is not None:
        before_decrements(result)

    # The hot part: conditional decrements in item-id order, then commit (by the caller).
    needed: dict[int, int] = {}
    label_of: dict[int, _Line] = {}
    for _order_index, line in flat:
        for item_id in line.item.inventory_item_ids:
            needed[item_id] = needed.get(item_id, 0) + line.quantity
            label_of.setdefault(item_id, line)
    for item_id in sorted(needed):
        if not inventory.try_take(session, item_id, needed[item_id]):
            line = label_of[item_id]
            raise OutOfStock(
                f"「{_line_label(line)}」库存不足",
                listing_id=line.item.listing_id,
                sku_id=line.item.sku_id,
                slot_id=line.item.slot_id,
                requested=needed[item_id],
            )

    return result


def _line_label(line: _Line) -> str:
    label = line.item.label
    if line.item.slot_starts_at is not None:
        label += f" {format_china(line.item.slot_starts_at)} 场"
    return label


# --- reading orders ----------------------------------------------------------------------------


def lines_by_order(session: Session, order_ids: Sequence[int]) -> dict[int, list[OrderLine]]:
    result: dict[int, list[OrderLine]] = {oid: [] for oid in order_ids}
    if not order_ids:
        return result
    for line in session.scalars(
        select(OrderLine).where(OrderLine.order_id.in_(order_ids)).order_by(OrderLine.id)
    ):
        result[line.order_id].append(line)
    return result


def history(session: Session, order_id: int) -> Sequence[OrderHistory]:
    """The order's history rows, oldest first."""
    return session.scalars(
        select(OrderHistory).where(OrderHistory.order_id == order_id).order_by(OrderHistory.id)
    ).all()


def timeline(session: Session, order_id: int) -> list[dict[str, Any]]:
    """The order's history in words for the pages (consumer, console, admin), oldest first."""
    return [
        {
            "at": row.at,
            "action": row.action,
            "label": ORDER_ACTION_LABELS.get(row.action, row.action),
            "to_status": row.to_status,
            "to_label": ORDER_STATUS.label(row.to_status),
            "actor_kind": row.actor_kind,
            "actor": ACTOR_LABELS.get(row.actor_kind, row.actor_kind),
            "actor_id": row.actor_id,
            "reason": ORDER_REASON_LABELS.get(row.reason, row.reason),
        }
        for row in history(session, order_id)
    ]


def get_own_order(session: Session, user_id: int, order_no: str) -> Order:
    """The consumer's own order; anyone else's is 404 (its existence is not revealed)."""
    order = session.scalar(select(Order).where(Order.order_no == order_no))
    if order is None or order.user_id != user_id:
        raise NotFound("订单不存在", code="order_not_found")
    return order


def list_own_orders(
    session: Session,
    user_id: int,
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 20,
    before_id: int | None = None,
) -> Sequence[Order]:
    stmt = select(Order).where(Order.user_id == user_id).order_by(Order.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(Order.status == status)
    if kind:
        stmt = stmt.where(Order.kind == kind)
    if before_id:
        stmt = stmt.where(Order.id < before_id)
    return session.scalars(stmt).all()


def _at_stores(store_ids: Iterable[int]) -> Any:
    """Service orders with a line usable at one of ``store_ids``: a booked slot there, or (no
    slot) a deal valid there. Evaluated live against the listing's current stores."""
    ids = list(store_ids)
    slot_there = exists().where(TimeSlot.id == OrderLine.slot_id, TimeSlot.store_id.in_(ids))
    deal_there = exists().where(
        ListingStore.listing_id == OrderLine.listing_id, ListingStore.store_id.in_(ids)
    )
    return exists().where(
        OrderLine.order_id == Order.id,
        or_(
            and_(OrderLine.slot_id.is_not(None), slot_there),
            and_(OrderLine.slot_id.is_(None), deal_there),
        ),
    )


def list_merchant_orders(
    session: Session,
    actor: Actor,
    merchant_id: int,
    *,
    status: str | None = None,
    kind: str | None = None,
    store_id: int | None = None,
    limit: int = 20,
    before_id: int | None = None,
) -> Sequence[Order]:
    """Staff's view. Owners and managers see every order of the merchant; a clerk only service
    orders for its stores (goods are handled by the back office, not at a store)."""
    visible = actor.visible_store_ids(merchant_id)  # raises 403 for non-staff
    if store_id is not None:
        actor.require_staff(merchant_id, store_id=store_id)
    stmt = (
        select(Order).where(Order.merchant_id == merchant_id).order_by(Order.id.desc()).limit(limit)
    )
    if visible is not None:
        stmt = stmt.where(Order.kind != GOODS, _at_stores(visible))
    if store_id is not None:
        stmt = stmt.where(Order.kind != GOODS, _at_stores([store_id]))
    if status:
        stmt = stmt.where(Order.status == status)
    if kind:
        stmt = stmt.where(Order.kind == kind)
    if before_id:
        stmt = stmt.where(Order.id < before_id)
    return session.scalars(stmt).all()


def get_merchant_order(session: Session, actor: Actor, merchant_id: int, order_no: str) -> Order:
    """One order of the merchant, by the list's rule: owners and managers see any; a clerk only
    a service order usable at one of its stores. Anything else — another merchant's order, a
    goods order for a clerk — looks like no order at all (404)."""
    visible = actor.visible_store_ids(merchant_id)  # raises 403 for non-staff
    stmt = select(Order).where(Order.order_no == order_no, Order.merchant_id == merchant_id)
    if visible is not None:
        stmt = stmt.where(Order.kind != GOODS, _at_stores(visible))
    order = session.scalar(stmt)
    if order is None:
        raise NotFound("订单不存在", code="order_not_found")
    return order


def merchant_names(session: Session, merchant_ids: Iterable[int]) -> dict[int, str]:
    ids = sorted(set(merchant_ids))
    if not ids:
        return {}
    return dict(
        session.execute(select(Merchant.id, Merchant.name).where(Merchant.id.in_(ids))).all()
    )


def orders_of_payment(
    session: Session, payment_id: int, *, status: str | None = None
) -> list[Order]:
    stmt = select(Order).where(Order.payment_id == payment_id).order_by(Order.id)
    if status:
        stmt = stmt.where(Order.status == status)
    return list(session.scalars(stmt))


# --- moves that follow the payment (the payment row is locked by the caller) -------------------


def _move(
    session: Session, order: Order, action: str, now: datetime, *, by: Who, reason: str = ""
) -> None:
    """Every change of ``Order.status`` goes through here (law 6 + the order's history)."""
    was = order.status
    order.status = ORDER_STATUS.next_state(was, action)
    order.updated_at = now
    session.add(
        OrderHistory(
            order_id=order.id,
            action=action,
            from_status=was,
            to_status=order.status,
            actor_kind=by.kind,
            actor_id=by.id,
            reason=reason[:200],
            at=now,
        )
    )
    events.publish(
        session,
        events.OrderStatusChanged(
            order_id=order.id,
            order_no=order.order_no,
            merchant_id=order.merchant_id,
            action=action,
            from_status=was,
            to_status=order.status,
            actor_kind=by.kind,
            actor_id=by.id,
            reason=reason,
            occurred_at=now,
        ),
    )
    if order.status == COMPLETED:
        events.publish(
            session,
            events.OrderCompleted(
                order_id=order.id,
                order_no=order.order_no,
                user_id=order.user_id,
                merchant_id=order.merchant_id,
                kind=order.kind,
                occurred_at=now,
            ),
        )


def holds_in_lock_order(session: Session, lines: Iterable[OrderLine]) -> list[tuple[int, int]]:
    """(hold id, item id) of the lines, sorted by item id: the fixed lock order."""
    hold_ids = [hid for line in lines for hid in line.hold_ids]
    if not hold_ids:
        return []
    rows = session.execute(
        select(InventoryHold.id, InventoryHold.item_id).where(InventoryHold.id.in_(hold_ids))
    )
    return sorted(rows, key=lambda r: (r[1], r[0]))


def _flat(lines: dict[int, list[OrderLine]]) -> list[OrderLine]:
    return [line for group in lines.values() for line in group]


def _publish_paid(session: Session, orders: Sequence[Order], *, revived: bool = False) -> None:
    """``order.paid`` per order, with the payment row locked (vouchers are issued there)."""
    for order in orders:
        events.publish(
            session,
            events.OrderPaid(
                order_id=order.id,
                order_no=order.order_no,
                user_id=order.user_id,
                merchant_id=order.merchant_id,
                kind=order.kind,
                payable_fen=order.payable_fen,
                revived=revived,
            ),
        )


def _record_sales(session: Session, lines: Iterable[OrderLine]) -> None:
    per_listing: dict[int, int] = {}
    for line in lines:
        per_listing[line.listing_id] = per_listing.get(line.listing_id, 0) + line.quantity
    for listing_id in sorted(per_listing):
        catalog.record_sales(session, listing_id, per_listing[listing_id])


def mark_paid(session: Session, orders: Sequence[Order], now: datetime) -> None:
    """Pending orders of a payment that has just succeeded: holds become sales, then hooks."""
    lines = lines_by_order(session, [o.id for o in orders])
    for hold_id, _item in holds_in_lock_order(session, _flat(lines)):
        inventory.commit(session, hold_id)
    for order in orders:
        order.paid_at = now
        _move(session, order, "pay", now, by=BY_PROVIDER)
    _record_sales(session, _flat(lines))
    session.flush()
    _publish_paid(session, orders)


def cancel(
    session: Session, orders: Sequence[Order], reason: str, now: datetime, *, by: Who
) -> None:
    """Unpaid orders cancelled (consumer or timeout): their holds go back to available."""
    for order in orders:
        order.cancelled_at = now
        order.cancel_reason = reason
        _move(session, order, "cancel", now, by=by, reason=reason)
    lines = lines_by_order(session, [o.id for o in orders])
    for hold_id, _item in holds_in_lock_order(session, _flat(lines)):
        inventory.release(session, hold_id)
    session.flush()
    for order in orders:
        events.publish(
            session,
            events.OrderCancelled(
                order_id=order.id,
                order_no=order.order_no,
                user_id=order.user_id,
                merchant_id=order.merchant_id,
                reason=reason,
            ),
        )


def revive(session: Session, orders: Sequence[Order], now: datetime) -> bool:
    """Money arrived for orders the timeout cancelled: hold everything again now, all or
    nothing, and mark them paid. False (and nothing changed) when the stock is gone."""
    lines = lines_by_order(session, [o.id for o in orders])
    item_of = dict(holds_in_lock_order(session, _flat(lines)))  # the released holds' items
    wanted = sorted(
        (
            (item_of[hid], line.id, position, line)
            for line in _flat(lines)
            for position, hid in enumerate(line.hold_ids)
        ),
        key=lambda w: (w[0], w[1], w[2]),
    )
    savepoint = session.begin_nested()
    try:
        new_holds = [
            (
                line,
                position,
                inventory.hold(session, item_id, line.quantity, ref=f"order_line:{line.id}").id,
            )
            for item_id, _line_id, position, line in wanted
        ]
    except OutOfStock:
        savepoint.rollback()
        return False
    savepoint.commit()
    for line, position, hold_id in new_holds:
        if position == 0:
            line.hold_id = hold_id
        else:
            line.extra_hold_id = hold_id
        inventory.commit(session, hold_id)
    for order in orders:
        order.paid_at = now
        _move(session, order, "revive", now, by=BY_PROVIDER, reason="late_payment")
    _record_sales(session, _flat(lines))
    session.flush()
    _publish_paid(session, orders, revived=True)
    return True


def set_status(
    session: Session,
    order: Order,
    action: str,
    *,
    by: Who,
    reason: str = "",
    now: datetime | None = None,
) -> Order:
    """The one way any domain moves an order along ORDER_STATUS (409 if the move is not in the
    table): payments, shipping and fulfilment ask here; the history row is written with it."""
    _move(session, order, action, now or utcnow(), by=by, reason=reason)
    session.flush()
    return order


def lock_order(session: Session, order_id: int) -> Order:
    order = session.scalar(
        select(Order)
        .where(Order.id == order_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if order is None:
        raise NotFound("订单不存在", code="order_not_found")
    return order


def add_refunded(session: Session, order_id: int, amount_fen: int) -> bool:
    """Reserve ``amount_fen`` of the order's paid amount for a refund, atomically: never more
    than was paid, whatever runs concurrently (DESIGN.md law 4)."""
    result = session.execute(
        update(Order)
        .where(Order.id == order_id, Order.refunded_fen + amount_fen <= Order.payable_fen)
        .values(refunded_fen=Order.refunded_fen + amount_fen, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1
