"""The parts of issue 12's defences, one at a time (the attacks themselves run against a live
server in tests/test_attacks.py): atomic counters on both databases and Redis, the password
gate, the real client address, database pool exhaustion as 503."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import create_engine

from o2o import ratelimit
from o2o.app import create_app
from o2o.db import Database
from o2o.errors import ServiceUnavailable
from o2o.security import PasswordGate, client_address
from tests.conftest import make_settings
from tests.support import ApiClient


def hit_concurrently(counters: ratelimit.Counters, key: str, n: int) -> list[int]:
    barrier = threading.Barrier(n)
    counts: list[int] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        [count] = counters.hit([key], 60)
        with lock:
            counts.append(count)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def test_database_counters_count_each_concurrent_attempt_once(db: Database) -> None:
    counters = ratelimit.DatabaseCounters(db)
    counts = hit_concurrently(counters, "test:concurrent", 30)
    # Every attempt saw a different count: of N at once, exactly `limit` see a count ≤ limit.
    assert sorted(counts) == list(range(1, 31))
    counters.refund(["test:concurrent"])
    assert counters.count("test:concurrent") == 29
    counters.clear(["test:concurrent"])
    assert counters.count("test:concurrent") == 0


def test_database_counters_open_a_new_window_when_the_old_one_ends(db: Database) -> None:
    counters = ratelimit.DatabaseCounters(db)
    assert counters.hit(["test:window"], 60) == [1]
    assert counters.hit(["test:window"], 60) == [2]
    with db.transaction() as session:
        session.execute(
            ratelimit.RateCounter.__table__.update().values(
                window_ends=ratelimit.utcnow().replace(year=2000)
            )
        )
    assert counters.hit(["test:window"], 60) == [1]
    assert ratelimit.purge_expired(db) == 0  # the key's window is open again


def test_redis_counters_count_each_concurrent_attempt_once() -> None:
    url = os.environ.get("O2O_TEST_REDIS_URL")
    if not url:
        pytest.skip("set O2O_TEST_REDIS_URL to test the Redis counters")
    prefix = f"o2o-unit-{os.getpid()}-{time.time_ns()}"
    settings = SimpleNamespace(redis_url=url, redis_key_prefix=prefix)
    counters = ratelimit.counters(None, settings)  # type: ignore[arg-type]
    assert isinstance(counters, ratelimit.RedisCounters)
    counts = hit_concurrently(counters, "k", 30)
    assert sorted(counts) == list(range(1, 31))
    ttl = counters.client.pttl(counters.prefix + "k")
    assert 0 < ttl <= 60_000  # INCR and its expiry in one script: never a key without expiry
    counters.refund(["k"])
    assert counters.count("k") == 29
    counters.clear(["k"])
    assert counters.count("k") == 0


def test_the_password_gate_bounds_hashing_and_sends_the_rest_back() -> None:
    running = 0
    most = 0

    def slow_hash(_value: str) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        time.sleep(0.2)
        running -= 1
        return "h"

    async def main() -> list[Any]:
        gate = PasswordGate(concurrency=2, wait_seconds=0.3, max_waiting=3)
        return await asyncio.gather(
            *(gate.run(slow_hash, str(i)) for i in range(8)), return_exceptions=True
        )

    results = asyncio.run(main())
    done = [r for r in results if r == "h"]
    busy = [r for r in results if isinstance(r, ServiceUnavailable)]
    assert most == 2
    assert len(done) + len(busy) == 8 and 2 <= len(done) <= 5 and busy, results
    assert all(e.status == 503 and e.headers and "Retry-After" in e.headers for e in busy)


def _request(peer: str, forwarded: str | None, trusted: str) -> Any:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    app = SimpleNamespace(state=SimpleNamespace(settings=SimpleNamespace(trusted_proxies=trusted)))
    from starlette.requests import Request

    return Request(
        {"type": "http", "client": (peer, 5000), "headers": headers, "app": app, "method": "GET"}
    )


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.9", "1.2.3.4", "", "203.0.113.9"),  # no trusted proxies: the peer
        ("203.0.113.9", "1.2.3.4", "10.0.0.0/8", "203.0.113.9"),  # untrusted peer: the peer
        ("10.0.0.2", "1.2.3.4", "10.0.0.0/8", "1.2.3.4"),
        ("10.0.0.2", "6.6.6.6, 1.2.3.4", "10.0.0.0/8", "1.2.3.4"),  # the client's own entries
        ("10.0.0.2", "1.2.3.4, 10.0.0.7", "10.0.0.0/8", "1.2.3.4"),  # two proxies
        ("10.0.0.2", "not-an-ip", "10.0.0.0/8", "10.0.0.2"),
        ("10.0.0.2", None, "10.0.0.0/8", "10.0.0.2"),
    ],
)
def test_the_client_address(peer: str, forwarded: str | None, trusted: str, expected: str) -> None:
    assert client_address(_request(peer, forwarded, trusted)) == expected


def test_an_exhausted_database_pool_is_a_503_with_retry_after(db_url: str, tmp_path: Path) -> None:
    """Every pooled connection taken: busy, not broken (was: TimeoutError → 500)."""
    app = create_app(make_settings(db_url, tmp_path))
    url = db_url.replace("postgresql://", "postgresql+psycopg://", 1)
    kwargs: dict[str, Any] = (
        {"connect_args": {"check_same_thread": False}} if "sqlite" in url else {}
    )
    tiny = create_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.2, **kwargs)
    app.state.db.dispose()
    app.state.db = Database(tiny)
    held = tiny.connect()
    try:
        with ApiClient(app) as api:
            r = api.get("/api/v1/categories")
            assert r.status_code == 503 and r.json()["code"] == "database_busy"
            assert r.headers["content-type"].startswith("application/problem+json")
            assert int(r.headers["Retry-After"]) > 0
            page = api.get("/search")
            assert page.status_code == 503 and "系统繁忙" in page.text
            assert int(page.headers["Retry-After"]) > 0
    finally:
        held.close()
        tiny.dispose()


def test_the_sign_in_delay_doubles_up_to_its_maximum(tmp_path: Path) -> None:
    from o2o.accounts.flows import login_delay

    settings = make_settings("sqlite://", tmp_path)
    assert login_delay(settings, 0) == 0
    assert [login_delay(settings, n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert login_delay(settings, 10_000) == settings.login_delay_max_seconds == 8.0


def test_rejected_notifications_are_capped_per_hour(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from o2o.payments import notification_log

    monkeypatch.setattr(notification_log, "REJECTED_ROWS_PER_HOUR", 3)
    results = [
        notification_log.store_rejected(
            db, provider="sandbox", headers={}, body=f"junk {i}", reason="bad signature"
        )
        for i in range(5)
    ]
    again = notification_log.store_rejected(
        db, provider="sandbox", headers={}, body="junk 0", reason="bad signature"
    )
    assert results == ["stored"] * 3 + ["dropped"] * 2 and again == "counted"
