"""Routes for vouchers (consumer) and redemption (staff). Thin: the rules live in
``o2o.fulfilment.vouchers`` and ``o2o.fulfilment.redemption``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select

from o2o.deps import ActorDep, DbDep, IdempotencyKey, ReadSessionDep, SettingsDep
from o2o.fulfilment import redemption, vouchers
from o2o.fulfilment.schemas import (
    RedeemIn,
    RedemptionAttemptOut,
    RedemptionOut,
    UndoIn,
    UndoOut,
    VoucherOut,
    VoucherPreviewOut,
    VoucherRefundIn,
    VoucherRefundOut,
)
from o2o.orders import service as orders
from o2o.orders.models import Order
from o2o.schemas import Id, Page, PageLimit
from o2o.security import require_user_id

router = APIRouter(prefix="/api/v1", tags=["vouchers"])

UserIdDep = Annotated[int, Depends(require_user_id)]
OrderNo = Annotated[str, Path(min_length=1, max_length=32)]
CodePath = Annotated[str, Path(min_length=1, max_length=40)]
Cursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")]
AttemptAction = Annotated[str | None, Query(pattern=r"^(redeem|preview|undo)$")]
AttemptResult = Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$")]


# --- consumer ------------------------------------------------------------------------------


@router.get("/orders/{order_no}/vouchers", response_model=list[VoucherOut])
def order_vouchers(order_no: OrderNo, user_id: UserIdDep, session: ReadSessionDep) -> list:
    """The consumer's vouchers of one order (also embedded in ``GET /orders/{order_no}``)."""
    order = orders.get_own_order(session, user_id, order_no)
    return vouchers.order_vouchers_out(session, [order])[order.id]


@router.get(
    "/vouchers/{code}/qr.svg",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}},
)
def voucher_qr(code: CodePath, user_id: UserIdDep, session: ReadSessionDep) -> Response:
    """The voucher as a QR code, for its owner only (anyone else: 404)."""
    voucher = vouchers.get_own_voucher(session, user_id, code)
    return Response(
        vouchers.qr_svg(voucher.code),
        media_type="image/svg+xml",
        headers={"Cache-Control": "private, no-store"},
    )


@router.post("/vouchers/{code}/refund", status_code=201, response_model=VoucherRefundOut)
def refund_voucher(
    code: CodePath,
    body: VoucherRefundIn,
    user_id: UserIdDep,
    db: DbDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """随时退 of one voucher (same rule as ``POST /orders/{order_no}/refunds`` with
    ``voucher_codes``): unused, offer with refund_anytime → refunded at once."""
    with db.transaction(readonly=True) as session:
        voucher = vouchers.get_own_voucher(session, user_id, code)
        order_no = session.scalar(select(Order.order_no).where(Order.id == voucher.order_id))
    assert order_no is not None
    status, result = vouchers.consumer_refund(
        db,
        settings,
        user_id=user_id,
        order_no=order_no,
        codes=[voucher.code],
        reason=body.reason,
        idempotency_key=idempotency_key,
    )
    return JSONResponse(result, status_code=status)


# --- staff ---------------------------------------------------------------------------------


@router.get("/merchants/{merchant_id}/vouchers/{code}", response_model=VoucherPreviewOut)
def preview_voucher(
    merchant_id: Id, code: CodePath, actor: ActorDep, db: DbDep, settings: SettingsDep
) -> dict:
    """Before redeeming: what the code is for and whether it can be used. Another merchant's
    code is 404 exactly like an unknown one; unknown codes count towards the throttle."""
    return redemption.preview(
        db, actor, merchant_id, code, rules=vouchers.redemption_settings(settings)
    )


@router.post(
    "/merchants/{merchant_id}/redemptions",
    response_model=RedemptionOut,
    responses={
        403: {"description": "store_not_valid_for_voucher / store_not_allowed"},
        404: {"description": "voucher_not_found"},
        409: {"description": "voucher_already_redeemed (with when and where) / slot_not_now"},
        410: {"description": "voucher_refunded / voucher_expired"},
        429: {"description": "redemption_throttled"},
    },
)
def redeem(
    merchant_id: Id,
    body: RedeemIn,
    actor: ActorDep,
    db: DbDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """核销: clerk of that store, manager or owner. ``Idempotency-Key`` replays the answer."""
    result = redemption.redeem(
        db,
        actor,
        merchant_id,
        body.code,
        body.store_id,
        idempotency_key=idempotency_key,
        rules=vouchers.redemption_settings(settings),
    )
    return JSONResponse(result)


@router.post("/merchants/{merchant_id}/redemptions/{code}/undo", response_model=UndoOut)
def undo_redemption(
    merchant_id: Id,
    code: CodePath,
    body: UndoIn,
    actor: ActorDep,
    db: DbDep,
    settings: SettingsDep,
) -> dict:
    """A manager or owner takes back a redemption within the undo window, with a reason."""
    return redemption.undo(
        db, actor, merchant_id, code, body.reason, rules=vouchers.redemption_settings(settings)
    )


@router.get("/merchants/{merchant_id}/redemptions", response_model=Page[RedemptionAttemptOut])
def list_redemptions(
    merchant_id: Id,
    actor: ActorDep,
    session: ReadSessionDep,
    store_id: Id | None = None,
    action: AttemptAction = None,
    result: AttemptResult = None,
    limit: PageLimit = 20,
    cursor: Cursor = None,
) -> Page[RedemptionAttemptOut]:
    """核销记录: every attempt, newest first (``?action=redeem&result=ok`` for redemptions).
    Owners and managers see all; a clerk those at its stores."""
    items = redemption.list_attempts(
        session,
        actor,
        merchant_id,
        store_id=store_id,
        action=action,
        result=result,
        limit=limit,
        before_id=int(cursor) if cursor else None,
    )
    return Page[RedemptionAttemptOut](
        items=[RedemptionAttemptOut.model_validate(i) for i in items],
        next_cursor=str(items[-1]["id"]) if len(items) == limit else None,
    )


routers = [router]
