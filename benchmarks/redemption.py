"""Redemption (核销) throughput over HTTP against the bare conditional-update ceiling, measured in
the same run.

    .venv/bin/python benchmarks/redemption.py --db sqlite
    .venv/bin/python benchmarks/redemption.py --db postgres \
        --pg-admin-url postgresql://postgres@127.0.0.1:5432/postgres

What it does, per database (a fresh one, migrated, dropped afterwards):
1. seeds one merchant (two stores, an owner, a manager and a clerk), one deal and paid service
   orders of two units each — one unused voucher per unit, straight into the tables (issuing is
   not what is measured);
2. **ceiling**: N threads run the bare redemption — ``UPDATE vouchers SET status='redeemed' …
   WHERE code = :c AND status = 'unused' AND merchant_id = :m AND valid_until > :now`` and COMMIT,
   nothing else;
3. **service**: N threads call ``o2o.fulfilment.redemption.redeem`` in-process (throttle check,
   read, conditional update, audit row, the order's completion, the ledger posting of
   ``voucher.redeemed`` as wired in ``o2o.wiring``) — no HTTP;
4. **HTTP**: starts ``uvicorn o2o.app:served_app`` (2 processes on PostgreSQL, 1 on SQLite) and N
   concurrent clients redeem distinct codes (``POST /api/v1/merchants/{id}/redemptions`` with a
   bearer token: clerk, manager and owner in turn);
5. **double redemption**: 50 concurrent requests for one code over HTTP — exactly one 200.
Every voucher is redeemed at most once (checked at the end). Reports redemptions/s, p50/p99
latency and each path as a percentage of the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import bindparam, create_engine, func, insert, select, text, update
from sqlalchemy.engine import make_url

from o2o import migrate, wiring
from o2o.accounts.flows import issue_api_token
from o2o.accounts.models import User
from o2o.catalog.models import Listing, ListingStore
from o2o.db import Database, make_engine
from o2o.fulfilment import redemption
from o2o.fulfilment.models import RedemptionAttempt, Voucher
from o2o.fulfilment.vouchers import RedemptionSettings
from o2o.merchants.access import load_actor
from o2o.merchants.models import Category, Membership, MembershipStore, Merchant, Store
from o2o.orders.models import Checkout, Order, OrderLine
from o2o.payments.models import Payment
from o2o.timeutil import utcnow

SECRET = "bench-secret-" + "b" * 40
UNITS_PER_ORDER = 2
STAFF = ("clerk", "manager", "owner")


@dataclass
class Result:
    name: str
    orders: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.orders / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


@contextmanager
def fresh_database(kind: str, admin_url: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'bench.db'}"
        return
    name = f"o2o_bench_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(url: str, workers: int) -> Iterator[str]:
    """``uvicorn o2o.app:served_app`` in its own process group; the worker thread off."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("O2O_")}
    env.update(
        O2O_DATABASE_URL=url,
        O2O_SECRET_KEY=SECRET,
        O2O_DEMO="false",
        O2O_EMBEDDED_WORKER="false",
        O2O_LOG_LEVEL="warning",
    )
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "o2o.app:served_app",
                "--factory",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            else:
                raise RuntimeError("server did not start")
            yield base
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


@dataclass
class Seeded:
    url: str
    merchant_id: int
    store_id: int
    staff_ids: dict[str, int]
    tokens: dict[str, str]
    codes: list[str]

    def take(self, n: int) -> list[str]:
        taken, self.codes = self.codes[:n], self.codes[n:]
        return taken


def seed(url: str, vouchers: int) -> Seeded:
    migrate.upgrade(url)
    db = Database.from_url(url)
    now = utcnow()
    try:
        with db.transaction() as session:
            category = Category(name="美食", commission_bp=600)
            session.add(category)
            session.flush()
            merchant = Merchant(
                name="压测火锅",
                contact_phone="13700000000",
                license_no="91440300MA5BENCH2",
                category_id=category.id,
                status="approved",
            )
            session.add(merchant)
            session.flush()
            stores = [
                Store(
                    merchant_id=merchant.id,
                    name=f"压测{i}号店",
                    address="深南大道1号",
                    city="深圳市",
                    district="南山区",
                    lat=22.53,
                    lng=113.93,
                )
                for i in range(2)
            ]
            session.add_all(stores)
            users = {
                role: User(phone=f"15200000{i:03d}", name=role, password_hash="x")
                for i, role in enumerate((*STAFF, "consumer"))
            }
            session.add_all(users.values())
            session.flush()
            for role in STAFF:
                membership = Membership(user_id=users[role].id, merchant_id=merchant.id, role=role)
                if role == "clerk":
                    membership.stores = [MembershipStore(store_id=stores[0].id)]
                session.add(membership)
            listing = Listing(
                merchant_id=merchant.id,
                kind="service",
                title="压测双人套餐",
                category_id=category.id,
                status="published",
                price_fen=5000,
                original_price_fen=9000,
                valid_days=30,
            )
            session.add(listing)
            session.flush()
            session.add_all(ListingStore(listing_id=listing.id, store_id=s.id) for s in stores)
            consumer = users["consumer"].id
            checkout = Checkout(checkout_no="CBENCHR", user_id=consumer, total_fen=1)
            session.add(checkout)
            session.flush()
            payment = Payment(
                payment_no="PBENCHR",
                checkout_id=checkout.id,
                user_id=consumer,
                amount_fen=1,
                status="succeeded",
                provider="sandbox",
                expires_at=now,
            )
            session.add(payment)
            session.flush()
            ids = {
                "merchant": merchant.id,
                "store": stores[0].id,
                "stores": [s.id for s in stores],
                "listing": listing.id,
                "checkout": checkout.id,
                "payment": payment.id,
                "consumer": consumer,
                "staff": {role: users[role].id for role in STAFF},
            }
        orders = vouchers // UNITS_PER_ORDER
        codes = random.sample(range(10**11, 10**12), orders * UNITS_PER_ORDER)
        batch = 2000
        with db.transaction() as session:
            for start in range(0, orders, batch):
                n = min(batch, orders - start)
                # One succeeded payment per order, as checkout makes them: redemption earns the
                # voucher's amount in the ledger against its own payment (which it locks).
                payment_ids = list(
                    session.scalars(
                        insert(Payment.__table__).returning(
                            Payment.__table__.c.id, sort_by_parameter_order=True
                        ),
                        [
                            {
                                "payment_no": f"PB{start + i:016d}",
                                "checkout_id": ids["checkout"],
                                "user_id": ids["consumer"],
                                "amount_fen": 10000,
                                "status": "succeeded",
                                "provider": "sandbox",
                                "expires_at": now,
                                "paid_at": now,
                                "created_at": now,
                                "updated_at": now,
                            }
                            for i in range(n)
                        ],
                    )
                )
                order_ids = list(
                    session.scalars(
                        insert(Order.__table__).returning(
                            Order.__table__.c.id, sort_by_parameter_order=True
                        ),
                        [
                            {
                                "order_no": f"OB{start + i:016d}",
                                "checkout_id": ids["checkout"],
                                "payment_id": payment_ids[i],
                                "user_id": ids["consumer"],
                                "merchant_id": ids["merchant"],
                                "kind": "service",
                                "status": "paid",
                                "items_fen": 10000,
                                "shipping_fee_fen": 0,
                                "discount_fen": 0,
                                "payable_fen": 10000,
                                "refunded_fen": 0,
                                "note": "",
                                "channel": "",
                                "cancel_reason": "",
                                "created_at": now,
                                "updated_at": now,
                                "paid_at": now,
                            }
                            for i in range(n)
                        ],
                    )
                )
                line_ids = list(
                    session.scalars(
                        insert(OrderLine.__table__).returning(
                            OrderLine.__table__.c.id, sort_by_parameter_order=True
                        ),
                        [
                            {
                                "order_id": oid,
                                "listing_id": ids["listing"],
                                "title": "压测双人套餐",
                                "sku_name": "",
                                "unit_price_fen": 5000,
                                "quantity": UNITS_PER_ORDER,
                                "amount_fen": 10000,
                                "commission_bp": 600,
                                "refunded_fen": 0,
                            }
                            for oid in order_ids
                        ],
                    )
                )
                session.execute(
                    insert(Voucher.__table__),
                    [
                        {
                            "code": str(codes[(start + i) * UNITS_PER_ORDER + unit]),
                            "order_id": oid,
                            "order_line_id": lid,
                            "unit_no": unit + 1,
                            "listing_id": ids["listing"],
                            "merchant_id": ids["merchant"],
                            "user_id": ids["consumer"],
                            "store_ids": ids["stores"],
                            "refund_anytime": True,
                            "auto_refund_on_expiry": True,
                            "amount_fen": 5000,
                            "valid_from": now,
                            "valid_until": now + timedelta(days=30),
                            "status": "unused",
                            "created_at": now,
                            "updated_at": now,
                        }
                        for i, (oid, lid) in enumerate(zip(order_ids, line_ids, strict=True))
                        for unit in range(UNITS_PER_ORDER)
                    ],
                )
        shuffled = [str(c) for c in codes]
        random.shuffle(shuffled)
        return Seeded(
            url=url,
            merchant_id=ids["merchant"],
            store_id=ids["store"],
            staff_ids=ids["staff"],
            tokens={
                r: issue_api_token(db, SECRET, uid, 24 * 3600) for r, uid in ids["staff"].items()
            },
            codes=shuffled,
        )
    finally:
        db.dispose()


def _threads(clients: int, seconds: float, codes: list[str], one: object) -> Result:
    """N threads take distinct codes and call ``one(code, thread index)`` until time is up."""
    it: Iterator[str] = iter(codes)
    take_lock = threading.Lock()
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def run(index: int) -> None:
        mine: list[float] = []
        while time.perf_counter() < stop_at:
            with take_lock:
                code = next(it, None)
            if code is None:
                break
            t0 = time.perf_counter()
            one(code, index)  # type: ignore[operator]
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Result("", len(latencies), time.perf_counter() - started, latencies)


def ceiling(seeded: Seeded, clients: int, seconds: float, codes: list[str]) -> Result:
    """The bare redemption: one conditional UPDATE and COMMIT per code."""
    db = Database(make_engine(seeded.url, pool_size=max(clients, 10)))
    v = Voucher.__table__.c
    stmt = (
        update(Voucher.__table__)
        .where(
            v.code == bindparam("c"),
            v.status == "unused",
            v.merchant_id == bindparam("m"),
            v.valid_until > bindparam("now"),
        )
        .values(
            status="redeemed",
            redeemed_at=bindparam("now"),
            redeemed_store_id=bindparam("s"),
            redeemed_by=bindparam("u"),
        )
    )
    staff = seeded.staff_ids["owner"]

    def one(code: str, _index: int) -> None:
        now = utcnow()
        with db.engine.begin() as conn:
            changed = conn.execute(
                stmt,
                {"c": code, "m": seeded.merchant_id, "now": now, "s": seeded.store_id, "u": staff},
            ).rowcount
        assert changed == 1

    try:
        return _threads(clients, seconds, codes, one)
    finally:
        db.dispose()


def service(seeded: Seeded, clients: int, seconds: float, codes: list[str]) -> Result:
    """The whole rule in-process: ``redemption.redeem`` (what the route calls)."""
    db = Database(make_engine(seeded.url, pool_size=max(clients, 10)))
    rules = RedemptionSettings()
    with db.transaction(readonly=True) as session:
        actors = [load_actor(session, session.get(User, seeded.staff_ids[role])) for role in STAFF]

    def one(code: str, index: int) -> None:
        redemption.redeem(
            db, actors[index % 3], seeded.merchant_id, code, seeded.store_id, rules=rules
        )

    try:
        return _threads(clients, seconds, codes, one)
    finally:
        db.dispose()


async def _http(
    base: str, seeded: Seeded, clients: int, seconds: float, codes: list[str]
) -> tuple[Result, dict[int, int]]:
    it = iter(codes)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    url = f"/api/v1/merchants/{seeded.merchant_id}/redemptions"
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        stop_at = time.perf_counter() + seconds

        async def one_client(index: int) -> None:
            headers = {"Authorization": f"Bearer {seeded.tokens[STAFF[index % 3]]}"}
            while time.perf_counter() < stop_at:
                code = next(it, None)
                if code is None:
                    return
                t0 = time.perf_counter()
                r = await client.post(
                    url, json={"code": code, "store_id": seeded.store_id}, headers=headers
                )
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t0)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(one_client(i) for i in range(clients)))
        elapsed = time.perf_counter() - started
    return Result("http", len(latencies), elapsed, latencies), statuses


async def _double(base: str, seeded: Seeded, code: str, n: int) -> dict[int, int]:
    url = f"/api/v1/merchants/{seeded.merchant_id}/redemptions"
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    url,
                    json={"code": code, "store_id": seeded.store_id},
                    headers={"Authorization": f"Bearer {seeded.tokens[STAFF[i % 3]]}"},
                )
                for i in range(n)
            )
        )
    counts: dict[int, int] = {}
    for r in responses:
        counts[r.status_code] = counts.get(r.status_code, 0) + 1
    return counts


def _summary(result: Result) -> dict:
    return {
        "redemptions": result.orders,
        "per_s": round(result.rate, 1),
        "p50_ms": round(result.pct(0.50), 2),
        "p99_ms": round(result.pct(0.99), 2),
    }


def run(
    kind: str, admin_url: str, clients: int, seconds: float, workers: int | None, pool: int
) -> dict:
    workers = workers or (2 if kind == "postgres" else 1)
    report: dict = {"db": kind, "clients": clients, "seconds": seconds, "api_processes": workers}
    with fresh_database(kind, admin_url) as url:
        seeded = seed(url, pool)
        report["vouchers_seeded"] = len(seeded.codes)
        bare = ceiling(seeded, clients, seconds, seeded.take(len(seeded.codes) // 2))
        report["ceiling"] = _summary(bare)
        in_process = service(seeded, clients, seconds, seeded.take(len(seeded.codes) // 3))
        report["service"] = _summary(in_process)
        with served(url, workers) as base:
            warm, _ = asyncio.run(_http(base, seeded, 4, 1.0, seeded.take(200)))  # warm-up
            result, statuses = asyncio.run(
                _http(base, seeded, clients, seconds, seeded.take(len(seeded.codes) - 1))
            )
            report["http"] = {**_summary(result), "statuses": statuses}
            report["double_redemption"] = asyncio.run(_double(base, seeded, seeded.take(1)[0], 50))
        for path in ("service", "http"):
            report[f"{path}_pct_of_ceiling"] = round(
                report[path]["per_s"] / report["ceiling"]["per_s"] * 100, 1
            )
        db = Database.from_url(url)
        try:
            with db.transaction(readonly=True) as session:
                ok = session.scalar(select(func.count()).where(RedemptionAttempt.result == "ok"))
                redeemed_via_rule = session.scalar(
                    select(func.count()).where(
                        Voucher.status == "redeemed", Voucher.redeemed_by.is_not(None)
                    )
                )
                completed = session.scalar(select(func.count()).where(Order.status == "completed"))
        finally:
            db.dispose()
        report["audited_ok"] = ok
        report["redeemed_total"] = redeemed_via_rule
        report["orders_completed"] = completed
        expected_ok = (
            report["service"]["redemptions"] + report["http"]["redemptions"] + warm.orders + 1
        )
        report["at_most_once"] = ok == expected_ok and report["double_redemption"].get(200) == 1
    return report


def main() -> None:
    # The service path publishes voucher.redeemed: its handlers (the ledger) run as in the app.
    wiring.install()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--pg-admin-url",
        default=os.environ.get(
            "O2O_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--workers", type=int, default=None, help="API processes")
    parser.add_argument("--vouchers", type=int, default=120_000, help="vouchers to seed")
    parser.add_argument("--json", action="store_true", help="print the raw report as JSON")
    args = parser.parse_args()
    report = run(
        args.db, args.pg_admin_url, args.clients, args.seconds, args.workers, args.vouchers
    )
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return
    print(
        f"\n{report['db']}: {report['clients']} clients, {report['seconds']:.0f}s per run, "
        f"{report['api_processes']} API process(es), {report['vouchers_seeded']} vouchers"
    )
    print(f"{'path':<10}{'redeem/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'% ceiling':>11}")
    for path in ("ceiling", "service", "http"):
        row = report[path]
        pct = f"{report[f'{path}_pct_of_ceiling']}%" if path != "ceiling" else ""
        print(f"{path:<10}{row['per_s']:>10}{row['p50_ms']:>10}{row['p99_ms']:>10}{pct:>11}")
    print(f"http statuses: {report['http']['statuses']}")
    print(
        f"50 concurrent redemptions of one code: {report['double_redemption']} — "
        f"{'AT MOST ONCE' if report['at_most_once'] else 'FAILED'}"
    )


if __name__ == "__main__":
    main()
