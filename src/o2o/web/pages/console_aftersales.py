"""售后 in the console: the merchant's after-sales requests by status, a request's detail with
同意 (the refund goes through the payment core) or 拒绝 with a reason; and the 今日概览 cards
待发货 and 售后申请 with links. Owners and managers, through ``o2o.shipping.aftersales``
exactly as the API (a clerk gets 403; another merchant's request looks absent)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import Response
from pydantic import Field
from sqlalchemy import func, select

from o2o.errors import NotFound
from o2o.merchants.access import MANAGERS
from o2o.orders.models import GOODS, PAID, Order
from o2o.schemas import Id, Schema
from o2o.shipping import aftersales
from o2o.shipping.models import AFTER_SALES_STATUS, REQUESTED, AfterSalesRequest
from o2o.web.context import ConsolePageDep, PageContext, page_router
from o2o.web.forms import FORM_ERRORS, Form, FormDataDep, id_or_none
from o2o.web.nav import NavItem, SlotItem, add_nav, provide
from o2o.web.pages.console_listings import require_managers

router = page_router()

add_nav(
    NavItem("console", "售后", "/console/m/{merchant_id}/after-sales", order=35, roles=MANAGERS)
)

PAGE_SIZE = 20
STATUSES = ["requested", "approved", "refund_failed", "refunded", "rejected", "cancelled"]


class RejectForm(Schema):
    reason: Annotated[str, Field(min_length=1, max_length=200)]


REJECT_MESSAGES = {"reason": "请填写拒绝原因（1–200 字），顾客会看到"}


@router.get("/console/m/{merchant_id}/after-sales", name="console_after_sales")
def request_list(
    page: ConsolePageDep,
    status: Annotated[str, Query(max_length=40)] = "",
    before: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    actor, merchant_id = require_managers(page)
    chosen = status if status in STATUSES else ""
    before_id = id_or_none(before)
    with page.read() as session:
        found = list(
            aftersales.list_for_merchant(
                session,
                actor,
                merchant_id,
                status=chosen or None,
                limit=PAGE_SIZE + 1,
                before_id=before_id,
            )
        )
        more = len(found) > PAGE_SIZE
        found = found[:PAGE_SIZE]
        rows = aftersales.requests_out(session, found, staff=True)
    return page.render(
        "console/after_sales.html",
        rows=rows,
        status=chosen,
        statuses=[(s, AFTER_SALES_STATUS.label(s)) for s in STATUSES],
        next_before=found[-1].id if more and found else None,
    )


def _detail(page: PageContext, request_id: int, form: Form[RejectForm] | None = None) -> Response:
    assert page.merchant is not None
    with page.read() as session:
        found = session.get(AfterSalesRequest, request_id)
        if found is None or found.merchant_id != page.merchant.id:
            raise NotFound("售后申请不存在", code="after_sales_not_found")
        item = aftersales.requests_out(session, [found], staff=True)[0]
    return page.render(
        "console/after_sale.html",
        item=item,
        form=form or Form.blank(RejectForm),
        can_decide=item["status"] == REQUESTED,
        status_code=form.status if form is not None else 200,
    )


@router.get("/console/m/{merchant_id}/after-sales/{request_id}", name="console_after_sale")
def request_detail(page: ConsolePageDep, request_id: Id) -> Response:
    require_managers(page)
    return _detail(page, request_id)


@router.post("/console/m/{merchant_id}/after-sales/{request_id}/approve")
def approve(page: ConsolePageDep, request_id: Id) -> Response:
    """同意: the refund is reserved in the transaction and sent to the provider after it."""
    actor, merchant_id = require_managers(page)
    try:
        with page.write() as session:
            refund_id = aftersales.approve(session, actor, merchant_id, request_id).refund_id
    except FORM_ERRORS as exc:
        # e.g. already decided (409) or nothing left to refund: say why, above the buttons.
        form = Form.blank(RejectForm)
        form.apply_error(exc)
        return _detail(page, request_id, form)
    assert refund_id is not None
    # After the commit, outside any transaction (the worker's refund sweep retries on failure).
    aftersales.send_refund(page.db, page.settings, refund_id)
    return page.redirect(
        f"/console/m/{merchant_id}/after-sales/{request_id}", flash="已同意，退款已发起"
    )


@router.post("/console/m/{merchant_id}/after-sales/{request_id}/reject")
def reject(page: ConsolePageDep, request_id: Id, data: FormDataDep) -> Response:
    actor, merchant_id = require_managers(page)
    form = Form.parse(RejectForm, data, messages=REJECT_MESSAGES)
    done = form.submit(
        page.db,
        lambda s, d: aftersales.reject(s, actor, merchant_id, request_id, d.reason).id,
    )
    if done is None:
        return _detail(page, request_id, form)
    return page.redirect(
        f"/console/m/{merchant_id}/after-sales/{request_id}", flash="已拒绝该售后申请"
    )


# --- 今日概览: 待发货 / 售后申请 (owners and managers: clerks see no goods orders) -----------


def _counts(page: PageContext) -> dict[str, int] | None:
    if page.role is None or page.merchant is None or page.role.role not in MANAGERS:
        return None
    if "glance_counts" not in page.extra:
        with page.read() as session:
            ship = session.scalar(
                select(func.count())
                .select_from(Order)
                .where(
                    Order.merchant_id == page.merchant.id,
                    Order.kind == GOODS,
                    Order.status == PAID,
                )
            )
            waiting = session.scalar(
                select(func.count())
                .select_from(AfterSalesRequest)
                .where(
                    AfterSalesRequest.merchant_id == page.merchant.id,
                    AfterSalesRequest.status == REQUESTED,
                )
            )
        page.extra["glance_counts"] = {"ship": ship or 0, "after_sales": waiting or 0}
    counts: dict[str, int] = page.extra["glance_counts"]
    return counts


def _glance_card(
    page: PageContext, key: str, label: str, value: str, hint: str, path: str
) -> SlotItem | None:
    """A dashboard card with one of the counts above, linking to its list."""
    counts = _counts(page)
    if counts is None:
        return None
    assert page.merchant is not None
    ctx: dict[str, Any] = {
        "label": label,
        "value": value.format(counts[key]),
        "hint": hint,
        "href": f"/console/m/{page.merchant.id}/{path}",
    }
    return SlotItem("console/_stat.html", ctx)


@provide("console.dashboard", "pending_shipments", order=40)
def pending_shipments_card(page: PageContext) -> SlotItem | None:
    return _glance_card(
        page, "ship", "待发货", "{} 单", "已支付的商品订单", "orders?status=paid&kind=goods"
    )


@provide("console.dashboard", "after_sales", order=50)
def after_sales_card(page: PageContext) -> SlotItem | None:
    return _glance_card(
        page, "after_sales", "售后申请", "{} 件", "等待处理", "after-sales?status=requested"
    )
