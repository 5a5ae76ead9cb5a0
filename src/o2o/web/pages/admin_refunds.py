"""退款 for the operator: the refunds that need someone — 退款异常 first (WeChat Pay took the
money from the merchant account but the payer's account refused it: nothing was released, the
operator has it sent to a bank card with 异常退款), then failed and stuck ones. Calls the same
services as ``/api/v1/admin/refunds`` and ``…/abnormal-refund``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o.errors import AppError, NotFound
from o2o.orders import service as orders
from o2o.orders.models import Order
from o2o.payments import abnormal, service
from o2o.payments.models import (
    ABNORMAL_HANDLING_LABELS,
    REFUND_ABNORMAL,
    REFUND_FAILED,
    REFUND_PROCESSING,
    REFUND_STATUS,
    Refund,
)
from o2o.payments.schemas import AbnormalRefundIn
from o2o.web.context import AdminPageDep, PageContext, page_router
from o2o.web.forms import Form, FormDataDep
from o2o.web.nav import NavItem, add_nav

router = page_router()

add_nav(NavItem("admin", "退款", "/admin/refunds", order=62))

PAGE_SIZE = 50
RefundNo = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z_-]+$")]
# The statuses the list can show, the ones to act on first.
STATUS_OPTIONS = [
    (s, REFUND_STATUS.label(s)) for s in (REFUND_ABNORMAL, REFUND_FAILED, REFUND_PROCESSING)
]
TYPE_OPTIONS = list(ABNORMAL_HANDLING_LABELS.items())
MESSAGES = {
    "type": "请选择异常退款的处理方式",
    "bank_type": "请填写微信支付的银行类型，如 ICBC_DEBIT",
    "bank_account": "请填写 8–30 位数字的银行卡号",
    "real_name": "请填写收款人姓名（1–50 字）",
}


def _order_nos(session: Session, refunds: list[Refund]) -> dict[int, str]:
    ids = {r.order_id for r in refunds}
    if not ids:
        return {}
    rows = session.execute(select(Order.id, Order.order_no).where(Order.id.in_(ids)))
    return {order_id: order_no for order_id, order_no in rows}


@router.get("/admin/refunds", name="admin_refunds")
def refunds(
    page: AdminPageDep, status: Annotated[str, Query(max_length=20)] = REFUND_ABNORMAL
) -> Response:
    status = status if status in dict(STATUS_OPTIONS) else REFUND_ABNORMAL
    with page.read() as session:
        rows = list(service.list_refunds(session, status=status, limit=PAGE_SIZE, before_id=None))
        order_nos = _order_nos(session, rows)
        abnormal_count = len(
            service.list_refunds(session, status=REFUND_ABNORMAL, limit=PAGE_SIZE, before_id=None)
        )
    return page.render(
        "admin/refunds.html",
        refunds=rows,
        order_nos=order_nos,
        status=status,
        statuses=STATUS_OPTIONS,
        abnormal_count=abnormal_count,
        status_label=REFUND_STATUS.label,
        handling_labels=ABNORMAL_HANDLING_LABELS,
        is_stuck=service.is_stuck,
    )


def _render_refund(
    page: PageContext,
    refund_no: str,
    form: Form[AbnormalRefundIn] | None = None,
    status: int = 200,
) -> Response:
    with page.read() as session:
        refund = session.scalar(select(Refund).where(Refund.refund_no == refund_no))
        if refund is None:
            raise NotFound("退款单不存在", code="refund_not_found")
        order = session.get(Order, refund.order_id)
        timeline = orders.timeline(session, refund.order_id)
    return page.render(
        "admin/refund.html",
        refund=refund,
        order=order,
        form=form or Form.blank(AbnormalRefundIn, type="USER_BANK_CARD"),
        type_options=TYPE_OPTIONS,
        status_label=REFUND_STATUS.label,
        handling_labels=ABNORMAL_HANDLING_LABELS,
        can_apply=refund.status == REFUND_ABNORMAL,
        timeline=timeline,
        show_actor_id=True,
        status_code=status,
    )


@router.get("/admin/refunds/{refund_no}", name="admin_refund")
def refund(page: AdminPageDep, refund_no: RefundNo) -> Response:
    return _render_refund(page, refund_no)


@router.post("/admin/refunds/{refund_no}/abnormal-refund", name="admin_refund_abnormal")
def abnormal_refund(page: AdminPageDep, refund_no: RefundNo, data: FormDataDep) -> Response:
    assert page.actor is not None
    form = Form.parse(AbnormalRefundIn, data, messages=MESSAGES)
    if form.ok and form.data is not None:
        try:
            abnormal.apply_abnormal_refund(
                page.db, page.settings, refund_no, form.data, actor_id=page.actor.user_id
            )
        except NotFound:
            raise
        except AppError as exc:
            # Missing bank details (422), not abnormal any more / refused (409), WeChat Pay
            # unreachable (503): nothing changed, the form says why.
            form.apply_error(exc)
    if not form.ok:
        return _render_refund(page, refund_no, form, status=form.status or 422)
    label = ABNORMAL_HANDLING_LABELS.get(form.data.type if form.data else "", "")
    return page.redirect(
        f"/admin/refunds/{refund_no}", flash=f"已发起异常退款（{label}），等待微信支付处理"
    )
