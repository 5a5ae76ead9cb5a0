"""settlement and payouts

Revision ID: 0009
Revises: 0008

Settlement statements (结算单) and their lines (one per ledger transaction, unique), WeChat Pay
profit-sharing orders (分账) of statements, and trade-bill reconciliation imports (对账).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import o2o.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _big() -> sa.types.TypeEngine:
    # BigIntId: BIGINT on PostgreSQL, INTEGER (rowid) on SQLite; also for foreign keys to it.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id() -> sa.Column:
    return sa.Column("id", _big(), nullable=False)


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, o2o.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "settlement_statements",
        _id(),
        sa.Column("statement_no", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", _big(), nullable=False),
        _time("period_start"),
        _time("period_end"),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("gross_fen", sa.BigInteger(), nullable=False),
        sa.Column("commission_fen", sa.BigInteger(), nullable=False),
        sa.Column("refunds_fen", sa.BigInteger(), nullable=False),
        sa.Column("net_fen", sa.BigInteger(), nullable=False),
        sa.Column("carried_in_fen", sa.BigInteger(), nullable=False),
        sa.Column("payable_fen", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("carried_into_id", _big(), nullable=True),
        sa.Column("payout_via", sa.String(length=30), nullable=False),
        sa.Column("payout_no", sa.String(length=40), nullable=False),
        sa.Column("payout_transaction_id", _big(), nullable=True),
        sa.Column("bank_reference", sa.String(length=100), nullable=False),
        _time("paid_at", True),
        sa.Column("paid_by", _big(), nullable=True),
        sa.Column("failure_reason", sa.String(length=500), nullable=False),
        _time("created_at"),
        _time("updated_at"),
        sa.ForeignKeyConstraint(
            ["carried_into_id"],
            ["settlement_statements.id"],
            name=op.f("fk_settlement_statements_carried_into_id_settlement_statements"),
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_settlement_statements_merchant_id_merchants"),
        ),
        sa.ForeignKeyConstraint(
            ["paid_by"], ["users.id"], name=op.f("fk_settlement_statements_paid_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["payout_transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_settlement_statements_payout_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_statements")),
        sa.UniqueConstraint(
            "merchant_id",
            "period_start",
            "sequence",
            name=op.f("uq_settlement_statements_merchant_id_period_start_sequence"),
        ),
        sa.UniqueConstraint("statement_no", name=op.f("uq_settlement_statements_statement_no")),
    )
    op.create_index(
        "ix_settlement_statements_merchant_id_period_start",
        "settlement_statements",
        ["merchant_id", "period_start"],
        unique=False,
    )
    op.create_index(
        "ix_settlement_statements_status_period_start",
        "settlement_statements",
        ["status", "period_start"],
        unique=False,
    )
    op.create_table(
        "settlement_lines",
        _id(),
        sa.Column("statement_id", _big(), nullable=False),
        sa.Column("transaction_id", _big(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("order_no", sa.String(length=40), nullable=True),
        sa.Column("payment_no", sa.String(length=40), nullable=True),
        sa.Column("refund_no", sa.String(length=40), nullable=True),
        sa.Column("line_id", sa.BigInteger(), nullable=True),
        _time("posted_at"),
        sa.Column("gross_fen", sa.BigInteger(), nullable=False),
        sa.Column("commission_fen", sa.BigInteger(), nullable=False),
        sa.Column("refunds_fen", sa.BigInteger(), nullable=False),
        sa.Column("net_fen", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["statement_id"],
            ["settlement_statements.id"],
            name=op.f("fk_settlement_lines_statement_id_settlement_statements"),
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_settlement_lines_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_lines")),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_settlement_lines_transaction_id")),
    )
    op.create_index(
        op.f("ix_settlement_lines_statement_id"), "settlement_lines", ["statement_id"], unique=False
    )
    op.create_table(
        "settlement_profit_sharing",
        _id(),
        sa.Column("statement_id", _big(), nullable=False),
        sa.Column("out_order_no", sa.String(length=64), nullable=False),
        sa.Column("payment_no", sa.String(length=40), nullable=False),
        sa.Column("order_no", sa.String(length=40), nullable=False),
        sa.Column("sub_mchid", sa.String(length=32), nullable=False),
        sa.Column("transaction_id", sa.String(length=64), nullable=False),
        sa.Column("commission_fen", sa.BigInteger(), nullable=False),
        sa.Column("net_fen", sa.BigInteger(), nullable=False),
        sa.Column("unfreeze", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("wechat_order_id", sa.String(length=64), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _time("created_at"),
        _time("updated_at"),
        sa.ForeignKeyConstraint(
            ["statement_id"],
            ["settlement_statements.id"],
            name=op.f("fk_settlement_profit_sharing_statement_id_settlement_statements"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settlement_profit_sharing")),
        sa.UniqueConstraint("out_order_no", name=op.f("uq_settlement_profit_sharing_out_order_no")),
        sa.UniqueConstraint(
            "statement_id",
            "order_no",
            name=op.f("uq_settlement_profit_sharing_statement_id_order_no"),
        ),
    )
    op.create_index(
        op.f("ix_settlement_profit_sharing_statement_id"),
        "settlement_profit_sharing",
        ["statement_id"],
        unique=False,
    )
    op.create_table(
        "reconciliation_imports",
        _id(),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("date_from", sa.String(length=10), nullable=False),
        sa.Column("date_to", sa.String(length=10), nullable=False),
        sa.Column("bill_rows", sa.Integer(), nullable=False),
        sa.Column("bill_payments_fen", sa.BigInteger(), nullable=False),
        sa.Column("bill_refunds_fen", sa.BigInteger(), nullable=False),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.Column("finding_count", sa.Integer(), nullable=False),
        sa.Column("findings", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("imported_by", _big(), nullable=True),
        _time("created_at"),
        sa.ForeignKeyConstraint(
            ["imported_by"], ["users.id"], name=op.f("fk_reconciliation_imports_imported_by_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_imports")),
    )


def downgrade() -> None:
    op.drop_table("reconciliation_imports")
    op.drop_index(
        op.f("ix_settlement_profit_sharing_statement_id"), table_name="settlement_profit_sharing"
    )
    op.drop_table("settlement_profit_sharing")
    op.drop_index(op.f("ix_settlement_lines_statement_id"), table_name="settlement_lines")
    op.drop_table("settlement_lines")
    op.drop_index(
        "ix_settlement_statements_status_period_start", table_name="settlement_statements"
    )
    op.drop_index(
        "ix_settlement_statements_merchant_id_period_start", table_name="settlement_statements"
    )
    op.drop_table("settlement_statements")
