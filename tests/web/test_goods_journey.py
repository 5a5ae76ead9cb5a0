"""The goods journey in a real browser (Debian's Chromium through Playwright) against ``o2o serve``
with the demo data: the consumer puts two books/gadgets of two merchants in the cart, checks the
cart out (address form, one payment in the sandbox cashier); each merchant's owner ships in the
console with a tracking number; the carrier reports tracking events (signed notification); the
consumer sees the timeline, confirms receipt, writes a review, and the review shows on the
listing page. Screenshots of the cart and the goods order at 375 px and 1280 px."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import pytest

from o2o.config import Settings
from o2o.demo import CONSUMER, DEMO_PASSWORD
from o2o.shipping import carriers
from tests.web.conftest import login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

# (search keyword, listing title, owner phone) — two demo merchants that sell goods.
BOOK = ("深圳传", "《深圳传：未来的世界之城》", "13700000010")  # 深城书房, ¥58.00
CHARGER = ("充电宝", "小米 20000mAh 充电宝 22.5W快充", "13700000011")  # 华强北数码优品, ¥129.00
LIVE_SECRET = "web-test-secret-" + "x" * 40  # conftest.live_server's O2O_SECRET_KEY


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def open_listing(page: Any, keyword: str, title: str) -> None:
    page.goto(f"/search?kind=goods&q={keyword}")
    result = page.get_by_test_id("result").filter(has_text=title)
    expect(result.first).to_be_visible()
    result.first.get_by_role("link").first.click()
    expect(page.get_by_role("heading", name=title)).to_be_visible()


def add_to_cart(page: Any, keyword: str, title: str) -> None:
    open_listing(page, keyword, title)
    page.get_by_role("button", name="加入购物车").click()
    expect(page.get_by_role("status")).to_contain_text("已加入购物车")


def fill_address_if_empty(page: Any) -> None:
    address = {
        "收货人": "张小凡",
        "手机号": "13900000001",
        "省份": "广东省",
        "城市": "深圳市",
        "区县": "南山区",
        "详细地址": "科技园科苑路15号",
    }
    for label, value in address.items():
        box = page.get_by_label(label)
        if not box.input_value():
            box.fill(value)


def pay_in_sandbox(page: Any, amount: str) -> None:
    page.wait_for_load_state()
    if "/sandbox/cashier/" not in page.url:
        page.wait_for_url(re.compile(r"/sandbox/cashier/"), timeout=30_000)
    expect(page.get_by_text(amount)).to_be_visible()
    page.get_by_role("button", name="支付成功").click()
    expect(page.get_by_text("已支付")).to_be_visible()  # the cashier's payment status


def order_no_of(page: Any, title: str) -> str:
    page.goto("/orders")
    card = page.locator(".order-card").filter(has_text=title).first
    card.get_by_role("link").click()
    page.wait_for_url(re.compile(r"/orders/[A-Za-z0-9]+$"))
    return page.url.rsplit("/", 1)[1]


def ship_in_console(page: Any, owner_phone: str, order_no: str) -> str:
    page.context.clear_cookies()  # sign the previous person out
    login(page, owner_phone, DEMO_PASSWORD, "/console")
    match = re.search(r"/console/m/(\d+)", page.url)
    assert match, page.url
    page.goto(f"/console/m/{match.group(1)}/orders/{order_no}")
    number = f"SF{time.time_ns() % 10**13:013d}"
    page.get_by_label("快递公司").select_option(label="顺丰速运")
    page.get_by_label("运单号").fill(number)
    page.get_by_role("button", name="确认发货").click()
    expect(page.get_by_role("status")).to_contain_text("已发货")
    return number


def carrier_reports(base: str, tracking_no: str) -> None:
    """The carrier's signed push (what SF's servers would send) with two events."""
    settings = Settings(
        database_url="sqlite://", secret_key=LIVE_SECRET, demo=False, sandbox_payments=True
    )
    secret = carriers.carrier_secret(settings, "SF", environ={})
    now = int(time.time())
    body = json.dumps(
        {
            "tracking_no": tracking_no,
            "events": [
                {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now)),
                    "status": "collected",
                    "description": "快递员已揽件",
                    "location": "深圳福田",
                },
                {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(now + 60)),
                    "status": "in_transit",
                    "description": "快件已到达深圳南山集散中心",
                    "location": "深圳南山",
                },
            ],
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Logistics-Timestamp": str(now),
        "X-Logistics-Signature": carriers.sign(secret, now, body),
    }
    r = httpx.post(f"{base}/api/v1/logistics/notify/SF", content=body, headers=headers)
    assert r.status_code == 200, r.text


def test_goods_journey_cart_ship_receive_review(phone: Any, desktop: Any, live_server: str) -> None:
    login(phone, CONSUMER[0], CONSUMER[1])
    add_to_cart(phone, *BOOK[:2])
    add_to_cart(phone, *CHARGER[:2])

    phone.get_by_role("link", name="购物车").click()
    expect(phone.get_by_role("heading", name="购物车")).to_be_visible()
    expect(phone.get_by_test_id("cart-group")).to_have_count(2)
    expect(phone.get_by_test_id("cart-total")).to_have_text("¥187.00")
    screenshot(phone, "consumer-cart")

    phone.get_by_role("link", name="去结算").click()
    expect(phone.get_by_role("heading", name="确认订单")).to_be_visible()
    fill_address_if_empty(phone)
    expect(phone.get_by_test_id("total")).to_have_text("¥187.00")
    screenshot(phone, "consumer-cart-checkout")
    phone.get_by_role("button", name="提交订单并支付").click()
    pay_in_sandbox(phone, "¥187.00")

    book_order = order_no_of(phone, BOOK[1])
    charger_order = order_no_of(phone, CHARGER[1])
    assert book_order != charger_order  # one order per merchant, one payment
    expect(phone.get_by_test_id("order-status")).to_have_text("待发货")

    # Each merchant ships its own order in the console; SF then reports the book's parcel.
    number = ship_in_console(desktop, BOOK[2], book_order)
    ship_in_console(desktop, CHARGER[2], charger_order)
    carrier_reports(live_server, number)

    phone.goto(f"/orders/{book_order}")
    expect(phone.get_by_test_id("order-status")).to_have_text("待收货")
    parcel = phone.get_by_test_id("parcel")
    expect(parcel).to_contain_text("顺丰速运")
    expect(parcel.get_by_test_id("tracking-no")).to_have_text(number)
    events = parcel.get_by_test_id("tracking-event")
    expect(events).to_have_count(3)
    expect(events.first).to_contain_text("快件已到达深圳南山集散中心")  # newest first
    expect(events.last).to_contain_text("商家已发货")
    screenshot(phone, "consumer-goods-order-shipped")

    phone.get_by_role("button", name="确认收货").click()  # the confirm dialog is accepted
    expect(phone.get_by_role("status")).to_contain_text("已确认收货")
    expect(phone.get_by_test_id("order-status")).to_have_text("已完成")
    expect(phone.get_by_role("heading", name="申请售后")).to_be_visible()

    form = phone.get_by_role("form", name=re.compile("评价"))
    form.get_by_role("button", name="发布评价").click()  # no stars chosen: a field error
    expect(phone.locator("[data-field-error=rating]")).to_have_text("请选择 1–5 星评分")
    form = phone.get_by_role("form", name=re.compile("评价"))
    form.get_by_label("5 星 非常满意").check()
    form.get_by_label("评价内容").fill("正版图书，顺丰两天就到了，包装完好")
    form.get_by_role("button", name="发布评价").click()
    expect(phone.get_by_role("status")).to_contain_text("评价已发布")
    expect(phone.get_by_test_id("my-review")).to_contain_text("顺丰两天就到了")
    screenshot(phone, "consumer-goods-order")

    open_listing(phone, *BOOK[:2])
    reviews = phone.get_by_test_id("listing-reviews")
    expect(reviews.get_by_test_id("review").first).to_contain_text("顺丰两天就到了")
    expect(reviews.get_by_test_id("rating-summary")).to_contain_text("条")
    screenshot(phone, "consumer-listing-reviews")

    # The same pages at desktop width.
    desktop.context.clear_cookies()
    login(desktop, CONSUMER[0], CONSUMER[1])
    add_to_cart(desktop, *BOOK[:2])
    desktop.goto("/cart")
    expect(desktop.get_by_test_id("cart-line")).to_have_count(1)
    screenshot(desktop, "consumer-cart")
    desktop.goto(f"/orders/{book_order}")
    expect(desktop.get_by_test_id("my-review")).to_be_visible()
    screenshot(desktop, "consumer-goods-order")
