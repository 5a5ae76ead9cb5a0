"""分账: settling a statement through WeChat Pay profit sharing (partner mode), against the
local fake WeChat Pay server — the commission to the platform, the rest unfrozen to the
sub-merchant, the payout posted only when WeChat Pay says it finished. Both databases."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from o2o.config import Settings
from o2o.db import Database
from o2o.ledger import service as ledger
from o2o.merchants.models import Merchant
from o2o.money import apply_rate
from o2o.orders.models import Order, OrderLine
from o2o.payments import registry
from o2o.payments.models import Payment, PaymentNotification
from o2o.settlement import service, sharing
from o2o.settlement.models import SettlementStatement
from o2o.timeutil import utcnow
from tests.checkout_support import ADDRESS, goods_item, make_goods, place
from tests.fakes.wechatpay_server import DEFAULT_SP_MCHID, FakeWeChatPay, merchant_name
from tests.support import bind_wechat

NOTIFY = "/api/v1/payments/notify/wechatpay"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
SUB_A, SUB_B = "1900000201", "1900000202"
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeWeChatPay]:
    with FakeWeChatPay() as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeWeChatPay) -> FakeWeChatPay:
    fake_server.reset()
    return fake_server


@pytest.fixture
def partner(monkeypatch: pytest.MonkeyPatch, fake: FakeWeChatPay, db: Database, world: Any) -> None:
    """The deployment in WeChat Pay partner mode; merchants A and B are sub-merchants."""
    for name, value in fake.provider_env(
        partner=True, notify_url="http://testserver" + NOTIFY
    ).items():
        monkeypatch.setenv(name, value)
    with db.transaction() as session:
        for merchant_id, sub in ((world.a.id, SUB_A), (world.b.id, SUB_B)):
            session.execute(
                update(Merchant).where(Merchant.id == merchant_id).values(sub_mchid=sub)
            )


def buy_and_pay(
    api: Any,
    db: Database,
    fake: FakeWeChatPay,
    world: Any,
    goods: list[Any],
    *,
    shareable: bool = True,
) -> tuple[str, dict[int, str]]:
    """Checkout, pay through WeChat Pay (partner), the notification applied. Returns
    (payment_no, {merchant_id: order_no})."""
    token = world.tokens["consumer"]
    made = place(api, token, [goods_item(g) for g in goods], address=ADDRESS)
    assert made.status_code == 201, made.text
    payment_no = made.json()["payment"]["payment_no"]
    orders = {o["merchant_id"]: o["order_no"] for o in made.json()["orders"]}
    bind_wechat(world.db, world.consumer_id, os.environ["O2O_WECHATPAY_APPID"], OPENID)
    r = api.post(
        f"/api/v1/payments/{payment_no}/pay",
        json={"provider": "wechatpay", "method": "jsapi"},
        as_=token,
    )
    assert r.status_code == 200, r.text
    for merchant_id, order_no in orders.items():
        sub = SUB_A if merchant_id == world.a.id else SUB_B
        no = payment_no if len(orders) == 1 else order_no
        placed = fake.order(no, sub_mchid=sub)
        # Partner-mode orders are placed with settle_info.profit_sharing = true ...
        assert placed.profit_sharing is True
        if not shareable:  # ... unless placed before that (or elsewhere): WeChat refuses 分账
            placed.profit_sharing = False
    note = fake.pay(payment_no, deliver=True, client=api, notify_url=NOTIFY)
    assert note.response is not None and note.response.status_code in (200, 204)
    return payment_no, orders


def earn_order(db: Database, payment_no: str, order_no: str, *, complete: bool) -> None:
    """The ledger: money received (unless already posted) and the order's lines earned."""
    with db.transaction() as session:
        payment = session.scalar(select(Payment).where(Payment.payment_no == payment_no))
        assert payment is not None and payment.status == "succeeded"
        if ledger.transaction_by_key(session, f"payment:{payment_no}") is None:
            ledger.post_payment_received(
                session, payment_no=payment_no, provider="wechatpay", amount_fen=payment.amount_fen
            )
        order = session.scalar(select(Order).where(Order.order_no == order_no))
        assert order is not None
        for line in session.scalars(select(OrderLine).where(OrderLine.order_id == order.id)):
            ledger.post_earned(
                session,
                key=f"earned:test:{line.id}",
                payment_no=payment_no,
                merchant_id=order.merchant_id,
                gross_fen=line.amount_fen,
                commission_bp=line.commission_bp,
                order_no=order_no,
                line_id=line.id,
            )
        if complete:
            # As if the consumer confirmed receipt: nothing more will be earned on it.
            order.status = "completed"


def the_statement(db: Database, settings: Settings, merchant_id: int) -> SettlementStatement:
    service.generate_statements(db, settings, now=utcnow() + timedelta(days=2))
    with db.transaction(readonly=True) as session:
        found = session.scalar(
            select(SettlementStatement).where(SettlementStatement.merchant_id == merchant_id)
        )
        assert found is not None
        return found


def paid_out(db: Database, merchant_id: int) -> int:
    with db.transaction(readonly=True) as session:
        return ledger.merchant_balance(session, merchant_id).paid_out_fen


def share(api: Any, world: Any, no: str) -> Any:
    return api.post(f"/api/v1/admin/settlements/{no}/profit-sharing", as_=world.tokens["operator"])


def test_commission_to_the_platform_rest_unfrozen_payout_when_finished(
    api: Any, db: Database, settings: Settings, world: Any, fake: FakeWeChatPay, partner: None
) -> None:
    goods = make_goods(db, world.a.id, world.category_id, price_fen=10000)
    payment_no, orders = buy_and_pay(api, db, fake, world, [goods])
    earn_order(db, payment_no, orders[world.a.id], complete=True)
    statement = the_statement(db, settings, world.a.id)
    commission = apply_rate(10000, 600)
    assert (statement.commission_fen, statement.payable_fen) == (commission, 10000 - commission)

    r = share(api, world, statement.statement_no)
    assert r.status_code == 200, r.text
    body = r.json()
    # WeChat Pay took it (PROCESSING): not paid yet, nothing posted.
    assert body["status"] == "sharing"
    [order_share] = body["profit_sharing"]
    assert (order_share["state"], order_share["commission_fen"], order_share["unfreeze"]) == (
        "processing",
        commission,
        True,
    )
    placed = fake.order(payment_no, sub_mchid=SUB_A)
    assert order_share["transaction_id"] == placed.transaction_id
    sent = fake.sharing_orders[(DEFAULT_SP_MCHID, SUB_A, order_share["out_order_no"])]
    assert [(r["type"], r["account"], r["amount"]) for r in sent.receivers] == [
        ("MERCHANT_ID", DEFAULT_SP_MCHID, commission)
    ]
    assert sent.unfreeze_unsplit and placed.unfrozen and placed.shared_fen == commission
    assert paid_out(db, world.a.id) == 0
    # Still processing at WeChat Pay: the worker asks and leaves it as it is.
    assert sharing.advance_all(db, settings) == 0

    fake.finish_profit_sharing(order_share["out_order_no"], sub_mchid=SUB_A)
    assert sharing.advance_all(db, settings) == 1
    detail = api.get(
        f"/api/v1/admin/settlements/{statement.statement_no}", as_=world.tokens["operator"]
    ).json()
    assert (detail["status"], detail["payout_via"]) == ("paid", "wechat_profit_sharing")
    assert detail["profit_sharing"][0]["state"] == "finished"
    assert paid_out(db, world.a.id) == 10000 - commission
    with db.transaction(readonly=True) as session:
        assert ledger.merchant_balance(session, world.a.id).payable_fen == 0

    # Once: neither 分账 again nor a bank payout.
    again = share(api, world, statement.statement_no)
    assert again.status_code == 409 and again.headers["content-type"] == PROBLEM
    bank = api.post(
        f"/api/v1/admin/settlements/{statement.statement_no}/mark-paid",
        json={"bank_reference": "B"},
        as_=world.tokens["operator"],
    )
    assert bank.status_code == 409
    assert paid_out(db, world.a.id) == 10000 - commission


def test_combined_payment_shares_the_merchants_sub_order_and_keeps_an_open_order_frozen(
    api: Any, db: Database, settings: Settings, world: Any, fake: FakeWeChatPay, partner: None
) -> None:
    hotpot = make_goods(db, world.a.id, world.category_id, price_fen=1999)
    book = make_goods(db, world.b.id, world.category_id, price_fen=3001)
    payment_no, orders = buy_and_pay(api, db, fake, world, [hotpot, book])
    earn_order(db, payment_no, orders[world.a.id], complete=False)
    statement = the_statement(db, settings, world.a.id)

    r = share(api, world, statement.statement_no)
    assert r.status_code == 200, r.text
    [order_share] = r.json()["profit_sharing"]
    sub_order = fake.order(orders[world.a.id], sub_mchid=SUB_A)
    assert order_share["transaction_id"] == sub_order.transaction_id
    # The order is not complete: the rest stays frozen for later lines.
    assert order_share["unfreeze"] is False and not sub_order.unfrozen
    assert sub_order.shared_fen == apply_rate(1999, 600)

    # A repeated POST asks WeChat Pay how it went.
    fake.finish_profit_sharing(order_share["out_order_no"], sub_mchid=SUB_A)
    again = share(api, world, statement.statement_no)
    assert again.status_code == 200 and again.json()["status"] == "paid"
    assert paid_out(db, world.a.id) == 1999 - apply_rate(1999, 600)


def test_wechat_refusal_fails_the_sharing_and_the_operator_pays_by_bank(
    api: Any, db: Database, settings: Settings, world: Any, fake: FakeWeChatPay, partner: None
) -> None:
    goods = make_goods(db, world.a.id, world.category_id, price_fen=5000)
    payment_no, orders = buy_and_pay(api, db, fake, world, [goods], shareable=False)
    earn_order(db, payment_no, orders[world.a.id], complete=True)
    statement = the_statement(db, settings, world.a.id)
    r = share(api, world, statement.statement_no)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "sharing_failed"
    assert "INVALID_REQUEST" in body["profit_sharing"][0]["last_error"]
    assert "INVALID_REQUEST" in body["failure_reason"]
    assert paid_out(db, world.a.id) == 0
    paid = api.post(
        f"/api/v1/admin/settlements/{statement.statement_no}/mark-paid",
        json={"bank_reference": "ICBC-9"},
        as_=world.tokens["operator"],
    )
    assert paid.status_code == 200 and paid.json()["payout_via"] == "bank"
    assert paid_out(db, world.a.id) == 5000 - apply_rate(5000, 600)


def test_no_answer_is_retried_with_the_same_number(
    api: Any, db: Database, settings: Settings, world: Any, fake: FakeWeChatPay, partner: None
) -> None:
    goods = make_goods(db, world.a.id, world.category_id, price_fen=3000)
    payment_no, orders = buy_and_pay(api, db, fake, world, [goods])
    earn_order(db, payment_no, orders[world.a.id], complete=True)
    statement = the_statement(db, settings, world.a.id)
    # Applied at WeChat Pay, but the answer is lost.
    fake.fail_next(500, path_contains="/v3/profitsharing/orders", after=True)
    r = share(api, world, statement.statement_no)
    assert r.status_code == 200, r.text
    [order_share] = r.json()["profit_sharing"]
    assert (r.json()["status"], order_share["state"]) == ("sharing", "pending")
    assert order_share["last_error"]
    fake.finish_profit_sharing(order_share["out_order_no"], sub_mchid=SUB_A)
    # The retry carries the same out_order_no: WeChat Pay answers with the existing order.
    assert sharing.advance_all(db, settings) == 1
    detail = api.get(
        f"/api/v1/admin/settlements/{statement.statement_no}", as_=world.tokens["operator"]
    ).json()
    assert (detail["status"], detail["profit_sharing"][0]["state"]) == ("paid", "finished")
    assert len(fake.sharing_orders) == 1
    assert paid_out(db, world.a.id) == 3000 - apply_rate(3000, 600)


def test_sharing_is_refused_outside_partner_payments(
    api: Any,
    db: Database,
    settings: Settings,
    world: Any,
    fake: FakeWeChatPay,
    partner: None,
) -> None:
    # A merchant without a sub-merchant number.
    with db.transaction() as session:
        session.execute(update(Merchant).where(Merchant.id == world.b.id).values(sub_mchid=None))
    with db.transaction() as session:
        ledger.post_payment_received(session, payment_no="PSB", provider="sandbox", amount_fen=800)
        ledger.post_earned(
            session,
            key="e:b",
            payment_no="PSB",
            merchant_id=world.b.id,
            gross_fen=800,
            commission_bp=0,
        )
        ledger.post_payment_received(session, payment_no="PSA", provider="sandbox", amount_fen=700)
        ledger.post_earned(
            session,
            key="e:a",
            payment_no="PSA",
            merchant_id=world.a.id,
            gross_fen=700,
            commission_bp=0,
        )
    b_statement = the_statement(db, settings, world.b.id)
    a_statement = the_statement(db, settings, world.a.id)
    r = share(api, world, b_statement.statement_no)
    assert (r.status_code, r.json()["code"]) == (409, "settlement_not_partner")
    # Merchant A is a sub-merchant, but this money came through the sandbox.
    r = share(api, world, a_statement.statement_no)
    assert (r.status_code, r.json()["code"]) == (409, "settlement_not_wechatpay")
    assert r.headers["content-type"] == PROBLEM
    for s in (a_statement, b_statement):
        with db.transaction(readonly=True) as session:
            assert service.get_statement(session, s.statement_no).status == "ready"
    assert fake.sharing_orders == {}


def notifications(db: Database) -> list[PaymentNotification]:
    with db.transaction(readonly=True) as session:
        return list(session.scalars(select(PaymentNotification).order_by(PaymentNotification.id)))


def test_the_platform_is_added_as_receiver_with_its_full_name(
    api: Any, db: Database, settings: Settings, world: Any, fake: FakeWeChatPay, partner: None
) -> None:
    goods = make_goods(db, world.a.id, world.category_id, price_fen=10000)
    payment_no, orders = buy_and_pay(api, db, fake, world, [goods])
    earn_order(db, payment_no, orders[world.a.id], complete=True)
    statement = the_statement(db, settings, world.a.id)
    assert share(api, world, statement.statement_no).status_code == 200
    # MERCHANT_ID needs the merchant's full name, encrypted with the platform key (the fake
    # requires it, decrypts it and checks it against the account).
    [added] = [r for r in fake.requests if r.path == "/v3/profitsharing/receivers/add"]
    assert added.body["type"] == "MERCHANT_ID" and added.body["account"] == DEFAULT_SP_MCHID
    assert added.body["name"] != merchant_name(DEFAULT_SP_MCHID)
    assert fake.received_names == [merchant_name(DEFAULT_SP_MCHID)]
    assert fake.receivers[(DEFAULT_SP_MCHID, SUB_A)][0]["name"] == merchant_name(DEFAULT_SP_MCHID)


def test_sharing_needs_the_platform_name_configured(
    api: Any,
    db: Database,
    settings: Settings,
    world: Any,
    fake: FakeWeChatPay,
    partner: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    goods = make_goods(db, world.a.id, world.category_id, price_fen=3000)
    payment_no, orders = buy_and_pay(api, db, fake, world, [goods])
    earn_order(db, payment_no, orders[world.a.id], complete=True)
    statement = the_statement(db, settings, world.a.id)
    monkeypatch.setenv("O2O_WECHATPAY_MERCHANT_NAME", "")
    registry.clear_cache()
    r = share(api, world, statement.statement_no)
    assert (r.status_code, r.json()["code"]) == (409, "wechatpay_merchant_name_missing")
    assert r.headers["content-type"] == PROBLEM
    with db.transaction(readonly=True) as session:
        assert service.get_statement(session, statement.statement_no).status == "ready"
    assert fake.sharing_orders == {}


def test_sharing_finished_by_wechat_pays_notification(
    api: Any, db: Database, settings: Settings, world: Any, fake: FakeWeChatPay, partner: None
) -> None:
    goods = make_goods(db, world.a.id, world.category_id, price_fen=10000)
    payment_no, orders = buy_and_pay(api, db, fake, world, [goods])
    earn_order(db, payment_no, orders[world.a.id], complete=True)
    statement = the_statement(db, settings, world.a.id)
    [order_share] = share(api, world, statement.statement_no).json()["profit_sharing"]
    commission = apply_rate(10000, 600)

    # WeChat Pay finishes and notifies the platform (the receiver) at the notify URL: applied
    # there and then — no worker sweep runs in this test.
    [note] = fake.finish_profit_sharing(
        order_share["out_order_no"], sub_mchid=SUB_A, deliver=True, client=api, notify_url=NOTIFY
    )
    assert note.event_type == "PROFITSHARING.SUCCESS"
    assert note.resource["receiver"]["amount"] == commission
    assert note.response is not None and note.response.status_code in (200, 204)
    detail = api.get(
        f"/api/v1/admin/settlements/{statement.statement_no}", as_=world.tokens["operator"]
    ).json()
    assert (detail["status"], detail["profit_sharing"][0]["state"]) == ("paid", "finished")
    assert paid_out(db, world.a.id) == 10000 - commission
    logged = notifications(db)[-1]
    assert (logged.verified, logged.result, logged.event_status) == (
        True,
        "applied",
        "sharing_succeeded",
    )

    # Redelivered: accepted, nothing moves twice.
    again = fake.deliver(NOTIFY, note, client=api)
    assert again.status_code in (200, 204)
    assert notifications(db)[-1].result == "duplicate"
    assert paid_out(db, world.a.id) == 10000 - commission


def test_sharing_notifications_we_cannot_place_are_still_accepted(
    api: Any, db: Database, world: Any, fake: FakeWeChatPay, partner: None
) -> None:
    resource = {
        "sp_mchid": DEFAULT_SP_MCHID,
        "sub_mchid": SUB_A,
        "transaction_id": "4200000000000000000000000009",
        "order_id": "3008000000000000000000000009",
        "out_order_no": "NOT-OURS-1",
        "receiver": {
            "type": "MERCHANT_ID",
            "account": DEFAULT_SP_MCHID,
            "amount": 100,
            "description": "平台佣金",
        },
        "success_time": "2024-05-01T10:00:00+08:00",
    }
    for event_type, result in (
        ("PROFITSHARING.SUCCESS", "unknown"),
        ("PROFITSHARING.RETURN", "ignored"),
    ):
        headers, body = fake.build_notification(
            event_type, resource, mchid=DEFAULT_SP_MCHID, original_type="profitsharing"
        )
        r = api.post(NOTIFY, content=body, headers=headers)
        # Not a 500 redelivered forever: verified, logged, answered.
        assert r.status_code in (200, 204), r.text
        assert notifications(db)[-1].result == result
    # A forged one is still refused.
    headers, body = fake.build_notification(
        "PROFITSHARING.SUCCESS", resource, mchid=DEFAULT_SP_MCHID, original_type="profitsharing"
    )
    headers["Wechatpay-Signature"] = headers["Wechatpay-Signature"][::-1]
    assert api.post(NOTIFY, content=body, headers=headers).status_code >= 400
    assert notifications(db)[-1].result == "rejected"
