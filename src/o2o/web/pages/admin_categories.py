"""类目与佣金: the category tree; the commission rate is kept in basis points, edited as %."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi.responses import Response
from pydantic import Field

from o2o.merchants import service as merchants
from o2o.schemas import Id, Schema
from o2o.web.context import AdminPageDep, PageContext, page_router
from o2o.web.forms import Form, FormDataDep
from o2o.web.nav import NavItem, add_nav
from o2o.web.templating import bp_to_percent_input

router = page_router()

add_nav(NavItem("admin", "类目与佣金", "/admin/categories", order=30))


class CommissionForm(Schema):
    # 0–100 % with at most two decimals = 0–10000 basis points, exactly.
    commission_percent: Annotated[Decimal, Field(ge=0, le=100, decimal_places=2, max_digits=5)]

    @property
    def basis_points(self) -> int:
        return int(self.commission_percent * 100)


def _rows(nodes: list[dict[str, Any]], depth: int = 0) -> list[dict[str, Any]]:
    rows = []
    for node in nodes:
        rows.append({**node, "depth": depth})
        rows.extend(_rows(node["children"], depth + 1))
    return rows


def _render(page: PageContext, forms: dict[int, Form] | None = None, status: int = 200) -> Response:
    with page.read() as session:
        rows = _rows(merchants.category_tree(session))
    return page.render("admin/categories.html", rows=rows, forms=forms or {}, status_code=status)


def _blank(bp: int) -> Form:
    return Form.blank(CommissionForm, commission_percent=bp_to_percent_input(bp))


@router.get("/admin/categories", name="admin_categories")
def categories(page: AdminPageDep) -> Response:
    return _render(page)


@router.post("/admin/categories/{category_id}/commission", name="admin_category_commission")
def set_commission(page: AdminPageDep, category_id: Id, data: FormDataDep) -> Response:
    form = Form.parse(
        CommissionForm, data, messages={"commission_percent": "请输入 0–100 之间的数，最多两位小数"}
    )
    saved = form.submit(
        page.db,
        lambda s, d: merchants.update_category(s, category_id, commission_bp=d.basis_points),
    )
    if page.is_htmx:
        # Swap just the row: the saved rate, or the input with its error.
        with page.read() as session:
            row = next(
                (r for r in _rows(merchants.category_tree(session)) if r["id"] == category_id),
                None,
            )
        if row is None:
            return page.redirect("/admin/categories", flash="类目不存在", kind="error")
        return page.render(
            "admin/_category_row.html",
            row=row,
            form=form if saved is None else _blank(row["commission_bp"]),
            saved=saved is not None,
            status_code=form.status if saved is None else 200,
        )
    if saved is None:
        return _render(page, {category_id: form}, status=form.status)
    return page.redirect(
        "/admin/categories", flash=f"「{saved.name}」佣金已改为 {form.value('commission_percent')}%"
    )
