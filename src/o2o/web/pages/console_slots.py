"""场次日历 for deals that need a booking (需预约): a week per store with remaining / capacity,
bulk-create a week of hourly slots, close a slot. Owners and managers, through
``o2o.catalog.service`` (add_slots, list_slots, set_slot_open) exactly as the API."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query
from fastapi.responses import Response
from pydantic import Field
from sqlalchemy.orm import Session

from o2o.catalog import service as catalog
from o2o.catalog.models import Listing
from o2o.catalog.schemas import Capacity, SlotIn
from o2o.errors import AppError
from o2o.merchants import service as merchants
from o2o.schemas import Id, Schema
from o2o.timeutil import CHINA_TZ, to_china, utcnow
from o2o.web.context import ConsolePageDep, PageContext, page_router
from o2o.web.forms import Form, FormDataDep, id_or_none
from o2o.web.pages.console_listings import own_listing, require_managers

router = page_router()

WEEKDAYS = "一二三四五六日"
MAX_DAYS = 14
MAX_AHEAD_DAYS = 365


class SlotWeekForm(Schema):
    """A block of hourly slots: ``days`` days from ``first_day``, hours [from_hour, to_hour)."""

    store_id: Id
    first_day: date
    days: Annotated[int, Field(ge=1, le=MAX_DAYS)] = 7
    from_hour: Annotated[int, Field(ge=0, le=23)]
    to_hour: Annotated[int, Field(ge=1, le=24)]
    capacity: Capacity


SLOT_MESSAGES = {
    "store_id": "请选择门店",
    "first_day": "请选择开始日期",
    "days": f"天数为 1–{MAX_DAYS}",
    "from_hour": "开始时间为 0–23 点",
    "to_hour": "结束时间为 1–24 点",
    "capacity": "每场名额为 1–100000 的整数",
}


def _today() -> date:
    return to_china(utcnow()).date()


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value) if value else _today()
    except ValueError:
        return _today()


def _at(day: date, hour: int) -> datetime:
    """``hour`` o'clock (24 = next midnight) on ``day`` in China, as an aware datetime."""
    return datetime.combine(day, time(0), CHINA_TZ) + timedelta(hours=hour)


def hourly_slots(d: SlotWeekForm, now: datetime) -> tuple[list[SlotIn], int]:
    """The slots of the block that start after ``now``, and how many were already past."""
    slots, past = [], 0
    for offset in range(d.days):
        day = d.first_day + timedelta(days=offset)
        for hour in range(d.from_hour, d.to_hour):
            starts = _at(day, hour)
            if starts <= now:
                past += 1
                continue
            slots.append(
                SlotIn(
                    store_id=d.store_id,
                    starts_at=starts,
                    ends_at=starts + timedelta(hours=1),
                    capacity=d.capacity,
                )
            )
    return slots, past


def _week(
    session: Session, page: PageContext, listing: Listing, store_id: int | None, start: date
) -> list[dict[str, Any]]:
    """Seven days from ``start``, each with its slots at the store (China time)."""
    days = [start + timedelta(days=i) for i in range(7)]
    by_day: dict[date, list[dict[str, Any]]] = defaultdict(list)
    if store_id is not None:
        rows = catalog.list_slots(
            session,
            page.actor,
            listing.id,
            start=_at(start, 0),
            end=_at(start + timedelta(days=7), 0),
            store_id=store_id,
            limit=7 * 24 * 4,
        )
        now = utcnow()
        for row in rows:
            local = to_china(row["starts_at"])
            row["label"] = f"{local:%H:%M}–{to_china(row['ends_at']):%H:%M}"
            row["closable"] = row["is_open"] and row["ends_at"] > now
            by_day[local.date()].append(row)
    return [
        {
            "date": d,
            "label": f"{d.month}月{d.day}日 周{WEEKDAYS[d.weekday()]}",
            "today": d == _today(),
            "slots": by_day[d],
        }
        for d in days
    ]


def _render(
    page: PageContext,
    listing_id: int,
    *,
    store: str = "",
    week: str = "",
    form: Form[SlotWeekForm] | None = None,
) -> Response:
    assert page.merchant is not None
    start = _day(week)
    with page.read() as session:
        listing = own_listing(session, page, listing_id)
        names = {s.id: s.name for s in merchants.list_stores(session, page.merchant.id)}
        stores = [(s, names.get(s, str(s))) for s in listing.store_ids]
        chosen = id_or_none(store)
        chosen = chosen if chosen in listing.store_ids else None
        if chosen is None and stores:
            chosen = stores[0][0]
        days = _week(session, page, listing, chosen, start)
    if form is None:
        form = Form.blank(
            SlotWeekForm,
            store_id=chosen,
            first_day=max(start, _today()).isoformat(),
            days=7,
            from_hour=10,
            to_hour=22,
            capacity=10,
        )
    return page.render(
        "console/slots.html",
        listing=listing,
        stores=stores,
        store_id=chosen,
        store_name=names.get(chosen or 0, ""),
        days=days,
        week=start.isoformat(),
        prev_week=(start - timedelta(days=7)).isoformat(),
        next_week=(start + timedelta(days=7)).isoformat(),
        form=form,
        hour_from=[(h, f"{h:02d}:00") for h in range(0, 24)],
        hour_to=[(h, f"{h:02d}:00") for h in range(1, 25)],
        status_label=catalog.LISTING_STATUS.label,
        status_code=form.status,
    )


def _base(page: PageContext, listing_id: int) -> str:
    assert page.merchant is not None
    return f"/console/m/{page.merchant.id}/listings/{listing_id}/slots"


@router.get("/console/m/{merchant_id}/listings/{listing_id}/slots", name="console_slots")
def slot_calendar(
    page: ConsolePageDep,
    listing_id: Id,
    store: Annotated[str, Query(max_length=20)] = "",
    week: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    require_managers(page)
    return _render(page, listing_id, store=store, week=week)


@router.post("/console/m/{merchant_id}/listings/{listing_id}/slots")
def create_slots(page: ConsolePageDep, listing_id: Id, data: FormDataDep) -> Response:
    actor, _ = require_managers(page)
    with page.read() as session:
        listing = own_listing(session, page, listing_id)
        store_ids = listing.store_ids
    form = Form.parse(SlotWeekForm, data, messages=SLOT_MESSAGES)
    slots: list[SlotIn] = []
    past = 0
    d = form.data
    if d is not None:
        if d.store_id not in store_ids:
            form.fail("请选择该团购的适用门店", field="store_id")
        if d.to_hour <= d.from_hour:
            form.fail("结束时间须晚于开始时间", field="to_hour")
        if d.first_day > _today() + timedelta(days=MAX_AHEAD_DAYS):
            form.fail("只能创建一年以内的场次", field="first_day")
        if form.ok:
            slots, past = hourly_slots(d, utcnow())
            if not slots:
                form.fail("这些时段都已过去，请选择以后的日期或时间", field="first_day")
    created = form.submit(
        page.db,
        lambda s, _d: len(catalog.add_slots(s, actor, listing.id, slots, skip_existing=True)),
    )
    week = str(data.get("first_day") or "")[:20]
    store = str(data.get("store_id") or "")[:20]
    if created is None:
        return _render(page, listing.id, store=store, week=week, form=form)
    skipped = len(slots) - created
    message = f"已创建 {created} 个场次"
    if skipped or past:
        message += f"（跳过已存在的 {skipped} 个、已过去的 {past} 个）"
    back = f"{_base(page, listing.id)}?{urlencode({'store': store, 'week': week})}"
    return page.redirect(back, flash=message)


@router.post("/console/m/{merchant_id}/listings/{listing_id}/slots/{slot_id}/close")
def close_slot(page: ConsolePageDep, listing_id: Id, slot_id: Id, data: FormDataDep) -> Response:
    """关闭场次: no new bookings; bookings already made stay valid."""
    actor, _ = require_managers(page)
    with page.read() as session:
        listing = own_listing(session, page, listing_id)
    store, week = str(data.get("store") or "")[:20], str(data.get("week") or "")[:20]
    back = f"{_base(page, listing.id)}?{urlencode({'store': store, 'week': week})}"
    try:
        with page.write() as session:
            catalog.set_slot_open(session, actor, listing.id, slot_id, is_open=False)
    except AppError as exc:
        if exc.status != 409:
            raise
        return page.redirect(back, flash=exc.detail, kind="error")
    return page.redirect(back, flash="场次已关闭，已预约的顾客不受影响")
