"""hold / release / commit / give_back / adjust: the only ways units move (DESIGN.md law 1).

Every function works inside the caller's transaction and moves units with one conditional UPDATE,
so concurrent callers can never take more than is available, on SQLite or PostgreSQL. Hold state
changes are themselves conditional (``WHERE status = 'held'``), which makes release and commit
idempotent: a second release of the same hold moves nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from o2o.errors import Conflict, ValidationFailed
from o2o.inventory.models import InventoryAdjustment, InventoryHold, InventoryItem
from o2o.timeutil import utcnow

HELD, RELEASED, COMMITTED, RETURNED = "held", "released", "committed", "returned"
MAX_UNITS = 10_000_000


class OutOfStock(Conflict):
    code = "out_of_stock"
    title = "库存不足"


@dataclass(frozen=True)
class Levels:
    total: int
    available: int
    held: int
    sold: int


def create_item(session: Session, kind: str, total: int, *, ref: str = "") -> InventoryItem:
    if not 0 <= total <= MAX_UNITS:
        raise ValidationFailed("库存数量超出范围", field="stock")
    item = InventoryItem(kind=kind, ref=ref, total=total, available=total, held=0, sold=0)
    session.add(item)
    session.flush()
    return item


def create_items(session: Session, kind: str, totals: Sequence[int], *, ref: str = "") -> list[int]:
    """Many items in one round trip (e.g. a week of slots); ids in the order of ``totals``."""
    if not all(0 <= t <= MAX_UNITS for t in totals):
        raise ValidationFailed("库存数量超出范围", field="stock")
    if not totals:
        return []
    rows = [
        {"kind": kind, "ref": ref, "total": t, "available": t, "held": 0, "sold": 0} for t in totals
    ]
    return list(
        session.scalars(
            insert(InventoryItem).returning(InventoryItem.id, sort_by_parameter_order=True), rows
        )
    )


def levels(session: Session, item_id: int) -> Levels:
    row = session.execute(
        select(
            InventoryItem.total, InventoryItem.available, InventoryItem.held, InventoryItem.sold
        ).where(InventoryItem.id == item_id)
    ).one()
    return Levels(*row)


def levels_by_item(session: Session, item_ids: Sequence[int]) -> dict[int, Levels]:
    if not item_ids:
        return {}
    rows = session.execute(
        select(
            InventoryItem.id,
            InventoryItem.total,
            InventoryItem.available,
            InventoryItem.held,
            InventoryItem.sold,
        ).where(InventoryItem.id.in_(item_ids))
    )
    return {row[0]: Levels(*row[1:]) for row in rows}


def available_by_item(session: Session, item_ids: Sequence[int]) -> dict[int, int]:
    if not item_ids:
        return {}
    rows = session.execute(
        select(InventoryItem.id, InventoryItem.available).where(InventoryItem.id.in_(item_ids))
    )
    return dict(rows.all())


# Built once, as a Core statement: checkout runs it for every item it holds, and the ORM's
# bulk-update machinery (plus building the expression each time) cost more than the SQL.
_items = InventoryItem.__table__
_TAKE = (
    _items.update()
    .where(_items.c.id == bindparam("item_id"), _items.c.available >= bindparam("quantity"))
    .values(
        available=_items.c.available - bindparam("quantity"),
        held=_items.c.held + bindparam("quantity"),
    )
)


def try_take(session: Session, item_id: int, quantity: int) -> bool:
    """The conditional decrement: available → held, only if enough is available."""
    result = session.connection().execute(_TAKE, {"item_id": item_id, "quantity": quantity})
    return result.rowcount == 1


def hold(
    session: Session, item_id: int, quantity: int, *, ref: str = "", label: str = ""
) -> InventoryHold:
    """Hold ``quantity`` units for an unpaid order, or raise OutOfStock (409) naming the item."""
    if not 1 <= quantity <= MAX_UNITS:
        raise ValidationFailed("数量必须为正数", field="quantity")
    if not try_take(session, item_id, quantity):
        raise OutOfStock(f"「{label or item_id}」库存不足", item_id=item_id, requested=quantity)
    now = utcnow()
    record = InventoryHold(
        item_id=item_id, quantity=quantity, status=HELD, ref=ref, created_at=now, updated_at=now
    )
    session.add(record)
    session.flush()
    return record


def _move_hold(
    session: Session, hold_id: int, from_status: str, to_status: str
) -> tuple[int, int] | None:
    """Claim the hold's state change: (item_id, quantity), or None if it was not in from_status."""
    row = session.execute(
        update(InventoryHold)
        .where(InventoryHold.id == hold_id, InventoryHold.status == from_status)
        .values(status=to_status, updated_at=utcnow())
        .returning(InventoryHold.item_id, InventoryHold.quantity)
        .execution_options(synchronize_session=False)
    ).first()
    return None if row is None else (row[0], row[1])


def release(session: Session, hold_id: int) -> bool:
    """Held units go back to available (cancel, payment timeout). Idempotent."""
    moved = _move_hold(session, hold_id, HELD, RELEASED)
    if moved is None:
        return False
    item_id, quantity = moved
    session.execute(
        update(InventoryItem)
        .where(InventoryItem.id == item_id)
        .values(available=InventoryItem.available + quantity, held=InventoryItem.held - quantity)
        .execution_options(synchronize_session=False)
    )
    return True


def commit(session: Session, hold_id: int) -> bool:
    """Held units become sold (payment applied). Idempotent."""
    moved = _move_hold(session, hold_id, HELD, COMMITTED)
    if moved is None:
        return False
    item_id, quantity = moved
    session.execute(
        update(InventoryItem)
        .where(InventoryItem.id == item_id)
        .values(held=InventoryItem.held - quantity, sold=InventoryItem.sold + quantity)
        .execution_options(synchronize_session=False)
    )
    return True


def give_back(session: Session, hold_id: int, quantity: int | None = None) -> bool:
    """Sold units return to available (a refund while the units can still be sold, e.g. a
    future slot). Whole holds only when ``quantity`` is None; partial returns split the hold."""
    record = session.get(InventoryHold, hold_id)
    if record is None or record.status != COMMITTED:
        return False
    if quantity is None or quantity >= record.quantity:
        moved = _move_hold(session, hold_id, COMMITTED, RETURNED)
        if moved is None:
            return False
        item_id, quantity = moved
    else:
        # Shrink the committed hold and record the returned part as its own hold.
        result = session.execute(
            update(InventoryHold)
            .where(
                InventoryHold.id == hold_id,
                InventoryHold.status == COMMITTED,
                InventoryHold.quantity > quantity,
            )
            .values(quantity=InventoryHold.quantity - quantity, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:
            return False
        item_id = record.item_id
        session.add(
            InventoryHold(item_id=item_id, quantity=quantity, status=RETURNED, ref=record.ref)
        )
    session.execute(
        update(InventoryItem)
        .where(InventoryItem.id == item_id)
        .values(available=InventoryItem.available + quantity, sold=InventoryItem.sold - quantity)
        .execution_options(synchronize_session=False)
    )
    return True


def adjust(
    session: Session, item_id: int, delta: int, *, actor_user_id: int | None, reason: str = ""
) -> Levels:
    """A merchant adds or removes units (never below what is held or sold). Audited."""
    if delta == 0 or abs(delta) > MAX_UNITS:
        raise ValidationFailed("调整数量无效", field="delta")
    result = session.execute(
        update(InventoryItem)
        .where(
            InventoryItem.id == item_id,
            InventoryItem.available + delta >= 0,
            InventoryItem.total + delta <= MAX_UNITS,
        )
        .values(available=InventoryItem.available + delta, total=InventoryItem.total + delta)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise Conflict("可售库存不足，无法减少这么多", code="stock_adjust_below_zero")
    after = levels(session, item_id)
    session.add(
        InventoryAdjustment(
            item_id=item_id,
            delta=delta,
            total_after=after.total,
            actor_user_id=actor_user_id,
            reason=reason,
        )
    )
    session.flush()
    return after


def set_total(
    session: Session, item_id: int, total: int, *, actor_user_id: int | None, reason: str = ""
) -> Levels:
    """Set the stock to ``total`` (as a merchant types it), via an audited adjustment."""
    current = levels(session, item_id)
    if total == current.total:
        return current
    return adjust(
        session, item_id, total - current.total, actor_user_id=actor_user_id, reason=reason
    )


def set_available(
    session: Session, item_id: int, available: int, *, actor_user_id: int | None, reason: str = ""
) -> Levels:
    """Set what can still be sold to ``available`` (库存 as a merchant sees and types it), via an
    audited adjustment. A hold racing in between wins its units; the count never goes below 0."""
    current = levels(session, item_id)
    if available == current.available:
        return current
    return adjust(
        session, item_id, available - current.available, actor_user_id=actor_user_id, reason=reason
    )


def holds_for(session: Session, ref: str) -> Sequence[InventoryHold]:
    return session.scalars(select(InventoryHold).where(InventoryHold.ref == ref)).all()
