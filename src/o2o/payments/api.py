"""Routes for payments, provider notifications, the sandbox cashier and the refund console."""

from __future__ import annotations

import json
from html import escape
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from o2o.deps import AdminDep, DbDep, OptionalActorDep, ReadSessionDep, SessionDep, SettingsDep
from o2o.errors import AppError, Forbidden, ValidationFailed
from o2o.merchants.access import Actor
from o2o.money import format_yuan
from o2o.orders.models import Order
from o2o.payments import abnormal, registry, service
from o2o.payments.models import PAYMENT_STATUS, REFUND_STATUS, Payment, Refund
from o2o.payments.schemas import (
    AbnormalRefundIn,
    PayIn,
    PaymentOut,
    ProviderName,
    RefundAdminOut,
    RefundStatus,
    SandboxResultIn,
    SandboxResultOut,
)
from o2o.schemas import Page, PageLimit
from o2o.security import client_address, require_user_id
from o2o.timeutil import format_china
from o2o.web.context import page_context
from o2o.web.csrf import verify_csrf
from o2o.web.session import page_session

router = APIRouter(prefix="/api/v1", tags=["payments"])
admin_router = APIRouter(prefix="/api/v1/admin", tags=["admin"])
sandbox_router = APIRouter(prefix="/sandbox", tags=["sandbox"])

UserIdDep = Annotated[int, Depends(require_user_id)]
PaymentNo = Annotated[str, Path(min_length=1, max_length=32)]


def _payment_out(payment: Payment, order_nos: list[str]) -> PaymentOut:
    return PaymentOut(
        payment_no=payment.payment_no,
        amount_fen=payment.amount_fen,
        currency=payment.currency,
        status=payment.status,
        status_label=PAYMENT_STATUS.label(payment.status),
        provider=payment.provider,
        method=payment.method,
        expires_at=payment.expires_at,
        paid_at=payment.paid_at,
        closed_at=payment.closed_at,
        resolution=payment.resolution,
        order_nos=order_nos,
    )


@router.post("/payments/{payment_no}/pay")
def pay(
    payment_no: PaymentNo,
    body: PayIn,
    request: Request,
    user_id: UserIdDep,
    db: DbDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    """Start paying: sandbox → ``{cashier_url}``; WeChat Pay JSAPI → the ``wx.requestPayment``
    parameters for the caller's own WeChat identity (409 ``wechat_identity_required`` without
    one); H5 → ``{h5_url}``; Native → ``{code_url}``. Safe to repeat (providers dedupe on
    payment_no)."""
    return service.start_payment(
        db,
        settings,
        user_id=user_id,
        payment_no=payment_no,
        provider_name=body.provider,
        method=body.method,
        client_ip=client_address(request),
    )


@router.get("/payments/{payment_no}", response_model=PaymentOut)
def get_payment(
    payment_no: PaymentNo, user_id: UserIdDep, db: DbDep, settings: SettingsDep
) -> PaymentOut:
    """The payment's state; a payment still pending a minute after it started asks its provider."""
    with db.transaction(readonly=True) as session:
        payment = service.get_own_payment(session, user_id, payment_no)
    service.refresh_payment(db, settings, payment)
    with db.transaction(readonly=True) as session:
        payment = service.get_own_payment(session, user_id, payment_no)
        return _payment_out(payment, service.order_nos(session, payment.id))


@router.post(
    "/payments/notify/{provider}",
    responses={200: {"description": "in the provider's own answer format"}},
)
async def notify(provider: ProviderName, request: Request, db: DbDep, settings: SettingsDep) -> Any:
    """Where providers post payment and refund notifications (no login: signatures decide)."""
    body = await request.body()
    if len(body) > service.MAX_NOTIFICATION_BYTES:
        raise AppError("通知内容过大", status=413, code="payload_too_large")
    headers = dict(request.headers.items())
    answer = await run_in_threadpool(
        service.handle_notification, db, settings, provider, headers, body
    )
    return Response(answer.body, status_code=answer.status_code, media_type=answer.media_type)


# --- the sandbox cashier (沙箱收银台) ------------------------------------------------------------

_CASHIER_HTML = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>沙箱收银台</title>
<style>
body{{font-family:-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;background:#f5f5f5;
margin:0;padding:24px;color:#222}}
.card{{max-width:420px;margin:0 auto;background:#fff;border-radius:12px;padding:24px;
box-shadow:0 2px 8px rgba(0,0,0,.06)}}
h1{{font-size:18px;margin:0 0 4px}} .hint{{color:#888;font-size:13px}}
.amount{{font-size:40px;font-weight:600;margin:24px 0 8px;text-align:center}}
.desc{{text-align:center;color:#555}} .status{{text-align:center;margin:16px 0;font-size:15px}}
button{{display:block;width:100%;padding:14px;margin-top:12px;border:0;border-radius:8px;
font-size:16px;cursor:pointer}}
.ok{{background:#07c160;color:#fff}} .fail{{background:#eee;color:#c00}}
a.back{{display:block;text-align:center;margin-top:16px;padding:12px;border-radius:8px;
color:#07c160;text-decoration:none;border:1px solid #07c160}}
</style></head><body><div class="card">
<h1>沙箱收银台</h1>
<div class="hint">测试用支付，不会产生真实扣款</div>
<div class="amount">{amount}</div>
<div class="desc">{description}</div>
<div class="hint" style="text-align:center">支付单号 {payment_no}　请在 {expires} 前完成支付</div>
<div class="status">当前状态：<b>{status}</b></div>
{buttons}
{back}
</div></body></html>
"""

_BUTTONS = """<form method="post"><input type="hidden" name="result" value="success">
<input type="hidden" name="csrf_token" value="{csrf}">
<button class="ok" type="submit">支付成功</button></form>
<form method="post"><input type="hidden" name="result" value="fail">
<input type="hidden" name="csrf_token" value="{csrf}">
<button class="fail" type="submit">支付失败</button></form>"""


def _sandbox_payer(request: Request, api_actor: Actor | None) -> tuple[int, bool]:
    """The sandbox cashier serves the payer only: (user id, came with a bearer token). Pages
    use the page session (its POSTs then need the CSRF token); API clients their token."""
    if api_actor is not None:
        return api_actor.user_id, True
    page = page_context(request)
    if page.actor is None:
        raise Forbidden("请先登录付款人的账号", code="payer_session_required")
    return page.actor.user_id, False


@sandbox_router.get("/cashier/{payment_no}", response_class=HTMLResponse)
def sandbox_cashier(
    payment_no: PaymentNo,
    request: Request,
    api_actor: OptionalActorDep,
    session: ReadSessionDep,
    settings: SettingsDep,
) -> HTMLResponse:
    """The sandbox's cashier page: what a consumer sees instead of WeChat Pay (the payer's
    own payment only)."""
    registry.get_provider(registry.SANDBOX, settings)  # 404 where the sandbox is turned off
    user_id, _ = _sandbox_payer(request, api_actor)
    view = service.sandbox_cashier_view(session, payment_no, user_id=user_id)
    payable = view["provider"] == registry.SANDBOX and view["status"] in ("pending", "failed")
    buttons = _BUTTONS.format(csrf=escape(page_session(request).csrf_token())) if payable else ""
    page = _CASHIER_HTML.format(
        amount=escape(format_yuan(view["amount_fen"])),
        description=escape(view["description"]),
        payment_no=escape(view["payment_no"]),
        expires=escape(format_china(view["expires_at"])),
        status=escape(view["status_label"]),
        buttons=buttons,
        back=_back_link(view["orders"]),
    )
    return HTMLResponse(page)


def _back_link(order_nos: list[str]) -> str:
    """Back to the consumer's order page (one order) or order list (a checkout of several)."""
    href = f"/orders/{quote(order_nos[0], safe='')}" if len(order_nos) == 1 else "/orders"
    return f'<a class="back" href="{escape(href)}">返回订单</a>'


@sandbox_router.post(
    "/cashier/{payment_no}",
    response_model=SandboxResultOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": SandboxResultIn.model_json_schema()},
                "application/x-www-form-urlencoded": {
                    "schema": SandboxResultIn.model_json_schema()
                },
            },
        }
    },
)
async def sandbox_cashier_result(
    payment_no: PaymentNo,
    request: Request,
    api_actor: OptionalActorDep,
    db: DbDep,
    settings: SettingsDep,
) -> Any:
    """支付成功 / 支付失败: a signed notification through the same path as real providers.
    Only the payer: their bearer token, or their page session with its CSRF token.
    JSON in → JSON out; the page's form → back to the page."""
    registry.get_provider(registry.SANDBOX, settings)
    user_id, by_token = await run_in_threadpool(_sandbox_payer, request, api_actor)
    if not by_token:
        await verify_csrf(request)
    is_form = request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    )
    try:
        raw: Any = dict(await request.form()) if is_form else json.loads(await request.body())
        data = SandboxResultIn.model_validate(raw)
    except (ValueError, ValidationError) as exc:
        raise ValidationFailed("result 必须是 success 或 fail", field="result") from exc
    status = await run_in_threadpool(
        service.sandbox_result, db, settings, payment_no, data.result == "success", user_id
    )
    if is_form:
        return RedirectResponse(f"/sandbox/cashier/{payment_no}", status_code=303)
    return JSONResponse({"payment_no": payment_no, "status": status})


# --- the operator's refund console -------------------------------------------------------------


def _refund_rows(session: Any, refunds: list[Refund]) -> list[RefundAdminOut]:
    order_nos = dict(
        session.execute(
            select(Order.id, Order.order_no).where(Order.id.in_({r.order_id for r in refunds}))
        ).all()
    )
    payment_nos = dict(
        session.execute(
            select(Payment.id, Payment.payment_no).where(
                Payment.id.in_({r.payment_id for r in refunds})
            )
        ).all()
    )
    return [
        RefundAdminOut(
            refund_no=r.refund_no,
            order_no=order_nos[r.order_id],
            payment_no=payment_nos[r.payment_id],
            provider=r.provider,
            amount_fen=r.amount_fen,
            status=r.status,
            status_label=REFUND_STATUS.label(r.status),
            reason=r.reason,
            initiator=r.initiator,
            attempts=r.attempts,
            last_error=r.last_error,
            provider_refund_id=r.provider_refund_id,
            created_at=r.created_at,
            accepted_at=r.accepted_at,
            succeeded_at=r.succeeded_at,
            failed_at=r.failed_at,
            next_attempt_at=r.next_attempt_at,
            stuck=service.is_stuck(r),
            abnormal_at=r.abnormal_at,
            abnormal_handling=r.abnormal_handling,
            abnormal_handled_at=r.abnormal_handled_at,
        )
        for r in refunds
    ]


@admin_router.get("/refunds", response_model=Page[RefundAdminOut])
def list_refunds(
    _admin: AdminDep,
    session: ReadSessionDep,
    status: RefundStatus | None = None,
    limit: PageLimit = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
) -> Page[RefundAdminOut]:
    """Refunds for the operator: ``?status=processing`` shows the ones still on their way
    (``stuck`` when open for more than an hour), ``?status=failed`` and ``?status=abnormal``
    (退款异常: the money left, the payer's account refused it) the ones to act on."""
    found = list(
        service.list_refunds(
            session, status=status, limit=limit, before_id=int(cursor) if cursor else None
        )
    )
    return Page[RefundAdminOut](
        items=_refund_rows(session, found),
        next_cursor=str(found[-1].id) if len(found) == limit else None,
    )


@admin_router.post("/refunds/{refund_no}/retry", response_model=RefundAdminOut)
def retry_refund(
    refund_no: Annotated[str, Path(min_length=1, max_length=32)],
    _admin: AdminDep,
    session: SessionDep,
) -> RefundAdminOut:
    """Send a failed refund again with the same refund number (the worker picks it up)."""
    refund = service.retry_refund(session, refund_no)
    return _refund_rows(session, [refund])[0]


@admin_router.post("/refunds/{refund_no}/abnormal-refund", response_model=RefundAdminOut)
def abnormal_refund(
    refund_no: Annotated[str, Path(min_length=1, max_length=32)],
    body: AbnormalRefundIn,
    admin: AdminDep,
    db: DbDep,
    settings: SettingsDep,
) -> RefundAdminOut:
    """异常退款 for an ``abnormal`` refund: to the payer's bank card (``USER_BANK_CARD`` with
    ``bank_type``, ``bank_account``, ``real_name`` — sent encrypted, not stored) or back to the
    merchant's bank account (``MERCHANT_BANK_CARD``). The refund is ``processing`` again."""
    abnormal.apply_abnormal_refund(db, settings, refund_no, body, actor_id=admin.user_id)
    with db.transaction(readonly=True) as session:
        refund = session.scalar(select(Refund).where(Refund.refund_no == refund_no))
        assert refund is not None
        return _refund_rows(session, [refund])[0]


routers = [router, admin_router, sandbox_router]
