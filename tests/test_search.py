"""Search as the information hub: Chinese keywords, near me, filters, sorting, pagination, and an
index that follows listings, merchants and stores. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import func, select, text

from o2o import geo
from o2o.catalog import service as catalog_service
from o2o.catalog.models import Listing, ListingStore
from o2o.config import Settings
from o2o.db import Database
from o2o.merchants.models import Category, Merchant, Store
from o2o.search import indexer, service, tokens
from o2o.search import jobs as search_jobs
from o2o.search.models import SearchDocument, SearchLocation
from tests.support import ApiClient, World

# 深圳南山 科技园: the consumer's position in these tests.
HOME = (22.5400, 113.9500)
M_PER_DEG_LAT = 111_195.0


def north(metres: float) -> tuple[float, float]:
    return HOME[0] + metres / M_PER_DEG_LAT, HOME[1]


def east(metres: float) -> tuple[float, float]:
    import math

    return HOME[0], HOME[1] + metres / (M_PER_DEG_LAT * math.cos(math.radians(HOME[0])))


@dataclass
class Catalogue:
    """Categories, merchants and stores to hang listings on."""

    db: Database
    categories: dict[str, int] = field(default_factory=dict)
    merchants: dict[str, int] = field(default_factory=dict)
    stores: dict[str, int] = field(default_factory=dict)

    def category(self, name: str, parent: str | None = None) -> int:
        with self.db.transaction() as s:
            c = Category(name=name, parent_id=self.categories.get(parent) if parent else None)
            s.add(c)
            s.flush()
            self.categories[name] = c.id
        return c.id

    def merchant(self, name: str, category: str, status: str = "approved") -> int:
        with self.db.transaction() as s:
            m = Merchant(
                name=name,
                contact_phone="13712345678",
                license_no="91440300MA5T0001",
                category_id=self.categories[category],
                status=status,
            )
            s.add(m)
            s.flush()
            self.merchants[name] = m.id
        return m.id

    def store(
        self, key: str, merchant: str, at: tuple[float, float], district: str = "南山区"
    ) -> int:
        with self.db.transaction() as s:
            st = Store(
                merchant_id=self.merchants[merchant],
                name=key,
                address="深南大道10000号",
                city="深圳市",
                district=district,
                lat=at[0],
                lng=at[1],
            )
            s.add(st)
            s.flush()
            self.stores[key] = st.id
        return st.id

    def listing(
        self,
        title: str,
        merchant: str,
        category: str,
        stores: tuple[str, ...] = (),
        *,
        kind: str = "service",
        price_fen: int = 9900,
        sales: int = 0,
        status: str = "published",
    ) -> int:
        with self.db.transaction() as s:
            listing = Listing(
                merchant_id=self.merchants[merchant],
                kind=kind,
                title=title,
                description="",
                category_id=self.categories[category],
                images=[],
                status=status,
                price_fen=price_fen,
                original_price_fen=price_fen * 2,
                sales_count=sales,
            )
            listing.store_links = [ListingStore(store_id=self.stores[k]) for k in stores]
            s.add(listing)
            s.flush()
            indexer.listing_changed(s, listing.id)
            return listing.id


def search(db: Database, **kw: Any) -> dict[str, Any]:
    with db.transaction(readonly=True) as s:
        return service.search(s, **kw)


def ids(page: dict[str, Any]) -> list[int]:
    return [item["listing_id"] for item in page["items"]]


@pytest.fixture
def cat(db: Database) -> Catalogue:
    c = Catalogue(db)
    c.category("美食")
    c.category("火锅", parent="美食")
    c.category("丽人")
    c.category("美发", parent="丽人")
    c.category("数码")
    return c


@pytest.fixture
def city(cat: Catalogue) -> Catalogue:
    """A hot-pot chain in 南山 and 福田, a salon, a BBQ place and a phone shop."""
    cat.merchant("蜀香居重庆老火锅", "火锅")
    cat.store("海岸城店", "蜀香居重庆老火锅", north(500))
    cat.store("购物公园店", "蜀香居重庆老火锅", east(10_000), district="福田区")
    cat.merchant("名匠造型", "美发")
    cat.store("科技园店", "名匠造型", east(1_500))
    cat.merchant("老街烧烤", "美食")
    cat.store("车公庙店", "老街烧烤", north(5_000), district="福田区")
    cat.merchant("数码港", "数码")
    cat.store("华强北店", "数码港", east(20_000), district="福田区")
    return cat


# --- Chinese keywords ----------------------------------------------------------------------


def test_hotpot_finds_the_deal_whose_title_contains_it(db: Database, city: Catalogue) -> None:
    hotpot = city.listing("重庆老火锅双人套餐", "蜀香居重庆老火锅", "火锅", ("海岸城店",))
    city.listing("男士精剪发型设计", "名匠造型", "美发", ("科技园店",))
    city.listing("招牌烤串拼盘", "老街烧烤", "美食", ("车公庙店",))

    assert ids(search(db, q="火锅")) == [hotpot]
    assert ids(search(db, q="老火锅")) == [hotpot]
    assert ids(search(db, q="重庆火锅")) == [hotpot]  # two words typed together: AND
    assert ids(search(db, q="锅")) == [hotpot]  # a single character


def test_haircut_finds_titles_that_contain_it_across_word_boundaries(
    db: Database, city: Catalogue
) -> None:
    # jieba cuts these titles as 精剪/发型设计 and 洗/剪发/套餐: only 剪发 as a substring finds both.
    styled = city.listing("男士精剪发型设计", "名匠造型", "美发", ("科技园店",))
    wash = city.listing("精致洗剪发套餐", "名匠造型", "美发", ("科技园店",))
    blow = city.listing("女士洗剪吹造型", "名匠造型", "美发", ("科技园店",))
    city.listing("重庆老火锅双人套餐", "蜀香居重庆老火锅", "火锅", ("海岸城店",))

    assert sorted(ids(search(db, q="剪发"))) == sorted([styled, wash])
    assert ids(search(db, q="洗剪吹")) == [blow]  # jieba: 洗/剪/吹, rejoined and matched whole
    assert sorted(ids(search(db, q="洗剪"))) == sorted([wash, blow])


def test_two_words_must_both_match_across_title_merchant_and_district(
    db: Database, city: Catalogue
) -> None:
    # 火锅 only in the merchant name, 南山 only in the store's district.
    nanshan = city.listing("超值双人套餐", "蜀香居重庆老火锅", "火锅", ("海岸城店",))
    # A hot-pot deal offered only in 福田.
    city.listing("重庆老火锅四人餐", "蜀香居重庆老火锅", "火锅", ("购物公园店",))
    # In 南山, but not hot pot.
    city.listing("男士精剪发型设计", "名匠造型", "美发", ("科技园店",))

    assert ids(search(db, q="南山 火锅")) == [nanshan]
    assert ids(search(db, q="南山火锅")) == [nanshan]
    assert ids(search(db, q="火锅  南山")) == [nanshan]
    assert len(ids(search(db, q="火锅"))) == 2
    assert len(ids(search(db, q="南山"))) == 2


def test_latin_and_digits_match_as_prefixes(db: Database, city: Catalogue) -> None:
    phone = city.listing("iPhone15 Pro 256G 手机", "数码港", "数码", kind="goods")
    assert ids(search(db, q="iphone")) == [phone]
    assert ids(search(db, q="IPHONE15 手机")) == [phone]  # NFKC + lower case
    assert ids(search(db, q="２５６g")) == [phone]  # full-width digits
    assert ids(search(db, q="android")) == []


@pytest.mark.parametrize("q", ["螺蛳粉", "zzz", "！！！", "。", "南山 螺蛳粉"])
def test_no_match_is_an_empty_list(db: Database, city: Catalogue, q: str) -> None:
    city.listing("重庆老火锅双人套餐", "蜀香居重庆老火锅", "火锅", ("海岸城店",))
    assert search(db, q=q) == {"items": [], "next_cursor": None}


def test_title_match_ranks_above_a_merchant_name_match(db: Database, city: Catalogue) -> None:
    by_merchant = city.listing("超值双人套餐", "蜀香居重庆老火锅", "火锅", ("海岸城店",))
    by_title = city.listing("鸳鸯火锅套餐", "老街烧烤", "美食", ("车公庙店",))
    page = search(db, q="火锅")
    assert ids(page) == [by_title, by_merchant]
    assert page["items"][0]["score"] > page["items"][1]["score"] > 0


def test_whole_words_in_the_title_rank_above_substrings(db: Database, city: Catalogue) -> None:
    # 精致洗剪发套餐 cuts as 精致/洗/剪发/套餐; 男士精剪发型设计 as 精剪/发型设计: 剪发 only inside.
    inside = city.listing("男士精剪发型设计", "名匠造型", "美发", ("科技园店",), sales=90_000)
    word = city.listing("精致洗剪发套餐", "名匠造型", "美发", ("科技园店",), sales=0)
    page = search(db, q="剪发")
    assert ids(page) == [word, inside]
    assert [int(i["score"]) for i in page["items"]] == [2, 1]


def test_sales_break_ties_between_equal_text_matches(db: Database, city: Catalogue) -> None:
    quiet = city.listing("重庆火锅套餐", "蜀香居重庆老火锅", "火锅", ("海岸城店",), sales=0)
    popular = city.listing("重庆火锅套餐", "蜀香居重庆老火锅", "火锅", ("海岸城店",), sales=5000)
    assert ids(search(db, q="火锅")) == [popular, quiet]


def test_sales_show_at_once_and_the_rank_follows_in_the_worker(
    db: Database, city: Catalogue
) -> None:
    quiet = city.listing("重庆火锅套餐", "蜀香居重庆老火锅", "火锅", ("海岸城店",), sales=10)
    busy = city.listing("重庆火锅套餐", "蜀香居重庆老火锅", "火锅", ("海岸城店",), sales=500)
    assert ids(search(db, q="火锅")) == [busy, quiet]
    with db.transaction() as s:  # what a payment does
        catalog_service.record_sales(s, quiet, 4000)
    page = search(db, q="火锅", sort="sales")
    assert ids(page) == [quiet, busy]
    assert page["items"][0]["sales"] == 4010
    # Relevance ties are broken by the rank, which the worker refreshes.
    assert ids(search(db, q="火锅")) == [busy, quiet]
    search_jobs._cursor["after"] = -1
    assert search_jobs.refresh_ranks(db, Settings()) == 1
    assert ids(search(db, q="火锅")) == [quiet, busy]
    search_jobs._cursor["after"] = -1
    assert search_jobs.refresh_ranks(db, Settings()) == 0  # nothing stale any more


def test_only_published_listings_of_approved_merchants(db: Database, city: Catalogue) -> None:
    city.merchant("待审火锅", "火锅", status="pending")
    city.store("待审店", "待审火锅", north(100))
    city.listing("待审火锅套餐", "待审火锅", "火锅", ("待审店",))
    city.listing("草稿火锅套餐", "蜀香居重庆老火锅", "火锅", ("海岸城店",), status="draft")
    live = city.listing("火锅双人餐", "蜀香居重庆老火锅", "火锅", ("海岸城店",))
    assert ids(search(db, q="火锅")) == [live]
    assert ids(search(db, lat=HOME[0], lng=HOME[1], radius_m=3000)) == [live]


# --- filters -------------------------------------------------------------------------------


def test_kind_and_category_filters(db: Database, city: Catalogue) -> None:
    hotpot = city.listing("重庆老火锅双人套餐", "蜀香居重庆老火锅", "火锅", ("海岸城店",))
    bbq = city.listing("招牌烤串套餐", "老街烧烤", "美食", ("车公庙店",))
    cut = city.listing("精致洗剪发套餐", "名匠造型", "美发", ("科技园店",))
    phone = city.listing("手机套餐礼包", "数码港", "数码", kind="goods")

    assert sorted(ids(search(db, q="套餐"))) == sorted([hotpot, bbq, cut, phone])
    assert ids(search(db, q="套餐", kind="goods")) == [phone]
    assert sorted(ids(search(db, q="套餐", kind="service"))) == sorted([hotpot, bbq, cut])
    # A category includes its descendants: 美食 → 美食 + 火锅.
    assert sorted(ids(search(db, category_id=city.categories["美食"]))) == sorted([hotpot, bbq])
    assert ids(search(db, category_id=city.categories["火锅"])) == [hotpot]
    assert ids(search(db, q="套餐", category_id=city.categories["丽人"])) == [cut]
    assert ids(search(db, q="火锅", category_id=city.categories["丽人"])) == []
    assert ids(search(db, category_id=999_999)) == []


# --- near me -------------------------------------------------------------------------------


def test_radius_excludes_a_listing_five_km_away_and_sorts_by_distance(
    db: Database, city: Catalogue
) -> None:
    near = city.listing("重庆老火锅双人套餐", "蜀香居重庆老火锅", "火锅", ("海岸城店",))
    mid = city.listing("精致洗剪发套餐", "名匠造型", "美发", ("科技园店",))
    far = city.listing("招牌烤串套餐", "老街烧烤", "美食", ("车公庙店",))  # 5 km
    city.listing("手机", "数码港", "数码", kind="goods")  # no store: never "near"

    page = search(db, lat=HOME[0], lng=HOME[1], radius_m=3000)
    assert ids(page) == [near, mid]
    assert [i["nearest_store"]["distance_m"] for i in page["items"]] == [500, 1500]
    assert page["items"][0]["nearest_store"]["id"] == city.stores["海岸城店"]
    assert ids(search(db, lat=HOME[0], lng=HOME[1], radius_m=5100)) == [near, mid, far]
    assert ids(search(db, lat=HOME[0], lng=HOME[1], radius_m=4900)) == [near, mid]
    assert ids(search(db, q="套餐", lat=HOME[0], lng=HOME[1], radius_m=3000, sort="distance")) == [
        near,
        mid,
    ]
    assert ids(search(db, q="烤串", lat=HOME[0], lng=HOME[1], radius_m=3000)) == []


def test_category_and_kind_near_me(db: Database, city: Catalogue) -> None:
    """Category / kind near me, by distance: a filter nothing located has (goods) is empty at
    once; the others find their deals, a parent category its children's."""
    hotpot = city.listing("重庆老火锅双人套餐", "蜀香居重庆老火锅", "火锅", ("海岸城店",))
    cut = city.listing("精致洗剪发套餐", "名匠造型", "美发", ("科技园店",))
    city.listing("手机套餐礼包", "数码港", "数码", kind="goods")
    here = {"lat": HOME[0], "lng": HOME[1], "radius_m": 3000}

    def near(**kw: Any) -> list[int]:
        return ids(search(db, **here, **kw))

    assert near(category_id=city.categories["美食"]) == [hotpot]
    assert near(category_id=city.categories["火锅"]) == [hotpot]
    assert near(category_id=city.categories["丽人"]) == [cut]
    assert near(category_id=city.categories["数码"]) == []
    assert near(category_id=city.categories["数码"], kind="goods") == []
    assert near(category_id=city.categories["美食"], kind="goods") == []
    assert near(category_id=city.categories["美食"], kind="service") == [hotpot]
    assert near(kind="goods") == []
    assert near(kind="service") == [hotpot, cut]
    # Without a radius too (distance sort over everything).
    assert ids(search(db, lat=HOME[0], lng=HOME[1], category_id=city.categories["丽人"])) == [cut]


def test_nearest_store_of_a_chain_deal_and_distance_without_radius(
    db: Database, city: Catalogue
) -> None:
    chain = city.listing(
        "重庆老火锅双人套餐", "蜀香居重庆老火锅", "火锅", ("海岸城店", "购物公园店")
    )
    phone = city.listing("手机", "数码港", "数码", kind="goods")
    far = city.listing("招牌烤串套餐", "老街烧烤", "美食", ("车公庙店",))

    # Standing next to the 福田 store, that store is the nearest one.
    futian = east(10_000)
    page = search(db, q="火锅", lat=futian[0], lng=futian[1])
    assert page["items"][0]["nearest_store"]["id"] == city.stores["购物公园店"]
    assert page["items"][0]["nearest_store"]["distance_m"] == 0

    # Distance sort without a radius: everything, nearest first, listings without stores last.
    page = search(db, lat=HOME[0], lng=HOME[1], sort="distance")
    assert ids(page) == [chain, far, phone]
    assert page["items"][2]["nearest_store"] is None
    expected = geo.haversine_m(HOME[0], HOME[1], *north(5_000))
    assert page["items"][1]["nearest_store"]["distance_m"] == round(expected)
    # No place: no nearest store at all.
    assert search(db, q="火锅")["items"][0]["nearest_store"] is None


def test_distance_sort_is_exact_and_pages_follow_it(db: Database, cat: Catalogue) -> None:
    cat.merchant("连锁火锅", "火锅")
    expected = []
    for i, metres in enumerate([2900, 100, 2500, 700, 1300, 1900, 400, 2200, 50, 1600]):
        at = north(metres) if i % 2 else east(metres)
        cat.store(f"店{i}", "连锁火锅", at)
        listing_id = cat.listing(f"火锅套餐{i}", "连锁火锅", "火锅", (f"店{i}",))
        expected.append((geo.haversine_m(HOME[0], HOME[1], *at), listing_id))
    expected.sort()

    seen, cursor = [], None
    while True:
        page = search(
            db, lat=HOME[0], lng=HOME[1], radius_m=3000, sort="distance", limit=3, cursor=cursor
        )
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [i["listing_id"] for i in seen] == [listing_id for _, listing_id in expected]
    assert [i["nearest_store"]["distance_m"] for i in seen] == [round(d) for d, _ in expected]


# --- pagination ----------------------------------------------------------------------------


@pytest.mark.parametrize("sort", ["relevance", "distance", "sales", "price", "rating"])
def test_pages_neither_repeat_nor_skip(db: Database, city: Catalogue, sort: str) -> None:
    made = set()
    for i in range(23):
        store = ("海岸城店", "购物公园店")[i % 2]
        made.add(
            city.listing(
                f"火锅套餐{i}",
                "蜀香居重庆老火锅",
                "火锅",
                (store,),
                price_fen=1000 + (i % 5) * 100,  # ties on price and sales
                sales=(i % 4) * 10,
            )
        )
    kw: dict[str, Any] = {"q": "火锅", "sort": sort, "lat": HOME[0], "lng": HOME[1], "limit": 10}
    first = search(db, **kw)
    second = search(db, **kw, cursor=first["next_cursor"])
    assert search(db, **kw, cursor=first["next_cursor"]) == second  # same cursor, same page
    third = search(db, **kw, cursor=second["next_cursor"])
    assert third["next_cursor"] is None
    pages = [ids(first), ids(second), ids(third)]
    assert [len(p) for p in pages] == [10, 10, 3]
    everything = [i for p in pages for i in p]
    assert len(set(everything)) == 23 and set(everything) == made
    assert everything == ids(search(db, **{**kw, "limit": 100}))


# --- the index follows the catalogue, merchants and stores ----------------------------------


def test_unpublish_and_edit_update_the_index(db: Database, city: Catalogue) -> None:
    listing_id = city.listing("麻辣香锅双人套餐", "老街烧烤", "美食", ("车公庙店",))
    assert ids(search(db, q="香锅")) == [listing_id]
    with db.transaction() as s:
        listing = s.get(Listing, listing_id)
        listing.title = "潮汕牛肉锅四人餐"
        s.flush()
        indexer.listing_changed(s, listing_id)
    assert ids(search(db, q="香锅")) == []
    assert ids(search(db, q="牛肉锅")) == [listing_id]
    with db.transaction() as s:
        s.get(Listing, listing_id).status = "unpublished"
        indexer.listing_changed(s, listing_id)
    assert ids(search(db, q="牛肉锅")) == []
    assert ids(search(db, lat=HOME[0], lng=HOME[1], radius_m=6000)) == []
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(SearchLocation)) == 0


def test_suspending_and_renaming_a_merchant_through_the_api(
    api: ApiClient, world: World, db: Database
) -> None:
    cat = Catalogue(db, categories={"美食": world.category_id})
    with db.transaction() as s:
        cat.merchants = {m.name: m.id for m in s.scalars(select(Merchant))}
        cat.stores = {st.name: st.id for st in s.scalars(select(Store))}
    deal = cat.listing("重庆火锅双人套餐", "甲火锅", "美食", ("甲火锅0号店",))
    other = cat.listing("火锅底料", "乙书店", "美食", kind="goods")
    url = "/api/v1/search?q=火锅"
    assert sorted(i["listing_id"] for i in api.get(url).json()["items"]) == sorted([deal, other])

    r = api.post(
        f"/api/v1/admin/merchants/{world.a.id}/suspend",
        json={"reason": "投诉较多"},
        as_=world.tokens["operator"],
    )
    assert r.status_code == 200, r.text
    assert [i["listing_id"] for i in api.get(url).json()["items"]] == [other]

    r = api.post(f"/api/v1/admin/merchants/{world.a.id}/approve", as_=world.tokens["operator"])
    assert r.status_code == 200, r.text
    assert len(api.get(url).json()["items"]) == 2

    r = api.patch(
        f"/api/v1/merchants/{world.a.id}", json={"name": "蜀香居"}, as_=world.tokens["owner"]
    )
    assert r.status_code == 200, r.text
    hit = api.get("/api/v1/search?q=蜀香居").json()["items"]
    assert [i["listing_id"] for i in hit] == [deal]
    assert hit[0]["merchant"] == {"id": world.a.id, "name": "蜀香居"}


def test_moving_renaming_and_closing_a_store_through_the_api(
    api: ApiClient, world: World, db: Database
) -> None:
    cat = Catalogue(db, categories={"美食": world.category_id})
    with db.transaction() as s:
        cat.merchants = {m.name: m.id for m in s.scalars(select(Merchant))}
        cat.stores = {st.name: st.id for st in s.scalars(select(Store))}
    store_id = world.a.store_ids[0]  # at (22.53, 113.93)
    deal = cat.listing("重庆火锅双人套餐", "甲火锅", "美食", ("甲火锅0号店",))
    near_store = "/api/v1/search?lat=22.53&lng=113.93&radius_m=1000"
    assert [i["listing_id"] for i in api.get(near_store).json()["items"]] == [deal]

    store_url = f"/api/v1/merchants/{world.a.id}/stores/{store_id}"
    r = api.patch(
        store_url,
        json={"lat": 22.60, "lng": 114.05, "district": "龙华区", "name": "龙华店"},
        as_=world.tokens["manager"],
    )
    assert r.status_code == 200, r.text
    assert api.get(near_store).json()["items"] == []
    moved = api.get("/api/v1/search?lat=22.60&lng=114.05&radius_m=1000").json()["items"]
    assert [i["listing_id"] for i in moved] == [deal]
    assert moved[0]["nearest_store"] == {"id": store_id, "name": "龙华店", "distance_m": 0}
    assert [i["listing_id"] for i in api.get("/api/v1/search?q=龙华 火锅").json()["items"]] == [
        deal
    ]

    r = api.patch(store_url, json={"is_active": False}, as_=world.tokens["manager"])
    assert r.status_code == 200, r.text
    assert api.get("/api/v1/search?lat=22.60&lng=114.05&radius_m=1000").json()["items"] == []
    # Still a published deal: found by keyword, just not "near" anything.
    assert [i["listing_id"] for i in api.get("/api/v1/search?q=火锅").json()["items"]] == [deal]


def test_rebuild_all_reproduces_the_index(db: Database, city: Catalogue) -> None:
    city.listing("重庆老火锅双人套餐", "蜀香居重庆老火锅", "火锅", ("海岸城店", "购物公园店"))
    city.listing("精致洗剪发套餐", "名匠造型", "美发", ("科技园店",))
    city.listing("草稿", "名匠造型", "美发", ("科技园店",), status="draft")
    queries = [
        {"q": "火锅"},
        {"q": "套餐", "lat": HOME[0], "lng": HOME[1], "radius_m": 3000},
        {"lat": HOME[0], "lng": HOME[1], "sort": "distance"},
    ]
    before = [search(db, **q) for q in queries]
    with db.transaction() as s:
        assert indexer.rebuild_all(s) == 2
        assert s.scalar(select(func.count()).select_from(SearchDocument)) == 2
        assert s.scalar(select(func.count()).select_from(SearchLocation)) == 3
    assert [search(db, **q) for q in queries] == before
    # The index keeps following edits afterwards (SQLite's FTS triggers are back in place).
    hotpot = before[0]["items"][0]["listing_id"]
    with db.transaction() as s:
        s.get(Listing, hotpot).title = "潮汕牛肉锅四人餐"
        indexer.listing_changed(s, hotpot)
    assert ids(search(db, q="双人")) == []
    assert ids(search(db, q="牛肉锅")) == [hotpot]
    assert ids(search(db, q="牛肉锅", lat=HOME[0], lng=HOME[1], radius_m=3000)) == [hotpot]


def test_rebuild_all_leaves_the_postgresql_gin_index_without_pending_list(
    db: Database, city: Catalogue
) -> None:
    """A full rebuild loads through GIN's pending list, merges it and switches it off again,
    so searches never scan one (migration 0011)."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's GIN index")
    hotpot = city.listing("重庆老火锅双人套餐", "蜀香居重庆老火锅", "火锅", ("海岸城店",))
    with db.transaction() as s:
        indexer.rebuild_all(s)
    with db.transaction(readonly=True) as s:
        options = s.execute(
            text("SELECT reloptions FROM pg_class WHERE relname = 'ix_search_documents_fts'")
        ).scalar_one()
    assert options == ["fastupdate=off"]
    assert ids(search(db, q="火锅", lat=HOME[0], lng=HOME[1], radius_m=3000)) == [hotpot]


# --- nearby stores -------------------------------------------------------------------------


def nearby(db: Database, **kw: Any) -> dict[str, Any]:
    with db.transaction(readonly=True) as s:
        return service.nearby_stores(s, **kw)


def store_ids(page: dict[str, Any]) -> list[int]:
    return [item["store_id"] for item in page["items"]]


def test_nearby_stores(db: Database, city: Catalogue) -> None:
    city.merchant("暂停的店", "美食", status="suspended")
    city.store("暂停店", "暂停的店", north(200))
    with db.transaction() as s:
        closed = Store(
            merchant_id=city.merchants["名匠造型"],
            name="已关门店",
            address="x",
            city="深圳市",
            district="南山区",
            lat=north(300)[0],
            lng=north(300)[1],
            is_active=False,
        )
        s.add(closed)
    city.listing("招牌烤串套餐", "老街烧烤", "美食", ("车公庙店",))
    s_ = city.stores
    page = nearby(db, lat=HOME[0], lng=HOME[1])
    assert store_ids(page) == [s_["海岸城店"], s_["科技园店"]]
    assert [i["distance_m"] for i in page["items"]] == [500, 1500]
    assert page["items"][0]["merchant"]["name"] == "蜀香居重庆老火锅"
    assert store_ids(nearby(db, lat=HOME[0], lng=HOME[1], radius_m=6000)) == [
        s_["海岸城店"],
        s_["科技园店"],
        s_["车公庙店"],
    ]
    # By name / merchant name, or by what the store offers.
    assert store_ids(nearby(db, lat=HOME[0], lng=HOME[1], radius_m=6000, q="火锅")) == [
        s_["海岸城店"]
    ]
    assert store_ids(nearby(db, lat=HOME[0], lng=HOME[1], radius_m=6000, q="烤串")) == [
        s_["车公庙店"]
    ]
    assert nearby(db, lat=HOME[0], lng=HOME[1], radius_m=6000, q="螺蛳粉")["items"] == []
    美食 = city.categories["美食"]
    assert store_ids(nearby(db, lat=HOME[0], lng=HOME[1], radius_m=6000, category_id=美食)) == [
        s_["海岸城店"],
        s_["车公庙店"],
    ]
    first = nearby(db, lat=HOME[0], lng=HOME[1], radius_m=6000, limit=2)
    rest = nearby(db, lat=HOME[0], lng=HOME[1], radius_m=6000, limit=2, cursor=first["next_cursor"])
    assert store_ids(first) + store_ids(rest) == [s_["海岸城店"], s_["科技园店"], s_["车公庙店"]]
    assert rest["next_cursor"] is None


# --- through HTTP: shapes and bad input ----------------------------------------------------


def test_search_api_shape(api: ApiClient, db: Database, city: Catalogue) -> None:
    listing_id = city.listing("重庆老火锅双人套餐", "蜀香居重庆老火锅", "火锅", ("海岸城店",))
    r = api.get("/api/v1/search", params={"q": "火锅", "lat": HOME[0], "lng": HOME[1]})
    assert r.status_code == 200, r.text
    (item,) = r.json()["items"]
    assert item == {
        "listing_id": listing_id,
        "title": "重庆老火锅双人套餐",
        "kind": "service",
        "price_fen": 9900,
        "original_price_fen": 19800,
        "merchant": {"id": city.merchants["蜀香居重庆老火锅"], "name": "蜀香居重庆老火锅"},
        "nearest_store": {"id": city.stores["海岸城店"], "name": "海岸城店", "distance_m": 500},
        "sales": 0,
        "score": item["score"],
        "rating": None,
        "rating_count": 0,
    }
    assert r.json()["next_cursor"] is None
    assert api.get("/api/v1/search", params={"q": "螺蛳粉"}).json() == {
        "items": [],
        "next_cursor": None,
    }
    r = api.get("/api/v1/stores/nearby", params={"lat": HOME[0], "lng": HOME[1]})
    assert r.status_code == 200 and r.json()["items"][0]["store_id"] == city.stores["海岸城店"]


def _other_sort_cursor() -> str:
    return service.encode_cursor("sales", 10, 1)


@pytest.mark.parametrize(
    "query",
    [
        "lat=91&lng=113.9",
        "lat=22.5&lng=181",
        "lat=abc&lng=113.9",
        "lat=nan&lng=113.9",
        "lat=22.5",
        "lng=113.9",
        "radius_m=3000",
        "lat=22.5&lng=113.9&radius_m=0",
        "lat=22.5&lng=113.9&radius_m=100001",
        "lat=22.5&lng=113.9&radius_m=99999999999999999999999",
        "limit=0",
        "limit=101",
        "limit=99999999999999999999",
        "sort=cheapest",
        "sort=distance",
        "kind=food",
        "category_id=0",
        "category_id=99999999999999999999999",
        "cursor=!!!",
        "cursor=bm90LWpzb24",
        "cursor=WyJzYWxlcyIsMTAsMV0",
        "q=" + "火" * 51,
    ],
)
def test_bad_search_parameters_are_422(api: ApiClient, db: Database, query: str) -> None:
    r = api.get("/api/v1/search?" + query)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


def test_a_cursor_from_another_sort_is_refused(api: ApiClient, db: Database) -> None:
    r = api.get("/api/v1/search", params={"q": "火锅", "cursor": _other_sort_cursor()})
    assert r.status_code == 422 and r.json()["code"] == "invalid_cursor"
    assert (
        api.get("/api/v1/search", params={"sort": "sales", "cursor": _other_sort_cursor()})
    ).status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        "",
        "lat=22.5",
        "lat=22.5&lng=200",
        "lat=22.5&lng=113.9&radius_m=-1",
        "lat=22.5&lng=113.9&limit=1000",
        "lat=22.5&lng=113.9&cursor=%E7%81%AB",
        "lat=22.5&lng=113.9&q=" + "a" * 51,
    ],
)
def test_bad_nearby_parameters_are_422(api: ApiClient, db: Database, query: str) -> None:
    assert api.get("/api/v1/stores/nearby?" + query).status_code == 422


# --- tokens --------------------------------------------------------------------------------


def test_query_parsing() -> None:
    assert tokens.parse_query("南山 火锅") == tokens.parse_query("南山火锅")
    assert tokens.parse_query("！？。") == []
    (word,) = tokens.parse_query("洗剪吹")  # jieba: 洗/剪/吹, rejoined
    assert word.substring == (tokens.Term("洗剪"), tokens.Term("剪吹"))
    (word,) = tokens.parse_query("重庆火锅")  # a compound: its parts
    assert word.substring == (tokens.Term("重庆"), tokens.Term("火锅"))
    assert word.whole == (tokens.Term("重庆w"), tokens.Term("火锅w"))
    (word,) = tokens.parse_query("iPhone")
    assert word.substring == word.whole == (tokens.Term("iphone", prefix=True),)
    assert tokens.fts5_query(tokens.parse_query('a"b')) == '"a"* AND "b"*'
    assert tokens.tsquery(tokens.parse_query("南山 火锅 iphone")) == "南山 & 火锅 & iphone:*"


def test_index_tokens_hold_characters_pairs_and_marked_words() -> None:
    got = set(tokens.index_tokens("南山区 iPhone15", words=True))
    assert {"南", "山", "区", "南山", "山区", "iphone15", "南山w", "南山区w"} <= got
    assert not any(t.endswith("w") for t in tokens.index_tokens("南山区"))
