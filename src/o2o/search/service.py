"""Search as the information hub: Chinese keywords plus "near me", over the search index.

``search()`` finds listings, ``nearby_stores()`` stores. Both read only the index tables (and
stores/merchants for nearby), so visibility (published listings of approved merchants, active
stores) is decided once, by the indexer.

How a listing search runs:
- candidates come from the database's own inverted index — SQLite FTS5 ``MATCH``, PostgreSQL
  ``@@`` on GIN-indexed tsvectors — over the Chinese-aware tokens (o2o.search.tokens): every
  keyword must match (AND) somewhere in the title, merchant name, store names/addresses/
  districts or category names; category (with descendants), kind and the geo cells around the
  consumer are tags in the same index, so the index intersects them too;
- near me: the cells are the index-backed prefilter; the exact great-circle test runs on the
  survivors only, as a squared chord on the unit sphere (plain arithmetic, same order as
  haversine; see SearchLocation). Without keyword or filters the (lat_band, lng) index on
  search_locations finds the stores in the bounding box instead;
- relevance: three text tiers — the title holds every query word as a (jieba) word; the
  title contains them all; they match elsewhere (merchant, store, district, category) — and
  within a tier popularity (log of sales, rating), then the older listing: the order of
  ``rank_key``, in which the index returns candidates, so a page reads about a page of them
  however broad the keyword. score = 2 / 1 / 0 by tier + popularity (0 … 1). We measured
  FTS5's bm25 at ~15 µs per matching row (150 ms for a keyword with 10,000 matches), which is
  why the text part of relevance is the tier and not bm25/ts_rank over every match;
- distance: growing circles (from 500 m, sized from what the last one held, capped by
  radius_m) until a page is full;
- pages: keyset cursors on (sort value, listing id), so following pages neither repeat nor
  skip results while the data stays the same.
"""

# ruff: noqa: S608 — the SQL here is assembled from this module's constant fragments; every
# value is a bound parameter (integer lists are inlined through int()).
from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy.orm import Session

from o2o import geo
from o2o.errors import ValidationFailed
from o2o.search import indexer
from o2o.search import tokens as tok
from o2o.search.indexer import lat_band, unit_vector

Sort = Literal["relevance", "distance", "sales", "price", "rating"]
SORTS: tuple[str, ...] = ("relevance", "distance", "sales", "price", "rating")
KINDS = ("goods", "service")
MAX_QUERY_CHARS = 50
MAX_RADIUS_M = 100_000
MAX_LIMIT = 100
DEFAULT_NEARBY_RADIUS_M = 3_000
# Distance sort looks in growing circles: everything inside a circle is nearer than anything
# outside it, so a full page found inside one is the right page. Past LAST_RING_M without a
# radius: everything.
FIRST_RING_M, LAST_RING_M = 500.0, 30_000.0
NO_PLACE = 9.0  # a squared chord on the unit sphere is at most 4: "no store" sorts last


@dataclass(frozen=True)
class Place:
    lat: float
    lng: float

    @property
    def unit(self) -> tuple[float, float, float]:
        return unit_vector(self.lat, self.lng)


def chord_to_m(chord2_value: float) -> float:
    """Great-circle distance for a squared chord on the unit sphere."""
    return 2 * geo.EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(max(chord2_value, 0.0)) / 2))


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

_COLUMNS = (
    "d.listing_id, d.rank_key, d.title, d.kind, d.price_fen, d.original_price_fen,"
    " d.merchant_id, d.merchant_name, d.sales, d.rating, d.rating_count, d.popularity"
)
_CHORD2 = "((l.x - :px) * (l.x - :px) + (l.y - :py) * (l.y - :py) + (l.z - :pz) * (l.z - :pz))"
_NEAREST = f"(SELECT MIN({_CHORD2}) FROM search_locations l WHERE l.rank_key = d.rank_key)"


def _within(rank: str) -> str:
    """SQL: the document ranked ``rank`` has a store within :max_c2."""
    return (
        f"EXISTS (SELECT 1 FROM search_locations l WHERE l.rank_key = {rank}"
        f" AND {_CHORD2} <= :max_c2)"
    )


# Text tiers of relevance, best first (see _Query.match); score = 2, 1, 0 + popularity.
TIERS = ("words", "title", "rest")
# Relevance cursors carry (tier, rank_key) in one integer: rank_key < 2^61.
_TIER_SHIFT = 61
# sort → (column of the result row, descending?)
_SORT_COLUMNS = {
    "sales": ("sales", True),
    "price": ("price_fen", False),
    "rating": ("rating", True),
}


@dataclass
class _Query:
    """What a listing search asks for, ready to be turned into SQL for either database."""

    postgres: bool
    words: list[tok.QueryWord]
    kind: str | None
    categories: list[int] | None
    place: Place | None

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.place is not None:
            params["px"], params["py"], params["pz"] = self.place.unit
        return params

    @property
    def filtered(self) -> bool:
        """Keyword, category or kind: the inverted index picks the candidates."""
        return bool(self.words) or self.kind is not None or self.categories is not None

    def match(
        self,
        params: dict[str, Any],
        *,
        tier: str = "all",
        radius_m: float | None = None,
        near: bool = False,
    ) -> tuple[str, list[str], str]:
        """(FROM clause, WHERE conditions, rank column) for the documents that match.

        tier (see TIERS): "words" — the title holds every query word as a jieba word;
        "title" — the title contains them all, not all as words; "rest" — the other matches;
        "all" — every match. ``near``: only documents with a location. ``radius_m`` adds the
        geo cells covering the circle (a prefilter: the exact distance test comes on top).
        """
        near = near or radius_m is not None
        cells = None
        if radius_m is not None and self.place is not None:
            box = geo.bounding_box(self.place.lat, self.place.lng, radius_m)
            cells = indexer.cells_covering(*box)
        tags: list[list[str]] = []  # AND of ORs
        if self.categories is not None:
            tags.append([indexer.category_token(c) for c in self.categories])
        if self.kind is not None:
            tags.append([indexer.kind_token(self.kind)])
        if cells:
            tags.append(cells)
        words = self.words
        if self.postgres:
            where = []
            if words:
                params["sub"] = tok.tsquery(words)
                params["whole"] = tok.tsquery(words, whole=True)
                where.extend(
                    {
                        "words": ["d.fts_title @@ to_tsquery('simple', :whole)"],
                        "title": [
                            "d.fts_title @@ to_tsquery('simple', :sub)",
                            "NOT (d.fts_title @@ to_tsquery('simple', :whole))",
                        ],
                        "rest": [
                            "d.fts_text @@ to_tsquery('simple', :sub)",
                            "NOT (d.fts_title @@ to_tsquery('simple', :sub))",
                        ],
                        "all": ["d.fts_text @@ to_tsquery('simple', :sub)"],
                    }[tier]
                )
            if tags:
                params["tags"] = " & ".join("(" + " | ".join(t) + ")" for t in tags)
                where.append("d.fts_tags @@ to_tsquery('simple', :tags)")
            if near:
                where.append("d.located")
            return "search_documents d", where, "d.rank_key"
        include, exclude = "", ""
        if words:
            sub, whole = tok.fts5_query(words), tok.fts5_query(words, whole=True)
            include, exclude = {
                "words": (f"title_tokens : ({whole})", ""),
                "title": (f"title_tokens : ({sub})", f"title_tokens : ({whole})"),
                "rest": (f"{{title_tokens other_tokens}} : ({sub})", f"title_tokens : ({sub})"),
                "all": (f"{{title_tokens other_tokens}} : ({sub})", ""),
            }[tier]
        parts = [include] if include else []
        if tags:
            expr = " AND ".join("(" + " OR ".join(f'"{t}"' for t in group) + ")" for group in tags)
            parts.append(f"tag_tokens : ({expr})")
        if not parts:
            return "search_documents d", ["d.located"] if near else [], "d.rank_key"
        match = " AND ".join(f"({p})" for p in parts)
        if exclude:
            match = f"({match}) NOT ({exclude})"
        params["match"] = match
        fts = "search_fts_near" if near else "search_fts"
        return (
            f"{fts} JOIN search_documents d ON d.rank_key = {fts}.rowid",
            [f"{fts} MATCH :match"],
            f"{fts}.rowid",
        )

    def title_hit(self, params: dict[str, Any]) -> str:
        """SQL for the text tier: 2 title holds the words, 1 title contains them, else 0."""
        if not self.words:
            return "0"
        if self.postgres:
            params["sub"] = tok.tsquery(self.words)
            params["whole"] = tok.tsquery(self.words, whole=True)
            return (
                "CASE WHEN d.fts_title @@ to_tsquery('simple', :whole) THEN 2"
                " WHEN d.fts_title @@ to_tsquery('simple', :sub) THEN 1 ELSE 0 END"
            )
        params["whole_match"] = "title_tokens : (" + tok.fts5_query(self.words, whole=True) + ")"
        params["sub_match"] = "title_tokens : (" + tok.fts5_query(self.words) + ")"
        return (
            "CASE WHEN d.rank_key IN (SELECT rowid FROM search_fts"
            " WHERE search_fts MATCH :whole_match) THEN 2"
            " WHEN d.rank_key IN (SELECT rowid FROM search_fts"
            " WHERE search_fts MATCH :sub_match) THEN 1 ELSE 0 END"
        )


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

    words = tok.parse_query(q) if q else []
    if q and not words:
        return {"items": [], "next_cursor": None}  # nothing searchable in the keyword
    query = _Query(
        postgres=session.get_bind().dialect.name == "postgresql",
        words=words,
        kind=kind,
        categories=_descendants(session, category_id) if category_id else None,
        place=place,
    )
    if sort == "relevance":
        rows, last_value = _by_relevance(session, query, radius_m, after, limit)
    elif sort == "distance":
        rows, last_value = _by_distance(session, query, radius_m, after, limit)
    else:
        rows, last_value = _by_column(session, query, radius_m, sort, after, limit)

    page, more = rows[:limit], len(rows) > limit
    nearest = _nearest_stores(session, [r.rank_key for r in page], place) if place else {}
    items = [
        {
            "listing_id": r.listing_id,
            "title": r.title,
            "kind": r.kind,
            "price_fen": r.price_fen,
            "original_price_fen": r.original_price_fen,
            "merchant": {"id": r.merchant_id, "name": r.merchant_name},
            "nearest_store": nearest.get(r.rank_key),
            "sales": r.sales,
            "score": round(r.title_hit + r.popularity, 6),
            "rating": round(r.rating, 1) if r.rating_count else None,
            "rating_count": r.rating_count,
        }
        for r in page
    ]
    next_cursor = None
    if more and page:
        next_cursor = encode_cursor(sort, last_value(page[-1]), page[-1].listing_id)
    return {"items": items, "next_cursor": next_cursor}


_NAMED = re.compile(r"(?<![:\w]):(\w+)")


def _run(session: Session, sql: str, params: dict[str, Any]) -> list[Any]:
    """Run hand-written SQL through the driver. ``:name`` parameters; lists (``bands``) are
    inlined as integers. SQLAlchemy's text() costs ~0.2–0.5 ms a statement here, a third of a
    whole search; the driver path ~0.04 ms."""
    params = dict(params)
    for name in ("bands", "ids"):
        if name in params:
            values = ", ".join(str(int(v)) for v in params.pop(name))
            sql = sql.replace(f":{name}", f"({values})")
    if "kinds" in params:  # only ever members of KINDS
        kinds = [k for k in params.pop("kinds") if k in KINDS]
        sql = sql.replace(":kinds", "(" + ", ".join(f"'{k}'" for k in kinds) + ")")
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        sql = _NAMED.sub(r"%(\1)s", sql)
    return connection.exec_driver_sql(sql, params).fetchall()


def _descendants(session: Session, category_id: int) -> list[int]:
    """The category and every category below it (one recursive query)."""
    rows = _run(
        session,
        "WITH RECURSIVE tree(id) AS (SELECT id FROM categories WHERE id = :category_id"
        " UNION SELECT c.id FROM categories c JOIN tree ON c.parent_id = tree.id)"
        " SELECT id FROM tree",
        {"category_id": category_id},
    )
    return [r.id for r in rows] or [category_id]


def _by_relevance(
    session: Session,
    query: _Query,
    radius_m: int | None,
    after: tuple[float | int, int] | None,
    limit: int,
) -> tuple[list[Any], Any]:
    """Text tiers first (TIERS), then rank_key order (popularity) within a tier.

    The inverted index hands out candidates in rank_key order (FTS5 rowid order; PostgreSQL
    ``ORDER BY rank_key`` over the GIN matches), so only about a page of them is read.
    """
    tiers = TIERS if query.words else ("all",)
    after_tier, after_rank = (-1, 0)
    if after is not None:
        value = int(after[0])
        after_tier, after_rank = value >> _TIER_SHIFT, value & ((1 << _TIER_SHIFT) - 1)
    near = query.place is not None and radius_m is not None
    rows: list[Any] = []
    for index, tier in enumerate(tiers):
        if index < after_tier:
            continue
        need = limit + 1 - len(rows)
        below = after_rank if index == after_tier else None
        if near and not query.filtered:
            found = _tier_rows(session, query, tier, index, need, below, radius_m, geo="box")
        elif near and not query.postgres:
            # Most keyword matches near a busy place are near: walk the matches in rank order
            # and test each; only when the first PROBE of them hold too few, let the index
            # intersect the keyword with the geo cells instead.
            found = _tier_rows(session, query, tier, index, need, below, radius_m, geo="probe")
            if len(found) < need and _more_than(session, query, tier, below, PROBE):
                found = _tier_rows(session, query, tier, index, need, below, radius_m, geo="cells")
        else:
            geo_mode = "cells" if near else "none"
            found = _tier_rows(session, query, tier, index, need, below, radius_m, geo=geo_mode)
        rows.extend(found)
        if len(rows) > limit:
            break
    return rows, lambda r: (r.tier << _TIER_SHIFT) | r.rank_key


PROBE = 500


def _tier_rows(
    session: Session,
    query: _Query,
    tier: str,
    index: int,
    need: int,
    below: int | None,
    radius_m: float | None,
    *,
    geo: str,
) -> list[Any]:
    """One text tier in rank_key order, below a cursor. geo: "none"; "box" — the stores in
    the bounding box (no keyword or filter); "cells" — the index intersects the cells of the
    circle; "probe" — only the first PROBE matches are tested. Near modes test the exact
    distance of every candidate."""
    params = query.params()
    if geo == "box":
        source, where, rank = _geo_only(query, radius_m, params)  # type: ignore[arg-type]
    else:
        source, where, rank = query.match(
            params, tier=tier, radius_m=radius_m if geo == "cells" else None, near=geo != "none"
        )
    if below is not None:
        where.append(f"{rank} < :after_rank")
        params["after_rank"] = below
    if geo == "probe":
        params["probe"] = PROBE
        source = (
            f"(SELECT {rank} AS rk FROM {_fts_only(source)} WHERE {' AND '.join(where)}"
            f" ORDER BY {rank} DESC LIMIT :probe) AS f"
            " JOIN search_documents d ON d.rank_key = f.rk"
        )
        where, rank = [], "f.rk"
    if geo != "none":
        params["max_c2"] = chord2(radius_m)  # type: ignore[arg-type]
        where.append(_within(rank))
    params["limit"] = need
    hit = {"words": 2, "title": 1}.get(tier, 0)
    sql = (
        f"SELECT {_COLUMNS}, {hit} AS title_hit, {index} AS tier FROM {source}"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY {rank} DESC LIMIT :limit"
    )
    return _run(session, sql, params)


def _fts_only(source: str) -> str:
    """The FTS5 table alone when the conditions only need it (no document lookups)."""
    return source.split()[0] if source.startswith("search_fts") else source


def _more_than(session: Session, query: _Query, tier: str, below: int | None, n: int) -> bool:
    """Whether the tier has more than ``n`` located matches (below the cursor)."""
    params = query.params()
    source, where, rank = query.match(params, tier=tier, near=True)
    if below is not None:
        where.append(f"{rank} < :after_rank")
        params["after_rank"] = below
    params["n"] = n + 1
    rows = _run(
        session,
        f"SELECT count(*) AS n FROM (SELECT 1 FROM {_fts_only(source)} WHERE {' AND '.join(where)}"
        " LIMIT :n) AS m",
        params,
    )
    return rows[0].n > n


def _geo_only(query: _Query, radius_m: float, params: dict[str, Any]) -> tuple[str, list[str], str]:
    """Documents with a store in the circle, found through the (lat_band, lng) index."""
    geo_where = _geo_filter(query.place, radius_m, params)  # type: ignore[arg-type]
    source = (
        "search_documents d JOIN (SELECT DISTINCT l.rank_key FROM search_locations l"
        f" WHERE {geo_where}) AS g ON g.rank_key = d.rank_key"
    )
    return source, [], "d.rank_key"


def _by_distance(
    session: Session,
    query: _Query,
    radius_m: int | None,
    after: tuple[float | int, int] | None,
    limit: int,
) -> tuple[list[Any], Any]:
    """Nearest first. Looks in growing circles: everything inside a circle is nearer than
    anything outside it, so a full page found inside a small one is the right page, and dense
    areas never read more than a small circle's worth of candidates."""
    if query.filtered and not query.words and not _any_located(session, query):
        return [], None  # e.g. a goods category: nothing has a store, skip the circles
    ring: float | None = FIRST_RING_M
    if after is not None:  # nothing inside the cursor's distance is wanted
        ring = max(ring, chord_to_m(float(after[0])) * 1.5 + FIRST_RING_M)
    rows: list[Any] = []
    while True:
        if ring is not None and (
            (radius_m is not None and ring >= radius_m) or (radius_m is None and ring > LAST_RING_M)
        ):
            ring = radius_m  # the last circle: the whole radius (or everything)
        params = query.params()
        if ring is not None and not query.words:
            # No keyword: the stores in the circle through the geo index, then the filters on
            # their documents — a small circle holds few stores, and circles grow only as far
            # as a page needs.
            geo_where = _geo_filter(query.place, ring, params)  # type: ignore[arg-type]
            if query.categories is not None:
                geo_where += " AND l.category_id IN :ids"
                params["ids"] = query.categories
            if query.kind is not None:
                geo_where += " AND l.kind = :kind"
                params["kind"] = query.kind
            inner = (
                f"SELECT {_COLUMNS}, 0 AS title_hit, g.d2 AS d2 FROM search_documents d JOIN"
                f" (SELECT l.rank_key, MIN({_CHORD2}) AS d2 FROM search_locations l"
                f" WHERE {geo_where} GROUP BY l.rank_key) AS g ON g.rank_key = d.rank_key"
            )
        else:
            source, where, _rank = query.match(params, radius_m=ring)
            nearest = _NEAREST if ring is not None else f"COALESCE({_NEAREST}, {NO_PLACE})"
            inner = (
                f"SELECT {_COLUMNS}, {query.title_hit(params)} AS title_hit, {nearest} AS d2"
                f" FROM {source}" + (" WHERE " + " AND ".join(where) if where else "")
            )
        outer = []
        if ring is not None:
            outer.append("r.d2 <= :max_c2")
            params["max_c2"] = chord2(ring)
        if after is not None:
            outer.append(
                "(r.d2 > :after_value OR (r.d2 = :after_value AND r.listing_id > :after_id))"
            )
            params["after_value"], params["after_id"] = after
        params["limit"] = limit + 1
        rows = _run(
            session,
            f"SELECT * FROM ({inner}) AS r"
            + (" WHERE " + " AND ".join(outer) if outer else "")
            + " ORDER BY r.d2 ASC, r.listing_id ASC LIMIT :limit",
            params,
        )
        if len(rows) > limit or ring is None or ring == radius_m:
            break
        # Grow so that the next circle likely holds a page (area ∝ count), at least doubling.
        ring *= max(2.0, math.sqrt(1.5 * (limit + 1) / max(len(rows), 0.5)))
    return rows, lambda r: float(r.d2)


def _any_located(session: Session, query: _Query) -> bool:
    """Whether any document of the category / kind filters has a location: one entry of the
    (kind, category_id) index on search_locations, which holds only located documents."""
    where = ["l.kind IN :kinds"]
    params: dict[str, Any] = {"kinds": [query.kind] if query.kind is not None else list(KINDS)}
    if query.categories is not None:
        where.append("l.category_id IN :ids")
        params["ids"] = query.categories
    rows = _run(
        session,
        f"SELECT 1 AS one FROM search_locations l WHERE {' AND '.join(where)} LIMIT 1",
        params,
    )
    return bool(rows)


def _by_column(
    session: Session,
    query: _Query,
    radius_m: int | None,
    sort: str,
    after: tuple[float | int, int] | None,
    limit: int,
) -> tuple[list[Any], Any]:
    """Sales, price or rating order over every match (keyset on the column, listing_id)."""
    column, descending = _SORT_COLUMNS[sort]
    params = query.params()
    if radius_m is not None and not query.filtered:
        source, where, _rank = _geo_only(query, radius_m, params)
    else:
        source, where, _rank = query.match(params, radius_m=radius_m, near=radius_m is not None)
        if radius_m is not None:
            params["max_c2"] = chord2(radius_m)
            where.append(_within("d.rank_key"))
    inner = f"SELECT {_COLUMNS}, {query.title_hit(params)} AS title_hit FROM {source}" + (
        " WHERE " + " AND ".join(where) if where else ""
    )
    outer = ""
    if after is not None:
        op = "<" if descending else ">"
        outer = (
            f" WHERE (r.{column} {op} :after_value"
            f" OR (r.{column} = :after_value AND r.listing_id > :after_id))"
        )
        params["after_value"], params["after_id"] = after
    params["limit"] = limit + 1
    order = f"r.{column} {'DESC' if descending else 'ASC'}, r.listing_id ASC"
    rows = _run(
        session, f"SELECT * FROM ({inner}) AS r{outer} ORDER BY {order} LIMIT :limit", params
    )
    return rows, lambda r: getattr(r, column)


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
        f" AND l.lat BETWEEN :min_lat AND :max_lat AND {_CHORD2} <= :max_c2"
    )


def _nearest_stores(
    session: Session, rank_keys: list[int], place: Place
) -> dict[int, dict[str, Any]]:
    """rank_key → the nearest store of that document (haversine, metres)."""
    if not rank_keys:
        return {}
    rows = _run(
        session,
        "SELECT rank_key, store_id, store_name, lat, lng FROM search_locations"
        " WHERE rank_key IN :ids",
        {"ids": rank_keys},
    )
    best: dict[int, tuple[float, int, str]] = {}
    for r in rows:
        candidate = (geo.haversine_m(place.lat, place.lng, r.lat, r.lng), r.store_id, r.store_name)
        if r.rank_key not in best or candidate < best[r.rank_key]:
            best[r.rank_key] = candidate
    return {
        key: {"id": store_id, "name": name, "distance_m": round(distance)}
        for key, (distance, store_id, name) in best.items()
    }


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
    words = tok.parse_query(q) if q else []
    if q and not words:
        return {"items": [], "next_cursor": None}
    postgres = session.get_bind().dialect.name == "postgresql"

    min_lat, max_lat, min_lng, max_lng = geo.bounding_box(place.lat, place.lng, radius_m)
    params: dict[str, Any] = {
        "min_lat": min_lat,
        "max_lat": max_lat,
        "min_lng": min_lng,
        "max_lng": max_lng,
    }
    where = [
        "s.is_active = :active",
        "m.status = 'approved'",
        "s.lat BETWEEN :min_lat AND :max_lat",
        "s.lng BETWEEN :min_lng AND :max_lng",
    ]
    params["active"] = True
    if category_id is not None:
        params["ids"] = _descendants(session, category_id)
        where.append(
            "(m.category_id IN :ids OR EXISTS (SELECT 1 FROM search_locations l"
            " WHERE l.store_id = s.id AND l.category_id IN :ids))"
        )
    listing_match = "0"
    if words:
        if postgres:
            matching = (
                "SELECT rank_key FROM search_documents"
                " WHERE fts_text @@ to_tsquery('simple', :tsq) AND located"
            )
            params["tsq"] = tok.tsquery(words)
        else:
            matching = "SELECT rowid FROM search_fts_near WHERE search_fts_near MATCH :match"
            params["match"] = "{title_tokens other_tokens} : (" + tok.fts5_query(words) + ")"
        listing_match = (
            "CASE WHEN EXISTS (SELECT 1 FROM search_locations l WHERE l.store_id = s.id"
            f" AND l.rank_key IN ({matching})) THEN 1 ELSE 0 END"
        )
    rows = _run(
        session,
        "SELECT s.id, s.name, s.address, s.district, s.lat, s.lng, s.merchant_id,"
        f" m.name AS merchant_name, {listing_match} AS listing_match"
        " FROM stores s JOIN merchants m ON m.id = s.merchant_id WHERE " + " AND ".join(where),
        params,
    )

    texts = tok.substring_words(words)
    found = []
    for r in rows:
        if texts and not r.listing_match:
            haystack = tok.normalize(f"{r.name} {r.merchant_name} {r.district} {r.address}")
            if not all(w in haystack for w in texts):
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
