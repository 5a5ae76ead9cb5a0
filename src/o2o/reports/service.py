"""Reports for the operator (channels, "做O2O还是做平台?") and for merchants (their own days).

Every figure is computed by SQL from the tables of record (orders, order lines, vouchers, refunds,
visits, checkouts) at the moment of the request: nothing is cached, so nothing can drift. Money is
integer fen; rates are ``Decimal`` with 4 places, rounded half up from the integers (``rate``).

Windows
-------
``from``/``to`` are calendar days in China time (Asia/Shanghai, +08:00), both included: the window
is ``[from 00:00+08:00, to+1 00:00+08:00)``. At most ``MAX_SPAN_DAYS`` days; 422 otherwise.

Channel and model reports: a cohort
-----------------------------------
The operator's reports follow **the orders placed in the window** (``orders.created_at``) to what
became of them *so far*: paid, consumed, refunded. That is what makes each conversion step a true
fraction of the one before. Visits and checkouts are those made in the window.

Channels (``channels_report``), per channel code carried by the order/checkout (last-touch
attribution, see ``o2o.channels.service.attribute``), plus a row for orders without a channel
(``DIRECT``, "直接访问/无渠道"):

- ``visits``, ``unique_visitors`` (distinct anonymous visitor ids) — visits in the window;
- ``checkouts`` — checkouts created in the window; ``orders`` — their orders (one per merchant and
  kind); ``paid_orders`` — of those, paid (``paid_at`` set; revived late payments included);
- ``gmv_fen`` — Σ ``payable_fen`` of the paid orders (goods + shipping fee, after discounts);
- ``consumed_orders`` — paid orders consumed: a service order with at least one voucher redeemed
  (status ``redeemed`` now — an undone redemption does not count), a goods order received
  (``completed_at`` set); also ``vouchers_redeemed`` and ``goods_received_orders``;
- ``refunded_orders`` / ``refunded_fen`` — paid orders with refunds, and their amount: refunds
  requested and not failed (``orders.refunded_fen``, which reserves pending refunds too);
- rates: ``checkout_rate`` = checkouts / unique visitors (can pass 1: a visitor may check out
  twice; none for the direct row), ``paid_rate`` = paid orders / orders, ``consumed_rate`` =
  consumed orders / paid orders, ``visitor_paid_rate`` = paid orders / unique visitors,
  ``refund_rate`` = refunded fen / GMV.

Models (``models_report``), per category group and per merchant, O2O (``service``) and e-commerce
(``goods``) side by side. An order counts in a category when one of its lines is for a listing in
that category or below it (``Listing.category_id``); categories are grouped at the top level, or
— with ``category_id`` — at the level of that category's children (lines directly in it form a
row of their own). Line figures:

- ``orders`` (distinct orders), ``paid_orders``, ``paid_rate`` = paid / orders;
- ``gmv_fen`` — Σ line ``amount_fen`` of paid orders (商品金额: without shipping fees, so that
  categories add up); ``avg_order_value_fen`` = GMV / paid orders (rounded half up);
- ``refunded_fen`` — Σ line ``refunded_fen`` of paid orders (requested and not failed);
  ``refund_rate`` = refunded / GMV;
- ``buyers`` — distinct users with a paid order; ``repeat_buyers`` — of those, users with two
  paid orders or more (in the window, that model and that row); ``repeat_rate`` = repeat / buyers;
- O2O: ``vouchers_issued``, ``vouchers_redeemed``, ``vouchers_refunded`` (status now) and
  ``redemption_rate`` = redeemed / (issued − refunded): of the vouchers the buyers kept, the share
  used at the store; vouchers still unused or expired count against it;
- goods: ``shipped_orders``, ``received_orders`` (``completed_at``) and ``receipt_rate`` =
  received / shipped;
- ``commission_fen`` — commission earned on what was consumed, after refunds: for each redeemed
  voucher ``apply_rate(voucher.amount_fen, line.commission_bp)`` (one voucher = one unit, as the
  ledger posts ``earned:voucher:{code}``); for each line of a received goods order
  ``apply_rate(line.amount_fen − line.refunded_fen, line.commission_bp)``.

Each row gets a short Chinese reading (``reading``): which model performs better and the numbers
that decide it; with fewer than ``min_sample`` paid orders on a side it says 样本不足.

Merchant summary (``merchant_summary``): events by China day
------------------------------------------------------------
A merchant's own days, each event counted on the day it happened: orders placed; orders paid and
their ``payable_fen`` (GMV); vouchers redeemed (status ``redeemed`` now) and their amount; goods
orders shipped and received; refunds that succeeded and their amount; ``earned_fen`` — what became
the merchant's that day (redeemed vouchers' amounts + received goods orders' ``payable_fen −
refunded_fen``), ``commission_fen`` on it (as above) and ``net_fen`` = earned − commission.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    and_,
    case,
    distinct,
    func,
    literal,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from o2o.channels.models import Channel, Visit
from o2o.errors import NotFound, ValidationFailed
from o2o.fulfilment.models import Voucher
from o2o.merchants.models import Category, Merchant
from o2o.money import BASIS_POINTS, format_yuan
from o2o.orders.models import GOODS, SERVICE, Checkout, Order, OrderLine
from o2o.payments.models import REFUND_SUCCEEDED, Refund
from o2o.reports import facts
from o2o.reports.schemas import (
    ChannelRow,
    ChannelsReport,
    MerchantDay,
    MerchantSummary,
    ModelMetrics,
    ModelsReport,
    ModelsRow,
)
from o2o.timeutil import CHINA_TZ, utcnow

MAX_SPAN_DAYS = 400
DEFAULT_SPAN_DAYS = 30
EARLIEST_DAY = date(2000, 1, 1)
LATEST_DAY = date(2099, 12, 31)
RATE_PLACES = 4
MIN_SAMPLE = 30  # paid orders per model before a reading draws a conclusion
DIRECT = ""
DIRECT_NAME = "直接访问/无渠道"
MODEL_NAMES = {SERVICE: "O2O", GOODS: "电商"}


# --- windows and rates ------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """China-time calendar days ``first``..``last`` (both included)."""

    first: date
    last: date

    @property
    def since(self) -> datetime:
        return datetime.combine(self.first, time(), CHINA_TZ)

    @property
    def until(self) -> datetime:
        return datetime.combine(self.last + timedelta(days=1), time(), CHINA_TZ)

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def contains(self, column: Any) -> ColumnElement[bool]:
        return and_(column >= self.since, column < self.until)


def china_today() -> date:
    return utcnow().astimezone(CHINA_TZ).date()


def make_window(first: date | None, last: date | None, *, today: date | None = None) -> Window:
    """The report window; defaults to the last ``DEFAULT_SPAN_DAYS`` days up to today."""
    last = last or (today or china_today())
    first = first or last - timedelta(days=DEFAULT_SPAN_DAYS - 1)
    for value, field in ((first, "from"), (last, "to")):
        if not EARLIEST_DAY <= value <= LATEST_DAY:
            raise ValidationFailed(
                f"日期须在 {EARLIEST_DAY} 至 {LATEST_DAY} 之间", field=field, code="bad_date"
            )
    if first > last:
        raise ValidationFailed("开始日期不能晚于结束日期", field="from", code="bad_date_range")
    window = Window(first, last)
    if window.days > MAX_SPAN_DAYS:
        raise ValidationFailed(
            f"报表时间跨度最多 {MAX_SPAN_DAYS} 天", field="to", code="date_range_too_long"
        )
    return window


def rate(numerator: int, denominator: int) -> Decimal | None:
    """``numerator / denominator`` rounded half up to ``RATE_PLACES`` places, from integers;
    None when there is nothing to divide by."""
    if denominator <= 0:
        return None
    scale = 10**RATE_PLACES
    units = (2 * numerator * scale + denominator) // (2 * denominator)
    return Decimal(units).scaleb(-RATE_PLACES)


def _div_round(numerator: int, denominator: int) -> int:
    """Integer division rounded half up (non-negative operands)."""
    return (2 * numerator + denominator) // (2 * denominator) if denominator > 0 else 0


_commission = facts.commission
_flag = facts.flag


def _int(value: Any) -> int:
    return int(value or 0)


# --- channels ---------------------------------------------------------------------------------


@dataclass
class _ChannelCounts:
    visits: int = 0
    unique_visitors: int = 0
    checkouts: int = 0
    orders: int = 0
    paid_orders: int = 0
    gmv_fen: int = 0
    vouchers_redeemed: int = 0
    service_consumed_orders: int = 0
    goods_received_orders: int = 0
    refunded_orders: int = 0
    refunded_fen: int = 0


def _channel_row(code: str, name: str, kind: str, c: _ChannelCounts) -> ChannelRow:
    consumed = c.service_consumed_orders + c.goods_received_orders
    return ChannelRow(
        channel_code=code,
        channel_name=name,
        channel_kind=kind,
        visits=c.visits,
        unique_visitors=c.unique_visitors,
        checkouts=c.checkouts,
        orders=c.orders,
        paid_orders=c.paid_orders,
        gmv_fen=c.gmv_fen,
        consumed_orders=consumed,
        vouchers_redeemed=c.vouchers_redeemed,
        goods_received_orders=c.goods_received_orders,
        refunded_orders=c.refunded_orders,
        refunded_fen=c.refunded_fen,
        checkout_rate=rate(c.checkouts, c.unique_visitors),
        paid_rate=rate(c.paid_orders, c.orders),
        consumed_rate=rate(consumed, c.paid_orders),
        visitor_paid_rate=rate(c.paid_orders, c.unique_visitors),
        refund_rate=rate(c.refunded_fen, c.gmv_fen),
    )


def channels_report(session: Session, window: Window) -> ChannelsReport:
    """Per channel: visits → checkouts → paid → consumed, GMV and refunds (see module doc)."""
    counts: dict[str, _ChannelCounts] = {}

    def of(code: str) -> _ChannelCounts:
        return counts.setdefault(code, _ChannelCounts())

    channels = session.execute(
        select(Channel.id, Channel.code, Channel.name, Channel.kind).order_by(Channel.id)
    ).all()
    code_of = {c.id: c.code for c in channels}

    if session.get_bind().dialect.name == "postgresql":
        # One hash aggregation over the window's (channel, visitor) pairs.
        pairs = (
            select(Visit.channel_id, Visit.visitor_id, func.count().label("n"))
            .where(window.contains(Visit.created_at))
            .group_by(Visit.channel_id, Visit.visitor_id)
            .subquery()
        )
        visit_rows = list(
            session.execute(
                select(pairs.c.channel_id, func.sum(pairs.c.n), func.count()).group_by(
                    pairs.c.channel_id
                )
            )
        )
    else:
        # Channel by channel: the (channel, visitor, time) index gives a channel's visitors in
        # order, so SQLite counts them without sorting the window.
        visit_rows = []
        for channel_id in code_of:
            per_visitor = (
                select(Visit.visitor_id, func.count().label("n"))
                .where(Visit.channel_id == channel_id, window.contains(Visit.created_at))
                .group_by(Visit.visitor_id)
                .subquery()
            )
            visits, visitors = session.execute(
                select(func.sum(per_visitor.c.n), func.count()).select_from(per_visitor)
            ).one()
            visit_rows.append((channel_id, visits, visitors))
    for channel_id, visits, visitors in visit_rows:
        if visitors:
            c = of(code_of.get(channel_id, f"#{channel_id}"))
            c.visits, c.unique_visitors = _int(visits), _int(visitors)

    for code, n in session.execute(
        select(Checkout.channel, func.count())
        .where(window.contains(Checkout.created_at))
        .group_by(Checkout.channel)
    ):
        of(code or DIRECT).checkouts += _int(n)

    f = facts.facts_relation(
        window.since,
        window.until,
        columns=(
            "channel",
            "is_primary",
            "paid",
            "consumed",
            "received",
            "order_payable_fen",
            "order_refunded_fen",
            "vouchers_redeemed",
        ),
    )
    first_paid = f.c.is_primary * f.c.paid  # 1 on one row of each paid order
    for row in session.execute(
        select(
            f.c.channel,
            func.sum(f.c.is_primary),
            func.sum(first_paid),
            func.sum(f.c.paid * f.c.order_payable_fen),
            func.sum(first_paid * f.c.consumed),
            func.sum(first_paid * f.c.received),
            func.sum(f.c.paid * f.c.vouchers_redeemed),
            func.sum(_flag(and_(first_paid == 1, f.c.order_refunded_fen > 0))),
            func.sum(f.c.paid * f.c.order_refunded_fen),
        ).group_by(f.c.channel)
    ):
        c = of(row[0] or DIRECT)
        c.orders += _int(row[1])
        c.paid_orders += _int(row[2])
        c.gmv_fen += _int(row[3])
        c.service_consumed_orders += _int(row[4]) - _int(row[5])
        c.goods_received_orders += _int(row[5])
        c.vouchers_redeemed += _int(row[6])
        c.refunded_orders += _int(row[7])
        c.refunded_fen += _int(row[8])

    rows: list[ChannelRow] = []
    for channel in channels:
        rows.append(
            _channel_row(
                channel.code,
                channel.name,
                channel.kind,
                counts.pop(channel.code, None) or _ChannelCounts(),
            )
        )
    direct = counts.pop(DIRECT, _ChannelCounts())
    # Codes no channel has (e.g. typed by hand at checkout): shown as they are, never dropped.
    for code in sorted(counts):
        rows.append(_channel_row(code, f"未登记渠道 {code}", "", counts[code]))
    rows.append(_channel_row(DIRECT, DIRECT_NAME, "", direct))
    return ChannelsReport(
        **window_fields(window), generated_at=utcnow(), rows=rows, total=_sum_rows(rows)
    )


def _sum_rows(rows: Sequence[ChannelRow]) -> ChannelRow:
    """The total row: sums of the rows. Its ``unique_visitors`` counts each (channel, visitor)
    pair once (a visitor who came through two channels counts twice)."""
    c = _ChannelCounts()
    consumed_service = 0
    for r in rows:
        c.visits += r.visits
        c.unique_visitors += r.unique_visitors
        c.checkouts += r.checkouts
        c.orders += r.orders
        c.paid_orders += r.paid_orders
        c.gmv_fen += r.gmv_fen
        c.vouchers_redeemed += r.vouchers_redeemed
        consumed_service += r.consumed_orders - r.goods_received_orders
        c.goods_received_orders += r.goods_received_orders
        c.refunded_orders += r.refunded_orders
        c.refunded_fen += r.refunded_fen
    c.service_consumed_orders = consumed_service
    return _channel_row("*", "合计", "", c)


def window_fields(window: Window) -> dict[str, Any]:
    return {"from_date": window.first, "to_date": window.last, "timezone": "Asia/Shanghai"}


# --- models: O2O vs e-commerce ------------------------------------------------------------------


@dataclass
class _ModelCounts:
    orders: int = 0
    paid_orders: int = 0
    gmv_fen: int = 0
    refunded_fen: int = 0
    buyers: int = 0
    repeat_buyers: int = 0
    shipped_orders: int = 0
    received_orders: int = 0
    vouchers_issued: int = 0
    vouchers_redeemed: int = 0
    vouchers_refunded: int = 0
    commission_fen: int = 0


def _metrics(kind: str, c: _ModelCounts) -> ModelMetrics:
    service = kind == SERVICE
    kept = c.vouchers_issued - c.vouchers_refunded
    return ModelMetrics(
        model=kind,
        orders=c.orders,
        paid_orders=c.paid_orders,
        paid_rate=rate(c.paid_orders, c.orders),
        gmv_fen=c.gmv_fen,
        avg_order_value_fen=_div_round(c.gmv_fen, c.paid_orders),
        refunded_fen=c.refunded_fen,
        refund_rate=rate(c.refunded_fen, c.gmv_fen),
        buyers=c.buyers,
        repeat_buyers=c.repeat_buyers,
        repeat_rate=rate(c.repeat_buyers, c.buyers),
        vouchers_issued=c.vouchers_issued,
        vouchers_redeemed=c.vouchers_redeemed,
        vouchers_refunded=c.vouchers_refunded,
        redemption_rate=rate(c.vouchers_redeemed, kept) if service else None,
        shipped_orders=c.shipped_orders,
        received_orders=c.received_orders,
        receipt_rate=None if service else rate(c.received_orders, c.shipped_orders),
        commission_fen=c.commission_fen,
    )


@dataclass(frozen=True)
class _Groups:
    """How lines are grouped into category rows: ``tree`` maps every category in scope to its
    row (a recursive CTE over the category tree); ``rows`` are the rows in display order."""

    tree: Any
    rows: list[tuple[int, str]]
    filtered: bool


def _category_groups(session: Session, category_id: int | None) -> _Groups:
    cats = Category.__table__
    rows = session.execute(
        select(cats.c.id, cats.c.parent_id, cats.c.name).order_by(cats.c.sort_order, cats.c.id)
    ).all()
    if category_id is None:
        anchor: Any = select(cats.c.id.label("category_id"), cats.c.id.label("group_id")).where(
            cats.c.parent_id.is_(None)
        )
        shown = [(r.id, r.name) for r in rows if r.parent_id is None]
    else:
        parent = next((r for r in rows if r.id == category_id), None)
        if parent is None:
            raise NotFound("类目不存在", code="category_not_found")
        # The children of the category, each with its subtree; lines directly in it: its own row
        # (the recursion below does not go down from the category itself).
        anchor = select(cats.c.id.label("category_id"), cats.c.id.label("group_id")).where(
            or_(cats.c.parent_id == category_id, cats.c.id == category_id)
        )
        shown = [(r.id, r.name) for r in rows if r.parent_id == category_id]
        shown.append((parent.id, f"{parent.name}（本类目）"))
    tree = anchor.cte("report_groups", recursive=True)
    child = cats.alias("child")
    step = child.c.parent_id == tree.c.category_id
    if category_id is not None:
        step = and_(step, tree.c.category_id != category_id)
    tree = tree.union_all(select(child.c.id, tree.c.group_id).where(step))
    return _Groups(tree, shown, category_id is not None)


def _rollup(
    session: Session, window: Window, groups: _Groups, by: str, merchant_id: int | None
) -> dict[Any, dict[str, _ModelCounts]]:
    """Figures per (row, model) below a chosen category; ``by`` is "category", "merchant" or
    "total". Three levels: fact rows (of the chosen subtree) → per (row, model, buyer) → per
    (row, model); buyers are the per-buyer rows with a paid order, repeat buyers those with two
    or more. Orders are counted as distinct ids (an order can have lines in several rows)."""
    f = facts.facts_relation(window.since, window.until, merchant_id)
    keys: list[Any] = {
        "category": [groups.tree.c.group_id],
        "merchant": [f.c.merchant_id],
        "total": [],
    }[by]

    def orders_where(condition: Any = None) -> Any:
        ids = f.c.order_id if condition is None else case((condition == 1, f.c.order_id))
        return func.count(distinct(ids))

    per_buyer = select(
        *(k.label(f"g{i}") for i, k in enumerate(keys)),
        f.c.kind.label("kind"),
        orders_where().label("orders"),
        orders_where(f.c.paid).label("paid_orders"),
        func.sum(f.c.paid * f.c.amount_fen).label("gmv"),
        func.sum(f.c.paid * f.c.refunded_fen).label("refunded"),
        orders_where(f.c.shipped).label("shipped"),
        orders_where(f.c.received).label("received"),
        func.sum(f.c.vouchers_issued).label("issued"),
        func.sum(f.c.vouchers_redeemed).label("redeemed"),
        func.sum(f.c.vouchers_refunded).label("vouchers_refunded"),
        func.sum(f.c.commission_fen).label("commission"),
    ).select_from(f)
    per_buyer = per_buyer.join(groups.tree, groups.tree.c.category_id == f.c.category_id)
    per_buyer = per_buyer.group_by(*keys, f.c.kind, f.c.user_id)
    b = per_buyer.subquery("per_buyer")
    outer_keys = [b.c[f"g{i}"] for i in range(len(keys))]
    result: dict[Any, dict[str, _ModelCounts]] = {}
    for row in session.execute(
        select(
            *outer_keys,
            b.c.kind,
            func.sum(b.c.orders),
            func.sum(b.c.paid_orders),
            func.sum(b.c.gmv),
            func.sum(b.c.refunded),
            func.sum(_flag(b.c.paid_orders >= 1)),
            func.sum(_flag(b.c.paid_orders >= 2)),
            func.sum(b.c.shipped),
            func.sum(b.c.received),
            func.sum(b.c.issued),
            func.sum(b.c.redeemed),
            func.sum(b.c.vouchers_refunded),
            func.sum(b.c.commission),
        ).group_by(*outer_keys, b.c.kind)
    ):
        values = list(row)
        key = values.pop(0) if keys else 0
        kind = values.pop(0)
        (
            orders,
            paid,
            gmv,
            refunded,
            buyers,
            repeat,
            shipped,
            received,
            issued,
            redeemed,
            v_refunded,
            commission,
        ) = (_int(v) for v in values)
        result.setdefault(key, {})[kind] = _ModelCounts(
            orders=orders,
            paid_orders=paid,
            gmv_fen=gmv,
            refunded_fen=refunded,
            buyers=buyers,
            repeat_buyers=repeat,
            shipped_orders=shipped,
            received_orders=received,
            vouchers_issued=issued,
            vouchers_redeemed=redeemed,
            vouchers_refunded=v_refunded,
            commission_fen=commission,
        )
    return result


_ADDITIVE = (
    "orders",
    "paid_orders",
    "shipped_orders",
    "received_orders",
)


def _add(target: _ModelCounts, **figures: int) -> None:
    for name, value in figures.items():
        setattr(target, name, getattr(target, name) + value)


def _top_level_figures(
    session: Session, window: Window, merchant_id: int | None
) -> tuple[dict[Any, dict[str, _ModelCounts]], ...]:
    """Per top-level category, per merchant and for the platform, without a chosen category.

    One pass adds everything additive up per (top-level category, merchant, model) — an order is
    counted on its ``is_top_primary`` row for categories and on its ``is_primary`` row for
    merchants and the total; then one pass per level counts buyers over the paid rows."""
    f = facts.facts_relation(
        window.since,
        window.until,
        merchant_id,
        columns=(
            "top_category_id",
            "merchant_id",
            "kind",
            "is_primary",
            "is_top_primary",
            "paid",
            "shipped",
            "received",
            "amount_fen",
            "refunded_fen",
            "vouchers_issued",
            "vouchers_redeemed",
            "vouchers_refunded",
            "commission_fen",
        ),
    )
    order_flags = [f.c.paid, f.c.shipped, f.c.received]
    by_category: dict[Any, dict[str, _ModelCounts]] = {}
    by_merchant: dict[Any, dict[str, _ModelCounts]] = {}
    total: dict[Any, dict[str, _ModelCounts]] = {}
    for row in session.execute(
        select(
            f.c.top_category_id,
            f.c.merchant_id,
            f.c.kind,
            func.sum(f.c.is_top_primary),
            *(func.sum(f.c.is_top_primary * flag) for flag in order_flags),
            func.sum(f.c.is_primary),
            *(func.sum(f.c.is_primary * flag) for flag in order_flags),
            func.sum(f.c.paid * f.c.amount_fen),
            func.sum(f.c.paid * f.c.refunded_fen),
            func.sum(f.c.vouchers_issued),
            func.sum(f.c.vouchers_redeemed),
            func.sum(f.c.vouchers_refunded),
            func.sum(f.c.commission_fen),
        ).group_by(f.c.top_category_id, f.c.merchant_id, f.c.kind)
    ):
        top, merchant, kind = row[0], row[1], row[2]
        in_top, in_order = [_int(v) for v in row[3:7]], [_int(v) for v in row[7:11]]
        gmv, refunded, issued, redeemed, v_refunded, commission = (_int(v) for v in row[11:])
        shared = dict(
            gmv_fen=gmv,
            refunded_fen=refunded,
            vouchers_issued=issued,
            vouchers_redeemed=redeemed,
            vouchers_refunded=v_refunded,
            commission_fen=commission,
        )
        for target, counts in (
            (by_category.setdefault(top, {}), in_top),
            (by_merchant.setdefault(merchant, {}), in_order),
            (total.setdefault(0, {}), in_order),
        ):
            order_counts = dict(zip(_ADDITIVE, counts, strict=True))
            _add(target.setdefault(kind, _ModelCounts()), **order_counts, **shared)
    for figures, key, first in (
        (by_category, "top_category_id", "is_top_primary"),
        (by_merchant, "merchant_id", "is_primary"),
        (total, None, "is_primary"),
    ):
        columns = ("kind", "user_id", first) + ((key,) if key else ())
        paid = facts.facts_relation(
            window.since, window.until, merchant_id, columns=columns, paid_only=True
        )
        keys = [paid.c[key]] if key else []
        per_buyer = (
            select(*keys, paid.c.kind, func.sum(paid.c[first]).label("n"))
            .group_by(*keys, paid.c.kind, paid.c.user_id)
            .subquery("per_buyer")
        )
        outer_keys = [per_buyer.c[key]] if key else []
        for row in session.execute(
            select(
                *outer_keys, per_buyer.c.kind, func.count(), func.sum(_flag(per_buyer.c.n >= 2))
            ).group_by(*outer_keys, per_buyer.c.kind)
        ):
            values = list(row)
            g = values.pop(0) if key else 0
            counts = figures.setdefault(g, {}).setdefault(values[0], _ModelCounts())
            counts.buyers, counts.repeat_buyers = _int(values[1]), _int(values[2])
    return by_category, by_merchant, total


def _models_row(
    key: int | None, name: str, by_kind: dict[str, _ModelCounts], min_sample: int
) -> ModelsRow:
    o2o = _metrics(SERVICE, by_kind.get(SERVICE) or _ModelCounts())
    goods = _metrics(GOODS, by_kind.get(GOODS) or _ModelCounts())
    return ModelsRow(
        id=key, name=name, o2o=o2o, goods=goods, reading=reading(name, o2o, goods, min_sample)
    )


def models_report(
    session: Session,
    window: Window,
    *,
    category_id: int | None = None,
    merchant_id: int | None = None,
    min_sample: int = MIN_SAMPLE,
) -> ModelsReport:
    """O2O vs e-commerce per category row and per merchant (see module doc)."""
    if merchant_id is not None and session.get(Merchant, merchant_id) is None:
        raise NotFound("商户不存在", code="merchant_not_found")
    groups = _category_groups(session, category_id)
    if groups.filtered:
        by_category = _rollup(session, window, groups, "category", merchant_id)
        by_merchant = _rollup(session, window, groups, "merchant", merchant_id)
        total = _rollup(session, window, groups, "total", merchant_id).get(0, {})
    else:
        by_category, by_merchant, totals = _top_level_figures(session, window, merchant_id)
        total = totals.get(0, {})

    categories = [
        _models_row(gid, name, by_category.get(gid, {}), min_sample) for gid, name in groups.rows
    ]
    names: dict[int, str] = {}
    if by_merchant:
        # (A Result has .keys(): dict() would take it for a mapping.)
        query = select(Merchant.id, Merchant.name).where(Merchant.id.in_(list(by_merchant)))
        names = {mid: name for mid, name in session.execute(query)}
    merchants = [
        _models_row(mid, names.get(mid, f"商户 {mid}"), by_merchant[mid], min_sample)
        for mid in by_merchant
    ]
    merchants.sort(key=lambda r: (-(r.o2o.gmv_fen + r.goods.gmv_fen), r.id or 0))
    return ModelsReport(
        **window_fields(window),
        generated_at=utcnow(),
        category_id=category_id,
        merchant_id=merchant_id,
        min_sample=min_sample,
        total=_models_row(None, "全平台", total, min_sample),
        categories=categories,
        merchants=merchants,
    )


# --- the reading --------------------------------------------------------------------------------


def _percent(numerator: int, denominator: int) -> str:
    """Whole percent, rounded half up from the integers: "86%"."""
    return f"{_div_round(100 * numerator, denominator)}%"


def _times(a: int, b: int) -> str:
    """a / b to one decimal place, rounded half up: "3.2"."""
    tenths = _div_round(10 * a, b)
    return f"{tenths // 10}.{tenths % 10}"


@dataclass(frozen=True)
class _Point:
    winner: str  # SERVICE or GOODS
    text: str


def _bp(numerator: int, denominator: int) -> int | None:
    return _div_round(BASIS_POINTS * numerator, denominator) if denominator > 0 else None


def _points(o2o: ModelMetrics, goods: ModelMetrics) -> list[_Point]:
    """What separates the two models, most decisive first. A figure counts only when the gap
    is clear: amounts ≥ 1.2×, fulfilment and repeat rates ≥ 5 points, refund rates ≥ 2 points."""
    found: list[_Point] = []
    names = MODEL_NAMES
    for field, label in (("gmv_fen", "GMV"), ("commission_fen", "佣金")):
        a, b = getattr(o2o, field), getattr(goods, field)
        hi, lo, winner = (a, b, SERVICE) if a >= b else (b, a, GOODS)
        loser = names[GOODS if winner == SERVICE else SERVICE]
        if hi > 0 and 10 * hi >= 12 * lo:
            if lo > 0:
                found.append(_Point(winner, f"{label}是{loser}的{_times(hi, lo)}倍"))
            else:
                found.append(_Point(winner, f"{label} {format_yuan(hi)}，{loser}为0"))
    kept = o2o.vouchers_issued - o2o.vouchers_refunded
    fulfil_o2o = _bp(o2o.vouchers_redeemed, kept)
    fulfil_goods = _bp(goods.received_orders, goods.shipped_orders)
    if (
        fulfil_o2o is not None
        and fulfil_goods is not None
        and abs(fulfil_o2o - fulfil_goods) >= 500
    ):
        p_o2o = _percent(o2o.vouchers_redeemed, kept)
        p_goods = _percent(goods.received_orders, goods.shipped_orders)
        if fulfil_o2o > fulfil_goods:
            found.append(_Point(SERVICE, f"核销率 {p_o2o} 高于电商收货率 {p_goods}"))
        else:
            found.append(_Point(GOODS, f"收货率 {p_goods} 高于 O2O 核销率 {p_o2o}"))
    refund_o2o, refund_goods = (
        _bp(o2o.refunded_fen, o2o.gmv_fen),
        _bp(goods.refunded_fen, goods.gmv_fen),
    )
    if (
        refund_o2o is not None
        and refund_goods is not None
        and abs(refund_o2o - refund_goods) >= 200
    ):
        pairs = {
            SERVICE: _percent(o2o.refunded_fen, o2o.gmv_fen),
            GOODS: _percent(goods.refunded_fen, goods.gmv_fen),
        }
        winner = SERVICE if refund_o2o < refund_goods else GOODS
        loser = GOODS if winner == SERVICE else SERVICE
        found.append(_Point(winner, f"退款率 {pairs[winner]} 低于{names[loser]}的 {pairs[loser]}"))
    repeat_o2o, repeat_goods = (
        _bp(o2o.repeat_buyers, o2o.buyers),
        _bp(goods.repeat_buyers, goods.buyers),
    )
    if (
        repeat_o2o is not None
        and repeat_goods is not None
        and abs(repeat_o2o - repeat_goods) >= 500
    ):
        pairs = {
            SERVICE: _percent(o2o.repeat_buyers, o2o.buyers),
            GOODS: _percent(goods.repeat_buyers, goods.buyers),
        }
        winner = SERVICE if repeat_o2o > repeat_goods else GOODS
        loser = GOODS if winner == SERVICE else SERVICE
        found.append(_Point(winner, f"复购率 {pairs[winner]} 高于{names[loser]}的 {pairs[loser]}"))
    return found


def _describe(kind: str, m: ModelMetrics) -> str:
    parts = [f"{m.paid_orders} 单", f"GMV {format_yuan(m.gmv_fen)}"]
    if kind == SERVICE and m.vouchers_issued - m.vouchers_refunded > 0:
        parts.append(
            f"核销率 {_percent(m.vouchers_redeemed, m.vouchers_issued - m.vouchers_refunded)}"
        )
    if kind == GOODS and m.shipped_orders > 0:
        parts.append(f"收货率 {_percent(m.received_orders, m.shipped_orders)}")
    if m.gmv_fen > 0:
        parts.append(f"退款率 {_percent(m.refunded_fen, m.gmv_fen)}")
    return "，".join(parts)


_CJK_THEN_LATIN = re.compile(r"([\u4e00-\u9fff])([A-Za-z0-9¥])")
_LATIN_THEN_CJK = re.compile(r"([A-Za-z0-9%])([\u4e00-\u9fff])")


def _spaced(text: str) -> str:
    """A space between Chinese and Latin letters or numbers ("GMV 是电商的 3.2 倍")."""
    return _LATIN_THEN_CJK.sub(r"\1 \2", _CJK_THEN_LATIN.sub(r"\1 \2", text))


def reading(name: str, o2o: ModelMetrics, goods: ModelMetrics, min_sample: int = MIN_SAMPLE) -> str:
    """A short plain-language verdict: which model performs better here and the numbers that
    decide it; 样本不足 when a side has fewer than ``min_sample`` paid orders.

    Five figures are compared — GMV, commission earned, fulfilment (O2O redemption rate vs.
    goods receipt rate), refund rate, repeat-purchase rate — and each clear gap (``_points``) is
    a point for one model; the model with more points "更适合", and the reading names its
    points (at most three) and the other model's strongest one."""
    return f"{name}：{_spaced(_verdict(o2o, goods, min_sample))}"


def _verdict(o2o: ModelMetrics, goods: ModelMetrics, min_sample: int) -> str:
    n_o2o, n_goods = o2o.paid_orders, goods.paid_orders
    if n_o2o < min_sample and n_goods < min_sample:
        return (
            f"样本不足——O2O {n_o2o} 单、电商 {n_goods} 单已支付"
            f"（每种模式至少 {min_sample} 单才比较），暂不下结论"
        )
    if n_o2o < min_sample or n_goods < min_sample:
        strong, weak = (SERVICE, GOODS) if n_goods < min_sample else (GOODS, SERVICE)
        m_strong = o2o if strong == SERVICE else goods
        m_weak = o2o if weak == SERVICE else goods
        return (
            f"只有{MODEL_NAMES[strong]}有足够数据（{_describe(strong, m_strong)}）；"
            f"{MODEL_NAMES[weak]}样本不足（{m_weak.paid_orders} 单），无法比较"
        )
    points = _points(o2o, goods)
    wins = {
        SERVICE: [p for p in points if p.winner == SERVICE],
        GOODS: [p for p in points if p.winner == GOODS],
    }
    if len(wins[SERVICE]) == len(wins[GOODS]):
        if not points:
            return "两种模式表现相近（GMV、履约率、退款率、复购率差距都不明显）"
        return (
            f"两种模式各有所长——O2O：{'，'.join(p.text for p in wins[SERVICE][:2])}；"
            f"电商：{'，'.join(p.text for p in wins[GOODS][:2])}"
        )
    winner = SERVICE if len(wins[SERVICE]) > len(wins[GOODS]) else GOODS
    loser = GOODS if winner == SERVICE else SERVICE
    text = f"{MODEL_NAMES[winner]}更适合——{'，'.join(p.text for p in wins[winner][:3])}"
    if wins[loser]:
        text += f"；但{MODEL_NAMES[loser]}{wins[loser][0].text}"
    return text


# --- a merchant's days ---------------------------------------------------------------------------


def china_day(session: Session, column: Any) -> ColumnElement[str]:
    """The China-time calendar day of a UTC timestamp column, as 'YYYY-MM-DD'."""
    # Constants inlined (not bound): the same expression in SELECT and GROUP BY must match.
    if session.get_bind().dialect.name == "sqlite":
        return func.date(column, literal_column("'+8 hours'"))
    return func.to_char(
        func.timezone(literal_column("'Asia/Shanghai'"), column), literal_column("'YYYY-MM-DD'")
    )


def merchant_summary(session: Session, merchant_id: int, window: Window) -> MerchantSummary:
    """The merchant's figures by China day (see module doc)."""
    merchant = session.get(Merchant, merchant_id)
    if merchant is None:
        raise NotFound("商户不存在", code="merchant_not_found")
    days: dict[str, dict[str, int]] = {}

    def add(rows: Iterable[Any], *fields: str) -> None:
        for row in rows:
            day = days.setdefault(str(row[0]), {})
            for field, value in zip(fields, row[1:], strict=True):
                day[field] = day.get(field, 0) + _int(value)

    # The merchant's orders, read once (its index), then each event counted on its own day.
    mine = (
        select(
            Order.id,
            Order.kind,
            Order.created_at,
            Order.paid_at,
            Order.shipped_at,
            Order.completed_at,
            Order.payable_fen,
            Order.refunded_fen,
        )
        .where(Order.merchant_id == merchant_id)
        .cte("mine")
    )
    if session.get_bind().dialect.name == "postgresql":
        mine = mine.prefix_with("MATERIALIZED")
    m = mine.c
    received = and_(m.kind == GOODS, window.contains(m.completed_at))
    zero = literal(0)
    events = [
        select(literal("orders"), china_day(session, m.created_at), func.count(), zero)
        .where(window.contains(m.created_at))
        .group_by(china_day(session, m.created_at)),
        select(
            literal("paid"), china_day(session, m.paid_at), func.count(), func.sum(m.payable_fen)
        )
        .where(window.contains(m.paid_at))
        .group_by(china_day(session, m.paid_at)),
        select(literal("shipped"), china_day(session, m.shipped_at), func.count(), zero)
        .where(window.contains(m.shipped_at))
        .group_by(china_day(session, m.shipped_at)),
        select(
            literal("received"),
            china_day(session, m.completed_at),
            func.count(),
            func.sum(m.payable_fen - m.refunded_fen),
        )
        .where(received)
        .group_by(china_day(session, m.completed_at)),
        select(
            literal("commission"),
            china_day(session, m.completed_at),
            zero,
            func.sum(
                _commission(OrderLine.amount_fen - OrderLine.refunded_fen, OrderLine.commission_bp)
            ),
        )
        .select_from(mine)
        .join(OrderLine, OrderLine.order_id == m.id)
        .where(received)
        .group_by(china_day(session, m.completed_at)),
    ]
    fields = {
        "orders": ("orders", None),
        "paid": ("paid_orders", "gmv_fen"),
        "shipped": ("shipped_orders", None),
        "received": ("received_orders", "earned_fen"),
        "commission": (None, "commission_fen"),
    }
    for event, day, count, amount in session.execute(union_all(*events)):
        figures = days.setdefault(str(day), {})
        count_field, amount_field = fields[event]
        if count_field:
            figures[count_field] = figures.get(count_field, 0) + _int(count)
        if amount_field:
            figures[amount_field] = figures.get(amount_field, 0) + _int(amount)
    day = china_day(session, Voucher.redeemed_at)
    add(
        session.execute(
            select(
                day,
                func.count(),
                func.sum(Voucher.amount_fen),
                func.sum(_commission(Voucher.amount_fen, OrderLine.commission_bp)),
            )
            .select_from(Voucher)
            .join(OrderLine, OrderLine.id == Voucher.order_line_id)
            .where(
                Voucher.merchant_id == merchant_id,
                Voucher.status == "redeemed",
                window.contains(Voucher.redeemed_at),
            )
            .group_by(day)
        ),
        "vouchers_redeemed",
        "earned_fen",
        "commission_fen",
    )
    day = china_day(session, Refund.succeeded_at)
    add(
        session.execute(
            select(day, func.count(), func.sum(Refund.amount_fen))
            .select_from(Refund)
            .join(Order, Order.id == Refund.order_id)
            .where(
                Order.merchant_id == merchant_id,
                Refund.status == REFUND_SUCCEEDED,
                window.contains(Refund.succeeded_at),
            )
            .group_by(day)
        ),
        "refunds",
        "refunded_fen",
    )

    rows = []
    for offset in range(window.days):
        d = window.first + timedelta(days=offset)
        rows.append(_merchant_day(d, days.get(d.isoformat(), {})))
    totals: dict[str, int] = {}
    for figures in days.values():
        for field, value in figures.items():
            totals[field] = totals.get(field, 0) + value
    return MerchantSummary(
        **window_fields(window),
        generated_at=utcnow(),
        merchant_id=merchant.id,
        merchant_name=merchant.name,
        days=rows,
        total=_merchant_day(None, totals),
    )


def _merchant_day(day: date | None, f: dict[str, int]) -> MerchantDay:
    earned, commission = f.get("earned_fen", 0), f.get("commission_fen", 0)
    return MerchantDay(
        day=day,
        orders=f.get("orders", 0),
        paid_orders=f.get("paid_orders", 0),
        gmv_fen=f.get("gmv_fen", 0),
        vouchers_redeemed=f.get("vouchers_redeemed", 0),
        shipped_orders=f.get("shipped_orders", 0),
        received_orders=f.get("received_orders", 0),
        refunds=f.get("refunds", 0),
        refunded_fen=f.get("refunded_fen", 0),
        earned_fen=earned,
        commission_fen=commission,
        net_fen=earned - commission,
    )


# --- the platform's GMV by day, O2O vs goods (operator charts) -----------------------------------


@dataclass(frozen=True)
class PlatformDay:
    """One China day of ``platform_daily``: orders placed that day and paid (so far), per model."""

    day: date
    o2o_paid_orders: int
    o2o_gmv_fen: int
    goods_paid_orders: int
    goods_gmv_fen: int

    @property
    def gmv_fen(self) -> int:
        return self.o2o_gmv_fen + self.goods_gmv_fen


def platform_daily(session: Session, window: Window) -> list[PlatformDay]:
    """The whole platform's GMV by China day, O2O (service) and goods apart, one entry per day
    of the window (zeros included).

    The same cohort and GMV as ``channels_report``: orders *placed* that day that are paid now,
    GMV = Σ ``payable_fen`` (shipping fees included, refunds not deducted). So the days add up to
    the channels report's total GMV for the same window. Read from the report facts (indexed by
    ``created_at``; dirty orders computed live), one grouped query."""
    f = facts.facts_relation(
        window.since,
        window.until,
        columns=("created_at", "kind", "is_primary", "paid", "order_payable_fen"),
        paid_only=True,
    )
    day = china_day(session, f.c.created_at)
    figures: dict[tuple[str, str], tuple[int, int]] = {}
    for row_day, kind, orders, gmv in session.execute(
        select(day, f.c.kind, func.sum(f.c.is_primary), func.sum(f.c.order_payable_fen)).group_by(
            day, f.c.kind
        )
    ):
        figures[(str(row_day), kind)] = (_int(orders), _int(gmv))
    days = []
    for offset in range(window.days):
        d = window.first + timedelta(days=offset)
        o2o = figures.get((d.isoformat(), SERVICE), (0, 0))
        goods = figures.get((d.isoformat(), GOODS), (0, 0))
        days.append(PlatformDay(d, o2o[0], o2o[1], goods[0], goods[1]))
    return days
