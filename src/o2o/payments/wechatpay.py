"""WeChat Pay API v3 adapter: direct-merchant and partner (service provider) modes.

Why not the ``wechatpayv3`` SDK: it talks through ``requests`` with a hard-coded gateway
(``Core._gate_way``, a private attribute) so it cannot be pointed at a local fake without
monkey-patching; it raises bare ``Exception`` with no status/code, cannot tell a network
failure (retry) from a refusal (do not); and its callback check does not enforce the
5-minute timestamp window. The wire formats are small, so we implement them here over
``cryptography`` (wechatpay_crypto.py) and a sync ``httpx`` client.

This module: errors, configuration, request shapes, signature verification and notification
decryption. The client is split along its sections: ``wechatpay_transport.py`` (signing,
failover, verified answers, platform keys — ``wechatpay_certs.py`` — and notifications) and
``wechatpay_client.py`` (the API calls); ``WeChatPayClient`` is importable from here.

Amounts are integer fen (分) throughout; WeChat Pay's JSON also uses fen.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import rsa

from o2o.payments.wechatpay_bill import TradeBill, parse_trade_bill, yuan_to_fen
from o2o.payments.wechatpay_certs import (
    PlatformCertificate,
    PlatformKeys,
)
from o2o.payments.wechatpay_crypto import (
    AEAD_ALGORITHM,
    SIGNATURE_SCHEME,
    aes_gcm_decrypt,
    load_public_key,
    response_message,
    rsa_verify,
)
from o2o.timeutil import CHINA_TZ

if TYPE_CHECKING:
    from o2o.payments.wechatpay_client import WeChatPayClient

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


def __getattr__(name: str) -> Any:
    # The client lives in wechatpay_client.py (it builds on this module); imported lazily so
    # ``from o2o.payments.wechatpay import WeChatPayClient`` works whichever is imported first.
    if name == "WeChatPayClient":
        from o2o.payments.wechatpay_client import WeChatPayClient

        return WeChatPayClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
