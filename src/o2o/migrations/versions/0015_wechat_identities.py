"""WeChat identities: consumers signed in through 公众号网页授权 or 小程序登录

Revision ID: 0015
Revises: 0014

* ``wechat_identities``: one row per (app id, openid) WeChat knows a consumer by, with the
  unionid when WeChat sends one (the same person across the 公众号 and the mini-program).
* ``users.phone`` may be empty: a first-time WeChat visitor gets a light account without a
  phone (and without a password) until they bind one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import o2o.db

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "wechat_identities",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        sa.Column("user_id", BIGINT, nullable=False),
        sa.Column("appid", sa.String(length=32), nullable=False),
        sa.Column("openid", sa.String(length=64), nullable=False),
        sa.Column("unionid", sa.String(length=64), nullable=True),
        sa.Column("created_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", o2o.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_wechat_identities_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wechat_identities")),
        sa.UniqueConstraint("appid", "openid", name=op.f("uq_wechat_identities_appid_openid")),
    )
    with op.batch_alter_table("wechat_identities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_wechat_identities_user_id"), ["user_id"])
        batch_op.create_index(batch_op.f("ix_wechat_identities_unionid"), ["unionid"])
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("phone", existing_type=sa.String(length=11), nullable=True)


def downgrade() -> None:
    # Phone-less (WeChat-only) accounts cannot survive a NOT NULL phone: they go with it.
    op.execute("DELETE FROM users WHERE phone IS NULL")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("phone", existing_type=sa.String(length=11), nullable=False)
    with op.batch_alter_table("wechat_identities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_wechat_identities_unionid"))
        batch_op.drop_index(batch_op.f("ix_wechat_identities_user_id"))
    op.drop_table("wechat_identities")
