"""The Jinja2 environment every page renders with: filters, globals and static URLs.

Filters: ``yuan`` (fen → ¥12.34), ``china_time`` (aware UTC → 北京时间 text), ``percent_bp``
(basis points → 6.5%), ``mask_phone`` (139****0001), ``label`` (a code through a dict of labels).
Globals: ``csrf_input()``, ``csrf_token()``, ``static_url(path)``, ``page_url(name, **params)``
(None when no such page exists yet), ``nav(area)``, ``flashes()``, ``slot(name)``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from markupsafe import Markup
from starlette.routing import NoMatchFound
from starlette.templating import Jinja2Templates

from o2o.money import format_yuan
from o2o.timeutil import format_china
from o2o.web.csrf import CSRF_FIELD, csrf_token

WEB_DIR = Path(__file__).parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"


def yuan(fen: int | None) -> str:
    return "—" if fen is None else format_yuan(int(fen))


def china_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return format_china(value, fmt) if value is not None else "—"


def percent_bp(bp: int | None) -> str:
    """600 → 6%, 650 → 6.5%, 1234 → 12.34% (exact: integers only)."""
    if bp is None:
        return "—"
    text = f"{bp // 100}.{bp % 100:02d}".rstrip("0").rstrip(".")
    return f"{text}%"


def bp_to_percent_input(bp: int | None) -> str:
    """The value an input shows for a rate: 650 → "6.5"."""
    return "" if bp is None else percent_bp(bp).removesuffix("%")


def mask_phone(phone: str | None) -> str:
    if not phone or len(phone) < 7:
        return phone or ""
    return f"{phone[:3]}****{phone[-4:]}"


def label(value: Any, labels: dict[Any, str]) -> str:
    return labels.get(value, str(value))


@cache
def _static_version(path: str) -> str:
    file = STATIC_DIR / path
    try:
        return hashlib.sha256(file.read_bytes()).hexdigest()[:10]
    except OSError:
        return "0"


def static_url(path: str) -> str:
    """``/static/<path>?v=<content hash>`` so browsers refetch a file only when it changes."""
    return f"/static/{path}?v={_static_version(path)}"


@pass_context
def _csrf_token(ctx: Any) -> str:
    return csrf_token(ctx["request"])


@pass_context
def _csrf_input(ctx: Any) -> Markup:
    token = csrf_token(ctx["request"])
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, token)


def page_path(app: Any, name: str, **params: Any) -> str | None:
    """The path of the page route called ``name``, or None while nobody has built that page
    (API routes with the same name do not count)."""
    from o2o.web.session import is_page_path

    try:
        path = str(app.url_path_for(name, **params))
    except NoMatchFound:
        return None
    return path if is_page_path(path) else None


@pass_context
def _page_url(ctx: Any, name: str, **params: Any) -> str | None:
    return page_path(ctx["request"].app, name, **params)


@pass_context
def _flashes(ctx: Any) -> list[tuple[str, str]]:
    from o2o.web.session import PageSession

    session = ctx["request"].scope.get("session")
    return session.pop_flashes() if isinstance(session, PageSession) else []


def media_sources(url: str) -> dict[str, str] | None:
    """srcsets of one of our uploaded images (WebP first, JPEG fallback), None for other URLs."""
    from o2o.media.images import WIDTHS, media_url, parse_media_url

    key = parse_media_url(url)
    if key is None:
        return None
    return {
        "webp": ", ".join(f"{media_url(key, w, 'webp')} {w}w" for w in reversed(WIDTHS)),
        "jpg": ", ".join(f"{media_url(key, w, 'jpg')} {w}w" for w in reversed(WIDTHS)),
        "src": media_url(key, WIDTHS[-1], "jpg"),
    }


@pass_context
def _nav(ctx: Any, area: str) -> list[Any]:
    from o2o.web.nav import nav_for

    return nav_for(area, ctx.get("page"), ctx["request"].url.path)


@pass_context
def _slot(ctx: Any, name: str) -> list[Any]:
    from o2o.web.nav import slot_items

    page = ctx.get("page")
    return slot_items(name, page) if page is not None else []


def make_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html", "xml", "svg"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        yuan=yuan,
        china_time=china_time,
        percent_bp=percent_bp,
        bp_to_percent_input=bp_to_percent_input,
        mask_phone=mask_phone,
        label=label,
    )
    from o2o.merchants.access import ROLE_LABELS
    from o2o.merchants.service import MERCHANT_STATUS

    env.globals.update(
        role_labels=ROLE_LABELS,
        merchant_status=MERCHANT_STATUS,
        csrf_input=_csrf_input,
        csrf_token=_csrf_token,
        static_url=static_url,
        page_url=_page_url,
        flashes=_flashes,
        nav=_nav,
        slot=_slot,
        media_sources=media_sources,
    )
    return env


templates = Jinja2Templates(env=make_environment())
