"""WeChat Pay end to end: checkout → pay with ``wechatpay`` → the local fake WeChat Pay pays and
posts its signed, encrypted notification into the app → the orders are paid, once. Both modes,
both databases."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from o2o.merchants.models import Merchant
from o2o.orders.models import Order
from o2o.payments.models import Payment, PaymentNotification, Refund
from o2o.payments.wechatpay_crypto import jsapi_sign_message, rsa_verify
from o2o.timeutil import utcnow
from tests.checkout_support import ADDRESS, goods_item, make_goods, place
from tests.fakes.wechatpay_server import FakeWeChatPay, fake_rsa_key
from tests.support import bind_wechat

NOTIFY = "/api/v1/payments/notify/wechatpay"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
SUB_A, SUB_B = "1900000201", "1900000202"


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeWeChatPay]:
    with FakeWeChatPay() as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeWeChatPay) -> FakeWeChatPay:
    fake_server.reset()
    return fake_server


def configure(monkeypatch: pytest.MonkeyPatch, fake: FakeWeChatPay, *, partner: bool) -> None:
    """The deployment's O2O_WECHATPAY_* variables, pointing at the fake."""
    for name, value in fake.provider_env(
        partner=partner, notify_url="http://testserver" + NOTIFY
    ).items():
        monkeypatch.setenv(name, value)


def pay_wechat(api: Any, token: str, payment_no: str, **body: Any) -> dict[str, Any]:
    openid = body.pop("openid", None)
    if openid is not None:  # the payer's own WeChat identity, as sign-in would have made it
        user_id = api.get("/api/v1/me", as_=token).json()["id"]
        appid = os.environ["O2O_WECHATPAY_APPID"]
        bind_wechat(api.app.state.db, user_id, appid, openid)
    r = api.post(
        f"/api/v1/payments/{payment_no}/pay",
        json={"provider": "wechatpay", **body},
        as_=token,
    )
    assert r.status_code == 200, r.text
    return r.json()


def statuses(db: Any, payment_no: str) -> tuple[str, list[str], str, Any]:
    with db.transaction(readonly=True) as session:
        payment = session.scalar(select(Payment).where(Payment.payment_no == payment_no))
        assert payment is not None
        order_statuses = list(
            session.scalars(
                select(Order.status).where(Order.payment_id == payment.id).order_by(Order.id)
            )
        )
        return payment.status, order_statuses, payment.provider_txn_id, payment.paid_at


def notification_results(db: Any, payment_no: str) -> list[tuple[bool, str]]:
    with db.transaction(readonly=True) as session:
        rows = session.execute(
            select(PaymentNotification.verified, PaymentNotification.result)
            .where(PaymentNotification.provider == "wechatpay")
            .where(
                (PaymentNotification.payment_no == payment_no)
                | PaymentNotification.payment_no.is_(None)
            )
            .order_by(PaymentNotification.id)
        )
        return [(bool(v), r) for v, r in rows]


def test_direct_jsapi_paid_by_notification_once(
    api: Any, world: Any, db: Any, fake: FakeWeChatPay, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, fake, partner=False)
    token = world.tokens["consumer"]
    goods = make_goods(db, world.a.id, world.category_id, price_fen=2590, stock=5)
    made = place(api, token, [goods_item(goods, 2)], address=ADDRESS)
    assert made.status_code == 201, made.text
    payment_no = made.json()["payment"]["payment_no"]
    assert made.json()["payment"]["amount_fen"] == 5180

    params = pay_wechat(api, token, payment_no, method="jsapi", openid=OPENID)
    assert params["provider"] == "wechatpay" and params["method"] == "jsapi"
    message = jsapi_sign_message(
        params["appId"], params["timeStamp"], params["nonceStr"], params["package"]
    )
    merchant_key = fake.merchant(fake.provider_env()["O2O_WECHATPAY_MCHID"]).private_key
    assert rsa_verify(merchant_key.public_key(), message, params["paySign"])
    placed = fake.order(payment_no)
    assert (placed.total, placed.notify_url) == (5180, "http://testserver" + NOTIFY)
    assert statuses(db, payment_no)[:2] == ("pending", ["pending_payment"])

    # A forged notification is refused in WeChat Pay's format and changes nothing.
    forged = fake.build_notification(
        "TRANSACTION.SUCCESS",
        {**fake._order_view(placed), "trade_state": "SUCCESS"},
        mchid=placed.owner,
        sign_key=fake_rsa_key("attacker"),
    )
    refused = fake.deliver(NOTIFY, forged, client=api)
    assert refused.status_code >= 400
    assert refused.json()["code"] == "FAIL"
    assert statuses(db, payment_no)[:2] == ("pending", ["pending_payment"])

    note = fake.pay(payment_no, deliver=True, client=api, notify_url=NOTIFY)
    assert note.response is not None and note.response.status_code in (200, 204), (
        note.response.text if note.response else None
    )
    status, order_statuses, txn_id, paid_at = statuses(db, payment_no)
    assert (status, order_statuses) == ("succeeded", ["paid"])
    assert txn_id == placed.transaction_id

    # WeChat Pay delivers again (it does, until it sees our answer): nothing moves.
    replay = fake.deliver(NOTIFY, note, client=api)
    assert replay.status_code in (200, 204)
    assert statuses(db, payment_no) == (status, order_statuses, txn_id, paid_at)
    results = notification_results(db, payment_no)
    assert results == [(False, "rejected"), (True, "applied"), (True, "duplicate")]

    # The consumer refunds (goods not shipped): WeChat Pay accepts, then says it arrived.
    order_no = made.json()["orders"][0]["order_no"]
    refund = api.post(f"/api/v1/orders/{order_no}/refunds", json={"reason": "不想要了"}, as_=token)
    assert refund.status_code == 201, refund.text
    assert refund.json()["status"] == "processing"
    refund_no = refund.json()["refund_no"]
    asked = fake.refunds[(placed.owner, "", refund_no)]
    assert asked.amount == 5180
    done = fake.complete_refund(refund_no, deliver=True, client=api)
    assert done.response is not None and done.response.status_code in (200, 204)
    done.response = None
    assert fake.deliver(NOTIFY, done, client=api).status_code in (200, 204)  # replayed
    with db.transaction(readonly=True) as session:
        row = session.scalar(select(Refund).where(Refund.refund_no == refund_no))
        assert row is not None
        assert (row.status, row.provider_refund_id) == ("succeeded", asked.refund_id)
        assert session.scalar(select(Order.status).where(Order.order_no == order_no)) == "refunded"


def test_partner_combined_payment_across_two_merchants(
    api: Any, world: Any, db: Any, fake: FakeWeChatPay, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, fake, partner=True)
    with db.transaction() as session:
        for merchant_id, sub in ((world.a.id, SUB_A), (world.b.id, SUB_B)):
            session.execute(
                update(Merchant).where(Merchant.id == merchant_id).values(sub_mchid=sub)
            )
    token = world.tokens["consumer"]
    hotpot = make_goods(db, world.a.id, world.category_id, price_fen=1999, title="火锅底料")
    book = make_goods(db, world.b.id, world.category_id, price_fen=3001, title="菜谱")
    made = place(api, token, [goods_item(hotpot), goods_item(book)], address=ADDRESS)
    assert made.status_code == 201, made.text
    payment_no = made.json()["payment"]["payment_no"]
    order_nos = {o["merchant_id"]: o["order_no"] for o in made.json()["orders"]}
    assert len(order_nos) == 2

    pay_wechat(api, token, payment_no, method="jsapi", openid=OPENID)
    combine = fake.requests[-1]
    assert combine.path == "/v3/combine-transactions/jsapi"
    assert combine.body["combine_out_trade_no"] == payment_no
    assert {
        (s["out_trade_no"], s["sub_mchid"], s["amount"]["total_amount"])
        for s in combine.body["sub_orders"]
    } == {
        (order_nos[world.a.id], SUB_A, 1999),
        (order_nos[world.b.id], SUB_B, 3001),
    }

    note = fake.pay(payment_no, deliver=True, client=api, notify_url=NOTIFY)
    assert note.response is not None and note.response.status_code in (200, 204)
    status, order_statuses, _, paid_at = statuses(db, payment_no)
    assert (status, order_statuses) == ("succeeded", ["paid", "paid"])
    assert fake.deliver(NOTIFY, note, client=api).status_code in (200, 204)
    assert statuses(db, payment_no)[:2] == (status, order_statuses)
    assert statuses(db, payment_no)[3] == paid_at
    assert [r for _, r in notification_results(db, payment_no)] == ["applied", "duplicate"]

    # One merchant's order is refunded on its own sub-order, with its sub-merchant.
    refund = api.post(
        f"/api/v1/orders/{order_nos[world.b.id]}/refunds", json={"reason": "不要了"}, as_=token
    )
    assert refund.status_code == 201, refund.text
    sent = fake.requests[-1].body
    assert (sent["out_trade_no"], sent["sub_mchid"], sent["amount"]["total"]) == (
        order_nos[world.b.id],
        SUB_B,
        3001,
    )


def test_partner_merchant_without_sub_mchid_cannot_pay(
    api: Any, world: Any, db: Any, fake: FakeWeChatPay, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, fake, partner=True)
    token = world.tokens["consumer"]
    goods = make_goods(db, world.a.id, world.category_id)
    payment_no = place(api, token, [goods_item(goods)], address=ADDRESS).json()["payment"][
        "payment_no"
    ]
    r = api.post(
        f"/api/v1/payments/{payment_no}/pay",
        json={"provider": "wechatpay", "method": "native"},
        as_=token,
    )
    assert r.status_code == 422, r.text
    assert "sub_mchid" in r.json()["detail"]
    assert fake.requests == []


def test_lost_notification_is_found_by_the_active_query(
    api: Any, world: Any, db: Any, fake: FakeWeChatPay, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, fake, partner=False)
    token = world.tokens["consumer"]
    goods = make_goods(db, world.a.id, world.category_id, price_fen=800)
    payment_no = place(api, token, [goods_item(goods)], address=ADDRESS).json()["payment"][
        "payment_no"
    ]
    native = pay_wechat(api, token, payment_no, method="native")
    assert native["code_url"].startswith("weixin://")
    fake.pay(payment_no)  # paid, but the notification never reaches us
    assert api.get(f"/api/v1/payments/{payment_no}", as_=token).json()["status"] == "pending"
    with db.transaction() as session:
        session.execute(
            update(Payment)
            .where(Payment.payment_no == payment_no)
            .values(started_at=utcnow() - timedelta(minutes=2), queried_at=None)
        )
    shown = api.get(f"/api/v1/payments/{payment_no}", as_=token).json()
    assert shown["status"] == "succeeded"
    assert statuses(db, payment_no)[1] == ["paid"]
    assert statuses(db, payment_no)[2] == fake.order(payment_no).transaction_id
