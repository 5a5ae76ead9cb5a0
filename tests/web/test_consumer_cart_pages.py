"""The consumer's cart without a browser, on SQLite and PostgreSQL: adding goods and deals of
several merchants from the listing page (anonymous too; the cart survives signing in), quantity
changes with Chinese field errors (never a 500), subtotals per merchant and the total, and one
checkout of the whole cart → one order per merchant and kind, one payment."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from o2o.orders.models import Order
from o2o.payments.models import Payment
from o2o.web.session import PageSession
from tests.checkout_support import ADDRESS, make_deal, make_goods
from tests.support import World
from tests.web.support import PageClient, field_error


@pytest.fixture
def pages(app: Any) -> Iterator[PageClient]:
    with PageClient(app) as client:
        yield client


def orders_of(world: World, user_id: int) -> list[Order]:
    with world.db.transaction(readonly=True) as session:
        return list(
            session.scalars(select(Order).where(Order.user_id == user_id).order_by(Order.id))
        )


def test_cart_with_two_merchants_checks_out_as_one_payment(pages: PageClient, world: World) -> None:
    book = make_goods(world.db, world.a.id, world.category_id, price_fen=1999, shipping_fee_fen=500)
    cable = make_goods(world.db, world.b.id, world.category_id, price_fen=4900)
    deal = make_deal(world.db, world.b.id, world.category_id, world.b.store_ids, price_fen=8800)
    pages.sign_in(world.consumer_id)
    assert "购物车是空的" in pages.get("/cart").text

    listing = pages.get(f"/l/{book.listing_id}")
    assert "加入购物车" in listing.text and "立即购买" in listing.text
    add = {"listing_id": book.listing_id, "sku_id": book.sku_id, "quantity": 2, "action": "cart"}
    r = pages.form_post("/cart/add", add)
    assert r.status_code == 303 and r.headers["location"] == f"/l/{book.listing_id}"
    r = pages.form_post("/cart/add", {**add, "quantity": 1})  # the same SKU again: 3 in all
    pages.form_post("/cart/add", {"listing_id": cable.listing_id, "sku_id": cable.sku_id})
    pages.form_post("/cart/add", {"listing_id": deal.listing_id, "quantity": 1})

    r = pages.get("/cart")
    assert r.status_code == 200, r.text
    assert r.text.count('data-testid="cart-group"') == 3  # A goods; B goods; B deals
    assert r.text.count('data-testid="cart-line"') == 3
    assert 'value="3"' in r.text
    assert "¥64.97" in r.text  # A: 3 × 19.99 + 5.00 shipping
    assert "¥49.00" in r.text and "¥88.00" in r.text
    assert "¥201.97" in r.text  # the total

    # Quantity: bad input is a field error in Chinese and changes nothing.
    key = f"{book.listing_id}-{book.sku_id}-0"
    for bad in ("0", "-1", "abc", "100", "", "9" * 40):
        r = pages.form_post("/cart/update", {"key": key, "quantity": bad})
        assert r.status_code == 422, (bad, r.status_code)
        assert field_error(r.text, "quantity") == "数量需为 1–99 的整数", bad
    assert "¥201.97" in pages.get("/cart").text
    assert pages.form_post("/cart/update", {"key": "1-2-3", "quantity": 1}).status_code == 303
    assert pages.form_post("/cart/update", {"key": "<x>", "quantity": 1}).status_code == 303
    r = pages.form_post("/cart/update", {"key": key, "quantity": 1})
    assert r.status_code == 303
    assert "¥161.99" in pages.get("/cart").text  # 19.99 + 5.00 + 49.00 + 88.00 = 161.99

    # Checkout: the address is needed for the goods.
    r = pages.get("/cart/checkout")
    assert r.status_code == 200 and "收货地址" in r.text and "¥161.99" in r.text
    r = pages.form_post("/cart/checkout", {"idempotency_key": "cart-key-0001"})
    assert r.status_code == 422 and field_error(r.text, "detail") == "此项必填"
    r = pages.form_post("/cart/checkout", {"idempotency_key": "cart-key-0001", **ADDRESS})
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith("/sandbox/cashier/")
    found = orders_of(world, world.consumer_id)
    assert [(o.merchant_id, o.kind, o.payable_fen) for o in found] == [
        (world.a.id, "goods", 2499),
        (world.b.id, "goods", 4900),
        (world.b.id, "service", 8800),
    ]
    assert len({o.payment_id for o in found}) == 1
    assert found[2].shipping_address is None
    with world.db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Payment)) == 1
    # The cart is empty afterwards; checking out an empty cart goes back to it.
    assert "购物车是空的" in pages.get("/cart").text
    assert pages.get("/cart/checkout").status_code == 303
    assert len(orders_of(world, world.consumer_id)) == 3


def test_add_to_cart_errors_and_buy_now(pages: PageClient, world: World) -> None:
    goods = make_goods(world.db, world.a.id, world.category_id, price_fen=1000)
    pages.sign_in(None)
    base = {"listing_id": goods.listing_id, "sku_id": goods.sku_id}
    for bad in ("0", "abc", "100", "1.5"):
        r = pages.form_post("/cart/add", {**base, "quantity": bad})
        assert r.status_code == 422, (bad, r.status_code)
        assert field_error(r.text, "quantity") == "数量需为 1–99 的整数"
        assert "加入购物车" in r.text  # the listing page again, with the error
    r = pages.form_post("/cart/add", {"listing_id": goods.listing_id, "quantity": 1})
    assert r.status_code == 422 and field_error(r.text, "sku_id") == "请选择规格"
    r = pages.form_post("/cart/add", {**base, "sku_id": 999999999})
    assert r.status_code in (404, 422) and "<html" in r.text
    for odd in ("abc", "²", "１２", "-1", "9" * 40):
        assert pages.form_post("/cart/add", {"listing_id": odd}).status_code == 422, odd
    assert pages.form_post("/cart/add", {"listing_id": 999999999}).status_code == 404
    assert pages.form_post("/cart/add", base, token=False).status_code == 403
    assert "购物车是空的" in pages.get("/cart").text

    # 立即购买 is the same form: a redirect to the direct checkout, the cart untouched.
    r = pages.form_post("/cart/add", {**base, "quantity": 2, "action": "buy"})
    assert r.status_code == 303
    assert r.headers["location"] == (
        f"/checkout?listing_id={goods.listing_id}&quantity=2&sku_id={goods.sku_id}"
    )
    assert "购物车是空的" in pages.get("/cart").text

    # Anonymous visitors have a cart too; checking out asks them to sign in.
    assert pages.form_post("/cart/add", base).status_code == 303
    assert pages.form_post("/cart/add", {**base, "quantity": 99}).status_code == 422  # 100 > 99
    r = pages.get("/cart")
    assert r.text.count('data-testid="cart-line"') == 1 and "¥10.00" in r.text
    r = pages.get("/cart/checkout")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    # Removing.
    r = pages.form_post("/cart/remove", {"key": f"{goods.listing_id}-{goods.sku_id}-0"})
    assert r.status_code == 303 and "购物车是空的" in pages.get("/cart").text


def test_unavailable_lines_are_shown_apart(pages: PageClient, world: World) -> None:
    goods = make_goods(world.db, world.a.id, world.category_id, price_fen=1000)
    pages.sign_in(world.consumer_id)
    pages.form_post("/cart/add", {"listing_id": goods.listing_id, "sku_id": goods.sku_id})
    from o2o.catalog.models import Listing

    with world.db.transaction() as session:
        session.get(Listing, goods.listing_id).status = "unpublished"
    r = pages.get("/cart")
    assert r.status_code == 200 and "无法购买的商品" in r.text and "去结算" not in r.text
    r = pages.get("/cart/checkout")
    assert r.status_code == 303 and r.headers["location"] == "/cart"
    r = pages.form_post("/cart/checkout", {"idempotency_key": "cart-key-0002", **ADDRESS})
    assert r.status_code == 303 and orders_of(world, world.consumer_id) == []


def test_signing_in_keeps_the_cart_but_nothing_else() -> None:
    session = PageSession({"cart": [[1, 2, None, 3]], "loc": {"kind": "gps"}, "csrf": "x" * 40})
    session.login(7, "s" * 32)
    assert session["cart"] == [[1, 2, None, 3]] and session["loc"] == {"kind": "gps"}
    assert session["uid"] == 7 and session["csrf"] != "x" * 40
