"""Reports, checked by hand on a small history (both databases).

The history (``history``) is written straight into the tables, with times in China time, so that
every expected figure below can be worked out on paper from this docstring:

Categories: 美食 (world.category_id, 6%) with child 火锅 (6%); 数码 (3%) with child 配件 (3%).
Listings: L1 A service 火锅 ¥100 · L2 A goods 美食 ¥30 · L3 B goods 数码 ¥500 · L5 B goods 配件 ¥20 ·
L4 B service 数码 ¥80. Channels: wx, poster, idle (never used). Users u1, u2, u3.
Window: 2026-03-01 .. 2026-03-02 (China time).

| order | merchant/kind | user | channel | created (CST) | paid | lines | what happened |
|---|---|---|---|---|---|---|---|
| O1 | A service | u1 | wx (checkout C1) | 03-01 10:00 | 10:05 | L1×2 = 20000 | V1 redeemed 03-01 18:00; V2 refunded (R1 10000 ok 03-02 09:00); completed |
| O7 | B goods | u1 | wx (C1) | 03-01 10:00 | 10:05 | L3 50000 + L5 2000, fee 1000 = 53000 | shipped 03-01 14:00, received 03-02 12:00; L5 refunded (R3 2000 ok 03-02 18:00) |
| O2 | A service | u1 | wx (C2) | 03-02 20:00 | 20:05 | L1×1 = 10000 | V3 unused |
| O3 | A goods | u2 | wx (C3) | 03-01 12:00 | 12:05 | L2×2 = 6000 | shipped 03-01 15:00, received 03-02 10:00 |
| O4 | A goods | u2 | poster (C4) | 03-01 13:00 | — | L2×1 = 3000 | cancelled |
| O5 | B goods | u3 | direct (C5) | 03-02 23:30 | 23:40 | L3 50000, fee 1000 = 51000 | refunded in full before shipping (R2 51000 ok 03-03 07:00 — outside) |
| O6 | B service | u3 | direct (C6) | 02-28 23:00 (outside) | 03-01 00:10 | L4 8000 | V4 redeemed 03-01 11:00 |
| O8 | A service | u1 | direct (C8) | 03-01 08:00 | 08:05 | L1×1 = 10000 | V5 redeemed 03-01 19:00 |

Visits: wx — v1 03-01 09:00, v1 03-01 09:30, v2 03-01 11:00, v3 03-02 22:00, and v9 02-28 23:59:59
and 03-03 00:00:00 (both outside); poster — v4 03-01 12:30.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import itertools
import threading
import time
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from o2o.catalog.models import Listing
from o2o.channels.models import Channel, Visit
from o2o.fulfilment.models import Voucher
from o2o.merchants.models import Category
from o2o.orders.models import Checkout, Order, OrderLine
from o2o.payments.models import Payment, Refund
from o2o.reports import csv_export, facts, service
from o2o.reports import jobs as report_jobs
from o2o.reports.models import ReportDirtyOrder, ReportOrderFact
from o2o.reports.service import Window, make_window, rate
from o2o.timeutil import CHINA_TZ
from tests.support import make_user

WINDOW = "from=2026-03-01&to=2026-03-02"
_spec = importlib.util.spec_from_file_location(
    "migration_0008",
    Path(__file__).parents[1] / "src/o2o/migrations/versions/0008_reports_aggregates.py",
)
assert _spec and _spec.loader
MIGRATION = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(MIGRATION)
_numbers = itertools.count(1)


def cst(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, second, tzinfo=CHINA_TZ)


class History:
    """Ids of what ``history`` wrote."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}


def _listing(
    session: Any,
    key: str,
    h: History,
    merchant_id: int,
    kind: str,
    category: int,
    price: int,
    fee: int = 0,
) -> None:
    listing = Listing(
        merchant_id=merchant_id,
        kind=kind,
        title=key,
        category_id=category,
        status="published",
        price_fen=price,
        original_price_fen=price,
        shipping_fee_fen=fee,
    )
    session.add(listing)
    session.flush()
    h.ids[key] = listing.id


def _checkout(
    session: Any, user_id: int, channel: str, at: datetime, total: int, paid_at: datetime | None
) -> tuple[int, int]:
    n = next(_numbers)
    checkout = Checkout(
        checkout_no=f"CR{n}", user_id=user_id, total_fen=total, channel=channel, created_at=at
    )
    session.add(checkout)
    session.flush()
    payment = Payment(
        payment_no=f"PR{n}",
        checkout_id=checkout.id,
        user_id=user_id,
        amount_fen=total,
        status="succeeded" if paid_at else "closed",
        provider="sandbox",
        expires_at=at,
        created_at=at,
        paid_at=paid_at,
    )
    session.add(payment)
    session.flush()
    return checkout.id, payment.id


def _order(
    session: Any,
    key: str,
    h: History,
    *,
    checkout: tuple[int, int],
    merchant_id: int,
    user_id: int,
    kind: str,
    channel: str,
    created: datetime,
    paid: datetime | None,
    lines: list[tuple[str, int, int, int, int]],
    fee: int = 0,
    status: str = "paid",
    refunded: int = 0,
    **times: datetime,
) -> None:
    """``lines``: (listing key, quantity, amount, commission bp, refunded)."""
    items = sum(line[2] for line in lines)
    order = Order(
        order_no=f"OR{next(_numbers)}",
        checkout_id=checkout[0],
        payment_id=checkout[1],
        user_id=user_id,
        merchant_id=merchant_id,
        kind=kind,
        status=status,
        items_fen=items,
        shipping_fee_fen=fee,
        payable_fen=items + fee,
        refunded_fen=refunded,
        channel=channel,
        created_at=created,
        updated_at=created,
        paid_at=paid,
        **times,
    )
    session.add(order)
    session.flush()
    h.ids[key] = order.id
    h.ids[f"{key}.payment"] = checkout[1]
    for i, (listing, qty, amount, bp, line_refunded) in enumerate(lines):
        line = OrderLine(
            order_id=order.id,
            listing_id=h.ids[listing],
            title=listing,
            unit_price_fen=amount // qty,
            quantity=qty,
            amount_fen=amount,
            commission_bp=bp,
            refunded_fen=line_refunded,
        )
        session.add(line)
        session.flush()
        h.ids[f"{key}.line{i}"] = line.id


def _voucher(
    session: Any,
    h: History,
    order: str,
    line: int,
    unit: int,
    listing: str,
    merchant_id: int,
    user_id: int,
    amount: int,
    status: str,
    **times: datetime,
) -> None:
    session.add(
        Voucher(
            code=f"{next(_numbers):012d}",
            order_id=h.ids[order],
            order_line_id=h.ids[f"{order}.line{line}"],
            unit_no=unit,
            listing_id=h.ids[listing],
            merchant_id=merchant_id,
            user_id=user_id,
            amount_fen=amount,
            valid_from=cst(3, 1),
            valid_until=cst(6, 1),
            status=status,
            **times,
        )
    )


def _refund(session: Any, h: History, order: str, amount: int, at: datetime) -> None:
    session.add(
        Refund(
            refund_no=f"RR{next(_numbers)}",
            order_id=h.ids[order],
            payment_id=h.ids[f"{order}.payment"],
            provider="sandbox",
            amount_fen=amount,
            status="succeeded",
            created_at=at,
            succeeded_at=at,
        )
    )


@pytest.fixture
def history(world: Any) -> History:
    h = History()
    a, b = world.a.id, world.b.id
    with world.db.transaction() as s:
        food = world.category_id  # 美食, 600 bp
        hotpot = Category(parent_id=food, name="火锅", commission_bp=600)
        digital = Category(name="数码", commission_bp=300, sort_order=1)
        s.add_all([hotpot, digital])
        s.flush()
        accessory = Category(parent_id=digital.id, name="配件", commission_bp=300)
        s.add(accessory)
        s.flush()
        h.ids.update(food=food, hotpot=hotpot.id, digital=digital.id, accessory=accessory.id)
        _listing(s, "L1", h, a, "service", hotpot.id, 10000)
        _listing(s, "L2", h, a, "goods", food, 3000)
        _listing(s, "L3", h, b, "goods", digital.id, 50000, fee=1000)
        _listing(s, "L4", h, b, "service", digital.id, 8000)
        _listing(s, "L5", h, b, "goods", accessory.id, 2000)
        u1, u2, u3 = (make_user(s, name=n).id for n in ("u1", "u2", "u3"))
        h.ids.update(u1=u1, u2=u2, u3=u3)
        wx = Channel(code="wx", name="微信入口", kind="superapp_entry")
        poster = Channel(code="poster", name="地铁海报", kind="poster_qr")
        idle = Channel(code="idle", name="闲置渠道", kind="other")
        s.add_all([wx, poster, idle])
        s.flush()
        for channel, visitor, at in (
            (wx, "visitor01", cst(3, 1, 9)),
            (wx, "visitor01", cst(3, 1, 9, 30)),
            (wx, "visitor02", cst(3, 1, 11)),
            (wx, "visitor03", cst(3, 2, 22)),
            (wx, "visitor09", cst(2, 28, 23, 59, 59)),
            (wx, "visitor09", cst(3, 3)),
            (poster, "visitor04", cst(3, 1, 12, 30)),
        ):
            s.add(Visit(channel_id=channel.id, visitor_id=visitor, created_at=at))

        c1 = _checkout(s, u1, "wx", cst(3, 1, 10), 73000, cst(3, 1, 10, 5))
        _order(
            s,
            "O1",
            h,
            checkout=c1,
            merchant_id=a,
            user_id=u1,
            kind="service",
            channel="wx",
            created=cst(3, 1, 10),
            paid=cst(3, 1, 10, 5),
            lines=[("L1", 2, 20000, 600, 10000)],
            status="completed",
            refunded=10000,
            completed_at=cst(3, 1, 18),
        )
        _voucher(s, h, "O1", 0, 1, "L1", a, u1, 10000, "redeemed", redeemed_at=cst(3, 1, 18))
        _voucher(s, h, "O1", 0, 2, "L1", a, u1, 10000, "refunded", refunded_at=cst(3, 2, 9))
        _refund(s, h, "O1", 10000, cst(3, 2, 9))
        _order(
            s,
            "O7",
            h,
            checkout=c1,
            merchant_id=b,
            user_id=u1,
            kind="goods",
            channel="wx",
            created=cst(3, 1, 10),
            paid=cst(3, 1, 10, 5),
            lines=[("L3", 1, 50000, 300, 0), ("L5", 1, 2000, 300, 2000)],
            fee=1000,
            status="completed",
            refunded=2000,
            shipped_at=cst(3, 1, 14),
            completed_at=cst(3, 2, 12),
        )
        _refund(s, h, "O7", 2000, cst(3, 2, 18))

        c2 = _checkout(s, u1, "wx", cst(3, 2, 20), 10000, cst(3, 2, 20, 5))
        _order(
            s,
            "O2",
            h,
            checkout=c2,
            merchant_id=a,
            user_id=u1,
            kind="service",
            channel="wx",
            created=cst(3, 2, 20),
            paid=cst(3, 2, 20, 5),
            lines=[("L1", 1, 10000, 600, 0)],
        )
        _voucher(s, h, "O2", 0, 1, "L1", a, u1, 10000, "unused")

        c3 = _checkout(s, u2, "wx", cst(3, 1, 12), 6000, cst(3, 1, 12, 5))
        _order(
            s,
            "O3",
            h,
            checkout=c3,
            merchant_id=a,
            user_id=u2,
            kind="goods",
            channel="wx",
            created=cst(3, 1, 12),
            paid=cst(3, 1, 12, 5),
            lines=[("L2", 2, 6000, 600, 0)],
            status="completed",
            shipped_at=cst(3, 1, 15),
            completed_at=cst(3, 2, 10),
        )

        c4 = _checkout(s, u2, "poster", cst(3, 1, 13), 3000, None)
        _order(
            s,
            "O4",
            h,
            checkout=c4,
            merchant_id=a,
            user_id=u2,
            kind="goods",
            channel="poster",
            created=cst(3, 1, 13),
            paid=None,
            lines=[("L2", 1, 3000, 600, 0)],
            status="cancelled",
            cancelled_at=cst(3, 1, 13, 15),
        )

        c5 = _checkout(s, u3, "", cst(3, 2, 23, 30), 51000, cst(3, 2, 23, 40))
        _order(
            s,
            "O5",
            h,
            checkout=c5,
            merchant_id=b,
            user_id=u3,
            kind="goods",
            channel="",
            created=cst(3, 2, 23, 30),
            paid=cst(3, 2, 23, 40),
            lines=[("L3", 1, 50000, 300, 50000)],
            fee=1000,
            status="refunded",
            refunded=51000,
            refunded_at=cst(3, 3, 7),
        )
        _refund(s, h, "O5", 51000, cst(3, 3, 7))

        c6 = _checkout(s, u3, "", cst(2, 28, 23), 8000, cst(3, 1, 0, 10))
        _order(
            s,
            "O6",
            h,
            checkout=c6,
            merchant_id=b,
            user_id=u3,
            kind="service",
            channel="",
            created=cst(2, 28, 23),
            paid=cst(3, 1, 0, 10),
            lines=[("L4", 1, 8000, 300, 0)],
            status="completed",
            completed_at=cst(3, 1, 11),
        )
        _voucher(s, h, "O6", 0, 1, "L4", b, u3, 8000, "redeemed", redeemed_at=cst(3, 1, 11))

        c8 = _checkout(s, u1, "", cst(3, 1, 8), 10000, cst(3, 1, 8, 5))
        _order(
            s,
            "O8",
            h,
            checkout=c8,
            merchant_id=a,
            user_id=u1,
            kind="service",
            channel="",
            created=cst(3, 1, 8),
            paid=cst(3, 1, 8, 5),
            lines=[("L1", 1, 10000, 600, 0)],
            status="completed",
            completed_at=cst(3, 1, 19),
        )
        _voucher(s, h, "O8", 0, 1, "L1", a, u1, 10000, "redeemed", redeemed_at=cst(3, 1, 19))
    return h


def get_json(api: Any, world: Any, url: str, role: str = "operator") -> dict[str, Any]:
    r = api.get(url, as_=world.tokens[role])
    assert r.status_code == 200, r.text
    return r.json()


# --- windows and rates ------------------------------------------------------------------------


def test_rate_is_exact_and_rounds_half_up() -> None:
    assert rate(6, 7) == Decimal("0.8571")
    assert rate(4, 3) == Decimal("1.3333")
    assert rate(1, 8) == Decimal("0.1250")
    assert rate(1, 80000) == Decimal("0.0000")
    assert rate(1, 20000) == Decimal("0.0001")  # 0.00005 rounds up
    assert rate(3, 0) is None
    assert rate(123456789012, 987654321098) == Decimal("0.1250")


def test_window_is_china_days() -> None:
    w = make_window(date(2026, 3, 1), date(2026, 3, 2))
    assert w.since.isoformat() == "2026-03-01T00:00:00+08:00"
    assert w.until.isoformat() == "2026-03-03T00:00:00+08:00"
    assert w.days == 2
    assert make_window(None, date(2026, 3, 30)).first == date(2026, 3, 1)
    assert make_window(None, None, today=date(2026, 3, 30)) == Window(
        date(2026, 3, 1), date(2026, 3, 30)
    )


@pytest.mark.parametrize(
    "query",
    [
        "from=2026-03-02&to=2026-03-01",  # from after to
        "from=2025-01-01&to=2026-03-01",  # 425 days
        "from=0001-01-01&to=0001-01-02",  # out of range (would overflow in UTC)
        "from=2026-02-30",
        "from=yesterday",
        "to=2026-03-01T25:00",
        "format=xlsx",
        "category_id=0",
        "merchant_id=99999999999999999999999",
    ],
)
def test_bad_parameters_are_422(api: Any, world: Any, query: str) -> None:
    for url in (
        "/api/v1/admin/reports/channels",
        "/api/v1/admin/reports/models",
        f"/api/v1/merchants/{world.a.id}/reports/summary",
    ):
        if "_id" in query and "models" not in url:
            continue
        token = world.tokens["operator" if "admin" in url else "owner"]
        r = api.get(f"{url}?{query}", as_=token)
        assert r.status_code == 422, (url, query, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")


def test_the_longest_window_is_accepted(api: Any, world: Any) -> None:
    r = api.get(
        "/api/v1/admin/reports/channels?from=2025-01-01&to=2026-02-04", as_=world.tokens["operator"]
    )
    assert r.status_code == 200, r.text  # 400 days
    r = api.get(
        "/api/v1/admin/reports/channels?from=2025-01-01&to=2026-02-05", as_=world.tokens["operator"]
    )
    assert r.status_code == 422
    assert r.json()["code"] == "date_range_too_long"


def test_unknown_category_or_merchant_is_404(api: Any, world: Any) -> None:
    for query in ("category_id=987654", "merchant_id=987654"):
        r = api.get(f"/api/v1/admin/reports/models?{query}", as_=world.tokens["operator"])
        assert r.status_code == 404, r.text


# --- channels, by hand ------------------------------------------------------------------------


def _rate(value: str | None) -> float | None:
    return None if value is None else float(value)


def test_channels_report_by_hand(api: Any, world: Any, history: History) -> None:
    body = get_json(api, world, f"/api/v1/admin/reports/channels?{WINDOW}")
    assert (body["from"], body["to"], body["timezone"]) == (
        "2026-03-01",
        "2026-03-02",
        "Asia/Shanghai",
    )
    rows = {r["channel_code"]: r for r in body["rows"]}
    assert [r["channel_code"] for r in body["rows"]] == ["wx", "poster", "idle", ""]
    fields = (
        "visits",
        "unique_visitors",
        "checkouts",
        "orders",
        "paid_orders",
        "gmv_fen",
        "consumed_orders",
        "vouchers_redeemed",
        "goods_received_orders",
        "refunded_orders",
        "refunded_fen",
        "checkout_rate",
        "paid_rate",
        "consumed_rate",
        "visitor_paid_rate",
        "refund_rate",
    )
    expected = {
        # wx: C1 C2 C3; O1 O7 O2 O3 all paid; GMV 20000+53000+10000+6000; consumed O1 (V1) O3 O7;
        # refunds O1 10000 + O7 2000; 12000/89000 = 0.134831…
        "wx": (4, 3, 3, 4, 4, 89000, 3, 1, 2, 2, 12000, 1.0, 1.0, 0.75, 1.3333, 0.1348),
        # poster: C4 → O4, never paid.
        "poster": (1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1.0, 0.0, None, 0.0, None),
        "idle": (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, None, None, None, None, None),
        # direct: C5 C8 (C6 is before the window); O5 + O8 = 51000 + 10000; consumed O8 (V5);
        # refunded O5 51000 (its refund succeeded after the window: the cohort still shows it);
        # 51000/61000 = 0.836065…
        "": (0, 0, 2, 2, 2, 61000, 1, 1, 0, 1, 51000, None, 1.0, 0.5, None, 0.8361),
    }
    for code, values in expected.items():
        assert tuple(rows[code][f] for f in fields) == values, code
    assert rows[""]["channel_name"] == "直接访问/无渠道"
    assert rows["wx"]["channel_kind"] == "superapp_entry"
    # 6/7 = 0.857142…, 4/6 = 0.666…, 63000/150000 = 0.42
    total = body["total"]
    assert tuple(total[f] for f in fields) == (
        5,
        4,
        6,
        7,
        6,
        150000,
        4,
        2,
        2,
        3,
        63000,
        1.5,
        0.8571,
        0.6667,
        1.5,
        0.42,
    )


def test_undone_redemption_is_not_consumed(api: Any, world: Any, history: History) -> None:
    with world.db.transaction() as s:
        v = s.scalar(select(Voucher).where(Voucher.order_id == history.ids["O8"]))
        v.status, v.redeemed_at = "unused", None
    body = get_json(api, world, f"/api/v1/admin/reports/channels?{WINDOW}")
    direct = next(r for r in body["rows"] if r["channel_code"] == "")
    assert (direct["consumed_orders"], direct["vouchers_redeemed"]) == (0, 0)


def test_channels_csv(api: Any, world: Any, history: History) -> None:
    r = api.get(f"/api/v1/admin/reports/channels?{WINDOW}&format=csv", as_=world.tokens["operator"])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="channels_2026-03-01_2026-03-02.csv"' in r.headers["content-disposition"]
    assert r.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][:4] == ["渠道编码", "渠道名称", "渠道类型", "访问次数"]
    assert rows[0][8] == "GMV(元)"
    wx = rows[1]
    assert wx[:9] == ["wx", "微信入口", "超级App入口", "4", "3", "3", "4", "4", "890.00"]
    assert wx[13:] == ["120.00", "100.00%", "100.00%", "75.00%", "133.33%", "13.48%"]
    assert rows[-2][0] == "(无)" and rows[-2][8] == "610.00"
    assert rows[-1][:2] == ["*", "合计"] and rows[-1][8] == "1500.00"
    assert r.content.endswith(b"\r\n")


# --- models, by hand --------------------------------------------------------------------------

MODEL_FIELDS = (
    "orders",
    "paid_orders",
    "paid_rate",
    "gmv_fen",
    "avg_order_value_fen",
    "refunded_fen",
    "refund_rate",
    "buyers",
    "repeat_buyers",
    "repeat_rate",
    "vouchers_issued",
    "vouchers_redeemed",
    "vouchers_refunded",
    "redemption_rate",
    "shipped_orders",
    "received_orders",
    "receipt_rate",
    "commission_fen",
)
ZERO_SERVICE = (0, 0, None, 0, 0, 0, None, 0, 0, None, 0, 0, 0, None, 0, 0, None, 0)
ZERO_GOODS = ZERO_SERVICE
# 美食 O2O: O1 O2 O8 (u1 thrice); GMV 20000+10000+10000, AOV 40000/3 = 13333.3; refunds 10000;
# vouchers V1 V2 V3 V5: redeemed V1 V5, refunded V2 → 2/3; commission 600 + 600 (6% of 10000 each).
FOOD_O2O = (3, 3, 1.0, 40000, 13333, 10000, 0.25, 1, 1, 1.0, 4, 2, 1, 0.6667, 0, 0, None, 1200)
# 美食 goods: O3 (paid, received) and O4 (never paid); 6% of 6000 = 360.
FOOD_GOODS = (2, 1, 0.5, 6000, 6000, 0, 0.0, 1, 0, 0.0, 0, 0, 0, None, 1, 1, 1.0, 360)
# 数码 goods: O5 (refunded, never shipped) and O7 (received; L5 refunded); GMV 50000 + 52000;
# refunds 50000 + 2000 → 52000/102000 = 0.5098; commission 3% of 50000 + 3% of 0 = 1500.
DIGITAL_GOODS = (2, 2, 1.0, 102000, 51000, 52000, 0.5098, 2, 0, 0.0, 0, 0, 0, None, 1, 1, 1.0, 1500)
# All goods: O3 O4 O5 O7 → paid 3 of 4; GMV 108000, AOV 36000; 52000/108000 = 0.481481…;
# buyers u2 u3 u1, none twice; shipped O3 O7, received both; commission 360 + 1500.
ALL_GOODS = (4, 3, 0.75, 108000, 36000, 52000, 0.4815, 3, 0, 0.0, 0, 0, 0, None, 2, 2, 1.0, 1860)


def metrics(m: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(m[f] for f in MODEL_FIELDS)


def test_models_report_by_hand(api: Any, world: Any, history: History) -> None:
    body = get_json(api, world, f"/api/v1/admin/reports/models?{WINDOW}")
    cats = {r["name"]: r for r in body["categories"]}
    assert [r["name"] for r in body["categories"]] == ["美食", "数码"]
    assert (metrics(cats["美食"]["o2o"]), metrics(cats["美食"]["goods"])) == (FOOD_O2O, FOOD_GOODS)
    # O6 (数码 O2O) was placed before the window: no O2O orders in 数码.
    assert (metrics(cats["数码"]["o2o"]), metrics(cats["数码"]["goods"])) == (
        ZERO_SERVICE,
        DIGITAL_GOODS,
    )
    assert [(r["id"], r["name"]) for r in body["merchants"]] == [
        (world.b.id, "乙书店"),  # GMV 102000
        (world.a.id, "甲火锅"),  # GMV 46000
    ]
    b, a = body["merchants"]
    assert (metrics(a["o2o"]), metrics(a["goods"])) == (FOOD_O2O, FOOD_GOODS)
    assert (metrics(b["o2o"]), metrics(b["goods"])) == (ZERO_SERVICE, DIGITAL_GOODS)
    assert (metrics(body["total"]["o2o"]), metrics(body["total"]["goods"])) == (FOOD_O2O, ALL_GOODS)
    assert body["total"]["id"] is None and body["min_sample"] == service.MIN_SAMPLE
    # Far too few orders for a verdict with the default threshold.
    assert cats["美食"]["reading"] == (
        "美食：样本不足——O2O 3 单、电商 1 单已支付（每种模式至少 30 单才比较），暂不下结论"
    )


def test_models_report_drills_into_a_category(api: Any, world: Any, history: History) -> None:
    food = history.ids["food"]
    body = get_json(api, world, f"/api/v1/admin/reports/models?{WINDOW}&category_id={food}")
    assert body["category_id"] == food
    rows = {r["name"]: r for r in body["categories"]}
    # The child 火锅 (L1: O1 O2 O8), then the lines directly in 美食 (L2: O3 O4).
    assert [r["name"] for r in body["categories"]] == ["火锅", "美食（本类目）"]
    assert (metrics(rows["火锅"]["o2o"]), metrics(rows["火锅"]["goods"])) == (FOOD_O2O, ZERO_GOODS)
    assert (metrics(rows["美食（本类目）"]["o2o"]), metrics(rows["美食（本类目）"]["goods"])) == (
        ZERO_SERVICE,
        FOOD_GOODS,
    )
    assert [r["id"] for r in body["merchants"]] == [world.a.id]  # B sells nothing in 美食
    assert (metrics(body["total"]["o2o"]), metrics(body["total"]["goods"])) == (
        FOOD_O2O,
        FOOD_GOODS,
    )
    digital = history.ids["digital"]
    body = get_json(api, world, f"/api/v1/admin/reports/models?{WINDOW}&category_id={digital}")
    rows = {r["name"]: r for r in body["categories"]}
    assert list(rows) == ["配件", "数码（本类目）"]
    # 配件: L5 of O7 only, refunded in full after receipt: commission 3% of 0.
    assert metrics(rows["配件"]["goods"]) == (
        1,
        1,
        1.0,
        2000,
        2000,
        2000,
        1.0,
        1,
        0,
        0.0,
        0,
        0,
        0,
        None,
        1,
        1,
        1.0,
        0,
    )
    # 数码 itself: L3 of O5 (refunded, never shipped) and O7 (received): 3% of 50000.
    assert metrics(rows["数码（本类目）"]["goods"]) == (
        2,
        2,
        1.0,
        100000,
        50000,
        50000,
        0.5,
        2,
        0,
        0.0,
        0,
        0,
        0,
        None,
        1,
        1,
        1.0,
        1500,
    )
    # O7 is in both rows but once in the total.
    assert metrics(body["total"]["goods"]) == DIGITAL_GOODS
    hotpot = history.ids["hotpot"]
    body = get_json(api, world, f"/api/v1/admin/reports/models?{WINDOW}&category_id={hotpot}")
    assert [r["name"] for r in body["categories"]] == ["火锅（本类目）"]
    assert metrics(body["categories"][0]["o2o"]) == FOOD_O2O


def test_models_report_for_one_merchant(api: Any, world: Any, history: History) -> None:
    body = get_json(api, world, f"/api/v1/admin/reports/models?{WINDOW}&merchant_id={world.b.id}")
    cats = {r["name"]: r for r in body["categories"]}
    assert metrics(cats["美食"]["goods"]) == ZERO_GOODS
    assert metrics(cats["数码"]["goods"]) == DIGITAL_GOODS
    assert [r["id"] for r in body["merchants"]] == [world.b.id]
    assert metrics(body["total"]["goods"]) == DIGITAL_GOODS
    assert metrics(body["total"]["o2o"]) == ZERO_SERVICE


def test_the_reading_cites_the_deciding_numbers(world: Any, history: History) -> None:
    with world.db.transaction(readonly=True) as s:
        report = service.models_report(
            s, make_window(date(2026, 3, 1), date(2026, 3, 2)), min_sample=1
        )
    cats = {r.name: r for r in report.categories}
    # 美食: O2O wins GMV (40000 vs 6000 = 6.7×), commission (1200 vs 360 = 3.3×) and repeat
    # purchases (100% vs 0%); e-commerce wins fulfilment (received 1/1 vs redeemed 2/3) and
    # refunds (0% vs 25%).
    assert cats["美食"].reading == (
        "美食：O2O 更适合——GMV 是电商的 6.7 倍，佣金是电商的 3.3 倍，复购率 100% 高于电商的 0%；"
        "但电商收货率 100% 高于 O2O 核销率 67%"
    )
    # 数码 has no O2O orders in the window.
    assert cats["数码"].reading == (
        "数码：只有电商有足够数据（2 单，GMV ¥1020.00，收货率 100%，退款率 51%）；"
        "O2O 样本不足（0 单），无法比较"
    )


def test_reading_when_models_are_even_or_close() -> None:
    def m(kind: str, **f: int) -> Any:
        base = dict(
            orders=40,
            paid_orders=40,
            gmv_fen=100000,
            refunded_fen=1000,
            buyers=30,
            repeat_buyers=3,
            vouchers_issued=40,
            vouchers_redeemed=36,
            vouchers_refunded=0,
            shipped_orders=40,
            received_orders=36,
            commission_fen=5000,
        )
        base.update(f)
        return service._metrics(kind, service._ModelCounts(**base))

    assert service.reading("丽人", m("service"), m("goods")) == (
        "丽人：两种模式表现相近（GMV、履约率、退款率、复购率差距都不明显）"
    )
    # O2O refunds 1% against 10%; e-commerce buyers come back 40% against 10%: one point each.
    assert service.reading(
        "丽人", m("service"), m("goods", refunded_fen=10000, repeat_buyers=12)
    ) == ("丽人：两种模式各有所长——O2O：退款率 1% 低于电商的 10%；电商：复购率 40% 高于 O2O 的 10%")
    # Nothing sold through O2O: its GMV and commission are 0.
    assert service.reading(
        "丽人", m("service", gmv_fen=0, refunded_fen=0, commission_fen=0), m("goods")
    ) == ("丽人：电商更适合——GMV ¥1000.00，O2O 为 0，佣金 ¥50.00，O2O 为 0")
    # The brief's example: 3.2× the GMV, more vouchers used than parcels received, fewer refunds.
    assert service.reading(
        "美食",
        m("service", gmv_fen=320000, vouchers_redeemed=35, refunded_fen=12800),
        m("goods", refunded_fen=11000, received_orders=28),
    ) == (
        "美食：O2O 更适合——GMV 是电商的 3.2 倍，核销率 88% 高于电商收货率 70%，"
        "退款率 4% 低于电商的 11%"
    )


def test_models_csv(api: Any, world: Any, history: History) -> None:
    r = api.get(f"/api/v1/admin/reports/models?{WINDOW}&format=csv", as_=world.tokens["operator"])
    assert r.status_code == 200, r.text
    assert r.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][:4] == ["范围", "ID", "名称", "模式"] and rows[0][-1] == "解读"
    # total (2 rows), 2 categories × 2, 2 merchants × 2
    assert len(rows) == 1 + 2 + 4 + 4
    food_o2o = next(x for x in rows if x[0] == "类目" and x[2] == "美食" and x[3] == "O2O")
    assert food_o2o[4:12] == ["3", "3", "100.00%", "400.00", "133.33", "100.00", "25.00%", "1"]
    assert food_o2o[17] == "66.67%" and food_o2o[21] == "12.00"


# --- a merchant's days, by hand ---------------------------------------------------------------

DAY_FIELDS = (
    "orders",
    "paid_orders",
    "gmv_fen",
    "vouchers_redeemed",
    "shipped_orders",
    "received_orders",
    "refunds",
    "refunded_fen",
    "earned_fen",
    "commission_fen",
    "net_fen",
)


def test_merchant_summary_by_hand(api: Any, world: Any, history: History) -> None:
    body = get_json(
        api, world, f"/api/v1/merchants/{world.b.id}/reports/summary?{WINDOW}", role="other_owner"
    )
    assert [d["day"] for d in body["days"]] == ["2026-03-01", "2026-03-02"]
    day1, day2 = ({f: d[f] for f in DAY_FIELDS} for d in body["days"])
    # 03-01: O7 placed; O6 (placed 02-28) paid at 00:10 CST and O7 paid: 8000 + 53000; O7 shipped;
    # V4 redeemed: earned 8000, 3% = 240.
    assert day1 == dict(
        orders=1,
        paid_orders=2,
        gmv_fen=61000,
        vouchers_redeemed=1,
        shipped_orders=1,
        received_orders=0,
        refunds=0,
        refunded_fen=0,
        earned_fen=8000,
        commission_fen=240,
        net_fen=7760,
    )
    # 03-02: O5 placed and paid (51000); O7 received: 53000 − 2000 refunded, commission 3% of
    # 50000 (L5 fully refunded); R3 2000. O5's refund succeeded 03-03 07:00 CST (outside).
    assert day2 == dict(
        orders=1,
        paid_orders=1,
        gmv_fen=51000,
        vouchers_redeemed=0,
        shipped_orders=0,
        received_orders=1,
        refunds=1,
        refunded_fen=2000,
        earned_fen=51000,
        commission_fen=1500,
        net_fen=49500,
    )
    total = {f: body["total"][f] for f in DAY_FIELDS}
    assert total == dict(
        orders=2,
        paid_orders=3,
        gmv_fen=112000,
        vouchers_redeemed=1,
        shipped_orders=1,
        received_orders=1,
        refunds=1,
        refunded_fen=2000,
        earned_fen=59000,
        commission_fen=1740,
        net_fen=57260,
    )
    assert body["total"]["day"] is None and body["merchant_name"] == "乙书店"

    body = get_json(
        api, world, f"/api/v1/merchants/{world.a.id}/reports/summary?{WINDOW}", role="manager"
    )
    day1, day2 = ({f: d[f] for f in DAY_FIELDS} for d in body["days"])
    # 03-01: O1 O3 O4 O8 placed; O1 O3 O8 paid (36000); O3 shipped; V1 V5 redeemed (6% each).
    assert day1 == dict(
        orders=4,
        paid_orders=3,
        gmv_fen=36000,
        vouchers_redeemed=2,
        shipped_orders=1,
        received_orders=0,
        refunds=0,
        refunded_fen=0,
        earned_fen=20000,
        commission_fen=1200,
        net_fen=18800,
    )
    # 03-02: O2 placed and paid; O3 received (6000, 6% = 360); R1 10000.
    assert day2 == dict(
        orders=1,
        paid_orders=1,
        gmv_fen=10000,
        vouchers_redeemed=0,
        shipped_orders=0,
        received_orders=1,
        refunds=1,
        refunded_fen=10000,
        earned_fen=6000,
        commission_fen=360,
        net_fen=5640,
    )


def test_merchant_summary_days_are_china_days(api: Any, world: Any, history: History) -> None:
    # 03-03 alone: O5's refund (07:00 CST = 03-02 23:00 UTC) belongs here.
    body = get_json(
        api,
        world,
        f"/api/v1/merchants/{world.b.id}/reports/summary?from=2026-03-03&to=2026-03-03",
        role="other_owner",
    )
    assert [(d["day"], d["refunds"], d["refunded_fen"]) for d in body["days"]] == [
        ("2026-03-03", 1, 51000)
    ]
    # 02-28 alone: O6 placed at 23:00 CST; its payment at 00:10 CST on 03-01 is not here.
    body = get_json(
        api,
        world,
        f"/api/v1/merchants/{world.b.id}/reports/summary?from=2026-02-28&to=2026-02-28",
        role="other_owner",
    )
    assert [(d["orders"], d["paid_orders"]) for d in body["days"]] == [(1, 0)]


def test_merchant_summary_csv(api: Any, world: Any, history: History) -> None:
    r = api.get(
        f"/api/v1/merchants/{world.b.id}/reports/summary?{WINDOW}&format=csv",
        as_=world.tokens["other_owner"],
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0] == list(csv_export.MERCHANT_HEADERS)
    assert rows[1] == [
        "2026-03-01",
        "1",
        "2",
        "610.00",
        "1",
        "1",
        "0",
        "0",
        "0.00",
        "80.00",
        "2.40",
        "77.60",
    ]
    assert rows[3] == [
        "合计",
        "2",
        "3",
        "1120.00",
        "1",
        "1",
        "1",
        "1",
        "20.00",
        "590.00",
        "17.40",
        "572.60",
    ]


def test_merchant_summary_is_for_its_managers_only(api: Any, world: Any) -> None:
    url = f"/api/v1/merchants/{world.a.id}/reports/summary"
    for role, status in (
        ("owner", 200),
        ("manager", 200),
        ("clerk", 403),
        ("other_owner", 403),
        ("consumer", 403),
        ("operator", 403),
    ):
        assert api.get(url, as_=world.tokens[role]).status_code == status, role
    assert api.get(url).status_code == 401


# --- CSV details ------------------------------------------------------------------------------


def test_csv_cells() -> None:
    assert csv_export.yuan(0) == "0.00"
    assert csv_export.yuan(5) == "0.05"
    assert csv_export.yuan(123456) == "1234.56"
    assert csv_export.yuan(-250) == "-2.50"
    assert csv_export.percent(Decimal("0.8571")) == "85.71%"
    assert csv_export.percent(Decimal("1.5000")) == "150.00%"
    assert csv_export.percent(None) == ""
    assert csv_export.text("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert csv_export.text("-1") == "'-1"
    assert csv_export.text("美食") == "美食"


def test_empty_reports(api: Any, world: Any) -> None:
    body = get_json(api, world, "/api/v1/admin/reports/channels")
    assert [r["channel_code"] for r in body["rows"]] == [""]
    assert body["total"]["orders"] == 0 and body["total"]["paid_rate"] is None
    body = get_json(api, world, "/api/v1/admin/reports/models")
    assert body["merchants"] == [] and body["total"]["o2o"]["orders"] == 0
    assert "样本不足" in body["total"]["reading"]
    body = get_json(api, world, f"/api/v1/merchants/{world.a.id}/reports/summary", role="owner")
    assert len(body["days"]) == service.DEFAULT_SPAN_DAYS
    assert body["total"]["net_fen"] == 0


# --- stored facts == live computation ---------------------------------------------------------


def _all_reports(db: Any, history: History) -> list[Any]:
    """Every report over the history, as plain data (``generated_at`` left out)."""
    window = make_window(date(2026, 2, 20), date(2026, 3, 10))
    out = []
    with db.transaction(readonly=True) as s:
        reports = [
            service.channels_report(s, window),
            service.models_report(s, window, min_sample=1),
            service.models_report(s, window, category_id=history.ids["food"], min_sample=1),
            service.models_report(s, window, merchant_id=history.ids["merchant_b"], min_sample=1),
            service.models_report(
                s, window, category_id=history.ids["digital"], merchant_id=history.ids["merchant_b"]
            ),
        ]
    for report in reports:
        out.append(report.model_dump(mode="json", exclude={"generated_at"}))
    return out


def _facts_state(db: Any) -> tuple[int, int]:
    with db.transaction(readonly=True) as s:
        return (
            facts.dirty_count(s),
            int(s.scalar(select(func.count()).select_from(ReportOrderFact)) or 0),
        )


def _assert_stored_equals_live(db: Any, history: History) -> list[Any]:
    """The reports now (stored facts + dirty orders live) == after the job stored everything
    == with every order computed live."""
    mixed = _all_reports(db, history)
    facts.refresh_all(db, batch=3)  # small batches: several job runs
    assert _facts_state(db)[0] == 0
    stored = _all_reports(db, history)
    with db.transaction() as s:
        facts.mark_all_dirty(s)
    assert _facts_state(db)[1] == 0
    live = _all_reports(db, history)
    assert mixed == stored == live
    facts.refresh_all(db)
    return live


def test_stored_facts_equal_the_live_computation(world: Any, history: History) -> None:
    db = world.db
    history.ids["merchant_b"] = world.b.id
    # The history was written after the migration: every order is dirty, nothing stored.
    assert _facts_state(db) == (8, 0)
    before = _assert_stored_equals_live(db, history)
    assert _facts_state(db) == (0, 9)  # O7 has lines in two leaf categories (数码, 配件)

    # Changes made by any code path mark the order and drop its facts in the same transaction.
    with db.transaction() as s:
        v3 = s.scalar(select(Voucher).where(Voucher.order_id == history.ids["O2"]))
        v3.status, v3.redeemed_at = "redeemed", cst(3, 3, 12)
    assert _facts_state(db) == (1, 8)
    with db.transaction() as s:
        s.get(Order, history.ids["O3"]).refunded_fen = 3000
        line = s.scalar(select(OrderLine).where(OrderLine.order_id == history.ids["O3"]))
        line.refunded_fen = 3000
    assert _facts_state(db)[0] == 2
    after = _assert_stored_equals_live(db, history)
    assert after != before

    # A listing moved to another category: its orders are marked (O3 and O4 for L2).
    with db.transaction() as s:
        s.get(Listing, history.ids["L2"]).category_id = history.ids["digital"]
    assert _facts_state(db)[0] == 2
    _assert_stored_equals_live(db, history)

    # A category under a new parent (火锅 under 数码): every order is marked.
    with db.transaction() as s:
        s.get(Category, history.ids["hotpot"]).parent_id = history.ids["digital"]
    assert _facts_state(db) == (8, 0)
    moved = _assert_stored_equals_live(db, history)
    digital = next(r for r in moved[1]["categories"] if r["name"] == "数码")
    assert digital["o2o"]["orders"] == 4  # O1 O2 O8 (火锅) + O6 (in this wider window)

    # A change that leaves the figures alone still leaves them right.
    with db.transaction() as s:
        s.get(Order, history.ids["O5"]).note = "备注"
    assert _facts_state(db)[0] == 1
    _assert_stored_equals_live(db, history)


def test_new_orders_are_counted_before_the_job_runs(api: Any, world: Any, history: History) -> None:
    facts.refresh_all(world.db)
    with world.db.transaction() as s:
        c = _checkout(s, history.ids["u2"], "wx", cst(3, 2, 8), 10000, cst(3, 2, 8, 1))
        _order(
            s,
            "O9",
            history,
            checkout=c,
            merchant_id=world.a.id,
            user_id=history.ids["u2"],
            kind="service",
            channel="wx",
            created=cst(3, 2, 8),
            paid=cst(3, 2, 8, 1),
            lines=[("L1", 1, 10000, 600, 0)],
        )
    assert _facts_state(world.db)[0] == 1
    body = get_json(api, world, f"/api/v1/admin/reports/channels?{WINDOW}")
    wx = next(r for r in body["rows"] if r["channel_code"] == "wx")
    assert (wx["orders"], wx["paid_orders"], wx["gmv_fen"]) == (5, 5, 99000)


def test_the_job_stores_facts(world: Any, db: Any, settings: Any, history: History) -> None:
    from o2o import worker

    assert "report_facts" in {j.name for j in worker.load_jobs()}
    assert report_jobs.report_facts(db, settings) == 8
    assert report_jobs.report_facts(db, settings) == 0
    with db.transaction(readonly=True) as s:
        rows = {(f.order_id, f.category_id): f for f in s.scalars(select(ReportOrderFact))}
    o7 = [rows[k] for k in rows if k[0] == history.ids["O7"]]
    # L3 in 数码 (the primary row: the smaller category id), L5 in 配件; both under 数码.
    ids = history.ids
    assert sorted(
        (
            f.category_id,
            f.top_category_id,
            f.is_primary,
            f.is_top_primary,
            f.amount_fen,
            f.refunded_fen,
            f.order_payable_fen,
            f.order_refunded_fen,
            f.commission_fen,
            f.received,
            f.consumed,
        )
        for f in o7
    ) == [
        (ids["digital"], ids["digital"], 1, 1, 50000, 0, 53000, 2000, 1500, 1, 1),
        (ids["accessory"], ids["digital"], 0, 0, 2000, 2000, 0, 0, 0, 1, 1),
    ]
    o1 = rows[(history.ids["O1"], history.ids["hotpot"])]
    assert (
        o1.top_category_id,
        o1.vouchers_issued,
        o1.vouchers_redeemed,
        o1.vouchers_refunded,
        o1.commission_fen,
        o1.consumed,
    ) == (history.ids["food"], 2, 1, 1, 600, 1)


def test_the_triggers_exist_at_head(db: Any) -> None:
    """A later SQLite batch rebuild of one of these tables would drop them silently."""
    if db.dialect == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'report_%'"
    else:
        query = "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'report_%'"
    with db.engine.connect() as conn:
        names = {row[0] for row in conn.execute(text(query))}
    assert names == set(MIGRATION.TRIGGERS)


def _mark_of(db: Any, order_id: int) -> tuple[bool, int]:
    """(is the order dirty, how many stored fact rows it has)."""
    with db.transaction(readonly=True) as s:
        dirty = s.get(ReportDirtyOrder, order_id) is not None
        stored = s.scalar(
            select(func.count())
            .select_from(ReportOrderFact)
            .where(ReportOrderFact.order_id == order_id)
        )
    return dirty, int(stored or 0)


def test_a_change_made_while_the_job_runs_waits_and_marks_again(
    world: Any, history: History, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has one writer: the job and a change never overlap")
    db, o2 = world.db, history.ids["O2"]
    history.ids["merchant_b"] = world.b.id
    facts.refresh_all(db)
    with db.transaction() as s:
        s.get(Order, o2).note = "改"
    assert _mark_of(db, o2) == (True, 0)
    job = db.session()
    job.begin()
    assert facts.refresh(job) == 1  # O2 claimed, its facts written, not committed yet
    changed = threading.Event()

    def redeem_o2() -> None:
        with db.transaction() as s:
            v = s.scalar(select(Voucher).where(Voucher.order_id == o2))
            v.status, v.redeemed_at = "redeemed", cst(3, 2, 21)
        changed.set()

    thread = threading.Thread(target=redeem_o2)
    thread.start()
    assert not changed.wait(1.5), "the change must wait for the job's lock on the mark"
    job.commit()
    job.close()
    thread.join(30)
    assert changed.is_set()
    # The job's facts (from before the redemption) were dropped and O2 marked again.
    assert _mark_of(db, o2) == (True, 0)
    reports = _assert_stored_equals_live(db, history)
    wx = next(r for r in reports[0]["rows"] if r["channel_code"] == "wx")
    assert wx["vouchers_redeemed"] == 2


def test_the_job_skips_orders_being_changed(world: Any, history: History, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has one writer: the job and a change never overlap")
    db, o8 = world.db, history.ids["O8"]
    history.ids["merchant_b"] = world.b.id
    facts.refresh_all(db)
    app = db.session()
    app.begin()
    app.get(Order, o8).note = "进行中"
    app.flush()  # the trigger has marked O8 and holds the mark
    started = time.perf_counter()
    with db.transaction() as s:
        assert facts.refresh(s) == 0  # skipped, not waited for
    assert time.perf_counter() - started < 5
    app.commit()
    app.close()
    assert _mark_of(db, o8) == (True, 0)
    _assert_stored_equals_live(db, history)
