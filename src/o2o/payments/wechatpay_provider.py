"""The ``wechatpay`` payment provider: WeChat Pay API v3 behind the ``PaymentProvider`` interface.

It plugs the adapter (wechatpay.py) into the payment core: ``PaymentRequest`` / ``RefundRequest``
in, ``PaymentEvent`` / ``RefundEvent`` out. It never touches the database.

Configuration: ``O2O_WECHATPAY_*``, read by ``WeChatPaySettings`` (wechatpay_settings.py, whose
docstring explains every variable).

Errors: our own mistakes (a partner-mode order without ``sub_mchid``, an ``expires_at`` beyond the
2-hour validity of a prepay id, a JSAPI payment without the payer's openid) raise ``ValueError``
before anything is sent. No answer, a 5xx, 429 or one of WeChat Pay's "try again" codes — or an
answer whose signature does not verify — is ``ProviderUnavailable``: repeat the call with the same
number, WeChat Pay dedupes on it. Any other refusal is ``ProviderRefused(code, message)``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from o2o.payments.providers import (
    EVENT_CLOSED,
    EVENT_FAILED,
    EVENT_PENDING,
    EVENT_SUCCEEDED,
    REFUND_ABNORMAL,
    REFUND_FAILED,
    REFUND_PROCESSING,
    REFUND_SUCCEEDED,
    SHARING_RETURNED,
    SHARING_SUCCEEDED,
    NotificationAnswer,
    NotificationRejected,
    PaymentEvent,
    PaymentRequest,
    ProfitSharingEvent,
    ProviderRefused,
    ProviderUnavailable,
    RefundEvent,
    RefundRequest,
)
from o2o.payments.wechatpay import (
    CombineSubOrder,
    WeChatPayClient,
    WeChatPayError,
    WeChatPayNetworkError,
    WeChatPayVerificationError,
    notification_failure,
)
from o2o.payments.wechatpay_settings import NOTIFY_PATH, WeChatPaySettings
from o2o.timeutil import as_utc
from o2o.wechat.config import wechat_settings

if TYPE_CHECKING:
    from o2o.config import Settings

__all__ = [
    "NOTIFY_PATH",
    "PREPAY_VALIDITY",
    "WeChatPayProvider",
    "WeChatPaySettings",
    "build_provider",
    "payment_status",
    "refund_status",
]

log = logging.getLogger(__name__)

PROVIDER_NAME = "wechatpay"
# A prepay id lives 2 hours: a payment window beyond that could not be paid at its end.
PREPAY_VALIDITY = timedelta(hours=2)
# WeChat Pay's description is string(127); stay inside it whatever it counts.
DESCRIPTION_MAX_BYTES = 127

# trade_state → our payment event status. REFUND means "paid, then a refund was asked for".
TRADE_STATES: dict[str, str] = {
    "SUCCESS": EVENT_SUCCEEDED,
    "REFUND": EVENT_SUCCEEDED,
    "NOTPAY": EVENT_PENDING,
    "USERPAYING": EVENT_PENDING,
    "ACCEPT": EVENT_PENDING,
    "CLOSED": EVENT_CLOSED,
    "REVOKED": EVENT_CLOSED,
    "PAYERROR": EVENT_FAILED,
}
PAID_STATES = frozenset({"SUCCESS", "REFUND"})
# Refund status → ours. CLOSED: the refund did not happen (failed, the amount is free again).
# ABNORMAL: the money has left the merchant account but the payer's account (a cancelled or
# frozen card) could not take it — not a failure: it stays reserved and the operator has it
# sent to a bank card (异常退款, ``apply_abnormal_refund``).
REFUND_STATES: dict[str, str] = {
    "PROCESSING": REFUND_PROCESSING,
    "SUCCESS": REFUND_SUCCEEDED,
    "ABNORMAL": REFUND_ABNORMAL,
    "CLOSED": REFUND_FAILED,
}
# Why a refund did not arrive, for the operator (the core shows ``raw["reason"]``).
REFUND_FAILURE_REASONS = {
    "ABNORMAL": "退款异常：原路退回失败（用户银行卡作废或冻结），款项已从商户账户扣出，需发起异常退款",
    "CLOSED": "退款关闭",
}
# 分账动账 notification types → our sharing event status.
SHARING_EVENTS = {
    "PROFITSHARING.SUCCESS": SHARING_SUCCEEDED,
    "PROFITSHARING.RETURN": SHARING_RETURNED,
}
ABNORMAL_REFUND_TYPES = ("USER_BANK_CARD", "MERCHANT_BANK_CARD")
NOT_FOUND_CODES = frozenset({"ORDER_NOT_EXIST", "RESOURCE_NOT_EXISTS", "ORDERNOTEXIST"})
# "The balance cannot cover this refund yet": the refund succeeds once the account is topped up.
REFUND_RETRY_CODES = frozenset({"NOT_ENOUGH"})


def payment_status(trade_state: str) -> str:
    """Our event status for a WeChat Pay ``trade_state`` (unknown states are pending)."""
    return TRADE_STATES.get(trade_state, EVENT_PENDING)


def refund_status(status: str) -> str:
    """Our refund status for a WeChat Pay refund ``status`` / ``refund_status``."""
    return REFUND_STATES.get(status, REFUND_PROCESSING)


# --------------------------------------------------------------------------- helpers


@contextmanager
def _translated(*, retry_codes: frozenset[str] = frozenset()) -> Iterator[None]:
    """Adapter exceptions → the provider interface's."""
    try:
        yield
    except WeChatPayNetworkError as exc:
        raise ProviderUnavailable(str(exc)) from exc
    except WeChatPayVerificationError as exc:
        # An answer we cannot trust tells us nothing: the outcome is unknown, ask again.
        raise ProviderUnavailable(f"unverifiable WeChat Pay answer: {exc}") from exc
    except WeChatPayError as exc:
        if exc.retryable or exc.code in retry_codes:
            raise ProviderUnavailable(str(exc)) from exc
        raise ProviderRefused(exc.code, exc.message) from exc


def _description(text: str) -> str:
    text = " ".join(text.split()) or "订单"
    raw = text.encode("utf-8")
    if len(raw) <= DESCRIPTION_MAX_BYTES:
        return text
    return raw[:DESCRIPTION_MAX_BYTES].decode("utf-8", errors="ignore")


def _ip_or_none(value: str | None) -> str | None:
    """WeChat Pay refuses a payer_client_ip that is not an IP (e.g. a test client's name)."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return as_utc(datetime.fromisoformat(str(value)))
    except ValueError:
        return None


def _audit(envelope: dict[str, Any], decoded: Mapping[str, Any]) -> dict[str, Any]:
    """A notification's raw: the envelope with its decrypted resource (and our reason)."""
    if "reason" in decoded:
        return {**envelope, "reason": decoded["reason"]}
    return envelope


def _int(value: Any) -> int:
    # WeChat Pay's amounts are JSON integers in fen; anything else counts as nothing paid.
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# --------------------------------------------------------------------------- the provider


class WeChatPayProvider:
    """WeChat Pay v3, direct or partner mode. Thread-safe; build one per process.

    Numbers: a plain order's ``out_trade_no`` is the ``payment_no``; a combined payment's
    ``combine_out_trade_no`` is the ``payment_no`` and each sub-order's ``out_trade_no`` its
    ``order_no``. Refunds use ``refund_no`` as ``out_refund_no``.
    """

    name = PROVIDER_NAME

    def __init__(
        self,
        settings: WeChatPaySettings,
        *,
        http_client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
        sub_appid: str = "",
    ) -> None:
        self.settings = settings
        self.config = settings.to_config()
        self.partner = settings.partner
        self._clock = clock
        self.client = WeChatPayClient(self.config, http_client=http_client, clock=clock)
        # Partner mode: the app id bound to the sub-merchants whose openids pay as sub_openid.
        self.sub_appid = sub_appid.strip()

    def close_client(self) -> None:
        """Release the HTTP connection pool."""
        self.client.close()

    # ------------------------------------------------------------------ shapes

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _sub_mchids(self, payment: PaymentRequest) -> list[str]:
        missing = [s.order_no for s in payment.sub_orders if not s.sub_mchid]
        if missing:
            raise ValueError(
                "WeChat Pay partner mode: every merchant needs a sub_mchid; "
                f"missing for order(s) {', '.join(missing)}"
            )
        return [s.sub_mchid or "" for s in payment.sub_orders]

    def _is_combine(self, payment: PaymentRequest) -> bool:
        # Direct mode has no sub-merchants to pay: one plain order for the total.
        return self.partner and payment.is_combined

    def _single_sub_mchid(self, payment: PaymentRequest) -> str | None:
        return self._sub_mchids(payment)[0] if self.partner else None

    def _combine_subs(self, payment: PaymentRequest) -> list[CombineSubOrder]:
        self._sub_mchids(payment)
        return [
            CombineSubOrder(
                out_trade_no=s.order_no,
                amount_fen=s.amount_fen,
                description=_description(s.description),
                attach=payment.payment_no,  # echoed back: which payment this sub-order is in
                sub_mchid=s.sub_mchid,
                # Partner mode settles through profit sharing (分账): WeChat Pay only splits
                # an order that was placed with settle_info.profit_sharing = true.
                profit_sharing=self.partner,
            )
            for s in payment.sub_orders
        ]

    def _check_payment(self, payment: PaymentRequest) -> datetime:
        if payment.currency != "CNY":
            raise ValueError("WeChat Pay takes CNY only")
        if not payment.sub_orders:
            raise ValueError("a payment needs at least one order")
        total = sum(s.amount_fen for s in payment.sub_orders)
        if total != payment.amount_fen:
            raise ValueError(
                f"orders add up to {total} fen but the payment is {payment.amount_fen} fen"
            )
        if payment.expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        if payment.expires_at - self._now() > PREPAY_VALIDITY:
            raise ValueError(
                "expires_at is more than 2 hours ahead: a WeChat Pay prepay id would expire "
                "before the payment window ends"
            )
        return payment.expires_at

    # ------------------------------------------------------------------ prepare

    def payer_appids(self) -> list[str]:
        """The app ids whose openids can pay JSAPI here: the merchant's (sp_appid in partner
        mode) and, in partner mode, the sub-merchants' bound app id (``O2O_WECHAT_SUB_APPID``)."""
        found = [self.config.appid]
        if self.partner and self.sub_appid and self.sub_appid != self.config.appid:
            found.append(self.sub_appid)
        return found

    def prepare(
        self,
        payment: PaymentRequest,
        *,
        method: str = "jsapi",
        payer_openid: str | None = None,
        payer_appid: str | None = None,
        client_ip: str | None = None,
    ) -> dict[str, Any]:
        """JSAPI: the ``wx.requestPayment`` / ``WeixinJSBridge`` parameters
        (``appId, timeStamp, nonceStr, package, signType, paySign``); Native: ``{code_url}``;
        H5: ``{h5_url}``.

        ``payer_appid`` is the app the openid belongs to (default: the merchant's app id); in
        partner mode another app id is the sub-merchants' ``sub_appid`` (``sub_openid``).
        Repeating it for the same payment (same method) gives the same prepay id / URL.
        """
        if method not in {"jsapi", "native", "h5"}:
            raise ValueError(f"unsupported WeChat Pay method {method!r} (jsapi, native or h5)")
        if method == "jsapi" and not payer_openid:
            raise ValueError("JSAPI payment needs the payer's openid")
        app = payer_appid or self.config.appid
        if method == "jsapi" and app not in self.payer_appids():
            raise ValueError(f"the payer's openid belongs to {app}, which cannot pay here")
        sub_appid = app if app != self.config.appid else None
        time_expire = self._check_payment(payment)
        client_ip = _ip_or_none(client_ip)
        if method == "h5" and not client_ip:
            raise ValueError("an H5 payment needs the payer's IP address")
        with _translated():
            if self._is_combine(payment):
                subs = self._combine_subs(payment)
                if method == "jsapi":
                    if sub_appid:
                        raise ValueError("a combined payment needs the payer's sp_appid openid")
                    prepay_id = self.client.combine_jsapi_prepay(
                        combine_out_trade_no=payment.payment_no,
                        sub_orders=subs,
                        payer_openid=payer_openid or "",
                        time_expire=time_expire,
                        payer_client_ip=client_ip,
                    )
                    return self.client.jsapi_pay_params(prepay_id)
                if not client_ip:
                    raise ValueError("a combined Native payment needs the payer's IP address")
                if method == "h5":
                    h5_url = self.client.combine_h5_prepay(
                        combine_out_trade_no=payment.payment_no,
                        sub_orders=subs,
                        time_expire=time_expire,
                        payer_client_ip=client_ip,
                    )
                    return {"h5_url": h5_url}
                code_url = self.client.combine_native_prepay(
                    combine_out_trade_no=payment.payment_no,
                    sub_orders=subs,
                    time_expire=time_expire,
                    payer_client_ip=client_ip,
                )
                return {"code_url": code_url}
            common: dict[str, Any] = {
                "out_trade_no": payment.payment_no,
                "description": _description(payment.description),
                "amount_fen": payment.amount_fen,
                "time_expire": time_expire,
                "sub_mchid": self._single_sub_mchid(payment),
                "profit_sharing": self.partner,  # see _combine_subs
            }
            if method == "jsapi":
                prepay_id = self.client.jsapi_prepay(
                    payer_openid=payer_openid or "",
                    sub_appid=sub_appid,
                    openid_of="sub" if sub_appid else "sp",
                    **common,
                )
                return self.client.jsapi_pay_params(prepay_id, appid=app)
            if method == "h5":
                assert client_ip is not None
                return {"h5_url": self.client.h5_prepay(payer_client_ip=client_ip, **common)}
            return {"code_url": self.client.native_prepay(**common)}

    # ------------------------------------------------------------------ query / close

    def query(self, payment: PaymentRequest) -> PaymentEvent:
        """Active query. A payment WeChat Pay never heard of is ``pending`` with 0 fen."""
        try:
            with _translated():
                if self._is_combine(payment):
                    self._sub_mchids(payment)
                    data = self.client.query_combine_order(payment.payment_no)
                    return self._combine_event(data, expect=payment.payment_no)
                data = self.client.query_order(
                    payment.payment_no, sub_mchid=self._single_sub_mchid(payment)
                )
                return self._plain_event(data, expect=payment.payment_no)
        except ProviderRefused as exc:
            if exc.code in NOT_FOUND_CODES:
                return PaymentEvent(
                    provider=self.name,
                    payment_no=payment.payment_no,
                    status=EVENT_PENDING,
                    amount_fen=0,
                    raw={"code": exc.code, "message": exc.message},
                )
            raise

    def close(self, payment: PaymentRequest) -> None:
        """Close at WeChat Pay. Closing what it never heard of is a no-op; ``ORDERPAID`` is a
        ``ProviderRefused``: the payment succeeded meanwhile, query it and apply that."""
        try:
            with _translated():
                if self._is_combine(payment):
                    self.client.close_combine_order(payment.payment_no, self._combine_subs(payment))
                else:
                    self.client.close_order(
                        payment.payment_no, sub_mchid=self._single_sub_mchid(payment)
                    )
        except ProviderRefused as exc:
            if exc.code not in NOT_FOUND_CODES and exc.code != "ORDER_CLOSED":
                raise

    def _plain_event(self, data: Mapping[str, Any], *, expect: str | None = None) -> PaymentEvent:
        payment_no = str(data.get("out_trade_no") or "")
        if expect is not None and payment_no != expect:
            raise ProviderUnavailable(f"WeChat Pay answered about {payment_no!r}, not {expect!r}")
        state = str(data.get("trade_state") or "")
        amount = data.get("amount") or {}
        status = payment_status(state)
        raw = dict(data)
        if status == EVENT_FAILED:
            raw["reason"] = f"{state} {data.get('trade_state_desc') or ''}".strip()
        return PaymentEvent(
            provider=self.name,
            payment_no=payment_no,
            status=status,
            amount_fen=_int(amount.get("total")),
            currency=str(amount.get("currency") or "CNY"),
            provider_txn_id=str(data.get("transaction_id") or ""),
            paid_at=_parse_time(data.get("success_time")) if state in PAID_STATES else None,
            raw=raw,
        )

    def _combine_event(self, data: Mapping[str, Any], *, expect: str | None = None) -> PaymentEvent:
        """A combined payment is paid or not as a whole; the amount is what was paid."""
        payment_no = str(data.get("combine_out_trade_no") or "")
        if expect is not None and payment_no != expect:
            raise ProviderUnavailable(f"WeChat Pay answered about {payment_no!r}, not {expect!r}")
        subs = [s for s in data.get("sub_orders") or [] if isinstance(s, Mapping)]
        states = [str(s.get("trade_state") or "") for s in subs]
        paid = [s for s, state in zip(subs, states, strict=True) if state in PAID_STATES]
        if paid:
            status = EVENT_SUCCEEDED
        elif subs and all(payment_status(s) == EVENT_CLOSED for s in states):
            status = EVENT_CLOSED
        elif any(payment_status(s) == EVENT_FAILED for s in states):
            status = EVENT_FAILED
        else:
            status = EVENT_PENDING
        raw = dict(data)
        if status == EVENT_FAILED:
            raw["reason"] = "PAYERROR: 支付失败"
        counted = paid if paid else subs
        currencies = {str((s.get("amount") or {}).get("currency") or "CNY") for s in counted}
        paid_times = [t for t in (_parse_time(s.get("success_time")) for s in paid) if t]
        return PaymentEvent(
            provider=self.name,
            payment_no=payment_no,
            status=status,
            amount_fen=sum(_int((s.get("amount") or {}).get("total_amount")) for s in counted),
            # Mixed currencies cannot match the payment: leave it blank so the check fails.
            currency=currencies.pop() if len(currencies) == 1 else "",
            provider_txn_id="",  # a combined payment has one transaction id per sub-order
            paid_at=max(paid_times) if paid_times else None,
            sub_txn_ids={
                str(s.get("out_trade_no")): str(s["transaction_id"])
                for s in paid
                if s.get("transaction_id")
            },
            raw=raw,
        )

    # ------------------------------------------------------------------ refunds

    def _refund_sub_mchid(self, refund: RefundRequest) -> str | None:
        if not self.partner:
            return None
        if not refund.sub_mchid:
            raise ValueError(f"WeChat Pay partner mode: refund {refund.refund_no} needs sub_mchid")
        return refund.sub_mchid

    def _refund_trade(self, refund: RefundRequest) -> tuple[str, int]:
        """(out_trade_no, its total in fen) of the WeChat Pay order being refunded."""
        if self.partner:
            if refund.combined:
                return refund.order_no, refund.trade_total_fen
            return refund.payment_no, refund.trade_total_fen
        if not refund.combined:
            return refund.payment_no, refund.trade_total_fen
        # Direct mode paid a multi-order checkout as one plain order: refund against that
        # order, whose total is the whole payment (WeChat Pay checks it).
        with _translated():
            data = self.client.query_order(refund.payment_no)
        total = _int((data.get("amount") or {}).get("total"))
        if total <= 0:
            raise ProviderRefused("ORDER_NOT_PAID", f"{refund.payment_no} has no paid amount")
        return refund.payment_no, total

    def refund(self, refund: RefundRequest) -> RefundEvent:
        """Apply for a refund (usually answered ``processing``). Safe to repeat with the same
        ``refund_no``: WeChat Pay answers with the existing refund."""
        sub_mchid = self._refund_sub_mchid(refund)
        out_trade_no, total = self._refund_trade(refund)
        with _translated(retry_codes=REFUND_RETRY_CODES):
            data = self.client.refund(
                out_refund_no=refund.refund_no,
                out_trade_no=out_trade_no,
                refund_fen=refund.amount_fen,
                total_fen=total,
                reason=refund.reason[:80] or None,
                sub_mchid=sub_mchid,
            )
        return self._refund_event(data, status_key="status")

    def query_refund(self, refund: RefundRequest) -> RefundEvent:
        """The refund's state. A refund WeChat Pay never received (the first attempt got no
        answer) is submitted now with the same number, which is what a retry must do."""
        sub_mchid = self._refund_sub_mchid(refund)
        try:
            with _translated():
                data = self.client.query_refund(refund.refund_no, sub_mchid=sub_mchid)
        except ProviderRefused as exc:
            if exc.code in NOT_FOUND_CODES:
                return self.refund(refund)
            raise
        return self._refund_event(data, status_key="status")

    def apply_abnormal_refund(
        self,
        refund: RefundRequest,
        *,
        provider_refund_id: str,
        kind: str,
        bank_type: str | None = None,
        bank_account: str | None = None,
        real_name: str | None = None,
    ) -> RefundEvent:
        """异常退款: send an ``ABNORMAL`` refund to the payer's bank card (``USER_BANK_CARD``)
        or back to the merchant's bank account (``MERCHANT_BANK_CARD``). The answer is the
        refund, usually ``processing`` again; its end comes as for any refund."""
        if kind not in ABNORMAL_REFUND_TYPES:
            raise ValueError(f"unknown abnormal refund type {kind!r}")
        if not provider_refund_id:
            raise ValueError(f"refund {refund.refund_no} has no WeChat Pay refund id")
        with _translated():
            data = self.client.apply_abnormal_refund(
                refund_id=provider_refund_id,
                out_refund_no=refund.refund_no,
                type=kind,  # type: ignore[arg-type]
                bank_type=bank_type,
                bank_account=bank_account,
                real_name=real_name,
                sub_mchid=self._refund_sub_mchid(refund),
            )
        return self._refund_event(data, status_key="status")

    def _refund_event(self, data: Mapping[str, Any], *, status_key: str) -> RefundEvent:
        amount = data.get("amount") or {}
        state = str(data.get(status_key) or "")
        raw = dict(data)
        if state in REFUND_FAILURE_REASONS:
            raw["reason"] = f"{state}: {REFUND_FAILURE_REASONS[state]}"
        return RefundEvent(
            provider=self.name,
            refund_no=str(data.get("out_refund_no") or ""),
            status=refund_status(state),
            amount_fen=_int(amount.get("refund")),
            provider_refund_id=str(data.get("refund_id") or ""),
            accepted_at=_parse_time(data.get("create_time")),
            raw=raw,
        )

    # ------------------------------------------------------------------ notifications

    def parse_notification(
        self, headers: Mapping[str, str], body: bytes
    ) -> PaymentEvent | RefundEvent | ProfitSharingEvent:
        """Verify (platform key signature, serial, 5-minute timestamp), decrypt (APIv3 key) and
        decode a notification; NotificationRejected(reason) when it is not genuine or not ours."""
        try:
            parsed = self.client.parse_notification(headers, body)
        except WeChatPayVerificationError as exc:
            raise NotificationRejected(str(exc)) from exc
        event_type = str(parsed.get("event_type") or "")
        resource = parsed["resource"]
        self._check_owner(resource)
        if event_type.startswith("TRANSACTION."):
            if "combine_out_trade_no" in resource:
                event = self._combine_event(resource)
            else:
                event = self._plain_event(resource)
            if not event.payment_no:
                raise NotificationRejected("malformed: no out_trade_no in the transaction")
            return dataclasses.replace(event, raw=_audit(parsed, event.raw))
        if event_type.startswith("REFUND."):
            event_r = self._refund_event(resource, status_key="refund_status")
            if not event_r.refund_no:
                raise NotificationRejected("malformed: no out_refund_no in the refund")
            return dataclasses.replace(event_r, raw=_audit(parsed, event_r.raw))
        if event_type in SHARING_EVENTS:
            return self._sharing_event(event_type, resource, parsed)
        raise NotificationRejected(f"unsupported: event_type {event_type!r}")

    def _sharing_event(
        self, event_type: str, resource: Mapping[str, Any], parsed: dict[str, Any]
    ) -> ProfitSharingEvent:
        """分账动账: a receiver's share of a profit-sharing order moved (or came back)."""
        receiver = resource.get("receiver")
        out_order_no = str(resource.get("out_order_no") or "")
        if not out_order_no or not isinstance(receiver, Mapping):
            raise NotificationRejected("malformed: no out_order_no / receiver in the sharing")
        return ProfitSharingEvent(
            provider=self.name,
            out_order_no=out_order_no,
            status=SHARING_EVENTS[event_type],
            receiver_type=str(receiver.get("type") or ""),
            receiver_account=str(receiver.get("account") or ""),
            amount_fen=_int(receiver.get("amount")),
            transaction_id=str(resource.get("transaction_id") or ""),
            provider_order_id=str(resource.get("order_id") or ""),
            raw=parsed,
        )

    def _check_owner(self, resource: Mapping[str, Any]) -> None:
        """A genuine notification for another merchant id must not move our payments."""
        owner = resource.get("combine_mchid") or resource.get("sp_mchid") or resource.get("mchid")
        if owner is not None and str(owner) != self.config.mchid:
            raise NotificationRejected(f"merchant: notification is for mchid {owner!r}")

    def answer(self, ok: bool, message: str = "", *, status_code: int = 500) -> NotificationAnswer:
        """Accepted: 204 and no body. Otherwise ``status_code`` (4xx/5xx, default 500) with
        ``{"code": "FAIL", "message": ...}``; WeChat Pay then delivers the notification again."""
        if ok:
            return NotificationAnswer(status_code=204, body=b"")
        failure = notification_failure(message or "失败", status_code)
        return NotificationAnswer(
            status_code=failure.status_code,
            body=failure.body,
            media_type=failure.media_type or "application/json",
        )


def build_provider(settings: Settings, **overrides: Any) -> WeChatPayProvider | None:
    """The ``wechatpay`` provider for the registry; None when WeChat Pay is not configured."""
    wechat = WeChatPaySettings.from_settings(settings, **overrides)
    if not wechat.enabled:
        return None
    try:
        return WeChatPayProvider(wechat, sub_appid=wechat_settings(settings).sub_appid)
    except (
        ValueError,
        TypeError,
    ) as exc:  # e.g. a key that is not a PEM: say so, keep the other providers
        log.error("WeChat Pay is configured but cannot start: %s", exc)
        return None
