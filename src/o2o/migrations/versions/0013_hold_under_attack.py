"""hold under attack: atomic throttle counters, server-side sessions, staff invitations

Revision ID: 0013
Revises: 0012

* ``rate_counters`` replaces ``rate_events``: one row per throttle key, counted with one atomic
  upsert before an attempt is evaluated (the old rows were counted, then written after the
  attempt, and concurrency outran them). Old rows are throttle state of at most 15 minutes and
  are not carried over.
* ``user_sessions``: every page cookie and bearer token points at a row; signing out, a password
  change or reset and "sign out everywhere" delete rows, which revokes at once.
* ``staff_invitations``: staff and owners are invited and become members only when they accept.
* ``payment_notifications``: the verified event (``event``) so the worker can replay one a crash
  left in ``received``; ``fingerprint`` and ``repeat_count`` so a rejected body sent again is
  counted instead of stored again.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import o2o.db

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rate_counters",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("window_ends", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_counters")),
    )
    with op.batch_alter_table("rate_counters", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_rate_counters_window_ends"), ["window_ends"], unique=False
        )
    with op.batch_alter_table("rate_events", schema=None) as batch_op:
        batch_op.drop_index("ix_rate_events_key_at")
    op.drop_table("rate_events")

    op.create_table(
        "user_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", BIGINT, nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("created_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_sessions")),
    )
    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_sessions_user_id"), ["user_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_user_sessions_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "staff_invitations",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("merchant_id", BIGINT, nullable=False),
        sa.Column("user_id", BIGINT, nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("store_ids", sa.JSON(), nullable=False),
        sa.Column("invited_by", BIGINT, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("responded_at", o2o.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["invited_by"], ["users.id"], name=op.f("fk_staff_invitations_invited_by_users")
        ),
        sa.ForeignKeyConstraint(
            ["merchant_id"],
            ["merchants.id"],
            name=op.f("fk_staff_invitations_merchant_id_merchants"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_staff_invitations_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_invitations")),
    )
    with op.batch_alter_table("staff_invitations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_staff_invitations_merchant_id"), ["merchant_id"], unique=False
        )
        batch_op.create_index(
            "ix_staff_invitations_user_status", ["user_id", "status"], unique=False
        )

    with op.batch_alter_table("payment_notifications", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("fingerprint", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("repeat_count", sa.Integer(), server_default="1", nullable=False)
        )
        batch_op.create_index(
            batch_op.f("ix_payment_notifications_fingerprint"), ["fingerprint"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("payment_notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_notifications_fingerprint"))
        batch_op.drop_column("repeat_count")
        batch_op.drop_column("fingerprint")
        batch_op.drop_column("event")

    with op.batch_alter_table("staff_invitations", schema=None) as batch_op:
        batch_op.drop_index("ix_staff_invitations_user_status")
        batch_op.drop_index(batch_op.f("ix_staff_invitations_merchant_id"))
    op.drop_table("staff_invitations")

    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_user_sessions_expires_at"))
        batch_op.drop_index(batch_op.f("ix_user_sessions_user_id"))
    op.drop_table("user_sessions")

    op.create_table(
        "rate_events",
        sa.Column("id", BIGINT, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("created_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_events")),
    )
    with op.batch_alter_table("rate_events", schema=None) as batch_op:
        batch_op.create_index("ix_rate_events_key_at", ["key", "created_at"], unique=False)
    with op.batch_alter_table("rate_counters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rate_counters_window_ends"))
    op.drop_table("rate_counters")
