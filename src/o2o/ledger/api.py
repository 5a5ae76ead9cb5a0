from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from o2o.deps import ActorDep, AdminDep, ReadSessionDep
from o2o.ledger import service
from o2o.ledger.models import LedgerTransaction
from o2o.ledger.schemas import AccountOut, EntryOut, MerchantBalanceOut, TransactionOut
from o2o.merchants.access import MANAGERS
from o2o.schemas import Id, Page, PageLimit

router = APIRouter(prefix="/api/v1", tags=["ledger"])
admin_router = APIRouter(prefix="/api/v1/admin/ledger", tags=["admin", "ledger"])

Kind = Literal[
    "payment_received", "refund", "earned", "commission", "payout", "adjustment", "reversal"
]
Cursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")]
Ref = Annotated[str | None, Query(max_length=40, pattern=r"^[0-9A-Za-z_-]+$")]
Prefix = Annotated[str, Query(max_length=80, pattern=r"^[0-9a-z_:]*$")]


def _transaction_out(txn: LedgerTransaction) -> TransactionOut:
    return TransactionOut.model_validate(
        {
            **{k: getattr(txn, k) for k in TransactionOut.model_fields if k != "entries"},
            "entries": [
                EntryOut(account_code=code, amount_fen=amount)
                for code, amount in service.entries_of(txn)
            ],
        }
    )


@admin_router.get("/accounts", response_model=Page[AccountOut])
def accounts(
    _admin: AdminDep,
    session: ReadSessionDep,
    prefix: Prefix = "",
    limit: PageLimit = 100,
    cursor: Cursor = None,
) -> Page[AccountOut]:
    rows = service.list_accounts(
        session, prefix=prefix, limit=limit, after_id=int(cursor) if cursor else None
    )
    items = [
        AccountOut(
            code=account.code,
            type=account.type,
            label=service.account_kind(account.code).label,
            merchant_id=account.merchant_id,
            balance_fen=natural,
        )
        for account, natural in rows
    ]
    next_cursor = str(rows[-1][0].id) if len(rows) == limit else None
    return Page[AccountOut](items=items, next_cursor=next_cursor)


@admin_router.get("/transactions", response_model=Page[TransactionOut])
def transactions(
    _admin: AdminDep,
    session: ReadSessionDep,
    kind: Kind | None = None,
    order_no: Ref = None,
    payment_no: Ref = None,
    merchant_id: Id | None = None,
    limit: PageLimit = 50,
    cursor: Cursor = None,
) -> Page[TransactionOut]:
    items = service.list_transactions(
        session,
        kind=kind,
        order_no=order_no,
        payment_no=payment_no,
        merchant_id=merchant_id,
        limit=limit,
        before_id=int(cursor) if cursor else None,
    )
    return Page[TransactionOut](
        items=[_transaction_out(t) for t in items],
        next_cursor=str(items[-1].id) if len(items) == limit else None,
    )


@router.get("/merchants/{merchant_id}/ledger/balance", response_model=MerchantBalanceOut)
def merchant_balance(
    merchant_id: Id, actor: ActorDep, session: ReadSessionDep
) -> MerchantBalanceOut:
    actor.require_staff(merchant_id, MANAGERS)
    return MerchantBalanceOut.model_validate(service.merchant_balance(session, merchant_id))


routers = [router, admin_router]
