"""核销 in a real browser at 375 px: the demo clerk of 蜀香居 logs in, types an unused voucher
code with spaces, sees the preview, confirms, sees success; a second try says 已核销.
Screenshots at 375 px and 1280 px in test-artifacts/screenshots/."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from o2o.demo import CONSUMER, DEMO_PASSWORD
from o2o.fulfilment.vouchers import format_code
from tests.web.conftest import login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

CLERK_PHONE = "13600000001"  # clerk of 蜀香居重庆老火锅 (one store)
OWNER_PHONE = "13700000001"  # owner of 蜀香居重庆老火锅
HOTPOT = "蜀香居"


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def _token(client: httpx.Client, phone: str, password: str) -> str:
    r = client.post("/api/v1/auth/token", json={"phone": phone, "password": password})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def _unused_codes(client: httpx.Client, headers: dict[str, str]) -> tuple[list[str], int | None]:
    """Unused 蜀香居 deal vouchers of the demo consumer (no booked slot), and a deal to buy."""
    r = client.get("/api/v1/orders", params={"kind": "service", "limit": 50}, headers=headers)
    assert r.status_code == 200, r.text
    codes: list[str] = []
    listing_id = None
    for order in r.json()["items"]:
        if HOTPOT not in order["merchant_name"]:
            continue
        for v in order["vouchers"]:
            if v["slot_id"] is None and v["refund_anytime"]:
                listing_id = listing_id or v["listing_id"]
                if v["status"] == "unused":
                    codes.append(v["code"])
    return codes, listing_id


def unused_hotpot_code(base: str) -> str:
    """An unused voucher of 蜀香居 for the demo consumer: one of the demo's, or (all used up by
    earlier tests) a new one bought through checkout and the sandbox cashier."""
    with httpx.Client(base_url=base, timeout=15) as client:
        headers = {"Authorization": f"Bearer {_token(client, CONSUMER[0], CONSUMER[1])}"}
        codes, listing_id = _unused_codes(client, headers)
        if codes:
            return codes[0]
        assert listing_id is not None, "the demo has no 蜀香居 deal order"
        r = client.post(
            "/api/v1/checkout",
            json={"items": [{"listing_id": listing_id, "quantity": 1}]},
            headers=headers,
        )
        assert r.status_code == 201, r.text
        payment_no = r.json()["payment"]["payment_no"]
        r = client.post(
            f"/api/v1/payments/{payment_no}/pay", json={"provider": "sandbox"}, headers=headers
        )
        assert r.status_code == 200, r.text
        r = client.post(
            f"/sandbox/cashier/{payment_no}", json={"result": "success"}, headers=headers
        )
        assert r.status_code == 200, r.text
        codes, _ = _unused_codes(client, headers)
        assert codes, "paid, but no voucher was issued"
        return codes[0]


def test_clerk_redeems_a_code_on_the_phone(phone: Any, desktop: Any, live_server: str) -> None:
    code = unused_hotpot_code(live_server)
    login(phone, CLERK_PHONE, DEMO_PASSWORD, "/console")
    phone.get_by_role("link", name="核销").click()
    expect(phone.get_by_role("heading", name="券码核销")).to_be_visible()
    # The clerk works at one store: it is chosen already.
    store = phone.get_by_label("核销门店")
    assert store.locator("option").count() == 1
    screenshot(phone, "console-redeem")

    phone.get_by_label("券码").fill(format_code(code))  # typed with spaces
    phone.get_by_role("button", name="查询券码").click()
    preview = phone.get_by_test_id("voucher-preview")
    expect(preview).to_be_visible()
    expect(preview).to_contain_text(format_code(code))
    expect(preview.get_by_test_id("voucher-status")).to_have_text("未使用")
    expect(preview).to_contain_text(re.compile(r"139\*{4}\d{4}"))  # the holder's masked phone
    screenshot(phone, "console-redeem-preview")

    phone.get_by_role("button", name=re.compile("^确认核销")).click()
    expect(phone.get_by_role("status")).to_contain_text("核销成功")
    screenshot(phone, "console-redeem-done")

    # The same code again: refused, with when and where.
    phone.get_by_label("券码").fill(code)
    phone.get_by_role("button", name="查询券码").click()
    refusal = phone.locator("[data-refusal=voucher_already_redeemed]")
    expect(refusal).to_contain_text(re.compile(r"该券码已于 .+ 在「.+」核销"))
    expect(phone.get_by_role("button", name=re.compile("^确认核销"))).to_have_count(0)
    screenshot(phone, "console-redeem-refused")

    # Unknown code: 未找到券码.
    phone.get_by_label("券码").fill("0000 0000 0001")
    phone.get_by_role("button", name="查询券码").click()
    expect(phone.locator("[data-refusal=voucher_not_found]")).to_contain_text("未找到券码")

    # The owner's dashboard counts it; screenshots of the console pages at 1280 px.
    login(desktop, OWNER_PHONE, DEMO_PASSWORD, "/console")
    cards = desktop.locator(".stats")
    expect(cards).to_contain_text("今日核销")
    expect(cards).to_contain_text("今日成交额")
    screenshot(desktop, "console-dashboard")
    desktop.get_by_role("link", name="核销").click()
    desktop.get_by_label("券码").fill(code)
    desktop.get_by_role("button", name="查询券码").click()
    # No store chosen yet (the owner has two): the preview still tells it is used already.
    expect(desktop.get_by_test_id("voucher-preview")).to_be_visible()
    expect(desktop.locator("[data-refusal=voucher_already_redeemed]")).to_be_visible()
    desktop.get_by_label("核销门店").select_option(label="南山海岸城店")
    screenshot(desktop, "console-redeem-preview")
    desktop.get_by_role("link", name="订单").click()
    expect(desktop.get_by_test_id("orders")).to_be_visible()
    screenshot(desktop, "console-orders")
    desktop.get_by_test_id("orders").get_by_role("link").first.click()
    expect(desktop.get_by_role("heading", name=re.compile("^订单 "))).to_be_visible()
    screenshot(desktop, "console-order-detail")
    phone.get_by_role("link", name="订单").click()
    expect(phone.get_by_test_id("orders")).to_be_visible()
    screenshot(phone, "console-orders")
