"""Console 商品 / 场次 / 售后 / 评价 pages on SQLite and PostgreSQL: forms take yuan and store
exact fen, bad input gets Chinese errors next to the field and changes nothing, clerks and other
merchants are kept out as in the API, CSRF is required, and the dashboard's cards link on."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from o2o.catalog import service as catalog
from o2o.catalog.models import Listing, Sku, TimeSlot
from o2o.inventory import service as inventory
from o2o.money import parse_yuan
from o2o.reviews import service as reviews
from o2o.reviews.models import Review
from o2o.shipping.models import AfterSalesRequest
from o2o.timeutil import to_china, utcnow
from tests.shipping_support import orm_after_sales, orm_goods_order, paid_goods_order, sf_number
from tests.web.support import PageClient, field_error


@pytest.fixture
def pages(app: Any) -> Iterator[PageClient]:
    with PageClient(app) as client:
        yield client


def count_listings(db: Any, merchant_id: int) -> int:
    with db.transaction(readonly=True) as session:
        return session.scalar(
            select(func.count()).select_from(Listing).where(Listing.merchant_id == merchant_id)
        )


def goods_form(world: Any, rows: list[tuple[str, str, str]], **fields: str) -> dict[str, Any]:
    return {
        "title": "手冲咖啡豆",
        "description": "云南小粒",
        "category_id": str(world.category_id),
        "shipping_fee": "0.10",
        "sku_id": [""] * len(rows),
        "sku_name": [r[0] for r in rows],
        "sku_price": [r[1] for r in rows],
        "sku_stock": [r[2] for r in rows],
        **fields,
    }


def deal_form(world: Any, **fields: Any) -> dict[str, Any]:
    return {
        "title": "双人火锅套餐",
        "category_id": str(world.category_id),
        "price": "98",
        "original_price": "158.00",
        "store_ids": [str(s) for s in world.a.store_ids],
        "validity": "days",
        "valid_days": "30",
        "unlimited": "1",
        "refund_anytime": "1",
        "auto_refund_on_expiry": "1",
        **fields,
    }


def created_id(response: Any) -> int:
    assert response.status_code == 303, response.text
    match = re.search(r"/listings/(\d+)/", response.headers["location"])
    assert match, response.headers["location"]
    return int(match.group(1))


def test_parse_yuan_is_exact() -> None:
    assert parse_yuan("0.10") == 10
    assert parse_yuan("12.5") == 1250
    assert parse_yuan("¥1,280") == 128000
    assert parse_yuan("0.29") == 29  # float(0.29) * 100 is 28.999…
    assert parse_yuan("1.10000") == 110
    assert parse_yuan("１２．５") == 1250  # typed with a full-width IME
    for bad in ("", "abc", "1.234", "-1", "1e3", "0x10", "٣", "nan", "1.2.3", "."):
        with pytest.raises(ValueError):
            parse_yuan(bad)


def test_goods_with_two_skus_from_the_form(pages: PageClient, world: Any) -> None:
    base = f"/console/m/{world.a.id}/listings"
    pages.sign_in(world.a.manager_id)
    assert "新建商品" in pages.get(f"{base}/new/goods").text
    # 添加规格 re-renders with one more row and what was typed; nothing is saved.
    r = pages.form_post(
        f"{base}/new/goods", goods_form(world, [("红色", "12.5", "10")], add_sku="1")
    )
    assert r.status_code == 200 and r.text.count('name="sku_name"') == 2
    assert 'value="红色"' in r.text and count_listings(world.db, world.a.id) == 0
    # 删除 takes a new row away.
    form = goods_form(world, [("红色", "12.5", "10"), ("x", "", "")], remove_sku="1")
    r = pages.form_post(f"{base}/new/goods", form)
    assert r.status_code == 200 and r.text.count('name="sku_name"') == 1

    rows = [("红色", "12.5", "10"), ("蓝色", "0.10", "5"), ("", "", "")]  # blank rows are ignored
    listing_id = created_id(pages.form_post(f"{base}/new/goods", goods_form(world, rows)))
    with world.db.transaction(readonly=True) as session:
        listing = session.get(Listing, listing_id)
        assert listing.kind == "goods" and listing.status == "draft"
        assert listing.shipping_fee_fen == 10
        skus = {s.name: s for s in listing.skus}
        assert {n: s.price_fen for n, s in skus.items()} == {"红色": 1250, "蓝色": 10}
        levels = inventory.levels_by_item(session, [s.inventory_item_id for s in skus.values()])
        assert [levels[skus[n].inventory_item_id].available for n in ("红色", "蓝色")] == [10, 5]
        assert listing.price_fen == 10  # lowest SKU
    listed = pages.get(base).text
    assert "手冲咖啡豆" in listed and "¥0.10" in listed and "15（2 个在售规格）" in listed

    # Edit: rename, reprice, switch one off, add one; then an audited stock adjustment.
    edit = f"{base}/{listing_id}/edit"
    page = pages.get(edit).text
    assert 'value="12.50"' in page and 'value="0.10"' in page
    ids = sorted(s.id for s in skus.values())
    form = {
        "title": "手冲咖啡豆 500g",
        "category_id": str(world.category_id),
        "shipping_fee": "8",
        "sku_id": [str(ids[0]), str(ids[1]), ""],
        "sku_name": ["红色款", "蓝色", "绿色"],
        "sku_price": ["13", "0.10", "20.05"],
        "sku_stock": ["", "", "7"],
        "sku_active": ["0", "2"],  # row 1 (蓝色) off
    }
    assert pages.form_post(edit, form).status_code == 303
    with world.db.transaction(readonly=True) as session:
        listing = session.get(Listing, listing_id)
        assert listing.title == "手冲咖啡豆 500g" and listing.shipping_fee_fen == 800
        got = {s.name: (s.price_fen, s.is_active) for s in listing.skus}
        assert got == {"红色款": (1300, True), "蓝色": (10, False), "绿色": (2005, True)}
    stock_url = f"{base}/{listing_id}/skus/{ids[0]}/stock"
    r = pages.form_post(stock_url, {"delta": "-1000", "reason": "盘点"})
    assert r.status_code == 409 and "可售库存不足" in (field_error(r.text, f"delta-{ids[0]}") or "")
    r = pages.form_post(stock_url, {"delta": "5", "reason": ""})
    assert r.status_code == 422 and field_error(r.text, f"reason-{ids[0]}") == "请填写调整原因"
    r = pages.form_post(stock_url, {"delta": "0", "reason": "x"})
    assert r.status_code == 422 and field_error(r.text, f"delta-{ids[0]}") == "调整数量不能为 0"
    assert pages.form_post(stock_url, {"delta": "+5", "reason": "到货补货"}).status_code == 303
    with world.db.transaction(readonly=True) as session:
        sku = session.get(Sku, ids[0])
        assert inventory.levels(session, sku.inventory_item_id).available == 15
        audit = catalog.list_adjustments(session, _actor(session, world.a.manager_id), listing_id)
        assert audit[0]["delta"] == 5 and audit[0]["reason"] == "到货补货"
    assert "到货补货" in pages.get(edit).text

    # Publish, unpublish from the list.
    r = pages.form_post(f"{base}/{listing_id}/publish")
    assert r.status_code == 303
    assert "已上架" in pages.get(base).text
    assert pages.form_post(f"{base}/{listing_id}/unpublish").status_code == 303
    assert _status(world.db, listing_id) == "unpublished"


def _actor(session: Any, user_id: int) -> Any:
    from o2o.accounts.models import User
    from o2o.merchants.access import load_actor

    return load_actor(session, session.get(User, user_id))


def _status(db: Any, listing_id: int) -> str:
    with db.transaction(readonly=True) as session:
        return session.get(Listing, listing_id).status


def test_bad_input_shows_chinese_errors_and_changes_nothing(pages: PageClient, world: Any) -> None:
    base = f"/console/m/{world.a.id}/listings"
    pages.sign_in(world.a.owner_id)
    rows = [("红色", "12.345", "10"), ("", "abc", "-1")]
    r = pages.form_post(f"{base}/new/goods", goods_form(world, rows, title="", shipping_fee="-3"))
    assert r.status_code == 422
    assert field_error(r.text, "title") == "请填写 1–100 个字的标题"
    assert field_error(r.text, "shipping_fee") == "金额不能为负数"
    assert field_error(r.text, "sku_price_0") == "金额最多两位小数（精确到分）"
    assert field_error(r.text, "sku_name_1") == "请填写规格名称"
    assert field_error(r.text, "sku_price_1") == "请输入金额，如 12.50"
    assert field_error(r.text, "sku_stock_1") == "库存为 0 或正整数"
    assert 'value="12.345"' in r.text  # what was typed stays
    r = pages.form_post(f"{base}/new/goods", goods_form(world, [("", "", "")]))
    assert r.status_code == 422 and field_error(r.text, "skus") == "至少需要一个在售规格"

    r = pages.form_post(
        f"{base}/new/deal",
        deal_form(world, price="100", original_price="99.99", store_ids=[], valid_days=""),
    )
    assert r.status_code == 422
    assert field_error(r.text, "store_ids") == "请至少选择一个适用门店"
    r = pages.form_post(f"{base}/new/deal", deal_form(world, price="100", original_price="99.99"))
    assert r.status_code == 422 and field_error(r.text, "original_price") == "原价不能低于售价"
    r = pages.form_post(f"{base}/new/deal", deal_form(world, valid_days=""))
    assert r.status_code == 422 and field_error(r.text, "valid_days") == "请填写购买后有效天数"
    r = pages.form_post(f"{base}/new/deal", deal_form(world, unlimited=""))
    assert r.status_code == 422 and "请填写库存" in (field_error(r.text, "stock") or "")
    r = pages.form_post(
        f"{base}/new/deal", deal_form(world, validity="until", valid_until="2001-01-01")
    )
    assert r.status_code == 422 and field_error(r.text, "valid_until") == "截止日期不能早于今天"
    # Another merchant's store: the service's rule, shown next to the stores.
    r = pages.form_post(f"{base}/new/deal", deal_form(world, store_ids=[str(world.b.store_ids[0])]))
    assert r.status_code == 422 and "不属于该商户" in (field_error(r.text, "store_ids") or "")
    # Nonsense of every kind: never a 500.
    for nasty in (
        {"category_id": "9" * 40},
        {"price": "1" * 60},
        {"title": "坏\x00字"},
        {"validity": "forever"},
        {"valid_until": "2024-02-30"},
        {"per_user_limit": "0"},
        {"store_ids": ["abc"]},
    ):
        r = pages.form_post(f"{base}/new/deal", deal_form(world, **nasty))
        assert r.status_code == 422, (nasty, r.status_code)
    assert pages.get(base, params={"status": "x" * 40, "after": "9" * 40}).status_code == 200
    assert count_listings(world.db, world.a.id) == 0


def test_deal_from_the_form_yuan_to_fen_and_edit(pages: PageClient, world: Any) -> None:
    base = f"/console/m/{world.a.id}/listings"
    pages.sign_in(world.a.manager_id)
    form = deal_form(world, price="12.5", original_price="0.10")
    r = pages.form_post(f"{base}/new/deal", form)  # original below price
    assert r.status_code == 422
    listing_id = created_id(
        pages.form_post(f"{base}/new/deal", deal_form(world, price="0.10", original_price="12.5"))
    )
    with world.db.transaction(readonly=True) as session:
        x = session.get(Listing, listing_id)
        assert (x.price_fen, x.original_price_fen) == (10, 1250)
        assert x.valid_days == 30 and x.inventory_item_id is None
        assert x.refund_anytime and x.auto_refund_on_expiry and not x.requires_slot
        assert x.store_ids == sorted(world.a.store_ids)
    edit = f"{base}/{listing_id}/edit"
    assert 'value="0.10"' in pages.get(edit).text
    until = (to_china(utcnow()) + timedelta(days=40)).date().isoformat()
    form = deal_form(
        world,
        price="12.50",
        original_price="20",
        store_ids=[str(world.a.store_ids[1])],
        validity="until",
        valid_until=until,
        unlimited="",
        stock="20",
        per_user_limit="2",
        refund_anytime="",
    )
    assert pages.form_post(edit, form).status_code == 303
    with world.db.transaction(readonly=True) as session:
        x = session.get(Listing, listing_id)
        assert (x.price_fen, x.original_price_fen, x.per_user_limit) == (1250, 2000, 2)
        assert x.valid_days is None and to_china(x.valid_until).date().isoformat() == until
        assert x.store_ids == [world.a.store_ids[1]] and not x.refund_anytime
        assert inventory.levels(session, x.inventory_item_id).available == 20
    assert "20" in pages.get(base).text


def test_clerks_and_other_merchants_are_kept_out(pages: PageClient, world: Any) -> None:
    base = f"/console/m/{world.a.id}/listings"
    pages.sign_in(world.a.manager_id)
    listing_id = created_id(pages.form_post(f"{base}/new/deal", deal_form(world)))

    pages.sign_in(world.a.clerk_id)
    for url in (base, f"{base}/new/goods", f"{base}/new/deal", f"{base}/{listing_id}/edit"):
        assert pages.get(url).status_code == 403, url
    assert pages.form_post(f"{base}/new/deal", deal_form(world)).status_code == 403
    assert pages.form_post(f"{base}/{listing_id}/publish").status_code == 403
    assert f'{base}"' not in pages.get(f"/console/m/{world.a.id}").text  # no 商品 tab
    for url in (f"/console/m/{world.a.id}/after-sales", f"/console/m/{world.a.id}/reviews"):
        assert pages.get(url).status_code == 403

    # Another merchant's manager: A's pages are not theirs; A's listing under B's URL is absent.
    pages.sign_in(world.b.manager_id)
    assert pages.get(base).status_code in (403, 404)
    other = f"/console/m/{world.b.id}/listings/{listing_id}"
    assert pages.get(f"{other}/edit").status_code == 404
    assert pages.get(f"{other}/slots").status_code == 404
    assert pages.form_post(f"{other}/publish").status_code == 404
    assert pages.form_post(f"{other}/edit", deal_form(world)).status_code == 404
    assert _status(world.db, listing_id) == "draft"


def test_csrf_is_required(pages: PageClient, world: Any) -> None:
    base = f"/console/m/{world.a.id}/listings"
    pages.sign_in(world.a.manager_id)
    rows = [("红色", "12.50", "10")]
    r = pages.form_post(f"{base}/new/goods", goods_form(world, rows), token=False)
    assert r.status_code == 403
    r = pages.form_post(f"{base}/new/deal", deal_form(world), token=False)
    assert r.status_code == 403
    assert count_listings(world.db, world.a.id) == 0


def test_slot_week_bulk_create_close_and_publish(pages: PageClient, world: Any) -> None:
    base = f"/console/m/{world.a.id}/listings"
    pages.sign_in(world.a.owner_id)
    r = pages.form_post(f"{base}/new/deal", deal_form(world, requires_slot="1"))
    assert r.status_code == 303 and r.headers["location"].endswith("/slots")
    listing_id = int(r.headers["location"].split("/listings/")[1].split("/")[0])
    slots_url = f"{base}/{listing_id}/slots"
    page = pages.get(slots_url).text
    assert "批量创建场次" in page and "暂无场次" in page

    tomorrow = (to_china(utcnow()) + timedelta(days=1)).date()
    store = world.a.store_ids[0]
    week = {
        "store_id": str(store),
        "first_day": tomorrow.isoformat(),
        "days": "2",
        "from_hour": "10",
        "to_hour": "12",
        "capacity": "5",
    }
    r = pages.form_post(slots_url, {**week, "to_hour": "10"})
    assert r.status_code == 422 and field_error(r.text, "to_hour") == "结束时间须晚于开始时间"
    r = pages.form_post(slots_url, {**week, "capacity": "0"})
    assert r.status_code == 422 and field_error(r.text, "capacity")
    r = pages.form_post(slots_url, {**week, "store_id": str(world.b.store_ids[0])})
    assert r.status_code == 422 and field_error(r.text, "store_id")
    r = pages.form_post(slots_url, {**week, "first_day": "2001-01-01", "days": "1"})
    assert r.status_code == 422 and "已过去" in (field_error(r.text, "first_day") or "")
    r = pages.form_post(slots_url, {**week, "first_day": "not a day"})
    assert r.status_code == 422 and field_error(r.text, "first_day")
    assert _slot_count(world.db, listing_id) == 0

    r = pages.form_post(slots_url, week)
    assert r.status_code == 303, r.text
    assert _slot_count(world.db, listing_id) == 4
    shown = pages.get(r.headers["location"])
    assert shown.text.count("剩余 5/5") == 4 and "已创建 4 个场次" in shown.text
    assert f"{tomorrow.month}月{tomorrow.day}日" in shown.text and "10:00–11:00" in shown.text
    # Again: nothing doubles.
    r = pages.form_post(slots_url, week)
    assert r.status_code == 303 and _slot_count(world.db, listing_id) == 4
    assert "跳过已存在的 4 个" in pages.get(r.headers["location"]).text

    with world.db.transaction(readonly=True) as session:
        slot_id = session.scalars(
            select(TimeSlot.id).where(TimeSlot.listing_id == listing_id).order_by(TimeSlot.id)
        ).first()
    r = pages.form_post(f"{slots_url}/{slot_id}/close", {"store": str(store), "week": "x&y=1"})
    assert r.status_code == 303 and "y=1" not in r.headers["location"].split("?")[1].split("&")
    with world.db.transaction(readonly=True) as session:
        assert session.get(TimeSlot, slot_id).is_open is False
    r = pages.form_post(f"{slots_url}/{slot_id}/close", {"store": str(store)})
    assert r.status_code == 303  # already closed: a message, not an error page
    assert "场次已经关闭" in pages.get(r.headers["location"]).text

    assert pages.form_post(f"{base}/{listing_id}/publish", {"next": slots_url}).status_code == 303
    assert _status(world.db, listing_id) == "published"
    # Slots of a deal without booking: explained, no form.
    plain = created_id(pages.form_post(f"{base}/new/deal", deal_form(world)))
    assert "未开启「需预约」" in pages.get(f"{base}/{plain}/slots").text


def _slot_count(db: Any, listing_id: int) -> int:
    with db.transaction(readonly=True) as session:
        return session.scalar(
            select(func.count()).select_from(TimeSlot).where(TimeSlot.listing_id == listing_id)
        )


def _after_sales_status(db: Any, request_id: int) -> str:
    with db.transaction(readonly=True) as session:
        return session.get(AfterSalesRequest, request_id).status


def test_after_sales_approve_and_reject(pages: PageClient, world: Any) -> None:
    to_reject, to_approve = orm_after_sales(world), orm_after_sales(world)
    base = f"/console/m/{world.a.id}/after-sales"
    pages.sign_in(world.a.manager_id)
    listed = pages.get(base, params={"status": "requested"}).text
    assert f"#{to_reject}" in listed and f"#{to_approve}" in listed and "待商家处理" in listed
    assert pages.get(base, params={"status": "refunded"}).text.count("查看 #") == 0
    assert "质量问题" in pages.get(f"{base}/{to_reject}").text

    r = pages.form_post(f"{base}/{to_reject}/reject", {"reason": "  "})
    assert r.status_code == 422
    assert field_error(r.text, "reason") == "请填写拒绝原因（1–200 字），顾客会看到"
    assert _after_sales_status(world.db, to_reject) == "requested"
    assert pages.form_post(f"{base}/{to_reject}/reject", token=False).status_code == 403
    r = pages.form_post(f"{base}/{to_reject}/reject", {"reason": "商品已使用，不支持退款"})
    assert r.status_code == 303
    assert _after_sales_status(world.db, to_reject) == "rejected"
    assert "商品已使用，不支持退款" in pages.get(f"{base}/{to_reject}").text
    # Decided already: a clear message (409), not a change.
    r = pages.form_post(f"{base}/{to_reject}/approve")
    assert r.status_code == 409 and "data-form-error" in r.text
    assert _after_sales_status(world.db, to_reject) == "rejected"

    assert pages.form_post(f"{base}/{to_approve}/approve").status_code == 303
    assert _after_sales_status(world.db, to_approve) in ("approved", "refunded")
    assert "退款" in pages.get(f"{base}/{to_approve}").text

    # Clerk: 403; another merchant: 404 for A's request under B.
    assert (
        pages.sign_in(world.a.clerk_id).form_post(f"{base}/{to_approve}/approve").status_code == 403
    )
    pages.sign_in(world.b.manager_id)
    assert pages.get(f"/console/m/{world.b.id}/after-sales/{to_approve}").status_code == 404


def test_review_reply_once(pages: PageClient, world: Any, api: Any) -> None:
    order = paid_goods_order(api, world)
    r = api.post(
        f"/api/v1/merchants/{world.a.id}/orders/{order.order_no}/shipments",
        json={"carrier": "SF", "tracking_no": sf_number()},
        as_=world.tokens["manager"],
    )
    assert r.status_code == 201, r.text
    r = api.post(f"/api/v1/orders/{order.order_no}/confirm-receipt", as_=world.tokens["consumer"])
    assert r.status_code == 200, r.text
    with world.db.transaction() as session:
        review_id = reviews.create_review(
            session, world.consumer_id, order.order_no, rating=4, text="包装完好"
        ).id
    base = f"/console/m/{world.a.id}/reviews"
    pages.sign_in(world.a.owner_id)
    assert "包装完好" in pages.get(base).text
    assert "包装完好" in pages.get(base, params={"replied": "no"}).text
    assert "包装完好" not in pages.get(base, params={"replied": "yes"}).text

    r = pages.form_post(f"{base}/{review_id}/reply", {"text": ""})
    assert r.status_code == 422 and field_error(r.text, f"text-{review_id}") == (
        "请填写回复内容（1–500 字）"
    )
    assert (
        pages.form_post(f"{base}/{review_id}/reply", {"text": "谢谢"}, token=False).status_code
        == 403
    )
    assert pages.form_post(f"{base}/{review_id}/reply", {"text": "感谢支持！"}).status_code == 303
    r = pages.form_post(f"{base}/{review_id}/reply", {"text": "再说一次"})
    assert r.status_code == 409 and "该评价已回复过" in r.text
    with world.db.transaction(readonly=True) as session:
        assert session.get(Review, review_id).reply == "感谢支持！"
    assert "感谢支持！" in pages.get(base, params={"replied": "yes"}).text
    # Another merchant's manager cannot reply under its own URL either.
    pages.sign_in(world.b.manager_id)
    r = pages.form_post(f"/console/m/{world.b.id}/reviews/{review_id}/reply", {"text": "x"})
    assert r.status_code == 404


def test_dashboard_shows_pending_shipments_and_after_sales_with_links(
    pages: PageClient, world: Any
) -> None:
    orm_goods_order(world, status="paid", lines=1)
    orm_after_sales(world)
    board = pages.sign_in(world.a.owner_id).get(f"/console/m/{world.a.id}").text
    assert re.search(r"待发货</div>\s*<div class=\"value\">1 单", board), board
    assert re.search(r"售后申请</div>\s*<div class=\"value\">1 件", board), board
    assert f'href="/console/m/{world.a.id}/orders?status=paid&amp;kind=goods"' in board
    assert f'href="/console/m/{world.a.id}/after-sales?status=requested"' in board
    for label in ("今日订单", "今日核销", "今日成交额"):
        assert label in board
    for tab in ("商品", "售后", "评价"):
        assert f">{tab}</a>" in board
    # A clerk: neither card (goods orders and after-sales are for owners and managers).
    clerk = pages.sign_in(world.a.clerk_id).get(f"/console/m/{world.a.id}").text
    assert "待发货" not in clerk and "售后申请" not in clerk
