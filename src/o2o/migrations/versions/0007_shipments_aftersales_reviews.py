"""shipments, tracking events, after-sales requests, reviews and rating aggregates

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import o2o.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ratings",
        sa.Column("subject_type", sa.String(length=10), nullable=False),
        sa.Column(
            "subject_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("rating_sum", sa.Integer(), nullable=False),
        sa.Column("rating_count", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "subject_type IN ('merchant', 'store')", name=op.f("ck_ratings_subject_type")
        ),
        sa.PrimaryKeyConstraint("subject_type", "subject_id", name=op.f("pk_ratings")),
    )
    op.create_table(
        "shipments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "merchant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("carrier", sa.String(length=8), nullable=False),
        sa.Column("tracking_no", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("status_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "shipped_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("shipped_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("updated_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_shipments_merchant_id_merchants")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_shipments_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["shipped_by"], ["users.id"], name=op.f("fk_shipments_shipped_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shipments")),
        sa.UniqueConstraint(
            "carrier", "tracking_no", name=op.f("uq_shipments_carrier_tracking_no")
        ),
    )
    op.create_index("ix_shipments_merchant_id_id", "shipments", ["merchant_id", "id"], unique=False)
    op.create_index(op.f("ix_shipments_order_id"), "shipments", ["order_id"], unique=False)
    op.create_table(
        "after_sales_requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "merchant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("amount_fen", sa.Integer(), nullable=False),
        sa.Column("reject_reason", sa.String(length=200), nullable=False),
        sa.Column("refund_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("decided_by", sa.String(length=60), nullable=False),
        sa.Column("respond_by", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("refunded_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "kind IN ('refund_only', 'return_refund')", name=op.f("ck_after_sales_requests_kind")
        ),
        sa.CheckConstraint("amount_fen >= 1", name=op.f("ck_after_sales_requests_amount_positive")),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_after_sales_requests_merchant_id_merchants"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_after_sales_requests_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["refund_id"], ["refunds.id"], name=op.f("fk_after_sales_requests_refund_id_refunds")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_after_sales_requests_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_after_sales_requests")),
    )
    op.create_index(
        "ix_after_sales_requests_merchant_id_id",
        "after_sales_requests",
        ["merchant_id", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_after_sales_requests_order_id"), "after_sales_requests", ["order_id"], unique=False
    )
    op.create_index(
        op.f("ix_after_sales_requests_refund_id"),
        "after_sales_requests",
        ["refund_id"],
        unique=False,
    )
    op.create_index(
        "ix_after_sales_requests_status_respond_by",
        "after_sales_requests",
        ["status", "respond_by"],
        unique=False,
    )
    op.create_index(
        "ix_after_sales_requests_user_id_id",
        "after_sales_requests",
        ["user_id", "id"],
        unique=False,
    )
    op.create_table(
        "reviews",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "order_line_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "merchant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "listing_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("store_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("text", sa.String(length=1000), nullable=False),
        sa.Column("reply", sa.String(length=500), nullable=True),
        sa.Column(
            "replied_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("replied_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name=op.f("ck_reviews_rating_range")),
        sa.ForeignKeyConstraint(
            ["listing_id"], ["listings.id"], name=op.f("fk_reviews_listing_id_listings")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_reviews_merchant_id_merchants")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_reviews_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["order_line_id"], ["order_lines.id"], name=op.f("fk_reviews_order_line_id_order_lines")
        ),
        sa.ForeignKeyConstraint(
            ["replied_by"], ["users.id"], name=op.f("fk_reviews_replied_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["store_id"], ["stores.id"], name=op.f("fk_reviews_store_id_stores")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_reviews_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
        sa.UniqueConstraint("order_line_id", name=op.f("uq_reviews_order_line_id")),
    )
    op.create_index("ix_reviews_listing_id_id", "reviews", ["listing_id", "id"], unique=False)
    op.create_index("ix_reviews_merchant_id_id", "reviews", ["merchant_id", "id"], unique=False)
    op.create_index(op.f("ix_reviews_order_id"), "reviews", ["order_id"], unique=False)
    op.create_index("ix_reviews_store_id_id", "reviews", ["store_id", "id"], unique=False)
    op.create_index(op.f("ix_reviews_user_id"), "reviews", ["user_id"], unique=False)
    op.create_table(
        "shipment_lines",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "shipment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "order_line_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_shipment_lines_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["order_line_id"],
            ["order_lines.id"],
            name=op.f("fk_shipment_lines_order_line_id_order_lines"),
        ),
        sa.ForeignKeyConstraint(
            ["shipment_id"], ["shipments.id"], name=op.f("fk_shipment_lines_shipment_id_shipments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shipment_lines")),
        sa.UniqueConstraint("order_line_id", name=op.f("uq_shipment_lines_order_line_id")),
    )
    op.create_index(
        op.f("ix_shipment_lines_order_id"), "shipment_lines", ["order_id"], unique=False
    )
    op.create_index(
        op.f("ix_shipment_lines_shipment_id"), "shipment_lines", ["shipment_id"], unique=False
    )
    op.create_table(
        "tracking_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "shipment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("occurred_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("location", sa.String(length=100), nullable=False),
        sa.Column("received_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["shipment_id"], ["shipments.id"], name=op.f("fk_tracking_events_shipment_id_shipments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracking_events")),
        sa.UniqueConstraint(
            "shipment_id",
            "occurred_at",
            "status",
            name=op.f("uq_tracking_events_shipment_id_occurred_at_status"),
        ),
    )
    op.create_table(
        "after_sales_lines",
        sa.Column(
            "request_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "order_line_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("amount_fen", sa.Integer(), nullable=False),
        sa.CheckConstraint("amount_fen >= 1", name=op.f("ck_after_sales_lines_amount_positive")),
        sa.ForeignKeyConstraint(
            ["order_line_id"],
            ["order_lines.id"],
            name=op.f("fk_after_sales_lines_order_line_id_order_lines"),
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["after_sales_requests.id"],
            name=op.f("fk_after_sales_lines_request_id_after_sales_requests"),
        ),
        sa.PrimaryKeyConstraint("request_id", "order_line_id", name=op.f("pk_after_sales_lines")),
    )
    op.create_index(
        op.f("ix_after_sales_lines_order_line_id"),
        "after_sales_lines",
        ["order_line_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_after_sales_lines_order_line_id"), table_name="after_sales_lines")
    op.drop_table("after_sales_lines")
    op.drop_table("tracking_events")
    op.drop_index(op.f("ix_shipment_lines_shipment_id"), table_name="shipment_lines")
    op.drop_index(op.f("ix_shipment_lines_order_id"), table_name="shipment_lines")
    op.drop_table("shipment_lines")
    op.drop_index(op.f("ix_reviews_user_id"), table_name="reviews")
    op.drop_index("ix_reviews_store_id_id", table_name="reviews")
    op.drop_index(op.f("ix_reviews_order_id"), table_name="reviews")
    op.drop_index("ix_reviews_merchant_id_id", table_name="reviews")
    op.drop_index("ix_reviews_listing_id_id", table_name="reviews")
    op.drop_table("reviews")
    op.drop_index("ix_after_sales_requests_user_id_id", table_name="after_sales_requests")
    op.drop_index("ix_after_sales_requests_status_respond_by", table_name="after_sales_requests")
    op.drop_index(op.f("ix_after_sales_requests_refund_id"), table_name="after_sales_requests")
    op.drop_index(op.f("ix_after_sales_requests_order_id"), table_name="after_sales_requests")
    op.drop_index("ix_after_sales_requests_merchant_id_id", table_name="after_sales_requests")
    op.drop_table("after_sales_requests")
    op.drop_index(op.f("ix_shipments_order_id"), table_name="shipments")
    op.drop_index("ix_shipments_merchant_id_id", table_name="shipments")
    op.drop_table("shipments")
    op.drop_table("ratings")
