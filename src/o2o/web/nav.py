"""Navigation and page slots, filled by the page modules themselves (no central list to edit).

* ``add_nav(NavItem(...))`` at import time of a page module puts a link in an area's nav
  (``consumer`` bottom tabs, ``console`` and ``admin`` top tabs).
* ``@provide(slot, key)`` registers a function ``(page) -> SlotItem | None`` that contributes to a
  page section: ``consumer.home`` (sections of the home page) and ``console.dashboard`` (cards
  of 今日概览). A provider registered with ``placeholder=True`` is replaced by any real
  provider with the same key, whatever the import order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from o2o.web.context import PageContext

AREAS = ("consumer", "console", "admin")


@dataclass(frozen=True)
class NavItem:
    area: str
    label: str
    # May contain {merchant_id} (console): filled from the page's merchant.
    path: str
    order: int = 100
    icon: str = ""
    # Console: staff roles that see the link (None = every role).
    roles: tuple[str, ...] | None = None
    # Consumer tabs that need a signed-in user still show; others may hide for anonymous.
    signed_in_only: bool = False


@dataclass(frozen=True)
class NavLink:
    label: str
    href: str
    icon: str
    active: bool


_NAV: list[NavItem] = []


def add_nav(*items: NavItem) -> None:
    for item in items:
        if item.area not in AREAS:
            raise ValueError(f"unknown area {item.area!r}")
        if item not in _NAV:
            _NAV.append(item)


def nav_for(area: str, page: PageContext | None, current_path: str) -> list[NavLink]:
    links = []
    merchant = getattr(page, "merchant", None)
    role = getattr(page, "role", None)
    actor = getattr(page, "actor", None)
    for item in sorted((i for i in _NAV if i.area == area), key=lambda i: (i.order, i.label)):
        if item.roles is not None and (role is None or role.role not in item.roles):
            continue
        if item.signed_in_only and actor is None:
            continue
        if "{merchant_id}" in item.path:
            if merchant is None:
                continue
            href = item.path.format(merchant_id=merchant.id)
        else:
            href = item.path
        links.append(NavLink(item.label, href, item.icon, _is_active(href, current_path)))
    # Only the most specific matching link is active (e.g. /console/m/1 vs /console/m/1/stores).
    active = [link for link in links if link.active]
    if len(active) > 1:
        best = max(active, key=lambda link: len(link.href))
        links = [NavLink(lk.label, lk.href, lk.icon, lk is best) for lk in links]
    return links


def _is_active(href: str, path: str) -> bool:
    return path == href or (href != "/" and path.startswith(href.rstrip("/") + "/"))


@dataclass
class SlotItem:
    """What a provider contributes: a template (partial) and its context."""

    template: str
    context: dict[str, Any] = field(default_factory=dict)
    order: int = 100


@dataclass(frozen=True)
class _Provider:
    func: Callable[[PageContext], SlotItem | None]
    order: int
    placeholder: bool


_SLOTS: dict[str, dict[str, _Provider]] = {}


def provide(
    slot: str, key: str, *, order: int = 100, placeholder: bool = False
) -> Callable[[Callable[[PageContext], SlotItem | None]], Callable[[PageContext], SlotItem | None]]:
    def register(
        func: Callable[[PageContext], SlotItem | None],
    ) -> Callable[[PageContext], SlotItem | None]:
        providers = _SLOTS.setdefault(slot, {})
        existing = providers.get(key)
        if existing is None or existing.placeholder or not placeholder:
            providers[key] = _Provider(func, order, placeholder)
        return func

    return register


def slot_items(slot: str, page: PageContext) -> list[SlotItem]:
    items = []
    for provider in sorted(_SLOTS.get(slot, {}).values(), key=lambda p: p.order):
        item = provider.func(page)
        if item is not None:
            item.order = provider.order
            items.append(item)
    return items
