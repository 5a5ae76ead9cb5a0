"""结算 in the merchant console: the merchant's statements (period, gross, commission, refunds,
net, status, payout) with their lines, and its ledger balance. Owners and managers only, as
``GET /api/v1/merchants/{id}/settlements`` (a clerk gets 403); a statement of another merchant
is a 404."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from fastapi.responses import Response

from o2o.ledger import service as ledger
from o2o.merchants.access import MANAGERS
from o2o.settlement import service
from o2o.web.context import ConsolePageDep, PageContext, page_router
from o2o.web.forms import id_or_none
from o2o.web.nav import NavItem, add_nav
from o2o.web.settlement_view import STATUS_OPTIONS, detail_context, template_globals

router = page_router()

add_nav(
    NavItem("console", "结算", "/console/m/{merchant_id}/settlements", order=50, roles=MANAGERS)
)

PAGE_SIZE = 30
StatementNo = Annotated[str, Path(max_length=40, pattern=r"^[0-9A-Za-z-]+$")]
# Filters people can edit in the address bar: anything unknown is ignored, never a 500.
Loose = Annotated[str, Query(max_length=200)]


def _managers_only(page: PageContext) -> int:
    assert page.actor is not None and page.merchant is not None
    page.actor.require_staff(page.merchant.id, MANAGERS)
    return page.merchant.id


@router.get("/console/m/{merchant_id}/settlements", name="console_settlements")
def statements(page: ConsolePageDep, status: Loose = "", before: Loose = "") -> Response:
    merchant_id = _managers_only(page)
    status = status if status in dict(STATUS_OPTIONS) else ""
    with page.read() as session:
        rows = service.list_statements(
            session,
            merchant_id=merchant_id,
            status=status or None,
            limit=PAGE_SIZE,
            before_id=id_or_none(before),
        )
        balance = ledger.merchant_balance(session, merchant_id)
        unsettled = service.unsettled_payable(session, merchant_id)
    return page.render(
        "console/settlements.html",
        statements=rows,
        balance=balance,
        unsettled_fen=unsettled,
        status=status,
        statuses=STATUS_OPTIONS,
        next_before=rows[-1].id if len(rows) == PAGE_SIZE else None,
        **template_globals(),
    )


@router.get("/console/m/{merchant_id}/settlements/{statement_no}", name="console_settlement")
def statement(page: ConsolePageDep, statement_no: StatementNo) -> Response:
    merchant_id = _managers_only(page)
    with page.read() as session:
        found = service.get_statement(session, statement_no, merchant_id=merchant_id)
        context = detail_context(session, found)
    return page.render("console/settlement.html", **context, **template_globals())
