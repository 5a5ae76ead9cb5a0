"""Paying where the consumer is, without a browser, against the fake WeChat Pay: the cashier page
gives JSAPI parameters for the consumer's *own* openid inside WeChat, sends phone browsers to H5
(payer IP, h5_info) and shows desktops a Native QR code; it says 支付成功 only after the server
has the payment (a query finds it paid when the notification is late)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from sqlalchemy import update

from o2o.app import create_app
from o2o.merchants.models import Merchant
from o2o.payments.wechatpay_crypto import jsapi_sign_message, rsa_verify
from tests.checkout_support import ADDRESS, goods_item, make_goods, place
from tests.conftest import make_settings
from tests.fakes.wechat_server import FakeWeChat
from tests.fakes.wechatpay_server import FakeWeChatPay
from tests.support import ApiClient, World, bind_wechat
from tests.voucher_support import a_deal
from tests.web.support import PageClient

NOTIFY = "/api/v1/payments/notify/wechatpay"
OPENID = "oWeChatPayer000000000000001"
WECHAT_UA = "Mozilla/5.0 (iPhone) AppleWebKit/605.1.15 Mobile/15E148 MicroMessenger/8.0.47"
PHONE_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1"
DESKTOP_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
PAYER_IP = "203.0.113.7"


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeWeChatPay]:
    with FakeWeChatPay() as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeWeChatPay) -> FakeWeChatPay:
    fake_server.reset()
    return fake_server


@pytest.fixture
def app(db_url: str, tmp_path: Any, fake: FakeWeChatPay, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in fake.provider_env(notify_url="http://testserver" + NOTIFY).items():
        monkeypatch.setenv(name, value)
    return create_app(make_settings(db_url, tmp_path))


class Browser(PageClient):
    """A page client from a real-looking address (H5 needs the payer's IP)."""

    def __init__(self, app: Any, user_agent: str) -> None:
        super().__init__(app)
        self._transport.client = (PAYER_IP, 50000)  # type: ignore[attr-defined]
        self.headers["User-Agent"] = user_agent


def go_of(page: Any) -> str:
    """Where the cashier page navigates next (WeChat's H5 cashier or authorization)."""
    return html.unescape(re.search(r'data-go="([^"]+)"', page.text)[1])


def buy(client: PageClient, world: World, key: str) -> str:
    """Checkout of a deal on the page: the payment number the cashier page was sent to."""
    listing_id = a_deal(world).listing_id
    r = client.form_post(
        "/checkout", {"listing_id": listing_id, "quantity": 1, "idempotency_key": key}
    )
    assert r.status_code == 303, r.text
    match = re.fullmatch(r"/pay/([A-Za-z0-9]+)", r.headers["location"])
    assert match, r.headers["location"]
    return match.group(1)


def test_inside_wechat_the_cashier_gives_jsapi_for_the_payers_own_openid(
    app: Any, world: World, fake: FakeWeChatPay
) -> None:
    appid = fake.provider_env()["O2O_WECHATPAY_APPID"]
    bind_wechat(world.db, world.consumer_id, appid, OPENID)
    with Browser(app, WECHAT_UA) as phone:
        phone.sign_in(world.consumer_id)
        payment_no = buy(phone, world, "k-jsapi-000001")
        page = phone.get(f"/pay/{payment_no}")
        assert page.status_code == 200, page.text
        params = json.loads(html.unescape(re.search(r'data-jsapi="([^"]+)"', page.text)[1]))
        assert set(params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
        assert params["appId"] == appid and params["signType"] == "RSA"
        assert params["package"].startswith("prepay_id=")
        message = jsapi_sign_message(
            params["appId"], params["timeStamp"], params["nonceStr"], params["package"]
        )
        merchant_key = fake.merchant(fake.provider_env()["O2O_WECHATPAY_MCHID"]).private_key
        assert rsa_verify(merchant_key.public_key(), message, params["paySign"])
        assert fake.requests[-1].body["payer"] == {"openid": OPENID}
        assert "支付成功" not in page.text

        # The bridge said ok but no notification came: the page's ask queries WeChat Pay.
        status = phone.get(f"/pay/{payment_no}/status").json()
        assert status["paid"] is False and status["status"] == "pending"
        fake.pay(payment_no)  # paid at WeChat Pay; the notification is lost
        status = phone.get(f"/pay/{payment_no}/status", params={"ask": 1}).json()
        assert status["paid"] is True and status["next"].startswith("/orders/")
        assert "支付成功" in phone.get(f"/pay/{payment_no}").text


def test_the_openid_never_comes_from_the_client(
    app: Any, world: World, fake: FakeWeChatPay
) -> None:
    with Browser(app, WECHAT_UA) as phone:
        phone.sign_in(world.other_consumer_id)
        payment_no = buy(phone, world, "k-jsapi-000002")
        # No WeChat identity of their own: the page sends them back, nothing reaches WeChat Pay.
        r = phone.get(f"/pay/{payment_no}")
        assert r.status_code == 303 and r.headers["location"].startswith("/orders/")
    token = world.tokens["other_consumer"]
    with PageClient(app) as api:
        r = api.post(
            f"/api/v1/payments/{payment_no}/pay",
            json={"provider": "wechatpay", "method": "jsapi", "openid": OPENID},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert r.status_code == 409 and r.json()["code"] == "wechat_identity_required"
    assert not any(req.path.endswith("/jsapi") for req in fake.requests)


def test_a_phone_browser_pays_by_h5_and_a_desktop_by_qr(
    app: Any, world: World, fake: FakeWeChatPay
) -> None:
    with Browser(app, PHONE_UA) as phone:
        phone.sign_in(world.consumer_id)
        payment_no = buy(phone, world, "k-h5-0000001")
        r = phone.get(f"/pay/{payment_no}")
        assert r.status_code == 200
        back = quote(f"http://127.0.0.1:8000/pay/{payment_no}?back=h5", safe="")
        go = go_of(r)
        assert go.startswith(fake.base_url + "/cgi-bin/mmpayweb-bin/checkmweb?")
        assert go.endswith("&redirect_url=" + back)
        sent = fake.requests[-1]
        assert sent.path == "/v3/pay/transactions/h5"
        assert sent.body["scene_info"] == {"payer_client_ip": PAYER_IP, "h5_info": {"type": "Wap"}}
        # Back from WeChat's cashier: the page waits for the server, it starts nothing new.
        calls = len(fake.requests)
        r = phone.get(f"/pay/{payment_no}", params={"back": "h5"})
        assert r.status_code == 200 and "正在确认支付结果" in r.text
        assert len(fake.requests) == calls
        fake.pay(payment_no, deliver=True, client=phone, notify_url=NOTIFY)
        assert phone.get(f"/pay/{payment_no}/status").json()["paid"] is True
    with Browser(app, DESKTOP_UA) as desktop:
        desktop.sign_in(world.consumer_id)
        payment_no = buy(desktop, world, "k-native-00001")
        r = desktop.get(f"/pay/{payment_no}")
        assert r.status_code == 200 and "<svg" in r.text and "请使用微信扫一扫" in r.text
        assert fake.requests[-1].path == "/v3/pay/transactions/native"
    # Someone else's payment is not found.
    with Browser(app, DESKTOP_UA) as other:
        other.sign_in(world.other_consumer_id)
        assert other.get(f"/pay/{payment_no}").status_code == 404
        assert other.get(f"/pay/{payment_no}/status").status_code == 404


def test_a_combined_checkout_of_two_merchants_pays_on_each_way(
    db_url: str,
    tmp_path: Any,
    world: World,
    fake: FakeWeChatPay,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Partner mode (服务商): a checkout across two merchants is one 合单 payment, whether the
    consumer is in WeChat (JSAPI), on a phone browser (H5) or at a desktop (Native)."""
    env = fake.provider_env(partner=True, notify_url="http://testserver" + NOTIFY)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with world.db.transaction() as session:
        for merchant_id, sub in ((world.a.id, "1900000201"), (world.b.id, "1900000202")):
            session.execute(
                update(Merchant).where(Merchant.id == merchant_id).values(sub_mchid=sub)
            )
    bind_wechat(world.db, world.consumer_id, env["O2O_WECHATPAY_APPID"], OPENID)
    app = create_app(make_settings(db_url, tmp_path))
    token = world.tokens["consumer"]
    seen: dict[str, Any] = {}
    for way, user_agent in (("jsapi", WECHAT_UA), ("h5", PHONE_UA), ("native", DESKTOP_UA)):
        goods = [
            make_goods(world.db, world.a.id, world.category_id, price_fen=1999),
            make_goods(world.db, world.b.id, world.category_id, price_fen=3001),
        ]
        with ApiClient(app) as api:
            made = place(api, token, [goods_item(g) for g in goods], address=ADDRESS)
        assert made.status_code == 201, made.text
        payment_no = made.json()["payment"]["payment_no"]
        with Browser(app, user_agent) as client:
            client.sign_in(world.consumer_id)
            r = client.get(f"/pay/{payment_no}")
            assert r.status_code == 200, r.text
            sent = fake.requests[-1]
            assert sent.path == f"/v3/combine-transactions/{way}", sent.path
            assert sent.body["combine_out_trade_no"] == payment_no
            assert len(sent.body["sub_orders"]) == 2
            seen[way] = sent.body
            if way == "jsapi":
                assert 'data-jsapi="' in r.text and "2 个商户合并支付" in r.text
            elif way == "h5":
                assert f'data-go="{fake.base_url}/cgi-bin/' in r.text
            else:
                assert "<svg" in r.text
    assert seen["jsapi"]["combine_payer_info"] == {"openid": OPENID}
    assert seen["h5"]["scene_info"]["h5_info"] == {"type": "Wap"}
    assert seen["native"]["scene_info"]["payer_client_ip"] == PAYER_IP


def test_a_phone_account_inside_wechat_binds_its_openid_before_paying(
    db_url: str,
    tmp_path: Any,
    world: World,
    fake: FakeWeChatPay,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Signed in with a phone inside WeChat, no WeChat identity yet: the cashier has WeChat's
    silent authorization bind the openid to *this* account, then pays with it. An openid bound
    to another account stays theirs."""
    with FakeWeChat() as wx:
        official = wx.official_account(fake.provider_env()["O2O_WECHATPAY_APPID"])
        monkeypatch.setenv("O2O_WECHAT_APPID", official.appid)
        monkeypatch.setenv("O2O_WECHAT_SECRET", official.secret)
        monkeypatch.setenv("O2O_WECHAT_API_BASE_URL", wx.base_url)
        monkeypatch.setenv("O2O_WECHAT_OPEN_BASE_URL", wx.base_url)
        app = create_app(make_settings(db_url, tmp_path))
        someone = wx.user()

        def through_wechat(client: Browser, location: str) -> Any:
            r = httpx.get(
                location.split("#")[0],
                cookies={"fake_wx_user": someone.key},
                follow_redirects=False,
            )
            assert r.status_code == 302, r.text
            callback = urlsplit(r.headers["location"])
            return client.get(f"{callback.path}?{callback.query}")

        with Browser(app, WECHAT_UA) as phone:
            phone.sign_in(world.consumer_id)
            payment_no = buy(phone, world, "k-bind-000001")
            r = phone.get(f"/pay/{payment_no}")
            assert r.status_code == 200 and f'data-go="{wx.base_url}' in r.text
            back = through_wechat(phone, go_of(r))
            assert back.status_code == 303 and back.headers["location"] == f"/pay/{payment_no}"
            page = phone.get(f"/pay/{payment_no}")
            assert page.status_code == 200 and 'data-jsapi="' in page.text
            assert fake.requests[-1].body["payer"] == {"openid": someone.openid(official.appid)}
        with Browser(app, WECHAT_UA) as other:
            other.sign_in(world.other_consumer_id)
            payment_no = buy(other, world, "k-bind-000002")
            refused = through_wechat(other, go_of(other.get(f"/pay/{payment_no}")))
            assert refused.status_code == 409 and "已绑定其他账号" in refused.text
