"""报表 for the operator, with charts drawn on the server (o2o.web.charts): the channel funnel,
GMV by day (O2O vs 电商) and "O2O还是电商?" per category with the service's plain-language
reading; CSV downloads of each. Same services as the API (o2o.reports.service), never HTTP."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from markupsafe import Markup

from o2o.errors import NotFound, ValidationFailed
from o2o.merchants import service as merchants
from o2o.money import format_yuan
from o2o.orders.models import GOODS, SERVICE
from o2o.reports import csv_export
from o2o.reports import service as reports
from o2o.reports.schemas import ChannelRow, ChannelsReport, ModelMetrics, ModelsReport, ModelsRow
from o2o.schemas import Id, Schema
from o2o.web import charts
from o2o.web.charts import BarItem, FunnelStep, Series
from o2o.web.context import AdminPageDep, PageContext, page_router
from o2o.web.forms import Form
from o2o.web.nav import NavItem, add_nav

router = page_router()

add_nav(NavItem("admin", "报表", "/admin/reports", order=50))

# Query names as the API has them (from/to) → form fields (``from`` is a Python keyword).
QUERY_FIELDS = {
    "from": "date_from",
    "to": "date_to",
    "category_id": "category_id",
    "merchant_id": "merchant_id",
}
SERVICE_FIELDS = {"from": "date_from", "to": "date_to"}
NOT_FOUND_FIELDS = {"category_not_found": "category_id", "merchant_not_found": "merchant_id"}
MODEL_COLOURS = {SERVICE: charts.O2O_COLOUR, GOODS: charts.GOODS_COLOUR}


class ReportQuery(Schema):
    date_from: date | None = None
    date_to: date | None = None
    category_id: Id | None = None
    merchant_id: Id | None = None


def pct(value: Decimal | None) -> str:
    """A rate (0.8571) as a percentage with one decimal ("85.7%"), "—" without a base."""
    if value is None:
        return "—"
    return f"{(value * 100).quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}%"


def _parse(request: Request) -> Form[ReportQuery]:
    params = request.query_params
    return Form.parse(
        ReportQuery,
        {field: params.get(name, "") for name, field in QUERY_FIELDS.items()},
        messages={
            "date_from": "请输入有效的开始日期（如 2026-03-01）",
            "date_to": "请输入有效的结束日期（如 2026-03-31）",
            "category_id": "请选择有效的类目",
            "merchant_id": "请选择有效的商户",
        },
    )


def _window(form: Form[ReportQuery]) -> reports.Window | None:
    """The window, or None with the service's reason on the field it names."""
    if not form.ok or form.data is None:
        return None
    try:
        return reports.make_window(form.data.date_from, form.data.date_to)
    except ValidationFailed as exc:
        for err in exc.extra.get("errors") or [{"field": "from", "message": exc.detail}]:
            form.fail(str(err.get("message")), SERVICE_FIELDS.get(err.get("field"), "date_from"))
        return None


def _query_string(window: reports.Window, data: ReportQuery | None, models: bool) -> str:
    parts = [f"from={window.first.isoformat()}", f"to={window.last.isoformat()}"]
    if models and data is not None:
        if data.category_id:
            parts.append(f"category_id={data.category_id}")
        if data.merchant_id:
            parts.append(f"merchant_id={data.merchant_id}")
    return "&".join(parts)


# --- charts -------------------------------------------------------------------------------------


def _has_traffic(row: ChannelRow) -> bool:
    return bool(row.visits or row.checkouts or row.orders)


def channel_funnel(row: ChannelRow) -> Markup:
    """visits → unique visitors → checkouts → paid orders → consumed, each step with the
    report's own conversion rate (see o2o.reports.service)."""
    steps = [
        FunnelStep("访问", row.visits),
        FunnelStep(
            "独立访客",
            row.unique_visitors,
            f"访客/访问 {pct(reports.rate(row.unique_visitors, row.visits))}",
        ),
        FunnelStep("结算", row.checkouts, f"访客→结算 {pct(row.checkout_rate)}"),
        FunnelStep(
            "支付订单",
            row.paid_orders,
            f"订单→支付 {pct(row.paid_rate)}（{row.paid_orders}/{row.orders} 单）",
        ),
        FunnelStep("已消费", row.consumed_orders, f"支付→消费 {pct(row.consumed_rate)}"),
    ]
    return charts.funnel_chart(f"{row.channel_name} 转化漏斗", steps)


def channel_gmv_chart(rows: Sequence[ChannelRow]) -> Markup:
    items = [BarItem(r.channel_name, r.gmv_fen, format_yuan(r.gmv_fen)) for r in rows]
    return charts.bar_chart("各渠道 GMV（已支付订单）", items, colour=charts.GOODS_COLOUR)


def daily_chart(days: Sequence[reports.PlatformDay]) -> Markup:
    return charts.stacked_column_chart(
        "每日 GMV：O2O 与电商",
        [d.day.strftime("%m-%d") for d in days],
        [
            Series(
                "O2O（到店）",
                [d.o2o_gmv_fen for d in days],
                charts.O2O_COLOUR,
                [format_yuan(d.o2o_gmv_fen) for d in days],
            ),
            Series(
                "电商（商品）",
                [d.goods_gmv_fen for d in days],
                charts.GOODS_COLOUR,
                [format_yuan(d.goods_gmv_fen) for d in days],
            ),
        ],
        totals=[format_yuan(d.gmv_fen) for d in days],
    )


def models_gmv_chart(rows: Sequence[ModelsRow]) -> Markup:
    return charts.grouped_bar_chart(
        "各类目 GMV：O2O 与电商",
        [r.name for r in rows],
        [
            Series(
                "O2O",
                [r.o2o.gmv_fen for r in rows],
                charts.O2O_COLOUR,
                [format_yuan(r.o2o.gmv_fen) for r in rows],
            ),
            Series(
                "电商",
                [r.goods.gmv_fen for r in rows],
                charts.GOODS_COLOUR,
                [format_yuan(r.goods.gmv_fen) for r in rows],
            ),
        ],
    )


def comparison(o2o: ModelMetrics, goods: ModelMetrics) -> list[tuple[str, str, str]]:
    """The side-by-side figures of one row: (what, O2O, 电商)."""
    return [
        ("GMV", format_yuan(o2o.gmv_fen), format_yuan(goods.gmv_fen)),
        ("支付订单", f"{o2o.paid_orders} 单", f"{goods.paid_orders} 单"),
        ("客单价", format_yuan(o2o.avg_order_value_fen), format_yuan(goods.avg_order_value_fen)),
        ("支付转化率", pct(o2o.paid_rate), pct(goods.paid_rate)),
        ("核销率 / 收货率", pct(o2o.redemption_rate), pct(goods.receipt_rate)),
        ("退款率", pct(o2o.refund_rate), pct(goods.refund_rate)),
        ("复购率", pct(o2o.repeat_rate), pct(goods.repeat_rate)),
        ("佣金收入", format_yuan(o2o.commission_fen), format_yuan(goods.commission_fen)),
    ]


# --- the page -----------------------------------------------------------------------------------


def _filters(page: PageContext) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    with page.read() as session:
        tree = merchants.category_tree(session)
        shops = merchants.list_merchants(session, status=None, limit=1000, after_id=None)
        shop_options = [(m.id, m.name) for m in shops]

    def walk(nodes: list[dict[str, Any]], depth: int) -> list[tuple[int, str]]:
        out = []
        for node in nodes:
            out.append((node["id"], "\u3000" * depth + node["name"]))
            out.extend(walk(node["children"], depth + 1))
        return out

    return walk(tree, 0), shop_options


@router.get("/admin/reports", name="admin_reports")
def reports_page(page: AdminPageDep) -> Response:
    form = _parse(page.request)
    window = _window(form)
    channels: ChannelsReport | None = None
    models: ModelsReport | None = None
    days: list[reports.PlatformDay] = []
    if window is not None and form.data is not None:
        with page.read() as session:
            channels = reports.channels_report(session, window)
            days = reports.platform_daily(session, window)
            try:
                models = reports.models_report(
                    session,
                    window,
                    category_id=form.data.category_id,
                    merchant_id=form.data.merchant_id,
                )
            except NotFound as exc:
                form.fail(exc.detail, NOT_FOUND_FIELDS.get(exc.code, "category_id"), status=422)
    if window is not None:
        # The inputs show the window actually reported (defaults filled in).
        if not form.values.get("date_from"):
            form.values["date_from"] = window.first.isoformat()
        if not form.values.get("date_to"):
            form.values["date_to"] = window.last.isoformat()
    categories, shop_options = _filters(page)
    context: dict[str, Any] = {
        "form": form,
        "window": window,
        "category_options": categories,
        "merchant_options": shop_options,
        "pct": pct,
        "channels": channels,
        "models": models if not form.errors else None,
        "days": days,
    }
    if channels is not None and window is not None:
        shown = [r for r in channels.rows if _has_traffic(r)]
        context.update(
            funnels=[(r, channel_funnel(r)) for r in shown],
            quiet_channels=[r for r in channels.rows if not _has_traffic(r)],
            total_funnel=channel_funnel(channels.total),
            channel_gmv=channel_gmv_chart(shown),
            daily=daily_chart(days),
            daily_total=sum(d.gmv_fen for d in days),
            csv_channels="/admin/reports/channels.csv?" + _query_string(window, None, False),
            csv_daily="/admin/reports/daily.csv?" + _query_string(window, None, False),
            csv_models="/admin/reports/models.csv?" + _query_string(window, form.data, True),
        )
    if context["models"] is not None:
        m = context["models"]
        context.update(
            models_chart=models_gmv_chart(m.categories),
            comparison=comparison,
        )
    return page.render(
        "admin/reports.html", status_code=200 if form.ok and not form.errors else 422, **context
    )


# --- CSV downloads (the page session; the API's ?format=csv needs a bearer token) ---------------


def _csv(body: bytes, name: str, window: reports.Window) -> Response:
    filename = f"{name}_{window.first.isoformat()}_{window.last.isoformat()}.csv"
    return Response(
        content=body,
        media_type=csv_export.MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _csv_window(page: PageContext) -> tuple[Form[ReportQuery], reports.Window]:
    form = _parse(page.request)
    window = _window(form)
    if window is None or form.data is None:
        message = next(iter(form.errors.values()), form.error or "日期有误")
        raise ValidationFailed(message, code="bad_date")
    return form, window


@router.get("/admin/reports/channels.csv", name="admin_reports_channels_csv")
def channels_csv(page: AdminPageDep) -> Response:
    _form, window = _csv_window(page)
    with page.read() as session:
        report = reports.channels_report(session, window)
    return _csv(csv_export.channels_csv(report), "channels", window)


@router.get("/admin/reports/models.csv", name="admin_reports_models_csv")
def models_csv(page: AdminPageDep) -> Response:
    form, window = _csv_window(page)
    assert form.data is not None
    with page.read() as session:
        report = reports.models_report(
            session, window, category_id=form.data.category_id, merchant_id=form.data.merchant_id
        )
    return _csv(csv_export.models_csv(report), "models", window)


DAILY_HEADERS = (
    "日期",
    "O2O支付订单数",
    "O2O GMV(元)",
    "电商支付订单数",
    "电商 GMV(元)",
    "合计 GMV(元)",
)


@router.get("/admin/reports/daily.csv", name="admin_reports_daily_csv")
def daily_csv(page: AdminPageDep) -> Response:
    _form, window = _csv_window(page)
    with page.read() as session:
        days = reports.platform_daily(session, window)
    rows = [
        (
            d.day.isoformat(),
            d.o2o_paid_orders,
            csv_export.yuan(d.o2o_gmv_fen),
            d.goods_paid_orders,
            csv_export.yuan(d.goods_gmv_fen),
            csv_export.yuan(d.gmv_fen),
        )
        for d in days
    ]
    return _csv(csv_export.render(DAILY_HEADERS, rows), "daily_gmv", window)
