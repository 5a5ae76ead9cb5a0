"""The reports' own tables — per-order facts kept for fast reports — and the indexes the reports
need on other domains' tables (declared here so that the models match the migrations).

``report_order_facts`` holds one row per (order, leaf category of its lines) with everything the
channel and model reports add up, already joined and counted (lines, vouchers, commission). It is
never trusted blindly: every change to an order, its lines or its vouchers (and a listing moving
to another category, a category to another parent) marks the order in ``report_dirty_orders`` and deletes its facts **in the
same transaction**, by database triggers (migration 0008) — whatever code path made the change.
The worker job ``report_facts`` turns dirty orders back into facts; the reports read the stored
facts plus the facts of still-dirty orders computed live, so they are exact at every moment.
See ``o2o.reports.facts``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from o2o.channels.models import Visit
from o2o.db import Base, UTCDateTime
from o2o.orders.models import Checkout, Order


class ReportOrderFact(Base):
    """What one order contributes to the reports, per leaf category of its lines.

    Order-level money (``order_payable_fen``, ``order_refunded_fen``) is on the order's primary
    row only (``is_primary``: its smallest category id) so that sums count it once; flags
    (``paid``, ``shipped``, ``received``, ``consumed``) are order-level and repeated on each row.
    ``top_category_id`` depends on the category tree: moving a category (a new parent) marks
    every order dirty (trigger), and the job rebuilds the facts.
    No foreign keys: the worker must never wait on a lock an order transaction holds.
    """

    __tablename__ = "report_order_facts"
    __table_args__ = (Index("ix_report_order_facts_created_at", "created_at"),)

    order_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    category_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # The top-level category above it, and 1 on one row per (order, top-level category).
    top_category_id: Mapped[int] = mapped_column(BigInteger)
    is_top_primary: Mapped[int] = mapped_column(SmallInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    merchant_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(10))
    channel: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[int] = mapped_column(BigInteger)
    is_primary: Mapped[int] = mapped_column(SmallInteger)
    paid: Mapped[int] = mapped_column(SmallInteger)
    shipped: Mapped[int] = mapped_column(SmallInteger)
    received: Mapped[int] = mapped_column(SmallInteger)
    consumed: Mapped[int] = mapped_column(SmallInteger)
    order_payable_fen: Mapped[int] = mapped_column(BigInteger)
    order_refunded_fen: Mapped[int] = mapped_column(BigInteger)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    refunded_fen: Mapped[int] = mapped_column(BigInteger)
    vouchers_issued: Mapped[int] = mapped_column(Integer)
    vouchers_redeemed: Mapped[int] = mapped_column(Integer)
    vouchers_refunded: Mapped[int] = mapped_column(Integer)
    commission_fen: Mapped[int] = mapped_column(BigInteger)


class ReportDirtyOrder(Base):
    """An order whose facts are missing or out of date (written by triggers, taken by the job).
    ``version`` goes up on every change, so that a change made while the job holds the row
    waits for the job and then marks the order again."""

    __tablename__ = "report_dirty_orders"

    order_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(Integer, default=1)


# Indexes on other domains' tables for the reports' date windows. Visits by channel and visitor:
# a channel's distinct visitors are read in order, without sorting (and without the table).
Index(
    "ix_reports_visits_channel_id_visitor_id",
    Visit.__table__.c.channel_id,
    Visit.__table__.c.visitor_id,
    Visit.__table__.c.created_at,
)
Index(
    "ix_reports_checkouts_channel_created_at",
    Checkout.__table__.c.channel,
    Checkout.__table__.c.created_at,
)
Index(
    "ix_reports_orders_merchant_id_created_at",
    Order.__table__.c.merchant_id,
    Order.__table__.c.created_at,
)
