"""orders and payments: checkouts, orders, order lines, payments, notifications, refunds

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import o2o.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "payment_notifications",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("result", sa.String(length=30), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("payment_no", sa.String(length=32), nullable=True),
        sa.Column("refund_no", sa.String(length=32), nullable=True),
        sa.Column("event_status", sa.String(length=20), nullable=False),
        sa.Column("amount_fen", sa.Integer(), nullable=True),
        sa.Column("received_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("processed_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_notifications")),
    )
    op.create_index(
        op.f("ix_payment_notifications_payment_no"),
        "payment_notifications",
        ["payment_no"],
        unique=False,
    )
    op.create_index(
        "ix_payment_notifications_received_at",
        "payment_notifications",
        ["received_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_payment_notifications_refund_no"),
        "payment_notifications",
        ["refund_no"],
        unique=False,
    )
    op.create_table(
        "checkouts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("checkout_no", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("total_fen", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=40), nullable=False),
        sa.Column("created_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_checkouts_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkouts")),
        sa.UniqueConstraint("checkout_no", name=op.f("uq_checkouts_checkout_no")),
    )
    op.create_index(op.f("ix_checkouts_user_id"), "checkouts", ["user_id"], unique=False)
    op.create_table(
        "payments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("payment_no", sa.String(length=32), nullable=False),
        sa.Column(
            "checkout_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("amount_fen", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=True),
        sa.Column("method", sa.String(length=20), nullable=True),
        sa.Column("provider_txn_id", sa.String(length=64), nullable=False),
        sa.Column("resolution", sa.String(length=20), nullable=False),
        sa.Column("close_reason", sa.String(length=20), nullable=False),
        sa.Column("failure_reason", sa.String(length=200), nullable=False),
        sa.Column("expires_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("queried_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("paid_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("closed_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount_fen >= 1", name=op.f("ck_payments_amount_positive")),
        sa.ForeignKeyConstraint(
            ["checkout_id"], ["checkouts.id"], name=op.f("fk_payments_checkout_id_checkouts")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_payments_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("payment_no", name=op.f("uq_payments_payment_no")),
    )
    op.create_index(op.f("ix_payments_checkout_id"), "payments", ["checkout_id"], unique=False)
    op.create_index(
        "ix_payments_status_expires_at", "payments", ["status", "expires_at"], unique=False
    )
    op.create_index(op.f("ix_payments_user_id"), "payments", ["user_id"], unique=False)
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_no", sa.String(length=32), nullable=False),
        sa.Column(
            "checkout_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "payment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "merchant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("items_fen", sa.Integer(), nullable=False),
        sa.Column("shipping_fee_fen", sa.Integer(), nullable=False),
        sa.Column("discount_fen", sa.Integer(), nullable=False),
        sa.Column("payable_fen", sa.Integer(), nullable=False),
        sa.Column("refunded_fen", sa.Integer(), nullable=False),
        sa.Column("shipping_address", sa.JSON(), nullable=True),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=40), nullable=False),
        sa.Column("cancel_reason", sa.String(length=20), nullable=False),
        sa.Column("created_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("paid_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("shipped_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("refunded_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('goods', 'service')", name=op.f("ck_orders_kind")),
        sa.CheckConstraint("payable_fen >= 0", name=op.f("ck_orders_payable_not_negative")),
        sa.CheckConstraint(
            "refunded_fen >= 0 AND refunded_fen <= payable_fen", name=op.f("ck_orders_refund_cap")
        ),
        sa.ForeignKeyConstraint(
            ["checkout_id"], ["checkouts.id"], name=op.f("fk_orders_checkout_id_checkouts")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_orders_merchant_id_merchants")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_orders_payment_id_payments")
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_orders_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("order_no", name=op.f("uq_orders_order_no")),
    )
    op.create_index(op.f("ix_orders_checkout_id"), "orders", ["checkout_id"], unique=False)
    op.create_index(
        "ix_orders_merchant_id_status_id", "orders", ["merchant_id", "status", "id"], unique=False
    )
    op.create_index(op.f("ix_orders_payment_id"), "orders", ["payment_id"], unique=False)
    op.create_index("ix_orders_user_id_id", "orders", ["user_id", "id"], unique=False)
    op.create_table(
        "order_lines",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "listing_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("sku_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("slot_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("title", sa.String(length=100), nullable=False),
        sa.Column("sku_name", sa.String(length=60), nullable=False),
        sa.Column("unit_price_fen", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("amount_fen", sa.Integer(), nullable=False),
        sa.Column("commission_bp", sa.Integer(), nullable=False),
        sa.Column("hold_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column(
            "extra_hold_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("refunded_fen", sa.Integer(), nullable=False),
        sa.CheckConstraint("quantity >= 1", name=op.f("ck_order_lines_quantity_positive")),
        sa.CheckConstraint(
            "refunded_fen >= 0 AND refunded_fen <= amount_fen",
            name=op.f("ck_order_lines_refund_cap"),
        ),
        sa.ForeignKeyConstraint(
            ["extra_hold_id"],
            ["inventory_holds.id"],
            name=op.f("fk_order_lines_extra_hold_id_inventory_holds"),
        ),
        sa.ForeignKeyConstraint(
            ["hold_id"], ["inventory_holds.id"], name=op.f("fk_order_lines_hold_id_inventory_holds")
        ),
        sa.ForeignKeyConstraint(
            ["listing_id"], ["listings.id"], name=op.f("fk_order_lines_listing_id_listings")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_order_lines_order_id_orders")
        ),
        sa.ForeignKeyConstraint(["sku_id"], ["skus.id"], name=op.f("fk_order_lines_sku_id_skus")),
        sa.ForeignKeyConstraint(
            ["slot_id"], ["time_slots.id"], name=op.f("fk_order_lines_slot_id_time_slots")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_lines")),
    )
    op.create_index(op.f("ix_order_lines_listing_id"), "order_lines", ["listing_id"], unique=False)
    op.create_index(op.f("ix_order_lines_order_id"), "order_lines", ["order_id"], unique=False)
    op.create_index(op.f("ix_order_lines_slot_id"), "order_lines", ["slot_id"], unique=False)
    op.create_table(
        "refunds",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("refund_no", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "payment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("amount_fen", sa.Integer(), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("voucher_codes", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("initiator", sa.String(length=60), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.Column("provider_refund_id", sa.String(length=64), nullable=False),
        sa.Column("next_attempt_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("succeeded_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("failed_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("amount_fen >= 1", name=op.f("ck_refunds_amount_positive")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_refunds_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_refunds_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
        sa.UniqueConstraint("refund_no", name=op.f("uq_refunds_refund_no")),
    )
    op.create_index(op.f("ix_refunds_order_id"), "refunds", ["order_id"], unique=False)
    op.create_index(op.f("ix_refunds_payment_id"), "refunds", ["payment_id"], unique=False)
    op.create_index(
        "ix_refunds_status_next_attempt_at", "refunds", ["status", "next_attempt_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_refunds_status_next_attempt_at", table_name="refunds")
    op.drop_index(op.f("ix_refunds_payment_id"), table_name="refunds")
    op.drop_index(op.f("ix_refunds_order_id"), table_name="refunds")
    op.drop_table("refunds")
    op.drop_index(op.f("ix_order_lines_slot_id"), table_name="order_lines")
    op.drop_index(op.f("ix_order_lines_order_id"), table_name="order_lines")
    op.drop_index(op.f("ix_order_lines_listing_id"), table_name="order_lines")
    op.drop_table("order_lines")
    op.drop_index("ix_orders_user_id_id", table_name="orders")
    op.drop_index(op.f("ix_orders_payment_id"), table_name="orders")
    op.drop_index("ix_orders_merchant_id_status_id", table_name="orders")
    op.drop_index(op.f("ix_orders_checkout_id"), table_name="orders")
    op.drop_table("orders")
    op.drop_index(op.f("ix_payments_user_id"), table_name="payments")
    op.drop_index("ix_payments_status_expires_at", table_name="payments")
    op.drop_index(op.f("ix_payments_checkout_id"), table_name="payments")
    op.drop_table("payments")
    op.drop_index(op.f("ix_checkouts_user_id"), table_name="checkouts")
    op.drop_table("checkouts")
    op.drop_index(op.f("ix_payment_notifications_refund_no"), table_name="payment_notifications")
    op.drop_index("ix_payment_notifications_received_at", table_name="payment_notifications")
    op.drop_index(op.f("ix_payment_notifications_payment_no"), table_name="payment_notifications")
    op.drop_table("payment_notifications")
