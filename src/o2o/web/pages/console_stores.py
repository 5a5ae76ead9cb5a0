"""门店: list (a clerk sees only its stores), create and edit (owner/manager, as in the API)."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from fastapi.responses import Response
from pydantic import ValidationError, field_validator
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from o2o.merchants import hours as hours_module
from o2o.merchants import service as merchants
from o2o.merchants.access import MANAGERS
from o2o.merchants.hours import StoreHours
from o2o.merchants.schemas import StoreIn, check_in_china
from o2o.schemas import Id
from o2o.web.context import ConsolePageDep, page_router
from o2o.web.forms import Form, FormDataDep
from o2o.web.nav import NavItem, add_nav
from o2o.weekly import WEEKDAY_NAMES

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


# Not inputs of the form: photos have their own form, hours their weekly table.
NOT_TYPED = {"photos", "hours"}
STORE_MESSAGES = {
    "lat": "请输入纬度，如 22.5170（GCJ-02，中国境内）",
    "lng": "请输入经度，如 113.9360（GCJ-02，中国境内）",
    "phone": "不能超过 20 个字符",
}


def read_hours(data: FormData, form: Form) -> tuple[bool, StoreHours | None]:
    """(given, hours) from the weekly table of the form; errors go to the ``hours`` field.
    No range on any day: no structured hours (the free-text line is used alone)."""
    if not data.get("hours_form"):
        return False, None
    weekly: list[list[dict[str, str]]] = []
    for day in range(1, 8):
        ranges = []
        for n in range(1, 3):
            start, end = (str(data.get(f"h{day}_{k}{n}") or "").strip() for k in ("s", "e"))
            if start or end:
                if not (start and end):
                    form.fail("每个时段请同时填写开始和结束时间", field="hours")
                ranges.append({"start": start, "end": end})
        weekly.append(ranges)
    closed = []
    for word in re.split(r"[\s,，、;；]+", str(data.get("closed_dates") or "").strip()):
        if word:
            try:
                closed.append(date.fromisoformat(word))
            except ValueError:
                form.fail(f"「{word}」不是日期，请写成 2026-10-01", field="hours")
    if form.errors.get("hours") or not any(weekly):
        return True, None
    try:
        return True, StoreHours(weekly=weekly, closed_dates=closed)  # type: ignore[arg-type]
    except ValidationError:
        form.fail("营业时间请写成 10:00 这样的 24 小时制", field="hours")
        return True, None


def _hours_inputs(data: FormData | None, stored: dict[str, Any] | None) -> dict[str, str]:
    """What the weekly table shows: as typed, else as stored."""
    if data is not None and data.get("hours_form"):
        return {k: str(v) for k, v in data.items() if k.startswith("h") or k == "closed_dates"}
    found = hours_module.load(stored)
    values: dict[str, str] = {}
    if found is None:
        return values
    for day, ranges in enumerate(found.weekly, start=1):
        for n, r in enumerate(ranges[:2], start=1):
            values[f"h{day}_s{n}"], values[f"h{day}_e{n}"] = r.start, r.end
    values["closed_dates"] = "\n".join(d.isoformat() for d in found.closed_dates)
    return values


def _render_form(
    page: ConsolePageDep, form: Form, store_id: int | None, data: FormData | None = None
) -> Response:
    photos: list[str] = []
    stored = None
    if store_id is not None and page.merchant is not None:
        with page.read() as session:
            store = merchants.get_store(session, page.merchant.id, store_id)
            photos, stored = list(store.photos or []), store.hours
    return page.render(
        "console/store_form.html",
        form=form,
        store_id=store_id,
        photos=photos,
        hours_inputs=_hours_inputs(data, stored),
        weekdays=list(WEEKDAY_NAMES.items()),
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
    hours_given, hours = read_hours(data, form)

    def create(session: Session, d: StoreForm) -> int:
        fields = d.model_dump(exclude={"is_active", "photos", "hours"})
        if hours_given:
            fields["hours"] = hours
        store = merchants.create_store(session, actor, merchant_id, **fields)
        if not d.is_active:
            merchants.update_store(session, actor, merchant_id, store.id, is_active=False)
        return store.id

    if form.submit(page.db, create) is None:
        return _render_form(page, form, None, data)
    return page.redirect(f"/console/m/{merchant_id}/stores", flash="门店已创建")


@router.get("/console/m/{merchant_id}/stores/{store_id}/edit", name="console_store_edit")
def edit_store(page: ConsolePageDep, store_id: Id) -> Response:
    assert page.actor is not None and page.merchant is not None
    page.actor.require_staff(page.merchant.id, MANAGERS, store_id=store_id)
    with page.read() as session:
        store = merchants.get_store(session, page.merchant.id, store_id)
    initial = {
        name: getattr(store, name) for name in StoreForm.model_fields if name not in NOT_TYPED
    }
    return _render_form(page, Form.blank(StoreForm, **initial), store_id)


@router.post("/console/m/{merchant_id}/stores/{store_id}/edit")
def update_store(page: ConsolePageDep, store_id: Id, data: FormDataDep) -> Response:
    assert page.actor is not None and page.merchant is not None
    actor, merchant_id = page.actor, page.merchant.id
    actor.require_staff(merchant_id, MANAGERS, store_id=store_id)
    form = Form.parse(StoreForm, data, messages=STORE_MESSAGES)
    hours_given, hours = read_hours(data, form)

    def save(session: Session, d: StoreForm) -> int:
        changes = d.model_dump(exclude=NOT_TYPED)
        if hours_given:
            changes["hours"] = hours
        return merchants.update_store(session, actor, merchant_id, store_id, **changes).id

    saved = form.submit(page.db, save)
    if saved is None:
        return _render_form(page, form, store_id, data)
    return page.redirect(f"/console/m/{merchant_id}/stores", flash="门店已保存")
