"""Law 2 against a real server (a uvicorn subprocess; fresh database per backend; PostgreSQL with
two API processes): 20 concurrent redemptions of one code → exactly one 200 and 19 × 409;
concurrent redemptions of every voucher of one order complete it exactly once; a brute-force run
of random codes is throttled (429) quickly and redeems nothing."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from o2o import migrate
from o2o.db import Database
from o2o.fulfilment.models import REDEEMED, RedemptionAttempt, Voucher
from o2o.orders.models import Order
from tests.checkout_support import make_deal
from tests.conftest import create_postgres_database, drop_postgres_database, require_postgres
from tests.support import World, build_world
from tests.test_cli import free_port

SECRET = "live-test-secret-" + "y" * 40
STORE_LIMIT = 20


@dataclass
class Live:
    base: str
    world: World
    db: Database

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=60)

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.world.tokens[role]}"}


def _serve(url: str, cwd: Path, workers: int) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("O2O_")}
    env.update(
        O2O_DATABASE_URL=url,
        O2O_SECRET_KEY=SECRET,
        O2O_DEMO="false",
        O2O_SANDBOX_PAYMENTS="true",
        O2O_EMBEDDED_WORKER="false",
        O2O_LOG_LEVEL="warning",
        # Per staff member the default (10 a minute); the store's limit lowered so that two
        # staff members can reach it.
        O2O_REDEMPTION_STORE_FAILURES_PER_MINUTE=str(STORE_LIMIT),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "o2o.cli", "serve", "--port", str(port), "--workers", str(workers)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # Generous: a busy CI box can take a while to import and fork two API processes.
        for _ in range(1200):
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise AssertionError(proc.stdout.read().decode() if proc.stdout else "exited")
            time.sleep(0.1)
        else:
            raise AssertionError("server did not become ready in 120 s")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """One fresh database and server per backend for this module (the tests use their own
    vouchers; the throttle test runs last)."""
    tmp_path = tmp_path_factory.mktemp(f"live-{request.param}")
    if request.param == "postgres":
        require_postgres()
        url, workers = create_postgres_database("o2o_live"), 2
    else:
        url, workers = f"sqlite:///{tmp_path / 'live.db'}", 1
    try:
        migrate.upgrade(url)
        db = Database.from_url(url)
        world = build_world(db, SimpleNamespace(state=SimpleNamespace(secret_key=SECRET)))
        for base in _serve(url, tmp_path, workers):
            yield Live(base, world, db)
        db.dispose()
    finally:
        if request.param == "postgres":
            drop_postgres_database(url)


def buy(live: Live, quantity: int) -> tuple[str, list[str]]:
    """A deal of merchant A bought and paid (sandbox) by the consumer over HTTP."""
    deal = make_deal(live.db, live.world.a.id, live.world.category_id, live.world.a.store_ids)
    with live.client() as http:
        h = live.headers("consumer")
        r = http.post(
            "/api/v1/checkout",
            json={"items": [{"listing_id": deal.listing_id, "quantity": quantity}]},
            headers=h,
        )
        assert r.status_code == 201, r.text
        order_no = r.json()["orders"][0]["order_no"]
        payment_no = r.json()["payment"]["payment_no"]
        r = http.post(f"/api/v1/payments/{payment_no}/pay", json={"provider": "sandbox"}, headers=h)
        assert r.status_code == 200, r.text
        r = http.post(f"/sandbox/cashier/{payment_no}", json={"result": "success"}, headers=h)
        assert r.status_code == 200, r.text
        detail = http.get(f"/api/v1/orders/{order_no}", headers=h).json()
    return order_no, [v["code"] for v in detail["vouchers"]]


def at_once(n: int, call: Any) -> list[httpx.Response]:
    """``call(i, client)`` from n threads released together, each on its own connection."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        with httpx.Client(timeout=60) as http:
            barrier.wait()
            try:
                results[i] = call(i, http)
            except Exception as exc:  # surfaces in the assertion below
                results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(r, httpx.Response) for r in results), results
    return results


STAFF = ("clerk", "manager", "owner")


def test_twenty_concurrent_redemptions_of_one_code(live: Live) -> None:
    order_no, [code] = buy(live, 1)
    url = f"{live.base}/api/v1/merchants/{live.world.a.id}/redemptions"
    store = live.world.a.store_ids[0]

    responses = at_once(
        20,
        lambda i, http: http.post(
            url, json={"code": code, "store_id": store}, headers=live.headers(STAFF[i % 3])
        ),
    )
    counts = Counter(r.status_code for r in responses)
    assert counts == {200: 1, 409: 19}, [(r.status_code, r.text) for r in responses]
    losers = [r.json() for r in responses if r.status_code == 409]
    assert {p["code"] for p in losers} == {"voucher_already_redeemed"}
    assert {p["redeemed_store_id"] for p in losers} == {store}
    with live.db.transaction(readonly=True) as session:
        voucher = session.scalar(select(Voucher).where(Voucher.code == code))
        assert voucher is not None and voucher.status == REDEEMED
        audit = Counter(
            session.scalars(
                select(RedemptionAttempt.result).where(
                    RedemptionAttempt.code == code, RedemptionAttempt.voucher_id.is_(None)
                )
            )
        )
        ok = session.scalars(
            select(RedemptionAttempt.result).where(RedemptionAttempt.voucher_id == voucher.id)
        ).all()
        assert session.scalar(select(Order.status).where(Order.order_no == order_no)) == "completed"
    assert ok == ["ok"]
    assert audit == {"voucher_already_redeemed": 19}


def test_concurrent_redemptions_of_one_orders_vouchers_complete_it(live: Live) -> None:
    order_no, codes = buy(live, 12)
    url = f"{live.base}/api/v1/merchants/{live.world.a.id}/redemptions"
    responses = at_once(
        12,
        lambda i, http: http.post(
            url,
            json={"code": codes[i], "store_id": live.world.a.store_ids[0]},
            headers=live.headers(STAFF[i % 3]),
        ),
    )
    assert [r.status_code for r in responses] == [200] * 12, [r.text for r in responses]
    with live.db.transaction(readonly=True) as session:
        # The last redemption to commit saw the others: the order is completed.
        assert session.scalar(select(Order.status).where(Order.order_no == order_no)) == "completed"


def test_brute_force_of_random_codes_is_throttled(live: Live) -> None:
    _order_no, [code] = buy(live, 1)
    url = f"{live.base}/api/v1/merchants/{live.world.a.id}/redemptions"
    store = live.world.a.store_ids[0]
    with live.db.transaction(readonly=True) as session:
        audited_before = len(session.scalars(select(RedemptionAttempt.id)).all())
        redeemed_before = session.scalars(
            select(Voucher.id).where(Voucher.status == REDEEMED)
        ).all()

    def guess(_i: int, http: httpx.Client) -> httpx.Response:
        last = None
        for _ in range(20):
            last = http.post(
                url,
                json={"code": f"{secrets.randbelow(10**12):012d}", "store_id": store},
                headers=live.headers("clerk"),
            )
            statuses.append(last.status_code)
        assert last is not None
        return last

    statuses: list[int] = []
    started = time.perf_counter()
    at_once(8, guess)
    took = time.perf_counter() - started
    counts = Counter(statuses)
    assert set(counts) <= {404, 429}, counts
    # 10 failures a minute per staff member, and not one more while 8 run at once: each attempt
    # is counted (atomically) before its code is looked at.
    assert counts[404] == 10, counts
    assert counts[429] >= 160 - 18, counts
    print(f"\nbrute force: {counts} in {took:.2f}s")
    # Throttled means throttled: even a real code waits.
    with live.client() as http:
        r = http.post(url, json={"code": code, "store_id": store}, headers=live.headers("clerk"))
        assert r.status_code == 429 and r.json()["code"] == "redemption_throttled"
        # The store as a whole (limit set to 20): then every staff member waits there.
        manager = []
        for _ in range(12):
            r = http.post(
                url,
                json={"code": f"{secrets.randbelow(10**12):012d}", "store_id": store},
                headers=live.headers("manager"),
            )
            manager.append(r.status_code)
            if r.status_code == 429:
                break
        assert manager[-1] == 429, manager
        assert counts[404] + manager.count(404) == STORE_LIMIT, (counts, manager)
        r = http.post(url, json={"code": code, "store_id": store}, headers=live.headers("owner"))
        assert r.status_code == 429
    with live.db.transaction(readonly=True) as session:
        assert session.scalar(select(Voucher.status).where(Voucher.code == code)) == "unused"
        redeemed = session.scalars(select(Voucher.id).where(Voucher.status == REDEEMED)).all()
        audited = session.scalars(select(RedemptionAttempt.result)).all()
    assert redeemed == redeemed_before
    assert (
        len(audited) - audited_before == 160 + 1 + len(manager) + 1
    )  # every attempt, throttled ones too
