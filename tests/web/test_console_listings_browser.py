"""商品 and 场次 in a real browser: the demo owner of 蜀香居, on a 375 px phone, creates a deal that
needs booking (需预约), creates a week of hourly slots, and publishes it; the listings and slot
pages are screenshotted at 375 px and 1280 px (and must not scroll sideways)."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import pytest

from o2o.demo import DEMO_PASSWORD
from o2o.timeutil import to_china, utcnow
from tests.web.conftest import login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

OWNER_PHONE = "13700000001"  # owner of 蜀香居重庆老火锅 (two stores)


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def test_owner_creates_a_slot_deal_on_the_phone_and_publishes_it(phone: Any, desktop: Any) -> None:
    title = f"周末双人火锅预约套餐 {time.time_ns() % 10**6}"
    login(phone, OWNER_PHONE, DEMO_PASSWORD, "/console")
    phone.get_by_role("link", name="商品", exact=True).click()
    expect(phone.get_by_role("heading", name="商品")).to_be_visible()
    screenshot(phone, "console-listings")

    phone.get_by_role("link", name="新建团购").click()
    expect(phone.get_by_role("heading", name="新建团购")).to_be_visible()
    phone.get_by_label("标题").fill(title)
    phone.get_by_label("类目").select_option(index=1)
    phone.get_by_label("团购价（元）").fill("98.5")
    phone.get_by_label("原价（元）").fill("158")
    for box in phone.locator("input[name=store_ids]").all():
        box.check()
    phone.get_by_label("有效天数").fill("30")
    phone.get_by_label("需预约（顾客购买时选择场次）").check()
    screenshot(phone, "console-deal-form")
    phone.get_by_role("button", name="创建团购").click()

    # Straight to the slot calendar of the new deal.
    expect(phone.get_by_role("heading", name="场次日历")).to_be_visible()
    expect(phone.get_by_role("status")).to_contain_text("团购已创建")
    tomorrow = (to_china(utcnow()) + timedelta(days=1)).date()
    bulk = phone.locator("form", has=phone.get_by_role("button", name="创建场次"))
    bulk.get_by_label("第一天").fill(tomorrow.isoformat())
    bulk.get_by_label("天数").fill("7")
    bulk.get_by_label("每天开始").select_option("11")
    bulk.get_by_label("每天结束").select_option("14")
    bulk.get_by_label("每场名额").fill("4")
    bulk.get_by_role("button", name="创建场次").click()
    expect(phone.get_by_role("status")).to_contain_text("已创建 21 个场次")
    week = phone.get_by_test_id("slot-week")
    expect(week.get_by_test_id("slot-remaining").first).to_have_text("剩余 4/4")
    expect(week).to_contain_text("11:00–12:00")
    screenshot(phone, "console-slots")

    phone.get_by_role("button", name="上架").click()
    expect(phone.get_by_role("status")).to_contain_text("已上架")
    expect(phone.get_by_test_id("listing-status")).to_have_text("已上架")
    phone.get_by_role("link", name="商品", exact=True).click()
    row = phone.locator("tr", has_text=title)
    expect(row.get_by_test_id("listing-status")).to_have_text("已上架")
    expect(row).to_contain_text("¥98.50")
    screenshot(phone, "console-listings-after")

    # The same pages on a desktop screen.
    login(desktop, OWNER_PHONE, DEMO_PASSWORD, "/console")
    desktop.get_by_role("link", name="商品", exact=True).click()
    expect(desktop.get_by_test_id("listings")).to_contain_text(title)
    screenshot(desktop, "console-listings")
    desktop.locator("tr", has_text=title).get_by_role("link", name="场次").click()
    expect(desktop.get_by_role("heading", name="场次日历")).to_be_visible()
    desktop.get_by_label("从哪天起").fill(tomorrow.isoformat())
    desktop.get_by_role("button", name="查看").click()
    expect(desktop.get_by_test_id("slot-remaining")).to_have_count(21)
    screenshot(desktop, "console-slots")
    desktop.get_by_role("link", name=re.compile("^← 返回")).click()
    expect(desktop.get_by_role("heading", name="编辑团购")).to_be_visible()
    expect(desktop.get_by_label("团购价（元）")).to_have_value("98.50")
    screenshot(desktop, "console-deal-form")
