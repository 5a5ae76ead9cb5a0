"""Merchant console: pick a merchant, 商户入驻 (apply), 今日概览 (dashboard), edit an application."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from o2o.merchants import service as merchants
from o2o.merchants.access import OWNER
from o2o.merchants.models import Membership, Merchant, Store
from o2o.merchants.schemas import MerchantApply
from o2o.web.context import ConsolePageDep, PageContext, SignedInPageDep, page_router
from o2o.web.forms import Form, FormDataDep
from o2o.web.nav import NavItem, SlotItem, add_nav, provide

router = page_router()

add_nav(NavItem("console", "今日概览", "/console/m/{merchant_id}", order=10))

APPLY_MESSAGES = {
    "name": "请填写 1–100 个字的商户名称",
    "contact_phone": "请输入手机号或座机号（如 0755-12345678）",
    "license_no": "请输入 6–30 位营业执照号（字母、数字或短横线）",
    "category_id": "请选择经营类目",
}


def category_options(session: Session) -> list[tuple[int, str]]:
    """Every category as (id, "美食 / 火锅") for a select."""
    options: list[tuple[int, str]] = []

    def walk(nodes: list[dict[str, Any]], prefix: str) -> None:
        for node in nodes:
            label = f"{prefix}{node['name']}"
            options.append((node["id"], label))
            walk(node["children"], f"{label} / ")

    walk(merchants.category_tree(session), "")
    return options


@router.get("/console", name="console_home")
def console_home(page: SignedInPageDep, all: Annotated[bool, Query()] = False) -> Response:
    assert page.actor is not None
    page.area = "console"
    ids = list(page.actor.roles)
    if len(ids) == 1 and not all:
        return page.redirect(f"/console/m/{ids[0]}")
    with page.read() as session:
        rows = session.scalars(select(Merchant).where(Merchant.id.in_(ids))).all() if ids else []
    choices = [(m, page.actor.roles[m.id]) for m in sorted(rows, key=lambda m: m.id)]
    return page.render("console/choose.html", choices=choices)


@router.get("/console/apply", name="console_apply")
def apply_page(page: SignedInPageDep) -> Response:
    page.area = "console"
    with page.read() as session:
        options = category_options(session)
    assert page.actor is not None
    form = Form.blank(MerchantApply, contact_phone=page.actor.phone)
    return page.render("console/apply.html", form=form, categories=options, editing=None)


@router.post("/console/apply")
def apply_submit(page: SignedInPageDep, data: FormDataDep) -> Response:
    page.area = "console"
    assert page.actor is not None
    actor = page.actor
    form = Form.parse(MerchantApply, data, messages=APPLY_MESSAGES)
    merchant_id = form.submit(page.db, lambda s, d: merchants.apply(s, actor, **d.model_dump()).id)
    if merchant_id is None:
        with page.read() as session:
            options = category_options(session)
        return page.render(
            "console/apply.html",
            form=form,
            categories=options,
            editing=None,
            status_code=form.status,
        )
    return page.redirect(f"/console/m/{merchant_id}", flash="入驻申请已提交，请等待平台审核")


@router.get("/console/m/{merchant_id}/application", name="console_application")
def application_page(page: ConsolePageDep) -> Response:
    """The owner edits the application; a rejected one goes back to review (service.update)."""
    assert page.actor is not None and page.merchant is not None
    page.actor.require_staff(page.merchant.id, (OWNER,))
    m = page.merchant
    form = Form.blank(
        MerchantApply,
        name=m.name,
        contact_phone=m.contact_phone,
        license_no=m.license_no,
        category_id=m.category_id,
        description=m.description,
    )
    with page.read() as session:
        options = category_options(session)
    return page.render("console/apply.html", form=form, categories=options, editing=m)


@router.post("/console/m/{merchant_id}/application")
def application_submit(page: ConsolePageDep, data: FormDataDep) -> Response:
    assert page.actor is not None and page.merchant is not None
    actor, merchant_id = page.actor, page.merchant.id
    actor.require_staff(merchant_id, (OWNER,))
    was_rejected = page.merchant.status == merchants.REJECTED
    form = Form.parse(MerchantApply, data, messages=APPLY_MESSAGES)
    updated = form.submit(
        page.db,
        lambda s, d: merchants.update(s, actor, merchant_id, **d.model_dump()).id,
    )
    if updated is None:
        with page.read() as session:
            options = category_options(session)
        return page.render(
            "console/apply.html",
            form=form,
            categories=options,
            editing=page.merchant,
            status_code=form.status,
        )
    message = "资料已更新并重新提交审核" if was_rejected else "商户资料已更新"
    return page.redirect(f"/console/m/{merchant_id}", flash=message)


@router.get("/console/m/{merchant_id}", name="console_dashboard")
def dashboard(page: ConsolePageDep) -> Response:
    assert page.actor is not None and page.merchant is not None
    visible = page.actor.visible_store_ids(page.merchant.id)
    with page.read() as session:
        stmt = select(func.count(Store.id)).where(Store.merchant_id == page.merchant.id)
        if visible is not None:
            stmt = stmt.where(Store.id.in_(visible))
        store_count = session.scalar(stmt) or 0
        staff_count = (
            session.scalar(
                select(func.count(Membership.id)).where(Membership.merchant_id == page.merchant.id)
            )
            or 0
        )
    return page.render("console/dashboard.html", store_count=store_count, staff_count=staff_count)


# 今日概览 cards. Until orders exist these say "—" (never a made-up number); the orders,
# fulfilment and after-sales pages replace them by providing the same keys without
# placeholder=True.
_PLACEHOLDER_CARDS = [
    ("today_orders", "今日订单", 10),
    ("today_redemptions", "今日核销", 20),
    ("today_gmv", "今日成交额", 30),
    ("pending_shipments", "待发货", 40),
    ("after_sales", "售后申请", 50),
]


def _placeholder(label: str) -> Any:
    def card(page: PageContext) -> SlotItem:
        return SlotItem("console/_stat.html", {"label": label, "value": "—", "hint": "暂无数据"})

    return card


for _key, _label, _order in _PLACEHOLDER_CARDS:
    provide("console.dashboard", _key, order=_order, placeholder=True)(_placeholder(_label))
