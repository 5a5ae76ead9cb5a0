"""The platform's GMV by day, O2O vs goods (``o2o.reports.service.platform_daily``), checked by
hand on the small history of tests/test_reports.py (both databases).

Orders placed in 2026-03-01 .. 03-02 (China time) and paid, with their ``payable_fen``:

| day | O2O (service) | goods |
|---|---|---|
| 03-01 | O8 10000 (08:00 = 00:00 UTC), O1 20000 → 2 orders, 30000 | O7 53000, O3 6000 → 2, 59000 |
| 03-02 | O2 10000 → 1, 10000 | O5 51000 (refunded later: still GMV) → 1, 51000 |

Not counted: O4 (never paid), O6 (placed 02-28 23:00, paid 03-01: 02-28's, outside the window).
Total 150000 = the channels report's total GMV for the same window.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from o2o.orders.models import Checkout, Order
from o2o.reports import facts, service
from o2o.reports.service import PlatformDay, make_window, platform_daily
from tests.test_reports import History, _checkout, _order, cst, history  # noqa: F401


@pytest.fixture
def daily(request: pytest.FixtureRequest) -> History:
    """tests/test_reports.py's hand-checked history (its fixture, imported above)."""
    return request.getfixturevalue("history")


EXPECTED = [
    PlatformDay(date(2026, 3, 1), 2, 30000, 2, 59000),
    PlatformDay(date(2026, 3, 2), 1, 10000, 1, 51000),
]


def _daily(world: Any, first: date, last: date) -> list[PlatformDay]:
    with world.db.transaction(readonly=True) as session:
        return platform_daily(session, make_window(first, last))


def test_daily_gmv_by_hand(world: Any, daily: History) -> None:
    days = _daily(world, date(2026, 3, 1), date(2026, 3, 2))
    assert days == EXPECTED
    assert [d.gmv_fen for d in days] == [89000, 61000]


def test_days_add_up_to_the_channels_report(world: Any, daily: History) -> None:
    window = make_window(date(2026, 3, 1), date(2026, 3, 2))
    with world.db.transaction(readonly=True) as session:
        days = platform_daily(session, window)
        channels = service.channels_report(session, window)
    assert sum(d.gmv_fen for d in days) == channels.total.gmv_fen == 150000
    assert sum(d.o2o_paid_orders + d.goods_paid_orders for d in days) == 6
    assert channels.total.paid_orders == 6


def test_stored_facts_give_the_same_days(world: Any, daily: History) -> None:
    live = _daily(world, date(2026, 3, 1), date(2026, 3, 2))
    assert facts.refresh_all(world.db) > 0
    assert _daily(world, date(2026, 3, 1), date(2026, 3, 2)) == live == EXPECTED


def test_every_day_of_the_window_is_there_even_empty(world: Any, daily: History) -> None:
    days = _daily(world, date(2026, 2, 27), date(2026, 3, 4))
    assert [d.day.day for d in days] == [27, 28, 1, 2, 3, 4]
    assert days[2:4] == EXPECTED
    assert days[0] == PlatformDay(date(2026, 2, 27), 0, 0, 0, 0)
    # O6 (B service 8000), placed 02-28 23:00 China time, counts on its own day.
    assert days[1] == PlatformDay(date(2026, 2, 28), 1, 8000, 0, 0)
    assert all(d.gmv_fen == 0 for d in days[4:])
    # One day only: 03-02's orders are left out.
    assert _daily(world, date(2026, 3, 1), date(2026, 3, 1)) == EXPECTED[:1]


def test_days_are_china_days(world: Any, daily: History) -> None:
    """An order placed 03-03 07:59 China time (02 23:59 UTC) is 03-03's, not 03-02's."""
    with world.db.transaction() as s:
        u = daily.ids["u1"]
        c = _checkout(s, u, "", cst(3, 3, 7, 59), 3000, cst(3, 3, 8))
        _order(
            s,
            "O9",
            daily,
            checkout=c,
            merchant_id=world.a.id,
            user_id=u,
            kind="goods",
            channel="",
            created=cst(3, 3, 7, 59),
            paid=cst(3, 3, 8),
            lines=[("L2", 1, 3000, 600, 0)],
        )
        assert s.get(Order, daily.ids["O9"]) is not None
        assert s.get(Checkout, c[0]) is not None
    days = _daily(world, date(2026, 3, 2), date(2026, 3, 3))
    assert days[0] == EXPECTED[1]
    assert days[1] == PlatformDay(date(2026, 3, 3), 0, 0, 1, 3000)


def test_no_orders_at_all(world: Any) -> None:
    days = _daily(world, date(2026, 3, 1), date(2026, 3, 3))
    assert [d.gmv_fen for d in days] == [0, 0, 0]
