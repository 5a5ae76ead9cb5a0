"""员工: list, add (owner adds managers/owners; managers add clerks), remove — the API's rules."""

from __future__ import annotations

from fastapi.responses import Response

from o2o.errors import Conflict
from o2o.merchants import service as merchants
from o2o.merchants.access import CLERK, MANAGER, MANAGERS, OWNER, ROLE_LABELS
from o2o.merchants.schemas import StaffIn
from o2o.schemas import Id
from o2o.web.context import ConsolePageDep, PageContext, page_router
from o2o.web.forms import Form, FormDataDep
from o2o.web.nav import NavItem, add_nav

router = page_router()

add_nav(NavItem("console", "员工", "/console/m/{merchant_id}/staff", order=70, roles=MANAGERS))

STAFF_MESSAGES = {"phone": "请输入 11 位中国大陆手机号", "role": "请选择角色"}
STAFF_CODES = {
    "user_not_found": "phone",
    "already_staff": "phone",
    "role_not_allowed": "role",
}


def _role_options(page: PageContext) -> list[tuple[str, str]]:
    roles = [OWNER, MANAGER, CLERK] if page.role and page.role.role == OWNER else [CLERK]
    return [(r, ROLE_LABELS[r]) for r in roles]


def _render_form(page: PageContext, form: Form) -> Response:
    assert page.merchant is not None
    with page.read() as session:
        stores = merchants.list_stores(session, page.merchant.id)
    return page.render(
        "console/staff_form.html",
        form=form,
        roles=_role_options(page),
        stores=[(s.id, s.name) for s in stores],
        status_code=form.status,
    )


@router.get("/console/m/{merchant_id}/staff", name="console_staff")
def staff(page: ConsolePageDep) -> Response:
    assert page.actor is not None and page.merchant is not None
    with page.read() as session:
        rows = merchants.list_staff(session, page.actor, page.merchant.id)
        stores = {s.id: s.name for s in merchants.list_stores(session, page.merchant.id)}
    return page.render("console/staff.html", staff=rows, stores=stores)


@router.get("/console/m/{merchant_id}/staff/new", name="console_staff_new")
def new_staff(page: ConsolePageDep) -> Response:
    assert page.actor is not None and page.merchant is not None
    page.actor.require_staff(page.merchant.id, MANAGERS)
    return _render_form(page, Form.blank(StaffIn, role=CLERK))


@router.post("/console/m/{merchant_id}/staff/new")
def add_staff(page: ConsolePageDep, data: FormDataDep) -> Response:
    assert page.actor is not None and page.merchant is not None
    actor, merchant_id = page.actor, page.merchant.id
    actor.require_staff(merchant_id, MANAGERS)
    form = Form.parse(StaffIn, data, messages=STAFF_MESSAGES)
    added = form.submit(
        page.db,
        lambda s, d: (
            merchants.add_staff(
                s, actor, merchant_id, phone=d.phone, role=d.role, store_ids=d.store_ids
            ).user_id
        ),
        field_by_code=STAFF_CODES,
    )
    if added is None:
        return _render_form(page, form)
    return page.redirect(f"/console/m/{merchant_id}/staff", flash="员工已添加")


@router.post("/console/m/{merchant_id}/staff/{user_id}/remove", name="console_staff_remove")
def remove_staff(page: ConsolePageDep, user_id: Id) -> Response:
    assert page.actor is not None and page.merchant is not None
    actor, merchant_id = page.actor, page.merchant.id
    back = f"/console/m/{merchant_id}/staff"
    try:
        with page.write() as session:
            merchants.remove_staff(session, actor, merchant_id, user_id)
    except Conflict as exc:
        return page.redirect(back, flash=exc.detail, kind="error")
    return page.redirect(back, flash="员工已移除")
