"""Consumer H5: home (location, category shortcuts, sections from providers) and 我的."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import Response
from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from o2o.geo import haversine_m
from o2o.merchants import service as merchants
from o2o.merchants.models import Category, Merchant, Store
from o2o.merchants.schemas import check_in_china
from o2o.schemas import Id, Latitude, Longitude, Schema
from o2o.web.context import PageContext, PageDep, SignedInPageDep, page_router, safe_next
from o2o.web.forms import Form, FormDataDep
from o2o.web.nav import NavItem, SlotItem, add_nav, provide
from o2o.web.templating import page_path

router = page_router()

add_nav(
    NavItem("consumer", "首页", "/", order=10, icon="🏠"),
    NavItem("consumer", "我的", "/me", order=90, icon="👤"),
)

DEFAULT_CITY, DEFAULT_DISTRICT = "深圳市", "南山区"
NEARBY_RADIUS_M = 5_000
NEARBY_LIMIT = 10


@dataclass(frozen=True)
class District:
    city: str
    district: str
    lat: float
    lng: float
    stores: int

    @property
    def key(self) -> str:
        return f"{self.city}|{self.district}"

    @property
    def label(self) -> str:
        return f"{self.city.removesuffix('市')} {self.district}"


@dataclass(frozen=True)
class Location:
    label: str
    lat: float
    lng: float
    # Set when a district was picked: the nearby list keeps to it.
    district: District | None = None


@dataclass(frozen=True)
class NearbyStore:
    store: Store
    merchant: Merchant
    category: str
    distance_m: float


def districts(session: Session) -> list[District]:
    """Districts where approved merchants have open stores, with their centre."""
    rows = session.execute(
        select(
            Store.city,
            Store.district,
            func.avg(Store.lat),
            func.avg(Store.lng),
            func.count(Store.id),
        )
        .join(Merchant, Merchant.id == Store.merchant_id)
        .where(Merchant.status == merchants.APPROVED, Store.is_active.is_(True))
        .group_by(Store.city, Store.district)
        .order_by(Store.city, Store.district)
    ).all()
    return [District(c, d, float(lat), float(lng), int(n)) for c, d, lat, lng, n in rows]


def current_location(page: PageContext, options: list[District]) -> Location | None:
    """The visitor's choice (session), else 深圳南山 (the demo default), else the first district."""
    saved = page.session.get("loc")
    if isinstance(saved, dict):
        if saved.get("kind") == "gps":
            try:
                lat, lng = float(saved["lat"]), float(saved["lng"])
            except (KeyError, TypeError, ValueError):
                lat = lng = None  # type: ignore[assignment]
            if lat is not None and lng is not None:
                return Location("我的位置", lat, lng)
        for d in options:
            if d.key == saved.get("district"):
                return Location(d.label, d.lat, d.lng, d)
    for d in options:
        if (d.city, d.district) == (DEFAULT_CITY, DEFAULT_DISTRICT):
            return Location(d.label, d.lat, d.lng, d)
    return (
        Location(options[0].label, options[0].lat, options[0].lng, options[0]) if options else None
    )


def nearby_stores(
    session: Session, location: Location, category_id: int | None, limit: int = NEARBY_LIMIT
) -> list[NearbyStore]:
    stmt = (
        select(Store, Merchant, Category.name)
        .join(Merchant, Merchant.id == Store.merchant_id)
        .outerjoin(Category, Category.id == Merchant.category_id)
        .where(Merchant.status == merchants.APPROVED, Store.is_active.is_(True))
    )
    if location.district is not None:
        stmt = stmt.where(
            Store.city == location.district.city, Store.district == location.district.district
        )
    if category_id is not None:
        stmt = stmt.where(
            Merchant.category_id.in_(merchants.category_and_descendants(session, category_id))
        )
    found = []
    for store, merchant, category in session.execute(stmt).all():
        distance = haversine_m(location.lat, location.lng, store.lat, store.lng)
        if location.district is None and distance > NEARBY_RADIUS_M:
            continue
        found.append(NearbyStore(store, merchant, category or "", distance))
    found.sort(key=lambda n: n.distance_m)
    return found[:limit]


def format_distance(metres: float) -> str:
    return f"{round(metres)} m" if metres < 1000 else f"{metres / 1000:.1f} km"


@router.get("/", name="home")
def home(
    page: PageDep,
    category_id: Annotated[Id | None, Query()] = None,
) -> Response:
    with page.read() as session:
        options = districts(session)
        tree = merchants.category_tree(session)
    location = current_location(page, options)
    # Providers of the "consumer.home" slot read these.
    page.extra.update(location=location, category_id=category_id, categories=tree)
    # Until a search page exists (route name "consumer_search"), shortcuts filter the list here.
    search_url = page_path(page.request.app, "consumer_search")
    return page.render(
        "consumer/home.html",
        districts=options,
        location=location,
        categories=tree,
        category_id=category_id,
        search_url=search_url,
    )


@provide("consumer.home", "nearby_stores", order=50)
def _nearby_section(page: PageContext) -> SlotItem | None:
    location: Location | None = page.extra.get("location")
    if location is None:
        return None
    category_id = page.extra.get("category_id")
    with page.read() as session:
        found = nearby_stores(session, location, category_id)
    names = {c["id"]: c["name"] for c in _flatten(page.extra.get("categories") or [])}
    return SlotItem(
        "consumer/_nearby_stores.html",
        {
            "stores": found,
            "location": location,
            "category_name": names.get(category_id),
            "format_distance": format_distance,
        },
    )


@provide("consumer.home", "deals", order=20, placeholder=True)
def _deals_placeholder(page: PageContext) -> SlotItem | None:
    return SlotItem("consumer/_coming_soon.html", {"title": "附近团购", "text": "团购套餐即将上线"})


def _flatten(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for node in nodes:
        out.append(node)
        out.extend(_flatten(node.get("children") or []))
    return out


class LocationForm(Schema):
    district: Annotated[str, Field(max_length=120)] | None = None
    lat: Latitude | None = None
    lng: Longitude | None = None


@router.post("/location", name="set_location")
def set_location(page: PageDep, data: FormDataDep) -> Response:
    form = Form.parse(LocationForm, data)
    raw_next = data.get("next")
    back = safe_next(raw_next if isinstance(raw_next, str) else None)
    if not form.ok or form.data is None:
        return page.redirect(back, flash="位置无效，请重新选择", kind="error")
    if form.data.lat is not None and form.data.lng is not None:
        try:
            check_in_china(form.data.lat, form.data.lng)
        except ValueError:
            return page.redirect(back, flash="当前位置不在服务范围内，请选择区域", kind="error")
        page.session["loc"] = {
            "kind": "gps",
            "lat": round(form.data.lat, 6),
            "lng": round(form.data.lng, 6),
        }
        return page.redirect(back, flash="已切换到您的当前位置")
    with page.read() as session:
        known = {d.key: d for d in districts(session)}
    chosen = known.get(form.data.district or "")
    if chosen is None:
        return page.redirect(back, flash="请选择列表中的区域", kind="error")
    page.session["loc"] = {"kind": "district", "district": chosen.key}
    return page.redirect(back, flash=f"已切换到{chosen.label}")


@router.get("/me", name="me")
def me(page: SignedInPageDep) -> Response:
    assert page.actor is not None
    with page.read() as session:
        ids = list(page.actor.roles)
        rows = session.scalars(select(Merchant).where(Merchant.id.in_(ids))).all() if ids else []
    memberships = [(m, page.actor.roles[m.id]) for m in sorted(rows, key=lambda m: m.id)]
    return page.render("consumer/me.html", memberships=memberships)
