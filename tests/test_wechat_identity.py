"""WeChat identity: the silent 公众号 authorization of pages opened inside WeChat (state bound to
the browser's session, codes single-use, only local paths to go back to) and the mini-program
login, against the strict fake WeChat servers (tests/fakes/wechat_server.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from o2o.accounts.models import User
from o2o.app import create_app
from o2o.web.session import SESSION_COOKIE, encode_session, session_key
from o2o.wechat.models import WeChatIdentity
from tests.conftest import make_settings
from tests.fakes.wechat_server import FakeWeChat
from tests.support import ApiClient

WECHAT_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI"
)
SECRET = "test-secret-" + "x" * 40


@pytest.fixture(scope="module")
def wx() -> Iterator[FakeWeChat]:
    with FakeWeChat() as fake:
        yield fake


@pytest.fixture
def app(db_url: str, tmp_path: Any, wx: FakeWeChat, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in wx.env().items():
        monkeypatch.setenv(name, value)
    return create_app(make_settings(db_url, tmp_path))


def browser(app: Any) -> ApiClient:
    client = ApiClient(app)
    client.headers["User-Agent"] = WECHAT_UA
    return client


def authorize(wx: FakeWeChat, location: str, user: Any) -> tuple[str, str]:
    """What WeChat does with the authorize URL: (code, state) for the callback."""
    assert location.startswith(wx.base_url + "/connect/oauth2/authorize?")
    assert location.endswith("#wechat_redirect")
    r = httpx.get(
        location.split("#")[0],
        cookies={"fake_wx_user": user.key},
        follow_redirects=False,
    )
    assert r.status_code == 302, r.text
    query = parse_qs(urlsplit(r.headers["location"]).query)
    return query["code"][0], query["state"][0]


def signed_in(client: ApiClient) -> bool:
    return client.get("/orders", follow_redirects=False).status_code == 200


def test_silent_authorization_signs_a_first_time_visitor_in_and_comes_back(
    app: Any, wx: FakeWeChat
) -> None:
    user = wx.user()
    with browser(app) as phone:
        r = phone.get("/search?q=火锅", follow_redirects=False)
        assert r.status_code == 302
        query = parse_qs(urlsplit(r.headers["location"]).query)
        assert query["scope"] == ["snsapi_base"]
        assert query["redirect_uri"] == ["http://127.0.0.1:8000/wechat/oauth/callback"]
        code, state = authorize(wx, r.headers["location"], user)
        back = phone.get(
            "/wechat/oauth/callback", params={"code": code, "state": state}, follow_redirects=False
        )
        assert (
            back.status_code == 303 and back.headers["location"] == "/search?q=%E7%81%AB%E9%94%85"
        )
        assert signed_in(phone)
        # Signed in: no more trips to WeChat.
        assert phone.get("/", follow_redirects=False).status_code == 200
    with app.state.db.transaction(readonly=True) as s:
        identity = s.scalars(select(WeChatIdentity)).one()
        account = s.get(User, identity.user_id)
        assert (identity.openid, identity.unionid) == (wx.openid_of(user), user.unionid)
        assert account is not None and account.phone is None and account.name == "微信用户"
    # The same WeChat user in another browser is the same account.
    with browser(app) as again:
        r = again.get("/", follow_redirects=False)
        code, state = authorize(wx, r.headers["location"], user)
        again.get("/wechat/oauth/callback", params={"code": code, "state": state})
        assert signed_in(again)
    with app.state.db.transaction(readonly=True) as s:
        assert len(s.scalars(select(User)).all()) == 1
    # Outside WeChat, nothing of this happens.
    with ApiClient(app) as desktop:
        assert desktop.get("/", follow_redirects=False).status_code == 200


def test_state_tampering_and_a_foreign_callback_sign_nobody_in(app: Any, wx: FakeWeChat) -> None:
    attacker, victim_user = wx.user(), wx.user()
    with browser(app) as evil, browser(app) as victim:
        # The attacker starts an authorization and keeps the callback (login CSRF attempt).
        r = evil.get("/", follow_redirects=False)
        code, state = authorize(wx, r.headers["location"], attacker)
        victim.get("/", follow_redirects=False)  # the victim has a state of their own
        stolen = victim.get("/wechat/oauth/callback", params={"code": code, "state": state})
        assert stolen.status_code == 400 and "授权已失效" in stolen.text
        assert not signed_in(victim)
        # A state changed by one character is refused too.
        r = victim.get("/", follow_redirects=False)
        own_code, own_state = authorize(wx, r.headers["location"], victim_user)
        tampered = own_state[:-1] + ("0" if own_state[-1] != "0" else "1")
        bad = victim.get("/wechat/oauth/callback", params={"code": own_code, "state": tampered})
        assert bad.status_code == 400 and not signed_in(victim)
        # The state was used up by the failed attempt: the genuine one is gone as well.
        again = victim.get("/wechat/oauth/callback", params={"code": own_code, "state": own_state})
        assert again.status_code == 400


def test_a_replayed_code_is_refused_and_the_pages_stay_anonymous(app: Any, wx: FakeWeChat) -> None:
    user = wx.user()
    with browser(app) as first:
        r = first.get("/", follow_redirects=False)
        code, state = authorize(wx, r.headers["location"], user)
        first.get("/wechat/oauth/callback", params={"code": code, "state": state})
        assert signed_in(first)
    with browser(app) as second:
        r = second.get("/", follow_redirects=False)
        _, state = authorize(wx, r.headers["location"], user)
        replay = second.get("/wechat/oauth/callback", params={"code": code, "state": state})
        assert replay.status_code == 400 and "无效或已使用" in replay.text
        assert not signed_in(second)
        # No redirect loop: the pages are shown anonymously for a while.
        assert second.get("/", follow_redirects=False).status_code == 200


def test_the_page_to_go_back_to_is_always_local(app: Any, wx: FakeWeChat) -> None:
    user = wx.user()
    for evil_next in ("https://evil.example.com/", "//evil.example.com/x", "/\\evil.example.com"):
        code = wx.authorize(
            wx.official_account().appid, "http://127.0.0.1:8000/wechat/oauth/callback", "s1"
        )
        # A session cookie that somehow holds a foreign page (signed with the app's key).
        state = "a" * 32
        cookie = encode_session(
            session_key(SECRET),
            {"wx_state": {"s": state, "n": evil_next, "t": int(time.time())}, "iat": time.time()},
        )
        with browser(app) as phone:
            phone.cookies.set(SESSION_COOKIE, cookie)
            r = phone.get(
                "/wechat/oauth/callback",
                params={"code": code, "state": state},
                follow_redirects=False,
            )
            assert r.status_code == 303 and r.headers["location"] == "/", evil_next
    assert user  # the fake's users are only needed for their codes


def test_miniprogram_login_gives_tokens_for_the_same_person(app: Any, wx: FakeWeChat) -> None:
    user = wx.user()
    mini = wx.miniprogram().appid
    with ApiClient(app) as api:
        code = wx.login_code(mini, user)
        r = api.post("/api/v1/auth/wechat/miniprogram", json={"code": code})
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        me = api.get("/api/v1/me", as_=token).json()
        assert me["phone"] is None and me["name"] == "微信用户"
        # The code was used: WeChat says so, we answer 401.
        replay = api.post("/api/v1/auth/wechat/miniprogram", json={"code": code})
        assert replay.status_code == 401 and replay.json()["code"] == "wechat_code_invalid"
        assert api.post("/api/v1/auth/wechat/miniprogram", json={"code": "a b"}).status_code == 422
    # The 公众号 identity of the same person (same unionid) joins the same account.
    with browser(app) as phone:
        r = phone.get("/", follow_redirects=False)
        code, state = authorize(wx, r.headers["location"], user)
        phone.get("/wechat/oauth/callback", params={"code": code, "state": state})
        assert signed_in(phone)
    with app.state.db.transaction(readonly=True) as s:
        identities = s.scalars(select(WeChatIdentity)).all()
        assert len(identities) == 2 and len({i.user_id for i in identities}) == 1
        assert me["id"] == identities[0].user_id


def test_miniprogram_login_is_404_when_not_configured(db_url: str, tmp_path: Any) -> None:
    with ApiClient(create_app(make_settings(db_url, tmp_path))) as api:
        r = api.post("/api/v1/auth/wechat/miniprogram", json={"code": "abc"})
        assert r.status_code == 404 and r.json()["code"] == "wechat_not_configured"
