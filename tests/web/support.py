"""In-process page tests: a TestClient whose page session is signed in as a given user."""

from __future__ import annotations

import re
import time
from typing import Any

from fastapi.testclient import TestClient

from o2o.accounts.service import start_session
from o2o.web.session import SESSION_COOKIE, SESSION_MAX_AGE, encode_session, session_key

TOKEN = "t" * 43  # the CSRF token the crafted sessions carry


class PageClient(TestClient):
    def __init__(self, app: Any) -> None:
        super().__init__(app, raise_server_exceptions=False, follow_redirects=False)

    def sign_in(self, user_id: int | None) -> PageClient:
        """Act as ``user_id`` (None: an anonymous visitor who has loaded a form)."""
        data: dict[str, Any] = {"csrf": TOKEN, "iat": int(time.time())}
        if user_id is not None:
            data["uid"] = user_id
            with self.app.state.db.transaction() as session:
                data["sid"] = start_session(
                    session, user_id, kind="page", ttl_seconds=SESSION_MAX_AGE
                )
        value = encode_session(session_key(self.app.state.secret_key), data)
        self.cookies.clear()  # drop the cookie the server set last
        self.cookies.set(SESSION_COOKIE, value)
        return self

    def form_post(self, url: str, data: dict[str, Any] | None = None, *, token: bool = True) -> Any:
        body = dict(data or {})
        if token:
            body["csrf_token"] = TOKEN
        return self.post(url, data=body)


def field_error(html: str, field: str) -> str | None:
    match = re.search(rf'id="f-{field}-error"[^>]*>([^<]*)<', html)
    return match.group(1) if match else None
