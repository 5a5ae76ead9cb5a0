"""结算 and 对账 in a real browser (Debian's Chromium through Playwright) against ``o2o serve``
with the demo data: the merchant owner finds the demo statements (one paid with its bank
reference, one 待打款), the operator marks the waiting one paid; at 375 px and 1280 px with
screenshots (``screenshot`` also fails on sideways scrolling)."""

from __future__ import annotations

from typing import Any

import pytest

from o2o.demo import DEMO_PASSWORD, MERCHANTS, OPERATOR
from tests.web.conftest import login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

HOTPOT = MERCHANTS[0]  # 蜀香居: its demo statements


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def test_owner_sees_demo_statements_and_operator_pays_one(desktop: Any, phone: Any) -> None:
    # The owner, on a phone: 结算 tab → list with the balance → a paid statement's lines.
    login(phone, HOTPOT.owner_phone, DEMO_PASSWORD, "/console")
    phone.get_by_role("link", name="结算", exact=True).click()
    expect(phone.get_by_role("heading", name="结算", exact=True)).to_be_visible()
    expect(phone.get_by_test_id("payable-balance")).to_contain_text("¥")
    table = phone.get_by_test_id("statements")
    expect(table.get_by_text("已打款").first).to_be_visible()
    expect(table.get_by_text("待打款").first).to_be_visible()
    screenshot(phone, "console-settlements")
    paid = phone.locator("tr", has_text="已打款").get_by_role("link").first
    paid.click()
    expect(phone.get_by_test_id("bank-reference")).to_contain_text("CMB")
    assert phone.get_by_test_id("lines").locator("tbody tr").count() >= 1
    screenshot(phone, "console-settlement")

    # The operator, on a desktop: the waiting statement of 蜀香居 → 标记已打款.
    login(desktop, OPERATOR[0], OPERATOR[1], "/admin")
    desktop.get_by_role("link", name="结算", exact=True).click()
    desktop.get_by_label("状态").select_option("ready")
    desktop.get_by_label("商户").select_option(label=HOTPOT.name)
    desktop.get_by_role("button", name="筛选").click()
    screenshot(desktop, "admin-settlements")
    desktop.get_by_test_id("statements").locator("tbody tr a").first.click()
    desktop.get_by_role("button", name="标记已打款").click()
    expect(desktop.locator("#f-bank_reference-error")).to_have_text("请填写银行流水号（1–100 字）")
    desktop.get_by_label("银行流水号").fill("CMB-BROWSER-0001")
    desktop.get_by_role("button", name="标记已打款").click()
    expect(desktop.get_by_test_id("statement-status")).to_have_text("已打款")
    expect(desktop.get_by_test_id("bank-reference")).to_have_text("CMB-BROWSER-0001")
    screenshot(desktop, "admin-settlement")

    # 对账: a bad bill is a Chinese error next to the field.
    desktop.get_by_role("link", name="对账", exact=True).click()
    expect(desktop.get_by_label("账单内容")).to_be_visible()
    desktop.get_by_label("账单内容").fill("不是账单")
    desktop.get_by_role("button", name="开始对账").click()
    expect(desktop.locator("#f-bill-error")).to_contain_text("无法解析微信支付交易账单")
    screenshot(desktop, "admin-reconciliation")
    # The same operator pages at phone width.
    desktop.set_viewport_size({"width": 375, "height": 812})
    desktop.goto("/admin/reconciliation")
    expect(desktop.get_by_role("heading", name="微信支付对账")).to_be_visible()
    screenshot(desktop, "admin-reconciliation")
    desktop.goto("/admin/settlements")
    screenshot(desktop, "admin-settlements")
    desktop.get_by_test_id("statements").locator("tbody tr a").first.click()
    screenshot(desktop, "admin-settlement")
