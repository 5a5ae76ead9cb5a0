"""The catalogue through the API (and the service where checkout will call it), on both DBs."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from o2o import demo
from o2o.accounts import service as accounts_service
from o2o.catalog import service
from o2o.catalog.models import Listing, TimeSlot
from o2o.db import Database
from o2o.errors import Conflict, NotFound, ValidationFailed
from o2o.geo import bounding_box, haversine_m
from o2o.inventory import service as inventory
from o2o.inventory.models import InventoryAdjustment
from o2o.merchants.models import Category
from o2o.search import indexer
from o2o.timeutil import utcnow
from tests.authz_rules_catalog import make_listing
from tests.support import ApiClient, World


def goods_body(world: World, **overrides: Any) -> dict[str, Any]:
    return {
        "kind": "goods",
        "title": "《三体》全三册",
        "description": "刘慈欣科幻经典",
        "category_id": world.category_id,
        "images": ["https://img.example.com/santi.jpg"],
        "shipping_fee_fen": 600,
        "skus": [
            {"name": "精装", "price_fen": 16800, "stock": 5},
            {"name": "平装", "price_fen": 9300, "stock": 10},
        ],
        **overrides,
    }


def deal_body(world: World, **overrides: Any) -> dict[str, Any]:
    return {
        "kind": "service",
        "title": "重庆老火锅双人套餐",
        "description": "牛油锅底，含鲜毛肚",
        "category_id": world.category_id,
        "price_fen": 19800,
        "original_price_fen": 29800,
        "store_ids": world.a.store_ids,
        "valid_days": 90,
        "stock": None,
        "per_user_limit": 2,
        "refund_anytime": True,
        "auto_refund_on_expiry": True,
        "requires_slot": False,
        **overrides,
    }


def create(api: ApiClient, world: World, body: dict[str, Any], role: str = "owner") -> dict:
    r = api.post(f"/api/v1/merchants/{world.a.id}/listings", json=body, as_=world.tokens[role])
    assert r.status_code == 201, r.text
    return r.json()


def slot(store_id: int, hours_from_now: float, capacity: int = 3, length_h: float = 1) -> dict:
    start = utcnow().replace(microsecond=0) + timedelta(hours=hours_from_now)
    return {
        "store_id": store_id,
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=length_h)).isoformat(),
        "capacity": capacity,
    }


def listing_count(db: Database) -> int:
    with db.transaction(readonly=True) as s:
        return s.scalar(select(func.count()).select_from(Listing)) or 0


@pytest.fixture
def changed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records every call of the search hook."""
    calls: list[int] = []
    original = indexer.listing_changed

    def record(session: Any, listing_id: int) -> None:
        calls.append(listing_id)
        original(session, listing_id)

    monkeypatch.setattr(indexer, "listing_changed", record)
    return calls


# --- goods ----------------------------------------------------------------------------------


def test_goods_listing_from_draft_to_published(
    api: ApiClient, world: World, changed: list[int]
) -> None:
    listing = create(api, world, goods_body(world), role="manager")
    lid = listing["id"]
    assert listing["status"] == "draft" and listing["kind"] == "goods"
    # The listing's price is its lowest active SKU price.
    assert listing["price_fen"] == 9300 and listing["shipping_fee_fen"] == 600
    assert [(s["name"], s["available"], s["levels"]["total"]) for s in listing["skus"]] == [
        ("精装", 5, 5),
        ("平装", 10, 10),
    ]
    assert listing["available"] == 15 and changed == [lid]

    # A draft is invisible to consumers and other merchants, visible to its staff and operators.
    assert api.get(f"/api/v1/listings/{lid}").status_code == 404
    assert api.get(f"/api/v1/listings/{lid}", as_=world.tokens["consumer"]).status_code == 404
    assert api.get(f"/api/v1/listings/{lid}", as_=world.tokens["other_manager"]).status_code == 404
    assert api.get(f"/api/v1/listings/{lid}", as_=world.tokens["clerk"]).status_code == 200
    assert api.get(f"/api/v1/listings/{lid}", as_=world.tokens["operator"]).status_code == 200

    published = api.post(f"/api/v1/listings/{lid}/publish", as_=world.tokens["owner"])
    assert published.status_code == 200 and published.json()["status"] == "published"
    assert published.json()["published_at"] is not None

    public = api.get(f"/api/v1/listings/{lid}").json()
    assert public["merchant"] == {"id": world.a.id, "name": "甲火锅"}
    assert public["skus"][1] == {
        "id": public["skus"][1]["id"],
        "name": "平装",
        "price_fen": 9300,
        "is_active": True,
        "available": 10,
        "in_stock": True,
        "levels": None,  # held/sold are the merchant's business
    }
    assert public["sales_count"] == 0 and public["rating"] is None and public["rating_count"] == 0
    assert changed == [lid, lid]


def test_sku_changes_keep_the_price_current_and_stock_audited(
    api: ApiClient, world: World, changed: list[int]
) -> None:
    listing = create(api, world, goods_body(world))
    lid, owner = listing["id"], world.tokens["owner"]
    hardcover, paperback = (s["id"] for s in listing["skus"])

    added = api.post(
        f"/api/v1/listings/{lid}/skus",
        json={"name": "签名版", "price_fen": 8800, "stock": 3},
        as_=owner,
    )
    assert added.status_code == 201 and added.json()["available"] == 3
    assert api.get(f"/api/v1/listings/{lid}", as_=owner).json()["price_fen"] == 8800

    # Deactivating the cheapest SKU moves the price to the next cheapest.
    r = api.patch(
        f"/api/v1/listings/{lid}/skus/{added.json()['id']}", json={"is_active": False}, as_=owner
    )
    assert r.status_code == 200 and r.json()["is_active"] is False
    assert api.get(f"/api/v1/listings/{lid}", as_=owner).json()["price_fen"] == 9300

    r = api.patch(
        f"/api/v1/listings/{lid}/skus/{paperback}",
        json={"price_fen": 9900, "stock": 25, "reason": "新到一批"},
        as_=world.tokens["manager"],
    )
    assert r.status_code == 200
    assert r.json()["levels"] == {"total": 25, "available": 25, "held": 0, "sold": 0}
    assert api.get(f"/api/v1/listings/{lid}", as_=owner).json()["price_fen"] == 9900

    # Stock set and stock adjustments both land in the audit, with actor and reason.
    r = api.post(
        f"/api/v1/listings/{lid}/stock-adjustments",
        json={"sku_id": hardcover, "delta": -2, "reason": "破损"},
        as_=owner,
    )
    assert r.status_code == 201, r.text
    assert r.json()["levels"] == {"total": 3, "available": 3, "held": 0, "sold": 0}
    assert r.json()["adjustment"]["sku_id"] == hardcover

    # Removing more than is available is refused and changes nothing.
    r = api.post(
        f"/api/v1/listings/{lid}/stock-adjustments",
        json={"sku_id": hardcover, "delta": -4, "reason": "盘亏"},
        as_=owner,
    )
    assert r.status_code == 409 and r.json()["code"] == "stock_adjust_below_zero"

    audit = api.get(f"/api/v1/listings/{lid}/stock-adjustments", as_=owner).json()["items"]
    assert [
        (a["sku_id"], a["delta"], a["total_after"], a["reason"], a["actor_user_id"]) for a in audit
    ] == [
        (hardcover, -2, 3, "破损", world.a.owner_id),
        (paperback, 15, 25, "新到一批", world.a.manager_id),
    ]
    page = api.get(f"/api/v1/listings/{lid}/stock-adjustments?limit=1", as_=owner).json()
    assert len(page["items"]) == 1 and page["next_cursor"] == str(audit[0]["id"])
    rest = api.get(
        f"/api/v1/listings/{lid}/stock-adjustments?cursor={page['next_cursor']}", as_=owner
    ).json()
    assert [a["id"] for a in rest["items"]] == [audit[1]["id"]]
    assert (
        api.get(f"/api/v1/listings/{lid}/stock-adjustments", as_=world.tokens["clerk"]).status_code
        == 403
    )

    # A SKU of another listing, an unknown SKU and a missing target are refused.
    other = create(api, world, goods_body(world, title="其他"))
    r = api.patch(
        f"/api/v1/listings/{lid}/skus/{other['skus'][0]['id']}", json={"price_fen": 1}, as_=owner
    )
    assert r.status_code == 404
    r = api.post(
        f"/api/v1/listings/{lid}/stock-adjustments", json={"delta": 1, "reason": "x"}, as_=owner
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "sku_id"
    r = api.patch(f"/api/v1/listings/{lid}/skus/{paperback}", json={"price_fen": None}, as_=owner)
    assert r.status_code == 422
    assert len(changed) >= 5  # create, add SKU, two SKU edits, the other listing


def test_a_published_goods_listing_keeps_one_active_sku(api: ApiClient, world: World) -> None:
    owner = world.tokens["owner"]
    listing = create(
        api, world, goods_body(world, skus=[{"name": "单册", "price_fen": 5800, "stock": 1}])
    )
    lid, sku = listing["id"], listing["skus"][0]["id"]
    api.post(f"/api/v1/listings/{lid}/publish", as_=owner)
    r = api.patch(f"/api/v1/listings/{lid}/skus/{sku}", json={"is_active": False}, as_=owner)
    assert r.status_code == 409 and r.json()["code"] == "last_active_sku"
    api.post(f"/api/v1/listings/{lid}/unpublish", as_=owner)
    r = api.patch(f"/api/v1/listings/{lid}/skus/{sku}", json={"is_active": False}, as_=owner)
    assert r.status_code == 200
    # No active SKU: cannot publish again.
    r = api.post(f"/api/v1/listings/{lid}/publish", as_=owner)
    assert r.status_code == 409 and r.json()["code"] == "no_active_sku"


def test_publish_state_machine(api: ApiClient, world: World, changed: list[int]) -> None:
    owner = world.tokens["owner"]
    lid = create(api, world, deal_body(world))["id"]
    r = api.post(f"/api/v1/listings/{lid}/unpublish", as_=owner)
    assert r.status_code == 409 and r.json()["code"] == "invalid_transition"
    assert api.post(f"/api/v1/listings/{lid}/publish", as_=owner).json()["status"] == "published"
    r = api.post(f"/api/v1/listings/{lid}/publish", as_=owner)
    assert r.status_code == 409 and r.json()["code"] == "invalid_transition"
    assert (
        api.post(f"/api/v1/listings/{lid}/unpublish", as_=owner).json()["status"] == "unpublished"
    )
    assert api.get(f"/api/v1/listings/{lid}").status_code == 404
    assert api.post(f"/api/v1/listings/{lid}/unpublish", as_=owner).status_code == 409
    assert api.post(f"/api/v1/listings/{lid}/publish", as_=owner).json()["status"] == "published"
    assert api.get(f"/api/v1/listings/{lid}").status_code == 200
    # create + 3 successful moves; refused moves do not touch the index.
    assert changed == [lid] * 4
    r = api.post(f"/api/v1/listings/{lid}/unpublish", as_=world.tokens["clerk"])
    assert r.status_code == 403


# --- services -------------------------------------------------------------------------------


def test_deal_detail_with_stores_by_distance(api: ApiClient, world: World) -> None:
    listing = create(api, world, deal_body(world, stock=30, images=[]))
    lid = listing["id"]
    assert listing["price_fen"] == 19800 and listing["original_price_fen"] == 29800
    assert listing["available"] == 30 and listing["stock_levels"]["total"] == 30
    assert listing["refund_rules"] == {"refund_anytime": True, "auto_refund_on_expiry": True}
    api.post(f"/api/v1/listings/{lid}/publish", as_=world.tokens["owner"])

    # World stores: (22.53, 113.93) and (22.54, 113.94). Stand next to the second one.
    r = api.get(f"/api/v1/listings/{lid}?lat=22.541&lng=113.941")
    stores = r.json()["stores"]
    assert [s["id"] for s in stores] == [world.a.store_ids[1], world.a.store_ids[0]]
    assert stores[0]["distance_m"] == round(haversine_m(22.541, 113.941, 22.54, 113.94))
    assert 100 < stores[0]["distance_m"] < 200 and 1500 < stores[1]["distance_m"] < 1700
    assert r.json()["stock_levels"] is None and r.json()["valid_days"] == 90
    assert r.json()["per_user_limit"] == 2

    no_location = api.get(f"/api/v1/listings/{lid}").json()
    assert [s["distance_m"] for s in no_location["stores"]] == [None, None]
    assert api.get(f"/api/v1/listings/{lid}?lat=22.5").status_code == 422
    assert api.get(f"/api/v1/listings/{lid}?lat=95&lng=113.9").status_code == 422

    unlimited = create(api, world, deal_body(world, title="无限量套餐"))
    assert unlimited["available"] is None and unlimited["stock_levels"] is None


def test_editing_a_deal(api: ApiClient, world: World, changed: list[int]) -> None:
    owner = world.tokens["owner"]
    lid = create(api, world, deal_body(world, stock=10))["id"]
    url = f"/api/v1/listings/{lid}"

    r = api.patch(url, json={"title": "重庆老火锅超值双人餐", "price_fen": 18800}, as_=owner)
    assert r.status_code == 200 and r.json()["title"] == "重庆老火锅超值双人餐"
    assert r.json()["price_fen"] == 18800

    # The original price may not drop below the price, whichever of the two changes.
    r = api.patch(url, json={"original_price_fen": 10000}, as_=owner)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "original_price_fen"
    r = api.patch(url, json={"price_fen": 30000}, as_=owner)
    assert r.status_code == 422

    # Validity: setting one of valid_days / valid_until replaces the other.
    until = (utcnow() + timedelta(days=30)).isoformat()
    r = api.patch(url, json={"valid_until": until}, as_=owner)
    assert r.status_code == 200 and r.json()["valid_days"] is None and r.json()["valid_until"]
    r = api.patch(url, json={"valid_days": 7}, as_=owner)
    assert r.json()["valid_days"] == 7 and r.json()["valid_until"] is None
    r = api.patch(url, json={"valid_days": None}, as_=owner)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "valid_days"
    r = api.patch(url, json={"valid_until": (utcnow() - timedelta(days=1)).isoformat()}, as_=owner)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "valid_until"

    # Stock: set what is available (audited), then unlimited.
    r = api.patch(url, json={"stock": 4, "stock_reason": "限量"}, as_=owner)
    assert r.json()["available"] == 4
    r = api.patch(url, json={"stock": None, "per_user_limit": None}, as_=owner)
    assert r.json()["available"] is None and r.json()["per_user_limit"] is None
    audit = api.get(f"{url}/stock-adjustments", as_=world.tokens["operator"]).json()["items"]
    assert [(a["delta"], a["reason"]) for a in audit] == [(-6, "限量")]

    # Fields of the other kind, blank required fields and foreign stores are refused.
    r = api.patch(url, json={"shipping_fee_fen": 100}, as_=owner)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "shipping_fee_fen"
    r = api.patch(url, json={"title": None}, as_=owner)
    assert r.status_code == 422
    r = api.patch(url, json={"store_ids": [world.b.store_ids[0]]}, as_=owner)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "store_ids"
    r = api.patch(url, json={"category_id": 999999}, as_=owner)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "category_id"
    r = api.patch(url, json={"store_ids": [world.a.store_ids[1]]}, as_=owner)
    assert r.status_code == 200 and [s["id"] for s in r.json()["stores"]] == [world.a.store_ids[1]]

    goods = create(api, world, goods_body(world))
    r = api.patch(f"/api/v1/listings/{goods['id']}", json={"price_fen": 1}, as_=owner)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "price_fen"
    r = api.patch(f"/api/v1/listings/{goods['id']}", json={"shipping_fee_fen": 0}, as_=owner)
    assert r.status_code == 200 and r.json()["shipping_fee_fen"] == 0
    assert changed.count(lid) == 1 + 6  # create + six successful edits


# --- who may create -------------------------------------------------------------------------


def test_only_managers_of_an_approved_merchant_create_listings(
    api: ApiClient, world: World
) -> None:
    url = f"/api/v1/merchants/{world.a.id}/listings"
    r = api.post(url, json=goods_body(world), as_=world.tokens["clerk"])
    assert r.status_code == 403 and r.json()["code"] == "role_not_allowed"
    r = api.post(url, json=goods_body(world), as_=world.tokens["other_owner"])
    assert r.status_code == 403
    assert api.post(url, json=goods_body(world)).status_code == 401

    # The pending merchant's owner cannot sell yet.
    with world.db.transaction(readonly=True) as s:
        from o2o.merchants.models import Membership

        applicant_id = s.scalar(
            select(Membership.user_id).where(Membership.merchant_id == world.pending_merchant_id)
        )
    from tests.support import token_for

    token = token_for(api.app, applicant_id)
    r = api.post(
        f"/api/v1/merchants/{world.pending_merchant_id}/listings",
        json={**goods_body(world)},
        as_=token,
    )
    assert r.status_code == 403 and r.json()["code"] == "merchant_not_approved"
    assert listing_count(world.db) == 0


def test_suspended_merchant_listings_disappear_for_consumers(api: ApiClient, world: World) -> None:
    lid = create(api, world, deal_body(world))["id"]
    api.post(f"/api/v1/listings/{lid}/publish", as_=world.tokens["owner"])
    assert api.get(f"/api/v1/listings/{lid}").status_code == 200
    r = api.post(
        f"/api/v1/admin/merchants/{world.a.id}/suspend",
        json={"reason": "投诉"},
        as_=world.tokens["operator"],
    )
    assert r.status_code == 200
    assert api.get(f"/api/v1/listings/{lid}").status_code == 404
    assert api.get(f"/api/v1/merchants/{world.a.id}/listings").status_code == 404
    assert api.get(f"/api/v1/listings/{lid}", as_=world.tokens["owner"]).status_code == 200
    # … and its staff cannot change anything while suspended.
    r = api.patch(f"/api/v1/listings/{lid}", json={"title": "新"}, as_=world.tokens["owner"])
    assert r.status_code == 403 and r.json()["code"] == "merchant_not_approved"


def test_merchant_listing_list(api: ApiClient, world: World) -> None:
    owner = world.tokens["owner"]
    ids = [create(api, world, deal_body(world, title=f"套餐{i}"))["id"] for i in range(3)]
    goods = create(api, world, goods_body(world))["id"]
    for lid in (ids[0], ids[2], goods):
        api.post(f"/api/v1/listings/{lid}/publish", as_=owner)
    api.post(f"/api/v1/listings/{ids[2]}/unpublish", as_=owner)

    url = f"/api/v1/merchants/{world.a.id}/listings"
    public = api.get(url).json()
    assert [i["id"] for i in public["items"]] == [ids[0], goods]
    assert public["items"][1]["image"] == "https://img.example.com/santi.jpg"
    assert api.get(url + "?status=draft").json()["items"] == []
    staff = api.get(url, as_=world.tokens["clerk"]).json()["items"]
    assert [(i["id"], i["status"]) for i in staff] == [
        (ids[0], "published"),
        (ids[1], "draft"),
        (ids[2], "unpublished"),
        (goods, "published"),
    ]
    assert [i["id"] for i in api.get(url + "?kind=goods", as_=owner).json()["items"]] == [goods]
    page = api.get(url + "?limit=2", as_=owner).json()
    assert page["next_cursor"] == str(ids[1])
    rest = api.get(url + f"?limit=2&cursor={page['next_cursor']}", as_=owner).json()
    assert [i["id"] for i in rest["items"]] == [ids[2], goods]
    assert api.get(url + "?limit=0").status_code == 422
    assert api.get(url + "?cursor=abc").status_code == 422
    assert api.get(f"/api/v1/merchants/{world.b.id}/listings").json()["items"] == []


# --- validation -----------------------------------------------------------------------------

BAD_GOODS = [
    ({"skus": []}, "skus"),
    ({"skus": [{"name": "x", "price_fen": 0, "stock": 1}]}, "price_fen"),
    ({"skus": [{"name": "x", "price_fen": 100, "stock": -1}]}, "stock"),
    ({"skus": [{"name": "x", "price_fen": 2**70, "stock": 1}]}, "price_fen"),
    ({"skus": [{"name": "", "price_fen": 100, "stock": 1}]}, "name"),
    ({"shipping_fee_fen": -1}, "shipping_fee_fen"),
    ({"shipping_fee_fen": 10**12}, "shipping_fee_fen"),
    ({"title": "   "}, "title"),
    ({"title": "标" * 101}, "title"),
    ({"title": "含\x00字符"}, ""),
    ({"category_id": 999999}, "category_id"),
    ({"category_id": 2**63}, "category_id"),
    ({"images": ["javascript:alert(1)"]}, "images"),
    ({"kind": "coupon"}, "body"),  # an unknown kind: the body as a whole is wrong
]

BAD_DEALS = [
    ({"price_fen": 0}, "price_fen"),
    ({"price_fen": 2**40}, "price_fen"),
    ({"original_price_fen": 19799}, "original_price_fen"),
    ({"stock": -1}, "stock"),
    ({"stock": 10**9}, "stock"),
    ({"store_ids": []}, "store_ids"),
    ({"store_ids": ["B"]}, "store_ids"),  # replaced below by merchant B's store
    ({"valid_days": 0}, "valid_days"),
    ({"valid_days": 3651}, "valid_days"),
    ({"valid_days": None}, "valid_days"),
    ({"valid_until": "FUTURE"}, "valid_until"),  # both set
    ({"valid_days": None, "valid_until": "PAST"}, "valid_until"),
    ({"valid_days": None, "valid_until": "2030-01-01T00:00:00"}, "valid_until"),  # no offset
    ({"per_user_limit": 0}, "per_user_limit"),
    ({"requires_slot": "maybe"}, "requires_slot"),
]


@pytest.mark.parametrize("overrides,field", BAD_GOODS + BAD_DEALS, ids=lambda v: str(v)[:40])
def test_bad_listings_are_422_with_field_errors(
    api: ApiClient, world: World, overrides: dict[str, Any], field: str
) -> None:
    is_deal = (overrides, field) in BAD_DEALS
    body = deal_body(world) if is_deal else goods_body(world)
    values = {
        "B": world.b.store_ids[0],
        "FUTURE": (utcnow() + timedelta(days=10)).isoformat(),
        "PAST": (utcnow() - timedelta(minutes=1)).isoformat(),
    }
    for key, value in overrides.items():
        if isinstance(value, str) and value in values:
            value = values[value]
        if isinstance(value, list) and value and isinstance(value[0], str) and value[0] in values:
            value = [values[value[0]]]
        body[key] = value
    r = api.post(f"/api/v1/merchants/{world.a.id}/listings", json=body, as_=world.tokens["owner"])
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] in ("validation_error", "malformed_json")
    # Shape errors are prefixed with the kind ("goods.skus.0.price_fen"); rule errors are not.
    assert any(field in e["field"] for e in problem["errors"]), problem["errors"]
    assert listing_count(world.db) == 0


def test_several_problems_are_reported_at_once(api: ApiClient, world: World) -> None:
    body = deal_body(
        world, original_price_fen=100, store_ids=[world.b.store_ids[0]], category_id=424242
    )
    r = api.post(f"/api/v1/merchants/{world.a.id}/listings", json=body, as_=world.tokens["owner"])
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {
        "category_id",
        "store_ids",
        "original_price_fen",
    }


# --- time slots -----------------------------------------------------------------------------


def test_time_slots(api: ApiClient, world: World, db: Database) -> None:
    owner = world.tokens["owner"]
    store0, store1 = world.a.store_ids
    lid = create(api, world, deal_body(world, requires_slot=True, title="资深发型师洗剪吹"))["id"]
    url = f"/api/v1/listings/{lid}/slots"

    # A week of slots every two hours, alternating between the two stores.
    week = [slot(world.a.store_ids[i % 2], 24 + 2 * i, capacity=2) for i in range(84)]
    r = api.post(url, json=week, as_=owner)
    assert r.status_code == 201 and len(r.json()) == 84
    assert r.json()[0]["levels"] == {"total": 2, "available": 2, "held": 0, "sold": 0}

    # Re-sending a slot that exists is a conflict, and nothing is created.
    r = api.post(url, json=[week[0], slot(store0, 2)], as_=owner)
    assert r.status_code == 409 and r.json()["code"] == "slot_exists"

    # Publishing with slots; consumers see open, future slots with remaining capacity.
    api.post(f"/api/v1/listings/{lid}/publish", as_=owner)
    first = api.get(url + "?limit=3").json()
    assert [s["starts_at"] for s in first["items"]] == sorted(
        s["starts_at"] for s in first["items"]
    )
    assert first["items"][0]["remaining"] == 2 and first["items"][0]["levels"] is None
    second = api.get(url + f"?limit=3&cursor={first['next_cursor']}").json()
    assert first["items"][-1]["starts_at"] < second["items"][0]["starts_at"]
    everything = api.get(url + "?limit=500").json()
    assert len(everything["items"]) == 84 and everything["next_cursor"] is None

    # Filters: one store, one day.
    only1 = api.get(url + f"?store_id={store1}&limit=500").json()["items"]
    assert len(only1) == 42 and {s["store_id"] for s in only1} == {store1}
    day_start = utcnow() + timedelta(hours=23)
    day = api.get(
        url,
        params={
            "from": day_start.isoformat(),
            "to": (day_start + timedelta(hours=24)).isoformat(),
        },
    ).json()["items"]
    assert len(day) == 12

    # A held unit shows as one place less, in the slot list and the detail.
    slot_id = everything["items"][0]["id"]
    with db.transaction() as s:
        item_id = s.get(TimeSlot, slot_id).inventory_item_id
        inventory.hold(s, item_id, 1, ref="order_line:1")
    assert api.get(url + "?limit=1").json()["items"][0]["remaining"] == 1
    detail = api.get(f"/api/v1/listings/{lid}").json()
    assert detail["upcoming_slots"][0] == {**everything["items"][0], "remaining": 1}
    assert len(detail["upcoming_slots"]) == service.UPCOMING_SLOTS

    # Capacity is inventory: adjust it like stock.
    r = api.post(
        f"/api/v1/listings/{lid}/stock-adjustments",
        json={"slot_id": slot_id, "delta": 3, "reason": "加派发型师"},
        as_=owner,
    )
    assert r.status_code == 201 and r.json()["levels"]["available"] == 4
    assert r.json()["adjustment"]["slot_id"] == slot_id

    # Closing hides it from consumers (staff still see it); closing twice is a conflict.
    r = api.post(f"{url}/{slot_id}/close", as_=world.tokens["manager"])
    assert r.status_code == 200 and r.json()["is_open"] is False
    assert api.post(f"{url}/{slot_id}/close", as_=owner).status_code == 409
    assert slot_id not in [s["id"] for s in api.get(url + "?limit=500").json()["items"]]
    staff_view = api.get(url + "?limit=500", as_=world.tokens["clerk"]).json()["items"]
    assert slot_id in [s["id"] for s in staff_view]
    assert api.get(f"/api/v1/listings/{lid}").json()["upcoming_slots"][0]["id"] != slot_id
    r = api.post(f"{url}/{slot_id}/reopen", as_=owner)
    assert r.status_code == 200 and r.json()["is_open"] is True

    # A store cannot be dropped from the deal while it has open slots.
    r = api.patch(f"/api/v1/listings/{lid}", json={"store_ids": [store0]}, as_=owner)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "store_ids"


def test_bad_slots_are_refused(api: ApiClient, world: World) -> None:
    owner = world.tokens["owner"]
    store0, _ = world.a.store_ids
    lid = create(api, world, deal_body(world, requires_slot=True, store_ids=[store0]))["id"]
    url = f"/api/v1/listings/{lid}/slots"
    ends_first = slot(store0, 5)
    ends_first["ends_at"], ends_first["starts_at"] = ends_first["starts_at"], ends_first["ends_at"]
    cases = [
        ([slot(world.a.store_ids[1], 5)], "0.store_id"),  # not a store of this deal
        ([slot(world.b.store_ids[0], 5)], "0.store_id"),
        ([slot(store0, 5), ends_first], "1.ends_at"),
        ([slot(store0, 5, length_h=0)], "0.ends_at"),
        ([slot(store0, 5, length_h=25)], "0.ends_at"),
        ([slot(store0, -1)], "0.starts_at"),
        ([slot(store0, 24 * 400)], "0.starts_at"),
        ([slot(store0, 5), slot(store0, 5)], "1.starts_at"),
        ([slot(store0, 5, capacity=0)], "0.capacity"),
        ([slot(store0, 5, capacity=10**9)], "0.capacity"),
        ([{**slot(store0, 5), "starts_at": "2030-01-01T10:00:00"}], "0.starts_at"),
        ([], ""),
        ([slot(store0, 5 + i) for i in range(501)], ""),
    ]
    for body, field in cases:
        r = api.post(url, json=body, as_=owner)
        assert r.status_code == 422, (field, r.text)
        assert any(e["field"] == field for e in r.json()["errors"]) or not field, r.json()
    assert api.get(url, as_=owner).json()["items"] == []
    # Odd queries are 4xx or empty, never a 500.
    for query in (
        "?cursor=9999999999999999_1",
        "?cursor=99999999999999999_1",
        "?cursor=x",
        "?from=yesterday",
        "?from=9999-12-31T00:00:00Z",
        "?store_id=99999999999999999999",
        "?limit=501",
    ):
        r = api.get(url + query, as_=owner)
        assert r.status_code in (200, 422), (query, r.text)

    plain = create(api, world, deal_body(world, title="无需预约"))["id"]
    r = api.post(f"/api/v1/listings/{plain}/slots", json=[slot(store0, 5)], as_=owner)
    assert r.status_code == 409 and r.json()["code"] == "slots_not_enabled"
    r = api.post(url, json=[slot(store0, 5)], as_=world.tokens["clerk"])
    assert r.status_code == 403


# --- for checkout, payment and reviews -------------------------------------------------------


def test_resolve_purchase(world: World, db: Database) -> None:
    goods = make_listing(world)
    deal = make_listing(world, kind="service", stock=10)
    slotted = make_listing(world, kind="service", requires_slot=True, slots=2)
    draft = make_listing(world, publish=False)
    with db.transaction() as s:
        p = service.resolve_purchase(s, goods["listing_id"], sku_id=goods["sku_id"])
        assert (p.kind, p.unit_price_fen, p.sku_name, p.merchant_name) == (
            "goods",
            9300,
            "平装",
            "甲火锅",
        )
        assert p.commission_bp == 600 and p.label == "三体 全三册（平装）"
        assert p.inventory_item_ids == (
            s.get(Listing, goods["listing_id"]).skus[0].inventory_item_id,
        )
        assert p.voucher_expires_at(utcnow()) is None

        d = service.resolve_purchase(s, deal["listing_id"])
        assert d.unit_price_fen == 19800 and d.original_price_fen == 29800
        assert d.store_ids == tuple(world.a.store_ids) and d.valid_days == 90
        paid = utcnow()
        assert d.voucher_expires_at(paid) == paid + timedelta(days=90)

        t = service.resolve_purchase(s, slotted["listing_id"], slot_id=slotted["slot_id"])
        slot_row = s.get(TimeSlot, slotted["slot_id"])
        assert t.inventory_item_ids == (slot_row.inventory_item_id,)
        assert t.slot_store_id == slot_row.store_id
        assert t.voucher_expires_at(paid) == slot_row.ends_at

        # A merchant-specific commission overrides the category's.
        from o2o.merchants.models import Merchant

        s.get(Merchant, world.a.id).commission_bp = 250
        s.flush()
        assert service.resolve_purchase(s, deal["listing_id"]).commission_bp == 250

    refusals = [
        (dict(listing_id=goods["listing_id"]), ValidationFailed),  # SKU missing
        (dict(listing_id=goods["listing_id"], sku_id=goods["sku_id"], slot_id=1), ValidationFailed),
        (dict(listing_id=deal["listing_id"], sku_id=goods["sku_id"]), ValidationFailed),
        (dict(listing_id=deal["listing_id"], slot_id=slotted["slot_id"]), ValidationFailed),
        (dict(listing_id=slotted["listing_id"]), ValidationFailed),  # slot missing
        (dict(listing_id=draft["listing_id"], sku_id=draft["sku_id"]), Conflict),
        (dict(listing_id=goods["listing_id"], sku_id=draft["sku_id"]), NotFound),
        (dict(listing_id=987654), NotFound),
    ]
    with db.transaction(readonly=True) as s:
        for kwargs, error in refusals:
            listing_id = kwargs.pop("listing_id")
            with pytest.raises(error):
                service.resolve_purchase(s, listing_id, **kwargs)

    with db.transaction() as s:
        s.get(TimeSlot, slotted["slot_id"]).is_open = False
        s.get(TimeSlot, slotted["slot_id"]).starts_at = utcnow() - timedelta(minutes=1)
        s.get(Listing, goods["listing_id"]).skus[0].is_active = False
        expired = s.get(Listing, deal["listing_id"])
        expired.valid_days, expired.valid_until = None, utcnow() - timedelta(seconds=1)
    with db.transaction(readonly=True) as s:
        for listing_id, kwargs, code in [
            (slotted["listing_id"], {"slot_id": slotted["slot_id"]}, "slot_closed"),
            (goods["listing_id"], {"sku_id": goods["sku_id"]}, "sku_inactive"),
            (deal["listing_id"], {}, "listing_expired"),
        ]:
            with pytest.raises(Conflict) as exc:
                service.resolve_purchase(s, listing_id, **kwargs)
            assert exc.value.code == code


def test_sales_and_ratings_show_on_the_listing(api: ApiClient, world: World) -> None:
    lid = make_listing(world, kind="service")["listing_id"]
    with world.db.transaction() as s:
        service.record_sales(s, lid, 3)
        service.record_sales(s, lid, -1)
        service.add_rating(s, lid, 5)
        service.add_rating(s, lid, 4)
        with pytest.raises(ValidationFailed):
            service.add_rating(s, lid, 6)
    detail = api.get(f"/api/v1/listings/{lid}").json()
    assert (detail["sales_count"], detail["rating"], detail["rating_count"]) == (2, 4.5, 2)


# --- geo and demo ---------------------------------------------------------------------------


def test_haversine_and_bounding_box() -> None:
    assert haversine_m(22.5, 114.0, 22.5, 114.0) == 0
    # One degree of latitude is ~111.2 km anywhere.
    assert abs(haversine_m(22.0, 114.0, 23.0, 114.0) - 111_195) < 10
    # 深圳北站 → 深圳湾公园: about 15 km as the crow flies.
    assert 14_500 < haversine_m(22.6097, 114.0292, 22.4960, 113.9470) < 16_000
    min_lat, max_lat, min_lng, max_lng = bounding_box(22.54, 114.05, 3000)
    for bearing in range(0, 360, 15):
        # Points on the circle (and just inside) fall in the box.
        rad = math.radians(bearing)
        lat = 22.54 + 2999 / 111_195 * math.cos(rad)
        lng = 114.05 + 2999 / (111_195 * math.cos(math.radians(22.54))) * math.sin(rad)
        assert haversine_m(22.54, 114.05, lat, lng) <= 3000
        assert min_lat <= lat <= max_lat and min_lng <= lng <= max_lng
    assert bounding_box(89.99, 0, 5000)[2:] == (-180.0, 180.0)


def test_demo_catalogue_is_published_and_idempotent(
    demo_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo accounts' argon2 hashing is slow on purpose and not what this test is about.
    from tests.support import _PASSWORD_HASH

    monkeypatch.setattr(accounts_service, "hash_password", lambda _password: _PASSWORD_HASH)
    demo.load(demo_db)
    with demo_db.transaction(readonly=True) as s:
        listings = s.scalars(select(Listing)).all()
        slots = s.scalar(select(func.count()).select_from(TimeSlot))
        categories = {c.id: c.name for c in s.scalars(select(Category))}
        sku_counts = {listing.title: len(listing.skus) for listing in listings}
    titles = {listing.title: listing for listing in listings}
    assert all(listing.status == "published" for listing in listings)
    assert titles["重庆老火锅双人套餐"].price_fen == 19800
    assert titles["重庆老火锅双人套餐"].original_price_fen == 29800
    assert categories[titles["重庆老火锅双人套餐"].category_id] == "火锅"
    assert titles["潮汕牛肉火锅4人餐"].kind == "service"
    assert titles["Apple iPhone 16 5G手机 国行正品"].kind == "goods"
    assert sku_counts["Apple iPhone 16 5G手机 国行正品"] == 3
    assert titles["2D电影票 单人"].requires_slot and titles["资深发型师洗剪吹"].requires_slot
    assert slots and slots > 50
    assert any("洗剪吹" in t for t in titles) and any("足疗" in t for t in titles)
    assert any("肠粉" in t for t in titles) and any("剁椒鱼头" in t for t in titles)

    demo.load(demo_db)
    with demo_db.transaction(readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(Listing)) == len(listings)
        assert s.scalar(select(func.count()).select_from(TimeSlot)) == slots
        assert s.scalar(select(func.count()).select_from(InventoryAdjustment)) == 0
