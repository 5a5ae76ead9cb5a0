"""After-sales (售后): requests within 7 days of receipt, amounts capped by what is still
refundable, the written transition table (every other move a 409), refunds through the payment
core, the 48-hour auto-approval (twice), isolation between consumers and merchants. Both
databases."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from o2o import events, wiring
from o2o.accounts.models import User
from o2o.errors import Conflict
from o2o.merchants.access import load_actor
from o2o.orders.models import Order, OrderLine
from o2o.payments import registry
from o2o.payments import service as payments
from o2o.payments.models import Refund
from o2o.payments.providers import ProviderRefused, RefundEvent, RefundRequest
from o2o.payments.sandbox import SandboxProvider
from o2o.shipping import aftersales
from o2o.shipping.models import AfterSalesLine, AfterSalesRequest
from o2o.timeutil import utcnow
from o2o.worker import load_jobs
from tests.checkout_support import TEST_SECRET
from tests.shipping_support import (
    PaidOrder,
    orm_after_sales,
    paid_goods_order,
    sf_number,
    shift_order,
)


def received(api: Any, world: Any, **kw: Any) -> PaidOrder:
    order = paid_goods_order(api, world, **kw)
    r = api.post(
        f"/api/v1/merchants/{world.a.id}/orders/{order.order_no}/shipments",
        json={"carrier": "SF", "tracking_no": sf_number()},
        as_=world.tokens["manager"],
    )
    assert r.status_code == 201, r.text
    r = api.post(f"/api/v1/orders/{order.order_no}/confirm-receipt", as_=world.tokens["consumer"])
    assert r.status_code == 200, r.text
    return order


def open_request(
    api: Any, world: Any, order: PaidOrder, *, role: str = "consumer", **body: Any
) -> Any:
    payload = {
        "kind": "refund_only",
        "reason": "商品有破损",
        "line_ids": order.line_ids[:1],
        "amount_fen": order.amounts[0],
        **body,
    }
    return api.post(
        f"/api/v1/orders/{order.order_no}/after-sales", json=payload, as_=world.tokens[role]
    )


def decide(
    api: Any, world: Any, request_id: int, action: str, role: str = "manager", **kw: Any
) -> Any:
    url = f"/api/v1/merchants/{world.a.id}/after-sales/{request_id}/{action}"
    return api.post(url, as_=world.tokens[role], **kw)


def request_row(db: Any, request_id: int) -> AfterSalesRequest:
    with db.transaction(readonly=True) as session:
        return session.get(AfterSalesRequest, request_id)


def refunds(db: Any) -> list[Refund]:
    with db.transaction(readonly=True) as session:
        return list(session.scalars(select(Refund).order_by(Refund.id)))


def settle_refunds(db: Any, settings: Any) -> None:
    """The sandbox bank answers ``processing`` first; a later query says succeeded."""
    payments.process_refunds(db, settings, now=utcnow() + timedelta(hours=2))


def test_open_approve_refund(api: Any, world: Any, db: Any, settings: Any) -> None:
    order = received(api, world, lines=2, price_fen=3000, shipping_fee_fen=800)
    r = open_request(
        api, world, order, kind="return_refund", line_ids=order.line_ids, amount_fen=5000
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "requested" and body["status_label"] == "待商家处理"
    assert body["kind_label"] == "退货退款"
    # 5000 over lines of 3000 and 6000 left: split in proportion, exactly
    assert [(p["line_id"], p["amount_fen"]) for p in body["lines"]] == [
        (order.line_ids[0], 1667),
        (order.line_ids[1], 3333),
    ]
    request_id = body["id"]
    merchant_view = api.get(
        f"/api/v1/merchants/{world.a.id}/after-sales", as_=world.tokens["owner"]
    )
    assert [i["id"] for i in merchant_view.json()["items"]] == [request_id]
    assert merchant_view.json()["items"][0]["consumer_name"].endswith("**")

    r = decide(api, world, request_id, "approve")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved"
    assert r.json()["refund"]["amount_fen"] == 5000
    assert r.json()["refund"]["status"] in ("processing", "succeeded")
    [refund] = refunds(db)
    assert refund.initiator == f"merchant:{world.a.manager_id}"
    assert sorted((p["line_id"], p["amount_fen"]) for p in refund.lines) == [
        (order.line_ids[0], 1667),
        (order.line_ids[1], 3333),
    ]
    settle_refunds(db, settings)
    row = request_row(db, request_id)
    assert row.status == "refunded" and row.refunded_at is not None
    mine = api.get("/api/v1/after-sales", as_=world.tokens["consumer"]).json()["items"]
    assert mine[0]["status"] == "refunded" and mine[0]["refund"]["status"] == "succeeded"
    with db.transaction(readonly=True) as session:
        o = session.scalar(select(Order).where(Order.order_no == order.order_no))
        assert o.refunded_fen == 5000 and o.status == "completed"  # partial: still completed
    # what is left: 4000 on the two lines; 4001 is too much, 4000 fits
    r = open_request(api, world, order, line_ids=order.line_ids, amount_fen=4001)
    assert r.status_code == 422 and r.json()["code"] == "amount_exceeds_refundable"
    r = open_request(api, world, order, line_ids=order.line_ids, amount_fen=4000)
    assert r.status_code == 201, r.text
    assert decide(api, world, r.json()["id"], "approve").status_code == 200
    settle_refunds(db, settings)
    with db.transaction(readonly=True) as session:
        lines = session.scalars(select(OrderLine).where(OrderLine.id.in_(order.line_ids))).all()
        assert all(line.refunded_fen == line.amount_fen for line in lines)
    r = open_request(api, world, order, amount_fen=1)
    assert r.status_code == 409 and r.json()["code"] == "nothing_to_refund"


def test_whole_order_refunded_through_after_sales(
    api: Any, world: Any, db: Any, settings: Any
) -> None:
    order = received(api, world, lines=1, price_fen=2500)
    r = open_request(api, world, order, amount_fen=2500)
    assert decide(api, world, r.json()["id"], "approve").status_code == 200
    settle_refunds(db, settings)
    with db.transaction(readonly=True) as session:
        o = session.scalar(select(Order).where(Order.order_no == order.order_no))
        assert o.status == "refunded"


def test_only_received_orders_within_seven_days(api: Any, world: Any, db: Any) -> None:
    order = paid_goods_order(api, world)
    r = open_request(api, world, order)
    assert r.status_code == 409 and r.json()["code"] == "not_received"
    api.post(
        f"/api/v1/merchants/{world.a.id}/orders/{order.order_no}/shipments",
        json={"carrier": "SF", "tracking_no": sf_number()},
        as_=world.tokens["manager"],
    )
    assert open_request(api, world, order).json()["code"] == "not_received"  # shipped only
    assert (
        api.post(
            f"/api/v1/orders/{order.order_no}/confirm-receipt", as_=world.tokens["consumer"]
        ).status_code
        == 200
    )
    now = utcnow()
    shift_order(db, order.order_no, completed_at=now - timedelta(days=7, minutes=1))
    r = open_request(api, world, order)
    assert r.status_code == 409 and r.json()["code"] == "after_sales_window_closed"
    shift_order(db, order.order_no, completed_at=now - timedelta(days=6, hours=23))
    assert open_request(api, world, order).status_code == 201


def test_request_input_and_isolation(api: Any, world: Any, db: Any) -> None:
    order = received(api, world, lines=2)
    # someone else's order looks like no order
    assert open_request(api, world, order, role="other_consumer").status_code == 404
    assert open_request(api, world, order, role="manager").status_code == 404
    assert api.post(f"/api/v1/orders/{order.order_no}/after-sales", json={}).status_code == 401
    # bad input: 422, nothing written
    for bad in (
        {"kind": "exchange"},
        {"reason": ""},
        {"line_ids": []},
        {"line_ids": [10**9]},
        {"line_ids": [2**70]},
        {"amount_fen": 0},
        {"amount_fen": 10**20},
        {"amount_fen": order.amounts[0] + 1},
        {"reason": "坏\x00了"},
    ):
        r = open_request(api, world, order, **bad)
        assert r.status_code == 422, (bad, r.text)
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(AfterSalesRequest)) == 0
    # one open request per line at a time; another line is fine
    first = open_request(api, world, order)
    assert first.status_code == 201
    dup = open_request(api, world, order, line_ids=order.line_ids)
    assert dup.status_code == 409 and dup.json()["code"] == "after_sales_already_open"
    assert (
        open_request(api, world, order, line_ids=order.line_ids[1:], amount_fen=100).status_code
        == 201
    )
    # lists: each sees their own
    assert len(api.get("/api/v1/after-sales", as_=world.tokens["consumer"]).json()["items"]) == 2
    assert api.get("/api/v1/after-sales", as_=world.tokens["other_consumer"]).json()["items"] == []
    assert (
        len(
            api.get(
                "/api/v1/after-sales?status=requested&limit=1", as_=world.tokens["consumer"]
            ).json()["items"]
        )
        == 1
    )
    assert (
        api.get("/api/v1/after-sales?status=bogus", as_=world.tokens["consumer"]).status_code == 422
    )
    assert (
        api.get(
            f"/api/v1/merchants/{world.b.id}/after-sales", as_=world.tokens["other_manager"]
        ).json()["items"]
        == []
    )
    for role in ("clerk", "consumer", "other_manager"):
        assert (
            api.get(
                f"/api/v1/merchants/{world.a.id}/after-sales", as_=world.tokens[role]
            ).status_code
            == 403
        )
    # merchants decide only their own
    request_id = first.json()["id"]
    assert decide(api, world, request_id, "approve", role="clerk").status_code == 403
    assert decide(api, world, request_id, "approve", role="other_manager").status_code == 403
    r = api.post(
        f"/api/v1/merchants/{world.b.id}/after-sales/{request_id}/approve",
        as_=world.tokens["other_manager"],
    )
    assert r.status_code == 404
    assert (
        api.post(
            f"/api/v1/after-sales/{request_id}/cancel", as_=world.tokens["other_consumer"]
        ).status_code
        == 404
    )
    assert request_row(db, request_id).status == "requested"
    assert refunds(db) == []


def test_transitions_not_in_the_table_are_409(api: Any, world: Any, db: Any) -> None:
    order = received(api, world, lines=3)
    # rejected: final
    a = open_request(api, world, order, line_ids=[order.line_ids[0]]).json()["id"]
    assert decide(api, world, a, "reject", json={"reason": ""}).status_code == 422
    r = decide(api, world, a, "reject", json={"reason": "商品已使用，不支持退货"})
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert r.json()["reject_reason"] == "商品已使用，不支持退货"
    for action in ("approve", "reject"):
        r = decide(api, world, a, action, json={"reason": "x"})
        assert r.status_code == 409 and r.json()["code"] == "invalid_transition", action
    assert (
        api.post(f"/api/v1/after-sales/{a}/cancel", as_=world.tokens["consumer"]).status_code == 409
    )
    # cancelled: final
    b = open_request(api, world, order, line_ids=[order.line_ids[1]], amount_fen=100).json()["id"]
    r = api.post(f"/api/v1/after-sales/{b}/cancel", as_=world.tokens["consumer"])
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert (
        api.post(f"/api/v1/after-sales/{b}/cancel", as_=world.tokens["consumer"]).status_code == 409
    )
    assert decide(api, world, b, "approve").status_code == 409
    # approved: no reject, no cancel, no second approval (one refund only)
    c = open_request(api, world, order, line_ids=[order.line_ids[2]], amount_fen=100).json()["id"]
    assert decide(api, world, c, "approve", role="owner").status_code == 200
    assert decide(api, world, c, "approve").status_code == 409
    assert decide(api, world, c, "reject", json={"reason": "改主意"}).status_code == 409
    assert (
        api.post(f"/api/v1/after-sales/{c}/cancel", as_=world.tokens["consumer"]).status_code == 409
    )
    assert len(refunds(db)) == 1
    # a line whose request was rejected or cancelled can be asked for again
    assert open_request(api, world, order, line_ids=[order.line_ids[0]]).status_code == 201


def test_unanswered_requests_are_approved_after_48_hours(
    api: Any, world: Any, db: Any, settings: Any
) -> None:
    order = received(api, world, lines=2)
    late = open_request(api, world, order).json()["id"]
    fresh = open_request(api, world, order, line_ids=order.line_ids[1:], amount_fen=100).json()[
        "id"
    ]
    now = utcnow()
    assert aftersales.auto_approve(db, settings, now=now + timedelta(hours=47)) == 0
    with db.transaction() as session:
        session.get(AfterSalesRequest, late).respond_by = now - timedelta(minutes=1)

    job = next(j for j in load_jobs() if j.name == "after_sales_auto_approve")
    assert job.run(db, settings) == 1
    assert job.run(db, settings) == 0  # twice: nothing more
    row = request_row(db, late)
    assert row.status == "approved" and row.decided_by == "system:timeout"
    assert request_row(db, fresh).status == "requested"
    [refund] = refunds(db)
    assert refund.initiator == "system:timeout" and refund.status == "processing"  # sent at once
    view = api.get("/api/v1/after-sales", as_=world.tokens["consumer"]).json()["items"]
    assert next(i for i in view if i["id"] == late)["decided_automatically"] is True
    # the refund sweep finishes it; the listener marks the request refunded
    settle_refunds(db, settings)
    assert request_row(db, late).status == "refunded"
    assert len(refunds(db)) == 1
    # the merchant may no longer answer it
    assert decide(api, world, late, "reject", json={"reason": "太晚了"}).status_code == 409


def test_sync_marks_refunded_when_the_listener_was_missed(
    api: Any, world: Any, db: Any, settings: Any
) -> None:
    order = received(api, world)
    request_id = open_request(api, world, order).json()["id"]
    assert decide(api, world, request_id, "approve").status_code == 200
    with wiring.without_in_transaction(events.RefundSucceeded, aftersales.on_refund_succeeded):
        settle_refunds(db, settings)
    assert request_row(db, request_id).status == "approved"
    assert aftersales.sync_refunded(db) == 1
    assert aftersales.sync_refunded(db) == 0
    assert request_row(db, request_id).status == "refunded"


def test_split_is_exact_over_many_lines(api: Any, world: Any, db: Any) -> None:
    order = received(api, world, lines=3, price_fen=1000)  # lines of 1000, 2000, 3000
    r = open_request(api, world, order, line_ids=order.line_ids, amount_fen=1001)
    assert r.status_code == 201
    with db.transaction(readonly=True) as session:
        parts = session.scalars(
            select(AfterSalesLine).where(AfterSalesLine.request_id == r.json()["id"])
        ).all()
    assert sum(p.amount_fen for p in parts) == 1001
    assert all(p.amount_fen <= a for p, a in zip(parts, order.amounts, strict=True))


def test_auto_approve_with_several_workers_refunds_each_request_once(
    world: Any, db: Any, settings: Any
) -> None:
    ids = [orm_after_sales(world, respond_in=timedelta(minutes=-1)) for _ in range(8)]
    moved: list[int] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        moved.append(aftersales.auto_approve(db, settings, batch=3))
        moved.append(aftersales.auto_approve(db, settings, batch=3))
        moved.append(aftersales.auto_approve(db, settings, batch=3))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with db.transaction(readonly=True) as session:
        rows = session.scalars(select(AfterSalesRequest).where(AfterSalesRequest.id.in_(ids))).all()
        assert {r.status for r in rows} == {"approved"}
        per_order = session.execute(
            select(Refund.order_id, func.count()).group_by(Refund.order_id)
        ).all()
    assert len(per_order) == 8 and all(n == 1 for _order, n in per_order)
    assert {r.refund_id for r in rows} == {r.id for r in refunds(db)}


def _race_approve_and_cancel(db: Any, world: Any, manager: Any, request_id: int) -> list[str]:
    results: list[str] = []
    barrier = threading.Barrier(2)

    def approve() -> None:
        barrier.wait()
        try:
            with db.transaction() as session:
                aftersales.approve(session, manager, world.a.id, request_id)
            results.append("approved")
        except Conflict:
            results.append("refused")

    def cancel() -> None:
        barrier.wait()
        try:
            with db.transaction() as session:
                aftersales.cancel_request(session, world.consumer_id, request_id)
            results.append("cancelled")
        except Conflict:
            results.append("refused")

    threads = [threading.Thread(target=approve), threading.Thread(target=cancel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_approve_racing_cancel_one_wins(world: Any, db: Any) -> None:
    with db.transaction(readonly=True) as session:
        manager = load_actor(session, session.get(User, world.a.manager_id))
    for _ in range(3):
        request_id = orm_after_sales(world)
        results = _race_approve_and_cancel(db, world, manager, request_id)
        assert sorted(results) in (["approved", "refused"], ["cancelled", "refused"]), results
        status = request_row(db, request_id).status
        assert status == ("approved" if "approved" in results else "cancelled")
    approved = sum(1 for r in refunds(db) if r.initiator == f"merchant:{world.a.manager_id}")
    with db.transaction(readonly=True) as session:
        assert approved == session.scalar(
            select(func.count())
            .select_from(AfterSalesRequest)
            .where(AfterSalesRequest.status == "approved")
        )


@dataclass
class RefusingBank(SandboxProvider):
    """The sandbox, but the bank refuses refunds while ``refuse`` is set."""

    refuse: bool = True

    def __post_init__(self) -> None:
        SandboxProvider.__init__(self, TEST_SECRET)

    def refund(self, refund: RefundRequest) -> RefundEvent:
        if self.refuse:
            raise ProviderRefused("NOT_ENOUGH", "商户余额不足")
        return super().refund(refund)


@pytest.fixture
def refusing_bank() -> Iterator[RefusingBank]:
    provider = RefusingBank()
    registry.overrides["sandbox"] = lambda settings: provider
    try:
        yield provider
    finally:
        registry.overrides.pop("sandbox", None)


def test_a_refused_refund_is_refund_failed_then_retried(
    api: Any, world: Any, db: Any, settings: Any, refusing_bank: RefusingBank
) -> None:
    """An approved request whose refund the provider refuses never stays "approved" silently:
    it is ``refund_failed`` (visible to all), the worker sends it again later, and once the
    bank pays it ends ``refunded``."""
    order = received(api, world)
    request_id = open_request(api, world, order).json()["id"]
    r = decide(api, world, request_id, "approve")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "refund_failed"
    assert r.json()["status_label"] == "退款失败，等待重试"
    assert r.json()["refund"]["status"] == "failed"
    mine = api.get("/api/v1/after-sales?status=refund_failed", as_=world.tokens["consumer"])
    assert [i["id"] for i in mine.json()["items"]] == [request_id]
    failed = api.get("/api/v1/admin/refunds?status=failed", as_=world.tokens["operator"])
    assert len(failed.json()["items"]) == 1
    # The money is not back: the same lines cannot be asked for again meanwhile.
    again = open_request(api, world, order)
    assert again.status_code == 409 and again.json()["code"] == "after_sales_already_open"

    # Too early for the worker; an hour later it retries (same refund_no) — refused again.
    [refund] = refunds(db)
    assert aftersales.retry_failed_refunds(db, settings) == 0
    soon = utcnow() + aftersales.REFUND_RETRY_AFTER + timedelta(minutes=1)
    assert aftersales.retry_failed_refunds(db, settings, now=soon) == 1
    assert request_row(db, request_id).status == "refund_failed"
    assert [r.refund_no for r in refunds(db)] == [refund.refund_no]

    # The bank has money again: the next retry goes through and the request is refunded.
    refusing_bank.refuse = False
    later = soon + aftersales.REFUND_RETRY_AFTER + timedelta(minutes=1)
    assert aftersales.retry_failed_refunds(db, settings, now=later) == 1
    assert request_row(db, request_id).status == "approved"
    payments.process_refunds(db, settings, now=later + timedelta(hours=2))
    row = request_row(db, request_id)
    assert row.status == "refunded" and row.refunded_at is not None
    [refund] = refunds(db)
    assert refund.status == "succeeded"


def test_refund_failed_waits_for_the_operator_after_the_automatic_attempts(
    api: Any, world: Any, db: Any, settings: Any, refusing_bank: RefusingBank
) -> None:
    order = received(api, world)
    request_id = open_request(api, world, order).json()["id"]
    assert decide(api, world, request_id, "approve").json()["status"] == "refund_failed"
    with db.transaction() as session:
        session.execute(update(Refund).values(attempts=aftersales.REFUND_AUTO_ATTEMPTS))
    far = utcnow() + timedelta(days=1)
    assert aftersales.retry_failed_refunds(db, settings, now=far) == 0
    assert request_row(db, request_id).status == "refund_failed"
    # Transitions outside the table stay 409: a failed request cannot be approved again.
    assert decide(api, world, request_id, "approve").status_code == 409

    # The operator retries from the refund console: the request is on its way again.
    refusing_bank.refuse = False
    [refund] = refunds(db)
    retried = api.post(
        f"/api/v1/admin/refunds/{refund.refund_no}/retry", as_=world.tokens["operator"]
    )
    assert retried.status_code == 200, retried.text
    assert request_row(db, request_id).status == "approved"
    payments.process_refunds(db, settings, now=far)
    payments.process_refunds(db, settings, now=far + timedelta(hours=2))
    assert request_row(db, request_id).status == "refunded"
