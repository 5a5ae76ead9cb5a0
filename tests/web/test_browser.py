"""The pages in a real browser (Debian's Chromium through Playwright) against ``o2o serve`` with
the demo data: what an operator, a new merchant and a clerk do by clicking, at 375 px and
1280 px, with screenshots in test-artifacts/screenshots/."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from o2o.demo import DEMO_PASSWORD, OPERATOR, PENDING_APPLICATION
from tests.web.conftest import csrf_from, login, new_phone, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

CLERK_PHONE = "13600000001"  # clerk of 蜀香居重庆老火锅, 南山海岸城店 only
OWNER_PHONE = "13700000001"  # owner of 蜀香居重庆老火锅


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def register(page: Any, name: str) -> str:
    phone_number = new_phone()
    page.goto("/register")
    page.get_by_label("手机号").fill(phone_number)
    page.get_by_label("昵称").fill(name)
    page.get_by_label(re.compile("^密码")).fill("secret-pass-1")
    page.get_by_label("确认密码").fill("secret-pass-1")
    page.get_by_role("button", name="注册并登录").click()
    expect(page.get_by_role("status")).to_contain_text("注册成功")
    return phone_number


def apply_as_merchant(page: Any, name: str) -> None:
    page.goto("/console")
    expect(page.get_by_text("您还没有商户")).to_be_visible()
    page.get_by_role("link", name="申请商户入驻").click()
    page.get_by_label("商户名称").fill(name)
    page.get_by_label("经营类目").select_option(label="美食 / 小吃快餐")
    page.get_by_label("营业执照号").fill("91440300MA5TEST99")
    page.get_by_label("商户简介").fill("深夜食堂，炭火烤串")
    page.get_by_role("button", name="提交申请").click()
    expect(page.get_by_role("status")).to_contain_text("入驻申请已提交")


def test_operator_approves_the_pending_demo_application(desktop: Any, phone: Any) -> None:
    login(desktop, OPERATOR[0], OPERATOR[1], "/admin")
    expect(desktop.get_by_role("heading", name=re.compile("商户审核"))).to_be_visible()
    card = desktop.locator(f'[data-testid=application][data-merchant="{PENDING_APPLICATION.name}"]')
    expect(card).to_be_visible()
    screenshot(desktop, "admin-applications")
    card.get_by_role("button", name="通过").click()
    expect(desktop.get_by_role("status")).to_contain_text(f"已通过「{PENDING_APPLICATION.name}」")
    expect(card).to_have_count(0)

    desktop.get_by_role("link", name="商户", exact=True).click()
    row = desktop.locator(f'tr[data-merchant="{PENDING_APPLICATION.name}"]')
    expect(row).to_contain_text("已通过")
    screenshot(desktop, "admin-merchants")

    # The applicant now sees an approved merchant and may create stores.
    login(phone, PENDING_APPLICATION.owner_phone, DEMO_PASSWORD, "/console")
    expect(phone.get_by_test_id("merchant-status")).to_have_text("已通过")
    phone.get_by_role("link", name="门店", exact=True).click()
    expect(phone.get_by_role("link", name="新建门店")).to_be_visible()


def test_new_user_applies_and_the_operator_rejects_with_a_reason(phone: Any, desktop: Any) -> None:
    register(phone, "小马")
    name = f"夜猫子烤串{new_phone()[-4:]}"
    apply_as_merchant(phone, name)
    expect(phone.get_by_test_id("merchant-status")).to_have_text("待审核")
    expect(phone.get_by_text("入驻申请待审核")).to_be_visible()
    screenshot(phone, "console-dashboard-pending")

    login(desktop, OPERATOR[0], OPERATOR[1], "/admin/applications")
    card = desktop.locator(f'[data-testid=application][data-merchant="{name}"]')
    # Rejecting without a reason: the Chinese error next to the field, nothing changes.
    card.get_by_role("button", name="驳回").click()
    card = desktop.locator(f'[data-testid=application][data-merchant="{name}"]')
    expect(card.locator("[data-field-error=reason]")).to_have_text("请填写原因（1–500 字）")
    screenshot(desktop, "admin-reject-error")
    card.get_by_label("驳回原因").fill("营业执照照片不清晰，请重新上传")
    card.get_by_role("button", name="驳回").click()
    expect(desktop.get_by_role("status")).to_contain_text(f"已驳回「{name}」")
    expect(desktop.locator(f'[data-merchant="{name}"]')).to_have_count(0)

    phone.reload()
    expect(phone.get_by_test_id("merchant-status")).to_have_text("已驳回")
    expect(phone.get_by_text("营业执照照片不清晰")).to_be_visible()
    screenshot(phone, "console-dashboard-rejected")
    # Editing the application sends it back for review.
    phone.get_by_role("link", name="修改资料并重新提交").click()
    phone.get_by_label("营业执照号").fill("91440300MA5TEST98")
    phone.get_by_role("button", name="保存并提交").click()
    expect(phone.get_by_test_id("merchant-status")).to_have_text("待审核")


def test_bad_input_shows_the_chinese_error_next_to_the_field_and_changes_nothing(
    phone: Any,
) -> None:
    phone.goto("/register")
    phone.get_by_label("手机号").fill("12345")
    phone.get_by_label("昵称").fill("小周")
    phone.get_by_label(re.compile("^密码")).fill("short")
    phone.get_by_label("确认密码").fill("short")
    phone.get_by_role("button", name="注册并登录").click()
    expect(phone.locator("#f-phone-error")).to_have_text("请输入 11 位中国大陆手机号")
    expect(phone.locator("#f-password-error")).to_have_text("密码至少 8 位")
    expect(phone.get_by_label("昵称")).to_have_value("小周")
    expect(phone.get_by_label("手机号")).to_have_attribute("aria-invalid", "true")
    screenshot(phone, "register-errors")

    register(phone, "小周")
    phone.goto("/console/apply")
    phone.get_by_label("商户名称").fill("小周奶茶")
    phone.get_by_label("联系电话").fill("abc")
    phone.get_by_label("营业执照号").fill("短")
    phone.get_by_role("button", name="提交申请").click()
    expect(phone.locator("#f-contact_phone-error")).to_contain_text("请输入手机号或座机号")
    expect(phone.locator("#f-license_no-error")).to_contain_text("营业执照号")
    expect(phone.get_by_label("商户名称")).to_have_value("小周奶茶")
    screenshot(phone, "console-apply-errors")
    phone.goto("/console")
    expect(phone.get_by_text("您还没有商户")).to_be_visible()  # nothing was created


def test_clerk_sees_its_store_only_and_cannot_open_admin(phone: Any) -> None:
    login(phone, CLERK_PHONE, DEMO_PASSWORD, "/console")
    expect(phone.get_by_test_id("merchant-status")).to_have_text("已通过")
    expect(phone.get_by_role("link", name="员工")).to_have_count(0)
    phone.get_by_role("link", name="门店", exact=True).click()
    stores = phone.get_by_test_id("stores")
    expect(stores).to_contain_text("南山海岸城店")
    expect(stores).not_to_contain_text("福田购物公园店")
    expect(phone.get_by_role("link", name="新建门店")).to_have_count(0)
    screenshot(phone, "console-stores-clerk")
    response = phone.goto("/admin")
    assert response is not None and response.status == 403
    expect(phone.get_by_text("仅平台运营可操作")).to_be_visible()
    screenshot(phone, "error-403")


def test_csrf_a_post_without_the_token_is_refused(live_server: str) -> None:
    """Over plain HTTP (httpx): even a signed-in operator's POST needs the session's token."""
    with httpx.Client(base_url=live_server, follow_redirects=False) as client:
        token = csrf_from(client.get("/login").text)
        r = client.post("/login", data={"phone": OPERATOR[0], "password": OPERATOR[1]})
        assert r.status_code == 403 and "页面已过期" in r.text
        r = client.post(
            "/login",
            data={"phone": OPERATOR[0], "password": OPERATOR[1], "csrf_token": token},
        )
        assert r.status_code == 303
        page = client.get("/admin/categories")
        assert page.status_code == 200
        category_id = re.search(r'id="category-(\d+)"', page.text)
        assert category_id
        url = f"/admin/categories/{category_id.group(1)}/commission"
        before = re.findall(r'data-testid="rate">([^<]+)<', page.text)
        for attempt in ({}, {"csrf_token": token}, {"csrf_token": "forged-" + "x" * 40}):
            r = client.post(url, data={"commission_percent": "99", **attempt})
            assert r.status_code == 403, attempt
        # The token from before sign-in was replaced; the page's current one works.
        fresh = csrf_from(client.get("/admin/categories").text)
        assert fresh != token
        after = re.findall(r'data-testid="rate">([^<]+)<', client.get("/admin/categories").text)
        assert after == before
        r = client.post("/admin/categories/0/commission", data={"csrf_token": fresh})
        assert r.status_code == 404


def test_operator_edits_a_commission_rate_in_place(desktop: Any) -> None:
    login(desktop, OPERATOR[0], OPERATOR[1], "/admin/categories")
    row = desktop.locator('tr[data-category="图书"]')
    row.get_by_label("图书佣金率（%）").fill("abc")
    row.get_by_role("button", name="保存").click()
    row = desktop.locator('tr[data-category="图书"]')
    expect(row.locator(".field-error")).to_contain_text("请输入 0–100 之间的数")
    expect(row.get_by_test_id("rate")).to_have_text("2%")
    row.get_by_label("图书佣金率（%）").fill("2.5")
    row.get_by_role("button", name="保存").click()
    expect(desktop.locator('tr[data-category="图书"]').get_by_test_id("rate")).to_have_text("2.5%")
    expect(desktop.locator('tr[data-category="图书"]').get_by_text("已保存")).to_be_visible()
    desktop.reload()
    expect(desktop.locator('tr[data-category="图书"]').get_by_test_id("rate")).to_have_text("2.5%")
    screenshot(desktop, "admin-categories")


def test_consumer_home_picks_a_district(phone: Any) -> None:
    phone.goto("/")
    expect(phone.get_by_test_id("current-location")).to_have_text("深圳 南山区")
    nearby = phone.locator("#nearby-title").locator("xpath=ancestor::section")
    expect(nearby).to_contain_text("蜀香居重庆老火锅")
    expect(nearby).not_to_contain_text("深蓝日料")  # 罗湖
    screenshot(phone, "home")
    phone.get_by_label("切换区域").select_option(value="深圳市|罗湖区")
    phone.get_by_role("button", name="切换").click()
    expect(phone.get_by_test_id("current-location")).to_have_text("深圳 罗湖区")
    expect(nearby).to_contain_text("深蓝日料")
    # A category shortcut opens the search, filtered to that category, near the chosen district.
    phone.get_by_role("link", name=re.compile("美食")).click()
    expect(phone.get_by_label("分类")).to_have_value(re.compile(r"\d+"))
    expect(phone.get_by_label("分类").locator("option:checked")).to_have_text("美食")
    results = phone.get_by_role("region", name="搜索结果")
    expect(results).to_contain_text("深蓝日料")
    expect(results).not_to_contain_text("嗨唱")


def test_screenshots_of_each_page(phone: Any, desktop: Any) -> None:
    """Every page of this first set at 375 px and 1280 px (none may scroll sideways)."""
    for page in (phone, desktop):
        page.goto("/")
        screenshot(page, "home")
        page.goto("/login")
        screenshot(page, "login")
        page.goto("/register")
        screenshot(page, "register")
        page.goto("/no-such-page")
        screenshot(page, "error-404")

        login(page, OWNER_PHONE, DEMO_PASSWORD, "/me")
        screenshot(page, "me")
        page.goto("/console")
        screenshot(page, "console-dashboard")
        merchant_url = page.url
        for suffix, name in (
            ("/stores", "console-stores"),
            ("/stores/new", "console-store-new"),
            ("/staff", "console-staff"),
            ("/staff/new", "console-staff-new"),
        ):
            page.goto(merchant_url + suffix)
            screenshot(page, name)
        page.goto("/console/apply")
        screenshot(page, "console-apply")
        page.goto(merchant_url + "/stores")
        page.get_by_role("link", name="编辑").first.click()
        screenshot(page, "console-store-edit")
        page.goto("/me")
        page.get_by_role("button", name="退出登录").click()
        expect(page.get_by_role("status")).to_contain_text("已退出登录")

        login(page, OPERATOR[0], OPERATOR[1], "/admin")
        for url, name in (
            ("/admin/applications", "admin-applications"),
            ("/admin/merchants", "admin-merchants"),
            ("/admin/categories", "admin-categories"),
        ):
            page.goto(url)
            screenshot(page, name)
