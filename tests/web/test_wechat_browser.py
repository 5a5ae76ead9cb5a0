"""Inside WeChat, in a real browser (Chromium with WeChat's user agent) against ``o2o serve`` wired
to the fake WeChat servers: an anonymous consumer opens a deal, is signed in by the silent
公众号 authorization, buys, pays through ``WeixinJSBridge`` (a fake bridge injected by an init
script; the fake WeChat Pay server then sends its signed notification), sees 支付成功 only once
the server has the payment, and lands on the order with its voucher."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from o2o.payments.wechatpay_crypto import jsapi_sign_message, rsa_verify
from tests.checkout_support import make_deal
from tests.fakes.wechat_server import FakeWeChat
from tests.fakes.wechatpay_server import FakeWeChatPay
from tests.live_support import serve
from tests.support import PASSWORD
from tests.test_cli import free_port
from tests.web.conftest import CHROMIUM, login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

NOTIFY = "/api/v1/payments/notify/wechatpay"
WECHAT_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI"
)
PHONE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
# WeChat's JS bridge, as far as the cashier uses it: getBrandWCPayRequest hands the parameters
# to the test (which checks them and has the fake WeChat Pay pay and notify), then answers ok.
FAKE_BRIDGE = """
window.WeixinJSBridge = {
  invoke: function (name, params, callback) {
    if (name !== "getBrandWCPayRequest") { callback({err_msg: name + ":fail"}); return; }
    window.wechatPays(params).then(function (ok) {
      callback({err_msg: "get_brand_wcpay_request:" + (ok ? "ok" : "fail")});
    });
  }
};
"""


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture(scope="module")
def wechat_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The fakes and a live server configured for WeChat (公众号 = the WeChat Pay app id)."""
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Debian's Chromium at {CHROMIUM}")
    with FakeWeChatPay() as pay, FakeWeChat() as wx:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = pay.provider_env(notify_url=base + NOTIFY)
        official = wx.official_account(env["O2O_WECHATPAY_APPID"])
        env.update(
            O2O_WECHAT_APPID=official.appid,
            O2O_WECHAT_SECRET=official.secret,
            O2O_WECHAT_API_BASE_URL=wx.base_url,
            O2O_WECHAT_OPEN_BASE_URL=wx.base_url,
            O2O_PUBLIC_BASE_URL=base,
        )
        folder = tmp_path_factory.mktemp("wechat-live")
        yield from (
            (pay, wx, live)
            for live in serve("sqlite", Path(folder), secret="w" * 48, env=env, port=port)
        )


def test_anonymous_in_wechat_signs_in_silently_buys_pays_and_sees_the_voucher(
    wechat_world: Any, browser: Any
) -> None:

    pay, wx, live = wechat_world
    world = live.world
    deal = make_deal(world.db, world.a.id, world.category_id, world.a.store_ids, title="微信双人餐")
    merchant_key = pay.merchant(pay.provider_env()["O2O_WECHATPAY_MCHID"]).private_key
    bridged: list[dict[str, str]] = []

    def wechat_pays(params: dict[str, str]) -> bool:
        """What WeChat does after the bridge call: check the signature, pay, notify."""
        bridged.append(params)
        message = jsapi_sign_message(
            params["appId"], params["timeStamp"], params["nonceStr"], params["package"]
        )
        if not rsa_verify(merchant_key.public_key(), message, params["paySign"]):
            return False
        prepay_id = params["package"].removeprefix("prepay_id=")
        order = next(o for o in pay.orders.values() if o.prepay_id == prepay_id)
        note = pay.pay(order.out_trade_no, deliver=True)
        return note.response is not None and note.response.status_code in (200, 204)

    context = browser.new_context(
        base_url=live.base,
        user_agent=WECHAT_UA,
        viewport={"width": 375, "height": 812},
        is_mobile=True,
        has_touch=True,
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
    )
    context.add_init_script(FAKE_BRIDGE)
    context.expose_function("wechatPays", wechat_pays)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        # Anonymous → WeChat's silent authorization → back on the deal, signed in.
        page.goto(f"/l/{deal.listing_id}")
        # (Chromium keeps the authorize URL's #wechat_redirect across the redirects; WeChat does not.)
        expect(page).to_have_url(re.compile(rf"/l/{deal.listing_id}(#wechat_redirect)?$"))
        assert wx.requests[0][0] == "authorize"
        assert wx.requests[0][1]["scope"] == "snsapi_base"
        expect(page.locator(".topbar .who")).to_have_text("微信用户")

        page.get_by_role("button", name="立即购买").click()
        expect(page.get_by_role("heading", name="确认订单")).to_be_visible()
        page.get_by_role("button", name="提交订单并支付").click()

        # The cashier calls the bridge; 支付成功 only after the server has the payment.
        expect(page.get_by_test_id("pay-state")).to_have_text("支付成功")
        assert len(bridged) == 1 and bridged[0]["signType"] == "RSA"
        screenshot(page, "wechat-paid")
        page.wait_for_url(re.compile(r"/orders/[A-Za-z0-9]+$"))
        expect(page.get_by_test_id("order-status")).to_have_text("待使用")
        voucher = page.get_by_test_id("voucher").first
        expect(voucher.get_by_test_id("voucher-code")).to_have_text(re.compile(r"^\d{4}( \d{4})+$"))
        screenshot(page, "wechat-voucher")
    finally:
        context.close()
    # The payer was the consumer WeChat signed in: the fake's order carries their openid.
    paid = [o for o in pay.orders.values() if o.trade_state == "SUCCESS"]
    assert len(paid) == 1 and paid[0].openid == next(iter(wx.users.values())).openid(
        pay.provider_env()["O2O_WECHATPAY_APPID"]
    )


def test_a_phone_browser_outside_wechat_pays_by_h5_and_comes_back(
    wechat_world: Any, browser: Any
) -> None:

    pay, _wx, live = wechat_world
    world = live.world
    deal = make_deal(world.db, world.a.id, world.category_id, world.a.store_ids, title="H5双人餐")
    context = browser.new_context(
        base_url=live.base,
        user_agent=PHONE_UA,
        viewport={"width": 375, "height": 812},
        is_mobile=True,
        has_touch=True,
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        login(page, world.phones["consumer"], PASSWORD, f"/l/{deal.listing_id}")
        page.get_by_role("button", name="立即购买").click()
        page.get_by_role("button", name="提交订单并支付").click()
        # WeChat's H5 cashier (the fake's), then back to ours, which waits for the server.
        expect(page.get_by_role("heading", name="微信支付")).to_be_visible()
        expect(page.get_by_test_id("amount")).to_have_text("¥50.00")
        page.get_by_role("button", name="确认支付").click()
        expect(page.get_by_test_id("pay-state")).to_have_text("支付成功")
        page.get_by_role("link", name="查看订单").click()
        expect(page.get_by_test_id("order-status")).to_have_text("待使用")
    finally:
        context.close()
    h5 = [r for r in pay.requests if r.path == "/v3/pay/transactions/h5"]
    assert len(h5) == 1 and h5[0].body["scene_info"]["payer_client_ip"] == "127.0.0.1"
