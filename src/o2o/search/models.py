"""The search index: one denormalized document per searchable listing, one location row per
(listing, store) for "near me".

Only published listings of approved merchants have a document, and only their active stores a
location, so a search never joins back to listings, merchants or stores to decide visibility.
The indexer (``o2o.search.indexer``) is the only writer.

``rank_key`` is the document's position in relevance order among equally good text matches
(popularity first, then the older listing): the inverted indexes return documents by this key,
so "the best 20 of 10,000 matches" is read in order and stops after 20, instead of scoring all
10,000 (bm25 over FTS5 costs ~15 µs a match: 150 ms for a broad keyword).

The full-text structures are database-specific and live in migrations only (0003, 0011) (names with an
``fts`` word, which ``o2o.migrate.include_name`` leaves out of model/migration comparisons):
- SQLite: FTS5 tables ``search_fts`` (every document) and ``search_fts_near`` (located ones:
  near-me searches never wade through goods), over title_tokens, other_tokens, tag_tokens with
  rowid = rank_key; external content = this table, kept in step by triggers;
- PostgreSQL: generated tsvector columns ``fts_title``, ``fts_text`` (title + other) and
  ``fts_tags``, under one multicolumn GIN index ``ix_search_documents_fts`` without a pending
  list (``fastupdate = off``; migration 0011 says why).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from o2o.db import Base, BigIntId, UTCDateTime
from o2o.timeutil import utcnow


class SearchDocument(Base):
    __tablename__ = "search_documents"
    __table_args__ = (
        # Browsing without keyword, category or place: ordered walks over these indexes.
        Index("ix_search_documents_sales", "sales", "listing_id"),
        Index("ix_search_documents_price", "price_fen", "listing_id"),
        Index("ix_search_documents_rating", "rating", "listing_id"),
    )

    # INTEGER PRIMARY KEY on SQLite: the rowid, shared with the FTS5 table.
    rank_key: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=False)
    listing_id: Mapped[int] = mapped_column(
        ForeignKey("listings.id", ondelete="CASCADE"), unique=True
    )
    merchant_id: Mapped[int] = mapped_column(ForeignKey("merchants.id"), index=True)
    merchant_name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(10))
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"), index=True)
    title: Mapped[str] = mapped_column(String(100))
    price_fen: Mapped[int] = mapped_column(Integer)
    original_price_fen: Mapped[int] = mapped_column(Integer)
    sales: Mapped[int] = mapped_column(Integer)
    # Average rating (0 while unrated; rating_count tells the two apart).
    rating: Mapped[float] = mapped_column(Float)
    rating_count: Mapped[int] = mapped_column(Integer)
    # 0 … 1 from sales and rating (indexer.popularity); encoded in rank_key.
    popularity: Mapped[float] = mapped_column(Float)
    # Has at least one active store (a location): only these can be "near" anyone.
    located: Mapped[bool] = mapped_column(Boolean)
    # Space-separated tokens (o2o.search.tokens): the title's; the merchant name's, store
    # names', addresses', districts' and category names'; and tags no one types — category,
    # kind and the geo cells of the listing's stores (indexer.tag_tokens).
    title_tokens: Mapped[str] = mapped_column(Text)
    other_tokens: Mapped[str] = mapped_column(Text)
    tag_tokens: Mapped[str] = mapped_column(Text)
    indexed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SearchLocation(Base):
    """Where a searchable listing can be used: one row per active store of the listing.

    Keyed by the document's rank_key (what the inverted index returns), so testing whether a
    candidate is near needs no document lookup; category and kind ride along so "category
    near me" filters inside the geo index.

    ``lat_band`` (floor(lat × 100), bands of ~1.1 km) leads the geo index, so a radius query is
    a handful of index range scans (one per band, each on the longitude window) instead of one
    scan over a whole latitude strip. ``x, y, z`` is the point on the unit sphere: the squared
    chord between two such points grows strictly with the great-circle (haversine) distance, so
    SQL filters and sorts by exact distance with plain arithmetic on both databases.
    """

    __tablename__ = "search_locations"
    __table_args__ = (
        # Covering: a radius scan reads everything it needs from the index.
        Index(
            "ix_search_locations_geo",
            "lat_band",
            "lng",
            "lat",
            "x",
            "y",
            "z",
            "category_id",
            "kind",
            "rank_key",
        ),
        # "Anything of this category / kind located at all?" in one index entry.
        Index("ix_search_locations_kind_category", "kind", "category_id"),
        # SQLite: clustered by (rank_key, store_id), so "the stores of this candidate" is one
        # b-tree seek instead of an index seek plus a row fetch.
        {"sqlite_with_rowid": False},
    )

    rank_key: Mapped[int] = mapped_column(
        BigIntId,
        ForeignKey("search_documents.rank_key", ondelete="CASCADE"),
        primary_key=True,
    )
    store_id: Mapped[int] = mapped_column(
        ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    listing_id: Mapped[int] = mapped_column(BigIntId)
    category_id: Mapped[int] = mapped_column(BigIntId)
    kind: Mapped[str] = mapped_column(String(10))
    store_name: Mapped[str] = mapped_column(String(100))
    lat: Mapped[float] = mapped_column(Float)
    lng: Mapped[float] = mapped_column(Float)
    lat_band: Mapped[int] = mapped_column(Integer)
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)
    z: Mapped[float] = mapped_column(Float)
