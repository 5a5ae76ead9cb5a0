"""reports: per-order facts, the triggers that keep them honest, indexes for date windows

Revision ID: 0008
Revises: 0007

``report_order_facts`` (one row per order and leaf category, see ``o2o.reports.facts``) and
``report_dirty_orders``. Triggers on orders, order_lines and vouchers (and on listings when their
category changes) mark the order dirty and delete its facts in the same transaction — on
PostgreSQL as statement-level triggers with transition tables (one call per statement), on
SQLite per row. Existing orders start dirty: the worker job ``report_facts`` builds their facts.
Note: a SQLite "batch" rebuild of orders, order_lines, vouchers or listings drops these triggers;
re-create them in that migration (``tests/test_reports.py`` checks that they exist at head).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import o2o.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MARK = """
    INSERT INTO report_dirty_orders (order_id, version) VALUES ({id}, 1)
        ON CONFLICT (order_id) DO UPDATE SET version = version + 1;
    DELETE FROM report_order_facts WHERE order_id = {id};
"""
# (trigger name, table, event, id of the order in NEW)
SQLITE_TRIGGERS = [
    ("report_mark_orders_insert", "orders", "INSERT", "NEW.id"),
    ("report_mark_orders_update", "orders", "UPDATE", "NEW.id"),
    ("report_mark_order_lines_insert", "order_lines", "INSERT", "NEW.order_id"),
    ("report_mark_order_lines_update", "order_lines", "UPDATE", "NEW.order_id"),
    ("report_mark_vouchers_insert", "vouchers", "INSERT", "NEW.order_id"),
    ("report_mark_vouchers_update", "vouchers", "UPDATE", "NEW.order_id"),
]
# A category under a new parent changes the top-level category of its orders' facts: every
# order is marked (rare; the job rebuilds the facts, the reports stay exact meanwhile).
SQLITE_CATEGORY_TRIGGER = """
CREATE TRIGGER report_mark_category_moved AFTER UPDATE OF parent_id ON categories
WHEN NEW.parent_id IS NOT OLD.parent_id
BEGIN
    INSERT INTO report_dirty_orders (order_id, version) SELECT id, 1 FROM orders WHERE true
        ON CONFLICT (order_id) DO UPDATE SET version = version + 1;
    DELETE FROM report_order_facts;
END
"""
SQLITE_LISTING_TRIGGER = """
CREATE TRIGGER report_mark_listing_orders AFTER UPDATE OF category_id ON listings
WHEN NEW.category_id IS NOT OLD.category_id
BEGIN
    INSERT INTO report_dirty_orders (order_id, version)
        SELECT DISTINCT order_id, 1 FROM order_lines WHERE listing_id = NEW.id
        ON CONFLICT (order_id) DO UPDATE SET version = version + 1;
    DELETE FROM report_order_facts
        WHERE order_id IN (SELECT order_id FROM order_lines WHERE listing_id = NEW.id);
END
"""

PG_FUNCTIONS = {
    # The orders a statement changed, from its transition table ``changed``: marked in id order
    # (a fixed lock order), then their facts deleted.
    "report_mark_orders": "id",
    "report_mark_orders_of_rows": "order_id",
}
PG_FUNCTION = """
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO report_dirty_orders (order_id, version)
        SELECT DISTINCT {column}, 1 FROM changed ORDER BY 1
        ON CONFLICT (order_id) DO UPDATE SET version = report_dirty_orders.version + 1;
    DELETE FROM report_order_facts f USING changed c WHERE f.order_id = c.{column};
    RETURN NULL;
END $$
"""
PG_TRIGGERS = [
    ("report_mark_orders_insert", "orders", "INSERT", "report_mark_orders"),
    ("report_mark_orders_update", "orders", "UPDATE", "report_mark_orders"),
    ("report_mark_order_lines_insert", "order_lines", "INSERT", "report_mark_orders_of_rows"),
    ("report_mark_order_lines_update", "order_lines", "UPDATE", "report_mark_orders_of_rows"),
    ("report_mark_vouchers_insert", "vouchers", "INSERT", "report_mark_orders_of_rows"),
    ("report_mark_vouchers_update", "vouchers", "UPDATE", "report_mark_orders_of_rows"),
]
PG_LISTING = [
    """
    CREATE FUNCTION report_mark_listing_orders() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO report_dirty_orders (order_id, version)
            SELECT DISTINCT order_id, 1 FROM order_lines WHERE listing_id = NEW.id ORDER BY 1
            ON CONFLICT (order_id) DO UPDATE SET version = report_dirty_orders.version + 1;
        DELETE FROM report_order_facts
            WHERE order_id IN (SELECT order_id FROM order_lines WHERE listing_id = NEW.id);
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER report_mark_listing_orders AFTER UPDATE OF category_id ON listings
        FOR EACH ROW WHEN (OLD.category_id IS DISTINCT FROM NEW.category_id)
        EXECUTE FUNCTION report_mark_listing_orders()
    """,
    """
    CREATE FUNCTION report_mark_category_moved() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO report_dirty_orders (order_id, version)
            SELECT id, 1 FROM orders ORDER BY 1
            ON CONFLICT (order_id) DO UPDATE SET version = report_dirty_orders.version + 1;
        DELETE FROM report_order_facts;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER report_mark_category_moved AFTER UPDATE OF parent_id ON categories
        FOR EACH ROW WHEN (OLD.parent_id IS DISTINCT FROM NEW.parent_id)
        EXECUTE FUNCTION report_mark_category_moved()
    """,
]
# trigger → its table
TRIGGERS = {name: table for name, table, *_ in SQLITE_TRIGGERS} | {
    "report_mark_listing_orders": "listings",
    "report_mark_category_moved": "categories",
}


def create_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, column in PG_FUNCTIONS.items():
            op.execute(PG_FUNCTION.format(name=name, column=column))
        for name, table, event, function in PG_TRIGGERS:
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON {table} REFERENCING NEW TABLE AS changed"
                f" FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            )
        for statement in PG_LISTING:
            op.execute(statement)
        return
    for name, table, event, order_id in SQLITE_TRIGGERS:
        op.execute(
            f"CREATE TRIGGER {name} AFTER {event} ON {table} BEGIN{MARK.format(id=order_id)}END"
        )
    op.execute(SQLITE_LISTING_TRIGGER)
    op.execute(SQLITE_CATEGORY_TRIGGER)


def drop_triggers() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table in TRIGGERS.items():
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if postgres else ""))
    if postgres:
        for name in [*PG_FUNCTIONS, "report_mark_listing_orders", "report_mark_category_moved"]:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")


def upgrade() -> None:
    op.create_table(
        "report_order_facts",
        sa.Column("order_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("category_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("top_category_id", sa.BigInteger(), nullable=False),
        sa.Column("is_top_primary", sa.SmallInteger(), nullable=False),
        sa.Column("created_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("merchant_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("channel", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("is_primary", sa.SmallInteger(), nullable=False),
        sa.Column("paid", sa.SmallInteger(), nullable=False),
        sa.Column("shipped", sa.SmallInteger(), nullable=False),
        sa.Column("received", sa.SmallInteger(), nullable=False),
        sa.Column("consumed", sa.SmallInteger(), nullable=False),
        sa.Column("order_payable_fen", sa.BigInteger(), nullable=False),
        sa.Column("order_refunded_fen", sa.BigInteger(), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("refunded_fen", sa.BigInteger(), nullable=False),
        sa.Column("vouchers_issued", sa.Integer(), nullable=False),
        sa.Column("vouchers_redeemed", sa.Integer(), nullable=False),
        sa.Column("vouchers_refunded", sa.Integer(), nullable=False),
        sa.Column("commission_fen", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("order_id", "category_id", name=op.f("pk_report_order_facts")),
    )
    op.create_index(
        "ix_report_order_facts_created_at", "report_order_facts", ["created_at"], unique=False
    )
    op.create_table(
        "report_dirty_orders",
        sa.Column("order_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_report_dirty_orders")),
    )
    op.create_index(
        "ix_reports_visits_channel_id_visitor_id",
        "visits",
        ["channel_id", "visitor_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_reports_checkouts_channel_created_at",
        "checkouts",
        ["channel", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_reports_orders_merchant_id_created_at",
        "orders",
        ["merchant_id", "created_at"],
        unique=False,
    )
    create_triggers()
    # Orders placed before this migration: their facts are built by the worker.
    op.execute("INSERT INTO report_dirty_orders (order_id, version) SELECT id, 1 FROM orders")


def downgrade() -> None:
    drop_triggers()
    op.drop_index("ix_reports_orders_merchant_id_created_at", table_name="orders")
    op.drop_index("ix_reports_checkouts_channel_created_at", table_name="checkouts")
    op.drop_index("ix_reports_visits_channel_id_visitor_id", table_name="visits")
    op.drop_table("report_dirty_orders")
    op.drop_index("ix_report_order_facts_created_at", table_name="report_order_facts")
    op.drop_table("report_order_facts")
