"""vouchers and redemption: vouchers (one per unit of a service bought), redemption attempts

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import o2o.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "vouchers",
        sa.Column("id", ID, nullable=False),
        sa.Column("code", sa.String(length=20), nullable=False),
        sa.Column("order_id", ID, nullable=False),
        sa.Column("order_line_id", ID, nullable=False),
        sa.Column("unit_no", sa.Integer(), nullable=False),
        sa.Column("listing_id", ID, nullable=False),
        sa.Column("merchant_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("slot_id", ID, nullable=True),
        sa.Column("slot_store_id", sa.BigInteger(), nullable=True),
        sa.Column("slot_starts_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("slot_ends_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("store_ids", sa.JSON(), nullable=False),
        sa.Column("refund_anytime", sa.Boolean(), nullable=False),
        sa.Column("auto_refund_on_expiry", sa.Boolean(), nullable=False),
        sa.Column("amount_fen", sa.Integer(), nullable=False),
        sa.Column("valid_from", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("valid_until", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("redeemed_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("redeemed_store_id", ID, nullable=True),
        sa.Column("redeemed_by", ID, nullable=True),
        sa.Column("refund_id", ID, nullable=True),
        sa.Column("refunded_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("expired_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('unused', 'redeemed', 'refunded', 'expired')",
            name=op.f("ck_vouchers_status_known"),
        ),
        sa.CheckConstraint("amount_fen >= 0", name=op.f("ck_vouchers_amount_not_negative")),
        sa.ForeignKeyConstraint(
            ["listing_id"], ["listings.id"], name=op.f("fk_vouchers_listing_id_listings")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_vouchers_merchant_id_merchants")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_vouchers_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["order_line_id"],
            ["order_lines.id"],
            name=op.f("fk_vouchers_order_line_id_order_lines"),
        ),
        sa.ForeignKeyConstraint(
            ["redeemed_by"], ["users.id"], name=op.f("fk_vouchers_redeemed_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["redeemed_store_id"], ["stores.id"], name=op.f("fk_vouchers_redeemed_store_id_stores")
        ),
        sa.ForeignKeyConstraint(
            ["refund_id"], ["refunds.id"], name=op.f("fk_vouchers_refund_id_refunds")
        ),
        sa.ForeignKeyConstraint(
            ["slot_id"], ["time_slots.id"], name=op.f("fk_vouchers_slot_id_time_slots")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_vouchers_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vouchers")),
        sa.UniqueConstraint("code", name=op.f("uq_vouchers_code")),
        sa.UniqueConstraint(
            "order_line_id", "unit_no", name=op.f("uq_vouchers_order_line_id_unit_no")
        ),
    )
    op.create_index(op.f("ix_vouchers_listing_id"), "vouchers", ["listing_id"], unique=False)
    op.create_index(
        "ix_vouchers_merchant_id_redeemed_at",
        "vouchers",
        ["merchant_id", "redeemed_at"],
        unique=False,
    )
    op.create_index(op.f("ix_vouchers_order_id"), "vouchers", ["order_id"], unique=False)
    op.create_index(
        "ix_vouchers_status_valid_until", "vouchers", ["status", "valid_until"], unique=False
    )
    op.create_index(op.f("ix_vouchers_user_id"), "vouchers", ["user_id"], unique=False)

    op.create_table(
        "redemption_attempts",
        sa.Column("id", ID, nullable=False),
        sa.Column("merchant_id", ID, nullable=False),
        sa.Column("store_id", sa.BigInteger(), nullable=True),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("voucher_id", ID, nullable=True),
        sa.Column("result", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("created_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_redemption_attempts_merchant_id_merchants"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_redemption_attempts_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["voucher_id"],
            ["vouchers.id"],
            name=op.f("fk_redemption_attempts_voucher_id_vouchers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemption_attempts")),
    )
    op.create_index(
        "ix_redemption_attempts_merchant_id_id",
        "redemption_attempts",
        ["merchant_id", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_redemption_attempts_user_id"), "redemption_attempts", ["user_id"], unique=False
    )
    op.create_index(
        op.f("ix_redemption_attempts_voucher_id"),
        "redemption_attempts",
        ["voucher_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_redemption_attempts_voucher_id"), table_name="redemption_attempts")
    op.drop_index(op.f("ix_redemption_attempts_user_id"), table_name="redemption_attempts")
    op.drop_index("ix_redemption_attempts_merchant_id_id", table_name="redemption_attempts")
    op.drop_table("redemption_attempts")
    op.drop_index(op.f("ix_vouchers_user_id"), table_name="vouchers")
    op.drop_index("ix_vouchers_status_valid_until", table_name="vouchers")
    op.drop_index(op.f("ix_vouchers_order_id"), table_name="vouchers")
    op.drop_index("ix_vouchers_merchant_id_redeemed_at", table_name="vouchers")
    op.drop_index(op.f("ix_vouchers_listing_id"), table_name="vouchers")
    op.drop_table("vouchers")
