"""收银台: paying where the consumer is — JSAPI inside WeChat, H5 on a phone browser, a Native QR
code on a desktop — for one order or a combined (合单) checkout of several merchants. The rules
are ``o2o.payments.cashier`` and ``o2o.payments.service``; the page shows 支付成功 only after the
server has the payment ``succeeded`` (it polls ``/pay/{no}/status``)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import segno
from fastapi import Path, Query
from fastapi.responses import JSONResponse, RedirectResponse, Response
from markupsafe import Markup

from o2o.errors import AppError
from o2o.payments import cashier, registry
from o2o.payments import service as payments
from o2o.security import client_address
from o2o.web.context import PageContext, SignedInPageDep, page_router, wechat_authorize

router = page_router()

PaymentNoPath = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9]+$")]


def _qr(text: str) -> Markup:
    svg = segno.make(text, error="m", micro=False).svg_inline(scale=5, border=2)
    return Markup(svg)  # noqa: S704 (segno's own SVG of a provider URL; no user text)


def _render(page: PageContext, view: dict[str, object], **context: object) -> Response:
    # ``go``: another site to continue on (WeChat's H5 cashier or authorization). The page
    # navigates there itself: a redirect would end the checkout form's POST on another origin,
    # which the CSP's form-action 'self' (rightly) blocks.
    values: dict[str, object] = {
        "way": None,
        "returned": False,
        "qr": None,
        "jsapi": None,
        "go": None,
        "go_label": "",
    }
    return page.render("consumer/pay.html", view=view, **{**values, **context})


@router.get("/pay/{payment_no}", name="consumer_pay")
def pay_page(
    page: SignedInPageDep,
    payment_no: PaymentNoPath,
    back: Annotated[Literal["h5"] | None, Query()] = None,
) -> Response:
    """Start (or resume) paying. Coming back from WeChat's H5 cashier only polls."""
    assert page.actor is not None
    user_id = page.actor.user_id
    view = cashier.status(page.db, page.settings, user_id=user_id, payment_no=payment_no, ask=False)
    if not view["payable"] or back:
        return _render(page, view, way=None, returned=bool(back))
    provider = cashier.provider_for(page.settings)
    if provider is None:
        raise AppError("暂无可用的支付方式", status=503, code="provider_not_available")
    way = cashier.way_for(page.request.headers.get("user-agent"))
    method = way if provider == registry.WECHATPAY else None
    try:
        started = payments.start_payment(
            page.db,
            page.settings,
            user_id=user_id,
            payment_no=payment_no,
            provider_name=provider,
            method=method,
            client_ip=client_address(page.request),
        )
    except AppError as exc:
        if exc.code == "wechat_identity_required":
            # Signed in with a phone inside WeChat: WeChat's silent authorization binds the
            # openid to this account, then back here to pay.
            authorize = wechat_authorize(
                page.session, page.settings, f"/pay/{payment_no}", bind=True
            )
            if authorize:
                return _render(page, view, go=authorize, go_label="微信授权后支付")
        return page.redirect(view["next"], flash=exc.detail, kind="error")  # type: ignore[arg-type]
    if "cashier_url" in started:  # the sandbox (development and the demo)
        return RedirectResponse(started["cashier_url"], status_code=303)
    if "h5_url" in started:
        target = cashier.h5_return_url(page.settings, payment_no, started["h5_url"])
        return _render(page, view, go=target, go_label="前往微信支付")
    if "code_url" in started:
        return _render(page, view, way=cashier.NATIVE, qr=_qr(started["code_url"]))
    params = {k: started[k] for k in ("appId", "timeStamp", "nonceStr", "package", "signType")}
    params["paySign"] = started["paySign"]
    return _render(page, view, way=cashier.JSAPI, jsapi=json.dumps(params))


@router.get("/pay/{payment_no}/status", name="consumer_pay_status")
def pay_status(
    page: SignedInPageDep,
    payment_no: PaymentNoPath,
    ask: Annotated[bool, Query()] = False,
) -> Response:
    """What the cashier page polls (``ask=1`` once the consumer says it was paid)."""
    assert page.actor is not None
    view = cashier.status(
        page.db, page.settings, user_id=page.actor.user_id, payment_no=payment_no, ask=ask
    )
    return JSONResponse(
        {k: view[k] for k in ("payment_no", "status", "status_label", "paid", "next")},
        headers={"Cache-Control": "no-store"},
    )
