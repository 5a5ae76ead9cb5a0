"""Vouchers: issued once per unit when a service order is paid, shown to their owner (order and
QR), 随时退 with capacity back, 过期自动退 by the worker, and the order following its vouchers.
Both databases."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from o2o.fulfilment import vouchers
from o2o.fulfilment.models import EXPIRED, REDEEMED, REFUNDED, UNUSED, VOUCHER_STATUS, Voucher
from o2o.orders import service as orders
from o2o.orders.models import Order
from o2o.payments import service as payments
from o2o.timeutil import utcnow
from tests.checkout_support import assert_units_reconcile, levels, make_goods, sandbox
from tests.voucher_support import (
    a_deal,
    a_slot_deal,
    ago,
    buy,
    count_vouchers,
    deal_item,
    move_slot,
    order_status,
    redeem,
    refunds_of,
    set_vouchers,
    statuses,
    voucher,
)


def finish_refunds(db: Any, settings: Any) -> None:
    """The sandbox says a refund succeeded when asked (the worker's refund sweep)."""
    payments.process_refunds(db, settings, now=utcnow() + timedelta(hours=2))


# --- issuing -------------------------------------------------------------------------------


def test_paying_issues_one_voucher_per_unit(api: Any, world: Any, db: Any) -> None:
    hotpot = a_deal(world, price_fen=9900)
    snack = a_deal(world, price_fen=1990)
    token = world.tokens["consumer"]
    bought = buy(api, token, [deal_item(hotpot, 3), deal_item(snack, 2)])

    assert len(bought.codes) == 5
    assert len(set(bought.codes)) == 5
    for code in bought.codes:
        assert len(code) >= 12 and code.isdigit() and code.isascii()
    detail = api.get(f"/api/v1/orders/{bought.order_no}", as_=token).json()
    assert detail["status"] == "paid"
    shown = detail["vouchers"]
    assert [v["status"] for v in shown] == ["unused"] * 5
    assert shown[0]["code_display"] == vouchers.format_code(shown[0]["code"])
    assert shown[0]["code_display"].count(" ") == 2
    assert shown[0]["qr_url"] == f"/api/v1/vouchers/{shown[0]['code']}/qr.svg"
    assert sorted(v["amount_fen"] for v in shown) == [1990, 1990, 9900, 9900, 9900]
    assert sum(v["amount_fen"] for v in shown) == detail["payable_fen"]
    assert {v["title"] for v in shown} == {"双人套餐"}
    assert all(v["refundable"] for v in shown)
    assert shown[0]["store_ids"] == sorted(world.a.store_ids)
    # valid_days=30 from payment
    row = voucher(db, bought.codes[0])
    assert timedelta(days=29, hours=23) < row.valid_until - row.valid_from <= timedelta(days=30)

    same = api.get(f"/api/v1/orders/{bought.order_no}/vouchers", as_=token).json()
    assert [v["code"] for v in same] == bought.codes
    assert (
        api.get(
            f"/api/v1/orders/{bought.order_no}/vouchers", as_=world.tokens["other_consumer"]
        ).status_code
        == 404
    )

    # Staff see the vouchers' state in their order list, never the codes.
    staff = api.get(f"/api/v1/merchants/{world.a.id}/orders", as_=world.tokens["manager"]).json()
    staff_vouchers = staff["items"][0]["vouchers"]
    assert len(staff_vouchers) == 5
    assert all("code" not in v for v in staff_vouchers)
    assert {v["code_tail"] for v in staff_vouchers} == {c[-4:] for c in bought.codes}
    assert bought.codes[0] not in str(staff)


def test_paying_twice_never_issues_twice(api: Any, world: Any, db: Any, settings: Any) -> None:
    deal = a_deal(world)
    bought = buy(api, world.tokens["consumer"], [deal_item(deal, 2)])
    # The provider delivers the same notification again (replay).
    headers, body = sandbox().payment_notification(bought.payment_no, deal.price_fen * 2)
    payments.handle_notification(db, settings, "sandbox", headers, body)
    # And the listener itself runs again (e.g. a bug calling it twice).
    with db.transaction() as session:
        order = session.scalar(select(Order).where(Order.order_no == bought.order_no))
        lines = orders.lines_by_order(session, [order.id])[order.id]
        assert vouchers.issue_for_order(session, order, lines) == []
    assert count_vouchers(db) == 2


def test_goods_orders_get_no_vouchers(api: Any, world: Any, db: Any) -> None:
    from tests.checkout_support import checkout_goods, pay_sandbox

    goods = make_goods(db, world.a.id, world.category_id)
    body = checkout_goods(api, world.tokens["consumer"], goods)
    pay_sandbox(api, world.tokens["consumer"], body["payment"]["payment_no"])
    assert count_vouchers(db) == 0
    detail = api.get(
        f"/api/v1/orders/{body['orders'][0]['order_no']}", as_=world.tokens["consumer"]
    )
    assert detail.json()["vouchers"] == []


def test_unpaid_orders_have_no_vouchers(api: Any, world: Any, db: Any) -> None:
    deal = a_deal(world)
    bought = buy(api, world.tokens["consumer"], [deal_item(deal)], pay=False)
    detail = api.get(f"/api/v1/orders/{bought.order_no}", as_=world.tokens["consumer"]).json()
    assert detail["vouchers"] == []
    assert count_vouchers(db) == 0


def test_a_code_already_taken_is_drawn_again(
    api: Any, world: Any, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    deal = a_deal(world)
    first = buy(api, world.tokens["consumer"], [deal_item(deal)])
    draws = iter([first.codes[0], first.codes[0], "123456789012", "210987654321"])
    monkeypatch.setattr(vouchers, "new_code", lambda: next(draws))
    second = buy(api, world.tokens["consumer"], [deal_item(deal, 2)])
    assert sorted(second.codes) == ["123456789012", "210987654321"]


def test_slot_voucher_is_for_the_slot_and_its_store(api: Any, world: Any, db: Any) -> None:
    slot_deal = a_slot_deal(world)
    bought = buy(api, world.tokens["consumer"], [deal_item(slot_deal, 2)])
    row = voucher(db, bought.codes[0])
    assert row.slot_id == slot_deal.slot_id
    assert row.store_ids == [slot_deal.store_id]
    assert row.valid_until == row.slot_ends_at
    assert row.slot_starts_at is not None and row.slot_starts_at > utcnow()


def test_code_helpers() -> None:
    assert vouchers.format_code("387120495521") == "3871 2049 5521"
    assert vouchers.normalize_code(" 3871 2049-5521 ") == "387120495521"
    for junk in (
        "",
        "12345",
        "abcdefghijkl",
        "３８７１２０４９５５２１",
        "1" * 21,
        "1234 5678 901x",
    ):
        assert vouchers.normalize_code(junk) is None
    assert vouchers.mask_phone("13800000000") == "138****0000"
    codes = {vouchers.new_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(len(c) == 12 and c.isdigit() for c in codes)


def test_voucher_state_machine_is_written_down() -> None:
    assert VOUCHER_STATUS.next_state(UNUSED, "redeem") == REDEEMED
    assert VOUCHER_STATUS.next_state(REDEEMED, "undo") == UNUSED
    assert VOUCHER_STATUS.next_state(UNUSED, "refund") == REFUNDED
    assert VOUCHER_STATUS.next_state(UNUSED, "expire") == EXPIRED
    assert VOUCHER_STATUS.next_state(EXPIRED, "auto_refund") == REFUNDED
    for state, action in [
        (REDEEMED, "redeem"),
        (REDEEMED, "refund"),
        (REFUNDED, "redeem"),
        (EXPIRED, "redeem"),
        (REFUNDED, "undo"),
        (EXPIRED, "refund"),
    ]:
        assert not VOUCHER_STATUS.can(state, action)


# --- the QR code ---------------------------------------------------------------------------


def test_qr_is_for_the_owner_only(api: Any, world: Any, db: Any) -> None:
    bought = buy(api, world.tokens["consumer"], [deal_item(a_deal(world))])
    code = bought.codes[0]
    mine = api.get(f"/api/v1/vouchers/{code}/qr.svg", as_=world.tokens["consumer"])
    assert mine.status_code == 200
    assert mine.headers["content-type"].startswith("image/svg+xml")
    assert "<svg" in mine.text and "no-store" in mine.headers["cache-control"]
    for role in ("other_consumer", "clerk", "manager", "owner", "operator"):
        r = api.get(f"/api/v1/vouchers/{code}/qr.svg", as_=world.tokens[role])
        assert r.status_code == 404 and r.json()["code"] == "voucher_not_found"
    assert api.get(f"/api/v1/vouchers/{code}/qr.svg").status_code == 401
    unknown = api.get("/api/v1/vouchers/000000000000/qr.svg", as_=world.tokens["consumer"])
    assert unknown.status_code == 404


def test_qr_encodes_the_code() -> None:
    import segno

    svg = vouchers.qr_svg("387120495521").decode()
    assert svg.startswith("<svg") and "3871 2049 5521" in svg
    expected = segno.make("387120495521", error="m", micro=False)
    assert expected.designator  # a regular QR code any scanner reads


# --- 随时退 ---------------------------------------------------------------------------------


def test_refund_anytime_is_instant_and_gives_slot_capacity_back(
    api: Any, world: Any, db: Any, settings: Any
) -> None:
    slot_deal = a_slot_deal(world, capacity=5)
    token = world.tokens["consumer"]
    bought = buy(api, token, [deal_item(slot_deal, 2)])
    assert levels(db, slot_deal.slot_item_id).available == 3

    first = api.post(
        f"/api/v1/vouchers/{bought.codes[0]}/refund", json={"reason": "临时有事"}, as_=token
    )
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["amount_fen"] == slot_deal.price_fen
    assert body["voucher_codes"] == [bought.codes[0]]
    assert body["order_no"] == bought.order_no
    assert body["status"] in ("pending", "processing")
    assert statuses(db, bought.codes) == [REFUNDED, UNUSED]
    assert voucher(db, bought.codes[0]).refund_id is not None
    assert levels(db, slot_deal.slot_item_id).available == 4
    assert_units_reconcile(db, slot_deal.slot_item_id)
    assert order_status(db, bought.order_no) == "paid"

    # The same rule through the order's refund endpoint, with voucher_codes.
    second = api.post(
        f"/api/v1/orders/{bought.order_no}/refunds",
        json={"voucher_codes": [vouchers.format_code(bought.codes[1])]},
        as_=token,
    )
    assert second.status_code == 201, second.text
    assert second.json()["voucher_codes"] == [bought.codes[1]]
    assert levels(db, slot_deal.slot_item_id).available == 5
    assert_units_reconcile(db, slot_deal.slot_item_id)
    # Every voucher refunded: refunding while the money goes back, refunded once it is back.
    assert order_status(db, bought.order_no) == "refunding"
    finish_refunds(db, settings)
    assert order_status(db, bought.order_no) == "refunded"
    refunds = refunds_of(db, bought.order_no)
    assert [r.status for r in refunds] == ["succeeded", "succeeded"]
    assert sum(r.amount_fen for r in refunds) == 2 * slot_deal.price_fen
    assert all(r.initiator == f"consumer:{world.consumer_id}" for r in refunds)

    again = api.post(f"/api/v1/vouchers/{bought.codes[0]}/refund", json={}, as_=token)
    assert again.status_code == 410 and again.json()["code"] == "voucher_refunded"


def test_refund_anytime_with_an_idempotency_key_refunds_once(api: Any, world: Any, db: Any) -> None:
    bought = buy(api, world.tokens["consumer"], [deal_item(a_deal(world), 2)])
    url = f"/api/v1/vouchers/{bought.codes[0]}/refund"
    headers = {"Idempotency-Key": "refund-1"}
    first = api.post(url, json={}, as_=world.tokens["consumer"], headers=headers)
    replay = api.post(url, json={}, as_=world.tokens["consumer"], headers=headers)
    assert first.status_code == replay.status_code == 201
    assert first.json()["refund_no"] == replay.json()["refund_no"]
    assert len(refunds_of(db, bought.order_no)) == 1


def test_refund_of_a_slot_that_has_started_keeps_the_capacity(
    api: Any, world: Any, db: Any
) -> None:
    slot_deal = a_slot_deal(world, capacity=5)
    bought = buy(api, world.tokens["consumer"], [deal_item(slot_deal)])
    move_slot(db, slot_deal.slot_id, ago(minutes=10), utcnow() + timedelta(hours=1))
    r = api.post(
        f"/api/v1/vouchers/{bought.codes[0]}/refund", json={}, as_=world.tokens["consumer"]
    )
    assert r.status_code == 201, r.text
    assert levels(db, slot_deal.slot_item_id).available == 4  # the seat is gone: not sold again
    assert_units_reconcile(db, slot_deal.slot_item_id)


def test_refund_gives_a_deals_own_stock_back(api: Any, world: Any, db: Any) -> None:
    deal = a_deal(world, stock=10)
    bought = buy(api, world.tokens["consumer"], [deal_item(deal, 3)])
    assert deal.item_id is not None
    assert levels(db, deal.item_id).available == 7
    r = api.post(
        f"/api/v1/orders/{bought.order_no}/refunds",
        json={"voucher_codes": bought.codes[:2]},
        as_=world.tokens["consumer"],
    )
    assert r.status_code == 201, r.text
    assert r.json()["amount_fen"] == 2 * deal.price_fen
    assert len(refunds_of(db, bought.order_no)) == 1  # one refund for both codes
    assert levels(db, deal.item_id).available == 9
    assert_units_reconcile(db, deal.item_id)


def test_refund_refusals(api: Any, world: Any, db: Any) -> None:
    token = world.tokens["consumer"]
    strict = a_deal(world, refund_anytime=False)
    bought = buy(api, token, [deal_item(strict)])
    r = api.post(f"/api/v1/vouchers/{bought.codes[0]}/refund", json={}, as_=token)
    assert r.status_code == 409 and r.json()["code"] == "refund_not_allowed"
    r = api.post(
        f"/api/v1/orders/{bought.order_no}/refunds", json={"voucher_codes": bought.codes}, as_=token
    )
    assert r.status_code == 409 and r.json()["code"] == "refund_not_allowed"
    assert statuses(db, bought.codes) == [UNUSED]
    assert refunds_of(db, bought.order_no) == []

    normal = buy(api, token, [deal_item(a_deal(world), 2)])
    # Someone else's voucher, an unknown code, junk: all 404.
    other = api.post(
        f"/api/v1/vouchers/{normal.codes[0]}/refund", json={}, as_=world.tokens["other_consumer"]
    )
    assert other.status_code == 404 and other.json()["code"] == "voucher_not_found"
    for codes in (["000000000000"], ["not-a-code"], [normal.codes[0], bought.codes[0]]):
        r = api.post(
            f"/api/v1/orders/{normal.order_no}/refunds", json={"voucher_codes": codes}, as_=token
        )
        assert r.status_code == 404, (codes, r.text)
    # Redeemed: 409; expired (validity over, offer without auto refund): 410.
    assert redeem(api, world, normal.codes[0]).status_code == 200
    r = api.post(f"/api/v1/vouchers/{normal.codes[0]}/refund", json={}, as_=token)
    assert r.status_code == 409 and r.json()["code"] == "voucher_already_redeemed"
    set_vouchers(db, [normal.codes[1]], valid_until=ago(minutes=1), auto_refund_on_expiry=False)
    r = api.post(f"/api/v1/vouchers/{normal.codes[1]}/refund", json={}, as_=token)
    assert r.status_code == 410 and r.json()["code"] == "voucher_expired"
    assert refunds_of(db, normal.order_no) == []
    # A bad body changes nothing.
    r = api.post(
        f"/api/v1/orders/{normal.order_no}/refunds",
        json={"voucher_codes": ["1" * 41]},
        as_=token,
    )
    assert r.status_code == 422


# --- 过期自动退 ------------------------------------------------------------------------------


def test_expiry_job_expires_and_refunds_automatically(
    api: Any, world: Any, db: Any, settings: Any
) -> None:
    token = world.tokens["consumer"]
    auto = buy(api, token, [deal_item(a_deal(world, price_fen=3000), 2)])
    keep = buy(api, token, [deal_item(a_deal(world, auto_refund_on_expiry=False))])
    fresh = buy(api, token, [deal_item(a_deal(world))])
    set_vouchers(db, auto.codes + keep.codes, valid_until=ago(seconds=1))

    assert vouchers.expire_due(db, settings) == 3
    assert vouchers.expire_due(db, settings) == 0  # idempotent
    assert statuses(db, auto.codes) == [REFUNDED, REFUNDED]
    assert all(voucher(db, c).expired_at is not None for c in auto.codes)
    assert statuses(db, keep.codes) == [EXPIRED]
    assert statuses(db, fresh.codes) == [UNUSED]
    [refund] = refunds_of(db, auto.order_no)
    assert refund.amount_fen == 6000
    assert refund.initiator == "system:voucher_expired"
    assert sorted(refund.voucher_codes) == sorted(auto.codes)
    assert refunds_of(db, keep.order_no) == []
    finish_refunds(db, settings)
    assert order_status(db, auto.order_no) == "refunded"
    assert order_status(db, keep.order_no) == "paid"
    # An expired voucher cannot be redeemed or refunded.
    r = redeem(api, world, keep.codes[0])
    assert r.status_code == 410 and r.json()["code"] == "voucher_expired"
    r = api.post(f"/api/v1/vouchers/{keep.codes[0]}/refund", json={}, as_=token)
    assert r.status_code == 410 and r.json()["code"] == "voucher_expired"


def test_expiry_job_with_two_workers_at_once(api: Any, world: Any, db: Any, settings: Any) -> None:
    token = world.tokens["consumer"]
    deal = a_deal(world, price_fen=1000)
    bought = [buy(api, token, [deal_item(deal, 3)]) for _ in range(8)]
    codes = [c for b in bought for c in b.codes]
    set_vouchers(db, codes, valid_until=ago(seconds=1))

    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker() -> None:
        try:
            barrier.wait()
            results.append(vouchers.expire_due(db, settings, batch=5))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sum(results) == len(codes)  # each voucher expired by exactly one worker
    assert statuses(db, codes) == [REFUNDED] * len(codes)
    for b in bought:
        refunds = refunds_of(db, b.order_no)
        assert sum(r.amount_fen for r in refunds) == 3000
        assert sorted(c for r in refunds for c in r.voucher_codes) == sorted(b.codes)
    assert vouchers.expire_due(db, settings) == 0


# --- the order follows its vouchers --------------------------------------------------------


def test_order_completes_when_no_voucher_is_unused_and_one_was_redeemed(
    api: Any, world: Any, db: Any, settings: Any
) -> None:
    token = world.tokens["consumer"]
    three = buy(api, token, [deal_item(a_deal(world), 3)])
    assert redeem(api, world, three.codes[0]).status_code == 200
    assert order_status(db, three.order_no) == "paid"
    r = api.post(f"/api/v1/vouchers/{three.codes[1]}/refund", json={}, as_=token)
    assert r.status_code == 201
    assert order_status(db, three.order_no) == "paid"
    assert redeem(api, world, three.codes[2]).status_code == 200
    assert order_status(db, three.order_no) == "completed"
    with db.transaction(readonly=True) as session:
        completed = session.scalar(select(Order).where(Order.order_no == three.order_no))
        assert completed.completed_at is not None
    finish_refunds(db, settings)
    assert order_status(db, three.order_no) == "completed"  # partly refunded, still completed

    # Expired (no auto refund) + redeemed: completed too; expired alone: stays paid.
    pair = buy(api, token, [deal_item(a_deal(world, auto_refund_on_expiry=False), 2)])
    set_vouchers(db, [pair.codes[0]], valid_until=ago(seconds=1))
    vouchers.expire_due(db, settings)
    assert order_status(db, pair.order_no) == "paid"
    assert redeem(api, world, pair.codes[1]).status_code == 200
    assert order_status(db, pair.order_no) == "completed"


def test_order_of_refunded_vouchers_is_refunded(
    api: Any, world: Any, db: Any, settings: Any
) -> None:
    bought = buy(api, world.tokens["consumer"], [deal_item(a_deal(world), 2)])
    r = api.post(
        f"/api/v1/orders/{bought.order_no}/refunds",
        json={"voucher_codes": bought.codes},
        as_=world.tokens["consumer"],
    )
    assert r.status_code == 201
    assert order_status(db, bought.order_no) == "refunding"
    finish_refunds(db, settings)
    assert order_status(db, bought.order_no) == "refunded"
    detail = api.get(f"/api/v1/orders/{bought.order_no}", as_=world.tokens["consumer"]).json()
    assert detail["refunded_fen"] == detail["payable_fen"]
    assert [v["status"] for v in detail["vouchers"]] == ["refunded", "refunded"]
    assert not any(v["refundable"] for v in detail["vouchers"])


def test_voucher_table_refuses_unknown_statuses(world: Any, db: Any, api: Any) -> None:
    from sqlalchemy.exc import IntegrityError

    bought = buy(api, world.tokens["consumer"], [deal_item(a_deal(world))])
    with pytest.raises(IntegrityError), db.transaction() as session:
        session.execute(
            Voucher.__table__.update().where(Voucher.code == bought.codes[0]).values(status="lost")
        )


def test_demo_has_vouchers_in_every_state(demo_db: Any) -> None:
    from sqlalchemy import func

    from o2o import demo
    from o2o.accounts.models import User

    demo.load(demo_db)
    demo.load(demo_db)  # idempotent
    with demo_db.transaction(readonly=True) as session:
        # The demo consumer's (the demo history's consumers have vouchers of their own).
        consumer_id = select(User.id).where(User.phone == demo.CONSUMER[0]).scalar_subquery()
        by_status = dict(
            session.execute(
                select(Voucher.status, func.count())
                .where(Voucher.user_id == consumer_id)
                .group_by(Voucher.status)
            ).all()
        )
        demo_orders = dict(
            session.execute(
                select(Order.status, func.count())
                .where(Order.note == "演示订单")
                .group_by(Order.status)
            ).all()
        )
    assert {UNUSED, REDEEMED, REFUNDED, EXPIRED} <= set(by_status), by_status
    assert by_status[REDEEMED] == 2 and by_status[EXPIRED] == 1 and by_status[REFUNDED] == 1
    assert demo_orders.get("completed") == 1, demo_orders
