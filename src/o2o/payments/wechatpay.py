"""WeChat Pay API v3 adapter: direct-merchant and partner (service provider) modes.

Why not the ``wechatpayv3`` SDK: it talks through ``requests`` with a hard-coded gateway
(``Core._gate_way``, a private attribute) so it cannot be pointed at a local fake without
monkey-patching; it raises bare ``Exception`` with no status/code, cannot tell a network
failure (retry) from a refusal (do not); and its callback check does not enforce the
5-minute timestamp window. The wire formats are small, so we implement them here over
``cryptography`` (wechatpay_crypto.py) and a sync ``httpx`` client.

Amounts are integer fen (分) throughout; WeChat Pay's JSON also uses fen.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import rsa

from o2o.payments.wechatpay_bill import TradeBill, parse_trade_bill, yuan_to_fen
from o2o.payments.wechatpay_certs import (
    CERTIFICATES_PATH,
    PlatformCertificate,
    PlatformKeys,
    decrypt_certificates,
)
from o2o.payments.wechatpay_crypto import (
    AEAD_ALGORITHM,
    SIGNATURE_SCHEME,
    aes_gcm_decrypt,
    build_authorization,
    jsapi_sign_message,
    load_private_key,
    load_public_key,
    new_nonce,
    response_message,
    rsa_oaep_encrypt,
    rsa_sign,
    rsa_verify,
)
from o2o.timeutil import CHINA_TZ

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BACKUP_BASE_URL",
    "DEFAULT_BASE_URL",
    "BillDownloadTicket",
    "CombineSubOrder",
    "NotificationAnswer",
    "ProfitSharingReceiver",
    "TradeBill",
    "WeChatPayClient",
    "WeChatPayConfig",
    "WeChatPayError",
    "WeChatPayException",
    "WeChatPayNetworkError",
    "WeChatPayVerificationError",
    "format_time_expire",
    "notification_failure",
    "notification_success",
    "parse_notification",
    "parse_trade_bill",
    "verify_wechatpay_signature",
    "yuan_to_fen",
]

DEFAULT_BASE_URL = "https://api.mch.weixin.qq.com"
# The backup domain WeChat Pay documents for when the primary cannot be reached (跨城容灾).
DEFAULT_BACKUP_BASE_URL = "https://api2.mch.weixin.qq.com"
# After the primary failed to answer, go to the backup first for this long.
PRIMARY_DOWN_SECONDS = 60.0
USER_AGENT = "o2o-wechatpay/1.0 (+httpx)"
# Hosts a bill download_url may point at; the Authorization header is only sent there.
WECHATPAY_HOSTS = frozenset({"api.mch.weixin.qq.com", "api2.mch.weixin.qq.com"})
# Error codes WeChat Pay documents as "try again with the same parameters".
RETRYABLE_CODES = frozenset({"SYSTEM_ERROR", "SYSTEMERROR", "FREQUENCY_LIMITED", "BANK_ERROR"})
_MERCHANT_NO = re.compile(r"^[0-9A-Za-z_\-|*]{1,64}$")


# --------------------------------------------------------------------------- errors


class WeChatPayException(Exception):
    """Base of everything this adapter raises on purpose."""


class WeChatPayError(WeChatPayException):
    """WeChat Pay answered with a 4xx/5xx and a JSON ``{code, message}``."""

    def __init__(
        self, status: int, code: str, message: str, detail: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"WeChat Pay {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.detail = dict(detail or {})

    @property
    def retryable(self) -> bool:
        """True when the same request may be sent again (WeChat dedupes by out_*_no)."""
        return self.status >= 500 or self.status == 429 or self.code in RETRYABLE_CODES


class WeChatPayNetworkError(WeChatPayException):
    """No answer (connect error, timeout, broken connection): the outcome is unknown.

    Always retryable: every write call carries a merchant-side number (out_trade_no,
    out_refund_no, out_order_no) that WeChat Pay uses to make the retry idempotent.
    """

    retryable = True


VerificationReason = Literal["serial", "signature", "timestamp", "decrypt", "malformed"]


class WeChatPayVerificationError(WeChatPayException):
    """A response or notification failed verification; treat it as not from WeChat Pay."""

    def __init__(self, reason: VerificationReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, repr=False)
class WeChatPayConfig:
    """Credentials and endpoints of one WeChat Pay merchant account.

    In partner (service provider, 服务商) mode ``mchid``/``appid`` are the provider's
    ``sp_mchid``/``sp_appid`` and every business call names a ``sub_mchid``.
    """

    mchid: str
    appid: str
    private_key: str  # merchant API private key PEM (apiclient_key.pem)
    merchant_serial_no: str  # serial of the merchant API certificate
    apiv3_key: str  # 32-byte APIv3 key: decrypts notifications, certificates
    # WeChat Pay public key PEM (pub_key.pem) or a platform cert PEM; may be empty when the
    # certificates are downloaded (``download_certificates``).
    platform_public_key: str
    platform_serial: str = ""  # "PUB_KEY_ID_..." or cert serial; derived from a cert if empty
    notify_url: str = ""
    refund_notify_url: str = ""  # falls back to notify_url
    base_url: str = DEFAULT_BASE_URL
    # Tried when ``base_url`` cannot be reached (connection error, timeout); "" = none. With the
    # default ``base_url`` it defaults to WeChat Pay's documented backup domain.
    backup_base_url: str | None = None
    timeout: float = 10.0
    partner: bool = False
    # During a key rotation WeChat Pay may sign with either key: serial → PEM.
    extra_platform_keys: Mapping[str, str] = field(default_factory=dict)
    # Certificate mode: download (and keep rotating) the platform certificates.
    download_certificates: bool = False
    max_clock_skew_seconds: int = 300

    def __post_init__(self) -> None:
        if len(self.apiv3_key.encode("utf-8")) != 32:
            raise ValueError("WeChat Pay APIv3 key must be exactly 32 bytes")
        if not self.platform_public_key.strip() and not self.download_certificates:
            raise ValueError("a platform public key (or certificate download) is required")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        backup = self.backup_base_url
        if backup is None:
            backup = DEFAULT_BACKUP_BASE_URL if self.base_url == DEFAULT_BASE_URL else ""
        object.__setattr__(self, "backup_base_url", backup.rstrip("/"))

    @property
    def sp_mchid(self) -> str:
        return self.mchid

    @property
    def sp_appid(self) -> str:
        return self.appid

    def __repr__(self) -> str:  # keys stay out of logs
        mode = "partner" if self.partner else "direct"
        return (
            f"WeChatPayConfig(mchid={self.mchid!r}, appid={self.appid!r}, {mode}, {self.base_url})"
        )


# --------------------------------------------------------------------------- request shapes


@dataclass(frozen=True)
class CombineSubOrder:
    """One sub-order of a combined payment (合单支付)."""

    out_trade_no: str
    amount_fen: int
    description: str
    attach: str  # required by WeChat Pay; echoed back in queries and notifications
    sub_mchid: str | None = None  # the sub-merchant receiving this part (partner/platform)
    mchid: str | None = None  # sub-order initiator; defaults to the config's mchid
    sub_appid: str | None = None
    profit_sharing: bool = False


@dataclass(frozen=True)
class ProfitSharingReceiver:
    type: str  # MERCHANT_ID | PERSONAL_OPENID | PERSONAL_SUB_OPENID
    account: str
    amount_fen: int
    description: str
    name: str | None = None  # sent RSA-OAEP encrypted with the platform key


@dataclass(frozen=True)
class BillDownloadTicket:
    download_url: str
    hash_type: str
    hash_value: str


@dataclass(frozen=True)
class NotificationAnswer:
    """What to send back to WeChat Pay after a notification (framework-neutral)."""

    status_code: int
    body: bytes
    media_type: str | None


def notification_success() -> NotificationAnswer:
    """Accepted: 204 with no body (WeChat Pay accepts 200 or 204)."""
    return NotificationAnswer(204, b"", None)


def notification_failure(message: str, status_code: int = 500) -> NotificationAnswer:
    """Rejected: WeChat Pay will redeliver. Use 401 for bad signatures, 5xx for our faults."""
    if status_code < 400:
        raise ValueError("a failure answer needs a 4xx or 5xx status")
    body = json.dumps({"code": "FAIL", "message": message}, ensure_ascii=False).encode("utf-8")
    return NotificationAnswer(status_code, body, "application/json")


# --------------------------------------------------------------------------- helpers


def format_time_expire(value: datetime) -> str:
    """RFC 3339 in Beijing time, as WeChat Pay wants: ``2024-05-01T10:15:00+08:00``."""
    if value.tzinfo is None:
        raise ValueError("time_expire must be timezone-aware")
    return value.astimezone(CHINA_TZ).isoformat(timespec="seconds")


def _check_no(name: str, value: str) -> str:
    # Merchant numbers end up in URL paths; refuse anything outside WeChat's charset.
    if not _MERCHANT_NO.match(value):
        raise ValueError(f"{name} must be 1-64 characters of [0-9A-Za-z_-|*]: {value!r}")
    return value


def _check_fen(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer amount in fen, got {value!r}")
    return value


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    # Accept any framework's headers: "Wechatpay-Serial", "wechatpay-serial",
    # or a WSGI-style "HTTP_WECHATPAY_SERIAL".
    out: dict[str, str] = {}
    for key, value in headers.items():
        k = key.lower()
        if k.startswith("http_"):
            k = k[5:].replace("_", "-")
        out[k] = value
    return out


def _platform_keys(
    config: WeChatPayConfig,
    *,
    fetch: Callable[[], list[PlatformCertificate]] | None = None,
    clock: Callable[[], float] = time.time,
) -> PlatformKeys:
    """The configured platform keys (public key and/or certificates), plus the downloaded
    certificates when ``fetch`` is given (certificate mode)."""
    static: dict[str, rsa.RSAPublicKey] = {}
    primary: str | None = None
    if config.platform_public_key.strip():
        key, cert_serial = load_public_key(config.platform_public_key)
        primary = config.platform_serial or cert_serial
        if not primary:
            raise ValueError("platform_serial (the PUB_KEY_ID_...) is required with a bare key")
        static[primary] = key
    for extra_serial, pem in config.extra_platform_keys.items():
        static[extra_serial] = load_public_key(pem)[0]
    return PlatformKeys(static, primary_serial=primary, fetch=fetch, clock=clock)


def verify_wechatpay_signature(
    config: WeChatPayConfig,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    _keys: PlatformKeys | None = None,
) -> None:
    """Check ``Wechatpay-*`` headers over ``TIMESTAMP\\nNONCE\\nBODY\\n``; raise if wrong."""
    keys = _keys or _platform_keys(config)
    h = _lower_headers(headers)
    serial = h.get("wechatpay-serial", "")
    signature = h.get("wechatpay-signature", "")
    timestamp = h.get("wechatpay-timestamp", "")
    nonce = h.get("wechatpay-nonce", "")
    scheme = h.get("wechatpay-signature-type")
    if not (serial and signature and timestamp and nonce):
        raise WeChatPayVerificationError("malformed", "missing Wechatpay-* signature headers")
    if scheme is not None and scheme != SIGNATURE_SCHEME:
        raise WeChatPayVerificationError("signature", f"unsupported signature type {scheme!r}")
    public_key = keys.get(serial)
    if public_key is None:
        raise WeChatPayVerificationError("serial", f"unknown platform key serial {serial!r}")
    try:
        signed_at = int(timestamp)
    except ValueError:
        raise WeChatPayVerificationError(
            "malformed", "Wechatpay-Timestamp is not a number"
        ) from None
    current = time.time() if now is None else now
    if abs(current - signed_at) > config.max_clock_skew_seconds:
        # Replay protection: WeChat Pay asks merchants to refuse stale signatures.
        raise WeChatPayVerificationError("timestamp", "signature timestamp outside 5 minutes")
    if not rsa_verify(public_key, response_message(timestamp, nonce, body), signature):
        raise WeChatPayVerificationError("signature", "Wechatpay-Signature does not verify")


def decrypt_resource(config: WeChatPayConfig, resource: Mapping[str, Any]) -> dict[str, Any]:
    """Decrypt an ``encrypt-resource`` object with the APIv3 key (AES-256-GCM)."""
    if resource.get("algorithm") != AEAD_ALGORITHM:
        raise WeChatPayVerificationError(
            "malformed", f"unsupported algorithm {resource.get('algorithm')!r}"
        )
    try:
        plaintext = aes_gcm_decrypt(
            config.apiv3_key.encode("utf-8"),
            str(resource["nonce"]),
            str(resource["ciphertext"]),
            str(resource.get("associated_data") or ""),
        )
    except KeyError as exc:
        raise WeChatPayVerificationError("malformed", f"resource lacks {exc}") from None
    except (InvalidTag, ValueError):
        raise WeChatPayVerificationError("decrypt", "resource does not decrypt") from None
    try:
        decrypted = json.loads(plaintext)
    except ValueError:
        raise WeChatPayVerificationError("malformed", "decrypted resource is not JSON") from None
    if not isinstance(decrypted, dict):
        raise WeChatPayVerificationError("malformed", "decrypted resource is not an object")
    return decrypted


def parse_notification(
    config: WeChatPayConfig,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    now: float | None = None,
    _keys: PlatformKeys | None = None,
) -> dict[str, Any]:
    """Verify and decrypt a WeChat Pay notification.

    Returns the envelope (id, create_time, event_type, resource_type, summary) with
    ``resource`` replaced by the decrypted object and ``resource_original_type`` added
    ("transaction", "refund", ...). Raises WeChatPayVerificationError when the signature,
    serial, timestamp or ciphertext is wrong: answer with ``notification_failure(..., 401)``.
    """
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    verify_wechatpay_signature(config, headers, raw, now=now, _keys=_keys)
    try:
        envelope = json.loads(raw)
    except ValueError:
        raise WeChatPayVerificationError("malformed", "notification body is not JSON") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("resource"), dict):
        raise WeChatPayVerificationError("malformed", "notification has no resource object")
    resource = envelope["resource"]
    result = dict(envelope)
    result["resource"] = decrypt_resource(config, resource)
    result["resource_original_type"] = resource.get("original_type")
    return result


# --------------------------------------------------------------------------- client


class WeChatPayClient:
    """Sync WeChat Pay v3 client. Thread-safe; reuse one per merchant account."""

    def __init__(
        self,
        config: WeChatPayConfig,
        *,
        http_client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._private_key = load_private_key(config.private_key)
        self._clock = clock
        self._platform = _platform_keys(
            config,
            fetch=self.download_certificates if config.download_certificates else None,
            clock=clock,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=config.timeout)
        self._primary_down_until = 0.0

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> WeChatPayClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ transport

    def _targets(self, url: str) -> list[str]:
        """``url``, and the same on the backup domain when ``url`` is on the primary one —
        backup first while the primary was recently unreachable."""
        primary, backup = self.config.base_url, self.config.backup_base_url or ""
        if not backup or not url.startswith(primary + "/"):
            return [url]
        other = backup + url[len(primary) :]
        if time.monotonic() < self._primary_down_until:
            return [other, url]
        return [url, other]

    def _send(
        self,
        method: str,
        url: str,
        *,
        body: Mapping[str, Any] | None = None,
        verify: bool = True,
        wechatpay_serial: str | None = None,
    ) -> httpx.Response:
        """Sign, send, check the answer. No answer at all (connection refused, DNS, timeout)
        from the primary domain: the same request goes to the backup domain (WeChat Pay
        dedupes writes on our numbers); an answer, even a 5xx, is never sent elsewhere."""
        content = (
            json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            if body is not None
            else b""
        )
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if wechatpay_serial:
            # Which of WeChat Pay's keys the sensitive fields of this request are encrypted with.
            headers["Wechatpay-Serial"] = wechatpay_serial
        if body is not None:
            headers["Content-Type"] = "application/json"
        targets = self._targets(url)
        for attempt, target in enumerate(targets):
            request = self._http.build_request(
                method, target, content=content or None, headers=headers
            )
            # Sign exactly the path+query httpx will put on the wire.
            url_path = request.url.raw_path.decode("ascii")
            request.headers["Authorization"] = build_authorization(
                mchid=self.config.mchid,
                serial_no=self.config.merchant_serial_no,
                private_key=self._private_key,
                method=method,
                url_path=url_path,
                body=content,
                timestamp=int(self._clock()),
                nonce=new_nonce(),
            )
            try:
                response = self._http.send(request)
            except httpx.TransportError as exc:
                if target == url and len(targets) > 1:
                    self._primary_down_until = time.monotonic() + PRIMARY_DOWN_SECONDS
                if attempt + 1 < len(targets):
                    log.warning(
                        "WeChat Pay %s unreachable (%r); trying %s",
                        target,
                        exc,
                        targets[attempt + 1],
                    )
                    continue
                raise WeChatPayNetworkError(f"{method} {url_path}: {exc!r}") from exc
            if target == url:
                self._primary_down_until = 0.0
            break
        if response.status_code >= 300:
            raise self._error(response)
        if verify:
            verify_wechatpay_signature(
                self.config,
                response.headers,
                response.content,
                now=self._clock(),
                _keys=self._platform,
            )
        return response

    @staticmethod
    def _error(response: httpx.Response) -> WeChatPayError:
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if isinstance(payload, dict) and "code" in payload:
            detail = payload.get("detail")
            return WeChatPayError(
                response.status_code,
                str(payload["code"]),
                str(payload.get("message", "")),
                detail if isinstance(detail, dict) else None,
            )
        return WeChatPayError(response.status_code, "UNKNOWN", response.text[:200])

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        wechatpay_serial: str | None = None,
    ) -> dict[str, Any]:
        url = self.config.base_url + path
        if query:
            url += "?" + urlencode(query)
        response = self._send(method, url, body=body, wechatpay_serial=wechatpay_serial)
        if not response.content:
            return {}
        data = response.json()
        if not isinstance(data, dict):
            raise WeChatPayError(response.status_code, "UNEXPECTED_BODY", "not a JSON object")
        return data

    # ------------------------------------------------------------------ mode helpers

    def _sub(self, sub_mchid: str | None) -> str | None:
        if self.config.partner and not sub_mchid:
            raise ValueError("partner mode: sub_mchid is required")
        if not self.config.partner and sub_mchid:
            raise ValueError("direct mode: sub_mchid is only for partner configs")
        return _check_no("sub_mchid", sub_mchid) if sub_mchid else None

    def _merchant_ids(self, sub_mchid: str | None, sub_appid: str | None) -> dict[str, str]:
        sub = self._sub(sub_mchid)
        if sub is None:
            return {"appid": self.config.appid, "mchid": self.config.mchid}
        ids = {"sp_appid": self.config.appid, "sp_mchid": self.config.mchid, "sub_mchid": sub}
        if sub_appid:
            ids["sub_appid"] = sub_appid
        return ids

    def _notify_url(self, override: str | None) -> str:
        url = override or self.config.notify_url
        if not url:
            raise ValueError("notify_url is required (set it on the config or pass it)")
        return url

    def _order_body(
        self,
        *,
        out_trade_no: str,
        description: str,
        amount_fen: int,
        time_expire: datetime,
        attach: str | None,
        notify_url: str | None,
        profit_sharing: bool,
        goods_tag: str | None,
        sub_mchid: str | None,
        sub_appid: str | None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = self._merchant_ids(sub_mchid, sub_appid)
        body.update(
            description=description,
            out_trade_no=_check_no("out_trade_no", out_trade_no),
            time_expire=format_time_expire(time_expire),
            notify_url=self._notify_url(notify_url),
            amount={"total": _check_fen("amount_fen", amount_fen), "currency": "CNY"},
        )
        if attach:
            body["attach"] = attach
        if goods_tag:
            body["goods_tag"] = goods_tag
        if profit_sharing:
            body["settle_info"] = {"profit_sharing": True}
        return body

    def _pay_prefix(self) -> str:
        return "/v3/pay/partner/transactions" if self.config.partner else "/v3/pay/transactions"

    def _order_query(self, sub_mchid: str | None) -> dict[str, str]:
        sub = self._sub(sub_mchid)
        if sub is None:
            return {"mchid": self.config.mchid}
        return {"sp_mchid": self.config.mchid, "sub_mchid": sub}

    # ------------------------------------------------------------------ prepay

    def jsapi_prepay(
        self,
        *,
        out_trade_no: str,
        description: str,
        amount_fen: int,
        payer_openid: str,
        time_expire: datetime,
        attach: str | None = None,
        notify_url: str | None = None,
        profit_sharing: bool = False,
        goods_tag: str | None = None,
        sub_mchid: str | None = None,
        sub_appid: str | None = None,
        openid_of: Literal["sp", "sub"] = "sp",
    ) -> str:
        """JSAPI/mini-program order → ``prepay_id`` (valid 2 hours).

        In partner mode the payer's openid belongs to ``sp_appid`` (``openid_of="sp"``)
        or to ``sub_appid`` (``"sub"``); pass the matching appid to ``jsapi_pay_params``.
        """
        body = self._order_body(
            out_trade_no=out_trade_no,
            description=description,
            amount_fen=amount_fen,
            time_expire=time_expire,
            attach=attach,
            notify_url=notify_url,
            profit_sharing=profit_sharing,
            goods_tag=goods_tag,
            sub_mchid=sub_mchid,
            sub_appid=sub_appid,
        )
        if not self.config.partner:
            body["payer"] = {"openid": payer_openid}
        elif openid_of == "sub":
            if not sub_appid:
                raise ValueError("openid_of='sub' needs sub_appid")
            body["payer"] = {"sub_openid": payer_openid}
        else:
            body["payer"] = {"sp_openid": payer_openid}
        data = self._call("POST", f"{self._pay_prefix()}/jsapi", body=body)
        return str(data["prepay_id"])

    def native_prepay(
        self,
        *,
        out_trade_no: str,
        description: str,
        amount_fen: int,
        time_expire: datetime,
        attach: str | None = None,
        notify_url: str | None = None,
        profit_sharing: bool = False,
        goods_tag: str | None = None,
        sub_mchid: str | None = None,
        sub_appid: str | None = None,
    ) -> str:
        """Native (scan a QR code) order → ``code_url`` to render as a QR code."""
        body = self._order_body(
            out_trade_no=out_trade_no,
            description=description,
            amount_fen=amount_fen,
            time_expire=time_expire,
            attach=attach,
            notify_url=notify_url,
            profit_sharing=profit_sharing,
            goods_tag=goods_tag,
            sub_mchid=sub_mchid,
            sub_appid=sub_appid,
        )
        data = self._call("POST", f"{self._pay_prefix()}/native", body=body)
        return str(data["code_url"])

    def jsapi_pay_params(self, prepay_id: str, *, appid: str | None = None) -> dict[str, str]:
        """Parameters for ``wx.requestPayment`` / ``WeixinJSBridge`` (signType RSA)."""
        app = appid or self.config.appid
        timestamp = str(int(self._clock()))
        nonce = new_nonce()
        package = f"prepay_id={prepay_id}"
        pay_sign = rsa_sign(self._private_key, jsapi_sign_message(app, timestamp, nonce, package))
        return {
            "appId": app,
            "timeStamp": timestamp,
            "nonceStr": nonce,
            "package": package,
            "signType": "RSA",
            "paySign": pay_sign,
        }

    # ------------------------------------------------------------------ combined payment

    def _combine_body(
        self,
        *,
        combine_out_trade_no: str,
        sub_orders: Sequence[CombineSubOrder],
        time_expire: datetime,
        notify_url: str | None,
        payer_client_ip: str | None,
    ) -> dict[str, Any]:
        if not 2 <= len(sub_orders) <= 50:
            raise ValueError("a combined payment has 2 to 50 sub-orders")
        subs = []
        for sub in sub_orders:
            item: dict[str, Any] = {
                "mchid": sub.mchid or self.config.mchid,
                "attach": sub.attach,
                "amount": {
                    "total_amount": _check_fen("amount_fen", sub.amount_fen),
                    "currency": "CNY",
                },
                "out_trade_no": _check_no("out_trade_no", sub.out_trade_no),
                "description": sub.description,
            }
            if sub.sub_mchid:
                item["sub_mchid"] = _check_no("sub_mchid", sub.sub_mchid)
            if sub.sub_appid:
                item["sub_appid"] = sub.sub_appid
            if sub.profit_sharing:
                item["settle_info"] = {"profit_sharing": True}
            subs.append(item)
        body: dict[str, Any] = {
            "combine_appid": self.config.appid,
            "combine_mchid": self.config.mchid,
            "combine_out_trade_no": _check_no("combine_out_trade_no", combine_out_trade_no),
            "sub_orders": subs,
            "time_expire": format_time_expire(time_expire),
            "notify_url": self._notify_url(notify_url),
        }
        if payer_client_ip:
            body["scene_info"] = {"payer_client_ip": payer_client_ip}
        return body

    def combine_jsapi_prepay(
        self,
        *,
        combine_out_trade_no: str,
        sub_orders: Sequence[CombineSubOrder],
        payer_openid: str,
        time_expire: datetime,
        notify_url: str | None = None,
        payer_client_ip: str | None = None,
    ) -> str:
        """合单 JSAPI order (one password for several merchants' orders) → ``prepay_id``."""
        body = self._combine_body(
            combine_out_trade_no=combine_out_trade_no,
            sub_orders=sub_orders,
            time_expire=time_expire,
            notify_url=notify_url,
            payer_client_ip=payer_client_ip,
        )
        body["combine_payer_info"] = {"openid": payer_openid}
        return str(self._call("POST", "/v3/combine-transactions/jsapi", body=body)["prepay_id"])

    def combine_native_prepay(
        self,
        *,
        combine_out_trade_no: str,
        sub_orders: Sequence[CombineSubOrder],
        time_expire: datetime,
        payer_client_ip: str,
        notify_url: str | None = None,
    ) -> str:
        """合单 Native order → ``code_url``."""
        body = self._combine_body(
            combine_out_trade_no=combine_out_trade_no,
            sub_orders=sub_orders,
            time_expire=time_expire,
            notify_url=notify_url,
            payer_client_ip=payer_client_ip,
        )
        return str(self._call("POST", "/v3/combine-transactions/native", body=body)["code_url"])

    def query_combine_order(self, combine_out_trade_no: str) -> dict[str, Any]:
        """Combined order with per-sub-order ``trade_state``, ``transaction_id``, amounts."""
        no = quote(_check_no("combine_out_trade_no", combine_out_trade_no), safe="")
        return self._call("GET", f"/v3/combine-transactions/out-trade-no/{no}")

    def close_combine_order(
        self, combine_out_trade_no: str, sub_orders: Sequence[CombineSubOrder]
    ) -> None:
        """Close every unpaid sub-order of a combined payment (204 on success)."""
        no = quote(_check_no("combine_out_trade_no", combine_out_trade_no), safe="")
        subs = []
        for sub in sub_orders:
            item = {"mchid": sub.mchid or self.config.mchid, "out_trade_no": sub.out_trade_no}
            if sub.sub_mchid:
                item["sub_mchid"] = sub.sub_mchid
            if sub.sub_appid:
                item["sub_appid"] = sub.sub_appid
            subs.append(item)
        body = {"combine_appid": self.config.appid, "sub_orders": subs}
        self._call("POST", f"/v3/combine-transactions/out-trade-no/{no}/close", body=body)

    # ------------------------------------------------------------------ order query / close

    def query_order(self, out_trade_no: str, *, sub_mchid: str | None = None) -> dict[str, Any]:
        """Order by our number: ``trade_state`` (SUCCESS, REFUND, NOTPAY, CLOSED, ...),
        ``transaction_id``, ``amount{total,payer_total,currency}``, ``success_time``."""
        no = quote(_check_no("out_trade_no", out_trade_no), safe="")
        return self._call(
            "GET", f"{self._pay_prefix()}/out-trade-no/{no}", query=self._order_query(sub_mchid)
        )

    def query_order_by_transaction_id(
        self, transaction_id: str, *, sub_mchid: str | None = None
    ) -> dict[str, Any]:
        tid = quote(_check_no("transaction_id", transaction_id), safe="")
        return self._call(
            "GET", f"{self._pay_prefix()}/id/{tid}", query=self._order_query(sub_mchid)
        )

    def close_order(self, out_trade_no: str, *, sub_mchid: str | None = None) -> None:
        no = quote(_check_no("out_trade_no", out_trade_no), safe="")
        self._call(
            "POST",
            f"{self._pay_prefix()}/out-trade-no/{no}/close",
            body=self._order_query(sub_mchid),
        )

    # ------------------------------------------------------------------ refunds

    def refund(
        self,
        *,
        out_refund_no: str,
        refund_fen: int,
        total_fen: int,
        out_trade_no: str | None = None,
        transaction_id: str | None = None,
        reason: str | None = None,
        notify_url: str | None = None,
        sub_mchid: str | None = None,
        funds_account: str | None = None,
    ) -> dict[str, Any]:
        """Apply for a refund. Returns the refund (``status`` usually PROCESSING).

        Retrying with the same ``out_refund_no`` and amounts is safe: WeChat Pay answers
        with the existing refund instead of refunding twice.
        """
        if (out_trade_no is None) == (transaction_id is None):
            raise ValueError("pass exactly one of out_trade_no and transaction_id")
        _check_fen("refund_fen", refund_fen)
        _check_fen("total_fen", total_fen)
        if refund_fen > total_fen:
            raise ValueError("refund_fen cannot exceed total_fen")
        body: dict[str, Any] = {}
        sub = self._sub(sub_mchid)
        if sub:
            body["sub_mchid"] = sub
        if out_trade_no is not None:
            body["out_trade_no"] = _check_no("out_trade_no", out_trade_no)
        else:
            body["transaction_id"] = _check_no("transaction_id", transaction_id or "")
        body["out_refund_no"] = _check_no("out_refund_no", out_refund_no)
        if reason:
            body["reason"] = reason
        url = notify_url or self.config.refund_notify_url or self.config.notify_url
        if url:
            body["notify_url"] = url
        if funds_account:
            body["funds_account"] = funds_account
        body["amount"] = {"refund": refund_fen, "total": total_fen, "currency": "CNY"}
        return self._call("POST", "/v3/refund/domestic/refunds", body=body)

    def query_refund(self, out_refund_no: str, *, sub_mchid: str | None = None) -> dict[str, Any]:
        no = quote(_check_no("out_refund_no", out_refund_no), safe="")
        sub = self._sub(sub_mchid)
        return self._call(
            "GET", f"/v3/refund/domestic/refunds/{no}", query={"sub_mchid": sub} if sub else None
        )

    def apply_abnormal_refund(
        self,
        *,
        refund_id: str,
        out_refund_no: str,
        type: Literal["USER_BANK_CARD", "MERCHANT_BANK_CARD"],
        bank_type: str | None = None,
        bank_account: str | None = None,
        real_name: str | None = None,
        sub_mchid: str | None = None,
    ) -> dict[str, Any]:
        """发起异常退款: a refund WeChat Pay reported ``ABNORMAL`` (the original account cannot
        take it) goes to the payer's bank card (``USER_BANK_CARD``: bank type, card number and
        name required, the last two encrypted) or back to the merchant's bank account
        (``MERCHANT_BANK_CARD``). Answers with the refund (``status`` PROCESSING)."""
        if type not in ("USER_BANK_CARD", "MERCHANT_BANK_CARD"):
            raise ValueError("type must be USER_BANK_CARD or MERCHANT_BANK_CARD")
        body: dict[str, Any] = {}
        sub = self._sub(sub_mchid)
        if sub:
            body["sub_mchid"] = sub
        body.update(out_refund_no=_check_no("out_refund_no", out_refund_no), type=type)
        serial = None
        if type == "USER_BANK_CARD":
            if not (bank_type and bank_account and real_name):
                raise ValueError("USER_BANK_CARD needs bank_type, bank_account and real_name")
            serial, key = self._platform.encryption_key()
            body.update(
                bank_type=bank_type,
                bank_account=rsa_oaep_encrypt(key, bank_account),
                real_name=rsa_oaep_encrypt(key, real_name),
            )
        rid = quote(_check_no("refund_id", refund_id), safe="")
        return self._call(
            "POST",
            f"/v3/refund/domestic/refunds/{rid}/apply-abnormal-refund",
            body=body,
            wechatpay_serial=serial,
        )

    # ------------------------------------------------------------------ profit sharing

    def add_profit_sharing_receiver(
        self,
        *,
        type: str,
        account: str,
        relation_type: str,
        name: str | None = None,
        custom_relation: str | None = None,
        sub_mchid: str | None = None,
        appid: str | None = None,
    ) -> dict[str, Any]:
        """Register a receiver (WeChat Pay requires it before sharing to that account)."""
        body: dict[str, Any] = {"appid": appid or self.config.appid}
        sub = self._sub(sub_mchid)
        if sub:
            body["sub_mchid"] = sub
        body.update(type=type, account=account, relation_type=relation_type)
        serial = None
        if type == "MERCHANT_ID" and not name:
            # The official model: for MERCHANT_ID the merchant's full name is required.
            raise ValueError("a MERCHANT_ID receiver needs the merchant's full name (商户全称)")
        if name:
            serial, key = self._platform.encryption_key()
            body["name"] = rsa_oaep_encrypt(key, name)
        if custom_relation:
            body["custom_relation"] = custom_relation
        return self._call(
            "POST", "/v3/profitsharing/receivers/add", body=body, wechatpay_serial=serial
        )

    def profit_sharing(
        self,
        *,
        transaction_id: str,
        out_order_no: str,
        receivers: Sequence[ProfitSharingReceiver],
        unfreeze_unsplit: bool,
        sub_mchid: str | None = None,
        appid: str | None = None,
    ) -> dict[str, Any]:
        """Request 分账 of a paid order (placed with profit_sharing=True).

        ``unfreeze_unsplit=True`` releases whatever is left to the merchant afterwards.
        Returns the sharing order: ``state`` PROCESSING/FINISHED and per-receiver ``result``.
        """
        if not receivers:
            raise ValueError("profit sharing needs at least one receiver")
        body: dict[str, Any] = {"appid": appid or self.config.appid}
        sub = self._sub(sub_mchid)
        if sub:
            body["sub_mchid"] = sub
        items = []
        serial = None
        for r in receivers:
            item: dict[str, Any] = {
                "type": r.type,
                "account": r.account,
                "amount": _check_fen("receiver amount_fen", r.amount_fen),
                "description": r.description,
            }
            if r.name:
                serial, key = self._platform.encryption_key()
                item["name"] = rsa_oaep_encrypt(key, r.name)
            items.append(item)
        body.update(
            transaction_id=_check_no("transaction_id", transaction_id),
            out_order_no=_check_no("out_order_no", out_order_no),
            receivers=items,
            unfreeze_unsplit=unfreeze_unsplit,
        )
        return self._call("POST", "/v3/profitsharing/orders", body=body, wechatpay_serial=serial)

    def query_profit_sharing(
        self, out_order_no: str, *, transaction_id: str, sub_mchid: str | None = None
    ) -> dict[str, Any]:
        no = quote(_check_no("out_order_no", out_order_no), safe="")
        query = {"transaction_id": _check_no("transaction_id", transaction_id)}
        sub = self._sub(sub_mchid)
        if sub:
            query["sub_mchid"] = sub
        return self._call("GET", f"/v3/profitsharing/orders/{no}", query=query)

    def unfreeze_profit_sharing(
        self,
        *,
        transaction_id: str,
        out_order_no: str,
        description: str,
        sub_mchid: str | None = None,
    ) -> dict[str, Any]:
        """Release the unshared remainder of an order to the merchant (解冻剩余资金)."""
        body: dict[str, Any] = {}
        sub = self._sub(sub_mchid)
        if sub:
            body["sub_mchid"] = sub
        body.update(
            transaction_id=_check_no("transaction_id", transaction_id),
            out_order_no=_check_no("out_order_no", out_order_no),
            description=description,
        )
        return self._call("POST", "/v3/profitsharing/orders/unfreeze", body=body)

    def encrypt_sensitive(self, plaintext: str) -> str:
        """Encrypt a sensitive field for WeChat Pay with its public key / newest platform
        certificate (``platform_serial_for_encryption`` names it)."""
        return rsa_oaep_encrypt(self._platform.encryption_key()[1], plaintext)

    @property
    def platform_serial_for_encryption(self) -> str:
        return self._platform.encryption_key()[0]

    # ------------------------------------------------------------------ platform certificates

    def download_certificates(self) -> list[PlatformCertificate]:
        """``GET /v3/certificates``: the platform certificates, decrypted with the APIv3 key.
        The answer's signature must verify with a key we trust or one of the certificates
        it carries (bootstrap). Certificate mode calls this itself (``PlatformKeys``)."""
        url = self.config.base_url + CERTIFICATES_PATH
        response = self._send("GET", url, verify=False)
        now = datetime.fromtimestamp(self._clock(), CHINA_TZ)
        try:
            payload = response.json()
            certificates = decrypt_certificates(
                self.config.apiv3_key.encode("utf-8"), payload, now=now
            )
        except ValueError as exc:
            raise WeChatPayVerificationError("decrypt", f"platform certificates: {exc}") from None
        trusted = PlatformKeys(
            {**self._platform.known(), **{c.serial_no: c.public_key for c in certificates}},
            primary_serial=None,
            clock=self._clock,
        )
        verify_wechatpay_signature(
            self.config, response.headers, response.content, now=self._clock(), _keys=trusted
        )
        return certificates

    # ------------------------------------------------------------------ bills

    def apply_trade_bill(
        self,
        bill_date: date,
        *,
        bill_type: Literal["ALL", "SUCCESS", "REFUND"] = "ALL",
        sub_mchid: str | None = None,
        gzip_file: bool = False,
    ) -> BillDownloadTicket:
        """Ask for the trade bill of a day (ready after ~10:00 the next day)."""
        query = {"bill_date": bill_date.isoformat(), "bill_type": bill_type}
        if sub_mchid:
            if not self.config.partner:
                raise ValueError("direct mode: sub_mchid is only for partner configs")
            query["sub_mchid"] = _check_no("sub_mchid", sub_mchid)
        if gzip_file:
            query["tar_type"] = "GZIP"
        data = self._call("GET", "/v3/bill/tradebill", query=query)
        return BillDownloadTicket(
            download_url=str(data["download_url"]),
            hash_type=str(data.get("hash_type", "SHA1")),
            hash_value=str(data.get("hash_value", "")),
        )

    def download_bill(self, ticket: BillDownloadTicket) -> bytes:
        """Fetch a bill file; gunzips if needed and checks the hash from the ticket.

        The download is not signed by WeChat Pay (it is a file stream), so the hash from
        the signed apply response is what proves the content.
        """
        parts = urlsplit(ticket.download_url)
        allowed = {
            urlsplit(self.config.base_url).netloc,
            urlsplit(self.config.backup_base_url or "").netloc,
            *WECHATPAY_HOSTS,
        } - {""}
        if parts.netloc not in allowed:
            raise WeChatPayVerificationError(
                "malformed", f"download_url host {parts.netloc!r} is not WeChat Pay"
            )
        content = self._send("GET", ticket.download_url, verify=False).content
        if content[:2] == b"\x1f\x8b":
            content = gzip.decompress(content)
        algorithm = ticket.hash_type.lower()
        if algorithm not in {"sha1", "sha256"}:
            raise WeChatPayVerificationError("malformed", f"unknown hash type {ticket.hash_type}")
        digest = hashlib.new(algorithm, content).hexdigest()
        if digest.lower() != ticket.hash_value.lower():
            raise WeChatPayVerificationError("signature", "bill file hash does not match")
        return content

    def fetch_trade_bill(
        self,
        bill_date: date,
        *,
        bill_type: Literal["ALL", "SUCCESS", "REFUND"] = "ALL",
        sub_mchid: str | None = None,
    ) -> TradeBill:
        """Apply, download and parse the trade bill of ``bill_date``."""
        ticket = self.apply_trade_bill(bill_date, bill_type=bill_type, sub_mchid=sub_mchid)
        return parse_trade_bill(self.download_bill(ticket))

    # ------------------------------------------------------------------ notifications

    def verify_signature(self, headers: Mapping[str, str], body: bytes) -> None:
        verify_wechatpay_signature(
            self.config, headers, body, now=self._clock(), _keys=self._platform
        )

    def parse_notification(self, headers: Mapping[str, str], body: bytes | str) -> dict[str, Any]:
        """Verify (signature, serial, 5-minute timestamp) and decrypt a notification."""
        return parse_notification(
            self.config, headers, body, now=self._clock(), _keys=self._platform
        )

    def decrypt_resource(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        return decrypt_resource(self.config, resource)
