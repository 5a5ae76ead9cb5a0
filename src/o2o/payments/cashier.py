"""The cashier page's rules (收银台): which way a consumer pays where they are, and the state the
page polls until the provider has confirmed.

* Inside WeChat (``MicroMessenger``): JSAPI through ``WeixinJSBridge`` with the consumer's own
  openid (``service.start_payment`` takes it from their WeChat identity).
* A phone browser elsewhere: H5 (WeChat's cashier page, then back to ours).
* A desktop browser: Native, a QR code to scan with WeChat.

The page shows 支付成功 only when *our* payment is ``succeeded`` — the notification arrived or an
active query found it paid — never because the browser (or the JS bridge) said so.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from o2o.config import Settings
from o2o.db import Database
from o2o.payments import registry, service
from o2o.payments.models import PAYABLE, PAYMENT_STATUS, SUCCEEDED
from o2o.wechat.service import is_wechat_browser

JSAPI, H5, NATIVE = "jsapi", "h5", "native"
_PHONE = re.compile(r"Mobile|Android|iPhone|iPad|iPod|HarmonyOS", re.IGNORECASE)
# The page has told us the consumer paid (the bridge said ok, or they came back from H5): ask the
# provider at once, then at most this often, instead of waiting a minute like other readers.
PAYER_QUERY_EVERY = timedelta(seconds=2)


def way_for(user_agent: str | None) -> str:
    """JSAPI inside WeChat, H5 on a phone browser, Native (QR) on a desktop."""
    if is_wechat_browser(user_agent):
        return JSAPI
    return H5 if _PHONE.search(user_agent or "") else NATIVE


def provider_for(settings: Settings) -> str | None:
    """WeChat Pay when it is configured; else the sandbox where it is on; else None."""
    for name in (registry.WECHATPAY, registry.SANDBOX):
        if registry.find_provider(name, settings) is not None:
            return name
    return None


def h5_return_url(settings: Settings, payment_no: str, h5_url: str) -> str:
    """WeChat's H5 cashier, coming back to our cashier page (which then polls)."""
    back = settings.public_base_url.rstrip("/") + f"/pay/{payment_no}?back=h5"
    return f"{h5_url}&redirect_url={quote(back, safe='')}"


def status(
    db: Database, settings: Settings, *, user_id: int, payment_no: str, ask: bool
) -> dict[str, Any]:
    """The payer's view of their payment; ``ask``: the page believes it was paid, so a pending
    payment asks its provider now (the notification may be slow or lost)."""
    with db.transaction(readonly=True) as session:
        payment = service.get_own_payment(session, user_id, payment_no)
    if ask:
        service.refresh_payment(db, settings, payment, after=timedelta(0), every=PAYER_QUERY_EVERY)
    with db.transaction(readonly=True) as session:
        payment = service.get_own_payment(session, user_id, payment_no)
        order_nos = service.order_nos(session, payment.id)
    return {
        "payment_no": payment.payment_no,
        "status": payment.status,
        "status_label": PAYMENT_STATUS.label(payment.status),
        "paid": payment.status == SUCCEEDED,
        "payable": payment.status in PAYABLE,
        "amount_fen": payment.amount_fen,
        "order_nos": order_nos,
        "next": f"/orders/{order_nos[0]}" if len(order_nos) == 1 else "/orders",
    }
