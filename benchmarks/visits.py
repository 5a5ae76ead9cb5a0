"""Visit recording overhead: the same GET with and without ``?ch=`` against a running server.

    .venv/bin/python benchmarks/visits.py                          # SQLite, 3 rounds × 5 s
    .venv/bin/python benchmarks/visits.py --seconds 3 --rounds 2   # quicker
    O2O_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python benchmarks/visits.py                      # PostgreSQL too (or --pg URL)

A fresh, migrated database with one channel; ``uvicorn o2o.app:served_app`` (1 process); an
asyncio httpx load generator on the same box. Variants, interleaved round by round so drift hits
them alike, on two paths — ``/docs`` (a small HTML page without database work: the middleware's
cost at its most visible) and ``/api/v1/categories`` (a small database read, like a real page):

  plain     no channel
  ch        ``?ch=bench`` with the client's visitor id (a returning visitor)
  ch+new    ``?ch=bench`` without a visitor id (a new visitor: id generated, cookie set)

First, the middleware alone (in process, a no-op app behind it, a recorder that is never flushed
during the timing): microseconds per request for each variant — the figure that stays readable
on a busy machine. Then, over HTTP: requests/s and latency p50/p99 at ``--clients`` concurrent clients, single-client
p50 latency (the per-request cost), each variant's ratio to ``plain`` in the same run, and at the
end how many visits reached the table against how many ``?ch=`` requests were answered.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from o2o import migrate  # noqa: E402
from o2o.channels import service as channels  # noqa: E402
from o2o.channels.models import Visit  # noqa: E402
from o2o.db import Database  # noqa: E402
from o2o.merchants.models import Category  # noqa: E402

SECRET = "bench-secret-" + "x" * 40
PATHS = ["/docs", "/api/v1/categories"]
VARIANTS = ["plain", "ch", "ch+new"]


@contextmanager
def fresh_database(kind: str, admin_url: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{Path(tmp) / 'visits.db'}"
        return
    name = f"o2o_bench_visits_{secrets.token_hex(4)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def seed(url: str) -> None:
    migrate.upgrade(url)
    db = Database.from_url(url)
    try:
        with db.transaction() as session:
            channels.create_channel(session, code="bench", name="压测渠道", kind="other")
            for i in range(12):  # something for /api/v1/categories to return
                session.add(Category(name=f"类目{i}", commission_bp=500))
    finally:
        db.dispose()


def count_visits(url: str) -> int:
    db = Database.from_url(url)
    try:
        with db.transaction(readonly=True) as session:
            return session.scalar(select(func.count()).select_from(Visit)) or 0
    finally:
        db.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(url: str) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("O2O_")}
    env.update(
        O2O_DATABASE_URL=url,
        O2O_SECRET_KEY=SECRET,
        O2O_DEMO="false",
        O2O_EMBEDDED_WORKER="false",
        O2O_LOG_LEVEL="warning",
        PYTHONPATH=str(ROOT / "src"),
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
            # SIGTERM: uvicorn shuts down cleanly, and the shutdown flushes the visit queue.
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)


async def load(
    base: str, path: str, variant: str, clients: int, seconds: float
) -> tuple[int, float, list[float]]:
    """(answered, elapsed, latencies) for ``clients`` closed-loop clients during ``seconds``."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        stop_at = time.perf_counter() + seconds

        async def one_client(index: int) -> None:
            params = {} if variant == "plain" else {"ch": "bench"}
            headers = {"X-Visitor-Id": f"bench-visitor-{index:04d}"} if variant == "ch" else {}
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                r = await client.get(path, params=params, headers=headers)
                if r.status_code != 200:
                    raise RuntimeError(f"{path}: {r.status_code} {r.text[:200]}")
                latencies.append(time.perf_counter() - t0)
                client.cookies.clear()  # "ch+new" must stay a new visitor each time

        started = time.perf_counter()
        await asyncio.gather(*(one_client(i) for i in range(clients)))
        return len(latencies), time.perf_counter() - started, latencies


def middleware_alone(calls: int, rounds: int) -> None:
    """µs per request through ChannelMiddleware in front of a no-op ASGI app."""
    from o2o.channels.middleware import ChannelMiddleware, VisitRecorder

    async def noop(scope: dict, receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    async def sink(message: dict) -> None:
        return None

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    with tempfile.TemporaryDirectory() as tmp:
        db = Database.from_url(f"sqlite:///{Path(tmp) / 'm.db'}")
        recorder = VisitRecorder(db, maxsize=10_000_000, flush_seconds=3600)
        middleware = ChannelMiddleware(noop, recorder)
        headers = [(b"host", b"x"), (b"user-agent", b"bench"), (b"accept", b"*/*")]
        scopes = {
            "plain": {"type": "http", "path": "/p", "query_string": b"q=1", "headers": headers},
            "ch": {
                "type": "http",
                "path": "/p",
                "query_string": b"q=1&ch=bench",
                "headers": [*headers, (b"x-visitor-id", b"bench-visitor-0001")],
            },
            "ch+new": {
                "type": "http",
                "path": "/p",
                "query_string": b"ch=bench",
                "headers": headers,
            },
        }

        async def timed(variant: str) -> float:
            scope = scopes[variant]
            t0 = time.perf_counter()
            for _ in range(calls):
                await middleware(dict(scope), receive, sink)
            return (time.perf_counter() - t0) / calls * 1e6

        per: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(rounds):
            for variant in VARIANTS:
                per[variant].append(asyncio.run(timed(variant)))
        recorder._stop.set()  # never written: this measures the request side only
        db.dispose()
    print(f"\n## middleware alone: {calls:,} calls × {rounds} rounds, median µs per request\n")
    print("| variant | µs/request | extra µs vs plain |")
    print("|---|---:|---:|")
    plain = statistics.median(per["plain"])
    for variant in VARIANTS:
        us = statistics.median(per[variant])
        print(f"| {variant} | {us:.1f} | {us - plain:+.1f} |")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def run(kind: str, admin_url: str, clients: int, seconds: float, rounds: int) -> None:
    with fresh_database(kind, admin_url) as url:
        seed(url)
        ch_requests = 0
        # results[path][variant] = list of (rps, p50, p99, single p50) per round
        results: dict[str, dict[str, list[tuple[float, float, float, float]]]] = {
            p: {v: [] for v in VARIANTS} for p in PATHS
        }
        with served(url) as base:
            for path in PATHS:  # warm-up
                for variant in VARIANTS:
                    n, _, _ = asyncio.run(load(base, path, variant, clients, 1.0))
                    ch_requests += n if variant != "plain" else 0
            for _ in range(rounds):
                for path in PATHS:
                    for variant in VARIANTS:
                        n, elapsed, lat = asyncio.run(load(base, path, variant, clients, seconds))
                        n1, _, lat1 = asyncio.run(load(base, path, variant, 1, seconds / 2))
                        if variant != "plain":
                            ch_requests += n + n1
                        results[path][variant].append(
                            (n / elapsed, pct(lat, 0.5), pct(lat, 0.99), pct(lat1, 0.5))
                        )
        stored = count_visits(url)  # after the server's shutdown flush
    print(f"\n## {kind}: {clients} clients, {rounds} rounds × {seconds:g} s, medians of rounds\n")
    print("| path | variant | req/s | ratio | p50 ms | p99 ms | 1-client p50 ms | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for path in PATHS:
        base_rps = statistics.median(r[0] for r in results[path]["plain"])
        base_single = statistics.median(r[3] for r in results[path]["plain"])
        for variant in VARIANTS:
            rows = results[path][variant]
            rps = statistics.median(r[0] for r in rows)
            p50 = statistics.median(r[1] for r in rows)
            p99 = statistics.median(r[2] for r in rows)
            single = statistics.median(r[3] for r in rows)
            print(
                f"| `{path}` | {variant} | {rps:,.0f} | {rps / base_rps:.2f} | {p50:.2f} | "
                f"{p99:.2f} | {single:.2f} | {single / base_single:.2f} |"
            )
    print(
        f"\nvisits stored: {stored:,} of {ch_requests:,} answered `?ch=` requests "
        f"({ch_requests - stored:,} dropped)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pg", default=os.environ.get("O2O_TEST_POSTGRES_URL"))
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    middleware_alone(20_000, max(args.rounds, 3))
    run("sqlite", "", args.clients, args.seconds, args.rounds)
    if args.pg and not args.sqlite_only:
        run("postgresql", args.pg, args.clients, args.seconds, args.rounds)


if __name__ == "__main__":
    main()
