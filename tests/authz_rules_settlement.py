"""Authorization rules for settlement, payout and reconciliation routes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from o2o.config import Settings
from o2o.ledger import service as ledger
from o2o.settlement import service
from o2o.settlement.models import SHARE_SKIPPED, SHARING, ProfitSharingOrder, SettlementStatement
from o2o.timeutil import utcnow

BILL = (
    "交易时间,公众账号ID,商户号,特约商户号,微信订单号,商户订单号,交易状态,订单金额,退款金额\r\n"
    "总交易单数,应结订单总金额,退款总金额\r\n"
    "`0,`0.00,`0.00\r\n"
)


def statement_of_a(w: Any) -> str:
    """A ready statement of merchant A (one earned line of yesterday's period)."""
    with w.db.transaction() as session:
        ledger.post_payment_received(
            session, payment_no="PAUTHZ", provider="sandbox", amount_fen=1000
        )
        ledger.post_earned(
            session,
            key="earned:authz",
            payment_no="PAUTHZ",
            merchant_id=w.a.id,
            gross_fen=1000,
            commission_bp=600,
        )
    settings = Settings(database_url=str(w.db.engine.url), demo=False, sandbox_payments=True)
    service.generate_statements(w.db, settings, now=utcnow() + timedelta(days=2))
    with w.db.transaction(readonly=True) as session:
        no = session.scalars(select(SettlementStatement.statement_no)).first()
    assert no
    return no


def sharing_statement_of_a(w: Any) -> str:
    """A statement whose 分账 has nothing left to ask WeChat Pay: the POST settles it."""
    no = statement_of_a(w)
    with w.db.transaction() as session:
        statement = service.get_statement(session, no)
        statement.status = SHARING
        session.add(
            ProfitSharingOrder(
                statement_id=statement.id,
                out_order_no=f"{no}-1",
                payment_no="PAUTHZ",
                order_no="OAUTHZ",
                sub_mchid="1900000201",
                state=SHARE_SKIPPED,
            )
        )
    return no


def rules(Rule, EVERYONE, SIGNED_IN, A_MANAGERS, OPERATOR, a_params) -> dict:
    return {
        ("GET", "/api/v1/merchants/{merchant_id}/settlements"): Rule(
            A_MANAGERS, a_params, query="?status=ready"
        ),
        ("GET", "/api/v1/merchants/{merchant_id}/settlements/{statement_no}"): Rule(
            A_MANAGERS, lambda w: {**a_params(w), "statement_no": statement_of_a(w)}
        ),
        ("GET", "/api/v1/admin/settlements"): Rule(OPERATOR, query="?status=ready"),
        ("GET", "/api/v1/admin/settlements/{statement_no}"): Rule(
            OPERATOR, lambda w: {"statement_no": statement_of_a(w)}
        ),
        ("POST", "/api/v1/admin/settlements/{statement_no}/mark-paid"): Rule(
            OPERATOR,
            lambda w: {"statement_no": statement_of_a(w)},
            body=lambda w: {"bank_reference": "BANK-1"},
        ),
        ("POST", "/api/v1/admin/settlements/{statement_no}/profit-sharing"): Rule(
            OPERATOR, lambda w: {"statement_no": sharing_statement_of_a(w)}
        ),
        ("POST", "/api/v1/admin/reconciliation"): Rule(
            OPERATOR, body=lambda w: {"bill": BILL, "bill_date": "2025-03-10"}
        ),
    }
