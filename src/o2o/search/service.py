"""Search as the information hub: Chinese keywords plus "near me", over the search index.

``search()`` finds listings, ``nearby_stores()`` stores. Both read only the index tables (and
stores/merchants for nearby), so visibility (published listings of approved merchants, active
stores) is decided once, by the indexer.

How a listing search runs:
- keyword: the query is cut into words (o2o.search.tokens) and matched by the database's own
  inverted index — SQLite FTS5 ``MATCH`` with ``bm25``, PostgreSQL ``@@`` on a GIN-indexed
  tsvector with ``ts_rank`` — every word must match (AND) somewhere in the title, merchant
  name, store names/addresses/districts or category names;
- near me: index range scans on (lat_band, lng) cut the candidates to the bounding box, then
  the exact great-circle test runs on the survivors only, as a squared chord on the unit sphere
  (plain arithmetic, same order as haversine; see SearchLocation);
- relevance score = text relevance in [0, 1) + popularity in [0, 0.1] (log of sales, rating;
  indexer.popularity). Text relevance = 0.6 if the title alone matches the whole query (so a
  title hit always beats a hit on the merchant name or district, even in a tiny corpus where
  bm25's IDF says nothing) + 0.4 × t/(1+t), t = -bm25 on SQLite (title weighted 1.0, the rest
  0.4), t = ts_rank on PostgreSQL (title weight A, the rest B). Without a keyword the score is
  popularity alone.
- pages: keyset cursors on (sort value, listing_id), so following pages neither repeat nor skip
  results while the data stays the same.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from o2o import geo
from o2o.errors import ValidationFailed
from o2o.merchants.service import category_and_descendants
from o2o.search import tokens as tok
from o2o.search.indexer import lat_band, unit_vector

Sort = Literal["relevance", "distance", "sales", "price", "rating"]
SORTS: tuple[str, ...] = ("relevance", "distance", "sales", "price", "rating")
KINDS = ("goods", "service")
MAX_QUERY_CHARS = 50
MAX_RADIUS_M = 100_000
MAX_LIMIT = 100
DEFAULT_NEARBY_RADIUS_M = 3_000
# Distance sort without a radius looks in growing circles first: anything inside a circle is
# nearer than everything outside it, so a full page found inside one is the right page.
DISTANCE_RINGS_M = (5_000, 25_000)
NO_PLACE = 9.0  # a squared chord on the unit sphere is at most 4: "no store" sorts last

# bm25 weights of the FTS5 columns: title_tokens, other_tokens.
FTS5_RANK = "bm25(search_fts, 1.0, 0.4)"
# Text relevance = TITLE_HIT when the title alone matches the whole query
#                + RANK_SHARE × the database's rank (bm25 / ts_rank) squashed into [0, 1).
TITLE_HIT, RANK_SHARE = 0.6, 0.4

# sort → (SQL expression over the result row, descending?)
_SORT_KEYS: dict[str, tuple[str, bool]] = {
    "relevance": ("score", True),
    "distance": ("d2", False),
    "sales": ("sales", True),
    "price": ("price_fen", False),
    "rating": ("rating", True),
}


@dataclass(frozen=True)
class Place:
    lat: float
    lng: float

    @property
    def unit(self) -> tuple[float, float, float]:
        return unit_vector(self.lat, self.lng)


def chord2(radius_m: float) -> float:
    """Squared chord on the unit sphere for a great-circle distance."""
    return (2 * math.sin(min(radius_m / geo.EARTH_RADIUS_M, math.pi) / 2)) ** 2


# --- cursors --------------------------------------------------------------------------------


def encode_cursor(kind: str, value: float | int, last_id: int) -> str:
    raw = json.dumps([kind, value, last_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str) -> tuple[float | int, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        got_kind, value, last_id = json.loads(raw)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ValidationFailed("翻页游标无效", field="cursor", code="invalid_cursor") from exc
    valid_value = isinstance(value, int | float) and not isinstance(value, bool)
    if (
        got_kind != kind
        or not valid_value
        or not math.isfinite(value)
        or not isinstance(last_id, int)
        or isinstance(last_id, bool)
        or not 0 <= last_id <= 2**62
    ):
        raise ValidationFailed("翻页游标无效", field="cursor", code="invalid_cursor")
    return value, last_id


# --- validation -----------------------------------------------------------------------------


def _check_common(
    q: str | None, lat: float | None, lng: float | None, radius_m: int | None, limit: int
) -> tuple[str, Place | None]:
    q = (q or "").strip()
    if len(q) > MAX_QUERY_CHARS:
        raise ValidationFailed(f"关键词最多 {MAX_QUERY_CHARS} 个字", field="q")
    if "\x00" in q:
        raise ValidationFailed("关键词中不能包含 NUL 字符", field="q")
    if (lat is None) != (lng is None):
        raise ValidationFailed("lat 和 lng 需要同时提供", field="lat" if lat is None else "lng")
    place = None
    if lat is not None and lng is not None:
        if not (math.isfinite(lat) and -90 <= lat <= 90):
            raise ValidationFailed("纬度应在 -90 到 90 之间", field="lat")
        if not (math.isfinite(lng) and -180 <= lng <= 180):
            raise ValidationFailed("经度应在 -180 到 180 之间", field="lng")
        place = Place(lat, lng)
    if radius_m is not None:
        if place is None:
            raise ValidationFailed("按范围搜索需要提供位置（lat/lng）", field="radius_m")
        if not 1 <= radius_m <= MAX_RADIUS_M:
            raise ValidationFailed(f"范围应在 1 到 {MAX_RADIUS_M} 米之间", field="radius_m")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(f"每页数量应在 1 到 {MAX_LIMIT} 之间", field="limit")
    return q, place


# --- listings -------------------------------------------------------------------------------


def search(
    session: Session,
    *,
    q: str | None = None,
    lat: float | None = None,
    lng: float | None = None,
    radius_m: int | None = None,
    kind: str | None = None,
    category_id: int | None = None,
    sort: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Published listings of approved merchants matching every keyword (AND), optionally within
    ``radius_m`` of (lat, lng). Returns ``{"items": [...], "next_cursor": str | None}``.

    Default sort: relevance with a keyword, else distance with a place, else relevance
    (popularity). ``nearest_store`` is filled whenever a place is given.
    """
    q, place = _check_common(q, lat, lng, radius_m, limit)
    if kind is not None and kind not in KINDS:
        raise ValidationFailed("kind 只能是 goods 或 service", field="kind")
    if sort is None:
        sort = "relevance" if q or place is None else "distance"
    if sort not in SORTS:
        raise ValidationFailed("排序方式无效", field="sort")
    if sort == "distance" and place is None:
        raise ValidationFailed("按距离排序需要提供位置（lat/lng）", field="sort")
    after = decode_cursor(cursor, sort) if cursor else None

    groups = tok.parse_query(q) if q else []
    if q and not groups:
        return {"items": [], "next_cursor": None}  # nothing searchable in the keyword
    categories = category_and_descendants(session, category_id) if category_id else None

    if radius_m is not None:
        rings: tuple[float | None, ...] = (radius_m,)
    elif sort == "distance":
        rings = (*DISTANCE_RINGS_M, None)
    else:
        rings = (None,)
    rows: list[Any] = []
    for ring in rings:
        if ring is not None and after is not None and sort == "distance" and chord2(ring) < after[0]:
            continue  # this circle holds nothing beyond the cursor: try a larger one
        rows = _query_listings(
            session,
            groups=groups,
            place=place if (ring is not None or sort == "distance") else None,
            radius_m=ring,
            kind=kind,
            categories=categories,
            sort=sort,
            after=after,
            limit=limit + 1,
        )
        if len(rows) > limit:
            break

    page, more = rows[:limit], len(rows) > limit
    nearest = _nearest_stores(session, [r.listing_id for r in page], place) if place else {}
    items = [
        {
            "listing_id": r.listing_id,
            "title": r.title,
            "kind": r.kind,
            "price_fen": r.price_fen,
            "original_price_fen": r.original_price_fen,
            "merchant": {"id": r.merchant_id, "name": r.merchant_name},
            "nearest_store": nearest.get(r.listing_id),
            "sales": r.sales,
            "score": round(float(r.score), 6),
            "rating": round(r.rating, 1) if r.rating_count else None,
            "rating_count": r.rating_count,
        }
        for r in page
    ]
    next_cursor = None
    if more and page:
        last = page[-1]
        next_cursor = encode_cursor(sort, _SORT_VALUE[sort](last), last.listing_id)
    return {"items": items, "next_cursor": next_cursor}


_SORT_VALUE = {
    "relevance": lambda r: float(r.score),
    "distance": lambda r: float(r.d2),
    "sales": lambda r: int(r.sales),
    "price": lambda r: int(r.price_fen),
    "rating": lambda r: float(r.rating),
}


def _geo_filter(place: Place, radius_m: float, params: dict[str, Any]) -> str:
    """WHERE clause on search_locations ``l``: index ranges per latitude band, then exact."""
    min_lat, max_lat, min_lng, max_lng = geo.bounding_box(place.lat, place.lng, radius_m)
    params.update(
        bands=list(range(lat_band(min_lat), lat_band(max_lat) + 1)),
        min_lat=min_lat,
        max_lat=max_lat,
        min_lng=min_lng,
        max_lng=max_lng,
        max_c2=chord2(radius_m),
    )
    return (
        "l.lat_band IN :bands AND l.lng BETWEEN :min_lng AND :max_lng"
        " AND l.lat BETWEEN :min_lat AND :max_lat AND " + _CHORD2 + " <= :max_c2"
    )


_CHORD2 = "((l.x - :px) * (l.x - :px) + (l.y - :py) * (l.y - :py) + (l.z - :pz) * (l.z - :pz))"


def _query_listings(
    session: Session,
    *,
    groups: list[tok.Group],
    place: Place | None,
    radius_m: float | None,
    kind: str | None,
    categories: list[int] | None,
    sort: str,
    after: tuple[float | int, int] | None,
    limit: int,
) -> list[Any]:
    postgres = session.get_bind().dialect.name == "postgresql"
    params: dict[str, Any] = {"limit": limit}
    expanding = []
    ctes, joins, where = [], [], []

    if groups:
        if postgres:
            joins.append(
                "CROSS JOIN to_tsquery('simple', :tsq) AS tq"
                " CROSS JOIN to_tsquery('simple', :tsq_title) AS tqt"
            )
            where.append("d.fts @@ tq")
            title_hit = "CASE WHEN d.fts @@ tqt THEN 1.0 ELSE 0.0 END"
            text_rank = "ts_rank(d.fts, tq, 32)"
            params["tsq"] = tok.tsquery(groups)
            params["tsq_title"] = tok.tsquery(groups, weight="A")
        else:
            ctes.append(
                "m AS MATERIALIZED (SELECT rowid AS listing_id, -"
                + FTS5_RANK
                + " AS t FROM search_fts WHERE search_fts MATCH :match)"
            )
            joins.append("JOIN m ON m.listing_id = d.listing_id")
            title_hit = (
                "CASE WHEN d.listing_id IN (SELECT rowid FROM search_fts"
                " WHERE search_fts MATCH :match_title) THEN 1.0 ELSE 0.0 END"
            )
            text_rank = "(m.t / (1.0 + m.t))"
            params["match"] = tok.fts5_query(groups)
            params["match_title"] = tok.fts5_query(groups, column="title_tokens")
        score = f"({TITLE_HIT} * {title_hit} + {RANK_SHARE} * {text_rank} + d.boost)"
    else:
        score = "d.boost"

    d2 = "NULL"
    if place is not None:
        params["px"], params["py"], params["pz"] = place.unit
        if radius_m is not None:
            geo_where = _geo_filter(place, radius_m, params)
            expanding.append("bands")
            ctes.append(
                "g AS (SELECT l.listing_id, MIN(" + _CHORD2 + ") AS d2"
                " FROM search_locations l WHERE " + geo_where + " GROUP BY l.listing_id)"
            )
            joins.append("JOIN g ON g.listing_id = d.listing_id")
            d2 = "g.d2"
        elif sort == "distance":
            ctes.append(
                "g AS (SELECT l.listing_id, MIN(" + _CHORD2 + ") AS d2"
                " FROM search_locations l GROUP BY l.listing_id)"
            )
            joins.append("LEFT JOIN g ON g.listing_id = d.listing_id")
            d2 = f"COALESCE(g.d2, {NO_PLACE})"

    if kind is not None:
        where.append("d.kind = :kind")
        params["kind"] = kind
    if categories is not None:
        where.append("d.category_id IN :categories")
        params["categories"] = categories
        expanding.append("categories")

    key, descending = _SORT_KEYS[sort]
    order = f"r.{key} {'DESC' if descending else 'ASC'}, r.listing_id ASC"
    outer_where = ""
    if after is not None:
        params["after_value"], params["after_id"] = after
        op = "<" if descending else ">"
        outer_where = (
            f"WHERE (r.{key} {op} :after_value"
            f" OR (r.{key} = :after_value AND r.listing_id > :after_id))"
        )

    sql = (
        ("WITH " + ", ".join(ctes) + " " if ctes else "")
        + "SELECT * FROM (SELECT d.listing_id, d.title, d.kind, d.price_fen,"
        " d.original_price_fen, d.merchant_id, d.merchant_name, d.sales, d.rating,"
        f" d.rating_count, {score} AS score, {d2} AS d2"
        " FROM search_documents d "
        + " ".join(joins)
        + (" WHERE " + " AND ".join(where) if where else "")
        + f") AS r {outer_where} ORDER BY {order} LIMIT :limit"
    )
    stmt = text(sql)
    if expanding:
        stmt = stmt.bindparams(*(bindparam(name, expanding=True) for name in expanding))
    return list(session.execute(stmt, params))


def _nearest_stores(
    session: Session, listing_ids: list[int], place: Place
) -> dict[int, dict[str, Any]]:
    if not listing_ids:
        return {}
    rows = session.execute(
        text(
            "SELECT listing_id, store_id, store_name, lat, lng FROM search_locations"
            " WHERE listing_id IN :ids"
        ).bindparams(bindparam("ids", expanding=True)),
        {"ids": listing_ids},
    )
    best: dict[int, dict[str, Any]] = {}
    for r in rows:
        distance = geo.haversine_m(place.lat, place.lng, r.lat, r.lng)
        current = best.get(r.listing_id)
        if current is None or (distance, r.store_id) < (current["_d"], current["id"]):
            best[r.listing_id] = {
                "id": r.store_id,
                "name": r.store_name,
                "distance_m": round(distance),
                "_d": distance,
            }
    for value in best.values():
        del value["_d"]
    return best


# --- stores ---------------------------------------------------------------------------------


def nearby_stores(
    session: Session,
    *,
    lat: float,
    lng: float,
    radius_m: int | None = None,
    q: str | None = None,
    category_id: int | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Active stores of approved merchants within ``radius_m`` (default 3 km), nearest first.

    ``q``: every keyword must appear in the store's or merchant's name, district or address,
    or one of the store's searchable listings must match the whole query.
    ``category_id`` (with descendants): the merchant's category, or a listing offered there.
    """
    radius_m = DEFAULT_NEARBY_RADIUS_M if radius_m is None else radius_m
    q, place = _check_common(q, lat, lng, radius_m, limit)
    assert place is not None
    after = decode_cursor(cursor, "distance") if cursor else None
    groups = tok.parse_query(q) if q else []
    if q and not groups:
        return {"items": [], "next_cursor": None}
    postgres = session.get_bind().dialect.name == "postgresql"

    min_lat, max_lat, min_lng, max_lng = geo.bounding_box(place.lat, place.lng, radius_m)
    params: dict[str, Any] = {
        "min_lat": min_lat,
        "max_lat": max_lat,
        "min_lng": min_lng,
        "max_lng": max_lng,
    }
    expanding = []
    where = [
        "s.is_active = :active",
        "m.status = 'approved'",
        "s.lat BETWEEN :min_lat AND :max_lat",
        "s.lng BETWEEN :min_lng AND :max_lng",
    ]
    params["active"] = True
    if category_id is not None:
        params["categories"] = category_and_descendants(session, category_id)
        expanding.append("categories")
        where.append(
            "(m.category_id IN :categories OR EXISTS (SELECT 1 FROM search_locations l"
            " JOIN search_documents d ON d.listing_id = l.listing_id"
            " WHERE l.store_id = s.id AND d.category_id IN :categories))"
        )
    listing_match = "0"
    if groups:
        if postgres:
            matching = (
                "SELECT listing_id FROM search_documents WHERE fts @@ to_tsquery('simple', :tsq)"
            )
            params["tsq"] = tok.tsquery(groups)
        else:
            matching = "SELECT rowid FROM search_fts WHERE search_fts MATCH :match"
            params["match"] = tok.fts5_query(groups)
        listing_match = (
            "CASE WHEN EXISTS (SELECT 1 FROM search_locations l WHERE l.store_id = s.id"
            f" AND l.listing_id IN ({matching})) THEN 1 ELSE 0 END"
        )
    stmt = text(
        "SELECT s.id, s.name, s.address, s.district, s.lat, s.lng, s.merchant_id,"
        f" m.name AS merchant_name, {listing_match} AS listing_match"
        " FROM stores s JOIN merchants m ON m.id = s.merchant_id WHERE " + " AND ".join(where)
    )
    if expanding:
        stmt = stmt.bindparams(*(bindparam(name, expanding=True) for name in expanding))

    words = tok.substring_words(groups)
    found = []
    for r in session.execute(stmt, params):
        if words and not r.listing_match:
            haystack = tok.normalize(f"{r.name} {r.merchant_name} {r.district} {r.address}")
            if not all(w in haystack for w in words):
                continue
        distance = geo.haversine_m(place.lat, place.lng, r.lat, r.lng)
        if distance > radius_m:
            continue
        if after is not None and (distance, r.id) <= (after[0], after[1]):
            continue
        found.append((distance, r))
    found.sort(key=lambda pair: (pair[0], pair[1].id))
    page = found[:limit]
    items = [
        {
            "store_id": r.id,
            "name": r.name,
            "address": r.address,
            "district": r.district,
            "lat": r.lat,
            "lng": r.lng,
            "distance_m": round(distance),
            "merchant": {"id": r.merchant_id, "name": r.merchant_name},
        }
        for distance, r in page
    ]
    next_cursor = None
    if len(found) > limit and page:
        distance, last = page[-1]
        next_cursor = encode_cursor("distance", distance, last.id)
    return {"items": items, "next_cursor": next_cursor}
