"""Page sessions: a signed cookie (HMAC-SHA256), HttpOnly, SameSite=Lax, Secure on https.

The cookie carries a small JSON dict (user id, the id of its server-side session row, CSRF token,
flash messages, chosen location); nothing secret is in it, and the signature stops anyone from
changing it. The server-side row (``user_sessions``) is what makes a cookie revocable: 退出, a
password change or "sign out everywhere" delete it, and ``o2o.web.context`` refuses a cookie
whose row is gone. It is read and written
only for page paths: the API never looks at it (API callers use bearer tokens, which need no
CSRF protection), so ``request.state.session_user_id`` is deliberately left unset — page routes
find their user through ``o2o.web.context`` instead.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SESSION_COOKIE = "o2o_session"
# A signed-in session lasts two weeks after its last refresh; it is refreshed once a day of use.
SESSION_MAX_AGE = 14 * 24 * 3600
REFRESH_AFTER = 24 * 3600
_KEY_PURPOSE = b"o2o.web.session.v1"
# A page form never needs more; a larger body gets the 413 page (in Chinese) before parsing.
PAGE_MAX_BODY = 512 * 1024

# Paths that are not pages: the API, its docs, health checks and static files.
NON_PAGE_PREFIXES = ("/api/", "/static/", "/media/")
NON_PAGE_PATHS = frozenset(
    {"/api", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/healthz", "/readyz"}
)

# Sent with every page (not with the API or static files).
PAGE_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # No inline scripts: page JavaScript lives in static files (htmx, app.js).
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; "
        "form-action 'self'"
    ),
    # Pages show personal data: never keep them in shared caches.
    "Cache-Control": "private, no-store",
}


def is_page_path(path: str) -> bool:
    return path not in NON_PAGE_PATHS and not path.startswith(NON_PAGE_PREFIXES)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def session_key(secret: str) -> bytes:
    """A key for this purpose only, derived from the app secret (tokens use the secret itself)."""
    return hmac.new(secret.encode(), _KEY_PURPOSE, hashlib.sha256).digest()


def encode_session(key: bytes, data: dict[str, Any]) -> str:
    payload = _b64encode(json.dumps(data, separators=(",", ":"), ensure_ascii=True).encode())
    signature = _b64encode(hmac.new(key, payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{signature}"


def decode_session(key: bytes, value: str, *, now: float | None = None) -> dict[str, Any] | None:
    """The dict in a cookie that we signed and that has not expired; else None."""
    payload, _, signature = value.partition(".")
    if not payload or not signature or len(value) > 4096:
        return None
    expected = _b64encode(hmac.new(key, payload.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, signature):
        return None
    try:
        data = json.loads(_b64decode(payload))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(data, dict):
        return None
    issued = data.get("iat")
    now = time.time() if now is None else now
    if not isinstance(issued, int | float) or not 0 <= now - issued <= SESSION_MAX_AGE:
        return None
    return data


class PageSession(dict[str, Any]):
    """The session of one browser; changes are saved in the response cookie."""

    def __init__(self, data: dict[str, Any] | None = None) -> None:
        super().__init__(data or {})
        self.modified = False

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.modified = True

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.modified = True

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self.modified = True
        return super().pop(key, *default)

    def update(self, *args: Any, **kw: Any) -> None:  # type: ignore[override]
        super().update(*args, **kw)
        self.modified = True

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self.modified = True
        return super().setdefault(key, default)

    def clear(self) -> None:
        if self:
            self.modified = True
        super().clear()

    @property
    def user_id(self) -> int | None:
        uid = self.get("uid")
        return uid if isinstance(uid, int) and not isinstance(uid, bool) else None

    def csrf_token(self) -> str:
        token = self.get("csrf")
        if not isinstance(token, str) or len(token) < 32:
            token = secrets.token_urlsafe(32)
            self["csrf"] = token
        return token

    @property
    def session_id(self) -> str | None:
        """The server-side session (``user_sessions``) this cookie stands for."""
        sid = self.get("sid")
        return sid if isinstance(sid, str) else None

    def login(self, user_id: int, session_id: str) -> None:
        """A fresh session for a user: nothing carries over from before sign-in (fixation),
        except the visitor's chosen location and shopping cart (no rights in either)."""
        kept = {k: self[k] for k in ("loc", "cart") if self.get(k) is not None}
        self.clear()
        self["uid"] = user_id
        self["sid"] = session_id
        self["csrf"] = secrets.token_urlsafe(32)
        self.update(kept)

    def logout(self) -> None:
        self.clear()
        self["csrf"] = secrets.token_urlsafe(32)

    def flash(self, message: str, kind: str = "success") -> None:
        self["flash"] = [*self.get("flash", []), [kind, message]][-5:]

    def pop_flashes(self) -> list[tuple[str, str]]:
        if "flash" not in self:
            return []
        return [(str(k), str(m)) for k, m in self.pop("flash") or []]


def page_session(conn: HTTPConnection) -> PageSession:
    session = conn.scope.get("session")
    if not isinstance(session, PageSession):
        # A page path always has one (the middleware puts it there); this is a programming error.
        raise RuntimeError("page session missing: is PageSessionMiddleware installed?")
    return session


def _limit_body(scope: Scope, receive: Receive, limit: int) -> Receive:
    """Refuse a body over ``limit`` bytes (declared or streamed) with a 413 that the page error
    handlers render; raised from ``receive`` so it travels through the app's exception handling."""
    declared = HTTPConnection(scope).headers.get("content-length", "")
    total = 0

    async def limited() -> Message:
        nonlocal total
        if declared.isdigit() and int(declared) > limit:
            raise HTTPException(413)
        message = await receive()
        if message["type"] == "http.request":
            total += len(message.get("body", b""))
            if total > limit:
                raise HTTPException(413)
        return message

    return limited


class PageSessionMiddleware:
    """Loads the signed cookie into ``scope["session"]`` for page paths and saves it back."""

    def __init__(self, app: ASGIApp, *, secret_key: str, secure: bool) -> None:
        self.app = app
        self.key = session_key(secret_key)
        self.secure = secure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_page_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        raw = conn.cookies.get(SESSION_COOKIE)
        data = decode_session(self.key, raw) if raw else None
        session = PageSession(data)
        scope["session"] = session
        if scope.get("method") not in ("GET", "HEAD", "OPTIONS"):
            receive = _limit_body(scope, receive, PAGE_MAX_BODY)

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                self._save(session, had_cookie=raw is not None, headers=headers)
                for name, value in PAGE_SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _save(self, session: PageSession, *, had_cookie: bool, headers: MutableHeaders) -> None:
        now = time.time()
        stale = session.user_id is not None and now - session.get("iat", 0) > REFRESH_AFTER
        if not (session.modified or stale):
            return
        if not session:
            if had_cookie:
                headers.append("Set-Cookie", self._cookie("", max_age=0))
            return
        session["iat"] = int(now)
        headers.append(
            "Set-Cookie", self._cookie(encode_session(self.key, dict(session)), SESSION_MAX_AGE)
        )

    def _cookie(self, value: str, max_age: int) -> str:
        parts = [f"{SESSION_COOKIE}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly"]
        parts.append("SameSite=Lax")
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)
