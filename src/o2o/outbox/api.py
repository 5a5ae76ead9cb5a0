"""The operator's view of the outbox: what is waiting, retrying or failed, and a resend."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from o2o import wiring
from o2o.deps import AdminDep, ReadSessionDep, SessionDep
from o2o.outbox import service
from o2o.outbox.schemas import OutboxDeliveryOut, OutboxPage, OutboxSummaryOut, WiringRowOut
from o2o.schemas import Id, PageLimit

admin_router = APIRouter(prefix="/api/v1/admin/outbox", tags=["admin", "events"])

Status = Literal["pending", "delivered", "failed"]
Cursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")]


@admin_router.get("", response_model=OutboxPage)
def deliveries(
    _admin: AdminDep,
    session: ReadSessionDep,
    status: Status | None = None,
    with_errors: bool = False,
    limit: PageLimit = 50,
    cursor: Cursor = None,
) -> OutboxPage:
    """After-commit deliveries of domain events, newest first, with the counts per status
    (``retrying``: pending after at least one failed attempt). ``with_errors``: only those
    that failed at least once."""
    rows = service.list_deliveries(
        session,
        status=status,
        with_errors=with_errors,
        limit=limit,
        before_id=int(cursor) if cursor else None,
    )
    return OutboxPage(
        items=[OutboxDeliveryOut.model_validate(row) for row in rows],
        next_cursor=str(rows[-1].id) if len(rows) == limit else None,
        summary=OutboxSummaryOut(**service.summary(session)),
    )


@admin_router.post("/{delivery_id}/retry", response_model=OutboxDeliveryOut)
def retry(delivery_id: Id, _admin: AdminDep, session: SessionDep) -> OutboxDeliveryOut:
    """Send a failed delivery again (same idempotency key; the worker delivers it)."""
    return OutboxDeliveryOut.model_validate(service.retry(session, delivery_id))


@admin_router.get("/wiring", response_model=list[WiringRowOut])
def wiring_table(_admin: AdminDep) -> list[WiringRowOut]:
    """Which handler reacts to which event, in the transaction or after it (o2o/wiring.py)."""
    return [WiringRowOut(event=e, when=w, handler=h) for e, w, h in wiring.table()]


routers = [admin_router]
