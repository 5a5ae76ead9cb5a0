"""The double-entry ledger (DESIGN.md law 4): accounts, transactions, entries.

Sign convention: an entry's ``amount_fen`` is **debit positive, credit negative**. The entries of
one transaction sum to zero. An account's balance is the sum of its entries, derived, never
stored. Rows are insert-only: the service has no update path, an ORM guard refuses updates and
deletes, and database triggers refuse UPDATE (and, on PostgreSQL, DELETE and unbalanced commits).
Corrections are new transactions (``reversal``, ``adjustment``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, event, text
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from o2o.db import Base, BigIntId, UTCDateTime
from o2o.timeutil import utcnow


class LedgerAccount(Base):
    """An account, created on first use. ``code`` is the stable name, e.g. ``provider:wechatpay``,
    ``consumer_unearned``, ``merchant_payable:42``; ``type`` says which side is its normal one."""

    __tablename__ = "ledger_accounts"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    code: Mapped[str] = mapped_column(String(80), unique=True)
    # asset | liability | revenue | expense | contra_asset
    type: Mapped[str] = mapped_column(String(20))
    # Set for per-merchant accounts (payable, paid out).
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LedgerTransaction(Base):
    """One money event. ``idempotency_key`` is unique: the same event never posts twice."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (
        # A transaction is reversed at most once (the database says so, not only the service).
        Index(
            "uq_ledger_transactions_reversal_of",
            "related_id",
            unique=True,
            sqlite_where=text("kind = 'reversal'"),
            postgresql_where=text("kind = 'reversal'"),
        ),
        Index("ix_ledger_transactions_merchant_id_created_at", "merchant_id", "created_at"),
        Index("ix_ledger_transactions_kind_created_at", "kind", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    idempotency_key: Mapped[str] = mapped_column(String(160), unique=True)
    # sha256 of kind + entries + references: a replay with the same key must match it.
    fingerprint: Mapped[str] = mapped_column(String(64))
    order_no: Mapped[str | None] = mapped_column(String(40), index=True)
    payment_no: Mapped[str | None] = mapped_column(String(40), index=True)
    refund_no: Mapped[str | None] = mapped_column(String(40), index=True)
    payout_no: Mapped[str | None] = mapped_column(String(40), index=True)
    # The order line (or voucher) an ``earned`` posting is for; no FK: the ledger outlives orders.
    line_id: Mapped[int | None] = mapped_column(BigInteger)
    merchant_id: Mapped[int | None] = mapped_column(ForeignKey("merchants.id"))
    # The transaction this one reverses, or the ``earned`` transaction a refund gives back.
    related_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    memo: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    entries: Mapped[list[LedgerEntry]] = relationship(
        order_by="LedgerEntry.id", lazy="selectin", viewonly=True
    )


class LedgerEntry(Base):
    """One leg of a transaction: ``amount_fen`` > 0 debits the account, < 0 credits it."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("amount_fen <> 0", name="amount_not_zero"),
        Index("ix_ledger_entries_account_id_created_at", "account_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    # The transaction's time, copied so balances "as of" a time need no join.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    account: Mapped[LedgerAccount] = relationship(lazy="joined", viewonly=True)


class LedgerImmutable(RuntimeError):
    """Raised by the ORM guard: ledger rows are never changed or deleted (a programming error)."""


@event.listens_for(Session, "before_flush")
def _refuse_changes(session: Session, _context: object, _instances: object) -> None:
    for obj in session.deleted:
        if isinstance(obj, LedgerTransaction | LedgerEntry):
            raise LedgerImmutable("ledger rows are never deleted; post a reversal instead")
    for obj in session.dirty:
        if isinstance(obj, LedgerTransaction | LedgerEntry | LedgerAccount) and session.is_modified(
            obj
        ):
            raise LedgerImmutable("ledger rows are never changed; post a reversal instead")
