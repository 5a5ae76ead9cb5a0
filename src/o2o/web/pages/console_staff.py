"""员工: list, invite (owners invite managers/owners; managers invite clerks), withdraw an
invitation, remove — the API's rules (``o2o.merchants.staff``). Nobody becomes staff without
accepting: the invited user answers on 我的 (``/me``)."""

from __future__ import annotations

from fastapi.responses import Response

from o2o.errors import Conflict, NotFound
from o2o.merchants import service as merchants
from o2o.merchants import staff as staff_service
from o2o.merchants.access import CLERK, MANAGER, MANAGERS, OWNER, ROLE_LABELS
from o2o.merchants.schemas import StaffIn
from o2o.schemas import Id
from o2o.web.context import ConsolePageDep, PageContext, SignedInPageDep, page_router
from o2o.web.forms import Form, FormDataDep
from o2o.web.nav import NavItem, SlotItem, add_nav, provide

router = page_router()

add_nav(NavItem("console", "员工", "/console/m/{merchant_id}/staff", order=70, roles=MANAGERS))

STAFF_MESSAGES = {"phone": "请输入 11 位中国大陆手机号", "role": "请选择角色"}
STAFF_CODES = {
    "user_not_found": "phone",
    "already_staff": "phone",
    "already_invited": "phone",
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
        rows = staff_service.list_staff(session, page.actor, page.merchant.id)
        invitations = staff_service.list_invitations(session, page.actor, page.merchant.id)
        stores = {s.id: s.name for s in merchants.list_stores(session, page.merchant.id)}
    return page.render("console/staff.html", staff=rows, invitations=invitations, stores=stores)


@router.get("/console/m/{merchant_id}/staff/new", name="console_staff_new")
def new_staff(page: ConsolePageDep) -> Response:
    assert page.actor is not None and page.merchant is not None
    page.actor.require_staff(page.merchant.id, MANAGERS)
    return _render_form(page, Form.blank(StaffIn, role=CLERK))


@router.post("/console/m/{merchant_id}/staff/new")
def invite_staff(page: ConsolePageDep, data: FormDataDep) -> Response:
    assert page.actor is not None and page.merchant is not None
    actor, merchant_id = page.actor, page.merchant.id
    actor.require_staff(merchant_id, MANAGERS)
    form = Form.parse(StaffIn, data, messages=STAFF_MESSAGES)
    invited = form.submit(
        page.db,
        lambda s, d: (
            staff_service.invite_staff(
                s, actor, merchant_id, phone=d.phone, role=d.role, store_ids=d.store_ids
            ).id
        ),
        field_by_code=STAFF_CODES,
    )
    if invited is None:
        return _render_form(page, form)
    return page.redirect(
        f"/console/m/{merchant_id}/staff", flash="邀请已发送，对方在「我的」页面接受后即成为员工"
    )


@router.post(
    "/console/m/{merchant_id}/invitations/{invitation_id}/revoke",
    name="console_invitation_revoke",
)
def revoke_invitation(page: ConsolePageDep, invitation_id: Id) -> Response:
    assert page.actor is not None and page.merchant is not None
    actor, merchant_id = page.actor, page.merchant.id
    back = f"/console/m/{merchant_id}/staff"
    try:
        with page.write() as session:
            staff_service.revoke_invitation(session, actor, merchant_id, invitation_id)
    except Conflict as exc:
        return page.redirect(back, flash=exc.detail, kind="error")
    return page.redirect(back, flash="邀请已撤回")


@router.post("/console/m/{merchant_id}/staff/{user_id}/remove", name="console_staff_remove")
def remove_staff(page: ConsolePageDep, user_id: Id) -> Response:
    assert page.actor is not None and page.merchant is not None
    actor, merchant_id = page.actor, page.merchant.id
    back = f"/console/m/{merchant_id}/staff"
    try:
        with page.write() as session:
            staff_service.remove_staff(session, actor, merchant_id, user_id)
    except Conflict as exc:
        return page.redirect(back, flash=exc.detail, kind="error")
    return page.redirect(back, flash="员工已移除")


# --- the invited user's side (on 我的) ---------------------------------------------------------


@provide("consumer.me", "staff_invitations", order=10)
def _invitations_on_me(page: PageContext) -> SlotItem | None:
    if page.actor is None:
        return None
    with page.read() as session:
        invitations = staff_service.my_invitations(session, page.actor.user_id)
    if not invitations:
        return None
    return SlotItem("consumer/_invitations.html", {"invitations": invitations})


@router.post("/me/invitations/{invitation_id}/{answer}", name="answer_invitation")
def answer_invitation(page: SignedInPageDep, invitation_id: Id, answer: str) -> Response:
    assert page.actor is not None
    if answer not in ("accept", "decline"):
        raise NotFound("没有这个地址")
    user_id = page.actor.user_id
    try:
        with page.write() as session:
            if answer == "accept":
                membership = staff_service.accept_invitation(session, user_id, invitation_id)
                merchant_id = membership.merchant_id
            else:
                staff_service.decline_invitation(session, user_id, invitation_id)
    except (Conflict, NotFound) as exc:
        return page.redirect("/me", flash=exc.detail, kind="error")
    if answer == "accept":
        return page.redirect(f"/console/m/{merchant_id}", flash="已加入商户")
    return page.redirect("/me", flash="已拒绝邀请", kind="info")
