"""The demo history (o2o.reports.demo): after the whole demo load the operator's reports say
something — channels with paid and consumed orders, both models in several categories with a
reading, a month of days — the ledger still balances, and a second load makes nothing.

The demo is loaded once per backend for the module (into a database of its own), the tests read
it; the second-load test runs last and checks that nothing changed.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from o2o import demo
from o2o.accounts.models import User
from o2o.channels.models import Visit
from o2o.db import Database
from o2o.fulfilment.models import Voucher
from o2o.ledger import service as ledger
from o2o.ledger.models import LedgerTransaction
from o2o.orders.models import Order
from o2o.payments.models import PAYABLE, REFUND_SUCCEEDED, Payment, Refund
from o2o.reports import demo as history
from o2o.reports import facts
from o2o.reports import service as reports
from o2o.reports.models import ReportDirtyOrder, ReportOrderFact
from o2o.shipping.models import Shipment
from o2o.timeutil import as_utc, clock_at, to_china, utcnow


@pytest.fixture
def loaded(demo_db: Database) -> Database:
    """A database with the whole demo loaded (every step, in DEMO_ORDER; conftest's demo_db)."""
    return demo_db


MINE = User.phone.like(f"{history.PHONE_PREFIX}%")  # the history's consumers


def test_clock_at_sets_utcnow_in_this_context_only() -> None:
    moment = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    seen: list[datetime] = []
    with clock_at(moment):
        assert utcnow() == moment
        with clock_at(moment + timedelta(hours=1)):
            assert utcnow() == moment + timedelta(hours=1)
        assert utcnow() == moment
        # Another thread (the embedded worker, a request) keeps the real time.
        other = threading.Thread(target=lambda: seen.append(utcnow()))
        other.start()
        other.join()
    assert seen[0] > moment + timedelta(days=30)
    assert utcnow() > moment + timedelta(days=30)


def test_step_runs_after_fulfilment_and_before_ledger() -> None:
    from o2o.fulfilment import demo as fulfilment_demo
    from o2o.ledger import demo as ledger_demo
    from o2o.orders import demo as orders_demo
    from o2o.reviews import demo as reviews_demo
    from o2o.shipping import demo as shipping_demo

    before = [orders_demo, fulfilment_demo, shipping_demo, reviews_demo]
    assert all(m.DEMO_ORDER < history.DEMO_ORDER for m in before)
    assert history.DEMO_ORDER < ledger_demo.DEMO_ORDER
    steps = [s.__module__ for s in demo.demo_steps()]
    assert steps.index("o2o.reports.demo") < steps.index("o2o.ledger.demo")


def test_channels_report_has_paid_and_consumed_orders(loaded: Database) -> None:
    with loaded.transaction(readonly=True) as session:
        report = reports.channels_report(session, reports.make_window(None, None))
    with_sales = [r for r in report.rows if r.channel_code and r.paid_orders > 0]
    assert len(with_sales) >= 3, [(r.channel_code, r.paid_orders) for r in report.rows]
    assert all(r.visits > 0 and r.unique_visitors > 0 for r in with_sales)
    assert report.total.consumed_orders > 0
    assert sum(r.consumed_orders for r in with_sales) > 0
    assert report.total.vouchers_redeemed > 0 and report.total.goods_received_orders > 0
    assert report.total.refunded_orders > 0
    # The funnel narrows: not everything checked out is paid, not everything paid is consumed.
    assert report.total.paid_orders < report.total.orders
    assert report.total.consumed_orders < report.total.paid_orders


def test_models_report_compares_both_models_in_several_categories(loaded: Database) -> None:
    with loaded.transaction(readonly=True) as session:
        report = reports.models_report(session, reports.make_window(None, None))
    both = [r for r in report.categories if r.o2o.paid_orders > 0 and r.goods.paid_orders > 0]
    assert len(both) >= 2, [(r.name, r.o2o.paid_orders, r.goods.paid_orders) for r in both]
    for row in [report.total, *report.categories]:
        assert row.reading.startswith(f"{row.name}：") and len(row.reading) > len(row.name) + 5
    # Enough history for a verdict on the whole platform and in 美食 (not 样本不足).
    food = next(r for r in report.categories if r.name == "美食")
    for row in (report.total, food):
        assert row.o2o.paid_orders >= report.min_sample, row
        assert row.goods.paid_orders >= report.min_sample, row
        assert "更适合" in row.reading or "各有所长" in row.reading, row.reading
    # The categories behave differently: 休闲娱乐 deals are refunded far more than 美食 deals,
    # and 数码 goods convert to payment better than the in-store phone service.
    leisure = next(r for r in report.categories if r.name == "休闲娱乐")
    digital = next(r for r in report.categories if r.name == "数码")
    assert leisure.o2o.refund_rate is not None and food.o2o.refund_rate is not None
    assert leisure.o2o.refund_rate > food.o2o.refund_rate + Decimal("0.1")
    assert digital.goods.paid_rate is not None and digital.o2o.paid_rate is not None
    assert digital.goods.paid_rate > digital.o2o.paid_rate
    assert food.o2o.redemption_rate is not None and food.o2o.redemption_rate > Decimal("0.5")
    assert food.o2o.repeat_buyers > 0


def test_daily_series_covers_the_month_and_weekends_are_busier(loaded: Database) -> None:
    window = reports.make_window(None, None)
    with loaded.transaction(readonly=True) as session:
        days = reports.platform_daily(session, window)
        created = session.execute(
            select(Order.created_at).join(User, User.id == Order.user_id).where(MINE)
        ).scalars()
        per_day: dict[int, int] = {}
        for at in created:
            weekday = to_china(at).weekday()
            per_day[weekday] = per_day.get(weekday, 0) + 1
    active = [d for d in days if d.gmv_fen > 0]
    assert len({d.day for d in active}) >= 20
    assert any(d.o2o_gmv_fen > 0 for d in active) and any(d.goods_gmv_fen > 0 for d in active)
    weekend = (per_day.get(5, 0) + per_day.get(6, 0)) / 2
    weekday = sum(per_day.get(i, 0) for i in range(5)) / 5
    assert weekend > weekday, per_day


def test_history_is_consistent_in_time(loaded: Database) -> None:
    """Replayed with the clock at each moment: orders, payments, redemptions, shipments, visits
    and ledger postings fall across the month, in order, never in the future."""
    now = utcnow()
    month_ago = now - timedelta(days=history.DAYS + 1)
    with loaded.transaction(readonly=True) as session:
        mine = select(User.id).where(MINE).scalar_subquery()
        orders = session.scalars(select(Order).where(Order.user_id.in_(mine))).all()
        assert len(orders) >= 100
        for order in orders:
            created = as_utc(order.created_at)
            assert month_ago < created < now
            assert order.order_no.startswith(to_china(created).strftime("%Y%m%d"))
            if order.paid_at is not None:
                assert created <= as_utc(order.paid_at) < created + timedelta(minutes=15)
            if order.completed_at is not None:
                assert as_utc(order.paid_at or now) < as_utc(order.completed_at) < now
        first = min(as_utc(o.created_at) for o in orders)
        assert first < now - timedelta(days=history.DAYS - 3)
        ids = [o.id for o in orders]
        for voucher in session.scalars(
            select(Voucher).where(Voucher.order_id.in_(ids), Voucher.status == "redeemed")
        ):
            assert voucher.redeemed_at is not None
            assert as_utc(voucher.valid_from) < as_utc(voucher.redeemed_at) < now
        shipments = session.scalars(select(Shipment).where(Shipment.order_id.in_(ids))).all()
        assert shipments and all(month_ago < as_utc(s.shipped_at) < now for s in shipments)
        order_nos = [o.order_no for o in orders]
        postings = session.scalars(
            select(LedgerTransaction.created_at).where(LedgerTransaction.order_no.in_(order_nos))
        ).all()
        assert postings and min(as_utc(p) for p in postings) < now - timedelta(days=20)
        visits = session.scalars(select(Visit.created_at).where(Visit.user_id.in_(mine))).all()
        assert len(visits) >= 40 and min(as_utc(v) for v in visits) < first
        # Each consumer arrived through a channel before their first order.
        users = session.scalar(
            select(func.count(func.distinct(Visit.user_id))).where(Visit.user_id.in_(mine))
        )
        assert users == len({o.user_id for o in orders})
        # Nothing left for the worker that would rewrite the history at its first round.
        assert not session.scalar(
            select(func.count())
            .select_from(Payment)
            .where(Payment.status.in_(PAYABLE), Payment.expires_at < now)
        )
        assert not session.scalar(
            select(func.count())
            .select_from(Refund)
            .where(Refund.status != REFUND_SUCCEEDED, Refund.order_id.in_(ids))
        )
        # The reports' facts of these orders are stored, and exact (== computed live now).
        assert not session.scalar(
            select(func.count())
            .select_from(ReportDirtyOrder)
            .where(ReportDirtyOrder.order_id.in_(ids))
        )
        stored = session.execute(
            select(*(getattr(ReportOrderFact, c) for c in facts.COLUMNS))
            .where(ReportOrderFact.order_id.in_(ids))
            .order_by(ReportOrderFact.order_id, ReportOrderFact.category_id)
        ).all()
        live = facts.fact_rows(lambda column: column.in_(ids)).subquery()
        computed = session.execute(select(live).order_by(live.c.order_id, live.c.category_id)).all()
        assert [tuple(r) for r in stored] == [tuple(r) for r in computed]


def test_ledger_balances(loaded: Database) -> None:
    with loaded.transaction(readonly=True) as session:
        assert ledger.unbalanced_transactions(session) == []
        paid = session.scalar(
            select(func.coalesce(func.sum(Payment.amount_fen), 0)).where(
                Payment.status == "succeeded"
            )
        )
        refunded = session.scalar(
            select(func.coalesce(func.sum(Refund.amount_fen), 0)).where(
                Refund.status == "succeeded"
            )
        )
        provider = sum(ledger.balances(session, ledger.PROVIDER_PREFIX, natural=True).values())
        assert provider == paid - refunded


def test_second_load_creates_nothing(loaded: Database) -> None:
    def counts() -> tuple[int, ...]:
        with loaded.transaction(readonly=True) as session:
            return tuple(
                int(session.scalar(select(func.count()).select_from(model)) or 0)
                for model in (User, Order, Visit, Voucher, Payment, LedgerTransaction)
            )

    before = counts()
    with loaded.transaction() as session:
        assert history.load_demo(session) == 0
    demo.load(loaded)
    assert counts() == before
