"""Keeps the search index current. The catalogue, merchants and stores call these hooks inside
their own transactions whenever something a consumer could search for changes:

- ``listing_changed``: created, edited, published, unpublished, sales or rating changed;
- ``merchant_changed``: approved, suspended, renamed (all its listings are re-indexed or dropped);
- ``store_changed``: moved, renamed, opened or closed (the listings offered there are re-indexed).

Each hook rebuilds the affected documents from the source tables, so calling one too often is
harmless and the index never depends on what exactly changed. Only published listings of
approved merchants get a document; only active stores get a location.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.orm import Session

from o2o.catalog.models import PUBLISHED, Listing, ListingStore
from o2o.merchants.models import Category, Merchant, Store
from o2o.search import tokens as tok
from o2o.search.models import SearchDocument, SearchLocation
from o2o.timeutil import utcnow

APPROVED = "approved"
BATCH = 500
# A chain deal valid at hundreds of stores: their names stay findable through the first ones,
# while every store still gets a location row.
MAX_STORES_IN_TEXT = 30


def listing_changed(session: Session, listing_id: int) -> None:
    """A listing was created, edited, published or unpublished (or its sales/rating moved)."""
    reindex_listings(session, [listing_id])


def sales_changed(session: Session, listing_ids: Iterable[int]) -> None:
    """Units sold moved (a payment, a refund): the shown sales count follows at once, in one
    UPDATE per listing. The popularity rank, which is the document's key, is refreshed in the
    background by ``refresh_ranks`` so paying for an order never re-tokenizes a listing."""
    for listing_id in sorted(set(listing_ids)):
        session.execute(
            update(SearchDocument)
            .where(SearchDocument.listing_id == listing_id)
            .values(
                sales=select(Listing.sales_count).where(Listing.id == listing_id).scalar_subquery()
            )
            .execution_options(synchronize_session=False)
        )


def stale_ranks(
    session: Session, after_rank_key: int = -1, limit: int = 2000
) -> tuple[list[int], int]:
    """Listings whose stored rank no longer matches their sales and rating, among the next
    ``limit`` documents after ``after_rank_key``; returns (their ids, the last rank key read)."""
    rows = session.execute(
        select(
            SearchDocument.rank_key,
            SearchDocument.listing_id,
            Listing.sales_count,
            Listing.rating_sum,
            Listing.rating_count,
        )
        .join(Listing, Listing.id == SearchDocument.listing_id)
        .where(SearchDocument.rank_key > after_rank_key)
        .order_by(SearchDocument.rank_key)
        .limit(limit)
    ).all()
    stale = []
    for r in rows:  # the same computation as _index_chunk
        rating = r.rating_sum / r.rating_count if r.rating_count else 0.0
        if rank_key(popularity(r.sales_count, rating, r.rating_count), r.listing_id) != r.rank_key:
            stale.append(r.listing_id)
    return stale, rows[-1].rank_key if rows else -1


def merchant_changed(session: Session, merchant_id: int) -> None:
    """A merchant was approved, suspended or renamed."""
    session.flush()
    ids = session.scalars(select(Listing.id).where(Listing.merchant_id == merchant_id)).all()
    reindex_listings(session, ids)


def store_changed(session: Session, store_id: int) -> None:
    """A store moved, was renamed, opened or closed."""
    session.flush()
    ids = session.scalars(
        select(ListingStore.listing_id).where(ListingStore.store_id == store_id)
    ).all()
    reindex_listings(session, ids)


# SQLite keeps its FTS5 tables in step through triggers on search_documents (migration 0003).
# FTS5 flushes its pending terms at every statement savepoint, i.e. once per row a trigger
# inserts, so bulk-loading 100,000 documents through them took tens of minutes (quadratic in
# the index size). A full rebuild sets them aside and fills the FTS tables in one statement each.
_SQLITE_FTS_FILL = {
    "search_fts": "",
    "search_fts_near": " WHERE located",
}


@contextmanager
def _sqlite_fts_triggers_set_aside(session: Session) -> Iterator[None]:
    triggers = session.execute(
        text(
            "SELECT name, sql FROM sqlite_master"
            " WHERE type = 'trigger' AND tbl_name = 'search_documents'"
        )
    ).all()
    for name, _sql in triggers:
        session.execute(text(f'DROP TRIGGER "{name}"'))
    yield
    for _name, sql in triggers:  # DDL is transactional in SQLite: all or nothing
        session.execute(text(sql))


# PostgreSQL's GIN index over the tsvectors runs without a pending list (migration 0011), which
# makes one-at-a-time updates cheap to search but a bulk load slow (~5x: every row's lexemes go
# straight into the tree). A full rebuild lets the rows collect in the pending list and merges
# it once at the end, in the same transaction (readers keep the old index meanwhile: the option
# change takes no lock that blocks them).
_POSTGRES_GIN = "ix_search_documents_fts"


def rebuild_all(session: Session) -> int:
    """Drop and rebuild the whole index; returns the number of documents."""
    session.flush()
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text(f"ALTER INDEX {_POSTGRES_GIN} SET (fastupdate = on)"))
        indexed = _rebuild_all(session)
        session.execute(
            text("SELECT gin_clean_pending_list(CAST(:index AS regclass))"),
            {"index": _POSTGRES_GIN},
        )
        session.execute(text(f"ALTER INDEX {_POSTGRES_GIN} SET (fastupdate = off)"))
        return indexed
    if dialect != "sqlite":
        return _rebuild_all(session)
    with _sqlite_fts_triggers_set_aside(session):
        indexed = _rebuild_all(session)
        columns = "title_tokens, other_tokens, tag_tokens"
        # Table names and conditions are the constants above, never input.
        for table, where in _SQLITE_FTS_FILL.items():
            session.execute(text(f"INSERT INTO {table}({table}) VALUES ('delete-all')"))  # noqa: S608
            session.execute(
                text(
                    f"INSERT INTO {table}(rowid, {columns}) SELECT rank_key, {columns}"  # noqa: S608
                    f" FROM search_documents{where} ORDER BY rank_key"
                )
            )
            session.execute(text(f"INSERT INTO {table}({table}) VALUES ('optimize')"))  # noqa: S608
    return indexed


def _rebuild_all(session: Session) -> int:
    session.execute(delete(SearchLocation).execution_options(synchronize_session=False))
    session.execute(delete(SearchDocument).execution_options(synchronize_session=False))
    rows = session.execute(
        select(Listing.id, Listing.sales_count, Listing.rating_sum, Listing.rating_count)
        .join(Merchant, Merchant.id == Listing.merchant_id)
        .where(Listing.status == PUBLISHED, Merchant.status == APPROVED)
    ).all()

    def key(r: Any) -> int:
        rating = r.rating_sum / r.rating_count if r.rating_count else 0.0
        return rank_key(popularity(r.sales_count, rating, r.rating_count), r.id)

    # Insert in rank_key (= FTS rowid) order: see _index_chunk.
    ids = [r.id for r in sorted(rows, key=key)]
    return reindex_listings(session, ids, replace=False, keep_order=True)


def popularity(sales: int, rating: float, rating_count: int) -> float:
    """0 … 1: how good a listing is apart from the text match — mostly (log) sales, some rating.

    It orders comparably good matches (see rank_key) and is the fractional part of the score.
    """
    sold = min(1.0, math.log1p(max(sales, 0)) / math.log1p(100_000))
    rated = rating / 5 if rating_count else 0.5
    return round(min(0.8 * sold + 0.2 * rated, 0.999999), 6)


# rank_key = popularity bucket (20 bits) · older listing first (40 bits): listing ids < 2^40.
_ID_BITS = 40
_ID_MASK = (1 << _ID_BITS) - 1


def rank_key(popularity_value: float, listing_id: int) -> int:
    bucket = min(int(popularity_value * (1 << 20)), (1 << 20) - 1)
    return (bucket << _ID_BITS) | (_ID_MASK - (listing_id & _ID_MASK))


def unit_vector(lat: float, lng: float) -> tuple[float, float, float]:
    phi, lam = math.radians(lat), math.radians(lng)
    return math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi)


def lat_band(lat: float) -> int:
    return math.floor(lat * 100)


# Geo cells as tags, at four sizes (degrees; ~1.1, 2.2, 4.4 and 18 km at Shenzhen): a radius
# query ORs the cells of the finest size that covers its bounding box with at most MAX_CELLS
# (a 3 km radius: ≤ 49 cells of 1.1 km). Finer cells mean fewer candidates to test exactly;
# the number of cells ORed costs little next to the number of candidates.
CELL_SIZES = (0.01, 0.02, 0.04, 0.16)
MAX_CELLS = 49


def cell_token(level: int, row: int, col: int) -> str:
    return f"g{level}n{row}e{col}"


def cell_of(level: int, lat: float, lng: float) -> tuple[int, int]:
    size = CELL_SIZES[level]
    return math.floor((lat + 90) / size), math.floor((lng + 180) / size)


def cells_covering(
    min_lat: float, max_lat: float, min_lng: float, max_lng: float
) -> list[str] | None:
    """Cell tokens covering a bounding box, or None when it needs too many (search without)."""
    for level in range(len(CELL_SIZES)):
        r0, c0 = cell_of(level, min_lat, min_lng)
        r1, c1 = cell_of(level, max_lat, max_lng)
        if (r1 - r0 + 1) * (c1 - c0 + 1) <= MAX_CELLS:
            return [cell_token(level, r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]
    return None


def category_token(category_id: int) -> str:
    return f"c{category_id}"


def kind_token(kind: str) -> str:
    return f"k{kind}"


def tag_tokens(category_id: int, kind: str, places: list[tuple[float, float]]) -> list[str]:
    tags = {category_token(category_id), kind_token(kind)}
    for lat, lng in places:
        for level in range(len(CELL_SIZES)):
            tags.add(cell_token(level, *cell_of(level, lat, lng)))
    return sorted(tags)


class _Texts:
    """Tokens of strings, once per string per re-index (merchant, store and category names
    repeat across documents; so do many titles)."""

    def __init__(self, session: Session) -> None:
        self.cache: dict[str, list[str]] = {}
        self.categories = {
            cid: (name, parent)
            for cid, name, parent in session.execute(
                select(Category.id, Category.name, Category.parent_id)
            )
        }

    def tokens(self, text: str, *, words: bool = False) -> list[str]:
        key = ("w" if words else "-") + text
        if key not in self.cache:
            self.cache[key] = tok.index_tokens(text, words=words)
        return self.cache[key]

    def category_path(self, category_id: int) -> list[str]:
        names, seen = [], set()
        cid: int | None = category_id
        while cid is not None and cid in self.categories and cid not in seen:
            seen.add(cid)
            name, cid = self.categories[cid]
            names.append(name)
        return names


def reindex_listings(
    session: Session, listing_ids: Iterable[int], *, replace: bool = True, keep_order: bool = False
) -> int:
    """Re-create the documents of these listings from the source tables; returns how many are
    searchable now. ``replace=False`` skips deleting old documents (after a full wipe);
    ``keep_order`` indexes in the given order (by rank, for a fast full rebuild)."""
    ids = list(dict.fromkeys(listing_ids)) if keep_order else sorted(set(listing_ids))
    if not ids:
        return 0
    session.flush()
    texts = _Texts(session)
    indexed = 0
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        if replace:  # locations go with their documents (ON DELETE CASCADE)
            session.execute(
                delete(SearchDocument)
                .where(SearchDocument.listing_id.in_(chunk))
                .execution_options(synchronize_session=False)
            )
        indexed += _index_chunk(session, chunk, texts)
    return indexed


def _index_chunk(session: Session, chunk: Sequence[int], texts: _Texts) -> int:
    # Primary-key lookups only, visibility decided here: a join or a status condition lets the
    # planner pick a status index and walk every published listing (seen on PostgreSQL
    # before its first ANALYZE, and on SQLite after one).
    rows = session.execute(
        select(
            Listing.id,
            Listing.merchant_id,
            Listing.kind,
            Listing.category_id,
            Listing.title,
            Listing.status,
            Listing.price_fen,
            Listing.original_price_fen,
            Listing.sales_count,
            Listing.rating_sum,
            Listing.rating_count,
        ).where(Listing.id.in_(chunk))
    ).all()
    merchant_ids = {r.merchant_id for r in rows if r.status == PUBLISHED}
    merchants = (
        dict(
            session.execute(
                select(Merchant.id, Merchant.name).where(
                    Merchant.id.in_(merchant_ids), Merchant.status == APPROVED
                )
            ).all()
        )
        if merchant_ids
        else {}
    )
    listings = [r for r in rows if r.status == PUBLISHED and r.merchant_id in merchants]
    if not listings:
        return 0
    # Two key lookups rather than one join: with statistics, SQLite may drive the join from
    # stores (20,000 rows per chunk) instead of from the chunk's links.
    links = session.execute(
        select(ListingStore.listing_id, ListingStore.store_id)
        .where(ListingStore.listing_id.in_([r.id for r in listings]))
        .order_by(ListingStore.listing_id, ListingStore.store_id)
    ).all()
    active = (
        {
            s.id: s
            for s in session.execute(
                select(
                    Store.id, Store.name, Store.district, Store.address, Store.lat, Store.lng
                ).where(Store.id.in_({link.store_id for link in links}), Store.is_active.is_(True))
            )
        }
        if links
        else {}
    )
    stores: dict[int, list[Any]] = {}
    for link in links:
        if link.store_id in active:
            stores.setdefault(link.listing_id, []).append(active[link.store_id])

    now = utcnow()
    documents, locations = [], []
    for r in listings:
        rating = r.rating_sum / r.rating_count if r.rating_count else 0.0
        merchant_name = merchants[r.merchant_id]
        other: list[str] = list(texts.tokens(merchant_name))
        for name in texts.category_path(r.category_id):
            other.extend(texts.tokens(name))
        places = stores.get(r.id, [])
        for s in places[:MAX_STORES_IN_TEXT]:
            other.extend(texts.tokens(s.name))
            other.extend(texts.tokens(s.district))
            other.extend(texts.tokens(s.address))
        liked = popularity(r.sales_count, rating, r.rating_count)
        key = rank_key(liked, r.id)
        documents.append(
            {
                "rank_key": key,
                "listing_id": r.id,
                "merchant_id": r.merchant_id,
                "merchant_name": merchant_name,
                "kind": r.kind,
                "category_id": r.category_id,
                "title": r.title,
                "price_fen": r.price_fen,
                "original_price_fen": r.original_price_fen,
                "sales": r.sales_count,
                "rating": round(rating, 2),
                "rating_count": r.rating_count,
                "popularity": liked,
                "located": bool(places),
                "title_tokens": " ".join(texts.tokens(r.title, words=True)),
                "other_tokens": " ".join(other),
                "tag_tokens": " ".join(
                    tag_tokens(r.category_id, r.kind, [(s.lat, s.lng) for s in places])
                ),
                "indexed_at": now,
            }
        )
        for s in places:
            x, y, z = unit_vector(s.lat, s.lng)
            locations.append(
                {
                    "rank_key": key,
                    "listing_id": r.id,
                    "category_id": r.category_id,
                    "kind": r.kind,
                    "store_id": s.id,
                    "store_name": s.name,
                    "lat": s.lat,
                    "lng": s.lng,
                    "lat_band": lat_band(s.lat),
                    "x": x,
                    "y": y,
                    "z": z,
                }
            )
    # In rowid (rank_key) order: SQLite's FTS5 flushes its pending terms to a new segment
    # whenever a smaller rowid follows a larger one, which made a 100,000-listing rebuild
    # take tens of minutes instead of about one.
    documents.sort(key=lambda d: d["rank_key"])
    session.execute(insert(SearchDocument), documents)
    if locations:
        session.execute(insert(SearchLocation), locations)
    return len(documents)
