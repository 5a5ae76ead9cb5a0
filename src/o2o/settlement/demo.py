"""Demo statements: the earnings the demo posted (vouchers redeemed, goods received) settled into
结算单, so the merchant console and the operator admin show settlement on first start.

Runs after the ledger step (``DEMO_ORDER`` 100 > the ledger's 99), through the settlement
service. For each merchant with earnings, all but the newest posting go into a first statement,
marked paid by bank transfer (the payout is posted to the ledger), and the newest into a
supplementary statement of the same period, left 待打款 for the operator to pay. The demo's
postings are from today, so the period is today's (the worker would only settle it tomorrow;
its later postings go into the next supplementary statement).

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
from o2o.settlement.models import SettlementStatement
from o2o.timeutil import CHINA_TZ, utcnow

DEMO_ORDER = 100


def load_demo(session: Session) -> int:
    if session.scalar(select(exists().where(SettlementStatement.id.isnot(None)))):
        return 0
    now = utcnow()
    cycle = get_settings().settlement_cycle_days
    operator = accounts.find_by_phone(session, OPERATOR[0])
    horizon = now + timedelta(seconds=1)
    postings: dict[int, list[datetime]] = {}
    for _txn_id, merchant_id, posted_at in service.unsettled_postings(session, horizon):
        postings.setdefault(merchant_id, []).append(posted_at)
    made = 0
    for merchant_id in sorted(postings):
        newest = max(postings[merchant_id])
        # Everything before the newest posting: a first statement, paid by bank transfer.
        first = service.settle_merchant(
            session, merchant_id, cutoff=newest, cycle_days=cycle, now=now
        )
        for statement in first:
            if statement.payable_fen > 0:
                day = now.astimezone(CHINA_TZ).strftime("%Y%m%d")
                service.mark_paid(
                    session,
                    statement.statement_no,
                    bank_reference=f"CMB{day}{merchant_id:06d}{statement.sequence:02d}",
                    actor_id=operator.id if operator else None,
                    paid_at=now,
                )
        # The newest: waiting for the operator (待打款).
        rest = service.settle_merchant(
            session, merchant_id, cutoff=horizon, cycle_days=cycle, now=now
        )
        made += len(first) + len(rest)
    return made
