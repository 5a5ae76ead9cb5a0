"""CSV exports of the reports, for Excel: UTF-8 with a BOM (so Excel reads Chinese right), Chinese
column headers, CRLF line ends, money in yuan with two decimals (exact, from the fen), rates as
percentages with two decimals. Text cells that Excel would take for a formula are quoted with ``'``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from decimal import Decimal

from o2o.channels.service import KIND_LABELS
from o2o.reports.schemas import (
    ChannelRow,
    ChannelsReport,
    MerchantDay,
    MerchantSummary,
    ModelMetrics,
    ModelsReport,
    ModelsRow,
)
from o2o.reports.service import DIRECT, MODEL_NAMES

BOM = "\ufeff"
MEDIA_TYPE = "text/csv; charset=utf-8"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def yuan(fen: int) -> str:
    """``123456`` → ``1234.56`` (integer arithmetic; a number Excel reads as such)."""
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def percent(value: Decimal | None) -> str:
    """``Decimal('0.8571')`` → ``85.71%`` (exact: the rate already has 4 places)."""
    return "" if value is None else f"{(value * 100).quantize(Decimal('0.01'))}%"


def text(value: str) -> str:
    """A text cell Excel will not evaluate (CSV formula injection)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def render(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(headers)
    writer.writerows(rows)
    return (BOM + buffer.getvalue()).encode("utf-8")


# --- channels ---------------------------------------------------------------------------------

CHANNEL_HEADERS = (
    "渠道编码",
    "渠道名称",
    "渠道类型",
    "访问次数",
    "独立访客",
    "结算次数",
    "订单数",
    "支付订单数",
    "GMV(元)",
    "消费订单数",
    "核销券数",
    "电商收货订单数",
    "退款订单数",
    "退款金额(元)",
    "访客→结算转化率",
    "订单→支付转化率",
    "支付→消费转化率",
    "访客→支付转化率",
    "退款率",
)


def _channel_cells(r: ChannelRow) -> list[object]:
    return [
        text(r.channel_code if r.channel_code != DIRECT else "(无)"),
        text(r.channel_name),
        KIND_LABELS.get(r.channel_kind, r.channel_kind),
        r.visits,
        r.unique_visitors,
        r.checkouts,
        r.orders,
        r.paid_orders,
        yuan(r.gmv_fen),
        r.consumed_orders,
        r.vouchers_redeemed,
        r.goods_received_orders,
        r.refunded_orders,
        yuan(r.refunded_fen),
        percent(r.checkout_rate),
        percent(r.paid_rate),
        percent(r.consumed_rate),
        percent(r.visitor_paid_rate),
        percent(r.refund_rate),
    ]


def channels_csv(report: ChannelsReport) -> bytes:
    return render(CHANNEL_HEADERS, [_channel_cells(r) for r in [*report.rows, report.total]])


# --- models -----------------------------------------------------------------------------------

MODEL_HEADERS = (
    "范围",
    "ID",
    "名称",
    "模式",
    "订单数",
    "支付订单数",
    "支付转化率",
    "GMV(元)",
    "客单价(元)",
    "退款金额(元)",
    "退款率",
    "购买人数",
    "复购人数",
    "复购率",
    "发券数",
    "核销券数",
    "退款券数",
    "核销率",
    "发货订单数",
    "收货订单数",
    "收货率",
    "佣金(元)",
    "解读",
)


def _model_cells(scope: str, row: ModelsRow, m: ModelMetrics) -> list[object]:
    return [
        scope,
        "" if row.id is None else row.id,
        text(row.name),
        MODEL_NAMES[m.model],
        m.orders,
        m.paid_orders,
        percent(m.paid_rate),
        yuan(m.gmv_fen),
        yuan(m.avg_order_value_fen),
        yuan(m.refunded_fen),
        percent(m.refund_rate),
        m.buyers,
        m.repeat_buyers,
        percent(m.repeat_rate),
        m.vouchers_issued,
        m.vouchers_redeemed,
        m.vouchers_refunded,
        percent(m.redemption_rate),
        m.shipped_orders,
        m.received_orders,
        percent(m.receipt_rate),
        yuan(m.commission_fen),
        text(row.reading),
    ]


def models_csv(report: ModelsReport) -> bytes:
    rows: list[list[object]] = []
    for scope, items in (
        ("全平台", [report.total]),
        ("类目", report.categories),
        ("商户", report.merchants),
    ):
        for row in items:
            rows.append(_model_cells(scope, row, row.o2o))
            rows.append(_model_cells(scope, row, row.goods))
    return render(MODEL_HEADERS, rows)


# --- a merchant's days ------------------------------------------------------------------------

MERCHANT_HEADERS = (
    "日期",
    "下单数",
    "支付订单数",
    "GMV(元)",
    "核销券数",
    "发货订单数",
    "收货订单数",
    "退款笔数",
    "退款金额(元)",
    "确认收入(元)",
    "佣金(元)",
    "净收入(元)",
)


def _day_cells(d: MerchantDay) -> list[object]:
    return [
        "合计" if d.day is None else d.day.isoformat(),
        d.orders,
        d.paid_orders,
        yuan(d.gmv_fen),
        d.vouchers_redeemed,
        d.shipped_orders,
        d.received_orders,
        d.refunds,
        yuan(d.refunded_fen),
        yuan(d.earned_fen),
        yuan(d.commission_fen),
        yuan(d.net_fen),
    ]


def merchant_summary_csv(report: MerchantSummary) -> bytes:
    return render(MERCHANT_HEADERS, [_day_cells(d) for d in [*report.days, report.total]])
