"""Consumer order pages after payment, without a browser, on SQLite and PostgreSQL: the parcel
timeline, 确认收货, 售后 (form errors in Chinese, the request's status), 写评价 (only when the
service allows it; bad ratings are field errors, never a 500), reviews with the merchant's
reply on the listing page, and that all of it is the order's consumer's only (404 otherwise)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from o2o.accounts.models import User
from o2o.config import Settings
from o2o.merchants.access import load_actor
from o2o.orders.models import Order
from o2o.reviews import service as reviews
from o2o.reviews.models import Review
from o2o.shipping.models import AfterSalesRequest
from o2o.timeutil import utcnow
from tests.shipping_support import (
    notify_tracking,
    orm_goods_order,
    paid_goods_order,
    sf_number,
    shift_order,
)
from tests.support import World
from tests.voucher_support import a_deal, paid_order, redeem
from tests.web.support import PageClient, field_error


@pytest.fixture
def pages(app: Any) -> Iterator[PageClient]:
    with PageClient(app) as client:
        yield client


def status_of(world: World, order_no: str) -> str:
    with world.db.transaction(readonly=True) as session:
        return session.scalar(select(Order.status).where(Order.order_no == order_no))


def review_count(world: World) -> int:
    with world.db.transaction(readonly=True) as session:
        return int(session.scalar(select(func.count()).select_from(Review)) or 0)


def test_goods_order_timeline_receipt_review_and_listing(
    pages: PageClient, api: Any, world: World, settings: Settings
) -> None:
    order = paid_goods_order(api, world, lines=2)
    url = f"/orders/{order.order_no}"
    pages.sign_in(world.consumer_id)
    r = pages.get(url)
    assert r.status_code == 200, r.text
    assert "商家正在备货" in r.text and "确认收货" not in r.text and "写评价" not in r.text

    number = sf_number()
    shipped = api.post(
        f"/api/v1/merchants/{world.a.id}/orders/{order.order_no}/shipments",
        json={"carrier": "SF", "tracking_no": number},
        as_=world.tokens["manager"],
    )
    assert shipped.status_code == 201, shipped.text
    now = utcnow()
    events = [
        {"time": (now - timedelta(hours=3)).isoformat(), "status": "collected", "location": "深圳"},
        {
            "time": (now - timedelta(hours=1)).isoformat(),
            "status": "in_transit",
            "location": "广州",
        },
    ]
    assert notify_tracking(api, settings, "SF", number, events).status_code == 200

    r = pages.get(url)
    assert r.status_code == 200, r.text
    assert "顺丰" in r.text and number in r.text and "确认收货" in r.text
    # The timeline: newest first.
    assert r.text.index("运输中") < r.text.index("已揽收") < r.text.index("等待快递揽收")
    assert "写评价" not in r.text

    # Another consumer: every page and action of this order is a 404 and changes nothing.
    pages.sign_in(world.other_consumer_id)
    assert pages.get(url).status_code == 404
    assert pages.form_post(f"{url}/confirm-receipt").status_code == 404
    assert pages.form_post(f"{url}/reviews", {"rating": 5, "line_id": 1}).status_code == 404
    assert pages.form_post(f"{url}/after-sales", {"reason": "x"}).status_code == 404
    assert status_of(world, order.order_no) == "shipped"

    pages.sign_in(world.consumer_id)
    assert pages.form_post(f"{url}/confirm-receipt", token=False).status_code == 403
    assert status_of(world, order.order_no) == "shipped"
    r = pages.form_post(f"{url}/confirm-receipt")
    assert r.status_code == 303 and r.headers["location"] == url
    assert status_of(world, order.order_no) == "completed"
    # Twice: a message, not an error page.
    assert pages.form_post(f"{url}/confirm-receipt").status_code == 303

    r = pages.get(url)
    assert r.text.count("发布评价") == 2 and "申请售后" in r.text
    assert 'type="radio" name="rating" value="5"' in r.text and "5 星" in r.text

    first, _second = order.line_ids
    for bad in ("6", "0", "abc", "", "9" * 30):
        r = pages.form_post(f"{url}/reviews", {"line_id": first, "rating": bad, "text": "好"})
        assert r.status_code == 422, (bad, r.status_code)
        assert field_error(r.text, "rating") == "请选择 1–5 星评分", bad
    r = pages.form_post(f"{url}/reviews", {"line_id": first, "rating": 4, "text": "长" * 1001})
    assert r.status_code == 422 and field_error(r.text, "text") == "不能超过 1000 个字符"
    for odd in ("²", "abc", "١"):
        r = pages.form_post(f"{url}/reviews", {"line_id": odd, "rating": 4})
        assert r.status_code == 422 and "请选择要评价的商品" in r.text, odd
    r = pages.form_post(f"{url}/reviews", {"line_id": 999999999, "rating": 4})
    assert r.status_code == 422 and "订单中没有该商品" in r.text
    assert review_count(world) == 0

    r = pages.form_post(f"{url}/reviews", {"line_id": first, "rating": 5, "text": "包装很好"})
    assert r.status_code == 303, r.text
    r = pages.get(url)
    assert "包装很好" in r.text and "★★★★★" in r.text and r.text.count("发布评价") == 1
    # The same line again: the service says no, shown on the page.
    r = pages.form_post(f"{url}/reviews", {"line_id": first, "rating": 3})
    assert r.status_code == 409 and "该商品已评价过" in r.text
    assert review_count(world) == 1

    # The merchant replies; the listing page shows the rating, the review and the reply.
    with world.db.transaction() as session:
        review = session.scalar(select(Review))
        owner = load_actor(session, session.get(User, world.a.owner_id))
        reviews.reply(session, owner, world.a.id, review.id, "感谢支持，欢迎再来")
    listing = pages.sign_in(None).get(f"/l/{order.listing_ids[0]}")
    assert listing.status_code == 200, listing.text
    assert "5.0 分 · 1 条" in listing.text
    assert "包装很好" in listing.text and "商家回复：感谢支持，欢迎再来" in listing.text
    for before in ("abc", "²", "9" * 19, ""):
        all_reviews = pages.get(f"/l/{order.listing_ids[0]}/reviews", params={"before": before})
        assert all_reviews.status_code == 200 and "包装很好" in all_reviews.text, before
    other = pages.get(f"/l/{order.listing_ids[1]}")
    assert "暂无评价" in other.text


def test_after_sales_form_errors_status_and_cancel(pages: PageClient, world: World) -> None:
    order = orm_goods_order(world, status="completed", lines=2, price_fen=2000)
    url = f"/orders/{order.order_no}"
    pages.sign_in(world.consumer_id)
    r = pages.get(url)
    assert r.status_code == 200 and "申请售后" in r.text and 'value="40.00"' in r.text
    first = order.line_ids[0]
    base = {"kind": "refund_only", "reason": "商品破损", "line_ids": first, "amount": "20.00"}
    cases = [
        ({"amount": "abc"}, "amount", "请输入数字"),
        ({"amount": "0"}, "amount", "必须大于 0"),
        ({"amount": "1.234"}, "amount", "最多保留 2 位小数"),
        ({"amount": "20.01"}, "amount", "退款金额不能超过可退金额 ¥20.00"),
        ({"line_ids": ""}, "line_ids", "请选择要售后的商品"),
        ({"line_ids": "abc"}, "line_ids", "请选择要售后的商品"),
        ({"reason": ""}, "reason", "请填写售后原因（最多 200 字）"),
        ({"kind": "steal"}, "kind", "请选择售后类型"),
    ]
    for change, name, message in cases:
        r = pages.form_post(f"{url}/after-sales", {**base, **change})
        assert r.status_code == 422, (change, r.status_code)
        assert field_error(r.text, name) == message, (change, r.text[-3000:])
    r = pages.form_post(f"{url}/after-sales", {**base, "line_ids": 999999999})
    assert r.status_code == 422 and "订单中没有该商品" in r.text
    with world.db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(AfterSalesRequest)) == 0

    r = pages.form_post(f"{url}/after-sales", {**base, "amount": "12.50"})
    assert r.status_code == 303, r.text
    r = pages.get(url)
    assert "待商家处理" in r.text and "¥12.50" in r.text and "撤销申请" in r.text
    with world.db.transaction(readonly=True) as session:
        request = session.scalar(select(AfterSalesRequest))
        assert request.amount_fen == 1250
    # The line with an open request cannot be asked for twice (only the other one is offered).
    assert f'name="line_ids" value="{first}"' not in r.text

    cancel = f"{url}/after-sales/{request.id}/cancel"
    pages.sign_in(world.other_consumer_id)
    assert pages.form_post(cancel).status_code == 404
    pages.sign_in(world.consumer_id)
    assert pages.form_post(cancel).status_code == 303
    assert "已撤销" in pages.get(url).text
    assert pages.form_post(cancel).status_code == 303  # twice: a message

    # Past the 7 days after receipt: no form, and a post is refused without a change.
    shift_order(world.db, order.order_no, completed_at=utcnow() - timedelta(days=8))
    r = pages.get(url)
    assert "申请售后" not in r.text
    r = pages.form_post(f"{url}/after-sales", base)
    assert r.status_code == 409
    with world.db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(AfterSalesRequest)) == 1


def test_service_order_is_reviewed_after_redemption(
    pages: PageClient, api: Any, world: World
) -> None:
    deal = a_deal(world)
    bought = paid_order(world.db, world.consumer_id, deal.listing_id)
    url = f"/orders/{bought.order_no}"
    pages.sign_in(world.consumer_id)
    r = pages.get(url)
    assert r.status_code == 200 and "发布评价" not in r.text and "确认收货" not in r.text
    r = pages.form_post(f"{url}/reviews", {"rating": 5, "line_id": 1})
    assert r.status_code in (409, 422) and review_count(world) == 0

    assert redeem(api, world, bought.codes[0]).status_code == 200
    r = pages.get(url)
    assert "发布评价" in r.text
    with world.db.transaction(readonly=True) as session:
        line_id = session.scalar(select(Review.order_line_id))  # none yet
        assert line_id is None
        from o2o.orders.models import OrderLine

        line_id = session.scalar(
            select(OrderLine.id).join(Order).where(Order.order_no == bought.order_no)
        )
    r = pages.form_post(f"{url}/reviews", {"rating": "3", "line_id": line_id, "text": "味道不错"})
    assert r.status_code == 303, r.text
    assert "味道不错" in pages.get(url).text
    assert "味道不错" in pages.get(f"/l/{deal.listing_id}").text
