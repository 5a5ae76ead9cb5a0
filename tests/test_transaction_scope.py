"""A request's transaction ends before its response is sent (issue 16).

``deps.write_session`` is a ``yield`` dependency. FastAPI runs a ``yield`` dependency's exit code
after the response has been sent unless the dependency is declared with ``scope="function"``:
then a client could act on a 201 before the commit, and a commit that failed would follow a
success. These tests pin the behaviour down without timing luck:

- every ``yield`` dependency of every route of the app is function-scoped (a new route or a
  dependency declared without the scope fails here);
- the order of events seen by the server for real requests: the commit (or the rollback) comes
  before ``http.response.start``, for API writes, reads, refused writes and a page form;
- a commit that fails becomes an error response (problem+json) and nothing is kept.

The live-server check (many write-then-read pairs on both databases) is
``tests/test_read_your_writes.py``.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import fastapi.routing
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.types import Message, Receive, Scope, Send

from o2o import deps
from o2o.accounts.models import User
from o2o.db import Database
from tests.support import PASSWORD, ApiClient, World, next_phone
from tests.web.support import PageClient


def _tree(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _tree(sub)


def _is_yield_dependency(dependant: Dependant) -> bool:
    call = inspect.unwrap(dependant.call) if dependant.call else None
    return inspect.isgeneratorfunction(call) or inspect.isasyncgenfunction(call)


def _routes(app: FastAPI) -> Iterator[Any]:
    """Every HTTP route as served: FastAPI 0.165 keeps included routers lazily
    (``iter_route_contexts`` resolves them with the router-level dependencies); older versions
    list plain ``APIRoute`` objects."""
    iter_route_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    routes = iter_route_contexts(app.routes) if iter_route_contexts else app.routes
    for route in routes:
        if getattr(route, "dependant", None) is not None:
            yield route


def test_every_yield_dependency_of_every_route_ends_before_the_response(app: FastAPI) -> None:
    late = []
    writes = set()
    for route in _routes(app):
        for dep in _tree(route.dependant):
            if dep.call is deps.write_session:
                writes.add(route.path)
            if _is_yield_dependency(dep) and dep.scope != "function":
                late.append(f"{sorted(route.methods)} {route.path}: {dep.call}")
    assert late == [], "yield dependencies that would end after the response:\n" + "\n".join(late)
    # Not vacuous: the walk found the write routes (merchants, stores, listings, …). Register
    # is not one: it hashes the password first, then opens its own transaction (accounts.flows).
    assert {"/api/v1/merchants", "/api/v1/merchants/{merchant_id}/stores/{store_id}"} <= writes
    assert len(writes) > 20


class Timeline:
    """What the server did, in order: transactions ended and responses started."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self._lock = threading.Lock()

    def add(self, what: str) -> None:
        with self._lock:
            self.events.append(what)

    def clear(self) -> None:
        with self._lock:
            self.events.clear()

    def wrap(self, app: FastAPI) -> RecordedApp:
        return RecordedApp(app, self)


class RecordedApp:
    """The app, with each ``http.response.start`` it sends added to the timeline."""

    def __init__(self, app: FastAPI, timeline: Timeline) -> None:
        self.app = app
        self.state = app.state  # the test clients read the secret key from here
        self.timeline = timeline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_and_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.timeline.add(f"response {message['status']}")
            await send(message)

        await self.app(scope, receive, send_and_record)


@pytest.fixture
def timeline() -> Iterator[Timeline]:
    recorded = Timeline()

    def committed(_session: Session) -> None:
        recorded.add("commit")

    def rolled_back(_session: Session) -> None:
        recorded.add("rollback")

    event.listen(Session, "after_commit", committed)
    event.listen(Session, "after_rollback", rolled_back)
    try:
        yield recorded
    finally:
        event.remove(Session, "after_commit", committed)
        event.remove(Session, "after_rollback", rolled_back)


class RecordingClient(ApiClient):
    def __init__(self, app: FastAPI, timeline: Timeline) -> None:
        super().__init__(timeline.wrap(app))
        self.timeline = timeline

    def events_of(self, method: str, url: str, **kw: Any) -> tuple[Any, list[str]]:
        self.timeline.clear()
        response = getattr(self, method)(url, **kw)
        return response, list(self.timeline.events)


def test_writes_commit_before_the_response_starts(
    app: FastAPI, world: World, timeline: Timeline
) -> None:
    with RecordingClient(app, timeline) as api:
        phone = next_phone()
        body = {"phone": phone, "password": PASSWORD, "name": "新用户"}
        r, events = api.events_of("post", "/api/v1/auth/register", json=body)
        assert r.status_code == 201, r.text
        assert events == ["commit", "response 201"]

        url = f"/api/v1/merchants/{world.a.id}/stores/{world.a.store_ids[0]}"
        owner = world.tokens["owner"]
        r, events = api.events_of("patch", url, json={"opening_hours": "08:00-20:00"}, as_=owner)
        assert r.status_code == 200, r.text
        # The actor is loaded in its own read transaction first; the write's commit comes last.
        assert events[-2:] == ["commit", "response 200"], events

        r, events = api.events_of("get", url, as_=owner)
        assert r.json()["opening_hours"] == "08:00-20:00"
        assert events[-2:] == ["commit", "response 200"], events  # the read ended first too


def test_refused_writes_roll_back_before_the_error_response(
    app: FastAPI, world: World, timeline: Timeline
) -> None:
    with RecordingClient(app, timeline) as api:
        taken = {"phone": world.phones["consumer"], "password": PASSWORD, "name": "重复"}
        r, events = api.events_of("post", "/api/v1/auth/register", json=taken)
        assert r.status_code == 409, r.text
        assert events == ["rollback", "response 409"]
        # Another merchant's store: refused inside the write transaction.
        url = f"/api/v1/merchants/{world.b.id}/stores/{world.b.store_ids[0]}"
        r, events = api.events_of(
            "patch", url, json={"opening_hours": "x"}, as_=world.tokens["owner"]
        )
        assert r.status_code in (403, 404), r.text
        assert events[-2:] == ["rollback", f"response {r.status_code}"], events


def test_page_forms_commit_before_the_response_starts(
    app: FastAPI, world: World, timeline: Timeline
) -> None:
    with PageClient(timeline.wrap(app)) as pages:
        client = pages.sign_in(None)
        timeline.clear()
        r = client.form_post(
            "/register",
            {
                "phone": next_phone(),
                "name": "小李",
                "password": "long-pass-1",
                "password_confirm": "long-pass-1",
            },
        )
        assert r.status_code == 303, r.text
        assert timeline.events[-2:] == ["commit", "response 303"], timeline.events


@contextmanager
def failing_commits(error: Exception) -> Iterator[list[Session]]:
    """Every commit raises ``error`` (as a full disk or a lost connection would)."""
    seen: list[Session] = []

    def refuse(session: Session) -> None:
        seen.append(session)
        raise error

    event.listen(Session, "before_commit", refuse)
    try:
        yield seen
    finally:
        event.remove(Session, "before_commit", refuse)


def test_a_failed_commit_is_an_error_response_and_keeps_nothing(app: FastAPI, db: Database) -> None:
    phone = next_phone()
    body = {"phone": phone, "password": PASSWORD, "name": "新用户"}
    with ApiClient(app) as api:
        lost = OperationalError("COMMIT", {}, Exception("disk I/O error"))
        with failing_commits(lost) as seen:
            r = api.post("/api/v1/auth/register", json=body)
        assert seen, "the commit was never attempted"
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "database_unavailable"

        with failing_commits(RuntimeError("commit failed")):
            r = api.post("/api/v1/auth/register", json=body)
        assert r.status_code == 500, r.text
        assert r.json()["code"] == "internal_error"

        with db.transaction(readonly=True) as session:
            assert session.scalar(select(func.count()).where(User.phone == phone)) == 0
        # Nothing half-done: the same registration goes through once commits work again.
        assert api.post("/api/v1/auth/register", json=body).status_code == 201
