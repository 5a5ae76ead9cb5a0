"""Reports over a year of history: channels, models ("做O2O还是做平台?") and a merchant's summary.

    .venv/bin/python benchmarks/reports.py                      # 1,000,000 orders, both databases
    .venv/bin/python benchmarks/reports.py --orders 100000      # a quick run
    .venv/bin/python benchmarks/reports.py --no-pg              # SQLite only

PostgreSQL runs when ``--pg URL`` or ``O2O_TEST_POSTGRES_URL`` names a server where a database may
be created (it is dropped afterwards); SQLite runs in a temporary file.

What it does, per database (fresh, migrated):
1. loads the history in bulk — PostgreSQL through ``COPY`` (psycopg), SQLite through
   ``executemany`` in big batches: 200 merchants in 6 top-level categories (18 leaf categories,
   20 listings each, services and goods in proportions that differ by category), 20 channels,
   ``--orders`` orders spread over the last 365 days (one checkout and payment each, ~20% with
   two lines), their vouchers (one per unit of a service), refunds (voucher refunds, goods refunds
   before shipping, after-sales refunds of one line), and ``--visits`` visits (default 3 per
   order) by a pool of anonymous visitors; then ``ANALYZE`` (what autovacuum or
   ``PRAGMA optimize`` keep up to date);
2. times each report through the API (in-process ASGI client, operator or owner token, JSON and
   CSV) for the last 30 days and the last 365 days: the median of ``--repeat`` runs after one
   warm-up. Targets: 30 days ≤ 1 s on PostgreSQL and ≤ 3 s on SQLite; a year ≤ 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from o2o import migrate
from o2o.db import Database
from o2o.money import split_proportionally
from o2o.reports import facts
from o2o.timeutil import CHINA_TZ

CHUNK = 50_000
TOPS: list[tuple[str, int, float]] = [
    # name, commission (basis points), share of service listings in the category
    ("美食", 600, 0.9),
    ("休闲娱乐", 800, 0.95),
    ("丽人", 700, 0.85),
    ("酒店旅游", 500, 0.7),
    ("数码家电", 300, 0.05),
    ("食品生鲜", 400, 0.3),
]
CHANNEL_KINDS = ("superapp_entry", "partner_site", "poster_qr", "search_ad", "other")
LISTINGS_PER_MERCHANT = 20
DAY = 86_400.0


_DAYS: dict[int, str] = {}


def _stamp(value: float) -> str:
    """UTC ``YYYY-MM-DD HH:MM:SS.ffffff`` (how SQLAlchemy stores datetimes in SQLite), fast:
    the date part is cached per day."""
    seconds = int(value)
    day, rest = divmod(seconds, 86_400)
    prefix = _DAYS.get(day)
    if prefix is None:
        prefix = _DAYS[day] = datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m-%d")
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    return f"{prefix} {hours:02d}:{minutes:02d}:{secs:02d}.{int((value - seconds) * 1e6):06d}"


# --- bulk writers ---------------------------------------------------------------------------


class SqliteWriter:
    """executemany in big batches, one transaction, foreign keys checked by construction."""

    def __init__(self, url: str) -> None:
        import sqlite3

        self.conn = sqlite3.connect(make_url(url).database, isolation_level=None)
        self.conn.execute("PRAGMA foreign_keys=OFF")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute("PRAGMA cache_size=-400000")
        self.conn.execute("BEGIN")

    def ts(self, value: float) -> str:
        return _stamp(value)

    def write(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" * len(columns))
        self.conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def finish(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.execute("ANALYZE")
        self.conn.close()


class PgWriter:
    """COPY FROM STDIN through psycopg; sequences moved past the explicit ids at the end."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
        self.tables: set[str] = set()

    def ts(self, value: float) -> str:
        return _stamp(value) + "+00"

    def write(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        self.tables.add(table)
        statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with self.conn.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def finish(self) -> None:
        with self.conn.cursor() as cur:
            for table in sorted(self.tables):
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" (SELECT COALESCE(MAX(id), 1) FROM {table}))"
                )
        self.conn.commit()
        self.conn.autocommit = True
        self.conn.execute("ANALYZE")
        self.conn.close()


# --- the history ----------------------------------------------------------------------------


def _weights(n: int, rng: random.Random, alpha: float = 1.2) -> list[float]:
    """Uneven sizes (a few big merchants / channels, many small ones)."""
    return [rng.paretovariate(alpha) for _ in range(n)]


def load(url: str, *, orders: int, visits: int, merchants: int, channels: int, seed: int) -> dict:
    """Fill a migrated database; returns what the timing runs need."""
    rng = random.Random(seed)
    writer: SqliteWriter | PgWriter = (
        SqliteWriter(url) if url.startswith("sqlite") else PgWriter(url)
    )
    ts = writer.ts
    now = time.time()
    start = now - 365 * DAY
    created = ts(start - DAY)

    users = max(1_000, orders // 10)
    writer.write(
        "users",
        ("id", "phone", "name", "password_hash", "is_admin", "created_at"),
        [(i, f"1{i:010d}", f"用户{i}", "x", i == 1, created) for i in range(1, users + 1)],
    )

    categories: list[tuple[Any, ...]] = []
    leaves: dict[int, list[tuple[int, int]]] = {}  # top index → [(leaf id, commission)]
    next_id = 1
    for t, (name, bp, _share) in enumerate(TOPS):
        top_id = next_id
        categories.append((top_id, None, name, bp, t, ""))
        next_id += 1
        for k in range(3):
            categories.append((next_id, top_id, f"{name}{k + 1}", bp, k, ""))
            leaves.setdefault(t, []).append((next_id, bp))
            next_id += 1
    writer.write(
        "categories", ("id", "parent_id", "name", "commission_bp", "sort_order", "icon"), categories
    )

    merchant_top = [rng.randrange(len(TOPS)) for _ in range(merchants)]
    writer.write(
        "merchants",
        (
            "id",
            "name",
            "contact_phone",
            "license_no",
            "category_id",
            "description",
            "status",
            "status_reason",
            "created_at",
        ),
        [
            (
                m + 1,
                f"商户{m + 1}",
                "13700000000",
                f"9144{m:010d}",
                leaves[merchant_top[m]][0][0],
                "",
                "approved",
                "",
                created,
            )
            for m in range(merchants)
        ],
    )
    writer.write(
        "stores",
        (
            "id",
            "merchant_id",
            "name",
            "address",
            "city",
            "district",
            "lat",
            "lng",
            "phone",
            "opening_hours",
            "is_active",
            "created_at",
        ),
        [
            (
                m + 1,
                m + 1,
                f"门店{m + 1}",
                "深南大道1号",
                "深圳市",
                "南山区",
                22.5,
                113.9,
                "",
                "",
                True,
                created,
            )
            for m in range(merchants)
        ],
    )
    # Listings: (id, kind, price, shipping fee, commission) per merchant.
    listing_rows: list[tuple[Any, ...]] = []
    by_merchant: dict[int, dict[str, list[tuple[int, int, int, int]]]] = {}
    lid = 0
    for m in range(merchants):
        top = merchant_top[m]
        share = TOPS[top][2]
        mine: dict[str, list[tuple[int, int, int, int]]] = {"service": [], "goods": []}
        for _ in range(LISTINGS_PER_MERCHANT):
            lid += 1
            leaf, bp = rng.choice(leaves[top])
            kind = "service" if rng.random() < share else "goods"
            price = (
                rng.randrange(2_000, 30_000) if kind == "service" else rng.randrange(990, 80_000)
            )
            fee = 0 if kind == "service" or rng.random() < 0.6 else rng.choice((600, 800, 1200))
            mine[kind].append((lid, price, fee, bp))
            listing_rows.append(
                (
                    lid,
                    m + 1,
                    kind,
                    f"商品{lid}",
                    "",
                    leaf,
                    "[]",
                    "published",
                    price,
                    price,
                    fee,
                    True,
                    True,
                    False,
                    0,
                    0,
                    0,
                    created,
                    created,
                )
            )
        by_merchant[m + 1] = mine
    writer.write(
        "listings",
        (
            "id",
            "merchant_id",
            "kind",
            "title",
            "description",
            "category_id",
            "images",
            "status",
            "price_fen",
            "original_price_fen",
            "shipping_fee_fen",
            "refund_anytime",
            "auto_refund_on_expiry",
            "requires_slot",
            "sales_count",
            "rating_sum",
            "rating_count",
            "created_at",
            "updated_at",
        ),
        listing_rows,
    )

    codes = [f"ch{c + 1:02d}" for c in range(channels)]
    writer.write(
        "channels",
        ("id", "code", "name", "kind", "is_active", "created_at", "updated_at"),
        [
            (
                c + 1,
                code,
                f"渠道{c + 1}",
                CHANNEL_KINDS[c % len(CHANNEL_KINDS)],
                True,
                created,
                created,
            )
            for c, code in enumerate(codes)
        ],
    )
    channel_weights = _weights(channels, rng)

    # Visits: a pool of visitors, each coming back now and then, through uneven channels.
    pool = max(1_000, visits // 6)
    chunks = max(1, visits // CHUNK)
    vid = 0
    for k in range(chunks):
        n = visits // chunks + (1 if k < visits % chunks else 0)
        lo = start + (now - start) * k / chunks
        hi = start + (now - start) * (k + 1) / chunks
        times = sorted(rng.uniform(lo, hi) for _ in range(n))
        picks = rng.choices(range(1, channels + 1), weights=channel_weights, k=n)
        rows = []
        for at, ch in zip(times, picks, strict=True):
            vid += 1
            rows.append((vid, ch, f"vis{rng.randrange(pool):09d}", None, "/", ts(at)))
        writer.write(
            "visits", ("id", "channel_id", "visitor_id", "user_id", "path", "created_at"), rows
        )

    merchant_weights = _weights(merchants, rng)
    merchant_ids = list(range(1, merchants + 1))
    chunks = max(1, orders // CHUNK)
    oid = line_id = voucher_id = refund_id = 0
    for k in range(chunks):
        n = orders // chunks + (1 if k < orders % chunks else 0)
        lo = start + (now - start) * k / chunks
        hi = start + (now - start) * (k + 1) / chunks
        times = sorted(rng.uniform(lo, hi) for _ in range(n))
        picks = rng.choices(merchant_ids, weights=merchant_weights, k=n)
        checkouts, payments, order_rows, lines, vouchers, refunds = [], [], [], [], [], []
        for at, m in zip(times, picks, strict=True):
            oid += 1
            user = rng.randrange(2, users + 1)
            mine = by_merchant[m]
            kind = (
                "service"
                if mine["service"]
                and (
                    not mine["goods"] or rng.random() < len(mine["service"]) / LISTINGS_PER_MERCHANT
                )
                else "goods"
            )
            chosen = [rng.choice(mine[kind])]
            if rng.random() < 0.2 and len(mine[kind]) > 1:
                other = rng.choice(mine[kind])
                if other[0] != chosen[0][0]:
                    chosen.append(other)
            channel = rng.choices(codes, weights=channel_weights)[0] if rng.random() < 0.65 else ""
            my_lines = []  # [line id, listing, qty, amount, bp, refunded]
            for listing, price, _fee, bp in chosen:
                line_id += 1
                qty = (
                    rng.choices((1, 2, 3), (70, 20, 10))[0]
                    if kind == "service"
                    else (rng.choices((1, 2), (85, 15))[0])
                )
                my_lines.append([line_id, listing, qty, price * qty, bp, 0, price])
            items = sum(x[3] for x in my_lines)
            shipping = max(c[2] for c in chosen) if kind == "goods" else 0
            payable = items + shipping
            paid = rng.random() < 0.9
            paid_at = at + rng.uniform(5, 600) if paid else None
            status = "paid" if paid else "cancelled"
            shipped_at = completed_at = refunded_at = None
            refunded = 0
            refund_parts: list[tuple[float, int, list[dict[str, int]], list[str]]] = []
            if paid and kind == "service":
                unit_amounts = {x[0]: split_proportionally(x[3], [1] * x[2]) for x in my_lines}
                states = []
                refunded_units: list[tuple[int, int, str]] = []
                last_at = 0.0
                for x in my_lines:
                    for unit in range(1, x[2] + 1):
                        voucher_id += 1
                        code = f"{voucher_id:012d}"
                        amount = unit_amounts[x[0]][unit - 1]
                        r = rng.random()
                        state, redeemed, vref, expired = "unused", None, None, None
                        valid_until = paid_at + 90 * DAY
                        if r < 0.70:
                            when = paid_at + rng.uniform(3_600, 30 * DAY)
                            if when <= now:
                                state, redeemed = "redeemed", when
                        elif r < 0.80:
                            when = paid_at + rng.uniform(3_600, 10 * DAY)
                            if when <= now:
                                state, vref = "refunded", when
                        elif r < 0.90 and valid_until <= now:
                            state, expired = "expired", valid_until
                        states.append(state)
                        if state == "refunded":
                            refunded_units.append((x[0], amount, code))
                            x[5] += amount
                            last_at = max(last_at, vref)
                        if redeemed:
                            last_at = max(last_at, redeemed)
                        vouchers.append(
                            (
                                voucher_id,
                                code,
                                oid,
                                x[0],
                                unit,
                                x[1],
                                m,
                                user,
                                "[]",
                                True,
                                True,
                                amount,
                                ts(paid_at),
                                ts(valid_until),
                                state,
                                ts(redeemed) if redeemed else None,
                                m if redeemed else None,
                                ts(vref) if vref else None,
                                ts(expired) if expired else None,
                                ts(paid_at),
                                ts(paid_at),
                            )
                        )
                if refunded_units:
                    per_line: dict[int, int] = {}
                    for lid_, amount, _code in refunded_units:
                        per_line[lid_] = per_line.get(lid_, 0) + amount
                    total = sum(per_line.values())
                    refunded = total
                    refund_parts.append(
                        (
                            last_at,
                            total,
                            [{"line_id": a, "amount_fen": b} for a, b in per_line.items()],
                            [c for _a, _b, c in refunded_units],
                        )
                    )
                if all(s == "refunded" for s in states):
                    status, refunded_at = "refunded", last_at
                elif "redeemed" in states and "unused" not in states:
                    status, completed_at = "completed", last_at
            elif paid:
                r = rng.random()
                if r < 0.05:
                    when = paid_at + rng.uniform(3_600, 2 * DAY)
                    if when <= now:
                        for x in my_lines:
                            x[5] = x[3]
                        refunded = payable
                        refund_parts.append(
                            (
                                when,
                                payable,
                                [{"line_id": x[0], "amount_fen": x[3]} for x in my_lines],
                                [],
                            )
                        )
                        status, refunded_at = "refunded", when
                elif r < 0.88:
                    when = paid_at + rng.uniform(7_200, 2 * DAY)
                    if when <= now:
                        status, shipped_at = "shipped", when
                        done = when + rng.uniform(DAY, 7 * DAY)
                        if done <= now:
                            status, completed_at = "completed", done
                            back = done + 2 * DAY
                            if len(my_lines) > 1 and rng.random() < 0.1 and back <= now:
                                x = my_lines[0]
                                x[5] = x[3]
                                refunded = x[3]
                                refund_parts.append(
                                    (back, x[3], [{"line_id": x[0], "amount_fen": x[3]}], [])
                                )
            for when, amount, parts, vcodes in refund_parts:
                refund_id += 1
                refunds.append(
                    (
                        refund_id,
                        f"R{refund_id:015d}",
                        oid,
                        oid,
                        "sandbox",
                        amount,
                        _json(parts),
                        _json(vcodes),
                        "",
                        "consumer",
                        "succeeded",
                        1,
                        "",
                        "",
                        ts(when),
                        ts(when),
                        ts(when),
                        ts(when),
                        ts(when),
                    )
                )
            stamp = ts(at)
            checkouts.append((oid, f"C{oid:015d}", user, payable, channel, stamp))
            payments.append(
                (
                    oid,
                    f"P{oid:015d}",
                    oid,
                    user,
                    payable,
                    "CNY",
                    "succeeded" if paid else "closed",
                    "sandbox" if paid else None,
                    "",
                    "",
                    "",
                    "",
                    ts(at + 900),
                    stamp,
                    stamp,
                    ts(paid_at) if paid else None,
                    None if paid else ts(at + 900),
                )
            )
            order_rows.append(
                (
                    oid,
                    f"O{oid:015d}",
                    oid,
                    oid,
                    user,
                    m,
                    kind,
                    status,
                    items,
                    shipping,
                    0,
                    payable,
                    refunded,
                    "",
                    channel,
                    "" if paid else "payment_timeout",
                    stamp,
                    stamp,
                    ts(paid_at) if paid else None,
                    None if paid else ts(at + 900),
                    ts(shipped_at) if shipped_at else None,
                    ts(completed_at) if completed_at else None,
                    ts(refunded_at) if refunded_at else None,
                )
            )
            for x in my_lines:
                lines.append((x[0], oid, x[1], f"商品{x[1]}", "", x[6], x[2], x[3], x[4], x[5]))
        writer.write(
            "checkouts",
            ("id", "checkout_no", "user_id", "total_fen", "channel", "created_at"),
            checkouts,
        )
        writer.write(
            "payments",
            (
                "id",
                "payment_no",
                "checkout_id",
                "user_id",
                "amount_fen",
                "currency",
                "status",
                "provider",
                "provider_txn_id",
                "resolution",
                "close_reason",
                "failure_reason",
                "expires_at",
                "created_at",
                "updated_at",
                "paid_at",
                "closed_at",
            ),
            payments,
        )
        writer.write(
            "orders",
            (
                "id",
                "order_no",
                "checkout_id",
                "payment_id",
                "user_id",
                "merchant_id",
                "kind",
                "status",
                "items_fen",
                "shipping_fee_fen",
                "discount_fen",
                "payable_fen",
                "refunded_fen",
                "note",
                "channel",
                "cancel_reason",
                "created_at",
                "updated_at",
                "paid_at",
                "cancelled_at",
                "shipped_at",
                "completed_at",
                "refunded_at",
            ),
            order_rows,
        )
        writer.write(
            "order_lines",
            (
                "id",
                "order_id",
                "listing_id",
                "title",
                "sku_name",
                "unit_price_fen",
                "quantity",
                "amount_fen",
                "commission_bp",
                "refunded_fen",
            ),
            lines,
        )
        writer.write(
            "vouchers",
            (
                "id",
                "code",
                "order_id",
                "order_line_id",
                "unit_no",
                "listing_id",
                "merchant_id",
                "user_id",
                "store_ids",
                "refund_anytime",
                "auto_refund_on_expiry",
                "amount_fen",
                "valid_from",
                "valid_until",
                "status",
                "redeemed_at",
                "redeemed_store_id",
                "refunded_at",
                "expired_at",
                "created_at",
                "updated_at",
            ),
            vouchers,
        )
        writer.write(
            "refunds",
            (
                "id",
                "refund_no",
                "order_id",
                "payment_id",
                "provider",
                "amount_fen",
                "lines",
                "voucher_codes",
                "reason",
                "initiator",
                "status",
                "attempts",
                "last_error",
                "provider_refund_id",
                "next_attempt_at",
                "created_at",
                "updated_at",
                "accepted_at",
                "succeeded_at",
            ),
            refunds,
        )
        print(f"  … {oid:,} orders", end="\r", flush=True)
    writer.finish()
    return {
        "orders": oid,
        "lines": line_id,
        "vouchers": voucher_id,
        "refunds": refund_id,
        "visits": vid,
        "users": users,
        "biggest_merchant": max(merchant_ids, key=lambda m: merchant_weights[m - 1]),
    }


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


# --- timing -----------------------------------------------------------------------------------


SECRET = "bench-secret-" + "r" * 40


def tokens(url: str, merchant_id: int) -> tuple[str, str]:
    """An operator and the owner of ``merchant_id`` (made here: the history has no staff)."""
    from o2o.accounts.flows import issue_api_token
    from o2o.accounts.models import User
    from o2o.db import Database
    from o2o.merchants.models import Membership

    db = Database.from_url(url)
    try:
        with db.transaction() as session:
            # Made once per database: a reused database (--reuse-*) already has them.
            operator = session.scalar(select(User).where(User.phone == "19900000001"))
            owner = session.scalar(select(User).where(User.phone == "19900000002"))
            if operator is None or owner is None:
                operator = User(phone="19900000001", name="运营", password_hash="x", is_admin=True)
                owner = User(phone="19900000002", name="店主", password_hash="x")
                session.add_all([operator, owner])
                session.flush()
            if not session.scalar(
                select(Membership.id).where(
                    Membership.user_id == owner.id, Membership.merchant_id == merchant_id
                )
            ):
                session.add(Membership(user_id=owner.id, merchant_id=merchant_id, role="owner"))
            ids = operator.id, owner.id
    finally:
        db.dispose()
    db = Database.from_url(url)
    try:
        return (
            issue_api_token(db, SECRET, ids[0], 24 * 3600),
            issue_api_token(db, SECRET, ids[1], 24 * 3600),
        )
    finally:
        db.dispose()


def time_reports(
    name: str, url: str, merchant_id: int, repeat: int, workdir: Path
) -> list[dict[str, Any]]:
    from fastapi.testclient import TestClient

    from o2o.app import create_app
    from o2o.config import Settings

    operator, owner = tokens(url, merchant_id)
    settings = Settings(
        database_url=url, secret_key=SECRET, demo=False, data_dir=workdir, embedded_worker=False
    )
    today = datetime.now(CHINA_TZ).date()
    results = []
    with TestClient(create_app(settings)) as client:
        for days in (30, 365):
            window = f"from={today - timedelta(days=days - 1)}&to={today}"
            for report, path, token in (
                ("channels", "/api/v1/admin/reports/channels", operator),
                ("models", "/api/v1/admin/reports/models", operator),
                ("merchant summary", f"/api/v1/merchants/{merchant_id}/reports/summary", owner),
            ):
                for fmt in ("json", "csv"):
                    url_ = f"{path}?{window}&format={fmt}"
                    headers = {"Authorization": f"Bearer {token}"}

                    def call(url_: str = url_, headers: dict[str, str] = headers) -> float:
                        t0 = time.perf_counter()
                        r = client.get(url_, headers=headers)
                        elapsed = time.perf_counter() - t0
                        assert r.status_code == 200, r.text[:500]
                        return elapsed

                    call()  # warm-up: caches, query plans
                    seconds = statistics.median(call() for _ in range(repeat))
                    target = (1.0 if name == "PostgreSQL" else 3.0) if days == 30 else 5.0
                    results.append(
                        {
                            "db": name,
                            "report": report,
                            "format": fmt,
                            "days": days,
                            "seconds": seconds,
                            "target": target,
                        }
                    )
                    print(
                        f"  {name:<10} {report:<17} {fmt:<4} {days:>3} days  {seconds:6.2f} s"
                        f"  (target ≤ {target:g} s)",
                        flush=True,
                    )
    return results


@contextmanager
def database(kind: str, args: argparse.Namespace, workdir: Path) -> Iterator[tuple[str, bool]]:
    """(url, needs loading): a fresh database, or the one named by --reuse-*."""
    if kind == "sqlite":
        if args.reuse_sqlite:
            yield f"sqlite:///{args.reuse_sqlite}", False
            return
        path = Path(args.keep_sqlite) if args.keep_sqlite else workdir / "reports.db"
        yield f"sqlite:///{path}", True
        return
    if args.reuse_pg:
        yield args.reuse_pg, False
        return
    name = f"o2o_reports_bench_{secrets.token_hex(4)}"
    admin = create_engine(
        args.pg.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(args.pg).set(database=name).render_as_string(hide_password=False), True
    finally:
        if not args.keep_pg:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        else:
            print(f"  kept PostgreSQL database {name}")
        admin.dispose()


def run(kind: str, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    name = "SQLite" if kind == "sqlite" else "PostgreSQL"
    with database(kind, args, workdir) as (url, fresh):
        biggest = args.merchant
        if fresh:
            print(f"\n== {name}: loading {args.orders:,} orders ==", flush=True)
            t0 = time.perf_counter()
            migrate.upgrade(url)
            info = load(
                url,
                orders=args.orders,
                visits=args.visits,
                merchants=args.merchants,
                channels=args.channels,
                seed=args.seed,
            )
            biggest = biggest or info["biggest_merchant"]
            print(
                f"  loaded {info['orders']:,} orders, {info['lines']:,} lines,"
                f" {info['vouchers']:,} vouchers, {info['refunds']:,} refunds,"
                f" {info['visits']:,} visits in {time.perf_counter() - t0:.0f} s",
                flush=True,
            )
        else:
            print(f"\n== {name}: reusing {url} ==", flush=True)
            migrate.upgrade(url)
        if not args.no_facts:
            refresh_facts(url)
        return time_reports(name, url, biggest or 1, args.repeat, workdir)


def refresh_facts(url: str) -> None:
    """What the worker's ``report_facts`` job keeps doing as orders change: the bulk load marked
    every order dirty (triggers), so without this every report computes all facts live."""
    db = Database.from_url(url)
    t0 = time.perf_counter()
    done = 0
    try:
        while True:
            with db.transaction() as session:
                moved = facts.refresh(session)
            done += moved
            if moved < facts.BATCH:
                break
    finally:
        db.dispose()
    print(
        f"  report facts stored for {done:,} orders in {time.perf_counter() - t0:.0f} s", flush=True
    )


def print_table(results: list[dict[str, Any]]) -> None:
    print("\n| database | report | format | window | seconds (median) | target |")
    print("|---|---|---|---:|---:|---|")
    for r in results:
        ok = "ok" if r["seconds"] <= r["target"] else "MISSED"
        print(
            f"| {r['db']} | {r['report']} | {r['format']} | {r['days']} days |"
            f" {r['seconds']:.2f} | ≤ {r['target']:g} s {ok} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--visits", type=int, help="default: 3 per order")
    parser.add_argument("--merchants", type=int, default=200)
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per report (median)")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument(
        "--pg",
        default=os.environ.get("O2O_TEST_POSTGRES_URL"),
        help="PostgreSQL server URL where a database may be created",
    )
    parser.add_argument(
        "--no-facts",
        action="store_true",
        help="time the reports with every order still dirty (facts computed live)",
    )
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--keep-sqlite", metavar="PATH", help="load into this file and keep it")
    parser.add_argument("--keep-pg", action="store_true", help="do not drop the database")
    parser.add_argument("--reuse-sqlite", metavar="PATH", help="time an already loaded file")
    parser.add_argument("--reuse-pg", metavar="URL", help="time an already loaded database")
    parser.add_argument("--merchant", type=int, help="merchant of the summary (default: biggest)")
    args = parser.parse_args()
    args.visits = args.visits if args.visits is not None else 3 * args.orders

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="o2o-reports-bench-") as tmp:
        if not args.no_sqlite:
            results += run("sqlite", args, Path(tmp))
        if (args.pg or args.reuse_pg) and not args.no_pg:
            results += run("postgres", args, Path(tmp))
        elif not args.no_pg:
            print("\nPostgreSQL skipped: pass --pg URL or set O2O_TEST_POSTGRES_URL")
    print_table(results)


if __name__ == "__main__":
    main()
