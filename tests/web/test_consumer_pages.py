"""Consumer shop pages without a browser, on SQLite and PostgreSQL: search, listing, checkout
(CSRF, login, one order on a double submit), my orders (another consumer's → 404), cancel,
the voucher QR behind the page session, 随时退."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from o2o.channels import service as channels
from o2o.channels.middleware import VISITOR_COOKIE
from o2o.fulfilment.models import Voucher
from o2o.orders.models import Order
from o2o.payments.models import Payment
from o2o.search import indexer
from tests.checkout_support import ADDRESS, make_goods
from tests.support import World
from tests.voucher_support import a_deal, paid_order, set_listing
from tests.web.support import PageClient


@pytest.fixture
def pages(app: Any) -> Iterator[PageClient]:
    with PageClient(app) as client:
        yield client


def indexed_deal(world: World, **listing: Any) -> int:
    deal = a_deal(world, title="麻辣火锅双人餐", **listing)
    with world.db.transaction() as session:
        indexer.listing_changed(session, deal.listing_id)
    return deal.listing_id


def orders_of(world: World, user_id: int) -> list[Order]:
    with world.db.transaction(readonly=True) as session:
        return list(session.scalars(select(Order).where(Order.user_id == user_id)))


def test_search_finds_the_deal_with_price_and_original_price(
    pages: PageClient, world: World
) -> None:
    listing_id = indexed_deal(world)
    r = pages.sign_in(None).get("/search", params={"q": "火锅"})
    assert r.status_code == 200, r.text
    assert f'href="/l/{listing_id}"' in r.text
    assert "¥50.00" in r.text and "<del" in r.text and "¥100.00" in r.text
    # Filters narrow: no goods match.
    # The filter form sends "" for 全部/不限.
    empty = {"q": "火锅", "kind": "", "category_id": "", "sort": "", "radius_m": ""}
    r = pages.get("/search", params=empty)
    assert r.status_code == 200 and f'href="/l/{listing_id}"' in r.text
    r = pages.get("/search", params={"q": "火锅", "kind": "goods"})
    assert f'href="/l/{listing_id}"' not in r.text
    # Bad input is a page, never a 500.
    for params in ({"q": "x" * 300}, {"radius_m": "99999999999999999999"}, {"sort": "nope"}):
        r = pages.get("/search", params=params)
        assert r.status_code in (200, 400, 422), (params, r.status_code)
    r = pages.get("/search", params={"cursor": "garbage"})
    assert r.status_code == 200 and "flash-error" in r.text


def test_listing_page_shows_rules_stores_and_map_link(pages: PageClient, world: World) -> None:
    listing_id = indexed_deal(world)
    set_listing(world.db, listing_id, refund_anytime=True)
    r = pages.sign_in(world.consumer_id).get(f"/l/{listing_id}")
    assert r.status_code == 200, r.text
    for text in (
        "有效期",
        "随时退",
        "过期自动退",
        "需预约",
        "立即购买",
        "https://uri.amap.com/marker",
    ):
        assert text in r.text, text
    assert pages.get("/l/999999999").status_code == 404
    assert pages.get("/l/99999999999999999999999").status_code in (404, 422)


def test_checkout_needs_login_and_csrf(pages: PageClient, world: World) -> None:
    listing_id = indexed_deal(world)
    r = pages.sign_in(None).get("/checkout", params={"listing_id": listing_id})
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    pages.sign_in(world.consumer_id)
    r = pages.form_post("/checkout", {"listing_id": listing_id, "quantity": 1}, token=False)
    assert r.status_code == 403
    assert orders_of(world, world.consumer_id) == []


def test_double_submit_creates_one_order_and_goes_to_the_cashier(
    pages: PageClient, world: World
) -> None:
    listing_id = indexed_deal(world)
    pages.sign_in(world.consumer_id)
    r = pages.get("/checkout", params={"listing_id": listing_id, "quantity": 2})
    assert r.status_code == 200 and "¥100.00" in r.text
    form = {"listing_id": listing_id, "quantity": 2, "idempotency_key": "k-once-123456"}
    first = pages.form_post("/checkout", form)
    second = pages.form_post("/checkout", form)
    assert first.status_code == 303, first.text
    assert first.headers["location"].startswith("/sandbox/cashier/")
    assert second.headers["location"] == first.headers["location"]
    found = orders_of(world, world.consumer_id)
    assert len(found) == 1 and found[0].payable_fen == 10_000
    with world.db.transaction(readonly=True) as session:
        assert session.scalar(select(Payment.provider)) == "sandbox"
    # A new form (new key) is a new order.
    pages.form_post("/checkout", {**form, "idempotency_key": "k-other-123456"})
    assert len(orders_of(world, world.consumer_id)) == 2


def test_page_checkout_is_attributed_to_the_channel_the_visitor_came_through(
    pages: PageClient, world: World
) -> None:
    with world.db.transaction() as session:
        channels.create_channel(session, code="metro-poster", name="地铁海报", kind="poster_qr")
    listing_id = indexed_deal(world)
    # An anonymous visit through the poster's link, then sign-in on the same phone.
    pages.sign_in(None)
    assert pages.get("/", params={"ch": "metro-poster"}).status_code == 200
    visitor = pages.cookies.get(VISITOR_COOKIE)
    assert visitor
    pages.sign_in(world.consumer_id)
    pages.cookies.set(VISITOR_COOKIE, visitor)
    form = {"listing_id": listing_id, "quantity": 1, "idempotency_key": "k-channel-1234"}
    assert pages.form_post("/checkout", form).status_code == 303
    [order] = orders_of(world, world.consumer_id)
    assert order.channel == "metro-poster"


def test_checkout_errors_are_shown_on_the_form(pages: PageClient, world: World) -> None:
    goods = make_goods(world.db, world.a.id, world.category_id, price_fen=1999)
    pages.sign_in(world.consumer_id)
    r = pages.get("/checkout", params={"listing_id": goods.listing_id, "sku_id": goods.sku_id})
    assert r.status_code == 200 and "收货地址" in r.text
    base = {"listing_id": goods.listing_id, "sku_id": goods.sku_id, "quantity": 1}
    r = pages.form_post("/checkout", {**base, "idempotency_key": "k-addr-1234"})
    assert r.status_code == 422 and 'id="f-detail-error"' in r.text
    r = pages.form_post("/checkout", {**base, "quantity": 100000, **ADDRESS})
    assert r.status_code == 422
    assert orders_of(world, world.consumer_id) == []
    r = pages.form_post("/checkout", {**base, "idempotency_key": "k-addr-5678", **ADDRESS})
    assert r.status_code == 303, r.text
    [order] = orders_of(world, world.consumer_id)
    assert order.shipping_address["detail"] == ADDRESS["detail"]


def test_orders_are_the_consumers_own(pages: PageClient, world: World) -> None:
    listing_id = indexed_deal(world)
    bought = paid_order(world.db, world.consumer_id, listing_id)
    pages.sign_in(world.consumer_id)
    r = pages.get("/orders")
    assert r.status_code == 200 and bought.order_no in r.text and "待使用" in r.text
    r = pages.get(f"/orders/{bought.order_no}")
    assert r.status_code == 200 and "待使用" in r.text
    code = bought.codes[0]
    assert f"/orders/{bought.order_no}/vouchers/{code}/qr.svg" in r.text
    qr = pages.get(f"/orders/{bought.order_no}/vouchers/{code}/qr.svg")
    assert qr.status_code == 200 and qr.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in qr.content
    # Somebody else: 404 for the order, the QR and its refund; not in their list.
    pages.sign_in(world.other_consumer_id)
    assert bought.order_no not in pages.get("/orders").text
    assert pages.get(f"/orders/{bought.order_no}").status_code == 404
    assert pages.get(f"/orders/{bought.order_no}/vouchers/{code}/qr.svg").status_code == 404
    r = pages.form_post(f"/orders/{bought.order_no}/vouchers/{code}/refund")
    assert r.status_code == 404
    r = pages.form_post(f"/orders/{bought.order_no}/cancel")
    assert r.status_code == 404
    # Anonymous: to the login page.
    r = pages.sign_in(None).get(f"/orders/{bought.order_no}")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_cancel_an_unpaid_order(pages: PageClient, world: World) -> None:
    listing_id = indexed_deal(world)
    pages.sign_in(world.consumer_id)
    pages.form_post("/checkout", {"listing_id": listing_id, "idempotency_key": "k-cancel-1"})
    [order] = orders_of(world, world.consumer_id)
    r = pages.get(f"/orders/{order.order_no}")
    assert "待付款" in r.text and "应付" in r.text and "取消订单" in r.text
    r = pages.form_post(f"/orders/{order.order_no}/cancel")
    assert r.status_code == 303
    [order] = orders_of(world, world.consumer_id)
    assert order.status == "cancelled"
    # A cancelled order's amount is not money paid: no 实付 on its page or in the list.
    for r in (pages.get(f"/orders/{order.order_no}"), pages.get("/orders")):
        assert "已取消" in r.text and "订单金额" in r.text and "实付" not in r.text
    # Twice: a message, not an error page.
    r = pages.form_post(f"/orders/{order.order_no}/cancel")
    assert r.status_code == 303


def test_refund_anytime_button(pages: PageClient, world: World) -> None:
    listing_id = indexed_deal(world)
    set_listing(world.db, listing_id, refund_anytime=True)
    bought = paid_order(world.db, world.consumer_id, listing_id)
    pages.sign_in(world.consumer_id)
    url = f"/orders/{bought.order_no}"
    assert "随时退" in pages.get(url).text
    code = bought.codes[0]
    form = {"idempotency_key": f"{code}-refund"}
    assert pages.form_post(f"{url}/vouchers/{code}/refund", form).status_code == 303
    assert pages.form_post(f"{url}/vouchers/{code}/refund", form).status_code == 303
    with world.db.transaction(readonly=True) as session:
        assert session.scalar(select(Voucher.status).where(Voucher.code == code)) == "refunded"
        assert session.scalar(select(func.count()).select_from(Order)) == 1
    # The refunded voucher's card says so, and no longer asks to be shown to a clerk.
    page = pages.get(url).text
    assert "已退款（" in page and "），退款原路返回" in page
    assert "出示二维码" not in page and f"/vouchers/{code}/qr.svg" not in page


def test_home_shows_nearby_deals(pages: PageClient, world: World) -> None:
    indexed_deal(world)
    r = pages.sign_in(None).get("/")
    assert r.status_code == 200
    assert "附近团购" in r.text
