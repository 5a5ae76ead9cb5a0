"""search: one multicolumn GIN index without a pending list (PostgreSQL); locations by kind and
category (both databases)

Revision ID: 0011
Revises: 0010

PostgreSQL, measured on 95,000 documents (benchmarks/search.py):
* The three GIN indexes of 0003 had ``fastupdate`` on: inserts collect in a pending list of up to
  ``gin_pending_list_limit`` (4 MB) that every search scans in full and tests row by row until
  (auto)vacuum merges it. After a rebuild that was ~8,600 unmerged rows per index and 10–40 ms on
  every GIN lookup. Documents change a few at a time (publish, edit, a merchant suspended), so
  writing straight into the tree costs little; ``fastupdate = off`` keeps every search fast.
* One GIN index over (fts_title, fts_text, fts_tags) instead of one per column: a keyword with
  the geo cells (or a category) is then a single index scan whose scan keys skip through each
  other's posting lists, where two single-column indexes each produced a full bitmap (the 49
  ORed cells of a 3 km circle: ~10,000 row ids, 6–27 ms) to be ANDed afterwards. GIN serves any
  subset of its columns, so title-only or tags-only conditions use it as before.
* ``ix_search_locations_kind_category``: "is anything of this category (kind) located at all"
  (category + near me, before the growing circles) reads one index entry instead of testing every
  document of a goods category.

The GIN index name contains ``fts`` (left out of model comparisons, o2o.migrate.include_name).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_GIN = {
    "ix_search_documents_fts_title": "fts_title",
    "ix_search_documents_fts_text": "fts_text",
    "ix_search_documents_fts_tags": "fts_tags",
}
GIN = (
    "CREATE INDEX ix_search_documents_fts ON search_documents"
    " USING gin (fts_title, fts_text, fts_tags) WITH (fastupdate = off)"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in OLD_GIN:
            op.execute(f"DROP INDEX IF EXISTS {name}")
        op.execute(GIN)
    op.create_index(
        "ix_search_locations_kind_category",
        "search_locations",
        ["kind", "category_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_search_locations_kind_category", table_name="search_locations")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_search_documents_fts")
        for name, column in OLD_GIN.items():
            op.execute(f"CREATE INDEX {name} ON search_documents USING gin ({column})")
