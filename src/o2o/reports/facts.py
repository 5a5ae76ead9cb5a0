"""Per-order report facts: how they are computed, kept and read.

One SELECT (``fact_rows``) turns orders into fact rows — one per (order, leaf category of its
lines): the order's window, merchant, model, channel and buyer; whether it was paid, shipped,
received, consumed; its lines' amounts and refunds; its vouchers issued, redeemed and refunded;
the commission earned (``o2o.reports.service`` defines each figure). The same SELECT serves

- the worker job (``refresh``): dirty orders → stored facts, in batches;
- the reports (``facts_relation``): stored facts ∪ the facts of still-dirty orders, computed live.

Why this stays exact: database triggers (migration 0008) mark an order dirty *and* delete its
stored facts in the transaction that changes the order, its lines or vouchers; ``refresh`` deletes
the marks it takes and stores their facts in one transaction, holding the marks' row locks
(PostgreSQL ``FOR UPDATE SKIP LOCKED``; SQLite has one writer), so a change made meanwhile waits
and marks the order again. Every snapshot therefore sees each order exactly once: either as stored
facts or as dirty (computed live). ``tests/test_reports.py`` checks facts == live after any
sequence of changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement, Select

from o2o.catalog.models import Listing
from o2o.db import Database
from o2o.fulfilment.models import Voucher
from o2o.merchants.models import Category
from o2o.money import BASIS_POINTS
from o2o.orders.models import GOODS, Order, OrderLine
from o2o.reports.models import ReportDirtyOrder, ReportOrderFact

BATCH = 2_000

COLUMNS = (
    "order_id",
    "category_id",
    "top_category_id",
    "is_top_primary",
    "created_at",
    "merchant_id",
    "kind",
    "channel",
    "user_id",
    "is_primary",
    "paid",
    "shipped",
    "received",
    "consumed",
    "order_payable_fen",
    "order_refunded_fen",
    "amount_fen",
    "refunded_fen",
    "vouchers_issued",
    "vouchers_redeemed",
    "vouchers_refunded",
    "commission_fen",
)


def commission(amount: Any, bp: Any) -> ColumnElement[int]:
    """``o2o.money.apply_rate`` in SQL: (amount · bp + 5000) // 10000 (operands never negative;
    both databases truncate integer division)."""
    return (amount * bp + BASIS_POINTS // 2) // BASIS_POINTS


def flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return case((condition, 1), else_=0)


OrderFilter = Callable[[Any], ColumnElement[bool]]


def fact_rows(orders: OrderFilter, *extra: ColumnElement[bool]) -> Select[Any]:
    """Fact rows (columns ``COLUMNS``) of the orders ``orders(Order.id)`` selects."""
    redeemed = Voucher.status == "redeemed"
    vouchers = (
        select(
            Voucher.order_line_id.label("line_id"),
            func.count().label("issued"),
            func.sum(flag(redeemed)).label("redeemed"),
            func.sum(flag(Voucher.status == "refunded")).label("refunded"),
            func.sum(
                case((redeemed, commission(Voucher.amount_fen, OrderLine.commission_bp)), else_=0)
            ).label("commission"),
        )
        .join(OrderLine, OrderLine.id == Voucher.order_line_id)
        .where(orders(Voucher.order_id))
        .group_by(Voucher.order_line_id)
        .subquery("line_vouchers")
    )
    received = and_(Order.kind == GOODS, Order.completed_at.is_not(None))
    tops = top_categories()
    is_primary = Listing.category_id == func.min(Listing.category_id).over(partition_by=Order.id)
    is_top_primary = Listing.category_id == func.min(Listing.category_id).over(
        partition_by=(Order.id, tops.c.top_id)
    )
    redeemed_in_order = func.sum(func.coalesce(func.sum(vouchers.c.redeemed), 0)).over(
        partition_by=Order.id
    )
    return (
        select(
            Order.id.label("order_id"),
            Listing.category_id.label("category_id"),
            tops.c.top_id.label("top_category_id"),
            flag(is_top_primary).label("is_top_primary"),
            Order.created_at.label("created_at"),
            Order.merchant_id.label("merchant_id"),
            Order.kind.label("kind"),
            Order.channel.label("channel"),
            Order.user_id.label("user_id"),
            flag(is_primary).label("is_primary"),
            flag(Order.paid_at.is_not(None)).label("paid"),
            flag(Order.shipped_at.is_not(None)).label("shipped"),
            flag(received).label("received"),
            flag(or_(received, redeemed_in_order > 0)).label("consumed"),
            case((is_primary, Order.payable_fen), else_=0).label("order_payable_fen"),
            case((is_primary, Order.refunded_fen), else_=0).label("order_refunded_fen"),
            func.sum(OrderLine.amount_fen).label("amount_fen"),
            func.sum(OrderLine.refunded_fen).label("refunded_fen"),
            func.coalesce(func.sum(vouchers.c.issued), 0).label("vouchers_issued"),
            func.coalesce(func.sum(vouchers.c.redeemed), 0).label("vouchers_redeemed"),
            func.coalesce(func.sum(vouchers.c.refunded), 0).label("vouchers_refunded"),
            (
                func.sum(
                    case(
                        (
                            received,
                            commission(
                                OrderLine.amount_fen - OrderLine.refunded_fen,
                                OrderLine.commission_bp,
                            ),
                        ),
                        else_=0,
                    )
                )
                + func.coalesce(func.sum(vouchers.c.commission), 0)
            ).label("commission_fen"),
        )
        .select_from(Order)
        .join(OrderLine, OrderLine.order_id == Order.id)
        .join(Listing, Listing.id == OrderLine.listing_id)
        .join(tops, tops.c.category_id == Listing.category_id)
        .outerjoin(vouchers, vouchers.c.line_id == OrderLine.id)
        .where(orders(Order.id), *extra)
        # Every selected order column depends on orders.id (its primary key).
        .group_by(Order.id, Listing.category_id, tops.c.top_id)
    )


def top_categories() -> Any:
    """(category_id, top_id): every category and the top-level category above it (a recursive
    CTE over the category tree)."""
    cats = Category.__table__
    tree = (
        select(cats.c.id.label("category_id"), cats.c.id.label("top_id"))
        .where(cats.c.parent_id.is_(None))
        .cte("top_categories", recursive=True)
    )
    child = cats.alias("child")
    return tree.union_all(
        select(child.c.id, tree.c.top_id).where(child.c.parent_id == tree.c.category_id)
    )


def _dirty(column: Any) -> ColumnElement[bool]:
    return column.in_(select(ReportDirtyOrder.order_id))


def facts_relation(
    since: Any,
    until: Any,
    merchant_id: int | None = None,
    *,
    columns: Sequence[str] = COLUMNS,
    paid_only: bool = False,
) -> Any:
    """Every order placed in ``[since, until)`` as fact rows: stored facts of clean orders and,
    for orders marked dirty, the same rows computed now — one statement, so one snapshot sees
    each order exactly once. Only ``columns`` (fewer columns: less to carry through the union);
    ``paid_only``: rows of paid orders only. A subquery named ``facts``."""
    stored_filter = [ReportOrderFact.created_at >= since, ReportOrderFact.created_at < until]
    live_filter = [Order.created_at >= since, Order.created_at < until]
    if merchant_id is not None:
        stored_filter.append(ReportOrderFact.merchant_id == merchant_id)
        live_filter.append(Order.merchant_id == merchant_id)
    if paid_only:
        stored_filter.append(ReportOrderFact.paid == 1)
        live_filter.append(Order.paid_at.is_not(None))
    stored = select(*(getattr(ReportOrderFact, c).label(c) for c in columns)).where(*stored_filter)
    live_rows = fact_rows(_dirty, *live_filter).subquery("live")
    live = select(*(live_rows.c[c] for c in columns))
    return union_all(stored, live).subquery("facts")


def refresh(session: Session, batch: int = BATCH) -> int:
    """Turn up to ``batch`` dirty orders into stored facts; returns how many orders."""
    claim = select(ReportDirtyOrder.order_id).order_by(ReportDirtyOrder.order_id).limit(batch)
    if session.get_bind().dialect.name == "postgresql":
        # Held until commit: a change to one of these orders waits, then marks it again.
        claim = claim.with_for_update(skip_locked=True)
    ids = list(session.scalars(claim))
    if not ids:
        return 0
    postgres = session.get_bind().dialect.name == "postgresql"

    def claimed(column: Any) -> ColumnElement[bool]:
        if postgres:  # one array parameter, not thousands
            return column == any_(bindparam("claimed", ids, type_=ARRAY(BigInteger)))
        return column.in_(ids)

    session.execute(delete(ReportDirtyOrder).where(claimed(ReportDirtyOrder.order_id)))
    session.execute(delete(ReportOrderFact).where(claimed(ReportOrderFact.order_id)))
    # A new statement, so a new snapshot (PostgreSQL): every change committed before the marks
    # were locked is seen; any later one is waiting for this transaction.
    session.execute(insert(ReportOrderFact).from_select(list(COLUMNS), fact_rows(claimed)))
    return len(ids)


def refresh_all(db: Database, batch: int = BATCH) -> int:
    """Refresh until nothing is dirty (one transaction per batch); returns how many orders."""
    total = 0
    while True:
        with db.transaction() as session:
            done = refresh(session, batch)
        total += done
        if done == 0:
            return total


def dirty_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(ReportDirtyOrder)) or 0)


def mark_all_dirty(session: Session) -> int:
    """Forget every stored fact (e.g. after a definition changed): the job rebuilds them."""
    session.execute(delete(ReportOrderFact))
    session.execute(delete(ReportDirtyOrder))
    result = session.execute(
        insert(ReportDirtyOrder).from_select(["order_id", "version"], select(Order.id, literal(1)))
    )
    return int(result.rowcount or 0)
