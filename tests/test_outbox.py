"""The transactional outbox (o2o.outbox): written with the change, delivered after it, once per
handler — with two workers at once, and after a worker is killed mid-delivery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from o2o import events, wiring
from o2o.db import Database
from o2o.outbox import service as outbox
from o2o.outbox.models import DELIVERED, FAILED, PENDING, OutboxDelivery
from o2o.timeutil import utcnow
from tests import outbox_support
from tests.web.support import PageClient

ROOT = Path(__file__).resolve().parent.parent


def publish_applied(db: Database, merchant_ids: range) -> None:
    with db.transaction() as session:
        for merchant_id in merchant_ids:
            events.publish(session, events.MerchantApplied(merchant_id=merchant_id))


def rows(db: Database) -> list[OutboxDelivery]:
    with db.transaction(readonly=True) as session:
        found = list(session.scalars(select(OutboxDelivery).order_by(OutboxDelivery.id)))
        session.expunge_all()
        return found


def test_an_event_of_a_rolled_back_change_is_never_delivered(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    outbox_support.reset_effects(db_url)
    with wiring.extra_after_commit(outbox_support.subscriptions(tmp_path)):
        with pytest.raises(RuntimeError), db.transaction() as session:
            events.publish(session, events.MerchantApplied(merchant_id=1))
            raise RuntimeError("the change fails after publishing")
        assert rows(db) == []
        assert outbox.drain(db) == 0
        publish_applied(db, range(2, 3))  # committed: one row per handler
        assert [(r.event_name, r.handler, r.status) for r in rows(db)] == [
            ("merchant.applied", h, PENDING) for h in outbox_support.HANDLERS
        ]
        assert outbox.drain(db) == 2
    assert sorted(h for _k, h in outbox_support.effects(db_url)) == list(outbox_support.HANDLERS)
    assert {r.status for r in rows(db)} == {DELIVERED}


def test_two_workers_deliver_each_event_once_per_handler(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    """Two workers (threads, each its own connections) drain at once: every (event, handler)
    effect exactly once (PostgreSQL: SKIP LOCKED; SQLite: one writer at a time)."""
    outbox_support.reset_effects(db_url)
    n = 30
    with wiring.extra_after_commit(outbox_support.subscriptions(tmp_path)):
        publish_applied(db, range(1, n + 1))
        barrier = threading.Barrier(2)
        done: list[int] = []

        def worker() -> None:
            own = Database.from_url(db_url)
            try:
                barrier.wait()
                done.append(outbox.drain(own))
            finally:
                own.dispose()

        threads = [threading.Thread(target=worker) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    keys = Counter(k for k, _h in outbox_support.effects(db_url))
    assert len(keys) == 2 * n and set(keys.values()) == {1}
    assert sum(done) == 2 * n
    assert all(r.status == DELIVERED and r.attempts == 1 for r in rows(db))


def test_failures_are_retried_with_backoff_then_shown_and_sent_again(
    db: Database, api: Any, app: Any, world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "MAX_ATTEMPTS", 3)
    failures = {"left": 2}
    seen: list[tuple[str, int]] = []

    def flaky(session: Any, event: events.Event, delivery: outbox.Delivery) -> None:
        seen.append((delivery.key, delivery.attempt))
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("endpoint down")

    with wiring.extra_after_commit({events.MerchantApplied: {"test.flaky": flaky}}):
        publish_applied(db, range(1, 2))
        now = utcnow()
        assert outbox.deliver_one(db, now=now) == "retry"
        row = rows(db)[0]
        assert row.attempts == 1 and "endpoint down" in row.last_error
        wait = row.next_attempt_at - utcnow()
        assert timedelta(seconds=3) < wait <= timedelta(seconds=5)
        assert outbox.deliver_one(db, now=now) is None  # not due yet
        assert outbox.deliver_one(db, now=now + timedelta(seconds=6)) == "retry"
        wait = rows(db)[0].next_attempt_at - utcnow()
        assert timedelta(seconds=8) < wait <= timedelta(seconds=10)  # doubled
        assert outbox.deliver_one(db, now=now + timedelta(seconds=20)) == "delivered"
        # the key a handler dedupes on is the same on every attempt
        assert len({k for k, _ in seen}) == 1 and [a for _, a in seen] == [1, 2, 3]

        failures["left"] = 99
        publish_applied(db, range(2, 3))
        for step in range(3):
            outbox.deliver_one(db, now=now + timedelta(hours=step + 1))
        failed = rows(db)[-1]
        assert failed.status == FAILED and failed.attempts == 3
        # The operator sees it (API and admin page) and sends it again.
        op = world.tokens["operator"]
        body = api.get("/api/v1/admin/outbox?status=failed", as_=op).json()
        assert body["summary"]["failed"] == 1 and body["summary"]["delivered"] == 1
        assert [i["id"] for i in body["items"]] == [failed.id]
        assert body["items"][0]["last_error"] == "ConnectionError: endpoint down"
        with PageClient(app) as pages:
            pages.sign_in(world.operator_id)
            page = pages.get("/admin/outbox")
            assert page.status_code == 200
            assert f'data-delivery="{failed.id}" data-status="failed"' in page.text
            assert "test.flaky" in page.text and "ConnectionError: endpoint down" in page.text
        r = api.post(f"/api/v1/admin/outbox/{failed.id}/retry", as_=op)
        assert r.status_code == 200 and r.json()["status"] == PENDING
        again = api.post(f"/api/v1/admin/outbox/{failed.id}/retry", as_=op)
        assert again.status_code == 409
        assert api.post("/api/v1/admin/outbox/999999/retry", as_=op).status_code == 404
        failures["left"] = 0
        assert outbox.drain(db) == 1
    assert rows(db)[-1].status == DELIVERED
    wired = api.get("/api/v1/admin/outbox/wiring", as_=world.tokens["operator"]).json()
    assert {
        "event": "payment.succeeded",
        "when": "in_transaction",
        "handler": "o2o.ledger.postings.on_payment_succeeded",
    } in wired


# --- worker processes (PostgreSQL: the deployment with several workers) -----------------------


def _start_worker(url: str, workdir: Path, mode: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("O2O_")}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.outbox_support", url, str(workdir), mode],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait_for(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.postgres
def test_worker_killed_mid_delivery_then_restarted_delivers_once(
    postgres_database: str, tmp_path: Path
) -> None:
    """A worker process hangs inside a delivery (its effect written, not committed) while a
    second worker drains the rest around it (SKIP LOCKED); the hanging one is SIGKILLed and a
    restarted worker (fresh connections, in this process: one process start-up is seconds of
    the suite) delivers that row again. Every (event, handler) effect is committed exactly
    once; the killed key was attempted twice."""
    from tests.conftest import empty_all_tables

    url = postgres_database
    empty_all_tables(url)
    outbox_support.reset_effects(url)
    db = Database.from_url(url)
    n = 20
    try:
        subscriptions = outbox_support.subscriptions(tmp_path)
        with wiring.extra_after_commit(subscriptions):
            publish_applied(db, range(1, n + 1))
            hanging = _start_worker(url, tmp_path, "hang")
            try:
                _wait_for(lambda: (tmp_path / "hanging").exists(), 60, "a delivery to hang")
                # A second worker delivers everything but the row the hanging one holds.
                second = Database.from_url(url)
                assert outbox.drain(second) == 2 * n - 1
                second.dispose()
                assert len(outbox_support.effects(url)) == 2 * n - 1
                os.kill(hanging.pid, signal.SIGKILL)  # mid-delivery: no rollback, no cleanup
                hanging.wait()
            finally:
                if hanging.poll() is None:
                    hanging.kill()
                    hanging.wait()
            restarted = Database.from_url(url)
            _wait_for(lambda: outbox.drain(restarted) == 1, 10, "the redelivery")
            restarted.dispose()
        killed_key = (tmp_path / "hanging").read_text()
        keys = Counter(k for k, _h in outbox_support.effects(url))
        assert len(keys) == 2 * n and set(keys.values()) == {1}
        attempts = Counter((tmp_path / "attempts").read_text().split())
        assert attempts[killed_key] == 2
        with db.transaction(readonly=True) as session:
            statuses = session.execute(
                select(OutboxDelivery.status, func.count()).group_by(OutboxDelivery.status)
            ).all()
        assert statuses == [(DELIVERED, 2 * n)]
    finally:
        db.dispose()
