"""The operator's 报表 and 渠道 pages in a real browser (Debian's Chromium through Playwright)
against ``o2o serve`` with the demo data, at 375 px and 1280 px, with screenshots in
test-artifacts/screenshots/ (``screenshot`` also fails on sideways scrolling)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from o2o.demo import OPERATOR
from tests.web.conftest import login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def _check_reports(page: Any) -> None:
    expect(page.get_by_role("heading", name="报表", exact=True)).to_be_visible()
    funnel = page.get_by_test_id("channel-funnel")
    daily = page.get_by_test_id("daily-gmv")
    models = page.get_by_test_id("models")
    for section in (funnel, daily, models):
        expect(section.locator("svg[role=img]").first).to_be_visible()
    # (a) one funnel per channel with traffic, the demo's WeChat entry among them.
    expect(funnel.get_by_role("heading", name="渠道转化漏斗")).to_be_visible()
    expect(funnel.locator('figure[data-channel="wechat-home"] svg')).to_have_count(1)
    assert funnel.locator("svg rect[data-value]").count() >= 10
    expect(funnel.locator("svg text", has_text=re.compile("访客→结算")).first).to_be_attached()
    # (b) columns per day, O2O and 电商 in the legend.
    assert daily.locator("svg rect[data-value]").count() >= 2 * 30
    expect(daily.locator("svg text", has_text="O2O（到店）")).to_have_count(1)
    expect(daily.locator("svg text", has_text="电商（商品）")).to_have_count(1)
    # (c) the category comparison with the service's reading.
    expect(models.locator("svg text", has_text="O2O").first).to_be_attached()
    expect(models.get_by_test_id("reading-total")).to_contain_text("全平台：")
    expect(models.get_by_role("link", name="导出 CSV")).to_have_attribute(
        "href", re.compile(r"^/admin/reports/models\.csv\?from=")
    )


def test_operator_opens_reports_with_charts_at_both_widths(desktop: Any, phone: Any) -> None:
    login(desktop, OPERATOR[0], OPERATOR[1], "/admin")
    desktop.get_by_role("link", name="报表", exact=True).click()
    _check_reports(desktop)
    screenshot(desktop, "admin-reports")

    # A bad range: the Chinese error next to the field, no charts, no 500.
    desktop.get_by_label("开始日期").fill("2026-03-05")
    desktop.get_by_label("结束日期").fill("2026-03-01")
    desktop.get_by_role("button", name="查看").click()
    expect(desktop.locator("#f-date_from-error")).to_have_text("开始日期不能晚于结束日期")
    expect(desktop.get_by_test_id("channel-funnel")).to_have_count(0)

    login(phone, OPERATOR[0], OPERATOR[1], "/admin/reports")
    _check_reports(phone)
    screenshot(phone, "admin-reports")


def test_operator_channels_page_at_both_widths(desktop: Any, phone: Any) -> None:
    login(desktop, OPERATOR[0], OPERATOR[1], "/admin/channels")
    row = desktop.locator('tr[data-channel="wechat-home"]')
    expect(row.get_by_test_id("promo-link")).to_have_text(re.compile(r"\?ch=wechat-home$"))
    qr = row.get_by_role("img", name="微信首页入口 推广二维码")
    expect(qr).to_be_visible()
    assert qr.evaluate("img => img.naturalWidth") > 0  # the SVG route answered with an image
    screenshot(desktop, "admin-channels")

    # A bad code: the Chinese error next to the field.
    form = desktop.get_by_test_id("channel-form")
    form.get_by_label("渠道编码").fill("坏 编码")
    form.get_by_label("渠道名称").fill("电梯广告")
    form.get_by_role("button", name="创建渠道").click()
    expect(desktop.locator("#f-code-error")).to_contain_text("渠道编码只能包含")

    login(phone, OPERATOR[0], OPERATOR[1], "/admin/channels")
    expect(phone.locator('tr[data-channel="wechat-home"]')).to_be_visible()
    screenshot(phone, "admin-channels")
