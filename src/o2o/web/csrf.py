"""CSRF protection for pages: one random token per session, checked on every unsafe request.

Forms send it as the hidden field ``csrf_token`` (``{{ csrf_input() }}`` in a template); htmx
sends it as the ``X-CSRF-Token`` header (``hx-headers`` on <body> in base.html). Every page router
made by ``o2o.web.context.page_router()`` runs :func:`verify_csrf` for POST/PUT/PATCH/DELETE before
the route's own code, so a page author cannot forget it; tests/web walks every page route to make
sure. The session cookie is also SameSite=Lax, which already keeps most cross-site POSTs out.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from o2o.errors import Forbidden
from o2o.web.session import page_session

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def csrf_token(request: Request) -> str:
    """The session's token (created on first use; the response then sets the cookie)."""
    return page_session(request).csrf_token()


class CsrfFailed(Forbidden):
    code = "csrf_failed"
    title = "页面已过期"


async def verify_csrf(request: Request) -> None:
    """Router dependency: refuse an unsafe request whose token is missing or wrong (403)."""
    if request.method in SAFE_METHODS:
        return
    expected = page_session(request).get("csrf")
    supplied = request.headers.get(CSRF_HEADER)
    if not supplied and request.headers.get("content-type", "").startswith(FORM_TYPES):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        supplied = value if isinstance(value, str) else None
    if (
        not isinstance(expected, str)
        or not supplied
        or not hmac.compare_digest(expected.encode(), supplied.encode())
    ):
        raise CsrfFailed("页面已过期或来源不明，请刷新页面后重试")
