"""Channels (流量入口): the operator's list, visit recording off the request path, attribution."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from o2o.channels import demo as channels_demo
from o2o.channels import service as channels
from o2o.channels.middleware import (
    VISITOR_COOKIE,
    VisitRecorder,
    install,
    visitor_id,
)
from o2o.channels.models import Channel, Visit
from o2o.channels.service import Touch
from o2o.db import Database
from o2o.timeutil import utcnow
from tests.support import ApiClient, World, make_user

ADMIN = "/api/v1/admin/channels"


def make_channel(db: Database, code: str, *, kind: str = "other", active: bool = True) -> int:
    with db.transaction() as session:
        return channels.create_channel(
            session, code=code, name=f"渠道{code}", kind=kind, is_active=active
        ).id


def visits(db: Database) -> list[Visit]:
    with db.transaction(readonly=True) as session:
        return list(session.scalars(select(Visit).order_by(Visit.id)))


# --- operator CRUD -----------------------------------------------------------------------------


def test_operator_creates_lists_and_updates_channels(api: ApiClient, world: World) -> None:
    op = world.tokens["operator"]
    r = api.post(
        ADMIN,
        as_=op,
        json={"code": "WeChat-Home", "name": "微信首页入口", "kind": "superapp_entry"},
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["code"] == "wechat-home"  # codes are case-insensitive, stored lower-case
    assert (created["kind_label"], created["is_active"]) == ("超级App入口", True)
    for code in ("wechat-home", "WECHAT-HOME"):
        dup = api.post(ADMIN, as_=op, json={"code": code, "name": "重复", "kind": "other"})
        assert dup.status_code == 409 and dup.json()["code"] == "channel_code_taken"
    for i, kind in enumerate(["partner_site", "poster_qr", "search_ad"]):
        assert api.post(
            ADMIN, as_=op, json={"code": f"c{i}", "name": "渠道", "kind": kind}
        ).is_success

    page = api.get(f"{ADMIN}?limit=2", as_=op).json()
    assert [c["code"] for c in page["items"]] == ["wechat-home", "c0"]
    rest = api.get(f"{ADMIN}?limit=2&cursor={page['next_cursor']}", as_=op).json()
    assert [c["code"] for c in rest["items"]] == ["c1", "c2"]
    only = api.get(f"{ADMIN}?kind=poster_qr", as_=op).json()["items"]
    assert [c["code"] for c in only] == ["c1"]

    r = api.patch(
        f"{ADMIN}/{created['id']}",
        as_=op,
        json={"name": "微信首页", "kind": "other", "is_active": False},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["kind"], r.json()["is_active"]) == (
        "微信首页",
        "other",
        False,
    )
    assert r.json()["code"] == "wechat-home"
    inactive = api.get(f"{ADMIN}?is_active=false", as_=op).json()["items"]
    assert [c["code"] for c in inactive] == ["wechat-home"]
    assert api.patch(f"{ADMIN}/999999", as_=op, json={"name": "x"}).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"code": "a", "name": "短", "kind": "other"},
        {"code": "-abc", "name": "横线开头", "kind": "other"},
        {"code": "微信", "name": "中文", "kind": "other"},
        {"code": "has space", "name": "空格", "kind": "other"},
        {"code": "x" * 41, "name": "太长", "kind": "other"},
        {"code": "ok-code", "name": "", "kind": "other"},
        {"code": "ok-code", "name": "类型", "kind": "billboard"},
        {"code": "ok-code", "name": "类型"},
        {"code": "ok\x00code", "name": "NUL", "kind": "other"},
        {"code": 12345, "name": "数字", "kind": "other"},
    ],
)
def test_bad_channel_input_is_a_422(api: ApiClient, world: World, body: dict[str, Any]) -> None:
    r = api.post(ADMIN, as_=world.tokens["operator"], json=body)
    assert r.status_code == 422, r.text
    with world.db.transaction(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Channel)) == 0


def test_bad_update_and_query_input(api: ApiClient, world: World) -> None:
    op = world.tokens["operator"]
    channel_id = make_channel(world.db, "poster")
    assert api.patch(f"{ADMIN}/{channel_id}", as_=op, json={"kind": "x"}).status_code == 422
    assert api.patch(f"{ADMIN}/{channel_id}", as_=op, json={"name": ""}).status_code == 422
    assert api.patch(f"{ADMIN}/{2**70}", as_=op, json={"name": "x"}).status_code == 422
    assert api.get(f"{ADMIN}?limit=0", as_=op).status_code == 422
    assert api.get(f"{ADMIN}?cursor=abc", as_=op).status_code == 422
    assert api.get(f"{ADMIN}?kind=nope", as_=op).status_code == 422


# --- visit recording ---------------------------------------------------------------------------


def test_a_request_with_ch_records_one_visit_with_the_cookie_visitor(
    app: Any, db: Database, world: World
) -> None:
    make_channel(db, "wechat-home")
    with ApiClient(app) as api:
        r = api.get("/api/v1/categories?ch=WeChat-Home")
        assert r.status_code == 200
        vid = r.cookies.get(VISITOR_COOKIE)
        assert vid and len(vid) >= 16
        set_cookie = r.headers["set-cookie"]
        assert "Max-Age=63072000" in set_cookie and "HttpOnly" in set_cookie
        assert "SameSite=Lax" in set_cookie
        app.state.visit_recorder.flush()
        [visit] = visits(db)
        assert (visit.visitor_id, visit.path, visit.user_id) == (vid, "/api/v1/categories", None)

        # The browser sends the cookie back: same visitor, no new cookie.
        r = api.get("/api/v1/categories?ch=wechat-home")
        assert "set-cookie" not in r.headers
        # No ?ch=: nothing is recorded.
        api.get("/api/v1/categories")
        app.state.visit_recorder.flush()
        assert [v.visitor_id for v in visits(db)] == [vid, vid]


def test_header_channel_visitor_and_signed_in_user(app: Any, db: Database, world: World) -> None:
    make_channel(db, "partner")
    with ApiClient(app) as api:
        r = api.get(
            "/api/v1/me",
            as_=world.tokens["consumer"],
            headers={"X-Channel": "partner", "X-Visitor-Id": "app-device-0001"},
        )
        assert r.status_code == 200
        assert "set-cookie" not in r.headers  # the caller brought its own visitor id
        # A bad token still records the visit, without a user.
        api.get("/api/v1/categories?ch=partner", headers={"Authorization": "Bearer nonsense"})
        app.state.visit_recorder.flush()
    first, second = visits(db)
    assert (first.visitor_id, first.user_id, first.path) == (
        "app-device-0001",
        world.consumer_id,
        "/api/v1/me",
    )
    assert second.user_id is None


def test_unknown_inactive_and_malformed_codes_are_ignored(
    app: Any, db: Database, world: World
) -> None:
    make_channel(db, "paused", active=False)
    with ApiClient(app) as api:
        assert api.get("/api/v1/categories?ch=nope").status_code == 200
        assert api.get("/api/v1/categories?ch=paused").status_code == 200
        r = api.get("/api/v1/categories?ch=%3Cscript%3E")
        assert r.status_code == 200 and "set-cookie" not in r.headers
        assert api.get("/healthz?ch=nope").status_code == 200
        recorder = app.state.visit_recorder
        recorder.flush()
        assert visits(db) == []
        assert recorder.stats()["ignored"] == 2  # nope and paused; the others never queued


def test_shutdown_flushes_the_queue(app: Any, db: Database) -> None:
    make_channel(db, "poster")
    with ApiClient(app) as api:
        for _ in range(3):
            api.get("/api/v1/categories?ch=poster")
    assert len(visits(db)) == 3  # no explicit flush: the lifespan shutdown wrote them
    with ApiClient(app) as api:  # the app starts again: recording works again
        api.get("/api/v1/categories?ch=poster")
    assert len(visits(db)) == 4


def test_visitor_id_for_checkout(db: Database) -> None:
    """``visitor_id(request)``: the id assigned on this request, else header, else cookie."""
    app = FastAPI()
    install(app, db)

    @app.get("/who")
    def who(request: Request) -> dict[str, str | None]:
        return {"visitor_id": visitor_id(request)}

    make_channel(db, "qr")
    with TestClient(app) as client:
        assert client.get("/who").json() == {"visitor_id": None}
        assigned = client.get("/who?ch=qr")
        assert assigned.json()["visitor_id"] == assigned.cookies[VISITOR_COOKIE]
        assert client.get("/who").json() == assigned.json()  # from the cookie now
        header = client.get("/who", headers={"X-Visitor-Id": "device-12345678"})
        assert header.json() == {"visitor_id": "device-12345678"}
    with TestClient(app, cookies={VISITOR_COOKIE: "y"}) as client:
        bad = client.get("/who", headers={"X-Visitor-Id": "x"})
        assert bad.json() == {"visitor_id": None}


def test_the_queue_is_bounded_and_counts_what_it_drops(db: Database) -> None:
    make_channel(db, "flood")
    recorder = VisitRecorder(db, maxsize=3, flush_seconds=60)
    now = utcnow()
    accepted = [
        recorder.enqueue(Touch("flood", f"visitor-{i:04d}", "/", None, now)) for i in range(5)
    ]
    assert accepted == [True, True, True, False, False]
    assert recorder.stats()["dropped"] == 2
    recorder.stop()
    assert len(visits(db)) == 3 and recorder.stats()["recorded"] == 3


def test_flush_under_concurrency_loses_and_duplicates_nothing(db: Database) -> None:
    """Eight producers, the background thread flushing every 10 ms and two threads flushing by
    hand at the same time: every visit is written exactly once."""
    make_channel(db, "busy")
    recorder = VisitRecorder(db, maxsize=100_000, flush_seconds=0.01)
    producers, per_producer = 8, 400
    done = threading.Event()

    def produce(p: int) -> None:
        for i in range(per_producer):
            recorder.enqueue(Touch("busy", f"visitor-{p}-{i:05d}", f"/p/{i}", None, utcnow()))
            if i % 50 == 0:
                time.sleep(0.001)

    def flush_by_hand() -> None:
        while not done.is_set():
            recorder.flush(batch_size=97)

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    flushers = [threading.Thread(target=flush_by_hand) for _ in range(2)]
    for t in threads + flushers:
        t.start()
    for t in threads:
        t.join()
    done.set()
    for t in flushers:
        t.join()
    recorder.stop()
    rows = visits(db)
    assert len(rows) == producers * per_producer
    assert len({v.visitor_id for v in rows}) == producers * per_producer
    assert recorder.stats() == {
        "queued": 0,
        "recorded": producers * per_producer,
        "ignored": 0,
        "dropped": 0,
        "failed": 0,
    }


def test_a_batch_with_a_vanished_user_keeps_its_visits(db: Database) -> None:
    make_channel(db, "ad")
    recorder = VisitRecorder(db, flush_seconds=60)
    now = utcnow()
    recorder.enqueue(Touch("ad", "visitor-0001", "/", 987_654, now))  # no such user
    recorder.enqueue(Touch("ad", "visitor-0002", "/", None, now))
    recorder.stop()
    assert sorted((v.visitor_id, v.user_id) for v in visits(db)) == [
        ("visitor-0001", None),
        ("visitor-0002", None),
    ]


# --- linking and attribution -------------------------------------------------------------------


def test_signing_in_links_earlier_anonymous_visits(db: Database) -> None:
    make_channel(db, "ad")
    with db.transaction() as session:
        user_id = make_user(session).id
    recorder = VisitRecorder(db, flush_seconds=60)
    now = utcnow()
    recorder.enqueue(Touch("ad", "browser-0001", "/", None, now - timedelta(hours=2)))
    recorder.flush()
    recorder.enqueue(Touch("ad", "browser-0001", "/me", user_id, now))
    recorder.stop()
    assert [v.user_id for v in visits(db)] == [user_id, user_id]
    with db.transaction() as session:
        assert channels.link_visitor(session, "browser-0001", user_id) == 0
        assert channels.link_visitor(session, "bad id", user_id) == 0


@pytest.fixture
def touch(db: Database) -> Iterator[Any]:
    ids = {code: make_channel(db, code) for code in ("ch-a", "ch-b", "ch-c")}

    def add(code: str, visitor: str, ago: timedelta, user_id: int | None = None) -> None:
        with db.transaction() as session:
            channels.store_visits(
                session, [Touch(code, visitor, "/", user_id, utcnow() - ago)], ids
            )

    yield add


def test_attribution_is_last_touch_within_the_window(db: Database, touch: Any) -> None:
    day = timedelta(days=1)
    touch("ch-a", "visitor-aaaa", 8 * day)
    touch("ch-b", "visitor-aaaa", 3 * day)
    touch("ch-c", "visitor-aaaa", -day)  # in the future of "now": not a touch yet
    touch("ch-a", "visitor-old0", 7 * day + timedelta(minutes=1))
    now = utcnow()
    with db.transaction(readonly=True) as session:
        assert channels.attribute(session, "visitor-aaaa", None, now) == "ch-b"
        assert channels.attribute(session, "visitor-aaaa", None, now, window_days=2) is None
        assert channels.attribute(session, "visitor-aaaa", None, now, window_days=9) == "ch-b"
        assert (
            channels.attribute(session, "visitor-aaaa", None, now - 4 * day, window_days=7)
            == "ch-a"
        )
        # Just over 7 days ago: outside the default window.
        assert channels.attribute(session, "visitor-old0", None, now) is None
        assert channels.attribute(session, "visitor-old0", None, now, window_days=8) == "ch-a"
        assert channels.attribute(session, "visitor-none", None, now) is None
        assert channels.attribute(session, None, None, now) is None


def test_attribution_follows_the_user_across_devices(db: Database, touch: Any) -> None:
    with db.transaction() as session:
        user_id = make_user(session).id
    touch("ch-a", "phone-000001", timedelta(days=2), user_id)
    touch("ch-b", "laptop-00001", timedelta(days=1))
    with db.transaction(readonly=True) as session:
        # The laptop's visitor id is newer, the phone's visit knows the user: latest of both wins.
        assert channels.attribute(session, "laptop-00001", user_id) == "ch-b"
        assert channels.attribute(session, "tablet-00001", user_id) == "ch-a"
        assert channels.attribute(session, None, user_id) == "ch-a"


def test_explicit_channel_wins_and_unknown_ones_fall_back(db: Database, touch: Any) -> None:
    touch("ch-a", "visitor-aaaa", timedelta(hours=1))
    make_channel(db, "paused", active=False)
    with db.transaction(readonly=True) as session:
        assert channels.attribute(session, "visitor-aaaa", None, channel="CH-C") == "ch-c"
        assert channels.attribute(session, None, None, channel="ch-b") == "ch-b"
        assert channels.attribute(session, "visitor-aaaa", None, channel="nope") == "ch-a"
        assert channels.attribute(session, "visitor-aaaa", None, channel="paused") == "ch-a"
        assert channels.attribute(session, None, None, channel="<bad>") is None


def test_the_window_is_configurable(
    db: Database, touch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    touch("ch-a", "visitor-aaaa", timedelta(days=10))
    monkeypatch.setenv("O2O_ATTRIBUTION_WINDOW_DAYS", "14")
    channels.channel_settings.cache_clear()
    try:
        with db.transaction(readonly=True) as session:
            assert channels.attribute(session, "visitor-aaaa", None) == "ch-a"
        monkeypatch.setenv("O2O_ATTRIBUTION_WINDOW_DAYS", "7")
        channels.channel_settings.cache_clear()
        with db.transaction(readonly=True) as session:
            assert channels.attribute(session, "visitor-aaaa", None) is None
    finally:
        monkeypatch.delenv("O2O_ATTRIBUTION_WINDOW_DAYS")
        channels.channel_settings.cache_clear()


def test_attribution_sees_a_visit_not_yet_written(db: Database, touch: Any) -> None:
    """Landing and checking out within the flush interval still attributes the order."""
    touch("ch-a", "visitor-fast", timedelta(hours=1))
    recorder = VisitRecorder(db, flush_seconds=60)
    recorder.enqueue(Touch("ch-b", "visitor-fast", "/", None, utcnow()))
    recorder.enqueue(Touch("nope", "visitor-fast", "/", None, utcnow()))  # unknown: not it
    try:
        assert len(visits(db)) == 1  # only ch-a is written
        with db.transaction(readonly=True) as session:
            assert channels.attribute(session, "visitor-fast", None) == "ch-b"
            assert channels.attribute(session, "visitor-slow", None) is None
    finally:
        recorder.stop()
    with db.transaction(readonly=True) as session:
        assert channels.attribute(session, "visitor-fast", None) == "ch-b"


# --- demo --------------------------------------------------------------------------------------


def test_demo_channels_and_visits_are_idempotent(db: Database) -> None:
    with db.transaction() as session:
        first = channels_demo.load_demo(session)
    with db.transaction() as session:
        assert channels_demo.load_demo(session) == 0
    with db.transaction(readonly=True) as session:
        names = dict(session.execute(select(Channel.code, Channel.name)).all())
        assert names == {c[0]: c[1] for c in channels_demo.CHANNELS}
        count, oldest = session.execute(select(func.count(), func.min(Visit.created_at))).one()
    assert first == 4 + count and count > 1_000
    assert oldest >= utcnow() - timedelta(days=31)


# --- a real server -----------------------------------------------------------------------------


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """uvicorn serving the app on the test database (no demo, no worker, visits written only
    at shutdown)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("O2O_")}
    env |= {
        "O2O_DATABASE_URL": db_url,
        "O2O_SECRET_KEY": "s" * 48,
        "O2O_DEMO": "false",
        "O2O_SANDBOX_PAYMENTS": "true",
        "O2O_EMBEDDED_WORKER": "false",
        "O2O_DATA_DIR": str(tmp_path),
        "O2O_VISIT_FLUSH_SECONDS": "60",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "o2o.app:served_app", "--factory", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise AssertionError(proc.stdout.read().decode() if proc.stdout else "exited")
            time.sleep(0.1)
        else:
            raise AssertionError("server did not start")
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.mark.slow
def test_concurrent_visits_against_a_running_server(
    db: Database, server: tuple[str, subprocess.Popen[bytes]]
) -> None:
    """32 clients × 25 requests through a real server, then SIGTERM: every visit is written once
    (by the shutdown flush: the interval is 60 s)."""
    base, proc = server
    make_channel(db, "live")
    clients, per_client = 32, 25
    errors: list[str] = []

    def client(c: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            for i in range(per_client):
                r = http.get(
                    "/api/v1/categories",
                    params={"ch": "live"},
                    headers={"X-Visitor-Id": f"client-{c:03d}-{i:03d}"},
                )
                if r.status_code != 200:
                    errors.append(r.text)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert visits(db) == []  # still queued
    proc.terminate()
    assert proc.wait(timeout=30) in (0, -15)  # uvicorn re-raises SIGTERM after a clean shutdown
    rows = visits(db)
    assert len(rows) == clients * per_client
    assert len({v.visitor_id for v in rows}) == clients * per_client
