"""The payment core (law 3): notifications verified, stored, applied once; replays, concurrent
duplicates, tampering, amount mismatches; failed attempts; the payment timeout (idempotent, two
workers at once); money arriving after the timeout (revived or refunded). Both databases."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from o2o import events, wiring
from o2o.orders.models import Order
from o2o.payments import registry, service
from o2o.payments.models import Payment, PaymentNotification, Refund
from o2o.payments.providers import (
    EVENT_PENDING,
    EVENT_SUCCEEDED,
    NotificationAnswer,
    PaymentEvent,
    PaymentRequest,
    RefundEvent,
    RefundRequest,
)
from o2o.timeutil import utcnow
from tests.checkout_support import (
    ADDRESS,
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
    start_sandbox,
)
from tests.support import ApiClient


def results(db: Any, payment_no: str | None = None) -> list[str]:
    with db.transaction(readonly=True) as session:
        stmt = select(PaymentNotification.result).order_by(PaymentNotification.id)
        if payment_no:
            stmt = stmt.where(PaymentNotification.payment_no == payment_no)
        return list(session.scalars(stmt))


def payment_row(db: Any, payment_no: str) -> Payment:
    with db.transaction(readonly=True) as session:
        return session.scalar(select(Payment).where(Payment.payment_no == payment_no))


def order_status(api: Any, token: str, order_no: str) -> str:
    return api.get(f"/api/v1/orders/{order_no}", as_=token).json()["status"]


@pytest.fixture
def bought(api: Any, world: Any, db: Any) -> dict[str, Any]:
    goods = make_goods(db, world.a.id, world.category_id, price_fen=1990, stock=3)
    body = checkout_goods(api, world.tokens["consumer"], goods)
    start_sandbox(api, world.tokens["consumer"], body["payment"]["payment_no"])
    return {"goods": goods, "body": body, "payment_no": body["payment"]["payment_no"]}


def test_replayed_notification_changes_nothing_the_second_time(
    api: Any, world: Any, db: Any, bought: dict[str, Any]
) -> None:
    no = bought["payment_no"]
    headers, body = sandbox().payment_notification(no, 1990)
    calls: list[str] = []
    with wiring.extra_in_transaction(events.OrderPaid, lambda s, e: calls.append(e.order_no)):
        for _ in range(5):
            r = notify(api, headers, body)
            assert r.status_code == 200 and r.json() == {"code": "SUCCESS"}
    assert results(db, no) == ["applied"] + ["duplicate"] * 4
    assert len(calls) == 1
    lv = assert_units_reconcile(db, bought["goods"].item_id)
    assert (lv.sold, lv.held) == (1, 0)
    paid_at = payment_row(db, no).paid_at
    # a later, different success notification for the same payment: still one state change
    headers2, body2 = sandbox().payment_notification(no, 1990)
    assert notify(api, headers2, body2).status_code == 200
    assert payment_row(db, no).paid_at == paid_at
    assert levels(db, bought["goods"].item_id).sold == 1


def test_concurrent_duplicate_notifications_apply_once(
    app: Any, world: Any, db: Any, bought: dict[str, Any]
) -> None:
    no = bought["payment_no"]
    headers, body = sandbox().payment_notification(no, 1990)
    statuses: list[int] = []
    barrier = threading.Barrier(10)

    def deliver() -> None:
        with ApiClient(app) as client:
            barrier.wait()
            statuses.append(notify(client, headers, body).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 10
    got = results(db, no)
    assert got.count("applied") == 1 and got.count("duplicate") == 9
    assert levels(db, bought["goods"].item_id).sold == 1


def test_tampered_notification_is_rejected_and_stored(
    api: Any, world: Any, db: Any, bought: dict[str, Any]
) -> None:
    no = bought["payment_no"]
    headers, body = sandbox().payment_notification(no, 1990)
    message = json.loads(body)
    message["resource"]["amount_fen"] = 1  # change the amount, keep the signature
    r = notify(api, headers, json.dumps(message).encode())
    assert r.status_code == 400 and r.json()["code"] == "FAIL"
    forged_headers, forged = sandbox("another-secret-key-" + "y" * 30).payment_notification(
        no, 1990
    )
    assert notify(api, forged_headers, forged).status_code == 400
    assert notify(api, {}, b"not json at all").status_code == 400
    assert notify(api, {}, json.dumps({"signature": 5}).encode()).status_code == 400
    with db.transaction(readonly=True) as session:
        stored = session.scalars(select(PaymentNotification).order_by(PaymentNotification.id)).all()
    assert [n.result for n in stored] == ["rejected"] * 4
    assert not any(n.verified for n in stored)
    assert "signature" in stored[0].detail and '"amount_fen": 1' in stored[0].body
    assert payment_row(db, no).status == "pending"
    assert levels(db, bought["goods"].item_id).held == 1


def test_stale_notification_is_rejected(
    api: Any, world: Any, db: Any, bought: dict[str, Any]
) -> None:
    from o2o.payments.sandbox import SandboxProvider
    from tests.checkout_support import TEST_SECRET

    old = SandboxProvider(TEST_SECRET, clock=lambda: utcnow().timestamp() - 3600)
    headers, body = old.payment_notification(bought["payment_no"], 1990)
    assert notify(api, headers, body).status_code == 400
    assert results(db) == ["rejected"]


def test_amount_mismatch_is_recorded_not_applied(
    api: Any, world: Any, db: Any, bought: dict[str, Any]
) -> None:
    no = bought["payment_no"]
    headers, body = sandbox().payment_notification(no, 1)  # genuine, but 1 fen
    assert notify(api, headers, body).status_code == 200
    headers, body = sandbox().payment_notification(no, 1990, currency="USD")
    assert notify(api, headers, body).status_code == 200
    assert results(db, no) == ["amount_mismatch", "amount_mismatch"]
    assert payment_row(db, no).status == "pending"
    assert order_status(api, world.tokens["consumer"], bought["body"]["orders"][0]["order_no"]) == (
        "pending_payment"
    )


def test_unknown_payment_and_wrong_provider_are_recorded(api: Any, world: Any, db: Any) -> None:
    headers, body = sandbox().payment_notification("P20260101000000000000", 100)
    assert notify(api, headers, body).status_code == 200
    goods = make_goods(db, world.a.id, world.category_id)
    unstarted = checkout_goods(api, world.tokens["consumer"], goods)["payment"]
    headers, body = sandbox().payment_notification(unstarted["payment_no"], unstarted["amount_fen"])
    assert notify(api, headers, body).status_code == 200
    assert results(db) == ["unknown", "rejected"]
    assert payment_row(db, unstarted["payment_no"]).status == "created"


def test_failed_attempt_leaves_the_payment_payable(
    api: Any, world: Any, db: Any, bought: dict[str, Any]
) -> None:
    token = world.tokens["consumer"]
    no = bought["payment_no"]
    r = api.post(f"/sandbox/cashier/{no}", json={"result": "fail"}, as_=token)
    assert r.status_code == 200 and r.json()["status"] == "failed"
    assert levels(db, bought["goods"].item_id).held == 1
    order_no = bought["body"]["orders"][0]["order_no"]
    assert order_status(api, token, order_no) == "pending_payment"
    # pay again and succeed
    pay_sandbox(api, token, no)
    assert order_status(api, token, order_no) == "paid"
    # a late "failed" after success changes nothing
    headers, body = sandbox().payment_notification(no, 1990, success=False)
    notify(api, headers, body)
    assert payment_row(db, no).status == "succeeded"
    assert results(db, no)[-1] == "ignored"


def test_payment_start_rules(api: Any, world: Any, db: Any, settings: Any) -> None:
    goods = make_goods(db, world.a.id, world.category_id, stock=5)
    token = world.tokens["consumer"]
    no = checkout_goods(api, token, goods)["payment"]["payment_no"]
    url = f"/api/v1/payments/{no}/pay"
    assert (
        api.post(url, json={"provider": "sandbox"}, as_=world.tokens["other_consumer"]).status_code
        == 404
    )
    assert api.post(url, json={"provider": "paypal"}, as_=token).status_code == 422
    bad = api.post(url, json={"provider": "sandbox", "method": "jsapi"}, as_=token)
    assert bad.status_code == 422
    ok = api.post(url, json={"provider": "sandbox"}, as_=token)
    assert ok.status_code == 200 and ok.json()["cashier_url"] == f"/sandbox/cashier/{no}"
    again = api.post(url, json={"provider": "sandbox"}, as_=token)
    assert again.json()["cashier_url"] == ok.json()["cashier_url"]
    # WeChat Pay is not configured in tests: 404 with a clear code
    wx = api.post(url, json={"provider": "wechatpay", "method": "native"}, as_=token)
    assert wx.status_code == 404 and wx.json()["code"] == "provider_not_available"
    # an expired payment cannot be started
    with db.transaction() as session:
        session.execute(
            update(Payment)
            .where(Payment.payment_no == no)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    late = api.post(url, json={"provider": "sandbox"}, as_=token)
    assert late.status_code == 409 and late.json()["code"] == "payment_expired"
    assert api.get(f"/api/v1/payments/{no}", as_=world.tokens["other_consumer"]).status_code == 404


def test_payment_window_stays_inside_the_prepay_validity(db_url: str, tmp_path: Any) -> None:
    from o2o.orders.service import payment_window
    from tests.conftest import make_settings

    assert payment_window(make_settings(db_url, tmp_path)) == timedelta(minutes=15)
    long = make_settings(db_url, tmp_path, payment_timeout_seconds=5 * 3600)
    assert payment_window(long) < timedelta(hours=2)


def test_sandbox_can_be_turned_off(db_url: str, tmp_path: Any) -> None:
    from o2o.app import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(db_url, tmp_path, sandbox_payments=False))
    with ApiClient(app) as client:
        assert client.get("/sandbox/cashier/P1").status_code == 404
        r = notify(client, {}, b"{}")
        assert r.status_code == 404 and r.json()["code"] == "provider_not_available"


def test_the_sandbox_is_off_unless_turned_on() -> None:
    from o2o.config import Settings

    assert Settings(_env_file=None).sandbox_payments is False


def test_the_sandbox_cashier_serves_only_the_payers_own_session_with_csrf(
    app: Any, world: Any, db: Any
) -> None:
    from tests.web.support import TOKEN, PageClient

    goods = make_goods(db, world.a.id, world.category_id, stock=5)
    token = world.tokens["consumer"]
    no = checkout_goods(api_client := ApiClient(app), token, goods)["payment"]["payment_no"]
    start_sandbox(api_client, token, no)
    url = f"/sandbox/cashier/{no}"
    with PageClient(app) as stranger:
        # Knowing the payment number is not enough: no session, another consumer's session or
        # token, or the payer's own session without the CSRF token.
        assert stranger.sign_in(None).post(url, data={"result": "success"}).status_code == 403
        assert stranger.post(url, json={"result": "success"}).status_code == 403
        assert stranger.get(url).status_code == 403
        stranger.sign_in(world.other_consumer_id)
        assert stranger.form_post(url, {"result": "success"}).status_code == 404
        assert stranger.get(url).status_code == 404
        other = {"Authorization": f"Bearer {world.tokens['other_consumer']}"}
        assert stranger.post(url, json={"result": "success"}, headers=other).status_code == 404
        stranger.sign_in(world.consumer_id)
        r = stranger.form_post(url, {"result": "success"}, token=False)
        assert r.status_code == 403
        assert payment_row(db, no).status == "pending"
        # The payer's page: its buttons carry the CSRF token, and pressing one pays.
        page = stranger.get(url)
        assert page.status_code == 200 and f'name="csrf_token" value="{TOKEN}"' in page.text
        r = stranger.form_post(url, {"result": "success"})
        assert r.status_code == 303, r.text
    assert payment_row(db, no).status == "succeeded"
    api_client.close()


# --- the payment timeout ---------------------------------------------------------------------


def _expire(settings: Any) -> Any:
    return utcnow() + timedelta(seconds=settings.payment_timeout_seconds + 1)


def test_timeout_cancels_releases_and_is_idempotent(
    api: Any, world: Any, db: Any, settings: Any
) -> None:
    goods = make_goods(db, world.a.id, world.category_id, stock=10)
    deal = make_deal(db, world.b.id, world.category_id, world.b.store_ids, stock=10)
    token = world.tokens["consumer"]
    unpaid = [
        place(
            api, token, [goods_item(goods, 2), {"listing_id": deal.listing_id}], address=ADDRESS
        ).json()
        for _ in range(3)
    ]
    paid = checkout_goods(api, token, goods, quantity=1)
    pay_sandbox(api, token, paid["payment"]["payment_no"])
    start_sandbox(api, token, unpaid[0]["payment"]["payment_no"])  # started, never paid
    assert levels(db, goods.item_id).held == 6

    # not yet due: nothing happens
    assert service.close_expired(db, settings) == 0
    assert service.close_expired(db, settings, now=_expire(settings)) == 3
    assert service.close_expired(db, settings, now=_expire(settings)) == 0
    for body in unpaid:
        for o in body["orders"]:
            detail = api.get(f"/api/v1/orders/{o['order_no']}", as_=token).json()
            assert detail["status"] == "cancelled" and detail["cancel_reason"] == "payment_timeout"
        assert payment_row(db, body["payment"]["payment_no"]).status == "closed"
    for item in (goods.item_id, deal.item_id):
        lv = assert_units_reconcile(db, item)
        assert lv.held == 0
    assert levels(db, goods.item_id).available == 9  # one paid unit stays sold
    assert order_status(api, token, paid["orders"][0]["order_no"]) == "paid"


def test_timeout_with_two_workers_at_once(api: Any, world: Any, db: Any, settings: Any) -> None:
    goods = make_goods(db, world.a.id, world.category_id, stock=40)
    token = world.tokens["consumer"]
    for _ in range(20):
        checkout_goods(api, token, goods, quantity=2)
    assert levels(db, goods.item_id).held == 40
    now = _expire(settings)
    closed: list[int] = []
    barrier = threading.Barrier(2)

    def sweep() -> None:
        barrier.wait()
        closed.append(service.close_expired(db, settings, now=now, batch=3))

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(closed) == 20
    lv = assert_units_reconcile(db, goods.item_id)
    assert (lv.available, lv.held, lv.sold) == (40, 0, 0)


def test_timeout_and_payment_race_never_both_win(
    app: Any, world: Any, db: Any, settings: Any
) -> None:
    goods = make_goods(db, world.a.id, world.category_id, stock=30)
    token = world.tokens["consumer"]
    with ApiClient(app) as client:
        bodies = [checkout_goods(client, token, goods) for _ in range(15)]
        for b in bodies:
            start_sandbox(client, token, b["payment"]["payment_no"])
    now = _expire(settings)

    def pay_all() -> None:
        with ApiClient(app) as client:
            for b in bodies:
                client.post(
                    f"/sandbox/cashier/{b['payment']['payment_no']}",
                    json={"result": "success"},
                    as_=token,
                )

    payer = threading.Thread(target=pay_all)
    payer.start()
    service.close_expired(db, settings, now=now, batch=2)
    payer.join()
    service.process_refunds(db, settings, now=now + timedelta(hours=2))
    # every payment ends succeeded; each order is paid (applied or revived: stock was there)
    with db.transaction(readonly=True) as session:
        statuses = set(session.scalars(select(Payment.status)))
    assert statuses == {"succeeded"}
    with ApiClient(app) as client:
        assert {
            o["status"] for o in client.get("/api/v1/orders?limit=50", as_=token).json()["items"]
        } == {"paid"}
    lv = assert_units_reconcile(db, goods.item_id)
    assert (lv.sold, lv.held) == (15, 0)


# --- money after the timeout -----------------------------------------------------------------


def test_success_after_timeout_revives_when_stock_can_be_held_again(
    api: Any, world: Any, db: Any, settings: Any, bought: dict[str, Any]
) -> None:
    no = bought["payment_no"]
    service.close_expired(db, settings, now=_expire(settings))
    assert levels(db, bought["goods"].item_id).held == 0
    headers, body = sandbox().payment_notification(no, 1990)
    assert notify(api, headers, body).status_code == 200
    assert results(db, no) == ["revived"]
    payment = payment_row(db, no)
    assert (payment.status, payment.resolution) == ("succeeded", "revived")
    order_no = bought["body"]["orders"][0]["order_no"]
    assert order_status(api, world.tokens["consumer"], order_no) == "paid"
    lv = assert_units_reconcile(db, bought["goods"].item_id)
    assert (lv.available, lv.held, lv.sold) == (2, 0, 1)
    assert notify(api, headers, body).status_code == 200  # replay: nothing more
    assert levels(db, bought["goods"].item_id).sold == 1


def test_success_after_timeout_refunds_when_stock_is_gone(
    api: Any, world: Any, db: Any, settings: Any, bought: dict[str, Any]
) -> None:
    no = bought["payment_no"]
    goods = bought["goods"]
    service.close_expired(db, settings, now=_expire(settings))
    # someone else buys all 3 units meanwhile
    checkout_goods(api, world.tokens["other_consumer"], goods, quantity=3)
    headers, body = sandbox().payment_notification(no, 1990)
    assert notify(api, headers, body).status_code == 200
    assert results(db, no)[0] == "auto_refunded"
    payment = payment_row(db, no)
    assert (payment.status, payment.resolution) == ("succeeded", "auto_refunded")
    order_no = bought["body"]["orders"][0]["order_no"]
    assert order_status(api, world.tokens["consumer"], order_no) == "cancelled"
    with db.transaction(readonly=True) as session:
        refund = session.scalar(select(Refund))
    assert refund.amount_fen == 1990 and refund.initiator == "system:late_payment"
    assert refund.status == "processing"  # submitted at once; the sandbox bank takes a moment
    service.process_refunds(db, settings, now=utcnow() + timedelta(minutes=5))
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(Refund.status)) == "succeeded"
    lv = assert_units_reconcile(db, goods.item_id)
    assert (lv.held, lv.sold) == (3, 0)
    # a replay changes nothing and makes no second refund
    notify(api, headers, body)
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Refund)) == 1


def test_success_after_consumer_cancel_is_refunded_not_revived(
    api: Any, world: Any, db: Any, settings: Any, bought: dict[str, Any]
) -> None:
    token = world.tokens["consumer"]
    order_no = bought["body"]["orders"][0]["order_no"]
    assert api.post(f"/api/v1/orders/{order_no}/cancel", as_=token).status_code == 200
    headers, body = sandbox().payment_notification(bought["payment_no"], 1990)
    notify(api, headers, body)
    assert results(db, bought["payment_no"]) == ["auto_refunded"]
    assert order_status(api, token, order_no) == "cancelled"
    assert levels(db, bought["goods"].item_id).held == 0


# --- active query (a provider that can be asked) -----------------------------------------------


@dataclass
class AskableProvider:
    """Stands in for WeChat Pay: it knows whether a payment was paid."""

    name: str = "wechatpay"
    paid: set[str] = field(default_factory=set)
    queries: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)

    def prepare(self, payment: PaymentRequest, *, method: str, **_: Any) -> dict[str, Any]:
        return {"code_url": f"weixin://wxpay/bizpayurl?pr={payment.payment_no}"}

    def query(self, payment: PaymentRequest) -> PaymentEvent:
        self.queries.append(payment.payment_no)
        if payment.payment_no in self.paid:
            return PaymentEvent(
                self.name,
                payment.payment_no,
                EVENT_SUCCEEDED,
                payment.amount_fen,
                provider_txn_id="42",
            )
        return PaymentEvent(self.name, payment.payment_no, EVENT_PENDING, 0)

    def close(self, payment: PaymentRequest) -> None:
        self.closed.append(payment.payment_no)

    def refund(self, refund: RefundRequest) -> RefundEvent:
        return RefundEvent(self.name, refund.refund_no, "processing", refund.amount_fen)

    def query_refund(self, refund: RefundRequest) -> RefundEvent:
        return RefundEvent(self.name, refund.refund_no, "succeeded", refund.amount_fen)

    def parse_notification(self, headers: Any, body: bytes) -> Any:
        raise NotImplementedError

    def answer(self, ok: bool, message: str = "") -> NotificationAnswer:
        return NotificationAnswer(204 if ok else 500)


@pytest.fixture
def askable() -> Iterator[AskableProvider]:
    provider = AskableProvider()
    registry.overrides["wechatpay"] = lambda settings: provider
    try:
        yield provider
    finally:
        registry.overrides.pop("wechatpay", None)


def test_get_payment_asks_the_provider_after_a_minute(
    api: Any, world: Any, db: Any, askable: AskableProvider
) -> None:
    goods = make_goods(db, world.a.id, world.category_id)
    token = world.tokens["consumer"]
    no = checkout_goods(api, token, goods)["payment"]["payment_no"]
    r = api.post(
        f"/api/v1/payments/{no}/pay", json={"provider": "wechatpay", "method": "native"}, as_=token
    )
    assert r.status_code == 200 and r.json()["code_url"].startswith("weixin://")
    askable.paid.add(no)
    assert api.get(f"/api/v1/payments/{no}", as_=token).json()["status"] == "pending"
    assert askable.queries == []  # too early to ask
    with db.transaction() as session:
        session.execute(
            update(Payment)
            .where(Payment.payment_no == no)
            .values(started_at=utcnow() - timedelta(minutes=2))
        )
    assert api.get(f"/api/v1/payments/{no}", as_=token).json()["status"] == "succeeded"
    assert askable.queries == [no]
    assert results(db, no) == ["applied"]
    # switching provider after starting is refused (two providers could both take the money)
    switched = api.post(f"/api/v1/payments/{no}/pay", json={"provider": "sandbox"}, as_=token)
    assert switched.status_code == 409


def test_timeout_asks_the_provider_before_closing(
    api: Any, world: Any, db: Any, settings: Any, askable: AskableProvider
) -> None:
    goods = make_goods(db, world.a.id, world.category_id, stock=5)
    token = world.tokens["consumer"]
    lost = checkout_goods(api, token, goods)["payment"]["payment_no"]
    unpaid = checkout_goods(api, token, goods)["payment"]["payment_no"]
    for no in (lost, unpaid):
        api.post(
            f"/api/v1/payments/{no}/pay",
            json={"provider": "wechatpay", "method": "native"},
            as_=token,
        )
    askable.paid.add(lost)  # paid, but its notification never came
    assert service.close_expired(db, settings, now=_expire(settings)) == 1
    assert payment_row(db, lost).status == "succeeded"
    assert payment_row(db, unpaid).status == "closed"
    assert askable.closed == [unpaid]
    lv = assert_units_reconcile(db, goods.item_id)
    assert (lv.sold, lv.held) == (1, 0)


def test_each_order_keeps_its_transaction_id(api: Any, world: Any, db: Any) -> None:
    """合单: the provider pays each sub-order (= order) under its own transaction id; a single
    payment's id is the order's too."""
    token = world.tokens["consumer"]
    a = make_goods(db, world.a.id, world.category_id, price_fen=1000)
    b = make_goods(db, world.b.id, world.category_id, price_fen=2000)
    body = place(api, token, [goods_item(a), goods_item(b)], address=ADDRESS).json()
    no = body["payment"]["payment_no"]
    start_sandbox(api, token, no)
    order_nos = [o["order_no"] for o in body["orders"]]
    event = PaymentEvent(
        provider="sandbox",
        payment_no=no,
        status=EVENT_SUCCEEDED,
        amount_fen=3000,
        sub_txn_ids={order_nos[0]: "4200000001", order_nos[1]: "4200000002"},
    )
    with db.transaction() as session:
        assert service.apply_payment_event(session, event).result == "applied"
    with db.transaction() as session:  # a replay changes nothing
        assert service.apply_payment_event(session, event).result == "duplicate"
    with db.transaction(readonly=True) as session:
        rows = dict(
            session.execute(
                select(Order.order_no, Order.provider_txn_id).where(Order.order_no.in_(order_nos))
            ).all()
        )
        statuses = set(session.scalars(select(Order.status).where(Order.order_no.in_(order_nos))))
    assert rows == {order_nos[0]: "4200000001", order_nos[1]: "4200000002"}
    assert statuses == {"paid"}

    single = checkout_goods(api, token, a)
    pay_sandbox(api, token, single["payment"]["payment_no"])
    with db.transaction(readonly=True) as session:
        txn, payment_txn = session.execute(
            select(Order.provider_txn_id, Payment.provider_txn_id)
            .join(Payment, Payment.id == Order.payment_id)
            .where(Order.order_no == single["orders"][0]["order_no"])
        ).one()
    assert txn == payment_txn
