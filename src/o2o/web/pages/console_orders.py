"""订单 in the console: the list by status and kind (a clerk: service orders for its stores,
the API's rule), an order's detail, and 发货 (carrier + tracking number) for goods orders by
owners and managers through ``o2o.shipping.service``. Also the 今日订单 / 今日成交额 cards."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query
from fastapi.responses import Response
from pydantic import Field

from o2o.fulfilment import vouchers
from o2o.merchants import service as merchants
from o2o.merchants.access import CLERK, MANAGERS
from o2o.money import format_yuan
from o2o.orders import service as orders
from o2o.orders.models import GOODS, ORDER_STATUS, ORDER_STATUSES, PAID, SERVICE, Order
from o2o.schemas import Schema
from o2o.shipping import carriers
from o2o.shipping import service as shipping
from o2o.web.context import ConsolePageDep, PageContext, page_router
from o2o.web.forms import Form, FormDataDep, id_or_none
from o2o.web.nav import NavItem, SlotItem, add_nav, provide
from o2o.web.pages.console_redeem import today_summary

router = page_router()

add_nav(NavItem("console", "订单", "/console/m/{merchant_id}/orders", order=30))

PAGE_SIZE = 20
KINDS = {GOODS: "商品", SERVICE: "团购"}
OrderNo = Annotated[str, Path(min_length=1, max_length=32)]


class ShipForm(Schema):
    carrier: str = Field(min_length=1, max_length=10)
    tracking_no: str = Field(min_length=1, max_length=40)


SHIP_MESSAGES = {"carrier": "请选择快递公司", "tracking_no": "请输入运单号"}


def _choice(value: str, allowed: Any) -> str | None:
    return value if value in allowed else None


def _cursor(value: str) -> int | None:
    return id_or_none(value)


@router.get("/console/m/{merchant_id}/orders", name="console_orders")
def order_list(
    page: ConsolePageDep,
    status: Annotated[str, Query(max_length=40)] = "",
    kind: Annotated[str, Query(max_length=40)] = "",
    before: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    assert page.actor is not None and page.merchant is not None
    chosen_status = _choice(status, ORDER_STATUSES)
    chosen_kind = _choice(kind, KINDS)
    with page.read() as session:
        found = list(
            orders.list_merchant_orders(
                session,
                page.actor,
                page.merchant.id,
                status=chosen_status,
                kind=chosen_kind,
                limit=PAGE_SIZE + 1,
                before_id=_cursor(before),
            )
        )
        more = len(found) > PAGE_SIZE
        found = found[:PAGE_SIZE]
        lines = orders.lines_by_order(session, [o.id for o in found])
    return page.render(
        "console/orders.html",
        orders=found,
        lines=lines,
        status=chosen_status or "",
        kind=chosen_kind or "",
        statuses=[(s, ORDER_STATUS.label(s)) for s in ORDER_STATUSES],
        kinds=list(KINDS.items()),
        next_before=found[-1].id if more and found else None,
        order_status=ORDER_STATUS,
        is_clerk=page.role is not None and page.role.role == CLERK,
    )


def _visible_order(page: PageContext, session: Any, order_no: str) -> Order:
    """The order if this member may see it (the API's rule); anything else looks absent."""
    assert page.actor is not None and page.merchant is not None
    return orders.get_merchant_order(session, page.actor, page.merchant.id, order_no)


def _detail(page: PageContext, order_no: str, form: Form[ShipForm] | None = None) -> Response:
    assert page.merchant is not None
    with page.read() as session:
        order = _visible_order(page, session, order_no)
        lines = orders.lines_by_order(session, [order.id])[order.id]
        voucher_rows = vouchers.order_vouchers_out(session, [order], staff=True)[order.id]
        parcels = shipping.shipments_out(session, [order.id])[order.id]
        store_names = {s.id: s.name for s in merchants.list_stores(session, page.merchant.id)}
        timeline = orders.timeline(session, order.id)
    can_ship = (
        order.kind == GOODS
        and order.status == PAID
        and page.role is not None
        and page.role.role in MANAGERS
    )
    return page.render(
        "console/order_detail.html",
        order=order,
        lines=lines,
        vouchers=voucher_rows,
        parcels=parcels,
        store_names=store_names,
        status_label=ORDER_STATUS.label(order.status),
        kind_label=KINDS.get(order.kind, order.kind),
        can_ship=can_ship,
        timeline=timeline,
        show_actor_id=True,
        form=form or Form.blank(ShipForm),
        carrier_options=[(c.code, c.name) for c in carriers.CARRIERS.values()],
        carrier_hints={c.code: c.format_hint for c in carriers.CARRIERS.values()},
        status_code=form.status if form is not None else 200,
    )


@router.get("/console/m/{merchant_id}/orders/{order_no}", name="console_order")
def order_detail(page: ConsolePageDep, order_no: OrderNo) -> Response:
    return _detail(page, order_no)


@router.post("/console/m/{merchant_id}/orders/{order_no}/ship")
def ship_order(page: ConsolePageDep, order_no: OrderNo, data: FormDataDep) -> Response:
    assert page.actor is not None and page.merchant is not None
    actor, merchant_id = page.actor, page.merchant.id
    actor.require_staff(merchant_id, MANAGERS)
    form = Form.parse(ShipForm, data, messages=SHIP_MESSAGES)
    shipped = form.submit(
        page.db,
        lambda s, d: (
            shipping.ship(
                s, actor, merchant_id, order_no, carrier=d.carrier, tracking_no=d.tracking_no
            ).id
        ),
        field_by_code={"unknown_carrier": "carrier", "invalid_tracking_no": "tracking_no"},
    )
    if shipped is None:
        return _detail(page, order_no, form)
    return page.redirect(f"/console/m/{merchant_id}/orders/{order_no}", flash="已发货")


# --- 今日概览: 今日订单 / 今日成交额 (owners and managers; from the reports service) -------


@provide("console.dashboard", "today_orders", order=10)
def today_orders_card(page: PageContext) -> SlotItem | None:
    summary = today_summary(page)
    if summary is None or page.merchant is None:
        return None
    return SlotItem(
        "console/_stat.html",
        {
            "label": "今日订单",
            "value": f"{summary.paid_orders} 单",
            "hint": "今日支付",
            "href": f"/console/m/{page.merchant.id}/orders",
        },
    )


@provide("console.dashboard", "today_gmv", order=30)
def today_gmv_card(page: PageContext) -> SlotItem | None:
    summary = today_summary(page)
    if summary is None or page.merchant is None:
        return None
    return SlotItem(
        "console/_stat.html",
        {
            "label": "今日成交额",
            "value": format_yuan(summary.gmv_fen),
            "hint": "今日支付金额",
            "href": f"/console/m/{page.merchant.id}/orders",
        },
    )
