"""Consumer H5 after payment: the parcels of a goods order with their tracking timeline,
确认收货, 售后 (after-sales requests, their status and the merchant's answer) and 写评价 for
goods and service orders.

The rules are the services' (o2o.shipping.service, o2o.shipping.aftersales, o2o.reviews.service),
called with the page's user exactly as the API calls them: ``orders.get_own_order`` makes another
consumer's order a 404. The order page itself is consumer_shop's ``render_order``; it asks
:func:`order_context` for these sections, and the POSTs here re-render it with their form's
errors (status 422, nothing written).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import Path
from fastapi.responses import Response
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o.errors import NotFound, ValidationFailed
from o2o.money import MAX_FEN, format_yuan
from o2o.orders import service as orders
from o2o.orders.models import COMPLETED, GOODS, SHIPPED, Order, OrderLine
from o2o.reviews import service as reviews
from o2o.reviews.models import Review
from o2o.schemas import Id, Schema
from o2o.shipping import aftersales
from o2o.shipping import service as shipping
from o2o.shipping.models import (
    AFTER_SALES_KIND_LABELS,
    REQUESTED,
    AfterSalesLine,
    AfterSalesRequest,
)
from o2o.timeutil import as_utc, utcnow
from o2o.web.context import PageContext, SignedInPageDep, page_router
from o2o.web.forms import FORM_ERRORS, Form, FormDataDep

router = page_router()

OrderNoPath = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9]+$")]
STAR_LABELS = {1: "1 星 很差", 2: "2 星 较差", 3: "3 星 一般", 4: "4 星 满意", 5: "5 星 非常满意"}
AFTER_SALES_STATUS_BADGES = {
    "requested": "badge-pending",
    "approved": "badge-info",
    "refunded": "badge-approved",
    "rejected": "badge-rejected",
    "refund_failed": "badge-pending",  # the worker retries; the label says so
}


class ReviewForm(Schema):
    line_id: Id
    rating: Annotated[int, Field(ge=1, le=5)]
    text: Annotated[str, Field(max_length=reviews.MAX_TEXT)] = ""


REVIEW_MESSAGES = {"rating": "请选择 1–5 星评分", "line_id": "请选择要评价的商品"}


class AfterSalesForm(Schema):
    kind: Literal["refund_only", "return_refund"]
    reason: Annotated[str, Field(min_length=1, max_length=200)]
    line_ids: Annotated[list[Id], Field(min_length=1, max_length=50)]
    # Yuan as typed ("12.50"); the service takes fen.
    amount: Annotated[Decimal, Field(gt=0, max_digits=14, decimal_places=2, allow_inf_nan=False)]


AFTER_SALES_MESSAGES = {
    "kind": "请选择售后类型",
    "line_ids": "请选择要售后的商品",
    "reason": "请填写售后原因（最多 200 字）",
}


def _fen(amount: Decimal) -> int:
    return int(amount * 100)


def _yuan_input(fen: int) -> str:
    return format_yuan(fen).removeprefix("¥")


# --- the order page's sections -------------------------------------------------------------------


def _refundable(session: Session, order: Order, lines: list[OrderLine]) -> dict[int, int]:
    """Fen still refundable per line, leaving out lines with a request waiting for the merchant."""
    busy = set(
        session.scalars(
            select(AfterSalesLine.order_line_id)
            .join(AfterSalesRequest, AfterSalesRequest.id == AfterSalesLine.request_id)
            .where(AfterSalesRequest.order_id == order.id, AfterSalesRequest.status == REQUESTED)
        )
    )
    return {
        line.id: line.amount_fen - line.refunded_fen
        for line in lines
        if line.id not in busy and line.amount_fen > line.refunded_fen
    }


def _after_sales_deadline(order: Order) -> datetime | None:
    if order.kind != GOODS or order.status != COMPLETED or order.completed_at is None:
        return None
    return as_utc(order.completed_at) + timedelta(days=aftersales.AFTER_SALES_DAYS)


def order_context(
    session: Session,
    page: PageContext,
    order: Order,
    lines: list[OrderLine],
    *,
    review_form: Form[ReviewForm] | None = None,
    after_sales_form: Form[AfterSalesForm] | None = None,
) -> dict[str, Any]:
    """Template context for consumer/_order_fulfil.html (the order is the page user's own)."""
    assert page.actor is not None
    parcels = shipping.shipments_out(session, [order.id])[order.id] if order.kind == GOODS else []
    auto_confirm_at = None
    if order.status == SHIPPED and order.shipped_at is not None:
        auto_confirm_at = as_utc(order.shipped_at) + timedelta(days=page.settings.auto_confirm_days)

    found, reviewable = reviews.order_reviews(session, page.actor.user_id, order.order_no)
    written = {r["line_id"]: r for r in reviews.reviews_out(session, found)}
    review_forms: dict[int, Form[ReviewForm]] = {
        line_id: Form.blank(ReviewForm, line_id=line_id) for line_id in reviewable
    }
    # A refused review whose line has no form any more (already reviewed, say): its message
    # goes above the section instead.
    review_error = None
    if review_form is not None:
        line_id = review_form.value("line_id")
        if (
            isinstance(line_id, str)
            and line_id.isascii()
            and line_id.isdigit()
            and int(line_id) in review_forms
        ):
            review_forms[int(line_id)] = review_form
        else:
            review_error = review_form.error or next(iter(review_form.errors.values()), None)

    requests = session.scalars(
        select(AfterSalesRequest)
        .where(AfterSalesRequest.order_id == order.id)
        .order_by(AfterSalesRequest.id.desc())
    ).all()
    deadline = _after_sales_deadline(order)
    refundable = _refundable(session, order, lines) if deadline else {}
    can_open = deadline is not None and utcnow() <= deadline and bool(refundable)
    if after_sales_form is None and can_open:
        after_sales_form = Form.blank(
            AfterSalesForm,
            kind="refund_only",
            line_ids=[str(i) for i in refundable],
            amount=_yuan_input(sum(refundable.values())),
        )
    return {
        "parcels": parcels,
        "can_confirm": order.kind == GOODS and order.status == SHIPPED,
        "auto_confirm_at": auto_confirm_at,
        "written_reviews": written,
        "review_forms": review_forms,
        "review_error": review_error,
        "star_labels": STAR_LABELS,
        "after_sales": aftersales.requests_out(session, requests),
        "after_sales_badges": AFTER_SALES_STATUS_BADGES,
        "after_sales_deadline": deadline,
        "after_sales_form": after_sales_form if can_open else None,
        "after_sales_kinds": list(AFTER_SALES_KIND_LABELS.items()),
        "refundable": refundable,
    }


def _back(order_no: str) -> str:
    return f"/orders/{order_no}"


def _rerender(page: PageContext, order_no: str, status: int, **forms: Any) -> Response:
    from o2o.web.pages.consumer_shop import render_order  # it imports this module

    return render_order(page, order_no, status_code=status, **forms)


# --- 确认收货 -------------------------------------------------------------------------------------


@router.post("/orders/{order_no}/confirm-receipt", name="consumer_confirm_receipt")
def confirm_receipt(page: SignedInPageDep, order_no: OrderNoPath) -> Response:
    assert page.actor is not None
    user_id = page.actor.user_id
    with page.read() as session:
        orders.get_own_order(session, user_id, order_no)  # 404 for anyone else's
    try:
        with page.write() as session:
            shipping.confirm_receipt(session, user_id, order_no)
    except FORM_ERRORS as exc:
        return page.redirect(_back(order_no), flash=exc.detail, kind="error")
    return page.redirect(_back(order_no), flash="已确认收货，欢迎评价")


# --- 写评价 -------------------------------------------------------------------------------------


@router.post("/orders/{order_no}/reviews", name="consumer_review")
def write_review(page: SignedInPageDep, order_no: OrderNoPath, data: FormDataDep) -> Response:
    assert page.actor is not None
    user_id = page.actor.user_id
    with page.read() as session:
        orders.get_own_order(session, user_id, order_no)
    form = Form.parse(ReviewForm, data, messages=REVIEW_MESSAGES)

    def action(session: Session, d: ReviewForm) -> Review:
        return reviews.create_review(
            session, user_id, order_no, rating=d.rating, text=d.text, line_id=d.line_id
        )

    if form.submit(page.db, action, field_by_code={"line_not_in_order": "line_id"}) is None:
        return _rerender(
            page, order_no, form.status if form.status >= 400 else 422, review_form=form
        )
    return page.redirect(_back(order_no) + "#reviews", flash="评价已发布，感谢您的分享")


# --- 售后 -----------------------------------------------------------------------------------------


@router.post("/orders/{order_no}/after-sales", name="consumer_after_sales")
def open_after_sales(page: SignedInPageDep, order_no: OrderNoPath, data: FormDataDep) -> Response:
    assert page.actor is not None
    user_id = page.actor.user_id
    with page.read() as session:
        orders.get_own_order(session, user_id, order_no)
    form = Form.parse(AfterSalesForm, data, messages=AFTER_SALES_MESSAGES)
    if form.data is not None and _fen(form.data.amount) > MAX_FEN:
        form.fail("退款金额过大", field="amount")

    def action(session: Session, d: AfterSalesForm) -> int:
        try:
            return aftersales.open_request(
                session,
                user_id,
                order_no,
                kind=d.kind,
                reason=d.reason,
                line_ids=d.line_ids,
                amount_fen=_fen(d.amount),
            ).id
        except ValidationFailed as exc:
            if exc.code == "amount_exceeds_refundable":
                left = int(exc.extra.get("refundable_fen") or 0)
                raise ValidationFailed(
                    f"退款金额不能超过可退金额 {format_yuan(left)}", field="amount"
                ) from None
            raise

    opened = form.submit(
        page.db,
        action,
        field_by_code={"line_not_in_order": "line_ids", "amount_fen": "amount"},
    )
    if opened is None:
        status = form.status if form.status >= 400 else 422
        return _rerender(page, order_no, status, after_sales_form=form)
    return page.redirect(_back(order_no) + "#after-sales", flash="售后申请已提交，请等待商家处理")


@router.post(
    "/orders/{order_no}/after-sales/{request_id}/cancel", name="consumer_after_sales_cancel"
)
def cancel_after_sales(page: SignedInPageDep, order_no: OrderNoPath, request_id: Id) -> Response:
    assert page.actor is not None
    user_id = page.actor.user_id
    with page.read() as session:
        order = orders.get_own_order(session, user_id, order_no)
        request = session.get(AfterSalesRequest, request_id)
        if request is None or request.order_id != order.id or request.user_id != user_id:
            raise NotFound("售后申请不存在", code="after_sales_not_found")
    try:
        with page.write() as session:
            aftersales.cancel_request(session, user_id, request_id)
    except FORM_ERRORS as exc:
        return page.redirect(_back(order_no), flash=exc.detail, kind="error")
    return page.redirect(_back(order_no) + "#after-sales", flash="售后申请已撤销")
