"""What every HTTP response gets, whatever route made it:

* the API (and the OpenAPI document, health checks, static files) the same protective headers
  as pages (``o2o.web.session.PAGE_SECURITY_HEADERS`` are set for pages by the page session
  middleware): no MIME sniffing, no framing, no referrer, and for JSON a Content-Security-Policy
  that allows nothing and ``Cache-Control: no-store`` (answers carry personal data) unless the
  route chose its own;
* ``HEAD`` answered wherever ``GET`` is: the GET route runs and the body is dropped, so headers
  (``Content-Length`` included) are exactly those of the GET.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from o2o.web.session import is_page_path

API_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
}
# Swagger UI / ReDoc pages load their own scripts and styles: only the headers that cannot
# break them.
DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
DOCS_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}
STATIC_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}


def _headers_for(path: str) -> dict[str, str]:
    if path in DOCS_PATHS:
        return DOCS_HEADERS
    if path.startswith(("/static/", "/media/")):
        return STATIC_HEADERS
    return API_SECURITY_HEADERS


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_page_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        wanted = _headers_for(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in wanted.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HeadAsGetMiddleware:
    """Route a HEAD like the GET of the same URL and send no body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {"type": "http.response.body", "body": b"", "more_body": False}
                if sent_end:
                    return
                sent_end.append(True)
            await send(message)

        sent_end: list[bool] = []
        await self.app({**scope, "method": "GET"}, receive, send_without_body)
