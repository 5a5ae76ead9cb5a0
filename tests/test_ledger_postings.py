"""The ledger wired into the money events (o2o.ledger.postings), through the real services and
API: payments, redemptions (and their undo), receipts, refunds before and after earning, late
money; replays post nothing new; a property test drives random sequences and checks the ledger's
identities after every step. Both databases."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from o2o import events, wiring
from o2o.db import Database
from o2o.fulfilment.models import Voucher
from o2o.ledger import postings
from o2o.ledger import service as ledger
from o2o.ledger.models import LedgerTransaction
from o2o.merchants.models import Category
from o2o.money import apply_rate
from o2o.orders.models import Order, OrderLine
from o2o.payments import service as payments
from o2o.payments.models import Payment, Refund
from o2o.shipping import service as shipping
from o2o.timeutil import utcnow
from tests.checkout_support import (
    ADDRESS,
    goods_item,
    make_deal,
    make_goods,
    notify,
    pay_sandbox,
    place,
    sandbox,
    start_sandbox,
)
from tests.shipping_support import paid_goods_order, sf_number, shift_order
from tests.voucher_support import buy, deal_item, redeem, set_listing, set_vouchers

RATE_BP = 333  # 3.33 %: commissions that round
U, C = ledger.CONSUMER_UNEARNED, ledger.PLATFORM_COMMISSION
_payouts = itertools.count(1)


# --- helpers -------------------------------------------------------------------------------


def set_rate(db: Database, world: Any, bp: int = RATE_BP) -> None:
    with db.transaction() as session:
        session.execute(
            update(Category).where(Category.id == world.category_id).values(commission_bp=bp)
        )


def bal(db: Database, code: str) -> int:
    with db.transaction(readonly=True) as session:
        return ledger.balance(session, code, natural=True)


def payable(db: Database, merchant_id: int) -> int:
    return bal(db, ledger.merchant_payable(merchant_id))


def txns(db: Database, **where: Any) -> list[tuple[str, str]]:
    """(kind, key) of the transactions matching, oldest first."""
    with db.transaction(readonly=True) as session:
        stmt = select(LedgerTransaction.kind, LedgerTransaction.idempotency_key).order_by(
            LedgerTransaction.id
        )
        for name, value in where.items():
            stmt = stmt.where(getattr(LedgerTransaction, name) == value)
        return [tuple(row) for row in session.execute(stmt)]  # type: ignore[misc]


def count_txns(db: Database) -> int:
    with db.transaction(readonly=True) as session:
        return session.scalar(select(func.count()).select_from(LedgerTransaction)) or 0


def settle_refunds(db: Database, settings: Any) -> None:
    """The sandbox answers ``processing`` first; a later query says succeeded."""
    payments.process_refunds(db, settings, now=utcnow() + timedelta(hours=2))


def assert_identities(db: Database) -> None:
    """Every transaction balances; provider = payments − refunds (the payments tables);
    payable + commission + unearned = payments − refunds − payouts; each succeeded payment is
    received once and each succeeded refund leaves the provider exactly once."""
    with db.transaction(readonly=True) as session:
        assert ledger.unbalanced_transactions(session) == []
        paid = int(
            session.scalar(
                select(func.coalesce(func.sum(Payment.amount_fen), 0)).where(
                    Payment.status == "succeeded"
                )
            )
        )
        refunded = int(
            session.scalar(
                select(func.coalesce(func.sum(Refund.amount_fen), 0)).where(
                    Refund.status == "succeeded"
                )
            )
        )
        provider = sum(ledger.balances(session, ledger.PROVIDER_PREFIX, natural=True).values())
        paid_out = sum(
            ledger.balances(session, ledger.MERCHANT_PAID_OUT_PREFIX, natural=True).values()
        )
        owed = sum(ledger.balances(session, ledger.MERCHANT_PAYABLE_PREFIX, natural=True).values())
        commission = ledger.balance(session, C, natural=True)
        unearned = ledger.balance(session, U, natural=True)
        assert provider == paid - refunded, (provider, paid, refunded)
        assert owed + commission + unearned == paid - refunded - paid_out
        assert unearned >= 0
        received: dict[str | None, int] = {
            payment_no: n
            for payment_no, n in session.execute(
                select(LedgerTransaction.payment_no, func.count())
                .where(LedgerTransaction.kind == ledger.PAYMENT_RECEIVED)
                .group_by(LedgerTransaction.payment_no)
            )
        }
        succeeded = set(
            session.scalars(select(Payment.payment_no).where(Payment.status == "succeeded"))
        )
        assert set(received) == succeeded and set(received.values()) <= {1}
        for refund in session.scalars(select(Refund).where(Refund.status == "succeeded")):
            out = [
                -amount
                for txn in ledger.list_transactions(session, kind=ledger.REFUND, limit=1000)
                if txn.refund_no == refund.refund_no
                for code, amount in ledger.entries_of(txn)
                if code.startswith(ledger.PROVIDER_PREFIX)
            ]
            assert sum(out) == refund.amount_fen, (refund.refund_no, out)
        pending = session.scalars(
            select(Refund.refund_no).where(Refund.status != "succeeded")
        ).all()
        for refund_no in pending:  # asked is not paid: nothing posted until the money has left
            assert not session.scalar(
                select(func.count()).where(LedgerTransaction.refund_no == refund_no)
            )


def codes_of(db: Database, order_no: str) -> list[str]:
    with db.transaction(readonly=True) as session:
        return list(
            session.scalars(
                select(Voucher.code)
                .join(Order, Order.id == Voucher.order_id)
                .where(Order.order_no == order_no)
                .order_by(Voucher.id)
            )
        )


def ship_and_receive(api: Any, world: Any, order_no: str) -> None:
    r = api.post(
        f"/api/v1/merchants/{world.a.id}/orders/{order_no}/shipments",
        json={"carrier": "SF", "tracking_no": sf_number()},
        as_=world.tokens["manager"],
    )
    assert r.status_code == 201, r.text
    r = api.post(f"/api/v1/orders/{order_no}/confirm-receipt", as_=world.tokens["consumer"])
    assert r.status_code == 200, r.text


def after_sales(api: Any, world: Any, order_no: str, line_id: int, amount_fen: int) -> None:
    r = api.post(
        f"/api/v1/orders/{order_no}/after-sales",
        json={
            "kind": "refund_only",
            "reason": "有破损",
            "line_ids": [line_id],
            "amount_fen": amount_fen,
        },
        as_=world.tokens["consumer"],
    )
    assert r.status_code == 201, r.text
    r = api.post(
        f"/api/v1/merchants/{world.a.id}/after-sales/{r.json()['id']}/approve",
        as_=world.tokens["manager"],
    )
    assert r.status_code == 200, r.text


def replay_success(api: Any, db: Database, payment_no: str) -> None:
    with db.transaction(readonly=True) as session:
        amount = session.scalar(select(Payment.amount_fen).where(Payment.payment_no == payment_no))
    headers, body = sandbox().payment_notification(payment_no, amount)
    assert notify(api, headers, body).status_code == 200


# --- the flows -----------------------------------------------------------------------------


def test_postings_are_wired_once_in_the_transaction() -> None:
    wiring.install()  # again: changes nothing
    table = wiring.in_transaction_table()
    for event_type, handler in [
        (events.PaymentSucceeded, postings.on_payment_succeeded),
        (events.RefundSucceeded, postings.on_refund_succeeded),
        (events.ParcelReceived, postings.on_goods_received),
        (events.VoucherRedeemed, postings.on_voucher_redeemed),
        (events.RedemptionUndone, postings.on_redemption_undone),
        (events.VouchersExpired, postings.on_vouchers_expired),
    ]:
        assert table[event_type].count(handler) == 1
        assert events.current().in_transaction[event_type].count(handler) == 1


def test_payment_then_redemption_undo_and_redeem_again(api: Any, world: Any, db: Database) -> None:
    set_rate(db, world)
    deal = make_deal(db, world.a.id, world.category_id, world.a.store_ids, price_fen=1999)
    bought = buy(api, world.tokens["consumer"], [deal_item(deal, 2)])
    # Paid: the money is at the provider and owed to the consumer until earned.
    assert bal(db, "provider:sandbox") == 3998 and bal(db, U) == 3998
    assert txns(db, payment_no=bought.payment_no) == [
        ("payment_received", f"payment:{bought.payment_no}")
    ]
    # A replayed (genuine) notification posts nothing new.
    replay_success(api, db, bought.payment_no)
    assert len(txns(db, payment_no=bought.payment_no)) == 1

    code = bought.codes[0]
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(OrderLine.commission_bp)) == RATE_BP
    assert redeem(api, world, code, key="k-1").status_code == 200
    commission = apply_rate(1999, RATE_BP)
    assert commission == 67  # 66.5667 rounds up
    assert payable(db, world.a.id) == 1999 - 67 and bal(db, C) == 67 and bal(db, U) == 1999
    # Replays: the same Idempotency-Key answers again; a second redemption is a 409.
    before = count_txns(db)
    assert redeem(api, world, code, key="k-1").status_code == 200
    assert redeem(api, world, code).status_code == 409
    assert count_txns(db) == before

    r = api.post(
        f"/api/v1/merchants/{world.a.id}/redemptions/{code}/undo",
        json={"reason": "扫错了"},
        as_=world.tokens["manager"],
    )
    assert r.status_code == 200, r.text
    assert payable(db, world.a.id) == 0 and bal(db, C) == 0 and bal(db, U) == 3998
    assert [k for _, k in txns(db, kind="reversal")] == [f"reverse:earned:voucher:{code}"]

    # Redeemed again: earned again, under the voucher's next key.
    assert redeem(api, world, code).status_code == 200
    assert payable(db, world.a.id) == 1932 and bal(db, C) == 67
    earned = [k for _, k in txns(db, kind="earned")]
    assert earned == [f"earned:voucher:{code}", f"earned:voucher:{code}#2"]
    assert redeem(api, world, bought.codes[1]).status_code == 200
    assert bal(db, U) == 0 and payable(db, world.a.id) == 2 * 1932 and bal(db, C) == 134
    assert_identities(db)


def test_refund_anytime_and_expiry_refund_before_earning(
    api: Any, world: Any, db: Database, settings: Any
) -> None:
    set_rate(db, world)
    deal = make_deal(db, world.a.id, world.category_id, world.a.store_ids, price_fen=1999)
    bought = buy(api, world.tokens["consumer"], [deal_item(deal, 3)])
    r = api.post(
        f"/api/v1/vouchers/{bought.codes[0]}/refund", json={}, as_=world.tokens["consumer"]
    )
    assert r.status_code == 201, r.text
    refund_no = r.json()["refund_no"]
    # Asked, not yet paid back: nothing posted.
    assert txns(db, refund_no=refund_no) == [] and bal(db, "provider:sandbox") == 5997
    assert_identities(db)
    settle_refunds(db, settings)
    assert txns(db, refund_no=refund_no) == [("refund", f"refund:{refund_no}:unearned")]
    assert bal(db, "provider:sandbox") == 3998 and bal(db, U) == 3998
    # 过期自动退 by the worker.
    set_vouchers(db, [bought.codes[1]], valid_until=utcnow() - timedelta(minutes=1))
    from o2o.fulfilment import vouchers

    assert vouchers.expire_due(db, settings) == 1
    settle_refunds(db, settings)
    assert bal(db, "provider:sandbox") == 1999 and bal(db, U) == 1999
    # The last one is eaten: everything is accounted for.
    assert redeem(api, world, bought.codes[2]).status_code == 200
    assert bal(db, U) == 0 and payable(db, world.a.id) == 1932 and bal(db, C) == 67
    # Replaying the refund's success changes nothing.
    with db.transaction() as session:
        refund = session.scalar(select(Refund).where(Refund.refund_no == refund_no))
        from o2o.payments.providers import REFUND_SUCCEEDED, RefundEvent

        event = RefundEvent("sandbox", refund_no, REFUND_SUCCEEDED, refund.amount_fen)
        assert payments.apply_refund_event(session, event).result == "duplicate"
    assert len(txns(db, refund_no=refund_no)) == 1
    assert_identities(db)


def test_expiry_without_auto_refund_earns_for_the_merchant(
    api: Any, world: Any, db: Database, settings: Any
) -> None:
    set_rate(db, world)
    deal = make_deal(db, world.a.id, world.category_id, world.a.store_ids, price_fen=1999)
    set_listing(db, deal.listing_id, auto_refund_on_expiry=False, refund_anytime=False)
    bought = buy(api, world.tokens["consumer"], [deal_item(deal, 2)])
    set_vouchers(db, [bought.codes[0]], valid_until=utcnow() - timedelta(minutes=1))
    from o2o.fulfilment import vouchers

    assert vouchers.expire_due(db, settings) == 1
    assert vouchers.expire_due(db, settings) == 0  # once
    # Not refunded: the merchant keeps the voucher's money, less commission (3.33 % of 19.99).
    assert bal(db, "provider:sandbox") == 3998
    assert bal(db, U) == 1999 and payable(db, world.a.id) == 1932 and bal(db, C) == 67
    key = f"earned:voucher:{bought.codes[0]}:expired"
    assert [k for kind, k in txns(db, kind="earned")] == [key]
    assert_identities(db)


def test_goods_receipt_earns_lines_and_shipping(
    api: Any, world: Any, db: Database, settings: Any
) -> None:
    set_rate(db, world)
    order = paid_goods_order(api, world, lines=2, price_fen=1999, shipping_fee_fen=800)
    assert order.payable_fen == 1999 + 3998 + 800
    ship_and_receive(api, world, order.order_no)
    c1, c2 = apply_rate(1999, RATE_BP), apply_rate(3998, RATE_BP)
    assert (c1, c2) == (67, 133)
    assert bal(db, C) == c1 + c2
    assert payable(db, world.a.id) == 1999 + 3998 + 800 - c1 - c2
    assert bal(db, U) == 0
    keys = [k for _, k in txns(db, kind="earned")]
    assert keys[:2] == [f"earned:line:{i}" for i in order.line_ids]
    assert keys[2].startswith("earned:shipping:")
    # A second confirmation is refused and posts nothing.
    before = count_txns(db)
    r = api.post(f"/api/v1/orders/{order.order_no}/confirm-receipt", as_=world.tokens["consumer"])
    assert r.status_code == 409
    assert count_txns(db) == before

    # The worker's auto-confirmation earns too.
    other = paid_goods_order(api, world, price_fen=1000)
    r = api.post(
        f"/api/v1/merchants/{world.a.id}/orders/{other.order_no}/shipments",
        json={"carrier": "SF", "tracking_no": sf_number()},
        as_=world.tokens["manager"],
    )
    assert r.status_code == 201, r.text
    shift_order(db, other.order_no, shipped_at=utcnow() - timedelta(days=8))
    assert shipping.auto_confirm(db, settings) == 1
    assert shipping.auto_confirm(db, settings) == 0
    assert bal(db, C) == c1 + c2 + apply_rate(1000, RATE_BP)
    assert bal(db, U) == 0
    assert_identities(db)


def test_after_sales_refund_gives_commission_back_in_proportion(
    api: Any, world: Any, db: Database, settings: Any
) -> None:
    set_rate(db, world)
    order = paid_goods_order(api, world, price_fen=1999)
    ship_and_receive(api, world, order.order_no)
    assert (payable(db, world.a.id), bal(db, C)) == (1932, 67)
    after_sales(api, world, order.order_no, order.line_ids[0], 1000)
    assert bal(db, C) == 67  # approved, not yet paid back
    settle_refunds(db, settings)
    back = (2 * 67 * 1000 + 1999) // (2 * 1999)  # round half up of 67·1000/1999 = 33.52
    assert back == 34
    assert bal(db, C) == 67 - back and payable(db, world.a.id) == 1932 - (1000 - back)
    assert bal(db, "provider:sandbox") == 999 and bal(db, U) == 0
    # The rest: all of the commission comes back, exactly.
    after_sales(api, world, order.order_no, order.line_ids[0], 999)
    settle_refunds(db, settings)
    assert bal(db, C) == 0 and payable(db, world.a.id) == 0 and bal(db, "provider:sandbox") == 0
    refunds = [k for _, k in txns(db, kind="refund")]
    assert all(k.endswith(f":earned:line:{order.line_ids[0]}") for k in refunds)
    assert_identities(db)


def test_unshipped_full_refund_and_payout(
    api: Any, world: Any, db: Database, settings: Any
) -> None:
    order = paid_goods_order(api, world, price_fen=2500, shipping_fee_fen=600)
    r = api.post(f"/api/v1/orders/{order.order_no}/refunds", json={}, as_=world.tokens["consumer"])
    assert r.status_code == 201, r.text
    settle_refunds(db, settings)
    assert bal(db, "provider:sandbox") == 0 and bal(db, U) == 0
    assert [k for k, _ in txns(db, order_no=order.order_no)] == ["payment_received", "refund"]
    # A payout of what is payable (the settlement side calls post_payout).
    paid = paid_goods_order(api, world, price_fen=1000)
    ship_and_receive(api, world, paid.order_no)
    owed = payable(db, world.a.id)
    assert owed == 1000 - apply_rate(1000, 600)
    with db.transaction() as session:
        ledger.post_payout(session, payout_no="PO-T1", merchant_id=world.a.id, amount_fen=owed)
    assert payable(db, world.a.id) == 0
    assert bal(db, ledger.merchant_paid_out(world.a.id)) == owed
    assert_identities(db)


def test_late_money_revived_or_refunded_balances(
    api: Any, world: Any, db: Database, settings: Any
) -> None:
    token = world.tokens["consumer"]
    goods = make_goods(db, world.a.id, world.category_id, price_fen=1500, stock=5)
    # Cancelled by the consumer, then the money arrives: it goes back automatically.
    r = place(api, token, [goods_item(goods)], address=ADDRESS)
    assert r.status_code == 201, r.text
    body = r.json()
    payment_no, order_no = body["payment"]["payment_no"], body["orders"][0]["order_no"]
    start_sandbox(api, token, payment_no)
    assert api.post(f"/api/v1/orders/{order_no}/cancel", as_=token).status_code == 200
    replay_success(api, db, payment_no)
    with db.transaction(readonly=True) as session:
        assert session.scalar(
            select(Payment.resolution).where(Payment.payment_no == payment_no)
        ) == ("auto_refunded")
    settle_refunds(db, settings)
    assert [k for k, _ in txns(db, payment_no=payment_no)] == ["payment_received", "refund"]
    assert bal(db, "provider:sandbox") == 0 and bal(db, U) == 0
    # Timed out, then paid: the order is revived and earns like any other.
    r = place(api, token, [goods_item(goods)], address=ADDRESS)
    body = r.json()
    payment_no, order_no = body["payment"]["payment_no"], body["orders"][0]["order_no"]
    start_sandbox(api, token, payment_no)
    payments.close_expired(db, settings, now=utcnow() + timedelta(hours=3))
    replay_success(api, db, payment_no)
    replay_success(api, db, payment_no)
    with db.transaction(readonly=True) as session:
        assert session.scalar(select(Order.status).where(Order.order_no == order_no)) == "paid"
    assert [k for k, _ in txns(db, payment_no=payment_no)] == ["payment_received"]
    ship_and_receive(api, world, order_no)
    assert bal(db, U) == 0 and bal(db, "provider:sandbox") == 1500
    assert_identities(db)


def test_payment_from_before_the_ledger_is_posted_when_first_needed(
    api: Any, world: Any, db: Database
) -> None:
    """A payment applied before the postings existed (no ``payment_received``): the first
    event that needs it posts it from the payment row."""
    deal = make_deal(db, world.a.id, world.category_id, world.a.store_ids, price_fen=3000)
    with wiring.without_in_transaction(events.PaymentSucceeded, postings.on_payment_succeeded):
        bought = buy(api, world.tokens["consumer"], [deal_item(deal)])
    assert txns(db, payment_no=bought.payment_no) == []
    assert redeem(api, world, bought.codes[0]).status_code == 200
    assert [k for k, _ in txns(db, payment_no=bought.payment_no)] == [
        "payment_received",
        "earned",
    ]
    assert_identities(db)


def test_demo_data_posts_to_the_ledger_and_balances(demo_db: Database) -> None:
    from o2o import demo

    demo.load(demo_db)
    with demo_db.transaction(readonly=True) as session:
        kinds = set(session.scalars(select(LedgerTransaction.kind)))
    assert {"payment_received", "earned", "refund"} <= kinds, kinds
    assert_identities(demo_db)


# --- the property --------------------------------------------------------------------------

OPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "buy_deal",
                "buy_goods",
                "redeem",
                "undo",
                "refund_voucher",
                "receive",
                "full_refund",
                "after_sales",
                "settle",
                "payout",
                "replay",
            ]
        ),
        st.integers(min_value=0, max_value=50),
    ),
    min_size=1,
    max_size=8,
)


@pytest.fixture
def fixtures(api: Any, world: Any, db: Database) -> dict[str, Any]:
    set_rate(db, world)
    return {
        "deal": make_deal(
            db, world.a.id, world.category_id, world.a.store_ids, price_fen=1999, stock=None
        ),
        "goods": make_goods(
            db, world.a.id, world.category_id, price_fen=1333, stock=10_000, shipping_fee_fen=500
        ),
    }


def _pick(items: list[Any], n: int) -> Any:
    return items[n % len(items)] if items else None


def _orders(db: Database, kind: str, status: str) -> list[str]:
    with db.transaction(readonly=True) as session:
        return list(
            session.scalars(
                select(Order.order_no)
                .where(Order.kind == kind, Order.status == status)
                .order_by(Order.id)
            )
        )


def _vouchers(db: Database, status: str) -> list[str]:
    with db.transaction(readonly=True) as session:
        return list(
            session.scalars(
                select(Voucher.code).where(Voucher.status == status).order_by(Voucher.id)
            )
        )


@hsettings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS)
def test_property_random_money_events_keep_the_ledger_exact(
    api: Any,
    world: Any,
    db: Database,
    settings: Any,
    fixtures: dict[str, Any],
    ops: list[tuple[str, int]],
) -> None:
    token = world.tokens["consumer"]
    # Something of each kind to work on, then the random sequence.
    prelude = [("buy_deal", 1), ("buy_goods", 0), ("buy_goods", 1), ("receive", 0)]
    for op, n in [*prelude, *ops]:
        did = True
        if op == "buy_deal":
            buy(api, token, [deal_item(fixtures["deal"], 1 + n % 3)])
        elif op == "buy_goods":
            r = place(api, token, [goods_item(fixtures["goods"], 1 + n % 2)], address=ADDRESS)
            assert r.status_code == 201, r.text
            pay_sandbox(api, token, r.json()["payment"]["payment_no"])
        elif op == "redeem" and (code := _pick(_vouchers(db, "unused"), n)):
            assert redeem(api, world, code).status_code == 200
        elif op == "undo" and (code := _pick(_vouchers(db, "redeemed"), n)):
            r = api.post(
                f"/api/v1/merchants/{world.a.id}/redemptions/{code}/undo",
                json={"reason": "撤销"},
                as_=world.tokens["manager"],
            )
            assert r.status_code == 200, r.text
        elif op == "refund_voucher" and (code := _pick(_vouchers(db, "unused"), n)):
            r = api.post(f"/api/v1/vouchers/{code}/refund", json={}, as_=token)
            assert r.status_code == 201, r.text
        elif op == "receive" and (order_no := _pick(_orders(db, "goods", "paid"), n)):
            ship_and_receive(api, world, order_no)
        elif op == "full_refund" and (order_no := _pick(_orders(db, "goods", "paid"), n)):
            r = api.post(f"/api/v1/orders/{order_no}/refunds", json={}, as_=token)
            assert r.status_code == 201, r.text
        elif op == "after_sales" and (order_no := _pick(_orders(db, "goods", "completed"), n)):
            with db.transaction(readonly=True) as session:
                line = session.scalar(
                    select(OrderLine)
                    .join(Order, Order.id == OrderLine.order_id)
                    .where(Order.order_no == order_no)
                )
                left = line.amount_fen - line.refunded_fen
            if left > 0:
                after_sales(api, world, order_no, line.id, 1 + n * 37 % left)
        elif op == "settle":
            settle_refunds(db, settings)
        elif op == "payout":
            owed = payable(db, world.a.id)
            if owed > 0:
                amount = max(1, owed * (1 + n % 4) // 4)
                with db.transaction() as session:
                    ledger.post_payout(
                        session,
                        payout_no=f"PO-P{next(_payouts)}",
                        merchant_id=world.a.id,
                        amount_fen=amount,
                    )
        elif op == "replay":
            with db.transaction(readonly=True) as session:
                paid = list(
                    session.scalars(select(Payment.payment_no).where(Payment.status == "succeeded"))
                )
            if payment_no := _pick(paid, n):
                before = count_txns(db)
                replay_success(api, db, payment_no)
                assert count_txns(db) == before
        else:
            did = False
        if did:
            event(op)
        assert_identities(db)
