"""The WeChat sign-in client against the strict local fake (tests/fakes/wechat_server.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from o2o.wechat.client import WeChatApiError, WeChatClient, WeChatUnavailable
from o2o.wechat.config import WeChatSettings
from tests.fakes.wechat_server import FakeWeChat

CALLBACK = "http://testserver/wechat/oauth/callback"


@pytest.fixture(scope="module")
def wx() -> Iterator[FakeWeChat]:
    now = [1_800_000_000.0]
    with FakeWeChat(clock=lambda: now[0]) as fake:
        fake.now = now  # type: ignore[attr-defined]
        yield fake


def client_for(wx: FakeWeChat, **overrides: str) -> WeChatClient:
    values = {k.removeprefix("O2O_WECHAT_").lower(): v for k, v in wx.env().items()}
    return WeChatClient(WeChatSettings(**{**values, **overrides}))


def test_oauth_code_gives_the_openid_and_unionid_once(wx: FakeWeChat) -> None:
    client = client_for(wx)
    user = wx.user()
    code = wx.authorize(wx.official_account().appid, CALLBACK, "s1", as_user=user)
    found = client.oauth2_access_token(code)
    assert found.openid == wx.openid_of(user) and found.unionid == user.unionid
    with pytest.raises(WeChatApiError) as replay:
        client.oauth2_access_token(code)
    assert replay.value.errcode == 40163


def test_codes_expire_and_belong_to_their_app(wx: FakeWeChat) -> None:
    client = client_for(wx)
    official = wx.official_account().appid
    old = wx.authorize(official, CALLBACK, "s2")
    wx.now[0] += 301  # type: ignore[attr-defined]
    with pytest.raises(WeChatApiError) as expired:
        client.oauth2_access_token(old)
    assert expired.value.errcode == 40029
    # A mini-program code is not a 公众号 code (and the other way round).
    mp_code = wx.login_code(wx.miniprogram().appid, wx.user())
    with pytest.raises(WeChatApiError) as other_app:
        client.oauth2_access_token(mp_code)
    assert other_app.value.errcode == 40029
    assert client.jscode2session(mp_code).openid


def test_wrong_secret_and_missing_parameters_are_refused(wx: FakeWeChat) -> None:
    code = wx.authorize(wx.official_account().appid, CALLBACK, "s3")
    with pytest.raises(WeChatApiError) as wrong:
        client_for(wx, secret="0" * 32).oauth2_access_token(code)
    assert wrong.value.errcode == 40125
    base = wx.base_url + "/sns/oauth2/access_token"
    answers = [
        httpx.get(base, params={"secret": "x", "code": "c"}).json()["errcode"],
        httpx.get(base, params={"appid": "x", "code": "c"}).json()["errcode"],
        httpx.get(base, params={"appid": "x", "secret": "x"}).json()["errcode"],
        httpx.get(base, params={"appid": "x", "secret": "x", "code": "c"}).json()["errcode"],
    ]
    assert answers == [41002, 41004, 41008, 40002]


def test_authorize_refuses_a_foreign_redirect_and_a_bad_state(wx: FakeWeChat) -> None:
    appid = wx.official_account().appid
    with pytest.raises(ValueError, match="redirect_uri"):
        wx.authorize(appid, "https://evil.example.com/cb", "s4")
    with pytest.raises(ValueError, match="state"):
        wx.authorize(appid, CALLBACK, "a" * 129)
    url = client_for(wx).authorize_url(CALLBACK, "abc123")
    assert url.endswith("&state=abc123#wechat_redirect") and "scope=snsapi_base" in url
    r = httpx.get(url.split("#")[0], follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"].startswith(CALLBACK + "?code=")


def test_unreachable_wechat_is_unavailable() -> None:
    client = WeChatClient(
        WeChatSettings(appid="wx1", secret="s", api_base_url="http://127.0.0.1:9", timeout=1)
    )
    with pytest.raises(WeChatUnavailable):
        client.oauth2_access_token("code")
