"""The carriers (快递公司) the platform knows, their tracking-number formats and the secret each
one signs its tracking notifications with.

Tracking-number formats (after removing spaces and upper-casing), from what the carriers print
on their waybills; a carrier without a known format accepts 6–30 letters and digits:

====  ============  ====================================================================
code  name          format
====  ============  ====================================================================
SF    顺丰速运      ``SF`` + 12–13 digits, or 12 digits (older waybills)
ZTO   中通快递      12–15 digits, first digit 2–7
YTO   圆通速递      ``YT`` + 13 digits
YD    韵达快递      13 or 15 digits
JD    京东物流      ``JD`` + 12–15 letters/digits (``JDVA…``, ``JDX…``)
EMS   中国邮政EMS   2 letters + 9 digits + 2 letters (UPU S10, ``EA123456789CN``) or 13 digits
STO   申通快递      12–13 digits
JTSD  极兔速递      ``JT`` + 13 digits
DBL   德邦快递      (no fixed format: 6–30 letters/digits)
====  ============  ====================================================================

Notification secret of carrier ``CODE``: the environment variable ``O2O_LOGISTICS_SECRET_CODE``
when set (what the operator agreed with the carrier); otherwise one derived from the platform's
secret key, ``hex(HMAC-SHA256(secret_key, "logistics-notify:CODE"))`` — stable across restarts,
different per carrier, and shown to the operator with ``carrier_secret``.

Signature of a notification (``POST /api/v1/logistics/notify/{carrier}``): header
``X-Logistics-Timestamp`` = Unix seconds, header ``X-Logistics-Signature`` =
``hex(HMAC-SHA256(secret, timestamp + "\\n" + raw body))``. The timestamp is inside the signature
so a captured request cannot be replayed with a fresh one; it must be within 5 minutes of now.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from o2o.config import Settings
from o2o.errors import NotFound, Unauthorized, ValidationFailed

SIGNATURE_HEADER = "x-logistics-signature"
TIMESTAMP_HEADER = "x-logistics-timestamp"
FRESHNESS_SECONDS = 5 * 60
SECRET_ENV_PREFIX = "O2O_LOGISTICS_SECRET_"

ANY_FORMAT = re.compile(r"[0-9A-Z]{6,30}")


@dataclass(frozen=True)
class Carrier:
    code: str
    name: str
    pattern: re.Pattern[str] | None = None
    format_hint: str = "6–30 位字母或数字"

    def valid_tracking_no(self, tracking_no: str) -> bool:
        return (self.pattern or ANY_FORMAT).fullmatch(tracking_no) is not None


CARRIERS: dict[str, Carrier] = {
    c.code: c
    for c in (
        Carrier(
            "SF",
            "顺丰速运",
            re.compile(r"SF[0-9]{12,13}|[0-9]{12}"),
            "SF 加 12–13 位数字，或 12 位数字",
        ),
        Carrier("ZTO", "中通快递", re.compile(r"[2-7][0-9]{11,14}"), "12–15 位数字"),
        Carrier("YTO", "圆通速递", re.compile(r"YT[0-9]{13}"), "YT 加 13 位数字"),
        Carrier("YD", "韵达快递", re.compile(r"[0-9]{13}|[0-9]{15}"), "13 或 15 位数字"),
        Carrier("JD", "京东物流", re.compile(r"JD[0-9A-Z]{12,15}"), "JD 加 12–15 位字母或数字"),
        Carrier(
            "EMS",
            "中国邮政EMS",
            re.compile(r"[A-Z]{2}[0-9]{9}[A-Z]{2}|[0-9]{13}"),
            "如 EA123456789CN，或 13 位数字",
        ),
        Carrier("STO", "申通快递", re.compile(r"[0-9]{12,13}"), "12–13 位数字"),
        Carrier("JTSD", "极兔速递", re.compile(r"JT[0-9]{13}"), "JT 加 13 位数字"),
        Carrier("DBL", "德邦快递"),
    )
}


def get_carrier(code: str) -> Carrier:
    carrier = CARRIERS.get(code.upper())
    if carrier is None:
        raise NotFound("不支持的快递公司", code="unknown_carrier")
    return carrier


def normalize_tracking_no(tracking_no: str) -> str:
    return re.sub(r"\s+", "", tracking_no).upper()


def check_tracking_no(carrier: Carrier, tracking_no: str) -> str:
    """The normalized number, or 422 when it does not fit the carrier's format."""
    normalized = normalize_tracking_no(tracking_no)
    if not carrier.valid_tracking_no(normalized):
        raise ValidationFailed(
            f"{carrier.name}运单号格式不正确（{carrier.format_hint}）",
            code="invalid_tracking_no",
            field="tracking_no",
        )
    return normalized


def carrier_secret(settings: Settings, code: str, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    configured = env.get(SECRET_ENV_PREFIX + code, "")
    if configured:
        return configured
    key = settings.resolved_secret_key().encode()
    return hmac.new(key, f"logistics-notify:{code}".encode(), hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    message = str(timestamp).encode() + b"\n" + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    settings: Settings, carrier: Carrier, headers: Mapping[str, str], body: bytes, now: float
) -> None:
    """401 unless the notification is signed with the carrier's secret and fresh."""
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER, "")
    signature = lowered.get(SIGNATURE_HEADER, "").strip().lower()
    if not signature or not timestamp:
        raise Unauthorized("缺少物流通知签名", code="signature_missing")
    if not re.fullmatch(r"[0-9]{1,12}", timestamp):
        raise Unauthorized("物流通知时间戳无效", code="timestamp_invalid")
    if abs(now - int(timestamp)) > FRESHNESS_SECONDS:
        raise Unauthorized("物流通知已过期", code="timestamp_stale")
    expected = sign(carrier_secret(settings, carrier.code), timestamp, body)
    if not hmac.compare_digest(expected, signature):
        raise Unauthorized("物流通知签名无效", code="signature_invalid")
