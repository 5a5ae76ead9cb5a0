"""listings people can judge: uploaded photos, deal contents and rules, store hours and photos

Revision ID: 0016
Revises: 0015

* ``media_images``: one row per merchant and uploaded photo (files are content-addressed).
* ``listings.deal_items`` / ``deal_rules``: a deal's contents and its usage rules as JSON data
  (shapes in ``o2o.catalog.deal_terms``).
* ``stores.hours`` (structured opening hours) and ``stores.photos``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import o2o.db

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "media_images",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("merchant_id", BIGINT, nullable=False),
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("uploaded_by", BIGINT, nullable=True),
        sa.Column("created_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_media_images_merchant_id_merchants")
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by"], ["users.id"], name=op.f("fk_media_images_uploaded_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_media_images")),
        sa.UniqueConstraint("merchant_id", "key", name=op.f("uq_media_images_merchant_id_key")),
    )
    with op.batch_alter_table("media_images", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_media_images_key"), ["key"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_media_images_merchant_id"), ["merchant_id"], unique=False
        )

    # Plain ADD COLUMN (no batch): on SQLite a batch rebuild of the table would drop the report
    # triggers on listings and stores.
    op.add_column(
        "listings",
        sa.Column("deal_items", sa.JSON(), server_default=sa.text("'[]'"), nullable=False),
    )
    op.add_column("listings", sa.Column("deal_rules", sa.JSON(), nullable=True))
    op.add_column("stores", sa.Column("hours", sa.JSON(), nullable=True))
    op.add_column(
        "stores", sa.Column("photos", sa.JSON(), server_default=sa.text("'[]'"), nullable=False)
    )


def downgrade() -> None:
    with op.batch_alter_table("stores", schema=None) as batch_op:
        batch_op.drop_column("photos")
        batch_op.drop_column("hours")
    with op.batch_alter_table("listings", schema=None) as batch_op:
        batch_op.drop_column("deal_rules")
        batch_op.drop_column("deal_items")
    with op.batch_alter_table("media_images", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_media_images_merchant_id"))
        batch_op.drop_index(batch_op.f("ix_media_images_key"))
    op.drop_table("media_images")
