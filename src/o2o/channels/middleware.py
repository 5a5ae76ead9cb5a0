"""Visit recording for ``?ch=CODE`` / ``X-Channel: CODE``, kept off the request path.

A pure ASGI middleware notices the channel code (a bytes check on the query string and one pass
over the headers — nothing at all for requests without one), picks the visitor id (header
``X-Visitor-Id``, else cookie ``o2o_vid``, else a new random one set as a long-lived cookie) and
puts a ``Touch`` on a bounded in-process queue. It never touches the database. A background thread
writes the queue in batches every ``O2O_VISIT_FLUSH_SECONDS``, resolving codes to channels there:
unknown or inactive codes are dropped silently. When the queue is full the visit is dropped and
counted (``recorder.stats()``): pages never wait for the ledger of visits.

Shutdown (ASGI lifespan) flushes what is left. Checkout reads the visitor id with
``visitor_id(request)`` and calls ``o2o.channels.service.attribute``.
"""

from __future__ import annotations

import logging
import secrets
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

import anyio
from fastapi import FastAPI, Request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from o2o.channels.service import (
    ChannelSettings,
    Touch,
    active_channel_ids,
    channel_settings,
    link_visitor,
    normalize_code,
    store_visits,
    valid_visitor_id,
)
from o2o.db import Database
from o2o.errors import Unauthorized
from o2o.security import read_token
from o2o.timeutil import utcnow

log = logging.getLogger(__name__)

VISITOR_COOKIE = "o2o_vid"
VISITOR_COOKIE_MAX_AGE = 2 * 365 * 24 * 3600
SKIPPED_PATHS = ("/static/", "/healthz", "/readyz", "/favicon.ico")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def new_visitor_id() -> str:
    return secrets.token_urlsafe(18)  # 24 characters, 144 random bits


class VisitRecorder:
    """A bounded queue of touches and the thread that writes them (one per app per process)."""

    def __init__(self, db: Database, *, maxsize: int = 10_000, flush_seconds: float = 0.5) -> None:
        self.db = db
        self.flush_seconds = flush_seconds
        # deque.append/popleft are atomic: the request side takes no lock at all.
        self._queue: deque[Touch] = deque()
        self.maxsize = maxsize
        self._flush_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._inflight: list[Touch] = []
        self.recorded = 0
        self.ignored = 0
        self.dropped = 0
        self.failed = 0
        _register(self)

    # -- request side (must stay cheap) --------------------------------------------------------

    def enqueue(self, touch: Touch) -> bool:
        if self._thread is None:
            self.start()
        if len(self._queue) >= self.maxsize:
            self.dropped += 1  # a lost visit is better than a slow page
            if self.dropped in (1, 100) or self.dropped % 10_000 == 0:
                log.warning("visit queue full: %d visits dropped so far", self.dropped)
            return False
        self._queue.append(touch)
        return True

    # -- background side -----------------------------------------------------------------------

    def start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="o2o-visit-recorder", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception:  # the thread must survive anything a batch throws
                log.exception("visit flush failed")

    def reset(self) -> None:
        """Allow a stopped recorder to run again (an app started a second time, as tests do)."""
        with self._start_lock:
            if self._stop.is_set():
                self._stop.clear()
                self._thread = None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread and write what is still queued."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        self.flush()

    def flush(self, batch_size: int = 2_000) -> int:
        """Write everything queued now; returns how many visits were stored. Thread-safe."""
        stored = 0
        with self._flush_lock:
            while True:
                batch: list[Touch] = []
                try:
                    while len(batch) < batch_size:
                        batch.append(self._queue.popleft())
                except IndexError:
                    pass
                if not batch:
                    return stored
                self._inflight = batch
                try:
                    stored += self._write(batch)
                finally:
                    self._inflight = []

    def _write(self, batch: list[Touch]) -> int:
        try:
            with self.db.transaction() as session:
                stored = self._store(session, batch, with_users=True)
        except IntegrityError:
            # A user id that no longer exists must not cost the whole batch its visits.
            log.warning("visit batch refused; storing it without user ids")
            try:
                with self.db.transaction() as session:
                    stored = self._store(session, batch, with_users=False)
            except Exception:
                log.exception("visit batch lost (%d visits)", len(batch))
                self.failed += len(batch)
                return 0
        except Exception:
            log.exception("visit batch lost (%d visits)", len(batch))
            self.failed += len(batch)
            return 0
        self.recorded += stored
        self.ignored += len(batch) - stored
        return stored

    @staticmethod
    def _store(session: Session, batch: list[Touch], *, with_users: bool) -> int:
        # One read per batch keeps codes current (a deactivated channel stops at once).
        channel_ids = active_channel_ids(session)
        touches = batch if with_users else [_anonymous(t) for t in batch]
        stored = store_visits(session, touches, channel_ids)
        if with_users:
            for vid, user_id in {(t.visitor_id, t.user_id) for t in batch if t.user_id}:
                link_visitor(session, vid, user_id)
        return stored

    # -- attribution support -------------------------------------------------------------------

    def pending(
        self, visitor_id: str | None, user_id: int | None, since: datetime, until: datetime
    ) -> list[Touch]:
        """Touches not yet written for this visitor or user, inside the window."""
        waiting = list(self._queue)  # copied in one C call: safe against concurrent appends
        return [
            t
            for t in [*self._inflight, *waiting]
            if since < t.at <= until
            and (
                (visitor_id is not None and t.visitor_id == visitor_id)
                or (user_id is not None and t.user_id == user_id)
            )
        ]

    def stats(self) -> dict[str, int]:
        return {
            "queued": len(self._queue),
            "recorded": self.recorded,
            "ignored": self.ignored,
            "dropped": self.dropped,
            "failed": self.failed,
        }


def _anonymous(t: Touch) -> Touch:
    return t._replace(user_id=None)


# Recorders by database URL, so attribution can see touches this process has not written yet.
_recorders: dict[str, weakref.WeakSet[VisitRecorder]] = {}
_registry_lock = threading.Lock()


def _url_key(url: Any) -> str:
    return url.render_as_string(hide_password=False)


def _register(recorder: VisitRecorder) -> None:
    with _registry_lock:
        _recorders.setdefault(_url_key(recorder.db.engine.url), weakref.WeakSet()).add(recorder)


def pending_touches(
    session: Session,
    visitor_id: str | None,
    user_id: int | None,
    since: datetime,
    until: datetime,
) -> list[Touch]:
    """This process's unwritten touches for the visitor or user (same database), newest first."""
    with _registry_lock:
        recorders = list(_recorders.get(_url_key(session.get_bind().engine.url), ()))
    found = [t for r in recorders for t in r.pending(visitor_id, user_id, since, until)]
    return sorted(found, key=lambda t: t.at, reverse=True)


# --- the middleware ----------------------------------------------------------------------------


WANTED_HEADERS = frozenset({b"x-channel", b"x-visitor-id", b"cookie", b"authorization"})


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The few headers this middleware reads, in one pass."""
    return {k: v for k, v in scope.get("headers", ()) if k in WANTED_HEADERS}


def _cookie(header: bytes | None, name: str) -> str | None:
    if not header:
        return None
    for part in header.decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value.strip('"')
    return None


def channel_code(scope: Scope, headers: dict[bytes, bytes]) -> str | None:
    """``?ch=`` wins over ``X-Channel``; a malformed code counts as none."""
    query = scope.get("query_string", b"")
    if b"ch=" in query:
        for part in query.split(b"&"):
            if part.startswith(b"ch="):
                value = part[3:].decode("latin-1")
                return normalize_code(
                    unquote_plus(value) if "%" in value or "+" in value else value
                )
    header = headers.get(b"x-channel")
    return normalize_code(header.decode("latin-1")) if header else None


def _user_id(scope: Scope, headers: dict[bytes, bytes]) -> int | None:
    # A page session (o2o.web, installed outside this middleware) knows its user already.
    page_user = getattr(scope.get("session"), "user_id", None)
    if isinstance(page_user, int):
        return page_user
    state = scope.get("state") or {}
    if isinstance(state.get("session_user_id"), int):
        return state["session_user_id"]
    auth = headers.get(b"authorization")
    if not auth or auth[:7].lower() != b"bearer ":
        return None
    app = scope.get("app")
    secret = getattr(getattr(app, "state", None), "secret_key", None)
    if not secret:
        return None
    try:
        return read_token(secret, auth[7:].decode("latin-1").strip())
    except Unauthorized:
        return None


class ChannelMiddleware:
    def __init__(self, app: ASGIApp, recorder: VisitRecorder) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._on_shutdown(receive), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        code = channel_code(scope, headers)
        path = scope.get("path", "")
        if code is None or path.startswith(SKIPPED_PATHS):
            await self.app(scope, receive, send)
            return
        visitor = valid_visitor_id(_decode(headers.get(b"x-visitor-id"))) or valid_visitor_id(
            _cookie(headers.get(b"cookie"), VISITOR_COOKIE)
        )
        is_new = visitor is None
        if visitor is None:
            visitor = new_visitor_id()
        scope.setdefault("state", {})["visitor_id"] = visitor
        self.recorder.enqueue(Touch(code, visitor, path, _user_id(scope, headers), utcnow()))
        if not is_new:
            await self.app(scope, receive, send)
            return
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = (
            f"{VISITOR_COOKIE}={visitor}; Max-Age={VISITOR_COOKIE_MAX_AGE}; Path=/; "
            f"SameSite=Lax; HttpOnly{secure}"
        ).encode("latin-1")

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie)]
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _on_shutdown(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.recorder.reset()
            elif message["type"] == "lifespan.shutdown":
                await anyio.to_thread.run_sync(self.recorder.stop)
            return message

        return wrapped


def _decode(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None


def visitor_id(request: Request) -> str | None:
    """The caller's anonymous visitor id (for attribution at checkout), or None."""
    assigned = getattr(request.state, "visitor_id", None)
    if assigned:
        return assigned
    return valid_visitor_id(request.headers.get("x-visitor-id")) or valid_visitor_id(
        request.cookies.get(VISITOR_COOKIE)
    )


def install(app: FastAPI, db: Database, settings: ChannelSettings | None = None) -> VisitRecorder:
    """Add the middleware and its recorder to an app (``app.state.visit_recorder``)."""
    settings = settings or channel_settings()
    recorder = VisitRecorder(
        db, maxsize=settings.visit_queue_size, flush_seconds=settings.visit_flush_seconds
    )
    app.state.visit_recorder = recorder
    app.add_middleware(ChannelMiddleware, recorder=recorder)
    return recorder
