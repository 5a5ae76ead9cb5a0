"""Demo statements: the earnings the demo posted (vouchers redeemed, goods received, the month of
history) settled into 结算单, so the merchant console and the operator admin show settlement
on first start.

Runs after the ledger step (``DEMO_ORDER`` 100 > the ledger's 99), through the settlement
service, per merchant:

* postings of ended periods (the demo history) are settled as the worker would; every statement
  but the latest period's is paid by bank transfer the day after its period (T+1; the payout is
  posted to the ledger with a bank reference), the latest period's is left 待打款 for the
  operator. Today's postings stay 未出账 until the worker settles them tomorrow.
* a merchant without history (only today's postings): all but its newest posting go into a first
  statement of today, paid; the newest into a supplementary one, 待打款 — so every merchant with
  earnings shows both states.

Idempotent: once any statement exists the step does nothing — a second ``o2o demo`` must not
settle what people did in the meantime.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from o2o.accounts import service as accounts
from o2o.config import get_settings
from o2o.demo import OPERATOR
from o2o.settlement import service
from o2o.settlement.models import READY, SettlementStatement
from o2o.timeutil import CHINA_TZ, utcnow

DEMO_ORDER = 100
# Paid the morning after the period ends (Beijing time).
PAID_AFTER = timedelta(hours=10)


def _pay(
    session: Session,
    statement: SettlementStatement,
    *,
    at: datetime,
    actor_id: int | None,
) -> None:
    if statement.status != READY or statement.payable_fen <= 0:
        return  # carried into a later statement: nothing to pay on its own
    day = at.astimezone(CHINA_TZ).strftime("%Y%m%d")
    service.mark_paid(
        session,
        statement.statement_no,
        bank_reference=f"CMB{day}{statement.merchant_id:06d}{statement.sequence:02d}",
        actor_id=actor_id,
        paid_at=at,
    )


def load_demo(session: Session) -> int:
    if session.scalar(select(exists().where(SettlementStatement.id.isnot(None)))):
        return 0
    now = utcnow()
    cycle = get_settings().settlement_cycle_days
    operator = accounts.find_by_phone(session, OPERATOR[0])
    actor_id = operator.id if operator else None
    ended = service.settled_before(now, cycle)
    horizon = now + timedelta(seconds=1)
    postings: dict[int, list[datetime]] = {}
    for _txn_id, merchant_id, posted_at in service.unsettled_postings(session, horizon):
        postings.setdefault(merchant_id, []).append(posted_at)
    made = 0
    for merchant_id in sorted(postings):
        history = service.settle_merchant(
            session, merchant_id, cutoff=ended, cycle_days=cycle, now=now
        )
        if history:
            latest = max(s.period_start for s in history)
            for statement in history:
                if statement.period_start < latest:
                    _pay(
                        session,
                        statement,
                        at=min(statement.period_end + PAID_AFTER, now),
                        actor_id=actor_id,
                    )
            made += len(history)
            continue
        # No history: today's postings, all but the newest paid, the newest waiting.
        newest = max(postings[merchant_id])
        first = service.settle_merchant(
            session, merchant_id, cutoff=newest, cycle_days=cycle, now=now
        )
        for statement in first:
            _pay(session, statement, at=now, actor_id=actor_id)
        rest = service.settle_merchant(
            session, merchant_id, cutoff=horizon, cycle_days=cycle, now=now
        )
        made += len(first) + len(rest)
    return made
