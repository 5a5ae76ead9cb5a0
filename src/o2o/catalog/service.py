"""The catalogue's rules: listings (goods with SKUs; deals with stores, validity and slots),
publishing, stock via the one inventory mechanism, and what checkout may buy.

Every change a consumer could search for ends in ``indexer.listing_changed`` inside the same
transaction, so the search index never disagrees with a committed listing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from o2o.catalog import deal_terms
from o2o.catalog.models import (
    DRAFT,
    GOODS,
    PUBLISHED,
    SERVICE,
    UNPUBLISHED,
    Listing,
    ListingStore,
    Sku,
    TimeSlot,
)
from o2o.catalog.schemas import (
    MAX_SKUS,
    MAX_VALID_DAYS,
    GoodsListingIn,
    ServiceListingIn,
    SkuIn,
    SlotIn,
)
from o2o.errors import Conflict, NotFound, ValidationFailed
from o2o.geo import haversine_m
from o2o.inventory import service as inventory
from o2o.inventory.models import InventoryAdjustment, InventoryItem
from o2o.merchants import hours as store_hours
from o2o.merchants.access import MANAGERS, Actor
from o2o.merchants.models import Category, Merchant, Store
from o2o.merchants.service import (
    APPROVED,
    commission_rate_bp,
    get_merchant,
    require_approved,
    visible_merchant,
)
from o2o.money import format_yuan
from o2o.search import indexer
from o2o.statemachine import StateMachine
from o2o.timeutil import utcnow

LISTING_STATUS = StateMachine(
    "商品",
    {
        (DRAFT, "publish"): PUBLISHED,
        (PUBLISHED, "unpublish"): UNPUBLISHED,
        (UNPUBLISHED, "publish"): PUBLISHED,
    },
    labels={DRAFT: "草稿", PUBLISHED: "已上架", UNPUBLISHED: "已下架"},
)

UPCOMING_SLOTS = 50
MAX_SLOT_LENGTH = timedelta(hours=24)
MAX_SLOT_AHEAD = timedelta(days=366)
GOODS_ONLY = frozenset({"shipping_fee_fen"})
SERVICE_ONLY = frozenset(
    {
        "price_fen",
        "original_price_fen",
        "store_ids",
        "valid_days",
        "valid_until",
        "stock",
        "per_user_limit",
        "refund_anytime",
        "auto_refund_on_expiry",
        "requires_slot",
        "items",
        "rules",
    }
)
NULLABLE = frozenset({"valid_days", "valid_until", "stock", "per_user_limit", "rules"})
KIND_LABELS = {GOODS: "实物商品", SERVICE: "团购套餐"}


class _Errors:
    """Collects field errors so one 422 names every problem at once."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.items.append({"field": field, "message": message})

    def raise_if_any(self) -> None:
        if self.items:
            detail = "；".join(f"{e['field']}: {e['message']}" for e in self.items[:5])
            raise ValidationFailed(detail, errors=self.items)


# --- loading and access ---------------------------------------------------------------------


def _load(session: Session, listing_id: int, *, for_update: bool = False) -> Listing:
    stmt = select(Listing).where(Listing.id == listing_id)
    if for_update:
        stmt = stmt.with_for_update()
    listing = session.scalar(stmt)
    if listing is None:
        raise NotFound("商品不存在", code="listing_not_found")
    return listing


def _managed(session: Session, actor: Actor, listing_id: int) -> Listing:
    """The listing, locked, for its merchant's owner or manager (merchant approved)."""
    listing = _load(session, listing_id, for_update=True)
    actor.require_staff(listing.merchant_id, MANAGERS)
    require_approved(get_merchant(session, listing.merchant_id))
    return listing


def is_staff_view(actor: Actor | None, merchant_id: int) -> bool:
    return actor is not None and (actor.is_admin or actor.staff_role(merchant_id) is not None)


def visible_listing(session: Session, listing_id: int, actor: Actor | None) -> Listing:
    """Published listings of approved merchants are public; the rest only to the merchant's
    staff and operators (everyone else gets 404, so drafts do not leak)."""
    listing = _load(session, listing_id)
    if is_staff_view(actor, listing.merchant_id):
        return listing
    merchant = session.get(Merchant, listing.merchant_id)
    if listing.status == PUBLISHED and merchant is not None and merchant.status == APPROVED:
        return listing
    raise NotFound("商品不存在", code="listing_not_found")


def item_ref(listing_id: int) -> str:
    """The ``InventoryItem.ref`` of every item (SKU, slot, deal stock) of a listing."""
    return f"listing:{listing_id}"


def _changed(session: Session, listing: Listing) -> None:
    listing.updated_at = utcnow()
    session.flush()
    indexer.listing_changed(session, listing.id)


# --- validation helpers ---------------------------------------------------------------------


def _check_category(session: Session, category_id: int, errors: _Errors) -> None:
    if session.get(Category, category_id) is None:
        errors.add("category_id", "类目不存在")


def _check_stores(
    session: Session, merchant_id: int, store_ids: Sequence[int], errors: _Errors
) -> None:
    found = set(
        session.scalars(
            select(Store.id).where(Store.merchant_id == merchant_id, Store.id.in_(store_ids))
        )
    )
    missing = sorted(set(store_ids) - found)
    if missing:
        errors.add("store_ids", f"门店 {missing} 不属于该商户")


def _check_prices(price: int, original: int, errors: _Errors) -> None:
    if original < price:
        errors.add("original_price_fen", "原价不能低于售价")


def _check_items(items: Sequence[Any], price_fen: int, errors: _Errors) -> None:
    """A deal's contents may not add up to less than its price (a 团购 that costs more than
    ordering the same things is not a deal)."""
    total = deal_terms.items_total(list(items))
    if items and total > 0 and total < price_fen:
        errors.add(
            "items",
            f"套餐内容合计 {format_yuan(total)} 低于团购价 {format_yuan(price_fen)}，请核对",
        )


def _items_data(items: Sequence[Any]) -> list[dict[str, Any]]:
    return [deal_terms.DealItem.model_validate(i).model_dump() for i in items]


def _rules_data(rules: Any) -> dict[str, Any] | None:
    if rules is None:
        return None
    return deal_terms.DealRules.model_validate(rules).model_dump(mode="json")


def _check_validity(
    valid_days: int | None, valid_until: datetime | None, errors: _Errors, *, check_future: bool
) -> None:
    if valid_days is None and valid_until is None:
        errors.add("valid_days", "请设置购买后有效天数（valid_days）或截止时间（valid_until）")
    elif valid_days is not None and valid_until is not None:
        errors.add("valid_until", "有效天数与截止时间只能二选一")
    elif valid_until is not None and check_future:
        now = utcnow()
        if valid_until <= now:
            errors.add("valid_until", "截止时间必须晚于现在")
        elif valid_until > now + timedelta(days=MAX_VALID_DAYS):
            errors.add("valid_until", "截止时间不能超过十年")


def _refresh_goods_price(session: Session, listing: Listing) -> None:
    """A goods listing shows its lowest active SKU price (or lowest of all while none is
    active), so lists and search can sort by price without a join."""
    session.flush()
    prices = session.execute(
        select(Sku.price_fen, Sku.is_active).where(Sku.listing_id == listing.id)
    ).all()
    active = [p for p, is_active in prices if is_active]
    pool = active or [p for p, _ in prices]
    if pool:
        listing.price_fen = min(pool)
        listing.original_price_fen = listing.price_fen


# --- listings -------------------------------------------------------------------------------


def create_listing(
    session: Session, actor: Actor, merchant_id: int, data: GoodsListingIn | ServiceListingIn
) -> Listing:
    actor.require_staff(merchant_id, MANAGERS)
    require_approved(get_merchant(session, merchant_id))
    errors = _Errors()
    _check_category(session, data.category_id, errors)
    if isinstance(data, ServiceListingIn):
        _check_stores(session, merchant_id, data.store_ids, errors)
        _check_prices(data.price_fen, data.original_price_fen, errors)
        _check_validity(data.valid_days, data.valid_until, errors, check_future=True)
        _check_items(data.items, data.price_fen, errors)
    errors.raise_if_any()

    now = utcnow()
    listing = Listing(
        merchant_id=merchant_id,
        kind=data.kind,
        title=data.title,
        description=data.description,
        category_id=data.category_id,
        images=list(data.images),
        status=DRAFT,
        created_at=now,
        updated_at=now,
    )
    if isinstance(data, GoodsListingIn):
        listing.shipping_fee_fen = data.shipping_fee_fen
        # 随时退 / 过期自动退 are promises of deals; goods follow the return rules instead.
        listing.refund_anytime = False
        listing.auto_refund_on_expiry = False
        session.add(listing)
        session.flush()
        for sku in data.skus:
            _new_sku(session, listing, sku)
        _refresh_goods_price(session, listing)
    else:
        listing.price_fen = data.price_fen
        listing.original_price_fen = data.original_price_fen
        listing.valid_days = data.valid_days
        listing.valid_until = data.valid_until
        listing.per_user_limit = data.per_user_limit
        listing.refund_anytime = data.refund_anytime
        listing.auto_refund_on_expiry = data.auto_refund_on_expiry
        listing.requires_slot = data.requires_slot
        listing.deal_items = _items_data(data.items)
        listing.deal_rules = _rules_data(data.rules)
        listing.store_links = [ListingStore(store_id=s) for s in sorted(set(data.store_ids))]
        session.add(listing)
        session.flush()
        if data.stock is not None:
            listing.inventory_item_id = inventory.create_item(
                session, "offer", data.stock, ref=item_ref(listing.id)
            ).id
    _changed(session, listing)
    return listing


def _open_future_slot_stores(session: Session, listing_id: int) -> set[int]:
    return set(
        session.scalars(
            select(TimeSlot.store_id)
            .where(
                TimeSlot.listing_id == listing_id,
                TimeSlot.is_open.is_(True),
                TimeSlot.ends_at > utcnow(),
            )
            .distinct()
        )
    )


def update_listing(
    session: Session, actor: Actor, listing_id: int, changes: dict[str, Any]
) -> Listing:
    """Edit a listing; ``changes`` holds only the fields the caller sent (explicit nulls
    clear ``stock`` → unlimited and ``per_user_limit`` → no limit)."""
    listing = _managed(session, actor, listing_id)
    changes = dict(changes)
    stock_reason = changes.pop("stock_reason", "") or "修改库存"
    errors = _Errors()
    wrong = GOODS_ONLY if listing.kind == SERVICE else SERVICE_ONLY
    for key in sorted(wrong & changes.keys()):
        errors.add(key, f"{KIND_LABELS[listing.kind]}没有该字段")
    for key, value in changes.items():
        if value is None and key not in NULLABLE and key not in wrong:
            errors.add(key, "不能为空")
    errors.raise_if_any()

    if "category_id" in changes:
        _check_category(session, changes["category_id"], errors)
    if listing.kind == SERVICE:
        price = changes.get("price_fen", listing.price_fen)
        original = changes.get("original_price_fen", listing.original_price_fen)
        if {"price_fen", "original_price_fen"} & changes.keys():
            _check_prices(price, original, errors)
        if {"price_fen", "items"} & changes.keys():
            _check_items(changes.get("items", listing.deal_items), price, errors)
        if "items" in changes:
            changes["deal_items"] = _items_data(changes.pop("items"))
        if "rules" in changes:
            changes["deal_rules"] = _rules_data(changes.pop("rules"))
        if {"valid_days", "valid_until"} & changes.keys():
            valid_days = changes.get("valid_days", listing.valid_days)
            valid_until = changes.get("valid_until", listing.valid_until)
            # Setting one of the pair replaces the other.
            if changes.get("valid_days") is not None and "valid_until" not in changes:
                valid_until = None
            if changes.get("valid_until") is not None and "valid_days" not in changes:
                valid_days = None
            _check_validity(valid_days, valid_until, errors, check_future="valid_until" in changes)
            changes["valid_days"], changes["valid_until"] = valid_days, valid_until
        if "store_ids" in changes:
            store_ids = sorted(set(changes["store_ids"]))
            _check_stores(session, listing.merchant_id, store_ids, errors)
            stranded = sorted(_open_future_slot_stores(session, listing.id) - set(store_ids))
            if stranded:
                errors.add("store_ids", f"门店 {stranded} 还有未结束的场次，请先关闭这些场次")
    errors.raise_if_any()

    stock_set = "stock" in changes
    stock = changes.pop("stock", None)
    store_ids = changes.pop("store_ids", None)
    for key, value in changes.items():
        setattr(listing, key, list(value) if key == "images" else value)
    if store_ids is not None:
        current = {link.store_id: link for link in listing.store_links}
        listing.store_links = [current.get(s) or ListingStore(store_id=s) for s in store_ids]
    if stock_set:
        _set_offer_stock(session, actor, listing, stock, stock_reason)
    _changed(session, listing)
    return listing


def _set_offer_stock(
    session: Session, actor: Actor, listing: Listing, stock: int | None, reason: str
) -> None:
    if stock is None:
        # Unlimited from now on; holds already taken still settle on their own item.
        listing.inventory_item_id = None
    elif listing.inventory_item_id is None:
        item = inventory.create_item(session, "offer", 0, ref=item_ref(listing.id))
        listing.inventory_item_id = item.id
        if stock:
            inventory.adjust(session, item.id, stock, actor_user_id=actor.user_id, reason=reason)
    else:
        inventory.set_available(
            session, listing.inventory_item_id, stock, actor_user_id=actor.user_id, reason=reason
        )


def _move(listing: Listing, action: str) -> None:
    listing.status = LISTING_STATUS.next_state(listing.status, action)


def publish(session: Session, actor: Actor, listing_id: int) -> Listing:
    listing = _managed(session, actor, listing_id)
    LISTING_STATUS.next_state(listing.status, "publish")  # refuse a bad move before other checks
    if listing.kind == GOODS:
        if not any(s.is_active for s in listing.skus):
            raise Conflict("至少需要一个在售规格才能上架", code="no_active_sku")
    else:
        if listing.valid_until is not None and listing.valid_until <= utcnow():
            raise Conflict("套餐已过截止时间，请先修改有效期", code="listing_expired")
        if not listing.store_links:
            raise Conflict("套餐至少需要一个适用门店", code="no_store")
    _move(listing, "publish")
    listing.published_at = utcnow()
    _changed(session, listing)
    return listing


def unpublish(session: Session, actor: Actor, listing_id: int) -> Listing:
    listing = _managed(session, actor, listing_id)
    _move(listing, "unpublish")
    _changed(session, listing)
    return listing


def list_merchant_listings(
    session: Session,
    actor: Actor | None,
    merchant_id: int,
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 50,
    after_id: int | None = None,
) -> list[Listing]:
    """Staff and operators see every status; everyone else only what is published."""
    visible_merchant(session, merchant_id, actor)
    stmt = select(Listing).where(Listing.merchant_id == merchant_id)
    if not is_staff_view(actor, merchant_id):
        if status not in (None, PUBLISHED):
            return []
        status = PUBLISHED
    if status:
        stmt = stmt.where(Listing.status == status)
    if kind:
        stmt = stmt.where(Listing.kind == kind)
    if after_id:
        stmt = stmt.where(Listing.id > after_id)
    return list(session.scalars(stmt.order_by(Listing.id).limit(limit)))


def listing_summary(listing: Listing) -> dict[str, Any]:
    return {
        "id": listing.id,
        "merchant_id": listing.merchant_id,
        "kind": listing.kind,
        "title": listing.title,
        "status": listing.status,
        "category_id": listing.category_id,
        "price_fen": listing.price_fen,
        "original_price_fen": listing.original_price_fen,
        "image": listing.images[0] if listing.images else None,
        "requires_slot": listing.requires_slot,
        "sales_count": listing.sales_count,
        "rating": listing.rating,
        "rating_count": listing.rating_count,
        "updated_at": listing.updated_at,
    }


def _levels_out(levels: inventory.Levels | None) -> dict[str, int] | None:
    if levels is None:
        return None
    return {
        "total": levels.total,
        "available": levels.available,
        "held": levels.held,
        "sold": levels.sold,
    }


def _slot_out(slot: TimeSlot, levels: inventory.Levels, staff: bool) -> dict[str, Any]:
    return {
        "id": slot.id,
        "store_id": slot.store_id,
        "starts_at": slot.starts_at,
        "ends_at": slot.ends_at,
        "capacity": levels.total,
        "remaining": levels.available,
        "is_open": slot.is_open,
        "levels": _levels_out(levels) if staff else None,
    }


def listing_detail(
    session: Session,
    listing: Listing,
    actor: Actor | None,
    *,
    lat: float | None = None,
    lng: float | None = None,
) -> dict[str, Any]:
    """What a consumer (or, with stock levels, the merchant) sees on the listing's page;
    stores carry ``distance_m`` (nearest first) when ``lat``/``lng`` are given."""
    if (lat is None) != (lng is None):
        raise ValidationFailed("lat 与 lng 需要同时提供", field="lng" if lng is None else "lat")
    staff = is_staff_view(actor, listing.merchant_id)
    merchant = session.get(Merchant, listing.merchant_id)
    assert merchant is not None
    now = utcnow()

    store_ids = listing.store_ids
    slots: list[TimeSlot] = []
    if listing.requires_slot and store_ids:
        slots = list(
            session.scalars(
                select(TimeSlot)
                .where(
                    TimeSlot.listing_id == listing.id,
                    TimeSlot.is_open.is_(True),
                    TimeSlot.starts_at > now,
                    TimeSlot.store_id.in_(store_ids),
                )
                .order_by(TimeSlot.starts_at, TimeSlot.id)
                .limit(UPCOMING_SLOTS)
            )
        )
    item_ids = [s.inventory_item_id for s in listing.skus] + [s.inventory_item_id for s in slots]
    if listing.inventory_item_id is not None:
        item_ids.append(listing.inventory_item_id)
    levels = inventory.levels_by_item(session, item_ids)

    skus = [
        {
            "id": sku.id,
            "name": sku.name,
            "price_fen": sku.price_fen,
            "is_active": sku.is_active,
            "available": levels[sku.inventory_item_id].available,
            "in_stock": sku.is_active and levels[sku.inventory_item_id].available > 0,
            "levels": _levels_out(levels[sku.inventory_item_id]) if staff else None,
        }
        for sku in listing.skus
        if staff or sku.is_active
    ]

    stores = []
    if store_ids:
        stmt = select(Store).where(Store.id.in_(store_ids)).order_by(Store.id)
        if not staff:
            stmt = stmt.where(Store.is_active.is_(True))
        for store in session.scalars(stmt):
            distance = None
            if lat is not None and lng is not None:
                distance = round(haversine_m(lat, lng, store.lat, store.lng))
            stores.append(
                {
                    "id": store.id,
                    "name": store.name,
                    "address": store.address,
                    "city": store.city,
                    "district": store.district,
                    "lat": store.lat,
                    "lng": store.lng,
                    "phone": store.phone,
                    "opening_hours": store.opening_hours,
                    "distance_m": distance,
                    "photos": list(store.photos or []),
                    "open_state": _open_state_out(store.hours, now),
                }
            )
        if lat is not None and lng is not None:
            stores.sort(key=lambda s: (s["distance_m"], s["id"]))

    offer_levels = levels.get(listing.inventory_item_id) if listing.inventory_item_id else None
    rules = deal_terms.load_rules(listing.deal_rules)
    if listing.kind == GOODS:
        available: int | None = sum(s["available"] for s in skus if s["is_active"])
    else:
        available = offer_levels.available if offer_levels else None

    return {
        "id": listing.id,
        "kind": listing.kind,
        "status": listing.status,
        "title": listing.title,
        "description": listing.description,
        "category_id": listing.category_id,
        "images": listing.images,
        "merchant": {"id": merchant.id, "name": merchant.name},
        "price_fen": listing.price_fen,
        "original_price_fen": listing.original_price_fen,
        "shipping_fee_fen": listing.shipping_fee_fen,
        "skus": skus,
        "stores": stores,
        "valid_days": listing.valid_days,
        "valid_until": listing.valid_until,
        "per_user_limit": listing.per_user_limit,
        "requires_slot": listing.requires_slot,
        "refund_rules": {
            "refund_anytime": listing.refund_anytime,
            "auto_refund_on_expiry": listing.auto_refund_on_expiry,
        },
        "items": deal_terms.items_out(listing.deal_items),
        "items_total_fen": deal_terms.items_total(listing.deal_items or []),
        "rules": rules,
        "rules_text": [{"label": k, "text": v} for k, v in deal_terms.rules_lines(rules)],
        "available": available,
        "upcoming_slots": [_slot_out(s, levels[s.inventory_item_id], staff) for s in slots],
        "sales_count": listing.sales_count,
        "rating": listing.rating,
        "rating_count": listing.rating_count,
        "created_at": listing.created_at,
        "updated_at": listing.updated_at,
        "published_at": listing.published_at,
        "stock_levels": _levels_out(offer_levels) if staff else None,
    }


# --- SKUs -----------------------------------------------------------------------------------


def _new_sku(session: Session, listing: Listing, data: SkuIn) -> Sku:
    item = inventory.create_item(session, "sku", data.stock, ref=item_ref(listing.id))
    sku = Sku(name=data.name, price_fen=data.price_fen, inventory_item_id=item.id)
    # Through the relationship, so ``listing.skus`` stays current within this transaction.
    listing.skus.append(sku)
    return sku


def _goods(listing: Listing) -> None:
    if listing.kind != GOODS:
        raise Conflict("团购套餐没有规格", code="wrong_kind")


def add_sku(session: Session, actor: Actor, listing_id: int, data: SkuIn) -> Sku:
    listing = _managed(session, actor, listing_id)
    _goods(listing)
    count = session.scalar(select(func.count()).where(Sku.listing_id == listing.id)) or 0
    if count >= MAX_SKUS:
        raise Conflict(f"每个商品最多 {MAX_SKUS} 个规格", code="too_many_skus")
    sku = _new_sku(session, listing, data)
    _refresh_goods_price(session, listing)
    _changed(session, listing)
    return sku


def _sku_of(session: Session, listing: Listing, sku_id: int) -> Sku:
    sku = session.get(Sku, sku_id)
    if sku is None or sku.listing_id != listing.id:
        raise NotFound("规格不存在", code="sku_not_found")
    return sku


def update_sku(
    session: Session, actor: Actor, listing_id: int, sku_id: int, changes: dict[str, Any]
) -> Sku:
    listing = _managed(session, actor, listing_id)
    _goods(listing)
    sku = _sku_of(session, listing, sku_id)
    changes = dict(changes)
    reason = changes.pop("reason", "") or "修改库存"
    errors = _Errors()
    for key, value in changes.items():
        if value is None:
            errors.add(key, "不能为空")
    errors.raise_if_any()
    if changes.get("is_active") is False and sku.is_active and listing.status == PUBLISHED:
        others = [s for s in listing.skus if s.is_active and s.id != sku.id]
        if not others:
            raise Conflict("已上架商品至少保留一个在售规格，请先下架商品", code="last_active_sku")
    if "stock" in changes:
        inventory.set_available(
            session,
            sku.inventory_item_id,
            changes.pop("stock"),
            actor_user_id=actor.user_id,
            reason=reason,
        )
    for key, value in changes.items():
        setattr(sku, key, value)
    _refresh_goods_price(session, listing)
    _changed(session, listing)
    return sku


def sku_out(session: Session, sku: Sku) -> dict[str, Any]:
    """A SKU as its merchant sees it after a change."""
    levels = inventory.levels(session, sku.inventory_item_id)
    return {
        "id": sku.id,
        "name": sku.name,
        "price_fen": sku.price_fen,
        "is_active": sku.is_active,
        "available": levels.available,
        "in_stock": sku.is_active and levels.available > 0,
        "levels": _levels_out(levels),
    }


# --- stock adjustments ----------------------------------------------------------------------


def adjust_stock(
    session: Session,
    actor: Actor,
    listing_id: int,
    *,
    delta: int,
    reason: str,
    sku_id: int | None = None,
    slot_id: int | None = None,
) -> dict[str, Any]:
    """Add or remove units of one SKU, slot or deal (audited with the actor and reason)."""
    listing = _managed(session, actor, listing_id)
    if sku_id is not None and slot_id is not None:
        raise ValidationFailed("sku_id 与 slot_id 只能指定一个", field="slot_id")
    if sku_id is not None:
        item_id = _sku_of(session, listing, sku_id).inventory_item_id
    elif slot_id is not None:
        item_id = _slot_of(session, listing, slot_id).inventory_item_id
    elif listing.kind == GOODS:
        raise ValidationFailed("请指定要调整的规格", field="sku_id")
    elif listing.inventory_item_id is None:
        raise Conflict("该套餐库存不限，请先设置库存", code="stock_unlimited")
    else:
        item_id = listing.inventory_item_id
    levels = inventory.adjust(session, item_id, delta, actor_user_id=actor.user_id, reason=reason)
    record = session.scalars(
        select(InventoryAdjustment)
        .where(InventoryAdjustment.item_id == item_id)
        .order_by(InventoryAdjustment.id.desc())
        .limit(1)
    ).one()
    return {
        "adjustment": _adjustment_out(record, sku_id, slot_id),
        "levels": _levels_out(levels),
    }


def _adjustment_out(
    record: InventoryAdjustment, sku_id: int | None, slot_id: int | None
) -> dict[str, Any]:
    return {
        "id": record.id,
        "item_id": record.item_id,
        "sku_id": sku_id,
        "slot_id": slot_id,
        "delta": record.delta,
        "total_after": record.total_after,
        "reason": record.reason,
        "actor_user_id": record.actor_user_id,
        "created_at": record.created_at,
    }


def list_adjustments(
    session: Session,
    actor: Actor,
    listing_id: int,
    *,
    limit: int = 50,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    """The stock audit of a listing (its SKUs, slots and own stock), newest first."""
    listing = _load(session, listing_id)
    if not actor.is_admin:
        actor.require_staff(listing.merchant_id, MANAGERS)
    # By the items' ref, so stock the listing no longer uses (e.g. now unlimited) still shows.
    stmt = (
        select(InventoryAdjustment)
        .join(InventoryItem, InventoryItem.id == InventoryAdjustment.item_id)
        .where(InventoryItem.ref == item_ref(listing.id))
    )
    if before_id:
        stmt = stmt.where(InventoryAdjustment.id < before_id)
    records = list(session.scalars(stmt.order_by(InventoryAdjustment.id.desc()).limit(limit)))
    item_ids = {r.item_id for r in records}
    skus = dict(
        session.execute(
            select(Sku.inventory_item_id, Sku.id).where(Sku.inventory_item_id.in_(item_ids))
        ).all()
    )
    slots = dict(
        session.execute(
            select(TimeSlot.inventory_item_id, TimeSlot.id).where(
                TimeSlot.inventory_item_id.in_(item_ids)
            )
        ).all()
    )
    return [_adjustment_out(r, skus.get(r.item_id), slots.get(r.item_id)) for r in records]


# --- time slots -----------------------------------------------------------------------------


def _slot_of(session: Session, listing: Listing, slot_id: int) -> TimeSlot:
    slot = session.get(TimeSlot, slot_id)
    if slot is None or slot.listing_id != listing.id:
        raise NotFound("场次不存在", code="slot_not_found")
    return slot


def add_slots(
    session: Session,
    actor: Actor,
    listing_id: int,
    slots: Sequence[SlotIn],
    *,
    skip_existing: bool = False,
) -> list[TimeSlot]:
    """Bulk-create slots (e.g. a week of hourly slots); each slot's capacity is an inventory
    item. A slot that already exists (same store and start) is a 409, or skipped if asked."""
    listing = _managed(session, actor, listing_id)
    if listing.kind != SERVICE or not listing.requires_slot:
        raise Conflict("该商品无需预约场次（requires_slot 未开启）", code="slots_not_enabled")
    now = utcnow()
    stores = set(listing.store_ids)
    errors = _Errors()
    seen: set[tuple[int, datetime]] = set()
    for i, slot in enumerate(slots):
        if slot.store_id not in stores:
            errors.add(f"{i}.store_id", "门店不是该套餐的适用门店")
        if slot.ends_at <= slot.starts_at:
            errors.add(f"{i}.ends_at", "结束时间必须晚于开始时间")
        elif slot.ends_at - slot.starts_at > MAX_SLOT_LENGTH:
            errors.add(f"{i}.ends_at", "单个场次不能超过 24 小时")
        if slot.starts_at <= now:
            errors.add(f"{i}.starts_at", "开始时间必须晚于现在")
        elif slot.starts_at > now + MAX_SLOT_AHEAD:
            errors.add(f"{i}.starts_at", "只能创建一年以内的场次")
        key = (slot.store_id, slot.starts_at)
        if key in seen:
            errors.add(f"{i}.starts_at", "同一门店同一开始时间的场次重复")
        seen.add(key)
    errors.raise_if_any()

    starts = [s.starts_at for s in slots]
    existing = {
        (store_id, starts_at)
        for store_id, starts_at in session.execute(
            select(TimeSlot.store_id, TimeSlot.starts_at).where(
                TimeSlot.listing_id == listing.id,
                TimeSlot.starts_at >= min(starts),
                TimeSlot.starts_at <= max(starts),
            )
        )
    }
    fresh = [s for s in slots if (s.store_id, s.starts_at) not in existing]
    if len(fresh) < len(slots) and not skip_existing:
        raise Conflict(
            f"有 {len(slots) - len(fresh)} 个场次已存在（同一门店同一开始时间）",
            code="slot_exists",
        )
    item_ids = inventory.create_items(
        session, "slot", [s.capacity for s in fresh], ref=item_ref(listing.id)
    )
    created = [
        TimeSlot(
            listing_id=listing.id,
            store_id=s.store_id,
            starts_at=s.starts_at,
            ends_at=s.ends_at,
            inventory_item_id=item_id,
            is_open=True,
        )
        for s, item_id in zip(fresh, item_ids, strict=True)
    ]
    session.add_all(created)
    session.flush()
    return created


def list_slots(
    session: Session,
    actor: Actor | None,
    listing_id: int,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    store_id: int | None = None,
    limit: int = 200,
    after: tuple[datetime, int] | None = None,
) -> list[dict[str, Any]]:
    """Slots by start time with remaining capacity. Consumers see open, future slots at the
    listing's stores; staff also see closed and past ones."""
    listing = visible_listing(session, listing_id, actor)
    staff = is_staff_view(actor, listing.merchant_id)
    now = utcnow()
    # From now unless asked otherwise (staff may look back with ``start``).
    stmt = select(TimeSlot).where(
        TimeSlot.listing_id == listing.id, TimeSlot.starts_at >= (start or now)
    )
    if end is not None:
        stmt = stmt.where(TimeSlot.starts_at < end)
    if store_id is not None:
        stmt = stmt.where(TimeSlot.store_id == store_id)
    if not staff:
        stmt = stmt.where(
            TimeSlot.is_open.is_(True),
            TimeSlot.starts_at > now,
            TimeSlot.store_id.in_(listing.store_ids),
        )
    if after is not None:
        after_start, after_id = after
        stmt = stmt.where(
            (TimeSlot.starts_at > after_start)
            | ((TimeSlot.starts_at == after_start) & (TimeSlot.id > after_id))
        )
    slots = list(session.scalars(stmt.order_by(TimeSlot.starts_at, TimeSlot.id).limit(limit)))
    levels = inventory.levels_by_item(session, [s.inventory_item_id for s in slots])
    return [_slot_out(s, levels[s.inventory_item_id], staff) for s in slots]


def slots_out(session: Session, slots: Sequence[TimeSlot]) -> list[dict[str, Any]]:
    """Slots as their merchant sees them (with stock levels)."""
    levels = inventory.levels_by_item(session, [s.inventory_item_id for s in slots])
    return [_slot_out(s, levels[s.inventory_item_id], True) for s in slots]


def set_slot_open(
    session: Session, actor: Actor, listing_id: int, slot_id: int, *, is_open: bool
) -> dict[str, Any]:
    """Close a slot to new bookings (bookings already made stay valid), or reopen it."""
    listing = _managed(session, actor, listing_id)
    slot = _slot_of(session, listing, slot_id)
    if slot.is_open == is_open:
        raise Conflict(
            "场次已经是开放状态" if is_open else "场次已经关闭",
            code="slot_already_open" if is_open else "slot_already_closed",
        )
    if is_open and slot.starts_at <= utcnow():
        raise Conflict("场次已开始，不能重新开放", code="slot_started")
    slot.is_open = is_open
    session.flush()
    return _slot_out(slot, inventory.levels(session, slot.inventory_item_id), True)


# --- for checkout, payment and reviews -------------------------------------------------------


@dataclass(frozen=True)
class Purchasable:
    """One thing a consumer can buy right now, resolved and checked: what checkout prices,
    holds and snapshots onto an order line. ``inventory_item_ids`` are the items to hold one
    unit each per unit bought (SKU stock; a deal's own stock and/or its slot), sorted by id so
    checkouts always lock in the same order."""

    listing_id: int
    kind: str
    title: str
    merchant_id: int
    merchant_name: str
    category_id: int
    commission_bp: int
    unit_price_fen: int
    original_price_fen: int
    shipping_fee_fen: int
    sku_id: int | None
    sku_name: str | None
    slot_id: int | None
    slot_store_id: int | None
    slot_starts_at: datetime | None
    slot_ends_at: datetime | None
    inventory_item_ids: tuple[int, ...]
    per_user_limit: int | None
    store_ids: tuple[int, ...]
    valid_days: int | None
    valid_until: datetime | None
    refund_anytime: bool
    auto_refund_on_expiry: bool

    @property
    def label(self) -> str:
        return f"{self.title}（{self.sku_name}）" if self.sku_name else self.title

    def voucher_expires_at(self, paid_at: datetime) -> datetime | None:
        """When a voucher bought at ``paid_at`` stops being valid (services only)."""
        if self.kind != SERVICE:
            return None
        if self.slot_ends_at is not None:
            return self.slot_ends_at
        if self.valid_until is not None:
            return self.valid_until
        assert self.valid_days is not None
        return paid_at + timedelta(days=self.valid_days)


def resolve_purchase(
    session: Session, listing_id: int, *, sku_id: int | None = None, slot_id: int | None = None
) -> Purchasable:
    """Check that a listing (with its SKU or slot) is on sale now and return what checkout
    needs. Raises NotFound (no such listing/SKU/slot), ValidationFailed (SKU or slot missing
    or not applicable) or Conflict (not on sale, SKU inactive, slot closed or started,
    deal expired). Stock is NOT checked here: ``inventory.hold`` decides that atomically."""
    listing = session.get(Listing, listing_id)
    if listing is None:
        raise NotFound("商品不存在", code="listing_not_found")
    merchant = session.get(Merchant, listing.merchant_id)
    assert merchant is not None
    if listing.status != PUBLISHED or merchant.status != APPROVED:
        raise Conflict(f"「{listing.title}」已下架", code="listing_unavailable")
    now = utcnow()
    sku: Sku | None = None
    slot: TimeSlot | None = None
    items: list[int] = []
    if listing.kind == GOODS:
        if slot_id is not None:
            raise ValidationFailed("实物商品不需要场次", field="slot_id")
        if sku_id is None:
            raise ValidationFailed("请选择规格", field="sku_id")
        sku = _sku_of(session, listing, sku_id)
        if not sku.is_active:
            raise Conflict(f"「{listing.title}（{sku.name}）」已停售", code="sku_inactive")
        items.append(sku.inventory_item_id)
    else:
        if sku_id is not None:
            raise ValidationFailed("团购套餐没有规格", field="sku_id")
        if listing.valid_until is not None and listing.valid_until <= now:
            raise Conflict(f"「{listing.title}」已过期", code="listing_expired")
        if listing.inventory_item_id is not None:
            items.append(listing.inventory_item_id)
        if listing.requires_slot:
            if slot_id is None:
                raise ValidationFailed("请选择场次", field="slot_id")
            slot = _slot_of(session, listing, slot_id)
            if not slot.is_open or slot.store_id not in listing.store_ids:
                raise Conflict("该场次已关闭", code="slot_closed")
            if slot.starts_at <= now:
                raise Conflict("该场次已开始，请选择其他场次", code="slot_started")
            items.append(slot.inventory_item_id)
        elif slot_id is not None:
            raise ValidationFailed("该套餐无需预约场次", field="slot_id")
    return Purchasable(
        listing_id=listing.id,
        kind=listing.kind,
        title=listing.title,
        merchant_id=merchant.id,
        merchant_name=merchant.name,
        category_id=listing.category_id,
        commission_bp=commission_rate_bp(session, merchant, listing.category_id),
        unit_price_fen=sku.price_fen if sku else listing.price_fen,
        original_price_fen=sku.price_fen if sku else listing.original_price_fen,
        shipping_fee_fen=listing.shipping_fee_fen if listing.kind == GOODS else 0,
        sku_id=sku.id if sku else None,
        sku_name=sku.name if sku else None,
        slot_id=slot.id if slot else None,
        slot_store_id=slot.store_id if slot else None,
        slot_starts_at=slot.starts_at if slot else None,
        slot_ends_at=slot.ends_at if slot else None,
        inventory_item_ids=tuple(sorted(items)),
        per_user_limit=listing.per_user_limit,
        store_ids=tuple(listing.store_ids),
        valid_days=listing.valid_days,
        valid_until=listing.valid_until,
        refund_anytime=listing.refund_anytime,
        auto_refund_on_expiry=listing.auto_refund_on_expiry,
    )


def record_sales(session: Session, listing_id: int, quantity: int) -> None:
    """Count units sold (payment applied); negative after a refund. One atomic UPDATE."""
    session.execute(
        update(Listing)
        .where(Listing.id == listing_id)
        .values(
            sales_count=case(
                (Listing.sales_count + quantity < 0, 0), else_=Listing.sales_count + quantity
            )
        )
        .execution_options(synchronize_session=False)
    )
    indexer.sales_changed(session, [listing_id])


def add_rating(session: Session, listing_id: int, stars: int) -> None:
    """A review's 1–5 stars feed the listing's rating. One atomic UPDATE."""
    if not 1 <= stars <= 5:
        raise ValidationFailed("评分必须为 1–5 星", field="stars")
    session.execute(
        update(Listing)
        .where(Listing.id == listing_id)
        .values(rating_sum=Listing.rating_sum + stars, rating_count=Listing.rating_count + 1)
        .execution_options(synchronize_session=False)
    )


def _open_state_out(raw: dict[str, Any] | None, now: datetime) -> dict[str, str] | None:
    state = store_hours.open_state(store_hours.load(raw), now)
    return (
        None
        if state is None
        else {"state": state.state, "label": state.label, "detail": state.detail}
    )
