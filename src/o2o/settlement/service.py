"""结算: settlement statements per merchant per period, and paying them.

Periods
-------
``O2O_SETTLEMENT_CYCLE_DAYS`` (default 1, i.e. T+1) days long, starting at midnight Beijing
time, counted from ``PERIOD_EPOCH``. A posting belongs to the period its ledger time falls in;
a period is settled once it has ended (plus ``GRACE`` for transactions still committing).

What a statement holds
----------------------
Every ledger transaction that moved the merchant's payable and is not a payout: ``earned``
postings, refunds after earning, reversals, adjustments. For each (entries: debit +, credit −):
``net = −payable``, ``commission = −platform_commission``, ``refunds = −provider`` (refunds and
reversals only), ``gross = net + commission + refunds``. So Σ net of a merchant's statements is
exactly what the ledger credited its payable outside payouts — reconciled to the fen by
construction, and ``settlement_lines.transaction_id`` is unique, so nothing is settled twice.
A posting that arrives after its period's statement exists goes into a supplementary statement
of the same period (``sequence`` 2, 3, …). A statement with nothing to pay (payable ≤ 0, e.g.
refunds of earlier periods exceeding this one's earnings) is carried into the next one.

Several workers: each merchant is claimed by locking its payable account row with
``FOR UPDATE SKIP LOCKED`` (PostgreSQL); the unique keys are the backstop.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from o2o import events
from o2o.config import Settings
from o2o.db import Database
from o2o.errors import Conflict, NotFound, ValidationFailed
from o2o.ledger import service as ledger
from o2o.ledger.models import LedgerAccount, LedgerEntry, LedgerTransaction
from o2o.settlement.models import (
    CARRIED,
    READY,
    STATEMENT_STATUS,
    SettlementLine,
    SettlementStatement,
)
from o2o.timeutil import CHINA_TZ, as_utc, utcnow

log = logging.getLogger(__name__)

PERIOD_EPOCH = datetime(2024, 1, 1, tzinfo=CHINA_TZ)
# Postings are stamped before they commit: wait a little after a period ends.
GRACE = timedelta(minutes=5)
MERCHANTS_PER_RUN = 100


# --- periods -----------------------------------------------------------------------------------


def period_of(at: datetime, cycle_days: int) -> tuple[datetime, datetime]:
    """[start, end) of the settlement period containing ``at`` (UTC datetimes)."""
    length = timedelta(days=cycle_days)
    index = (as_utc(at) - PERIOD_EPOCH) // length
    start = PERIOD_EPOCH + index * length
    return as_utc(start), as_utc(start + length)


def settled_before(now: datetime, cycle_days: int) -> datetime:
    """Postings before this time belong to periods that have ended (with the grace)."""
    return period_of(now - GRACE, cycle_days)[0]


# --- the lines of a posting ----------------------------------------------------------------------


@dataclass(frozen=True)
class LineAmounts:
    gross_fen: int
    commission_fen: int
    refunds_fen: int
    net_fen: int


def line_amounts(txn: LedgerTransaction, merchant_id: int) -> LineAmounts:
    entries = ledger.entries_of(txn)
    payable = ledger.merchant_payable(merchant_id)
    net = -sum(a for c, a in entries if c == payable)
    commission = -sum(a for c, a in entries if c == ledger.PLATFORM_COMMISSION)
    refunds = 0
    if txn.kind in (ledger.REFUND, ledger.REVERSAL):
        refunds = -sum(a for c, a in entries if c.startswith(ledger.PROVIDER_PREFIX))
    return LineAmounts(net + commission + refunds, commission, refunds, net)


_payable_account = aliased(LedgerAccount)
_paid_out_entry = aliased(LedgerEntry)
_paid_out_account = aliased(LedgerAccount)


def _unsettled(cutoff: datetime):  # type: ignore[no-untyped-def]
    """(transaction id, merchant id, posted at) of payable entries not yet on a statement,
    posted before ``cutoff``, payouts excluded."""
    is_payout = exists().where(
        _paid_out_entry.transaction_id == LedgerEntry.transaction_id,
        _paid_out_account.id == _paid_out_entry.account_id,
        _paid_out_account.code.like(ledger.MERCHANT_PAID_OUT_PREFIX + "%"),
    )
    settled = exists().where(SettlementLine.transaction_id == LedgerEntry.transaction_id)
    return (
        select(LedgerEntry.transaction_id, _payable_account.merchant_id, LedgerEntry.created_at)
        .join(_payable_account, _payable_account.id == LedgerEntry.account_id)
        .where(
            _payable_account.code.like(ledger.MERCHANT_PAYABLE_PREFIX + "%"),
            LedgerEntry.created_at < cutoff,
            ~settled,
            ~is_payout,
        )
    )


# --- generation --------------------------------------------------------------------------------


def statement_no(merchant_id: int, period_start: datetime, sequence: int) -> str:
    day = period_start.astimezone(CHINA_TZ).strftime("%Y%m%d")
    return f"ST{day}-{merchant_id}-{sequence}"


def _claim_merchant(session: Session, merchant_id: int) -> bool:
    """Lock the merchant's payable account: one worker settles a merchant at a time."""
    query = select(LedgerAccount.id).where(
        LedgerAccount.code == ledger.merchant_payable(merchant_id)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return session.scalar(query) is not None


def _settle_merchant(
    session: Session, merchant_id: int, cutoff: datetime, cycle_days: int, now: datetime
) -> list[SettlementStatement]:
    rows = session.execute(
        _unsettled(cutoff).where(_payable_account.merchant_id == merchant_id)
    ).all()
    by_period: dict[datetime, list[int]] = defaultdict(list)
    for txn_id, _m, posted_at in rows:
        by_period[period_of(posted_at, cycle_days)[0]].append(txn_id)
    made: list[SettlementStatement] = []
    for start in sorted(by_period):
        txns = list(
            session.scalars(
                select(LedgerTransaction)
                .where(LedgerTransaction.id.in_(by_period[start]))
                .order_by(LedgerTransaction.created_at, LedgerTransaction.id)
            )
        )
        sequence = 1 + (
            session.scalar(
                select(func.max(SettlementStatement.sequence)).where(
                    SettlementStatement.merchant_id == merchant_id,
                    SettlementStatement.period_start == start,
                )
            )
            or 0
        )
        _, end = period_of(start, cycle_days)
        statement = SettlementStatement(
            statement_no=statement_no(merchant_id, start, sequence),
            merchant_id=merchant_id,
            period_start=start,
            period_end=end,
            sequence=sequence,
            status=READY,
            created_at=now,
            updated_at=now,
        )
        session.add(statement)
        session.flush()
        totals = [0, 0, 0, 0]
        for txn in txns:
            amounts = line_amounts(txn, merchant_id)
            session.add(
                SettlementLine(
                    statement_id=statement.id,
                    transaction_id=txn.id,
                    kind=txn.kind,
                    order_no=txn.order_no,
                    payment_no=txn.payment_no,
                    refund_no=txn.refund_no,
                    line_id=txn.line_id,
                    posted_at=txn.created_at,
                    **amounts.__dict__,
                )
            )
            totals = [
                t + a
                for t, a in zip(
                    totals,
                    (
                        amounts.gross_fen,
                        amounts.commission_fen,
                        amounts.refunds_fen,
                        amounts.net_fen,
                    ),
                    strict=True,
                )
            ]
        statement.line_count = len(txns)
        statement.gross_fen, statement.commission_fen, statement.refunds_fen, statement.net_fen = (
            totals
        )
        # Earlier statements with nothing to pay are netted into this one.
        carried = list(
            session.scalars(
                select(SettlementStatement)
                .where(
                    SettlementStatement.merchant_id == merchant_id,
                    SettlementStatement.status == READY,
                    SettlementStatement.payable_fen <= 0,
                    SettlementStatement.id != statement.id,
                )
                .with_for_update()
            )
        )
        for old in carried:
            old.status = STATEMENT_STATUS.next_state(old.status, "carry")
            old.carried_into_id = statement.id
            old.updated_at = now
        statement.carried_in_fen = sum(old.payable_fen for old in carried)
        statement.payable_fen = statement.net_fen + statement.carried_in_fen
        session.flush()
        events.publish(
            session,
            events.StatementGenerated(
                statement_id=statement.id,
                merchant_id=statement.merchant_id,
                amount_fen=statement.payable_fen,
            ),
        )
        made.append(statement)
    return made


def generate_statements(
    db: Database, settings: Settings, *, now: datetime | None = None, limit: int = MERCHANTS_PER_RUN
) -> int:
    """The worker job: statements for every ended period with unsettled postings. Idempotent;
    safe with several workers. Returns how many statements were made."""
    now = now or utcnow()
    cycle = settings.settlement_cycle_days
    cutoff = settled_before(now, cycle)
    with db.transaction(readonly=True) as session:
        sub = _unsettled(cutoff).subquery()
        merchant_ids = list(
            session.scalars(
                select(sub.c.merchant_id).distinct().order_by(sub.c.merchant_id).limit(limit)
            )
        )
    made = 0
    for merchant_id in merchant_ids:
        try:
            with db.transaction() as session:
                if not _claim_merchant(session, merchant_id):
                    continue  # another worker has it
                made += len(_settle_merchant(session, merchant_id, cutoff, cycle, now))
        except IntegrityError:
            # Another worker settled the same postings first (unique keys): nothing lost.
            log.info("settlement of merchant %s raced another worker", merchant_id)
    return made


def unsettled_postings(session: Session, cutoff: datetime) -> list[tuple[int, int, datetime]]:
    """(transaction id, merchant id, posted at) of every payable posting before ``cutoff`` that
    no statement covers yet (payouts excluded)."""
    return [(t, m, at) for t, m, at in session.execute(_unsettled(cutoff)).all()]


def settle_merchant(
    session: Session,
    merchant_id: int,
    *,
    cutoff: datetime,
    cycle_days: int,
    now: datetime | None = None,
) -> list[SettlementStatement]:
    """One merchant's statements for its unsettled postings before ``cutoff``, in the caller's
    transaction (the demo data uses it; the worker goes through ``generate_statements``)."""
    return _settle_merchant(session, merchant_id, cutoff, cycle_days, now or utcnow())


# --- reading -----------------------------------------------------------------------------------


def get_statement(
    session: Session, no: str, *, merchant_id: int | None = None, lock: bool = False
) -> SettlementStatement:
    query = select(SettlementStatement).where(SettlementStatement.statement_no == no)
    if merchant_id is not None:
        query = query.where(SettlementStatement.merchant_id == merchant_id)
    if lock:
        query = query.with_for_update()
    statement = session.scalar(query)
    if statement is None:
        raise NotFound(f"没有结算单 {no}", code="settlement_not_found")
    return statement


def lines_of(session: Session, statement_id: int) -> list[SettlementLine]:
    return list(
        session.scalars(
            select(SettlementLine)
            .where(SettlementLine.statement_id == statement_id)
            .order_by(SettlementLine.posted_at, SettlementLine.id)
        )
    )


def list_statements(
    session: Session,
    *,
    merchant_id: int | None = None,
    status: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[SettlementStatement]:
    """Newest first; ``before_id`` is the cursor."""
    query = select(SettlementStatement).order_by(SettlementStatement.id.desc()).limit(limit)
    if merchant_id is not None:
        query = query.where(SettlementStatement.merchant_id == merchant_id)
    if status:
        query = query.where(SettlementStatement.status == status)
    if before_id:
        query = query.where(SettlementStatement.id < before_id)
    return list(session.scalars(query))


def unsettled_payable(session: Session, merchant_id: int) -> int:
    """What the ledger credited the merchant's payable that no statement covers yet."""
    payable = ledger.merchant_payable(merchant_id)
    total = session.scalar(
        select(func.sum(LedgerEntry.amount_fen))
        .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
        .where(
            LedgerAccount.code == payable,
            ~exists().where(SettlementLine.transaction_id == LedgerEntry.transaction_id),
            ~exists().where(
                and_(
                    _paid_out_entry.transaction_id == LedgerEntry.transaction_id,
                    _paid_out_account.id == _paid_out_entry.account_id,
                    _paid_out_account.code == ledger.merchant_paid_out(merchant_id),
                )
            ),
        )
    )
    return -int(total or 0)


# --- paying ------------------------------------------------------------------------------------


def payout_no_of(statement: SettlementStatement) -> str:
    return statement.statement_no


def record_payout(
    session: Session,
    statement: SettlementStatement,
    *,
    action: str,
    via: str,
    actor_id: int | None,
    paid_at: datetime | None = None,
    bank_reference: str = "",
) -> SettlementStatement:
    """Move the (locked) statement to paid and post the payout, in the caller's transaction.

    The statement is the authority on the amount; the payable may go below zero meanwhile
    (refunds of this period, settled in the next statement), so the ledger's own cap is not
    applied — exactly-once comes from the state machine under the row lock and the unique
    payout key ``payout:{statement_no}``.
    """
    new_status = STATEMENT_STATUS.next_state(statement.status, action)
    if statement.payable_fen <= 0:
        raise Conflict(
            f"结算单 {statement.statement_no} 应结金额为 {statement.payable_fen} 分，无需打款",
            code="settlement_nothing_to_pay",
        )
    now = utcnow()
    txn = ledger.post_payout(
        session,
        payout_no=payout_no_of(statement),
        merchant_id=statement.merchant_id,
        amount_fen=statement.payable_fen,
        via=via,
        memo=f"结算单 {statement.statement_no} · {ledger.PAYOUT_VIA[via]}",
        allow_overdraw=True,
    )
    statement.status = new_status
    statement.payout_via = via
    statement.payout_no = payout_no_of(statement)
    statement.payout_transaction_id = txn.id if txn is not None else None
    statement.bank_reference = bank_reference
    statement.paid_at = as_utc(paid_at) if paid_at else now
    statement.paid_by = actor_id
    statement.updated_at = now
    events.publish(
        session,
        events.StatementPaid(
            statement_id=statement.id,
            merchant_id=statement.merchant_id,
            amount_fen=statement.payable_fen,
        ),
    )
    return statement


def mark_paid(
    session: Session,
    no: str,
    *,
    bank_reference: str,
    actor_id: int | None,
    paid_at: datetime | None = None,
) -> SettlementStatement:
    """The operator transferred the money by bank: record it and post the payout, once."""
    if not bank_reference.strip():
        raise ValidationFailed("请填写银行流水号", field="bank_reference")
    if paid_at is not None and as_utc(paid_at) > utcnow() + timedelta(minutes=5):
        raise ValidationFailed("打款时间不能晚于现在", field="paid_at")
    statement = get_statement(session, no, lock=True)
    if statement.status == CARRIED:
        raise Conflict(f"结算单 {no} 已结转到下一期，无需打款", code="settlement_carried")
    return record_payout(
        session,
        statement,
        action="mark_paid",
        via="bank",
        actor_id=actor_id,
        paid_at=paid_at,
        bank_reference=bank_reference.strip(),
    )
