"""团购详情: contents and rules as data. The rules decide when a voucher can be redeemed (usable
weekdays and hours, overnight ranges, excluded dates) with a clear Chinese reason; the API takes
and shows them; the clerk's preview shows them; redemption refuses outside them (both
databases) and accepts inside them."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from o2o.catalog.deal_terms import (
    DealRules,
    items_total,
    price_note,
    rules_lines,
    usable_refusal,
)
from o2o.fulfilment import vouchers
from o2o.timeutil import CHINA_TZ, to_china, utcnow
from tests.voucher_support import a_deal, buy, deal_item, redeem, set_listing, statuses

# 2026-12-07 is a Monday.
MONDAY = date(2026, 12, 7)


def at(day: date, hhmm: str) -> datetime:
    h, m = map(int, hhmm.split(":"))
    return datetime(day.year, day.month, day.day, h, m, tzinfo=CHINA_TZ)


def rules(**kw: Any) -> DealRules:
    return DealRules.model_validate(kw)


# --- unit: the rules --------------------------------------------------------------------------


def test_weekdays_and_hours() -> None:
    lunch = rules(weekdays=[1, 2, 3, 4, 5], hours=[{"start": "11:00", "end": "14:00"}])
    assert usable_refusal(lunch, at(MONDAY, "11:00")) is None
    assert usable_refusal(lunch, at(MONDAY, "13:59")) is None
    assert usable_refusal(lunch, at(MONDAY, "14:00")) == "该团购仅限 11:00–14:00 使用，现在是 14:00"
    saturday = MONDAY + timedelta(days=5)
    assert usable_refusal(lunch, at(saturday, "12:00")) == "该团购仅限周一至周五使用，今天是周六"
    assert usable_refusal(rules(), at(saturday, "03:00")) is None  # no rules beyond the default
    assert usable_refusal(None, at(saturday, "03:00")) is None


def test_an_overnight_range_belongs_to_the_day_it_starts() -> None:
    late = rules(weekdays=[5], hours=[{"start": "22:00", "end": "02:00"}])
    friday, saturday = MONDAY + timedelta(days=4), MONDAY + timedelta(days=5)
    assert usable_refusal(late, at(friday, "23:30")) is None
    assert usable_refusal(late, at(saturday, "01:59")) is None  # Friday night, after midnight
    assert usable_refusal(late, at(saturday, "02:00")) is not None
    assert usable_refusal(late, at(saturday, "23:00")) == "该团购仅限周五使用，今天是周六"
    assert usable_refusal(late, at(friday, "21:59")) is not None


def test_excluded_dates_win_and_say_so() -> None:
    holiday = MONDAY + timedelta(days=2)
    r = rules(excluded_dates=[holiday.isoformat()], hours=[{"start": "00:00", "end": "24:00"}])
    assert usable_refusal(r, at(holiday, "12:00")) == (
        "该团购 2026-12-09 不可用（商家设定的不可用日期）"
    )
    assert usable_refusal(r, at(holiday + timedelta(days=1), "00:00")) is None


@pytest.mark.parametrize(
    "bad",
    [
        {"weekdays": []},
        {"weekdays": [0]},
        {"hours": [{"start": "25:00", "end": "26:00"}]},
        {"hours": [{"start": "24:00", "end": "01:00"}]},
        {"people_min": 4, "people_max": 2},
        {"booking": "maybe"},
        {"extra_charges": ["锅底\n另收"]},
    ],
)
def test_bad_rules_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        DealRules.model_validate(bad)


def test_rules_read_as_a_consumer_expects() -> None:
    r = rules(
        weekdays=[1, 2, 3, 4, 5],
        hours=[{"start": "11:00", "end": "14:00"}, {"start": "17:00", "end": "01:00"}],
        excluded_dates=["2026-12-25"],
        booking="advance",
        booking_note="请提前 1 天电话预约",
        people_min=2,
        people_max=4,
        extra_charges=["锅底另收 ¥20"],
    )
    assert dict(rules_lines(r)) == {
        "可用日期": "周一至周五",
        "可用时段": "11:00–14:00、17:00–次日01:00",
        "不可用日期": "2026-12-25",
        "预约": "需提前预约（请提前 1 天电话预约）",
        "适用人数": "2–4 人",
        "优惠同享": "不可与其他优惠同享",
        "额外收费": "锅底另收 ¥20",
    }
    items = [
        {"name": "鸳鸯锅底", "quantity": 1, "unit_price_fen": 4800},
        {"name": "肥牛", "quantity": 2, "unit_price_fen": 3800},
    ]
    assert items_total(items) == 12400
    assert price_note(items, 9800) == "单点合计 ¥124.00，团购价省 ¥26.00"


# --- API and redemption (both databases) ------------------------------------------------------

ITEMS = [
    {"name": "鸳鸯锅底", "quantity": 1, "unit_price_fen": 4800},
    {"name": "精品肥牛", "quantity": 2, "unit_price_fen": 3800},
]


def test_deal_contents_and_rules_through_the_api(api: Any, world: Any) -> None:
    body = {
        "kind": "service",
        "title": "双人火锅套餐",
        "category_id": world.category_id,
        "price_fen": 9800,
        "original_price_fen": 12400,
        "store_ids": world.a.store_ids,
        "valid_days": 30,
        "items": ITEMS,
        "rules": {
            "weekdays": [5, 1, 1],
            "hours": [{"start": "11:00", "end": "14:00"}],
            "excluded_dates": ["2026-12-25"],
            "extra_charges": ["锅底另收 ¥20"],
        },
    }
    owner = world.tokens["owner"]
    cheap = {**body, "items": [{"name": "锅底", "quantity": 1, "unit_price_fen": 100}]}
    r = api.post(f"/api/v1/merchants/{world.a.id}/listings", json=cheap, as_=owner)
    assert r.status_code == 422, r.text
    assert "低于团购价" in r.text
    r = api.post(f"/api/v1/merchants/{world.a.id}/listings", json=body, as_=owner)
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["items_total_fen"] == 12400
    assert d["items"][1] == {**ITEMS[1], "subtotal_fen": 7600}
    assert d["rules"]["weekdays"] == [1, 5]
    assert {"label": "可用日期", "text": "周一、周五"} in d["rules_text"]
    r = api.patch(f"/api/v1/listings/{d['id']}", json={"rules": None}, as_=owner)
    assert r.status_code == 200 and r.json()["rules"] is None and r.json()["rules_text"] == []
    r = api.patch(f"/api/v1/listings/{d['id']}", json={"price_fen": 20000}, as_=owner)
    assert r.status_code == 422  # the contents now add up to less than the price


def _around_now(offset_h: float, length_h: float) -> dict[str, str]:
    now = to_china(utcnow())
    start = now + timedelta(hours=offset_h)
    return {
        "start": start.strftime("%H:%M"),
        "end": (start + timedelta(hours=length_h)).strftime("%H:%M"),
    }


def test_redemption_refuses_outside_the_usable_hours_and_dates(api: Any, world: Any) -> None:
    deal = a_deal(world)
    bought = buy(api, world.tokens["consumer"], [deal_item(deal, 3)])
    today = to_china(utcnow()).date().isoformat()
    closed_now = {"weekdays": [1, 2, 3, 4, 5, 6, 7], "hours": [_around_now(2, 1)]}
    set_listing(world.db, deal.listing_id, deal_rules=closed_now, deal_items=ITEMS)

    preview = api.get(
        f"/api/v1/merchants/{world.a.id}/vouchers/{bought.codes[0]}", as_=world.tokens["clerk"]
    ).json()
    assert preview["unusable_reason"].startswith("该团购仅限 ")
    assert any(line["label"] == "可用时段" for line in preview["rules_text"])
    assert preview["items"][0]["name"] == "鸳鸯锅底"

    r = redeem(api, world, bought.codes[0])
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "deal_not_usable_now"
    assert r.json()["detail"].startswith("该团购仅限 ") and "现在是" in r.json()["detail"]

    set_listing(world.db, deal.listing_id, deal_rules={"excluded_dates": [today]})
    r = redeem(api, world, bought.codes[0])
    assert r.status_code == 409 and f"该团购 {today} 不可用" in r.json()["detail"]
    assert statuses(world.db, bought.codes) == ["unused"] * 3

    # Inside the rules (an hour either side of now, even across midnight): redeemed.
    set_listing(world.db, deal.listing_id, deal_rules={"hours": [_around_now(-1, 2)]})
    r = redeem(api, world, vouchers.format_code(bought.codes[0]))
    assert r.status_code == 200, r.text
    assert statuses(world.db, bought.codes)[0] == "redeemed"
