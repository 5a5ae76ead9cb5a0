"""orders: per-order provider transaction id (combined payments), auto-confirm sweep index;
after-sales: room for the ``refund_failed`` status

Revision ID: 0010
Revises: 0009

* ``orders.provider_txn_id``: a WeChat Pay 合单 payment has one transaction id per sub-order
  (= per order); refunds and reconciliation with the provider's bill need it per order.
* ``ix_orders_status_shipped_at``: the auto-confirm sweep looks for ``shipped`` orders by
  ``shipped_at``.
* ``after_sales_requests.status`` widens to 20 characters for ``refund_failed``.

``orders`` is changed with plain ALTER/CREATE INDEX (no SQLite batch rebuild), so the report
triggers of 0008 on it stay in place.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column("provider_txn_id", sa.String(length=64), nullable=False, server_default=""),
    )
    op.create_index("ix_orders_status_shipped_at", "orders", ["status", "shipped_at"], unique=False)
    with op.batch_alter_table("after_sales_requests", schema=None) as batch_op:
        batch_op.alter_column(
            "status",
            existing_type=sa.String(length=12),
            type_=sa.String(length=20),
            existing_nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("after_sales_requests", schema=None) as batch_op:
        batch_op.alter_column(
            "status",
            existing_type=sa.String(length=20),
            type_=sa.String(length=12),
            existing_nullable=False,
        )
    op.drop_index("ix_orders_status_shipped_at", table_name="orders")
    op.drop_column("orders", "provider_txn_id")
