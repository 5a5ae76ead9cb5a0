"""One journey at 390 px in a real browser: the demo owner of 蜀香居 builds a deal with contents
and rules, uploads a photo (a renamed PDF is refused with the reason), publishes it; a consumer
sees the gallery, 套餐内容 and the rules on the listing page, then the store page (open now,
导航, the deal with its cover). Screenshots go to the test's tmp dir."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from o2o.demo import DEMO_PASSWORD
from tests import media_support as pics
from tests.web.conftest import _context, login

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

OWNER_PHONE = "13700000001"  # owner of 蜀香居重庆老火锅 (two stores)
WIDTH = 390


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def shot(page: Any, folder: Path, name: str) -> Path:
    path = folder / f"{name}-{WIDTH}.png"
    page.screenshot(path=str(path), full_page=True)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {WIDTH}px"
    return path


def test_merchant_builds_a_deal_with_a_photo_and_the_consumer_sees_it(
    browser: Any, live_server: str, tmp_path: Path
) -> None:
    title = f"鸳鸯锅双人午市套餐 {time.time_ns() % 10**6}"
    context = _context(browser, live_server, WIDTH)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        login(page, OWNER_PHONE, DEMO_PASSWORD, "/console")
        page.get_by_role("link", name="商品", exact=True).click()
        page.get_by_role("link", name="新建团购").click()
        page.get_by_label("标题").fill(title)
        page.get_by_label("类目").select_option(index=1)
        page.get_by_label("团购价（元）").fill("98")
        page.get_by_label("原价（元）").fill("158")
        for box in page.locator("input[name=store_ids]").all():
            box.check()
        page.get_by_label("有效天数").fill("30")
        rows = page.get_by_test_id("item-rows")
        for i, (name, qty, price) in enumerate([("鸳鸯锅底", "1", "48"), ("精品肥牛", "2", "38")]):
            rows.locator("input[name=item_name]").nth(i).fill(name)
            rows.locator("input[name=item_qty]").nth(i).fill(qty)
            rows.locator("input[name=item_price]").nth(i).fill(price)
        rules = page.get_by_test_id("deal-rules")
        rules.get_by_label("周六").uncheck()
        rules.get_by_label("周日").uncheck()
        rules.get_by_label("可用时段一 开始").fill("10:00")
        rules.get_by_label("可用时段一 结束").fill("22:00")
        rules.get_by_label("额外收费").fill("锅底另收 ¥20")
        shot(page, tmp_path, "console-deal-terms")
        page.get_by_role("button", name="创建团购").click()
        expect(page.get_by_role("status")).to_contain_text("团购已创建")

        photos = page.get_by_test_id("photos")
        photos.get_by_label("上传图片").set_input_files(
            {"name": "menu.jpg", "mimeType": "image/jpeg", "buffer": pics.pdf_named_jpg()}
        )
        photos.get_by_role("button", name="上传", exact=True).click()
        expect(page.get_by_role("alert").first).to_contain_text("图片未保存：文件不是可识别的图片")
        page.get_by_test_id("photos").get_by_label("上传图片").set_input_files(
            {"name": "dish.jpg", "mimeType": "image/jpeg", "buffer": pics.jpeg_with_gps(1200, 900)}
        )
        page.get_by_test_id("photos").get_by_role("button", name="上传", exact=True).click()
        expect(page.get_by_role("status")).to_contain_text("图片已上传")
        expect(page.get_by_test_id("photos").locator("img")).to_have_count(1)
        page.get_by_role("button", name="上架").click()
        expect(page.get_by_test_id("listing-status")).to_have_text("已上架")
        listing_id = page.url.split("/listings/")[1].split("/")[0]
        shot(page, tmp_path, "console-deal-photos")
        context.clear_cookies()

        # The consumer, on the same phone.
        page.goto(f"/l/{listing_id}")
        cover = page.get_by_test_id("gallery").locator("img").first
        expect(cover).to_be_visible()
        assert page.evaluate("(img) => img.naturalWidth", cover.element_handle()) > 0
        assert "-480.jpg" in (cover.get_attribute("src") or "")
        items = page.get_by_test_id("deal-items")
        expect(items).to_contain_text("精品肥牛")
        expect(page.get_by_test_id("items-total")).to_contain_text("单点合计 ¥124.00")
        expect(page.get_by_test_id("rule-可用日期")).to_have_text("周一至周五")
        expect(page.get_by_test_id("rule-可用时段")).to_have_text("10:00–22:00")
        expect(page.get_by_test_id("rule-额外收费")).to_have_text("锅底另收 ¥20")
        shot(page, tmp_path, "listing")

        page.get_by_test_id("store-link").first.click()
        expect(page.get_by_test_id("store")).to_be_visible()
        expect(page.get_by_test_id("open-state")).to_have_text(re.compile("营业中|即将打烊|已打烊"))
        assert (page.get_by_test_id("navigate").get_attribute("href") or "").startswith("geo:")
        expect(page.get_by_test_id("store-deals")).to_contain_text(title)
        expect(page.get_by_test_id("store-hours")).to_contain_text("周五")
        shot(page, tmp_path, "store")
        print(f"\nscreenshots: {tmp_path}")
    finally:
        context.close()
