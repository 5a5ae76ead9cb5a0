"""search index: documents, locations and each database's full-text structure

SQLite: FTS5 tables ``search_fts`` (every document) and ``search_fts_near`` (documents with a
location) over the three token columns (rowid = rank_key), with ``search_documents`` as their
external content, kept in step by triggers. The ``ascii`` tokenizer
splits only on ASCII separators, so each pre-segmented token, Han or not, stays exactly one FTS
token; detail='column' keeps column filters (title only, tags only) and drops positions, which
no query uses.
PostgreSQL: generated tsvector columns ('simple' config over the same tokens) ``fts_title``,
``fts_text`` (title + other) and ``fts_tags``, each with a GIN index; separate columns rather
than weights, because a weight-restricted tsquery makes GIN recheck every row.
These names contain ``fts`` so that model/migration comparisons leave them out
(``o2o.migrate.include_name``). NB: a later batch (copy-and-move) alter of ``search_documents``
on SQLite drops its triggers; such a migration must create them again.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import o2o.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
COLUMNS = "title_tokens, other_tokens, tag_tokens"


def _fts5_sync(table: str, when: str = "") -> list[str]:
    """Triggers keeping an external-content FTS5 table in step with search_documents
    (``when``: only rows where this holds, as ``{row}.column``)."""
    new_when = f" WHERE {when.format(row='new')}" if when else ""
    old_when = f" WHERE {when.format(row='old')}" if when else ""
    insert = (
        f"INSERT INTO {table}(rowid, {COLUMNS}) SELECT new.rank_key, new.title_tokens,"
        f" new.other_tokens, new.tag_tokens{new_when};"
    )
    delete = (
        f"INSERT INTO {table}({table}, rowid, {COLUMNS}) SELECT 'delete', old.rank_key,"
        f" old.title_tokens, old.other_tokens, old.tag_tokens{old_when};"
    )
    return [
        f"""CREATE VIRTUAL TABLE {table} USING fts5(
            {COLUMNS},
            content='search_documents', content_rowid='rank_key',
            tokenize='ascii', detail='column'
        )""",
        f"CREATE TRIGGER {table}_after_insert AFTER INSERT ON search_documents BEGIN {insert} END",
        f"CREATE TRIGGER {table}_after_delete AFTER DELETE ON search_documents BEGIN {delete} END",
        f"CREATE TRIGGER {table}_after_update AFTER UPDATE OF rank_key, located, {COLUMNS}"
        f" ON search_documents BEGIN {delete} {insert} END",
    ]


SQLITE_FTS = _fts5_sync("search_fts") + _fts5_sync("search_fts_near", "{row}.located")
SQLITE_FTS_TABLES = ("search_fts", "search_fts_near")

POSTGRES_FTS = [
    """ALTER TABLE search_documents
    ADD COLUMN fts_title tsvector
        GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, title_tokens)) STORED,
    ADD COLUMN fts_text tsvector GENERATED ALWAYS AS (
        to_tsvector('simple'::regconfig, title_tokens || ' ' || other_tokens)
    ) STORED,
    ADD COLUMN fts_tags tsvector
        GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, tag_tokens)) STORED""",
    "CREATE INDEX ix_search_documents_fts_title ON search_documents USING gin (fts_title)",
    "CREATE INDEX ix_search_documents_fts_text ON search_documents USING gin (fts_text)",
    "CREATE INDEX ix_search_documents_fts_tags ON search_documents USING gin (fts_tags)",
]


def upgrade() -> None:
    op.create_table(
        "search_documents",
        sa.Column("rank_key", ID, autoincrement=False, nullable=False),
        sa.Column("listing_id", ID, nullable=False),
        sa.Column("merchant_id", ID, nullable=False),
        sa.Column("merchant_name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("category_id", ID, nullable=False),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("price_fen", sa.Integer(), nullable=False),
        sa.Column("original_price_fen", sa.Integer(), nullable=False),
        sa.Column("sales", sa.Integer(), nullable=False),
        sa.Column("rating", sa.Float(), nullable=False),
        sa.Column("rating_count", sa.Integer(), nullable=False),
        sa.Column("popularity", sa.Float(), nullable=False),
        sa.Column("located", sa.Boolean(), nullable=False),
        sa.Column("title_tokens", sa.Text(), nullable=False),
        sa.Column("other_tokens", sa.Text(), nullable=False),
        sa.Column("tag_tokens", sa.Text(), nullable=False),
        sa.Column("indexed_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["categories.id"],
            name=op.f("fk_search_documents_category_id_categories"),
        ),
        sa.ForeignKeyConstraint(
            ["listing_id"],
            ["listings.id"],
            name=op.f("fk_search_documents_listing_id_listings"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_search_documents_merchant_id_merchants"),
        ),
        sa.PrimaryKeyConstraint("rank_key", name=op.f("pk_search_documents")),
        sa.UniqueConstraint("listing_id", name=op.f("uq_search_documents_listing_id")),
    )
    with op.batch_alter_table("search_documents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_search_documents_category_id"), ["category_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_search_documents_merchant_id"), ["merchant_id"], unique=False
        )
        batch_op.create_index(
            "ix_search_documents_price", ["price_fen", "listing_id"], unique=False
        )
        batch_op.create_index("ix_search_documents_rating", ["rating", "listing_id"], unique=False)
        batch_op.create_index("ix_search_documents_sales", ["sales", "listing_id"], unique=False)

    op.create_table(
        "search_locations",
        sa.Column("rank_key", ID, nullable=False),
        sa.Column("store_id", ID, nullable=False),
        sa.Column("listing_id", ID, nullable=False),
        sa.Column("category_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("store_name", sa.String(length=100), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lng", sa.Float(), nullable=False),
        sa.Column("lat_band", sa.Integer(), nullable=False),
        sa.Column("x", sa.Float(), nullable=False),
        sa.Column("y", sa.Float(), nullable=False),
        sa.Column("z", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["rank_key"],
            ["search_documents.rank_key"],
            name=op.f("fk_search_locations_rank_key_search_documents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["store_id"],
            ["stores.id"],
            name=op.f("fk_search_locations_store_id_stores"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("rank_key", "store_id", name=op.f("pk_search_locations")),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("search_locations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_search_locations_geo",
            ["lat_band", "lng", "lat", "x", "y", "z", "category_id", "kind", "rank_key"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_search_locations_store_id"), ["store_id"], unique=False
        )

    dialect = op.get_bind().dialect.name
    for statement in {"sqlite": SQLITE_FTS, "postgresql": POSTGRES_FTS}.get(dialect, []):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in SQLITE_FTS_TABLES:
            for trigger in ("insert", "delete", "update"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_after_{trigger}")
            op.execute(f"DROP TABLE IF EXISTS {table}")
    with op.batch_alter_table("search_locations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_search_locations_store_id"))
        batch_op.drop_index("ix_search_locations_geo")

    op.drop_table("search_locations")
    with op.batch_alter_table("search_documents", schema=None) as batch_op:
        batch_op.drop_index("ix_search_documents_sales")
        batch_op.drop_index("ix_search_documents_rating")
        batch_op.drop_index("ix_search_documents_price")
        batch_op.drop_index(batch_op.f("ix_search_documents_merchant_id"))
        batch_op.drop_index(batch_op.f("ix_search_documents_category_id"))

    op.drop_table("search_documents")
