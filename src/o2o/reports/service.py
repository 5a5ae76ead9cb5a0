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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Integer,
    and_,
    case,
    cast,
    distinct,
    func,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from o2o.catalog.models import Listing
from o2o.channels.models import Channel, Visit
from o2o.errors import NotFound, ValidationFailed
from o2o.fulfilment.models import Voucher
from o2o.merchants.models import Category, Merchant
from o2o.money import BASIS_POINTS, format_yuan
from o2o.orders.models import GOODS, SERVICE, Checkout, Order, OrderLine
from o2o.payments.models import REFUND_SUCCEEDED, Refund
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


def _commission(amount: Any, bp: Any) -> ColumnElement[int]:
    """``o2o.money.apply_rate`` in SQL: (amount · bp + 5000) / 10000, integer division (both
    databases truncate integer division; the operands are never negative)."""
    return (amount * bp + BASIS_POINTS // 2) / BASIS_POINTS


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return case((condition, 1), else_=0)


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

    # Visits: distinct visitors per channel, counted from the distinct (channel, visitor) pairs.
    pairs = (
        select(Visit.channel_id, Visit.visitor_id, func.count().label("n"))
        .where(window.contains(Visit.created_at))
        .group_by(Visit.channel_id, Visit.visitor_id)
        .subquery()
    )
    for channel_id, visits, visitors in session.execute(
        select(pairs.c.channel_id, func.sum(pairs.c.n), func.count()).group_by(pairs.c.channel_id)
    ):
        c = of(code_of.get(channel_id, f"#{channel_id}"))
        c.visits, c.unique_visitors = _int(visits), _int(visitors)

    for code, n in session.execute(
        select(Checkout.channel, func.count())
        .where(window.contains(Checkout.created_at))
        .group_by(Checkout.channel)
    ):
        of(code or DIRECT).checkouts += _int(n)

    paid = Order.paid_at.is_not(None)
    for row in session.execute(
        select(
            Order.channel,
            func.count(),
            func.sum(_flag(paid)),
            func.sum(case((paid, Order.payable_fen), else_=0)),
            func.sum(_flag(and_(paid, Order.kind == GOODS, Order.completed_at.is_not(None)))),
            func.sum(_flag(and_(paid, Order.refunded_fen > 0))),
            func.sum(case((paid, Order.refunded_fen), else_=0)),
        )
        .where(window.contains(Order.created_at))
        .group_by(Order.channel)
    ):
        c = of(row[0] or DIRECT)
        c.orders += _int(row[1])
        c.paid_orders += _int(row[2])
        c.gmv_fen += _int(row[3])
        c.goods_received_orders += _int(row[4])
        c.refunded_orders += _int(row[5])
        c.refunded_fen += _int(row[6])

    redeemed = (
        select(Order.channel.label("channel"), Voucher.order_id, func.count().label("n"))
        .join(Voucher, Voucher.order_id == Order.id)
        .where(window.contains(Order.created_at), Voucher.status == "redeemed")
        .group_by(Order.channel, Voucher.order_id)
        .subquery()
    )
    for code, vouchers, orders in session.execute(
        select(redeemed.c.channel, func.sum(redeemed.c.n), func.count()).group_by(
            redeemed.c.channel
        )
    ):
        c = of(code or DIRECT)
        c.vouchers_redeemed += _int(vouchers)
        c.service_consumed_orders += _int(orders)

    rows: list[ChannelRow] = []
    for channel in channels:
        rows.append(
            _channel_row(channel.code, channel.name, channel.kind, counts.pop(channel.code, None)
                         or _ChannelCounts())
        )
    direct = counts.pop(DIRECT, _ChannelCounts())
    # Codes no channel has (e.g. typed by hand at checkout): shown as they are, never dropped.
    for code in sorted(counts):
        rows.append(_channel_row(code, f"未登记渠道 {code}", "", counts[code]))
    rows.append(_channel_row(DIRECT, DIRECT_NAME, "", direct))
    return ChannelsReport(**window_fields(window), generated_at=utcnow(), rows=rows,
                          total=_sum_rows(rows))


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
