"""refunds: 退款异常 (abnormal) and its handling; reconciliation: where an import came from, and
the worker's daily WeChat Pay trade-bill downloads

Revision ID: 0012
Revises: 0011

* ``refunds.abnormal_at / abnormal_handling / abnormal_handled_by / abnormal_handled_at``: WeChat
  Pay reports a refund ``ABNORMAL`` when the money left the merchant account but the payer's
  account could not take it; the operator has it sent to a bank card (异常退款). The status
  value ``abnormal`` fits the existing ``String(12)``.
* ``reconciliation_imports.source``: upload | cli | download.
* ``settlement_trade_bill_downloads``: one row per bill day (unique), claimed by one worker.

``refunds`` is rebuilt in batch mode on SQLite (a column with a foreign key; no triggers).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from o2o.db import BigIntId, UTCDateTime

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode: SQLite cannot add a column with a foreign key in place (no triggers on refunds).
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("abnormal_at", UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("abnormal_handling", sa.String(length=30), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("abnormal_handled_by", BigIntId, nullable=True))
        batch_op.add_column(
            sa.Column("abnormal_handled_at", UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_foreign_key(
            op.f("fk_refunds_abnormal_handled_by_users"), "users", ["abnormal_handled_by"], ["id"]
        )
    op.add_column(
        "reconciliation_imports",
        sa.Column("source", sa.String(length=20), nullable=False, server_default="upload"),
    )
    op.create_table(
        "settlement_trade_bill_downloads",
        sa.Column("id", BigIntId, nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("bill_date", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("leased_until", UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.Column("hash_type", sa.String(length=10), nullable=False),
        sa.Column("hash_value", sa.String(length=128), nullable=False),
        sa.Column("import_id", BigIntId, nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["reconciliation_imports.id"],
            name=op.f("fk_settlement_trade_bill_downloads_import_id_reconciliation_imports"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_trade_bill_downloads")),
        sa.UniqueConstraint(
            "provider",
            "bill_date",
            name=op.f("uq_settlement_trade_bill_downloads_provider_bill_date"),
        ),
    )
    op.create_index(
        "ix_settlement_trade_bill_downloads_status_next",
        "settlement_trade_bill_downloads",
        ["status", "next_attempt_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        "ix_settlement_trade_bill_downloads_status_next",
        table_name="settlement_trade_bill_downloads",
    )
    op.drop_table("settlement_trade_bill_downloads")
    with op.batch_alter_table("reconciliation_imports", schema=None) as batch_op:
        batch_op.drop_column("source")
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_column("abnormal_handled_at")
        batch_op.drop_constraint(op.f("fk_refunds_abnormal_handled_by_users"), type_="foreignkey")
        batch_op.drop_column("abnormal_handled_by")
        batch_op.drop_column("abnormal_handling")
        batch_op.drop_column("abnormal_at")
