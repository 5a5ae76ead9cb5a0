"""Operator admin: 商户审核 (approve / reject with reason), 商户 list with suspend / reinstate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import Query
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o.accounts.models import User
from o2o.errors import Conflict
from o2o.merchants import service as merchants
from o2o.merchants.access import OWNER
from o2o.merchants.models import Category, Membership, Merchant
from o2o.merchants.schemas import ReviewDecision
from o2o.schemas import Id
from o2o.web.context import AdminPageDep, PageContext, page_router, safe_next
from o2o.web.forms import Form, FormDataDep
from o2o.web.nav import NavItem, add_nav

router = page_router()

add_nav(
    NavItem("admin", "商户审核", "/admin/applications", order=10),
    NavItem("admin", "商户", "/admin/merchants", order=20),
)

MerchantStatus = Literal["pending", "approved", "rejected", "suspended"]
PAGE_SIZE = 50
REASON_MESSAGES = {"reason": "请填写原因（1–500 字）"}


def _owners(session: Session, merchant_ids: list[int]) -> dict[int, User]:
    if not merchant_ids:
        return {}
    rows = session.execute(
        select(Membership.merchant_id, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.merchant_id.in_(merchant_ids), Membership.role == OWNER)
        .order_by(Membership.id)
    ).all()
    owners: dict[int, User] = {}
    for merchant_id, user in rows:
        owners.setdefault(merchant_id, user)
    return owners


def _category_names(session: Session) -> dict[int, str]:
    return dict(session.execute(select(Category.id, Category.name)).all())


@router.get("/admin", name="admin_home")
def admin_home(page: AdminPageDep) -> Response:
    return page.redirect("/admin/applications")


def _render_applications(
    page: PageContext, forms: dict[int, Form] | None = None, status_code: int = 200
) -> Response:
    with page.read() as session:
        pending = list(
            merchants.list_merchants(session, status=merchants.PENDING, limit=100, after_id=None)
        )
        owners = _owners(session, [m.id for m in pending])
        categories = _category_names(session)
        histories = merchants.review_histories(session, [m.id for m in pending])
    return page.render(
        "admin/applications.html",
        applications=pending,
        histories=histories,
        review_labels=merchants.REVIEW_ACTION_LABELS,
        owners=owners,
        categories=categories,
        forms=forms or {},
        blank=Form.blank(ReviewDecision),
        status_code=status_code,
    )


@router.get("/admin/applications", name="admin_applications")
def applications(page: AdminPageDep) -> Response:
    return _render_applications(page)


def _render_merchants(
    page: PageContext,
    status: str | None,
    cursor: int | None,
    forms: dict[int, Form] | None = None,
    status_code: int = 200,
) -> Response:
    with page.read() as session:
        rows = list(
            merchants.list_merchants(session, status=status, limit=PAGE_SIZE, after_id=cursor)
        )
        owners = _owners(session, [m.id for m in rows])
        categories = _category_names(session)
        histories = merchants.review_histories(session, [m.id for m in rows])
    next_cursor = rows[-1].id if len(rows) == PAGE_SIZE else None
    return page.render(
        "admin/merchants.html",
        merchants=rows,
        histories=histories,
        review_labels=merchants.REVIEW_ACTION_LABELS,
        owners=owners,
        categories=categories,
        status=status,
        next_cursor=next_cursor,
        forms=forms or {},
        blank=Form.blank(ReviewDecision),
        status_code=status_code,
    )


@router.get("/admin/merchants", name="admin_merchants")
def merchant_list(
    page: AdminPageDep,
    status: Annotated[MerchantStatus | None, Query()] = None,
    cursor: Annotated[Id | None, Query()] = None,
) -> Response:
    return _render_merchants(page, status, cursor)


def _back(data: FormDataDep, default: str) -> str:
    raw = data.get("back")
    back = safe_next(raw if isinstance(raw, str) else None, default)
    return back if back.startswith("/admin/") else default


def _decide(
    page: PageContext,
    merchant_id: int,
    action: str,
    back: str,
    success: Callable[[Merchant], str],
    reason: str = "",
) -> Response:
    assert page.actor is not None
    try:
        with page.write() as session:
            merchant = merchants.review(session, page.actor, merchant_id, action, reason)
    except Conflict as exc:  # e.g. already decided by another operator
        return page.redirect(back, flash=exc.detail, kind="error")
    return page.redirect(back, flash=success(merchant))


@router.post("/admin/merchants/{merchant_id}/approve", name="admin_approve")
def approve(page: AdminPageDep, merchant_id: Id, data: FormDataDep) -> Response:
    back = _back(data, "/admin/applications")
    return _decide(page, merchant_id, "approve", back, lambda m: f"已通过「{m.name}」的入驻申请")


@router.post("/admin/merchants/{merchant_id}/reinstate", name="admin_reinstate")
def reinstate(page: AdminPageDep, merchant_id: Id, data: FormDataDep) -> Response:
    back = _back(data, "/admin/merchants")
    return _decide(page, merchant_id, "approve", back, lambda m: f"已恢复「{m.name}」")


@router.post("/admin/merchants/{merchant_id}/reject", name="admin_reject")
def reject(page: AdminPageDep, merchant_id: Id, data: FormDataDep) -> Response:
    back = _back(data, "/admin/applications")
    form = Form.parse(ReviewDecision, data, messages=REASON_MESSAGES)
    if not form.ok or form.data is None:
        return _render_applications(page, {merchant_id: form}, status_code=form.status)
    return _decide(
        page,
        merchant_id,
        "reject",
        back,
        lambda m: f"已驳回「{m.name}」的入驻申请",
        reason=form.data.reason,
    )


@router.post("/admin/merchants/{merchant_id}/suspend", name="admin_suspend")
def suspend(page: AdminPageDep, merchant_id: Id, data: FormDataDep) -> Response:
    back = _back(data, "/admin/merchants")
    form = Form.parse(ReviewDecision, data, messages=REASON_MESSAGES)
    if not form.ok or form.data is None:
        return _render_merchants(page, None, None, {merchant_id: form}, status_code=form.status)
    return _decide(
        page, merchant_id, "suspend", back, lambda m: f"已暂停「{m.name}」", reason=form.data.reason
    )
