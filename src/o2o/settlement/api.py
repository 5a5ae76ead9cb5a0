from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o.deps import ActorDep, AdminDep, DbDep, ReadSessionDep, SessionDep, SettingsDep
from o2o.merchants.access import MANAGERS
from o2o.schemas import Id, Page, PageLimit
from o2o.settlement import reconciliation, service, sharing
from o2o.settlement.models import STATEMENT_STATUS, ProfitSharingOrder, SettlementStatement
from o2o.settlement.schemas import (
    MarkPaidIn,
    ProfitSharingOut,
    ReconciliationIn,
    ReconciliationOut,
    StatementDetailOut,
    StatementLineOut,
    StatementOut,
)

router = APIRouter(prefix="/api/v1", tags=["settlement"])
admin_router = APIRouter(prefix="/api/v1/admin", tags=["admin", "settlement"])

Status = Literal["ready", "sharing", "sharing_failed", "paid", "carried"]
Cursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")]
StatementNo = Annotated[str, Path(max_length=40, pattern=r"^[0-9A-Za-z-]+$")]


def _out(statement: SettlementStatement) -> StatementOut:
    return StatementOut.model_validate(
        {
            **{k: getattr(statement, k) for k in StatementOut.model_fields if k != "status_label"},
            "status_label": STATEMENT_STATUS.label(statement.status),
        }
    )


def _detail(session: Session, statement: SettlementStatement) -> StatementDetailOut:
    shares = session.scalars(
        select(ProfitSharingOrder)
        .where(ProfitSharingOrder.statement_id == statement.id)
        .order_by(ProfitSharingOrder.id)
    )
    return StatementDetailOut.model_validate(
        {
            **_out(statement).model_dump(),
            "lines": [
                StatementLineOut.model_validate(line)
                for line in service.lines_of(session, statement.id)
            ],
            "profit_sharing": [ProfitSharingOut.model_validate(s) for s in shares],
        }
    )


def _page(
    session: Session, merchant_id: int | None, status: str | None, limit: int, cursor: str | None
) -> Page[StatementOut]:
    items = service.list_statements(
        session,
        merchant_id=merchant_id,
        status=status,
        limit=limit,
        before_id=int(cursor) if cursor else None,
    )
    return Page[StatementOut](
        items=[_out(s) for s in items],
        next_cursor=str(items[-1].id) if len(items) == limit else None,
    )


@router.get("/merchants/{merchant_id}/settlements", response_model=Page[StatementOut])
def merchant_statements(
    merchant_id: Id,
    actor: ActorDep,
    session: ReadSessionDep,
    status: Status | None = None,
    limit: PageLimit = 50,
    cursor: Cursor = None,
) -> Page[StatementOut]:
    actor.require_staff(merchant_id, MANAGERS)
    return _page(session, merchant_id, status, limit, cursor)


@router.get(
    "/merchants/{merchant_id}/settlements/{statement_no}", response_model=StatementDetailOut
)
def merchant_statement(
    merchant_id: Id, statement_no: StatementNo, actor: ActorDep, session: ReadSessionDep
) -> StatementDetailOut:
    actor.require_staff(merchant_id, MANAGERS)
    return _detail(session, service.get_statement(session, statement_no, merchant_id=merchant_id))


@admin_router.get("/settlements", response_model=Page[StatementOut])
def admin_statements(
    _admin: AdminDep,
    session: ReadSessionDep,
    merchant_id: Id | None = None,
    status: Status | None = None,
    limit: PageLimit = 50,
    cursor: Cursor = None,
) -> Page[StatementOut]:
    return _page(session, merchant_id, status, limit, cursor)


@admin_router.get("/settlements/{statement_no}", response_model=StatementDetailOut)
def admin_statement(
    statement_no: StatementNo, _admin: AdminDep, session: ReadSessionDep
) -> StatementDetailOut:
    return _detail(session, service.get_statement(session, statement_no))


@admin_router.post("/settlements/{statement_no}/mark-paid", response_model=StatementOut)
def mark_paid(
    statement_no: StatementNo, body: MarkPaidIn, admin: AdminDep, session: SessionDep
) -> StatementOut:
    statement = service.mark_paid(
        session,
        statement_no,
        bank_reference=body.bank_reference,
        paid_at=body.paid_at,
        actor_id=admin.user_id,
    )
    return _out(statement)


@admin_router.post("/settlements/{statement_no}/profit-sharing", response_model=StatementDetailOut)
def profit_sharing(
    statement_no: StatementNo, admin: AdminDep, db: DbDep, settings: SettingsDep
) -> StatementDetailOut:
    """Start 分账 (or ask WeChat Pay again how it went): ``status`` says where it stands —
    ``sharing`` while WeChat Pay is still processing, ``paid`` once finished."""
    sharing.profit_share(db, settings, statement_no, actor_id=admin.user_id)
    with db.transaction(readonly=True) as session:
        return _detail(session, service.get_statement(session, statement_no))


@admin_router.post("/reconciliation", response_model=ReconciliationOut)
def reconcile(body: ReconciliationIn, admin: AdminDep, session: SessionDep) -> ReconciliationOut:
    """Import a WeChat Pay trade bill (the CSV text) and report what disagrees; the import and
    its findings are kept for audit."""
    report = reconciliation.reconcile(session, body.bill, bill_date=body.bill_date)
    reconciliation.store(session, report, body.bill, actor_id=admin.user_id)
    return ReconciliationOut.of(report)


routers = [router, admin_router]
