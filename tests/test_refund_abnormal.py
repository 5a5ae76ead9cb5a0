"""退款异常 (WeChat Pay refund ``ABNORMAL``): the money has left the merchant account but the
payer's account refused it. It is not a failure — nothing is released, the order stays in
refund — the operator sees it in the admin and has it sent elsewhere with WeChat Pay's 异常退款
API (``USER_BANK_CARD`` / ``MERCHANT_BANK_CARD``), which the fake implements and checks. Both
databases, through the notify URL and the operator's API and pages."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from o2o.db import Database
from o2o.orders.models import Order
from o2o.payments.models import Refund
from tests.checkout_support import ADDRESS, goods_item, make_goods, place
from tests.fakes.wechatpay_server import FakeWeChatPay
from tests.support import bind_wechat
from tests.web.support import PageClient, field_error

NOTIFY = "/api/v1/payments/notify/wechatpay"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeWeChatPay]:
    with FakeWeChatPay() as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeWeChatPay, monkeypatch: pytest.MonkeyPatch) -> FakeWeChatPay:
    fake_server.reset()
    for name, value in fake_server.provider_env(notify_url="http://testserver" + NOTIFY).items():
        monkeypatch.setenv(name, value)
    return fake_server


@pytest.fixture
def pages(app: Any) -> Iterator[PageClient]:
    with PageClient(app) as client:
        yield client


def abnormal(api: Any, db: Database, fake: FakeWeChatPay, world: Any) -> dict[str, Any]:
    """A goods order paid with WeChat Pay, refunded in full, and the refund ABNORMAL."""
    token = world.tokens["consumer"]
    goods = make_goods(db, world.a.id, world.category_id, price_fen=4200)
    made = place(api, token, [goods_item(goods)], address=ADDRESS)
    assert made.status_code == 201, made.text
    payment_no = made.json()["payment"]["payment_no"]
    order_no = made.json()["orders"][0]["order_no"]
    bind_wechat(world.db, world.consumer_id, os.environ["O2O_WECHATPAY_APPID"], OPENID)
    r = api.post(
        f"/api/v1/payments/{payment_no}/pay",
        json={"provider": "wechatpay", "method": "jsapi"},
        as_=token,
    )
    assert r.status_code == 200, r.text
    paid = fake.pay(payment_no, deliver=True, client=api, notify_url=NOTIFY)
    assert paid.response is not None and paid.response.status_code in (200, 204)
    r = api.post(f"/api/v1/orders/{order_no}/refunds", json={"reason": "不想要了"}, as_=token)
    assert r.status_code == 201, r.text
    refund_no = r.json()["refund_no"]
    note = fake.complete_refund(refund_no, status="ABNORMAL", deliver=True, client=api)
    assert note.response is not None and note.response.status_code in (200, 204)
    return {"order_no": order_no, "refund_no": refund_no, "payment_no": payment_no}


def state(db: Database, refund_no: str) -> tuple[str, int, str]:
    with db.transaction(readonly=True) as session:
        refund = session.scalar(select(Refund).where(Refund.refund_no == refund_no))
        assert refund is not None
        order = session.get(Order, refund.order_id)
        assert order is not None
        return refund.status, order.refunded_fen, order.status


def test_abnormal_is_not_a_failure_and_keeps_the_amount(
    api: Any, db: Database, world: Any, fake: FakeWeChatPay
) -> None:
    made = abnormal(api, db, fake, world)
    # The money left the merchant account: reserved still, the order still in refund.
    assert state(db, made["refund_no"]) == ("abnormal", 4200, "refunding")
    with db.transaction(readonly=True) as session:
        refund = session.scalar(select(Refund).where(Refund.refund_no == made["refund_no"]))
        assert refund is not None and refund.abnormal_at is not None
        assert refund.last_error.startswith("ABNORMAL")
    # Nothing more can be refunded on top of it (the amount is not free).
    again = api.post(
        f"/api/v1/orders/{made['order_no']}/refunds",
        json={"reason": "再退一次"},
        as_=world.tokens["consumer"],
    )
    assert again.status_code == 409, again.text
    # The operator sees it.
    listed = api.get("/api/v1/admin/refunds?status=abnormal", as_=world.tokens["operator"])
    assert listed.status_code == 200
    [row] = listed.json()["items"]
    assert (row["refund_no"], row["status"], row["status_label"]) == (
        made["refund_no"],
        "abnormal",
        "退款异常",
    )
    # A redelivered ABNORMAL changes nothing.
    fake_refund = next(iter(fake.refunds.values()))
    headers, body = fake.build_notification(
        "REFUND.ABNORMAL",
        fake._refund_notify_view(fake_refund),
        mchid=fake_refund.owner,
        original_type="refund",
    )
    assert api.post(NOTIFY, content=body, headers=headers).status_code in (200, 204)
    assert state(db, made["refund_no"]) == ("abnormal", 4200, "refunding")


def test_abnormal_refund_to_the_payers_bank_card(
    api: Any, db: Database, world: Any, fake: FakeWeChatPay
) -> None:
    made = abnormal(api, db, fake, world)
    url = f"/api/v1/admin/refunds/{made['refund_no']}/abnormal-refund"
    operator = world.tokens["operator"]
    # USER_BANK_CARD needs the bank, the card and the name: 422, nothing sent.
    missing = api.post(
        url, json={"type": "USER_BANK_CARD", "bank_type": "ICBC_DEBIT"}, as_=operator
    )
    assert missing.status_code == 422 and missing.headers["content-type"] == PROBLEM
    bad = api.post(url, json={"type": "TO_SOMEWHERE"}, as_=operator)
    assert bad.status_code == 422
    assert not [r for r in fake.requests if r.path.endswith("/apply-abnormal-refund")]
    assert state(db, made["refund_no"])[0] == "abnormal"

    r = api.post(
        url,
        json={
            "type": "USER_BANK_CARD",
            "bank_type": "ICBC_DEBIT",
            "bank_account": "6222020200112233445",
            "real_name": "张三",
        },
        as_=operator,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["abnormal_handling"]) == ("processing", "USER_BANK_CARD")
    [sent] = [r for r in fake.requests if r.path.endswith("/apply-abnormal-refund")]
    # Card number and name went encrypted (the fake decrypted them with its platform key).
    assert sent.body["bank_account"] != "6222020200112233445" and sent.body["real_name"] != "张三"
    wechat = next(iter(fake.refunds.values()))
    assert wechat.abnormal_request == {
        "type": "USER_BANK_CARD",
        "bank_type": "ICBC_DEBIT",
        "bank_account": "6222020200112233445",
        "real_name": "张三",
    }
    with db.transaction(readonly=True) as session:
        refund = session.scalar(select(Refund).where(Refund.refund_no == made["refund_no"]))
        assert refund is not None
        assert refund.abnormal_handled_by == world.operator_id
        assert "6222" not in repr(refund.__dict__)  # the card is never stored
    assert state(db, made["refund_no"]) == ("processing", 4200, "refunding")

    # WeChat Pay pays the card; the refund is done like any other.
    done = fake.complete_refund(made["refund_no"], deliver=True, client=api)
    assert done.resource["user_received_account"].endswith("尾号3445")
    assert state(db, made["refund_no"]) == ("succeeded", 4200, "refunded")
    # Only an abnormal refund can be handled so.
    again = api.post(url, json={"type": "MERCHANT_BANK_CARD"}, as_=operator)
    assert (again.status_code, again.json()["code"]) == (409, "refund_not_abnormal")


def test_abnormal_refund_to_the_merchant_account_from_the_admin_page(
    api: Any, db: Database, world: Any, fake: FakeWeChatPay, pages: PageClient
) -> None:
    made = abnormal(api, db, fake, world)
    pages.sign_in(world.operator_id)
    listing = pages.get("/admin/refunds")
    assert listing.status_code == 200
    assert 'data-testid="abnormal-alert"' in listing.text
    assert made["refund_no"] in listing.text and "退款异常" in listing.text
    detail = pages.get(f"/admin/refunds/{made['refund_no']}")
    assert 'data-testid="abnormal-refund-form"' in detail.text

    url = f"/admin/refunds/{made['refund_no']}/abnormal-refund"
    refused = pages.form_post(url, {"type": "USER_BANK_CARD", "bank_account": "12"})
    assert refused.status_code == 422
    assert field_error(refused.text, "bank_account")
    assert state(db, made["refund_no"])[0] == "abnormal"

    sent = pages.form_post(url, {"type": "MERCHANT_BANK_CARD"})
    assert sent.status_code == 303, sent.text
    assert state(db, made["refund_no"]) == ("processing", 4200, "refunding")
    assert next(iter(fake.refunds.values())).abnormal_type == "MERCHANT_BANK_CARD"
    after = pages.get(f"/admin/refunds/{made['refund_no']}")
    assert "退至交易商户银行账户" in after.text
    assert 'data-testid="abnormal-refund-form"' not in after.text
    # WeChat Pay refuses a second application (not ABNORMAL there any more): a clear 409.
    with db.transaction() as session:
        refund = session.scalar(select(Refund).where(Refund.refund_no == made["refund_no"]))
        assert refund is not None
        refund.status = "abnormal"  # as if our row were stale
    twice = pages.form_post(url, {"type": "MERCHANT_BANK_CARD"})
    assert twice.status_code == 409
    assert "不能发起异常退款" in twice.text  # WeChat Pay's own reason, above the form


def test_the_sweep_leaves_abnormal_refunds_reserved(
    api: Any, db: Database, world: Any, fake: FakeWeChatPay, settings: Any
) -> None:
    from datetime import timedelta

    from o2o.payments import service
    from o2o.timeutil import utcnow

    made = abnormal(api, db, fake, world)
    # Queried now and then (an hour apart): still ABNORMAL at WeChat Pay, so nothing moves.
    assert service.process_refunds(db, settings, now=utcnow() + timedelta(minutes=5)) == 0
    assert service.process_refunds(db, settings, now=utcnow() + timedelta(hours=2)) == 1
    assert state(db, made["refund_no"]) == ("abnormal", 4200, "refunding")
