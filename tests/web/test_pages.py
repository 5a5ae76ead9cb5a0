"""Pages without a browser, on SQLite and PostgreSQL: access rules (the API's), CSRF on every
state-changing page route, Chinese field errors that change nothing, sessions and error pages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from o2o.accounts.models import User
from o2o.app import create_app
from o2o.merchants.models import Category, Membership, Merchant, Store
from o2o.web.api import routers as page_routers
from o2o.web.session import SESSION_COOKIE, decode_session, encode_session, session_key
from tests.conftest import make_settings
from tests.support import PASSWORD, World
from tests.web.support import TOKEN, PageClient, field_error


@pytest.fixture
def pages(app: Any) -> Iterator[PageClient]:
    with PageClient(app) as client:
        yield client


def user_for(world: World, role: str) -> int | None:
    return {
        "anonymous": None,
        "consumer": world.consumer_id,
        "clerk": world.a.clerk_id,
        "manager": world.a.manager_id,
        "owner": world.a.owner_id,
        "other_manager": world.b.manager_id,
        "operator": world.operator_id,
    }[role]


ROLES = ["anonymous", "consumer", "clerk", "manager", "owner", "other_manager", "operator"]
STAFF = {"clerk", "manager", "owner"}
MANAGERS = {"manager", "owner"}
SIGNED_IN = set(ROLES) - {"anonymous"}

# (path template, roles that get 200); anonymous is sent to the login page, others get 403/404.
PAGE_RULES: list[tuple[str, set[str]]] = [
    ("/", set(ROLES)),
    ("/login", set(ROLES)),
    ("/me", SIGNED_IN),
    ("/console/apply", SIGNED_IN),
    ("/console/m/{a}", STAFF),
    ("/console/m/{a}/stores", STAFF),
    ("/console/m/{a}/stores/new", MANAGERS),
    ("/console/m/{a}/stores/{store}/edit", MANAGERS),
    ("/console/m/{a}/staff", MANAGERS),
    ("/console/m/{a}/staff/new", MANAGERS),
    ("/console/m/{a}/application", {"owner"}),
    ("/admin/applications", {"operator"}),
    ("/admin/merchants", {"operator"}),
    ("/admin/categories", {"operator"}),
    ("/console/m/{a}/settlements", MANAGERS),
    ("/admin/settlements", {"operator"}),
    ("/admin/reconciliation", {"operator"}),
    ("/admin/refunds", {"operator"}),
]


def fill(path: str, world: World) -> str:
    # store: the store the clerk does NOT work at.
    return path.format(a=world.a.id, store=world.a.store_ids[1], pending=world.pending_merchant_id)


def test_page_access_follows_the_api_rules(pages: PageClient, world: World) -> None:
    for path, allowed in PAGE_RULES:
        url = fill(path, world)
        for role in ROLES:
            r = pages.sign_in(user_for(world, role)).get(url)
            if role in allowed:
                # /login sends a signed-in user onwards.
                expected = 303 if (path == "/login" and role != "anonymous") else 200
                assert r.status_code == expected, f"{role} {url}: {r.status_code}"
            elif role == "anonymous":
                assert r.status_code == 303, f"{role} {url}: {r.status_code}"
                assert r.headers["location"].startswith("/login?next=/")
            else:
                assert r.status_code == 403, f"{role} {url}: {r.status_code}"
                assert "text/html" in r.headers["content-type"]
                assert "无权" in r.text or "不是该商户的员工" in r.text, r.text


def test_clerk_sees_only_its_own_stores(pages: PageClient, world: World) -> None:
    with world.db.transaction(readonly=True) as s:
        names = {st.id: st.name for st in s.scalars(select(Store))}
    html = pages.sign_in(world.a.clerk_id).get(f"/console/m/{world.a.id}/stores").text
    assert names[world.a.store_ids[0]] in html
    assert names[world.a.store_ids[1]] not in html
    assert "新建门店" not in html and "/edit" not in html
    manager = pages.sign_in(world.a.manager_id).get(f"/console/m/{world.a.id}/stores").text
    assert names[world.a.store_ids[0]] in manager and names[world.a.store_ids[1]] in manager
    # The staff tab is not shown to a clerk.
    assert "/staff" not in pages.sign_in(world.a.clerk_id).get(f"/console/m/{world.a.id}").text


def test_console_home_picks_or_lists_merchants(pages: PageClient, world: World) -> None:
    r = pages.sign_in(world.a.owner_id).get("/console")
    assert r.status_code == 303 and r.headers["location"] == f"/console/m/{world.a.id}"
    r = pages.sign_in(world.consumer_id).get("/console")
    assert r.status_code == 200 and "您还没有商户" in r.text


def count(world: World, model: Any, *where: Any) -> int:
    with world.db.transaction(readonly=True) as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


STORE_FORM = {
    "name": "新门店",
    "city": "深圳市",
    "district": "南山区",
    "address": "科苑路1号",
    "lat": "22.54",
    "lng": "113.95",
    "is_active": "1",
}


def test_state_changing_posts_are_refused_to_the_wrong_roles(
    pages: PageClient, world: World
) -> None:
    url = f"/console/m/{world.a.id}/stores/new"
    for role in ("clerk", "other_manager", "consumer", "operator"):
        r = pages.sign_in(user_for(world, role)).form_post(url, STORE_FORM)
        assert r.status_code == 403, role
    assert count(world, Store, Store.merchant_id == world.a.id) == 2
    r = pages.sign_in(world.a.manager_id).form_post(url, STORE_FORM)
    assert r.status_code == 303
    assert count(world, Store, Store.merchant_id == world.a.id) == 3

    approve = f"/admin/merchants/{world.pending_merchant_id}/approve"
    for role in ("owner", "manager", "consumer"):
        assert pages.sign_in(user_for(world, role)).form_post(approve).status_code == 403
    assert count(world, Merchant, Merchant.status == "pending") == 1
    r = pages.sign_in(world.operator_id).form_post(approve, {"back": "/admin/applications"})
    assert r.status_code == 303 and r.headers["location"] == "/admin/applications"
    assert count(world, Merchant, Merchant.status == "pending") == 0


def _post_routes() -> list[tuple[str, str]]:
    routes = []
    for router in page_routers:
        for route in router.routes:
            for method in sorted(getattr(route, "methods", set()) - {"GET", "HEAD"}):
                routes.append((method, route.path))
    return routes


def test_every_page_route_that_changes_something_checks_csrf(
    pages: PageClient, world: World
) -> None:
    """A POST without the token, or with a wrong one, is refused (403) and changes nothing."""
    params = {
        "merchant_id": world.pending_merchant_id,
        "store_id": world.a.store_ids[1],
        "user_id": world.a.clerk_id,
        "category_id": world.category_id,
        # Consumer order pages (consumer_shop.py): any value, the CSRF check comes first.
        "order_no": "N0",
        "code": "000000000000",
        # Any value: the CSRF check comes before the route looks anything up.
        "listing_id": 1,
        "sku_id": 1,
        "slot_id": 1,
        "request_id": 1,
        "review_id": 1,
        "invitation_id": 1,
        "answer": "accept",
        # Settlement pages (admin_settlements.py): the CSRF check comes first.
        "statement_no": "ST0",
        # Refund pages (admin_refunds.py).
        "refund_no": "R0",
        # Event outbox page (admin_outbox.py).
        "delivery_id": 1,
    }
    routes = _post_routes()
    assert ("POST", "/login") in routes and ("POST", "/admin/merchants/{merchant_id}/approve") in (
        routes
    )
    for method, path in routes:
        url = path.format(**params)
        for user in (None, world.operator_id, world.a.owner_id):
            client = pages.sign_in(user)
            r = client.request(method, url, data={"reason": "x", "phone": "13800000000"})
            assert r.status_code == 403, f"{method} {url} without token: {r.status_code}"
            assert "页面已过期" in r.text
            r = client.request(method, url, data={"csrf_token": "wrong" * 10, "reason": "x"})
            assert r.status_code == 403, f"{method} {url} with a wrong token: {r.status_code}"
            r = client.request(method, url, headers={"X-CSRF-Token": "wrong"}, data={})
            assert r.status_code == 403, f"{method} {url} with a wrong header: {r.status_code}"
    assert count(world, Merchant, Merchant.status == "pending") == 1
    # The token in the htmx header is accepted too.
    r = pages.sign_in(world.operator_id).post(
        f"/admin/merchants/{world.pending_merchant_id}/approve",
        headers={"X-CSRF-Token": TOKEN, "HX-Request": "true"},
    )
    assert r.status_code == 200 and r.headers["HX-Redirect"] == "/admin/applications"
    assert count(world, Merchant, Merchant.status == "pending") == 0


def test_page_routes_are_not_in_the_openapi_schema(app: Any) -> None:
    paths = set(app.openapi()["paths"])
    for _method, path in _post_routes():
        assert path not in paths


def test_bad_store_input_shows_chinese_field_errors_and_changes_nothing(
    pages: PageClient, world: World
) -> None:
    url = f"/console/m/{world.a.id}/stores/new"
    client = pages.sign_in(world.a.owner_id)
    bad = {**STORE_FORM, "name": "  ", "lat": "abc", "lng": "1e400", "phone": "9" * 30}
    r = client.form_post(url, bad)
    assert r.status_code == 422
    assert "text/html" in r.headers["content-type"]
    assert field_error(r.text, "name") == "此项必填"
    assert "请输入纬度" in (field_error(r.text, "lat") or "")
    assert "请输入经度" in (field_error(r.text, "lng") or "")
    assert field_error(r.text, "phone") == "不能超过 20 个字符"
    assert 'value="科苑路1号"' in r.text  # what the user typed is kept
    # Outside China: next to the coordinate that is wrong.
    r = client.form_post(url, {**STORE_FORM, "lat": "48.85", "lng": "2.35"})
    assert r.status_code == 422
    assert field_error(r.text, "lat") is None
    assert "中国境内" in (field_error(r.text, "lng") or "")
    assert count(world, Store, Store.merchant_id == world.a.id) == 2


BAD_APPLICATIONS = [
    {"license_no": "短"},
    {"contact_phone": "abc"},
    {"category_id": "99999999999999999999999999"},
    {"category_id": "123456"},
    {"category_id": "-1"},
    {"name": "x" * 101},
    {"name": ""},
    {"description": "字" * 5001},
    {"name": "a\x00b"},
]


def test_bad_applications_change_nothing(pages: PageClient, world: World) -> None:
    body = {"name": "新店", "contact_phone": "13712345678", "license_no": "91440300X1"}
    before = count(world, Merchant)
    client = pages.sign_in(world.consumer_id)
    for overrides in BAD_APPLICATIONS:
        r = client.form_post("/console/apply", {**body, **overrides})
        assert r.status_code == 422, (overrides, r.text)
        assert "text/html" in r.headers["content-type"]
        assert 'class="field-error"' in r.text or "data-form-error" in r.text, overrides
    assert count(world, Merchant) == before
    r = client.form_post("/console/apply", body)
    assert r.status_code == 303
    assert count(world, Merchant) == before + 1


def test_register_login_logout(pages: PageClient, world: World) -> None:
    client = pages.sign_in(None)
    phone = "13512340000"
    r = client.form_post(
        "/register",
        {"phone": "123", "name": "小李", "password": "short", "password_confirm": "short"},
    )
    assert r.status_code == 422
    assert field_error(r.text, "phone") == "请输入 11 位中国大陆手机号"
    assert field_error(r.text, "password") == "密码至少 8 位"
    assert 'value="小李"' in r.text and 'value="short"' not in r.text  # passwords never echoed
    r = client.form_post(
        "/register",
        {"phone": phone, "name": "小李", "password": "long-pass-1", "password_confirm": "other-1"},
    )
    assert field_error(r.text, "password_confirm") == "两次输入的密码不一致"
    taken = world.phones["consumer"]
    r = client.form_post(
        "/register",
        {
            "phone": taken,
            "name": "小李",
            "password": "long-pass-1",
            "password_confirm": "long-pass-1",
        },
    )
    assert r.status_code == 409 and field_error(r.text, "phone") == "该手机号已注册"
    assert count(world, User, User.phone == phone) == 0

    r = client.form_post(
        "/register",
        {
            "phone": phone,
            "name": "小李",
            "password": "long-pass-1",
            "password_confirm": "long-pass-1",
            "next": "/console/apply",
        },
    )
    assert r.status_code == 303 and r.headers["location"] == "/console/apply"
    assert client.get("/me").status_code == 200
    # Signing in rotated the CSRF token: the old one no longer works.
    assert client.form_post("/logout").status_code == 403
    token = _csrf(client.get("/me").text)
    r = client.post("/logout", data={"csrf_token": token})
    assert r.status_code == 303
    assert client.get("/me").status_code == 303

    token = _csrf(client.get("/login").text)
    r = client.post(
        "/login",
        data={"phone": phone, "password": "long-pass-1", "csrf_token": token, "next": "//evil.cn"},
    )
    assert r.status_code == 303 and r.headers["location"] == "/"  # never off-site
    assert client.get("/me").status_code == 200


def _csrf(html: str) -> str:
    import re

    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def test_login_is_throttled_like_the_api(pages: PageClient, world: World, settings: Any) -> None:
    client = pages.sign_in(None)
    phone = world.phones["consumer"]
    for _ in range(settings.login_max_failures):
        r = client.form_post("/login", {"phone": phone, "password": "wrong-password"})
        assert r.status_code == 401 and "手机号或密码错误" in r.text
    r = client.form_post("/login", {"phone": phone, "password": PASSWORD})
    assert r.status_code == 429 and "登录失败次数过多" in r.text
    assert r.headers.get("set-cookie") is None or "uid" not in r.headers["set-cookie"]


def test_the_api_ignores_the_page_session(pages: PageClient, world: World) -> None:
    """Cookie auth on the API would need CSRF protection: bearer tokens only there."""
    client = pages.sign_in(world.operator_id)
    assert client.get("/me").status_code == 200
    r = client.get("/api/v1/me")
    assert r.status_code == 401
    r = client.get("/api/v1/admin/merchants")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "set-cookie" not in r.headers


def test_session_cookie_is_signed_httponly_and_lax(pages: PageClient, world: World) -> None:
    r = pages.get("/login")
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert r.headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    key = session_key(pages.app.state.secret_key)
    value = cookie.split(";")[0].split("=", 1)[1]
    data = decode_session(key, value)
    assert data is not None and "uid" not in data
    # A forged cookie (another key, or an edited payload) is worth nothing.
    forged = encode_session(session_key("another-secret"), {"uid": world.operator_id, "iat": 1})
    pages.cookies.clear()
    pages.cookies.set(SESSION_COOKIE, forged)
    assert pages.get("/admin/applications").status_code == 303
    payload, _, sig = encode_session(key, {"uid": world.consumer_id, "iat": 10**10}).partition(".")
    pages.cookies.clear()
    pages.cookies.set(SESSION_COOKIE, payload[:-2] + "xx." + sig)
    assert pages.get("/me").status_code == 303


def test_secure_cookie_behind_https(db_url: str, tmp_path: Any) -> None:
    app = create_app(make_settings(db_url, tmp_path, public_base_url="https://o2o.example.cn"))
    with PageClient(app) as client:
        assert "Secure" in client.get("/login").headers["set-cookie"]


def test_error_pages_are_html_in_chinese_and_the_api_keeps_problem_json(
    pages: PageClient, world: World
) -> None:
    for url in ("/no-such-page", "/console/m/abc", f"/console/m/{2**70}", "/console/m/0"):
        r = pages.sign_in(world.a.owner_id).get(url)
        assert r.status_code == 404, url
        assert "text/html" in r.headers["content-type"] and "页面不存在" in r.text
    r = pages.sign_in(world.operator_id).get("/admin/merchants?status=bogus")
    assert r.status_code == 400 and "text/html" in r.headers["content-type"]
    r = pages.get("/api/v1/no-such-thing")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem")
    r = pages.sign_in(world.a.owner_id).post(
        "/console/apply",
        content=b"name=" + b"x" * 600_000,
        headers={"X-CSRF-Token": TOKEN, "content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 413 and "提交的内容过大" in r.text
    assert count(world, Merchant) == 3


def test_an_unexpected_error_on_a_page_is_a_chinese_500_page(app: Any, db: Any) -> None:
    from o2o.web.context import page_router

    router = page_router()

    @router.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    app.include_router(router)
    with PageClient(app) as client:
        r = client.get("/boom")
    assert r.status_code == 500
    assert "服务器开小差了" in r.text and "secret internals" not in r.text
    assert "text/html" in r.headers["content-type"]


def test_operator_reviews_and_sets_commission(pages: PageClient, world: World) -> None:
    client = pages.sign_in(world.operator_id)
    pending = world.pending_merchant_id
    r = client.form_post(f"/admin/merchants/{pending}/reject", {"reason": "  "})
    assert r.status_code == 422 and "请填写原因" in r.text
    assert count(world, Merchant, Merchant.status == "pending") == 1
    r = client.form_post(f"/admin/merchants/{pending}/reject", {"reason": "执照模糊"})
    assert r.status_code == 303
    with world.db.transaction(readonly=True) as s:
        merchant = s.get(Merchant, pending)
        assert merchant is not None
        assert (merchant.status, merchant.status_reason) == ("rejected", "执照模糊")
    # Deciding twice is a clear message, not an error page.
    r = client.form_post(f"/admin/merchants/{pending}/approve")
    assert r.status_code == 303
    assert "商户当前状态为「已驳回」" in client.get(r.headers["location"]).text

    url = f"/admin/merchants/{world.a.id}/suspend"
    assert client.form_post(url, {"reason": ""}).status_code == 422
    assert client.form_post(url, {"reason": "投诉较多"}).status_code == 303
    assert count(world, Merchant, Merchant.status == "suspended") == 1
    assert client.form_post(f"/admin/merchants/{world.a.id}/reinstate").status_code == 303
    assert count(world, Merchant, Merchant.status == "suspended") == 0

    url = f"/admin/categories/{world.category_id}/commission"
    for bad in ("abc", "-1", "100.5", "6.555", "1e9", "NaN"):
        r = client.form_post(url, {"commission_percent": bad})
        assert r.status_code == 422, bad
        assert "请输入 0–100 之间的数" in r.text
    r = client.form_post(url, {"commission_percent": "6.5"})
    assert r.status_code == 303
    with world.db.transaction(readonly=True) as s:
        category = s.get(Category, world.category_id)
        assert category is not None and category.commission_bp == 650
    r = client.post(
        url,
        data={"commission_percent": "12.34"},
        headers={"X-CSRF-Token": TOKEN, "HX-Request": "true"},
    )
    assert r.status_code == 200 and "12.34%" in r.text and "<tr" in r.text and "<html" not in r.text


def test_staff_pages_follow_the_service_rules(pages: PageClient, world: World) -> None:
    url = f"/console/m/{world.a.id}/staff/new"
    manager = pages.sign_in(world.a.manager_id)
    r = manager.form_post(
        url, {"phone": "13999999999", "role": "clerk", "store_ids": [world.a.store_ids[0]]}
    )
    assert r.status_code == 404 and field_error(r.text, "phone") == "该手机号尚未注册"
    consumer_phone = world.phones["consumer"]
    r = manager.form_post(url, {"phone": consumer_phone, "role": "manager"})
    assert r.status_code == 403 and field_error(r.text, "role") == "只有店主可以邀请店长或店主"
    r = manager.form_post(url, {"phone": consumer_phone, "role": "clerk"})
    assert r.status_code == 422 and field_error(r.text, "store_ids") == "店员至少需要一个门店"
    r = manager.form_post(
        url, {"phone": consumer_phone, "role": "clerk", "store_ids": [str(world.b.store_ids[0])]}
    )
    assert r.status_code == 422 and "不属于该商户" in (field_error(r.text, "store_ids") or "")
    assert count(world, Membership, Membership.user_id == world.consumer_id) == 0
    r = manager.form_post(
        url, {"phone": consumer_phone, "role": "clerk", "store_ids": [str(world.a.store_ids[1])]}
    )
    assert r.status_code == 303
    # An invitation, not a membership: the consumer sees it on 我的 and accepts it there.
    assert count(world, Membership, Membership.user_id == world.consumer_id) == 0
    assert "待接受的邀请" in manager.get(f"/console/m/{world.a.id}/staff").text
    consumer = pages.sign_in(world.consumer_id)
    me = consumer.get("/me").text
    assert "商户邀请" in me and "邀请您成为" in me
    [invitation_id] = re.findall(r'action="/me/invitations/(\d+)/accept"', me)
    r = consumer.form_post(f"/me/invitations/{invitation_id}/accept")
    assert r.status_code == 303 and r.headers["location"] == f"/console/m/{world.a.id}"
    assert count(world, Membership, Membership.user_id == world.consumer_id) == 1
    # An invitation can be withdrawn before it is answered; then it cannot be accepted.
    other_phone = world.phones["other_consumer"]
    manager = pages.sign_in(world.a.manager_id)  # one client: sign_in switches who it is
    r = manager.form_post(
        url, {"phone": other_phone, "role": "clerk", "store_ids": [str(world.a.store_ids[0])]}
    )
    assert r.status_code == 303
    staff_page = manager.get(f"/console/m/{world.a.id}/staff").text
    [revoke] = re.findall(r'action="(/console/m/\d+/invitations/\d+/revoke)"', staff_page)
    assert manager.form_post(revoke).status_code == 303
    assert "待接受的邀请" not in manager.get(f"/console/m/{world.a.id}/staff").text
    other = pages.sign_in(world.other_consumer_id)
    assert "商户邀请" not in other.get("/me").text
    invitation_id = revoke.split("/")[-2]
    r = other.form_post(f"/me/invitations/{invitation_id}/accept")
    assert r.status_code == 303 and r.headers["location"] == "/me"
    assert count(world, Membership, Membership.user_id == world.other_consumer_id) == 0
    owner = pages.sign_in(world.a.owner_id)
    r = owner.form_post(f"/console/m/{world.a.id}/staff/{world.a.owner_id}/remove")
    assert r.status_code == 303
    assert "不能移除唯一的店主" in owner.get(r.headers["location"]).text
