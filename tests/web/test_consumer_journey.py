"""The consumer's O2O journey in a real browser (Debian's Chromium through Playwright) against
``o2o serve`` with the demo data: log in, search 火锅 near 南山, open 蜀香居's deal, buy it, pay in
the sandbox cashier, see the order paid with the voucher code and its QR. Screenshots at 375 px
and 1280 px go to test-artifacts/screenshots/."""

from __future__ import annotations

import re
from typing import Any

import pytest

from o2o.demo import CONSUMER
from tests.web.conftest import login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

DEAL = "重庆老火锅4人套餐"  # 蜀香居's deal with no per-user limit (demo used up 双人套餐's)


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def search_hotpot(page: Any) -> None:
    page.goto("/")
    expect(page.get_by_test_id("current-location")).to_contain_text("南山")
    page.goto("/search")
    page.get_by_label("搜索关键词").fill("火锅")
    page.get_by_role("button", name="搜索").click()
    expect(page.get_by_test_id("result").first).to_be_visible()


def open_deal(page: Any) -> None:
    result = page.get_by_test_id("result").filter(has_text="蜀香居").filter(has_text=DEAL)
    expect(result).to_have_count(1)
    expect(result).to_contain_text("¥368.00")
    expect(result).to_contain_text("¥568.00")
    result.get_by_role("link").click()
    expect(page.get_by_role("heading", name=DEAL)).to_be_visible()
    expect(page.get_by_text("随时退").first).to_be_visible()
    expect(page.locator('a[href^="https://uri.amap.com/marker"]').first).to_be_visible()


def test_consumer_buys_a_deal_and_opens_the_voucher(phone: Any) -> None:
    login(phone, CONSUMER[0], CONSUMER[1])
    search_hotpot(phone)
    screenshot(phone, "consumer-search")
    open_deal(phone)
    screenshot(phone, "consumer-listing")

    phone.get_by_role("button", name="立即购买").click()
    expect(phone.get_by_role("heading", name="确认订单")).to_be_visible()
    expect(phone.get_by_test_id("total")).to_have_text("¥368.00")
    screenshot(phone, "consumer-checkout")
    phone.get_by_role("button", name="提交订单并支付").click()

    # The sandbox cashier (what a consumer sees instead of WeChat Pay).
    phone.wait_for_load_state()
    if "/sandbox/cashier/" not in phone.url:
        try:
            phone.wait_for_url(re.compile(r"/sandbox/cashier/"), timeout=30_000)
        except Exception as exc:
            raise AssertionError(f"{phone.url}: {phone.inner_text('body')[:500]}") from exc
    expect(phone.get_by_text("¥368.00")).to_be_visible()
    phone.get_by_role("button", name="支付成功").click()
    expect(phone.get_by_text("已支付")).to_be_visible()  # the cashier's payment status

    phone.goto("/orders")
    card = phone.locator(".order-card").filter(has_text=DEAL).first
    expect(card.get_by_test_id("order-status")).to_have_text("待使用")
    screenshot(phone, "consumer-orders")
    card.get_by_role("link").click()
    expect(phone.get_by_test_id("order-status")).to_have_text("待使用")
    voucher = phone.get_by_test_id("voucher").first
    expect(voucher.get_by_test_id("voucher-code")).to_have_text(re.compile(r"^\d{4}( \d{4})+$"))
    qr = voucher.locator("img.voucher-qr")
    expect(qr).to_be_visible()
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0"), "the QR did not load"
    screenshot(phone, "consumer-voucher")


def test_consumer_pages_at_desktop_width(desktop: Any) -> None:
    login(desktop, CONSUMER[0], CONSUMER[1])
    search_hotpot(desktop)
    screenshot(desktop, "consumer-search")
    open_deal(desktop)
    screenshot(desktop, "consumer-listing")
    desktop.get_by_role("button", name="立即购买").click()
    expect(desktop.get_by_role("heading", name="确认订单")).to_be_visible()
    screenshot(desktop, "consumer-checkout")
    desktop.goto("/orders")
    expect(desktop.get_by_role("heading", name="我的订单")).to_be_visible()
    screenshot(desktop, "consumer-orders")
