"""门店: list (a clerk sees only its stores), create and edit (owner/manager, as in the API)."""

from __future__ import annotations

from fastapi.responses import Response
from pydantic import field_validator
from sqlalchemy.orm import Session

from o2o.merchants import service as merchants
from o2o.merchants.access import MANAGERS
from o2o.merchants.schemas import StoreIn, check_in_china
from o2o.schemas import Id
from o2o.web.context import ConsolePageDep, page_router
from o2o.web.forms import Form, FormDataDep
from o2o.web.nav import NavItem, add_nav

router = page_router()

add_nav(NavItem("console", "门店", "/console/m/{merchant_id}/stores", order=60))

SHENZHEN_DISTRICTS = [
    "南山区", "福田区", "罗湖区", "宝安区", "龙岗区", "龙华区", "盐田区", "坪山区", "光明区", "大鹏新区",
]  # fmt: skip


class StoreForm(StoreIn):
    """The store page edits every field at once (and whether it is open)."""

    is_active: bool = True

    # The API checks "inside China" for the pair; here each input gets its own message.
    @field_validator("lat")
    @classmethod
    def _lat_in_china(cls, value: float) -> float:
        check_in_china(value, None)
        return value

    @field_validator("lng")
    @classmethod
    def _lng_in_china(cls, value: float) -> float:
        check_in_china(None, value)
        return value


STORE_MESSAGES = {
    "lat": "请输入纬度，如 22.5170（GCJ-02，中国境内）",
    "lng": "请输入经度，如 113.9360（GCJ-02，中国境内）",
    "phone": "不能超过 20 个字符",
}


def _render_form(page: ConsolePageDep, form: Form, store_id: int | None) -> Response:
    photos: list[str] = []
    if store_id is not None and page.merchant is not None:
        with page.read() as session:
            photos = list(merchants.get_store(session, page.merchant.id, store_id).photos or [])
    return page.render(
        "console/store_form.html",
        form=form,
        store_id=store_id,
        photos=photos,
        districts=SHENZHEN_DISTRICTS,
        status_code=form.status,
    )


@router.get("/console/m/{merchant_id}/stores", name="console_stores")
def stores(page: ConsolePageDep) -> Response:
    assert page.actor is not None and page.merchant is not None
    visible = page.actor.visible_store_ids(page.merchant.id)
    with page.read() as session:
        rows = [
            s
            for s in merchants.list_stores(session, page.merchant.id)
            if visible is None or s.id in visible
        ]
    can_manage = page.role is not None and page.role.role in MANAGERS
    return page.render("console/stores.html", stores=rows, can_manage=can_manage)


@router.get("/console/m/{merchant_id}/stores/new", name="console_store_new")
def new_store(page: ConsolePageDep) -> Response:
    assert page.actor is not None and page.merchant is not None
    page.actor.require_staff(page.merchant.id, MANAGERS)
    merchants.require_approved(page.merchant)
    return _render_form(page, Form.blank(StoreForm, city="深圳市", is_active=True), None)


@router.post("/console/m/{merchant_id}/stores/new")
def create_store(page: ConsolePageDep, data: FormDataDep) -> Response:
    assert page.actor is not None and page.merchant is not None
    actor, merchant_id = page.actor, page.merchant.id
    actor.require_staff(merchant_id, MANAGERS)
    form = Form.parse(StoreForm, data, messages=STORE_MESSAGES)

    def create(session: Session, d: StoreForm) -> int:
        fields = d.model_dump(exclude={"is_active"})
        store = merchants.create_store(session, actor, merchant_id, **fields)
        if not d.is_active:
            merchants.update_store(session, actor, merchant_id, store.id, is_active=False)
        return store.id

    if form.submit(page.db, create) is None:
        return _render_form(page, form, None)
    return page.redirect(f"/console/m/{merchant_id}/stores", flash="门店已创建")


@router.get("/console/m/{merchant_id}/stores/{store_id}/edit", name="console_store_edit")
def edit_store(page: ConsolePageDep, store_id: Id) -> Response:
    assert page.actor is not None and page.merchant is not None
    page.actor.require_staff(page.merchant.id, MANAGERS, store_id=store_id)
    with page.read() as session:
        store = merchants.get_store(session, page.merchant.id, store_id)
    initial = {name: getattr(store, name) for name in StoreForm.model_fields}
    return _render_form(page, Form.blank(StoreForm, **initial), store_id)


@router.post("/console/m/{merchant_id}/stores/{store_id}/edit")
def update_store(page: ConsolePageDep, store_id: Id, data: FormDataDep) -> Response:
    assert page.actor is not None and page.merchant is not None
    actor, merchant_id = page.actor, page.merchant.id
    actor.require_staff(merchant_id, MANAGERS, store_id=store_id)
    form = Form.parse(StoreForm, data, messages=STORE_MESSAGES)
    saved = form.submit(
        page.db,
        lambda s, d: merchants.update_store(s, actor, merchant_id, store_id, **d.model_dump()).id,
    )
    if saved is None:
        return _render_form(page, form, store_id)
    return page.redirect(f"/console/m/{merchant_id}/stores", flash="门店已保存")
