"""What a page route gets: ``PageContext`` (who is calling, the database, render/redirect) and
the dependencies that check access the same way the API does.

    router = page_router()

    @router.get("/console/m/{merchant_id}/things", name="console_things")
    def things(page: ConsolePageDep) -> Response:
        with page.read() as session:
            rows = service.list_things(session, page.actor, page.merchant.id)
        return page.render("console/things.html", rows=rows)

Transactions: open them with ``page.read()`` / ``page.write()`` (or ``Form.submit``) inside the
route, never with the API's ``SessionDep``: an error raised in a ``with page.write()`` block rolls
it back before the error page or the form with its messages is rendered.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from o2o.accounts import service as accounts
from o2o.config import Settings
from o2o.db import Database
from o2o.merchants import service as merchants
from o2o.merchants.access import Actor, StaffRole, load_actor
from o2o.merchants.models import Merchant
from o2o.schemas import Id
from o2o.timeutil import utcnow
from o2o.web.csrf import verify_csrf
from o2o.web.session import REFRESH_AFTER, SESSION_MAX_AGE, PageSession, page_session
from o2o.web.templating import templates
from o2o.wechat import flows as wechat_flows
from o2o.wechat import service as wechat
from o2o.wechat.config import wechat_settings


def page_router(**kwargs: Any) -> APIRouter:
    """A router for pages: out of the OpenAPI schema, HTML by default, CSRF-checked (bodies are
    limited to PAGE_MAX_BODY by the session middleware)."""
    return APIRouter(
        include_in_schema=False,
        default_response_class=HTMLResponse,
        dependencies=[Depends(verify_csrf)],
        **kwargs,
    )


class WeChatAuthorize(Exception):
    """Raised by ``page_context`` inside WeChat without a session: rendered as a redirect to
    WeChat's silent web authorization (``snsapi_base``)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


class LoginRequired(Exception):
    """Raised by the dependencies; rendered as a redirect to the login page."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def safe_next(url: str | None, default: str = "/") -> str:
    """A local path to go back to after login; anything else (other sites) becomes ``default``."""
    if not url or len(url) > 1000 or not url.startswith("/") or url.startswith(("//", "/\\")):
        return default
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in url):
        return default
    return url


def login_url(next_url: str) -> str:
    return "/login?next=" + quote(safe_next(next_url), safe="/")


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


@dataclass
class PageContext:
    request: Request
    db: Database
    settings: Settings
    actor: Actor | None
    # "consumer" | "console" | "admin": picks the layout's nav.
    area: str = "consumer"
    # Console pages: the merchant in the URL and the caller's role there.
    merchant: Merchant | None = None
    role: StaffRole | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def session(self) -> PageSession:
        return page_session(self.request)

    @property
    def is_htmx(self) -> bool:
        return is_htmx(self.request)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.db.transaction(readonly=True) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        with self.db.transaction() as session:
            yield session

    def render(
        self,
        template: str,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        return templates.TemplateResponse(
            self.request,
            template,
            {"page": self, **context},
            status_code=status_code,
            headers=headers,
        )

    def flash(self, message: str, kind: str = "success") -> None:
        self.session.flash(message, kind)

    def redirect(self, url: str, *, flash: str | None = None, kind: str = "success") -> Response:
        """POST → redirect → GET (303); htmx requests get ``HX-Redirect`` instead."""
        if flash:
            self.flash(flash, kind)
        if self.is_htmx:
            return Response(status_code=200, headers={"HX-Redirect": url})
        return RedirectResponse(url, status_code=303)


def page_context(request: Request) -> PageContext:
    """Every page: the signed-in actor (from the page session) or None. A cookie whose
    server-side session was ended (退出, password changed, signed out everywhere) or has expired
    is worth nothing; a live one is extended once a day of use."""
    session = page_session(request)
    db: Database = request.app.state.db
    actor = None
    if session.user_id is not None:
        sid = session.session_id
        extend = False
        with db.transaction(readonly=True) as s:
            live = accounts.live_session_user(s, session.user_id, sid) if sid else None
            if live is None:
                session.logout()  # revoked, expired or the account is gone
            else:
                user, expires_at = live
                actor = load_actor(s, user)
                extend = (expires_at - utcnow()).total_seconds() < SESSION_MAX_AGE - REFRESH_AFTER
        if extend and sid:
            with db.transaction() as s:
                accounts.extend_session(s, sid, SESSION_MAX_AGE)
    settings = request.app.state.settings
    if actor is None:
        authorize = wechat_authorization_url(request, session, settings)
        if authorize:
            raise WeChatAuthorize(authorize)
    return PageContext(request, db, settings, actor)


# Pages that never start a WeChat authorization: the callback itself, and signing in by phone.
NO_WECHAT_AUTHORIZATION = ("/wechat/", "/login", "/register", "/logout")


def wechat_authorization_url(
    request: Request, session: PageSession, settings: Settings
) -> str | None:
    """Where a visitor without a session goes first inside WeChat (公众号 configured): WeChat's
    silent authorization, with a state bound to this browser's session and the page to come back
    to (a local path). None: show the page as it is."""
    if request.method != "GET" or is_htmx(request):
        return None
    if not wechat.is_wechat_browser(request.headers.get("user-agent")):
        return None
    if request.url.path.startswith(NO_WECHAT_AUTHORIZATION):
        return None
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return wechat_authorize(session, settings, target)


def wechat_authorize(
    session: PageSession, settings: Settings, target: str, *, bind: bool = False
) -> str | None:
    """WeChat's silent authorization coming back to ``target``; ``bind``: for the account
    signed in now. None when the 公众号 is not configured or a recent attempt failed."""
    if not wechat_settings(settings).oauth_enabled or not wechat.should_authorize(session):
        return None
    state = wechat.new_state(session, safe_next(target), bind=bind)
    redirect_uri = settings.public_base_url.rstrip("/") + wechat.CALLBACK_PATH
    return wechat_flows.client(settings).authorize_url(redirect_uri, state)


PageDep = Annotated[PageContext, Depends(page_context)]


def signed_in_page(page: PageDep) -> PageContext:
    if page.actor is None:
        request = page.request
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target if request.method == "GET" else "/")
    return page


SignedInPageDep = Annotated[PageContext, Depends(signed_in_page)]


def admin_page(page: SignedInPageDep) -> PageContext:
    """Operator pages: the same rule as the API's AdminDep (403 for everybody else)."""
    assert page.actor is not None
    page.actor.require_admin()
    page.area = "admin"
    return page


AdminPageDep = Annotated[PageContext, Depends(admin_page)]


def console_page(merchant_id: Id, page: SignedInPageDep) -> PageContext:
    """Merchant console pages under /console/m/{merchant_id}: staff of that merchant only."""
    assert page.actor is not None
    page.role = page.actor.require_staff(merchant_id)
    with page.read() as session:
        page.merchant = merchants.get_merchant(session, merchant_id)
    page.area = "console"
    return page


ConsolePageDep = Annotated[PageContext, Depends(console_page)]
