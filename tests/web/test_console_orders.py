"""订单 pages (console_orders) on SQLite and PostgreSQL: a clerk sees the API's orders only,
managers ship goods orders (CSRF, Chinese field errors), dashboard cards with real numbers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.shipping_support import paid_goods_order, sf_number
from tests.voucher_support import a_deal, order_status, paid_order
from tests.web.support import PageClient, field_error


@pytest.fixture
def pages(app: Any) -> Iterator[PageClient]:
    with PageClient(app) as client:
        yield client


def test_clerk_sees_only_service_orders_for_its_store(
    pages: PageClient, world: Any, api: Any
) -> None:
    here = paid_order(world.db, world.consumer_id, a_deal(world).listing_id).order_no
    deal_2 = a_deal(world, stores=[world.a.store_ids[1]])
    elsewhere = paid_order(world.db, world.consumer_id, deal_2.listing_id).order_no
    goods = paid_goods_order(api, world).order_no
    base = f"/console/m/{world.a.id}/orders"

    pages.sign_in(world.a.manager_id)
    listed = pages.get(base).text
    assert here in listed and elsewhere in listed and goods in listed
    only_goods = pages.get(base, params={"kind": "goods"}).text
    assert goods in only_goods and here not in only_goods
    assert here not in pages.get(base, params={"status": "shipped"}).text
    # Nonsense filters are ignored, never a 500.
    assert pages.get(base, params={"status": "x" * 30, "before": "9" * 30}).status_code == 200
    # Unicode digits pass str.isdigit() but not int(): still ignored, never a 500.
    for cursor in ("²", "１２", "٣", "0", "-1"):
        assert pages.get(base, params={"before": cursor}).status_code == 200
    for section in ("listings", "after-sales", "reviews"):
        r = pages.get(f"/console/m/{world.a.id}/{section}", params={"before": "²", "after": "²"})
        assert r.status_code == 200, (section, r.status_code)
    for no in (here, elsewhere, goods):
        assert pages.get(f"{base}/{no}").status_code == 200

    pages.sign_in(world.a.clerk_id)
    listed = pages.get(base).text
    assert here in listed and elsewhere not in listed and goods not in listed
    assert pages.get(f"{base}/{here}").status_code == 200
    for no in (elsewhere, goods):
        assert pages.get(f"{base}/{no}").status_code == 404
    # Another merchant's manager: not staff here.
    assert pages.sign_in(world.b.manager_id).get(f"{base}/{here}").status_code in (403, 404)


def test_manager_ships_a_goods_order(pages: PageClient, world: Any, api: Any) -> None:
    order = paid_goods_order(api, world).order_no
    url = f"/console/m/{world.a.id}/orders/{order}"
    # A clerk cannot see the goods order, let alone ship it.
    pages.sign_in(world.a.clerk_id)
    r = pages.form_post(f"{url}/ship", {"carrier": "SF", "tracking_no": sf_number()})
    assert r.status_code == 403
    pages.sign_in(world.a.manager_id)
    assert "确认发货" in pages.get(url).text
    # No CSRF token: refused, nothing shipped.
    r = pages.form_post(f"{url}/ship", {"carrier": "SF", "tracking_no": sf_number()}, token=False)
    assert r.status_code == 403
    # Bad input: Chinese messages next to the fields, nothing shipped.
    r = pages.form_post(f"{url}/ship", {"carrier": "", "tracking_no": ""})
    assert r.status_code == 422
    assert field_error(r.text, "carrier") == "请选择快递公司"
    assert field_error(r.text, "tracking_no") == "请输入运单号"
    r = pages.form_post(f"{url}/ship", {"carrier": "SF", "tracking_no": "123"})
    assert r.status_code == 422
    assert "运单号格式不正确" in (field_error(r.text, "tracking_no") or "")
    r = pages.form_post(f"{url}/ship", {"carrier": "NOPE", "tracking_no": sf_number()})
    assert r.status_code == 422 and field_error(r.text, "carrier")
    assert order_status(world.db, order) == "paid"

    number = sf_number()
    r = pages.form_post(f"{url}/ship", {"carrier": "SF", "tracking_no": number})
    assert r.status_code == 303, r.text
    assert order_status(world.db, order) == "shipped"
    shown = pages.get(url).text
    assert number in shown and "顺丰速运" in shown and "确认发货" not in shown


def test_dashboard_cards_show_todays_orders_and_gmv(
    pages: PageClient, world: Any, api: Any
) -> None:
    board = pages.sign_in(world.a.manager_id).get(f"/console/m/{world.a.id}").text
    assert re.search(r"今日订单</div>\s*<div class=\"value\">0 单", board)
    paid_goods_order(api, world, price_fen=3000)
    paid_order(world.db, world.consumer_id, a_deal(world, price_fen=5000).listing_id)
    board = pages.get(f"/console/m/{world.a.id}").text
    assert re.search(r"今日订单</div>\s*<div class=\"value\">2 单", board), board
    assert re.search(r"今日成交额</div>\s*<div class=\"value\">¥80.00", board), board
    # Merchant totals are for owners and managers (as in the API): a clerk does not see them.
    clerk_board = pages.sign_in(world.a.clerk_id).get(f"/console/m/{world.a.id}").text
    assert "今日成交额" not in clerk_board and "今日核销" in clerk_board
