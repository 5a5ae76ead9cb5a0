"""Refunds (law 4): never more than was paid, even concurrently; through the provider that took
the payment, retried with the same refund number; ``succeeded`` only when the provider says so;
stuck ones visible to the operator. Both databases."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from o2o.errors import Conflict
from o2o.events import STAFF, Who
from o2o.orders import service as orders
from o2o.orders.models import Order
from o2o.payments import registry, service
from o2o.payments.models import Refund
from o2o.payments.providers import ProviderRefused, ProviderUnavailable, RefundEvent, RefundRequest
from o2o.payments.sandbox import SandboxProvider
from o2o.timeutil import utcnow
from tests.checkout_support import (
    ADDRESS,
    TEST_SECRET,
    assert_units_reconcile,
    checkout_goods,
    goods_item,
    levels,
    make_deal,
    make_goods,
    notify,
    pay_sandbox,
    place,
    sandbox,
)


def later(minutes: int = 5) -> Any:
    return utcnow() + timedelta(minutes=minutes)


def refunds(db: Any) -> list[Refund]:
    with db.transaction(readonly=True) as session:
        return list(session.scalars(select(Refund).order_by(Refund.id)))


def order_row(db: Any, order_no: str) -> Order:
    with db.transaction(readonly=True) as session:
        return session.scalar(select(Order).where(Order.order_no == order_no))


@pytest.fixture
def paid_goods(api: Any, world: Any, db: Any) -> dict[str, Any]:
    goods = make_goods(
        db, world.a.id, world.category_id, price_fen=3000, stock=5, shipping_fee_fen=600
    )
    body = checkout_goods(api, world.tokens["consumer"], goods, quantity=2)
    pay_sandbox(api, world.tokens["consumer"], body["payment"]["payment_no"])
    return {"goods": goods, "order_no": body["orders"][0]["order_no"], "body": body}


def test_consumer_full_refund_of_unshipped_goods(
    api: Any, world: Any, db: Any, settings: Any, paid_goods: dict[str, Any]
) -> None:
    token = world.tokens["consumer"]
    no = paid_goods["order_no"]
    r = api.post(f"/api/v1/orders/{no}/refunds", json={"reason": "不想要了"}, as_=token)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["amount_fen"] == 6600  # both units and the shipping fee
    assert body["status"] == "processing"  # accepted by the provider, money not back yet
    detail = api.get(f"/api/v1/orders/{no}", as_=token).json()
    assert detail["status"] == "refunding" and detail["refunded_fen"] == 6600
    assert detail["refunds"][0]["status"] == "processing"
    assert levels(db, paid_goods["goods"].item_id).sold == 2  # nothing back until it is done

    assert service.process_refunds(db, settings) == 0  # not due yet
    assert service.process_refunds(db, settings, now=later()) == 1
    detail = api.get(f"/api/v1/orders/{no}", as_=token).json()
    assert detail["status"] == "refunded"
    assert detail["refunds"][0]["status"] == "succeeded"
    lv = assert_units_reconcile(db, paid_goods["goods"].item_id)
    assert (lv.available, lv.sold) == (5, 0)  # unshipped units can be sold again
    # a second refund request: nothing left
    again = api.post(f"/api/v1/orders/{no}/refunds", json={"reason": "再退"}, as_=token)
    assert again.status_code == 409


def test_refund_completes_through_a_signed_refund_notification(
    api: Any, world: Any, db: Any, paid_goods: dict[str, Any]
) -> None:
    token = world.tokens["consumer"]
    no = paid_goods["order_no"]
    refund_no = api.post(f"/api/v1/orders/{no}/refunds", json={}, as_=token).json()["refund_no"]
    headers, body = sandbox().refund_notification(refund_no, 6600)
    for _ in range(3):
        assert notify(api, headers, body).status_code == 200
    [refund] = refunds(db)
    assert refund.status == "succeeded" and refund.provider_refund_id.startswith("SR")
    assert order_row(db, no).status == "refunded"
    assert levels(db, paid_goods["goods"].item_id).available == 5
    # a wrong amount is not applied
    headers, body = sandbox().refund_notification(refund_no, 1)
    notify(api, headers, body)
    assert refunds(db)[0].status == "succeeded"


def test_refund_rules_for_consumers(
    api: Any, world: Any, db: Any, paid_goods: dict[str, Any]
) -> None:
    token = world.tokens["consumer"]
    no = paid_goods["order_no"]
    url = f"/api/v1/orders/{no}/refunds"
    assert api.post(url, json={}, as_=world.tokens["other_consumer"]).status_code == 404
    assert api.post(url, json={}, as_=world.tokens["owner"]).status_code == 404
    partial = api.post(url, json={"amount_fen": 100}, as_=token)
    assert partial.status_code == 409 and partial.json()["code"] == "partial_refund"
    # voucher codes are the fulfilment rule's; a goods order has none
    assert api.post(url, json={"voucher_codes": ["123456789012"]}, as_=token).status_code in (
        404,
        409,
    )
    assert api.post(url, json={"amount_fen": 10**30}, as_=token).status_code == 422
    assert (
        api.post(url, json={"line_ids": [1], "voucher_codes": ["1"]}, as_=token).status_code == 422
    )
    # explicitly naming every line and the whole amount is the full refund
    lines = api.get(f"/api/v1/orders/{no}", as_=token).json()["lines"]
    full = api.post(
        url, json={"line_ids": [line["id"] for line in lines], "amount_fen": 6600}, as_=token
    )
    assert full.status_code == 201, full.text


def test_unpaid_shipped_and_service_orders_are_not_refunded_here(
    api: Any, world: Any, db: Any, paid_goods: dict[str, Any]
) -> None:
    token = world.tokens["consumer"]
    goods = make_goods(db, world.a.id, world.category_id)
    unpaid = checkout_goods(api, token, goods)["orders"][0]["order_no"]
    r = api.post(f"/api/v1/orders/{unpaid}/refunds", json={}, as_=token)
    assert r.status_code == 409 and r.json()["code"] == "order_not_paid"

    deal = make_deal(db, world.a.id, world.category_id, world.a.store_ids)
    svc = place(api, token, [{"listing_id": deal.listing_id}]).json()
    pay_sandbox(api, token, svc["payment"]["payment_no"])
    r = api.post(f"/api/v1/orders/{svc['orders'][0]['order_no']}/refunds", json={}, as_=token)
    assert r.status_code == 409 and r.json()["code"] == "refund_by_voucher"

    with db.transaction() as session:
        order = session.scalar(select(Order).where(Order.order_no == paid_goods["order_no"]))
        orders.set_status(session, order, "ship", by=Who(STAFF))
    r = api.post(f"/api/v1/orders/{paid_goods['order_no']}/refunds", json={}, as_=token)
    assert r.status_code == 409 and r.json()["code"] == "invalid_transition"
    assert refunds(db) == []


def test_a_refunding_order_cannot_ship(
    api: Any, world: Any, db: Any, paid_goods: dict[str, Any]
) -> None:
    api.post(
        f"/api/v1/orders/{paid_goods['order_no']}/refunds", json={}, as_=world.tokens["consumer"]
    )
    with db.transaction() as session:
        order = session.scalar(select(Order).where(Order.order_no == paid_goods["order_no"]))
        with pytest.raises(Conflict):
            orders.set_status(session, order, "ship", by=Who(STAFF))


def test_partial_refunds_through_the_mechanism_never_exceed_what_was_paid(
    api: Any, world: Any, db: Any, settings: Any, paid_goods: dict[str, Any]
) -> None:
    order_no = paid_goods["order_no"]  # 6600 paid: 2 × 3000 + 600 shipping
    with db.transaction() as session:
        order = session.scalar(select(Order).where(Order.order_no == order_no))
        line = orders.lines_by_order(session, [order.id])[order.id][0]
        first = service.request_refund(
            session, order, lines=[(line.id, 3000)], reason="少发一件", initiator="merchant:1"
        )
        assert first.amount_fen == 3000 and first.lines == [
            {"line_id": line.id, "amount_fen": 3000}
        ]
        line_id = line.id
    with db.transaction() as session:
        order = session.scalar(select(Order).where(Order.order_no == order_no))
        with pytest.raises(Conflict):
            service.request_refund(session, order, amount_fen=3601, initiator="operator:1")
    with db.transaction() as session:
        order = session.scalar(select(Order).where(Order.order_no == order_no))
        with pytest.raises(Conflict):  # the line has only 3000 left
            service.request_refund(session, order, lines=[(line_id, 3001)], initiator="operator:1")
    with db.transaction() as session:
        order = session.scalar(select(Order).where(Order.order_no == order_no))
        service.request_refund(session, order, amount_fen=3600, initiator="operator:1")
    assert order_row(db, order_no).refunded_fen == 6600
    service.process_refunds(db, settings, now=later())
    service.process_refunds(db, settings, now=later(10))
    assert [r.status for r in refunds(db)] == ["succeeded", "succeeded"]
    assert order_row(db, order_no).status == "refunded"
    # the mechanism refuses unpaid orders
    goods = make_goods(db, world.a.id, world.category_id)
    unpaid = checkout_goods(api, world.tokens["consumer"], goods)["orders"][0]["order_no"]
    with db.transaction() as session:
        order = session.scalar(select(Order).where(Order.order_no == unpaid))
        with pytest.raises(Conflict):
            service.request_refund(session, order, amount_fen=1)


def test_refund_cap_holds_under_concurrency(
    world: Any, db: Any, paid_goods: dict[str, Any]
) -> None:
    order_no = paid_goods["order_no"]
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def refund_1000() -> None:
        barrier.wait()
        try:
            with db.transaction() as session:
                order = session.scalar(select(Order).where(Order.order_no == order_no))
                service.request_refund(session, order, amount_fen=1000, initiator="operator:1")
            outcomes.append("ok")
        except Conflict:
            outcomes.append("refused")

    threads = [threading.Thread(target=refund_1000) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("ok") == 6 and outcomes.count("refused") == 2  # 6 × 1000 ≤ 6600
    assert sum(r.amount_fen for r in refunds(db)) == 6000
    assert order_row(db, order_no).refunded_fen == 6000


@dataclass
class FlakyBank(SandboxProvider):
    """The sandbox, but the first calls cannot reach the bank, or it refuses."""

    unavailable: int = 0
    refuse: bool = False
    calls: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        SandboxProvider.__init__(self, TEST_SECRET)

    def refund(self, refund: RefundRequest) -> RefundEvent:
        self.calls.append(refund.refund_no)
        if self.unavailable > 0:
            self.unavailable -= 1
            raise ProviderUnavailable("connection reset")
        if self.refuse:
            raise ProviderRefused("NOT_ENOUGH_BALANCE", "余额不足")
        return super().refund(refund)


@pytest.fixture
def bank() -> Iterator[FlakyBank]:
    provider = FlakyBank()
    registry.overrides["sandbox"] = lambda settings: provider
    try:
        yield provider
    finally:
        registry.overrides.pop("sandbox", None)


def test_unreachable_provider_is_retried_with_the_same_refund_no(
    api: Any, world: Any, db: Any, settings: Any, bank: FlakyBank, paid_goods: dict[str, Any]
) -> None:
    bank.unavailable = 2
    r = api.post(
        f"/api/v1/orders/{paid_goods['order_no']}/refunds", json={}, as_=world.tokens["consumer"]
    )
    assert r.status_code == 201 and r.json()["status"] == "pending"
    [refund] = refunds(db)
    assert refund.attempts == 1 and "unavailable" in refund.last_error
    assert service.process_refunds(db, settings) == 0  # backing off
    service.process_refunds(db, settings, now=later(1))
    service.process_refunds(db, settings, now=later(2))
    assert refunds(db)[0].status == "processing"
    service.process_refunds(db, settings, now=later(10))
    [refund] = refunds(db)
    assert refund.status == "succeeded"
    assert bank.calls == [refund.refund_no] * 3


def test_refused_refund_fails_frees_the_amount_and_the_operator_can_retry(
    api: Any, world: Any, db: Any, settings: Any, bank: FlakyBank, paid_goods: dict[str, Any]
) -> None:
    bank.refuse = True
    no = paid_goods["order_no"]
    r = api.post(f"/api/v1/orders/{no}/refunds", json={}, as_=world.tokens["consumer"])
    assert r.json()["status"] == "failed"
    order = order_row(db, no)
    assert (order.status, order.refunded_fen) == ("paid", 0)  # can ship again
    admin = world.tokens["operator"]
    failed = api.get("/api/v1/admin/refunds?status=failed", as_=admin).json()["items"]
    assert len(failed) == 1 and "NOT_ENOUGH_BALANCE" in failed[0]["last_error"]
    assert api.get("/api/v1/admin/refunds", as_=world.tokens["consumer"]).status_code == 403

    bank.refuse = False
    retried = api.post(f"/api/v1/admin/refunds/{failed[0]['refund_no']}/retry", as_=admin)
    assert retried.status_code == 200 and retried.json()["status"] == "pending"
    assert order_row(db, no).refunded_fen == 6600
    again = api.post(f"/api/v1/admin/refunds/{failed[0]['refund_no']}/retry", as_=admin)
    assert again.status_code == 409
    service.process_refunds(db, settings, now=later(1))
    service.process_refunds(db, settings, now=later(10))
    assert refunds(db)[0].status == "succeeded"


def test_operator_sees_refunds_still_processing(
    api: Any, world: Any, db: Any, paid_goods: dict[str, Any]
) -> None:
    api.post(
        f"/api/v1/orders/{paid_goods['order_no']}/refunds", json={}, as_=world.tokens["consumer"]
    )
    listed = api.get("/api/v1/admin/refunds?status=processing", as_=world.tokens["operator"]).json()
    [row] = listed["items"]
    assert row["order_no"] == paid_goods["order_no"] and row["attempts"] == 1
    assert row["stuck"] is False and row["provider"] == "sandbox"
    with db.transaction() as session:
        session.get(Refund, 1).created_at = utcnow() - timedelta(hours=2)
    row = api.get("/api/v1/admin/refunds?status=processing", as_=world.tokens["operator"]).json()
    assert row["items"][0]["stuck"] is True


def test_refund_request_is_idempotent_with_a_key(
    api: Any, world: Any, db: Any, paid_goods: dict[str, Any]
) -> None:
    url = f"/api/v1/orders/{paid_goods['order_no']}/refunds"
    headers = {"Idempotency-Key": "refund-1"}
    token = world.tokens["consumer"]
    first = api.post(url, json={"reason": "x"}, as_=token, headers=headers)
    again = api.post(url, json={"reason": "x"}, as_=token, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["refund_no"] == again.json()["refund_no"]
    assert len(refunds(db)) == 1


def test_goods_and_services_in_one_checkout_refund_separately(
    api: Any, world: Any, db: Any, settings: Any
) -> None:
    goods = make_goods(db, world.a.id, world.category_id, price_fen=1000, stock=2)
    deal = make_deal(db, world.b.id, world.category_id, world.b.store_ids, price_fen=500)
    token = world.tokens["consumer"]
    body = place(
        api, token, [goods_item(goods), {"listing_id": deal.listing_id}], address=ADDRESS
    ).json()
    pay_sandbox(api, token, body["payment"]["payment_no"])
    goods_order = next(o for o in body["orders"] if o["kind"] == "goods")["order_no"]
    r = api.post(f"/api/v1/orders/{goods_order}/refunds", json={}, as_=token)
    assert r.status_code == 201 and r.json()["amount_fen"] == 1000
    service.process_refunds(db, settings, now=later())
    statuses = {
        o["kind"]: o["status"] for o in api.get("/api/v1/orders", as_=token).json()["items"]
    }
    assert statuses == {"goods": "refunded", "service": "paid"}
