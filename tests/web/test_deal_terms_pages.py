"""团购详情 in the console deal form and on the listing page: contents rows and rules typed in
yuan and plain words become data; bad rows and rules get Chinese errors next to the input and
change nothing; the consumer reads them under 套餐内容 and 购买须知."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from o2o.accounts.models import User
from o2o.catalog import service as catalog
from o2o.catalog.models import Listing
from o2o.merchants.access import load_actor
from o2o.timeutil import to_china, utcnow
from tests.voucher_support import a_deal, paid_order, set_listing
from tests.web.support import PageClient, field_error
from tests.web.test_console_listings import count_listings, created_id, deal_form
from tests.web.test_console_redeem import refusal


@pytest.fixture
def pages(app: Any) -> Iterator[PageClient]:
    with PageClient(app) as client:
        yield client


def terms_form(world: Any, **fields: Any) -> dict[str, Any]:
    terms = {
        "terms_form": "1",
        "item_name": ["鸳鸯锅底", "精品肥牛", ""],
        "item_qty": ["1", "2", ""],
        "item_price": ["48", "38.00", ""],
        "usable_days": ["1", "2", "3", "4", "5"],
        "hours_start_1": "11:00",
        "hours_end_1": "14:00",
        "hours_start_2": "17:00",
        "hours_end_2": "01:00",
        "excluded_dates": "2026-12-25\n2027-01-01",
        "booking": "advance",
        "booking_note": "请提前 1 天电话预约",
        "people_min": "2",
        "people_max": "4",
        "extra_charges": "锅底另收 ¥20\n茶位费 ¥3/人",
    }
    return deal_form(world, **{**terms, **fields})


def test_deal_form_contents_and_rules(pages: PageClient, world: Any) -> None:
    base = f"/console/m/{world.a.id}/listings"
    pages.sign_in(world.a.owner_id)
    for bad, field, message in [
        ({"item_qty": ["0", "2", ""]}, "item_qty_0", "数量为 1–999 的整数"),
        ({"item_price": ["abc", "38", ""]}, "item_price_0", "请填写单价，如 38.00"),
        ({"usable_days": []}, "usable_days", "请至少选择一个可用日"),
        ({"hours_end_1": ""}, "hours_end_1", "请同时填写开始和结束时间"),
        ({"hours_end_1": "25:00"}, "hours_end_1", "时间请写成 11:00 这样的 24 小时制"),
        ({"excluded_dates": "国庆"}, "excluded_dates", "「国庆」不是日期，请写成 2026-10-01"),
        ({"people_max": "1"}, "people_max", "适用人数上限不能小于下限"),
        ({"price": "200", "original_price": "300"}, "items", "低于团购价"),
    ]:
        r = pages.form_post(f"{base}/new/deal", terms_form(world, **bad))
        assert r.status_code == 422, (bad, r.status_code)
        assert message in (field_error(r.text, field) or ""), (bad, field_error(r.text, field))
        assert 'value="鸳鸯锅底"' in r.text  # what was typed stays
    assert count_listings(world.db, world.a.id) == 0

    listing_id = created_id(pages.form_post(f"{base}/new/deal", terms_form(world)))
    with world.db.transaction(readonly=True) as session:
        x = session.get(Listing, listing_id)
        assert x.deal_items == [
            {"name": "鸳鸯锅底", "quantity": 1, "unit_price_fen": 4800},
            {"name": "精品肥牛", "quantity": 2, "unit_price_fen": 3800},
        ]
        assert x.deal_rules["weekdays"] == [1, 2, 3, 4, 5]
        assert x.deal_rules["hours"][1] == {"start": "17:00", "end": "01:00"}
        assert x.deal_rules["excluded_dates"] == ["2026-12-25", "2027-01-01"]
        assert x.deal_rules["extra_charges"] == ["锅底另收 ¥20", "茶位费 ¥3/人"]
    edit = pages.get(f"{base}/{listing_id}/edit").text
    assert 'value="38.00"' in edit and "2027-01-01" in edit and 'value="17:00"' in edit
    # Saving again without changes keeps the same data.
    r = pages.form_post(f"{base}/{listing_id}/edit", terms_form(world))
    assert r.status_code == 303

    with world.db.transaction() as session:
        owner = load_actor(session, session.get(User, world.a.owner_id))
        catalog.publish(session, owner, listing_id)
    pages.sign_in(None)
    shown = pages.get(f"/l/{listing_id}").text
    assert "套餐内容" in shown and "精品肥牛" in shown
    assert "单点合计 ¥124.00，团购价 ¥98.00，省 ¥26.00" in shown
    assert "周一至周五" in shown and "11:00–14:00、17:00–次日01:00" in shown
    assert "需提前预约（请提前 1 天电话预约）" in shown and "2–4 人" in shown
    assert "锅底另收 ¥20；茶位费 ¥3/人" in shown


def test_the_clerk_sees_the_rules_and_why_not_now(pages: PageClient, world: Any) -> None:
    deal = a_deal(world)
    code = paid_order(world.db, world.consumer_id, deal.listing_id).codes[0]
    today = to_china(utcnow()).date().isoformat()
    items = [{"name": "鸳鸯锅底", "quantity": 1, "unit_price_fen": 4800}]
    set_listing(world.db, deal.listing_id, deal_rules={"excluded_dates": [today]}, deal_items=items)
    pages.sign_in(world.a.clerk_id)
    params = {"code": code, "store_id": str(world.a.store_ids[0])}
    page = pages.get(f"/console/m/{world.a.id}/redeem", params=params).text
    assert "鸳鸯锅底 × 1" in page and "不可用日期" in page
    assert refusal(page) == f"deal_not_usable_now: 该团购 {today} 不可用（商家设定的不可用日期）"
    r = pages.form_post(f"/console/m/{world.a.id}/redeem", params)
    assert refusal(r.text) == f"deal_not_usable_now: 该团购 {today} 不可用（商家设定的不可用日期）"
    set_listing(world.db, deal.listing_id, deal_rules=None)
    r = pages.form_post(f"/console/m/{world.a.id}/redeem", params)
    assert refusal(r.text) is None and r.status_code in (200, 303)
