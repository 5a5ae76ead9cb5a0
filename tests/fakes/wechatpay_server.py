"""A local fake of the WeChat Pay API v3, served over real HTTP for tests.

It has its own platform key (public-key mode with a ``PUB_KEY_ID_...`` serial, or a
self-signed platform certificate), knows each merchant's API key, verifies the
``Authorization`` signature of every request, signs every response, and keeps orders,
combined orders, refunds, profit-sharing orders and trade bills in memory.

    with FakeWeChatPay() as fake:
        config = fake.merchant_config()              # direct merchant, wired to the fake
        client = WeChatPayClient(config)
        prepay_id = client.jsapi_prepay(...)
        note = fake.pay("ORDER-1")                   # paid; a signed, encrypted notification
        client.parse_notification(note.headers, note.body)
        fake.deliver("/api/v1/payments/wechatpay/notify", note, client=test_client)

Partner mode: ``fake.partner_config()`` (sp_mchid/sp_appid) and pass ``sub_mchid=`` per call.
Failure modes: ``fail_next(...)``, ``delay_next(...)``, ``tamper_next_response(...)``.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import hashlib
import json
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from o2o.money import apply_rate
from o2o.payments.wechatpay import WeChatPayConfig
from o2o.payments.wechatpay_crypto import (
    AEAD_ALGORITHM,
    SIGNATURE_SCHEME,
    aes_gcm_encrypt,
    certificate_serial,
    new_nonce,
    parse_authorization,
    private_key_pem,
    public_key_pem,
    request_message,
    response_message,
    rsa_oaep_decrypt,
    rsa_sign,
    rsa_verify,
)
from o2o.timeutil import CHINA_TZ

DEFAULT_MCHID = "1900000109"
DEFAULT_APPID = "wxd678efh567hg6787"
DEFAULT_SP_MCHID = "1900000100"
DEFAULT_SP_APPID = "wx8888888888888888"
DEFAULT_NOTIFY_URL = "https://o2o.example.com/api/v1/payments/wechatpay/notify"
H5_CASHIER_PATH = "/cgi-bin/mmpayweb-bin/checkmweb"
# 商户全称 of the fake's merchant accounts (a MERCHANT_ID receiver must be added with it).
MERCHANT_NAMES = {
    DEFAULT_SP_MCHID: "深圳市优选生活平台科技有限公司",
    DEFAULT_MCHID: "广州示例商贸有限公司",
}


def merchant_name(mchid: str) -> str:
    return MERCHANT_NAMES.get(mchid, f"示例商户{mchid}有限公司")


TRADE_STATE_DESC = {
    "NOTPAY": "订单未支付",
    "SUCCESS": "支付成功",
    "CLOSED": "订单已关闭",
    "REFUND": "转入退款",
    # Not reached by the fake's own flows; tests set them on an order to see them queried.
    "USERPAYING": "用户支付中",
    "REVOKED": "已撤销",
    "PAYERROR": "支付失败",
}
REFUND_EVENTS = {
    "SUCCESS": ("REFUND.SUCCESS", "退款成功"),
    "ABNORMAL": ("REFUND.ABNORMAL", "退款异常"),
    "CLOSED": ("REFUND.CLOSED", "退款关闭"),
}
BILL_HEADER = [
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "申请退款金额",
    "费率备注",
]
BILL_SUMMARY_HEADER = [
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
]


# --------------------------------------------------------------------------- keys


@functools.cache
def fake_rsa_key(label: str) -> rsa.RSAPrivateKey:
    """A 2048-bit key per label, generated once per process (RSA keygen is slow)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _self_signed_cert(
    key: rsa.RSAPrivateKey, serial: int, common_name: str, now: datetime | None = None
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = now or datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )


def _digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


# --------------------------------------------------------------------------- state


@dataclass
class FakeMerchant:
    mchid: str
    appid: str
    private_key: rsa.RSAPrivateKey
    serial_no: str
    apiv3_key: str
    name: str  # 商户全称, checked when the merchant is added as a MERCHANT_ID receiver


@dataclass
class FakePlatformCertificate:
    """One WeChat Pay platform certificate (平台证书) the fake lists at /v3/certificates."""

    serial_no: str  # byte-wise upper-case hex, as WeChat Pay writes it
    private_key: rsa.RSAPrivateKey
    pem: str
    effective_time: datetime
    expire_time: datetime


@dataclass
class FakeOrder:
    owner: str  # mchid that authenticated (sp_mchid in partner mode)
    mchid: str  # direct merchant / sub-order initiator
    appid: str
    sub_mchid: str | None
    sub_appid: str | None
    out_trade_no: str
    description: str
    total: int
    attach: str
    notify_url: str
    trade_type: str
    openid: str
    openid_kind: str  # openid | sp_openid | sub_openid
    profit_sharing: bool
    request_fingerprint: str
    time_expire: datetime | None = None
    combine_out_trade_no: str | None = None
    trade_state: str = "NOTPAY"
    transaction_id: str | None = None
    success_time: datetime | None = None
    prepay_id: str | None = None
    code_url: str | None = None
    h5_url: str | None = None
    shared_fen: int = 0
    unfrozen: bool = False


@dataclass
class FakeCombine:
    owner: str
    appid: str
    combine_out_trade_no: str
    order_keys: list[tuple[str, str, str]]
    notify_url: str
    trade_type: str
    openid: str
    request_fingerprint: str
    scene_info: dict[str, Any] | None
    prepay_id: str | None = None
    code_url: str | None = None
    h5_url: str | None = None


@dataclass
class FakeRefund:
    owner: str
    sub_mchid: str | None
    order_key: tuple[str, str, str]
    out_refund_no: str
    refund_id: str
    amount: int
    reason: str
    notify_url: str
    create_time: datetime
    status: str = "PROCESSING"
    success_time: datetime | None = None
    # 异常退款: how the operator had the ABNORMAL refund handled, and what was sent.
    abnormal_type: str = ""
    abnormal_request: dict[str, Any] | None = None


@dataclass
class FakeSharingOrder:
    owner: str
    sub_mchid: str | None
    transaction_id: str
    out_order_no: str
    order_id: str
    receivers: list[dict[str, Any]]
    unfreeze_unsplit: bool
    request_fingerprint: str
    state: str = "PROCESSING"


@dataclass
class FakeNotification:
    """A notification as WeChat Pay would POST it; ``response`` is set once delivered."""

    event_type: str
    resource: dict[str, Any]
    headers: dict[str, str]
    body: bytes
    notify_url: str
    response: httpx.Response | None = None


@dataclass
class FakeRequestRecord:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    mchid: str | None
    status: int = 0


@dataclass
class _Failure:
    status: int
    code: str
    message: str
    path_contains: str | None
    after: bool


class _Reject(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message


def _require(body: Mapping[str, Any], *names: str) -> None:
    for name in names:
        if body.get(name) in (None, ""):
            raise _Reject(
                400, "PARAM_ERROR", f"输入源“/body/{name}”映射到字段“{name}”必填性规则校验失败"
            )


def _check_h5_scene(body: Mapping[str, Any]) -> None:
    """H5 payments: scene_info.payer_client_ip and scene_info.h5_info.type are required."""
    scene = body.get("scene_info")
    if not isinstance(scene, dict) or not scene.get("payer_client_ip"):
        raise _Reject(400, "PARAM_ERROR", "scene_info.payer_client_ip 必填")
    h5_info = scene.get("h5_info")
    if not isinstance(h5_info, dict) or not h5_info.get("type"):
        raise _Reject(400, "PARAM_ERROR", "scene_info.h5_info.type 必填")
    if h5_info["type"] not in ("iOS", "Android", "Wap"):
        raise _Reject(400, "PARAM_ERROR", "h5_info.type 取值为 iOS、Android 或 Wap")


def _prepay_answer(order: Any, kind: str) -> dict[str, Any]:
    if kind == "jsapi":
        return {"prepay_id": order.prepay_id}
    if kind == "h5":
        return {"h5_url": order.h5_url}
    return {"code_url": order.code_url}


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _Reject(400, "PARAM_ERROR", f"{name} 必须为正整数(分)")
    return value


def _fingerprint(body: Mapping[str, Any], *drop: str) -> str:
    kept = {k: v for k, v in body.items() if k not in drop}
    return json.dumps(kept, sort_keys=True, ensure_ascii=False)


# --------------------------------------------------------------------------- the fake


class FakeWeChatPay:
    """In-memory WeChat Pay v3 on 127.0.0.1:<free port>; use as a context manager."""

    def __init__(
        self,
        *,
        platform_mode: Literal["public_key", "certificate"] = "public_key",
        certificate_serial_number: int | None = None,
        fresh_keys: bool = False,
        auto_complete_refunds: bool = False,
        require_receivers: bool = False,
        fee_rate_bp: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.platform_mode = platform_mode
        self.auto_complete_refunds = auto_complete_refunds
        self.require_receivers = require_receivers
        self.fee_rate_bp = fee_rate_bp
        self.clock = clock
        self._fresh_keys = fresh_keys
        label = f"fresh-{uuid.uuid4()}" if fresh_keys else "wechatpay-platform"
        self.platform_private_key = fake_rsa_key(label)
        # Certificate mode: every certificate listed at /v3/certificates (several during a
        # rotation); the last one signs. Serials are written byte-wise like WeChat Pay's
        # (``0798AB…``): pass ``certificate_serial_number`` to pin one.
        self.platform_certificates: list[FakePlatformCertificate] = []
        self.platform_certificate_pem: str | None = None
        if platform_mode == "certificate":
            self._add_certificate(self.platform_private_key, certificate_serial_number)
        else:
            self.platform_serial = "PUB_KEY_ID_0119000001092025010100000000" + _digits(4)
        self.platform_public_key_pem = public_key_pem(self.platform_private_key)
        # A day's bill is published this long after the day began: 10:00 the next day. Tests
        # that cannot move the fake's clock (it checks request timestamps) shorten it.
        self.bill_publish_delay = timedelta(hours=34)
        # Where WeChat Pay posts 分账动账 notifications to the platform as a receiver
        # (configured in the merchant platform, not per request).
        self.profit_sharing_notify_url = DEFAULT_NOTIFY_URL
        # H5 支付域名: where the H5 cashier lets the browser go back to (redirect_url).
        self.h5_domains = {"127.0.0.1", "testserver", "o2o.example.com"}
        self._lock = threading.RLock()
        self._merchants: dict[str, FakeMerchant] = {}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._route_table = self._routes()
        self.reset()

    # ------------------------------------------------------------------ platform certificates

    def _add_certificate(self, key: rsa.RSAPrivateKey, serial_number: int | None) -> None:
        number = serial_number or int(secrets.token_hex(16), 16)
        now = datetime.fromtimestamp(self.clock(), UTC)
        cert = _self_signed_cert(key, number, "Tenpay.com Root CA", now=now)
        listed = FakePlatformCertificate(
            serial_no=certificate_serial(cert),
            private_key=key,
            pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
            effective_time=now - timedelta(days=1),
            expire_time=now + timedelta(days=365),
        )
        self.platform_certificates.append(listed)
        self.platform_private_key = key
        self.platform_serial = listed.serial_no
        self.platform_certificate_pem = listed.pem
        self.platform_public_key_pem = public_key_pem(key)

    def rotate_certificate(
        self, *, serial_number: int | None = None, retire_old: bool = False
    ) -> FakePlatformCertificate:
        """WeChat Pay issues a new platform certificate and signs with it from now on; the
        old ones stay listed (``retire_old=True`` drops them)."""
        if self.platform_mode != "certificate":
            raise ValueError("rotate_certificate is for certificate mode")
        with self._lock:
            if retire_old:
                self.platform_certificates.clear()
            self._add_certificate(fake_rsa_key(f"fresh-{uuid.uuid4()}"), serial_number)
            return self.platform_certificates[-1]

    def _platform_key_for(self, serial: str) -> rsa.RSAPrivateKey | None:
        """The private key behind a serial we publish (a listed certificate or the key id)."""
        if self.platform_mode != "certificate":
            return self.platform_private_key if serial == self.platform_serial else None
        for listed in self.platform_certificates:
            if listed.serial_no == serial:
                return listed.private_key
        return None

    # ------------------------------------------------------------------ lifecycle

    def reset(self) -> None:
        """Forget orders, refunds, bills and failure modes (merchants and keys stay)."""
        with self._lock:
            self.orders: dict[tuple[str, str, str], FakeOrder] = {}
            self.combines: dict[tuple[str, str], FakeCombine] = {}
            self.refunds: dict[tuple[str, str, str], FakeRefund] = {}
            self.sharing_orders: dict[tuple[str, str, str], FakeSharingOrder] = {}
            self.receivers: dict[tuple[str, str], list[dict[str, Any]]] = {}
            self.received_names: list[str] = []
            self.requests: list[FakeRequestRecord] = []
            self._by_transaction: dict[str, tuple[str, str, str]] = {}
            self._bill_overrides: dict[tuple[str, str], str] = {}
            self._bill_files: dict[str, tuple[bytes, bool]] = {}
            self._bill_tampers = 0
            self.bills_held = False
            self._failures: list[_Failure] = []
            self._delays: list[float] = []
            self._tampers: list[str] = []

    def start(self) -> FakeWeChatPay:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._build_app(), log_level="warning", lifespan="off", access_log=False, ws="none"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake WeChat Pay server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeWeChatPay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._port is None:
            raise RuntimeError("start the fake first")
        return f"http://127.0.0.1:{self._port}"

    # ------------------------------------------------------------------ merchants / configs

    def merchant(self, mchid: str = DEFAULT_MCHID, appid: str | None = None) -> FakeMerchant:
        """The merchant account ``mchid`` (created with its own API key on first use)."""
        with self._lock:
            found = self._merchants.get(mchid)
            if found is None:
                label = f"fresh-{uuid.uuid4()}" if self._fresh_keys else f"merchant-{mchid}"
                found = FakeMerchant(
                    mchid=mchid,
                    appid=appid
                    or (DEFAULT_SP_APPID if mchid == DEFAULT_SP_MCHID else DEFAULT_APPID),
                    private_key=fake_rsa_key(label),
                    serial_no=secrets.token_hex(20).upper(),
                    apiv3_key=secrets.token_hex(16),
                    name=merchant_name(mchid),
                )
                self._merchants[mchid] = found
            return found

    def merchant_config(
        self,
        *,
        mchid: str = DEFAULT_MCHID,
        appid: str | None = None,
        partner: bool = False,
        notify_url: str = DEFAULT_NOTIFY_URL,
        **overrides: Any,
    ) -> WeChatPayConfig:
        """A ``WeChatPayConfig`` for ``mchid`` pointed at this fake."""
        m = self.merchant(mchid, appid)
        if self.platform_certificate_pem is not None:
            platform_key, platform_serial = self.platform_certificate_pem, ""
        else:
            platform_key, platform_serial = self.platform_public_key_pem, self.platform_serial
        values: dict[str, Any] = {
            "mchid": m.mchid,
            "appid": m.appid,
            "private_key": private_key_pem(m.private_key),
            "merchant_serial_no": m.serial_no,
            "apiv3_key": m.apiv3_key,
            "platform_public_key": platform_key,
            "platform_serial": platform_serial,
            "notify_url": notify_url,
            "base_url": self.base_url,
            "timeout": 5.0,
            "partner": partner,
        }
        values.update(overrides)
        return WeChatPayConfig(**values)

    def partner_config(
        self, *, sp_mchid: str = DEFAULT_SP_MCHID, sp_appid: str | None = None, **overrides: Any
    ) -> WeChatPayConfig:
        """A service-provider (服务商) config; calls then name a ``sub_mchid``."""
        return self.merchant_config(mchid=sp_mchid, appid=sp_appid, partner=True, **overrides)

    def provider_env(
        self, *, partner: bool = False, notify_url: str = DEFAULT_NOTIFY_URL
    ) -> dict[str, str]:
        """The ``O2O_WECHATPAY_*`` variables that point the ``wechatpay`` provider at this fake
        (the direct merchant, or with ``partner=True`` the service provider)."""
        config = (
            self.partner_config(notify_url=notify_url)
            if partner
            else self.merchant_config(notify_url=notify_url)
        )
        env = {
            "O2O_WECHATPAY_MODE": "partner" if partner else "direct",
            "O2O_WECHATPAY_MCHID": config.mchid,
            "O2O_WECHATPAY_APPID": config.appid,
            "O2O_WECHATPAY_PRIVATE_KEY": config.private_key,
            "O2O_WECHATPAY_CERT_SERIAL_NO": config.merchant_serial_no,
            "O2O_WECHATPAY_APIV3_KEY": config.apiv3_key,
            "O2O_WECHATPAY_NOTIFY_URL": notify_url,
            "O2O_WECHATPAY_BASE_URL": self.base_url,
            "O2O_WECHATPAY_TIMEOUT": "5",
            "O2O_WECHATPAY_MERCHANT_NAME": merchant_name(config.mchid),
        }
        if self.platform_certificate_pem is not None:
            env["O2O_WECHATPAY_PLATFORM_CERTIFICATE"] = self.platform_certificate_pem
        else:
            env["O2O_WECHATPAY_PUBLIC_KEY"] = self.platform_public_key_pem
            env["O2O_WECHATPAY_PUBLIC_KEY_ID"] = self.platform_serial
        return env

    # ------------------------------------------------------------------ failure modes

    def fail_next(
        self,
        status: int = 500,
        code: str = "SYSTEM_ERROR",
        message: str = "系统异常，请稍后重试",
        *,
        times: int = 1,
        path_contains: str | None = None,
        after: bool = False,
    ) -> None:
        """Answer the next ``times`` matching requests with an error.

        ``after=True`` processes the request first (state changes) and then answers with
        the error: the "applied but the answer was lost" case retries must survive.
        """
        with self._lock:
            self._failures.extend(
                _Failure(status, code, message, path_contains, after) for _ in range(times)
            )

    def delay_next(self, seconds: float, *, times: int = 1) -> None:
        """Sleep before handling the next requests (for client timeout tests)."""
        with self._lock:
            self._delays.extend([seconds] * times)

    def tamper_next_response(
        self,
        kind: Literal["signature", "serial", "timestamp", "body"] = "signature",
        *,
        times: int = 1,
    ) -> None:
        """Corrupt the signing of the next responses the way an attacker or a bug would."""
        with self._lock:
            self._tampers.extend([kind] * times)

    # ------------------------------------------------------------------ notifications

    def build_notification(
        self,
        event_type: str,
        resource: Mapping[str, Any],
        *,
        mchid: str | None = None,
        summary: str | None = None,
        original_type: str | None = None,
        timestamp: int | None = None,
        serial: str | None = None,
        sign_key: rsa.RSAPrivateKey | None = None,
        apiv3_key: str | None = None,
        event_id: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """A notification signed and AES-256-GCM encrypted exactly like WeChat Pay's."""
        kind = original_type or (
            "transaction"
            if event_type.startswith("TRANSACTION")
            else event_type.split(".")[0].lower()
        )
        key = apiv3_key or self.merchant(mchid or self._default_mchid()).apiv3_key
        nonce = secrets.token_hex(6)  # 12 characters, as WeChat Pay sends
        plaintext = json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode()
        envelope = {
            "id": event_id or str(uuid.uuid4()),
            "create_time": self._iso(self.clock()),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary or ("支付成功" if kind == "transaction" else event_type),
            "resource": {
                "original_type": kind,
                "algorithm": AEAD_ALGORITHM,
                "ciphertext": aes_gcm_encrypt(key.encode(), nonce, plaintext, kind),
                "associated_data": kind,
                "nonce": nonce,
            },
        }
        body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
        ts = str(int(self.clock()) if timestamp is None else timestamp)
        sig_nonce = new_nonce()
        signature = rsa_sign(
            sign_key or self.platform_private_key, response_message(ts, sig_nonce, body)
        )
        headers = {
            "Content-Type": "application/json",
            "Wechatpay-Timestamp": ts,
            "Wechatpay-Nonce": sig_nonce,
            "Wechatpay-Signature": signature,
            "Wechatpay-Serial": serial or self.platform_serial,
            "Wechatpay-Signature-Type": SIGNATURE_SCHEME,
        }
        return headers, body

    def deliver(
        self,
        url: str,
        notification: FakeNotification | tuple[dict[str, str], bytes],
        *,
        client: httpx.Client | None = None,
    ) -> httpx.Response:
        """POST a notification to ``url``; pass a Starlette ``TestClient`` as ``client``
        to deliver straight into an app under test."""
        if isinstance(notification, FakeNotification):
            headers, body = notification.headers, notification.body
        else:
            headers, body = notification
        if client is not None:
            return client.post(url, content=body, headers=headers)
        with httpx.Client(timeout=5) as http:
            return http.post(url, content=body, headers=headers)

    def pay(
        self,
        no: str,
        *,
        sub_mchid: str | None = None,
        deliver: bool = False,
        client: httpx.Client | None = None,
        notify_url: str | None = None,
        force: bool = False,
    ) -> FakeNotification:
        """The payer pays ``no`` (an out_trade_no or a combine_out_trade_no).

        Returns the TRANSACTION.SUCCESS notification; with ``deliver=True`` also POSTs it
        to the order's notify_url (or ``notify_url``), through ``client`` when given.
        """
        with self._lock:
            combine = [c for c in self.combines.values() if c.combine_out_trade_no == no]
            if combine:
                c = combine[0]
                orders = [self.orders[k] for k in c.order_keys]
                if any(o.trade_state != "NOTPAY" for o in orders):
                    raise ValueError(f"combined order {no} is not payable")
                for o in orders:
                    self._check_expiry(o, force)
                for o in orders:
                    self._mark_paid(o)
                resource = self._combine_view(c)
                owner, target = c.owner, c.notify_url
            else:
                order = self._find_order(no, sub_mchid)
                if order.combine_out_trade_no:
                    raise ValueError(f"{no} is part of {order.combine_out_trade_no}; pay that")
                if order.trade_state != "NOTPAY":
                    raise ValueError(f"order {no} is {order.trade_state}, not payable")
                self._check_expiry(order, force)
                self._mark_paid(order)
                resource = self._order_view(order)
                owner, target = order.owner, order.notify_url
        headers, body = self.build_notification(
            "TRANSACTION.SUCCESS", resource, mchid=owner, summary="支付成功"
        )
        note = FakeNotification(
            "TRANSACTION.SUCCESS", resource, headers, body, notify_url or target
        )
        if deliver:
            note.response = self.deliver(note.notify_url, note, client=client)
        return note

    def complete_refund(
        self,
        out_refund_no: str,
        *,
        status: Literal["SUCCESS", "ABNORMAL", "CLOSED"] = "SUCCESS",
        sub_mchid: str | None = None,
        deliver: bool = False,
        client: httpx.Client | None = None,
    ) -> FakeNotification:
        """Move a PROCESSING refund to ``status``; returns the REFUND.* notification."""
        with self._lock:
            matches = [
                r
                for r in self.refunds.values()
                if r.out_refund_no == out_refund_no
                and (sub_mchid is None or r.sub_mchid == sub_mchid)
            ]
            if len(matches) != 1:
                raise ValueError(f"{len(matches)} refunds numbered {out_refund_no}")
            refund = matches[0]
            if refund.status != "PROCESSING":
                raise ValueError(f"refund {out_refund_no} is already {refund.status}")
            refund.status = status
            if status == "SUCCESS":
                refund.success_time = self._now()
            resource = self._refund_notify_view(refund)
            event_type, summary = REFUND_EVENTS[status]
        headers, body = self.build_notification(
            event_type, resource, mchid=refund.owner, summary=summary, original_type="refund"
        )
        note = FakeNotification(event_type, resource, headers, body, refund.notify_url)
        if deliver:
            note.response = self.deliver(note.notify_url, note, client=client)
        return note

    def finish_profit_sharing(
        self,
        out_order_no: str,
        *,
        sub_mchid: str | None = None,
        deliver: bool = False,
        client: httpx.Client | None = None,
        notify_url: str | None = None,
    ) -> list[FakeNotification]:
        """WeChat Pay finished a PROCESSING profit-sharing order: receivers are paid.

        Returns the PROFITSHARING.SUCCESS (分账动账) notifications WeChat Pay sends to each
        receiver that is a merchant account of the sharing's owner (the platform taking its
        commission); ``deliver=True`` POSTs them to ``profit_sharing_notify_url`` (or
        ``notify_url``)."""
        with self._lock:
            matches = [
                s
                for s in self.sharing_orders.values()
                if s.out_order_no == out_order_no
                and (sub_mchid is None or s.sub_mchid == sub_mchid)
            ]
            if len(matches) != 1:
                raise ValueError(f"{len(matches)} sharing orders numbered {out_order_no}")
            sharing = matches[0]
            now = self._iso(self.clock())
            for r in sharing.receivers:
                r["result"] = "SUCCESS"
                r["finish_time"] = now
            sharing.state = "FINISHED"
            notes = [
                self._sharing_notification(sharing, r, now, notify_url)
                for r in sharing.receivers
                if r["type"] == "MERCHANT_ID" and r["account"] == sharing.owner
            ]
        if deliver:
            for note in notes:
                note.response = self.deliver(note.notify_url, note, client=client)
        return notes

    def _sharing_notification(
        self,
        sharing: FakeSharingOrder,
        receiver: Mapping[str, Any],
        success_time: str,
        notify_url: str | None,
    ) -> FakeNotification:
        resource: dict[str, Any] = (
            {"sp_mchid": sharing.owner, "sub_mchid": sharing.sub_mchid}
            if sharing.sub_mchid
            else {"mchid": sharing.owner}
        )
        resource.update(
            transaction_id=sharing.transaction_id,
            order_id=sharing.order_id,
            out_order_no=sharing.out_order_no,
            receiver={
                "type": receiver["type"],
                "account": receiver["account"],
                "amount": receiver["amount"],
                "description": receiver["description"],
            },
            success_time=success_time,
        )
        headers, body = self.build_notification(
            "PROFITSHARING.SUCCESS",
            resource,
            mchid=sharing.owner,
            summary="分账成功",
            original_type="profitsharing",
        )
        return FakeNotification(
            "PROFITSHARING.SUCCESS",
            resource,
            headers,
            body,
            notify_url or self.profit_sharing_notify_url,
        )

    def hold_bills(self, held: bool = True) -> None:
        """Answer every trade bill request with STATEMENT_CREATING (账单生成中) — a bill late
        beyond 10:00 — until called with ``False``."""
        with self._lock:
            self.bills_held = held

    def tamper_next_bill(self, times: int = 1) -> None:
        """Serve the next bill files with content that differs from the hash in the (signed)
        apply answer — what a corrupted or substituted download looks like."""
        with self._lock:
            self._bill_tampers += times

    def set_trade_bill(self, bill_date: date, text: str, *, mchid: str | None = None) -> None:
        """Serve ``text`` as the trade bill of ``bill_date`` instead of a generated one."""
        with self._lock:
            self._bill_overrides[(mchid or "*", bill_date.isoformat())] = text

    def order(self, out_trade_no: str, *, sub_mchid: str | None = None) -> FakeOrder:
        with self._lock:
            return self._find_order(out_trade_no, sub_mchid)

    # ------------------------------------------------------------------ internals: state

    def _default_mchid(self) -> str:
        return next(iter(self._merchants), DEFAULT_MCHID)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), CHINA_TZ)

    @staticmethod
    def _iso(ts: float | datetime) -> str:
        value = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts, CHINA_TZ)
        return value.astimezone(CHINA_TZ).isoformat(timespec="seconds")

    def _find_order(self, no: str, sub_mchid: str | None) -> FakeOrder:
        matches = [
            o
            for o in self.orders.values()
            if o.out_trade_no == no and (sub_mchid is None or o.sub_mchid == sub_mchid)
        ]
        if len(matches) != 1:
            raise ValueError(f"{len(matches)} orders numbered {no}; pass sub_mchid")
        return matches[0]

    def _check_expiry(self, order: FakeOrder, force: bool) -> None:
        if not force and order.time_expire is not None and self._now() > order.time_expire:
            raise ValueError(f"order {order.out_trade_no} expired at {order.time_expire}")

    def _mark_paid(self, order: FakeOrder) -> None:
        order.trade_state = "SUCCESS"
        order.transaction_id = "4200" + _digits(24)
        order.success_time = self._now()
        self._by_transaction[order.transaction_id] = self._key_of(order)

    @staticmethod
    def _key_of(order: FakeOrder) -> tuple[str, str, str]:
        return (order.owner, order.sub_mchid or "", order.out_trade_no)

    def _refunded(self, order: FakeOrder) -> int:
        key = self._key_of(order)
        return sum(
            r.amount
            for r in self.refunds.values()
            if r.order_key == key and r.status in {"PROCESSING", "SUCCESS"}
        )

    # ------------------------------------------------------------------ internals: views

    def _order_view(self, o: FakeOrder) -> dict[str, Any]:
        view: dict[str, Any]
        if o.sub_mchid:
            view = {"sp_appid": o.appid, "sp_mchid": o.owner, "sub_mchid": o.sub_mchid}
            if o.sub_appid:
                view["sub_appid"] = o.sub_appid
        else:
            view = {"appid": o.appid, "mchid": o.mchid}
        view.update(
            out_trade_no=o.out_trade_no,
            trade_state=o.trade_state,
            trade_state_desc=TRADE_STATE_DESC[o.trade_state],
            attach=o.attach,
            amount={"total": o.total, "currency": "CNY", "payer_currency": "CNY"},
        )
        if o.transaction_id:
            view.update(
                transaction_id=o.transaction_id,
                trade_type=o.trade_type,
                bank_type="OTHERS",
                success_time=self._iso(o.success_time or self._now()),
                payer={o.openid_kind: o.openid},
            )
            view["amount"]["payer_total"] = o.total
        return view

    def _combine_view(self, c: FakeCombine) -> dict[str, Any]:
        subs = []
        for key in c.order_keys:
            o = self.orders[key]
            item: dict[str, Any] = {
                "mchid": o.mchid,
                "trade_type": o.trade_type,
                "trade_state": o.trade_state,
                "attach": o.attach,
                "out_trade_no": o.out_trade_no,
                "amount": {"total_amount": o.total, "currency": "CNY", "payer_currency": "CNY"},
            }
            if o.sub_mchid:
                item["sub_mchid"] = o.sub_mchid
            if o.sub_appid:
                item["sub_appid"] = o.sub_appid
            if o.transaction_id:
                item.update(
                    bank_type="OTHERS",
                    success_time=self._iso(o.success_time or self._now()),
                    transaction_id=o.transaction_id,
                )
                item["amount"]["payer_amount"] = o.total
            subs.append(item)
        view: dict[str, Any] = {
            "combine_appid": c.appid,
            "combine_mchid": c.owner,
            "combine_out_trade_no": c.combine_out_trade_no,
            "sub_orders": subs,
        }
        if c.scene_info:
            view["scene_info"] = c.scene_info
        if c.openid:
            view["combine_payer_info"] = {"openid": c.openid}
        return view

    def _refund_amounts(self, r: FakeRefund) -> dict[str, Any]:
        total = self.orders[r.order_key].total
        return {
            "total": total,
            "refund": r.amount,
            "payer_total": total,
            "payer_refund": r.amount,
            "settlement_total": total,
            "settlement_refund": r.amount,
            "discount_refund": 0,
            "currency": "CNY",
            "from": [],
        }

    @staticmethod
    def _received_by(r: FakeRefund) -> tuple[str, str]:
        """(channel, user_received_account) of a refund, after any 异常退款 handling."""
        if r.abnormal_type == "USER_BANK_CARD" and r.abnormal_request:
            card = str(r.abnormal_request.get("bank_account", ""))
            return "OTHER_BANKCARD", f"{r.abnormal_request.get('bank_type', '')}尾号{card[-4:]}"
        if r.abnormal_type == "MERCHANT_BANK_CARD":
            return "OTHER_BANKCARD", "商户结算银行账户"
        return "ORIGINAL", "支付用户零钱"

    def _refund_view(self, r: FakeRefund) -> dict[str, Any]:
        o = self.orders[r.order_key]
        channel, account = self._received_by(r)
        view: dict[str, Any] = {
            "refund_id": r.refund_id,
            "out_refund_no": r.out_refund_no,
            "transaction_id": o.transaction_id,
            "out_trade_no": o.out_trade_no,
            "channel": channel,
            "user_received_account": account,
            "create_time": self._iso(r.create_time),
            "status": r.status,
            "funds_account": "AVAILABLE",
            "amount": self._refund_amounts(r),
            "promotion_detail": [],
        }
        if r.success_time:
            view["success_time"] = self._iso(r.success_time)
        return view

    def _refund_notify_view(self, r: FakeRefund) -> dict[str, Any]:
        o = self.orders[r.order_key]
        view: dict[str, Any] = (
            {"sp_mchid": r.owner, "sub_mchid": r.sub_mchid} if r.sub_mchid else {"mchid": o.mchid}
        )
        amounts = self._refund_amounts(r)
        view.update(
            out_trade_no=o.out_trade_no,
            transaction_id=o.transaction_id,
            refund_id=r.refund_id,
            out_refund_no=r.out_refund_no,
            refund_status=r.status,
            user_received_account=self._received_by(r)[1],
            amount={k: amounts[k] for k in ("total", "refund", "payer_total", "payer_refund")},
        )
        if r.success_time:
            view["success_time"] = self._iso(r.success_time)
        return view

    def _sharing_view(self, s: FakeSharingOrder) -> dict[str, Any]:
        view: dict[str, Any] = {"sub_mchid": s.sub_mchid} if s.sub_mchid else {}
        view.update(
            transaction_id=s.transaction_id,
            out_order_no=s.out_order_no,
            order_id=s.order_id,
            state=s.state,
            receivers=[dict(r) for r in s.receivers],
        )
        return view

    # ------------------------------------------------------------------ internals: HTTP

    def _build_app(self) -> Starlette:
        async def endpoint(request: Request) -> Response:
            body = await request.body()
            with self._lock:
                delay = self._delays.pop(0) if self._delays else 0.0
            if delay:
                await asyncio.sleep(delay)
            raw_path = request.scope.get("raw_path") or request.url.path.encode()
            query_string = request.scope.get("query_string", b"")
            signed_path = raw_path.decode("latin-1")
            if query_string:
                signed_path += "?" + query_string.decode("latin-1")
            return self._dispatch(request, signed_path, body)

        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return Starlette(
            routes=[
                Route(H5_CASHIER_PATH, self._h5_cashier, methods=["GET", "POST"]),
                Route("/{path:path}", endpoint, methods=methods),
            ]
        )

    # ------------------------------------------------------------------ the H5 cashier page

    def _h5_payable(self, prepay_marker: str) -> tuple[str, str | None, int] | None:
        """(number to pay, sub_mchid, amount) of the H5 order whose URL has this prepay id."""
        for c in self.combines.values():
            if c.h5_url and prepay_marker in c.h5_url:
                total = sum(self.orders[k].total for k in c.order_keys)
                return c.combine_out_trade_no, None, total
        for o in self.orders.values():
            if o.h5_url and prepay_marker in o.h5_url and not o.combine_out_trade_no:
                return o.out_trade_no, o.sub_mchid, o.total
        return None

    async def _h5_cashier(self, request: Request) -> Response:
        """WeChat's H5 cashier (中间页) as far as a browser test needs it: the prepay id must be
        one we issued and ``redirect_url`` on the merchant's H5 支付域名 (``h5_domains``);
        确认支付 pays, sends the notification, and goes back to ``redirect_url``."""
        prepay = request.query_params.get("prepay_id", "")
        redirect = request.query_params.get("redirect_url", "")
        with self._lock:
            found = self._h5_payable(f"prepay_id={prepay}&") if prepay else None
        if found is None:
            return Response("商家参数格式有误，请联系商家解决", media_type="text/plain")
        if urlsplit(redirect).hostname not in self.h5_domains:
            return Response("商家存在未配置的参数，请联系商家解决", media_type="text/plain")
        no, sub_mchid, total = found
        if request.method == "POST":
            await asyncio.to_thread(self.pay, no, sub_mchid=sub_mchid, deliver=True)
            return Response(status_code=303, headers={"Location": redirect})
        page = (
            '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>微信支付</title>'
            f"</head><body><h1>微信支付</h1><p data-testid=amount>¥{_yuan(total)}</p>"
            '<form method="post"><button type="submit">确认支付</button></form></body></html>'
        )
        return Response(page, media_type="text/html")

    def _routes(self) -> list[tuple[str, re.Pattern[str], Callable[..., tuple[int, Any]]]]:
        no = r"(?P<no>[^/]+)"
        table: list[tuple[str, str, Callable[..., tuple[int, Any]]]] = [
            ("POST", r"/v3/pay/transactions/(?P<kind>jsapi|native|h5)", self._h_prepay),
            ("POST", r"/v3/pay/partner/transactions/(?P<kind>jsapi|native|h5)", self._h_prepay),
            ("GET", rf"/v3/pay/transactions/(?P<by>out-trade-no|id)/{no}", self._h_query),
            ("GET", rf"/v3/pay/partner/transactions/(?P<by>out-trade-no|id)/{no}", self._h_query),
            ("POST", rf"/v3/pay/transactions/out-trade-no/{no}/close", self._h_close),
            ("POST", rf"/v3/pay/partner/transactions/out-trade-no/{no}/close", self._h_close),
            (
                "POST",
                r"/v3/combine-transactions/(?P<kind>jsapi|native|h5)",
                self._h_combine_prepay,
            ),
            ("GET", rf"/v3/combine-transactions/out-trade-no/{no}", self._h_combine_query),
            ("POST", rf"/v3/combine-transactions/out-trade-no/{no}/close", self._h_combine_close),
            ("POST", r"/v3/refund/domestic/refunds", self._h_refund),
            ("GET", rf"/v3/refund/domestic/refunds/{no}", self._h_refund_query),
            (
                "POST",
                rf"/v3/refund/domestic/refunds/{no}/apply-abnormal-refund",
                self._h_abnormal_refund,
            ),
            ("GET", r"/v3/certificates", self._h_certificates),
            ("POST", r"/v3/profitsharing/receivers/add", self._h_receiver_add),
            ("POST", r"/v3/profitsharing/orders/unfreeze", self._h_unfreeze),
            ("POST", r"/v3/profitsharing/orders", self._h_sharing),
            ("GET", rf"/v3/profitsharing/orders/{no}", self._h_sharing_query),
            ("GET", r"/v3/bill/tradebill", self._h_tradebill),
            ("GET", r"/v3/billdownload/file", self._h_bill_download),
        ]
        return [(m, re.compile(p + "$"), h) for m, p, h in table]

    def _dispatch(self, request: Request, signed_path: str, body: bytes) -> Response:
        path = request.url.path
        query = dict(request.query_params)
        record = FakeRequestRecord(request.method, path, query, None, None)
        with self._lock:
            self.requests.append(record)
            try:
                merchant = self._authenticate(request, signed_path, body)
                record.mchid = merchant.mchid
                payload: Any = {}
                if body:
                    try:
                        payload = json.loads(body)
                    except ValueError:
                        raise _Reject(400, "PARAM_ERROR", "请求体不是合法的JSON") from None
                    if not isinstance(payload, dict):
                        raise _Reject(400, "PARAM_ERROR", "请求体必须是JSON对象")
                record.body = payload
                failure = next(
                    (
                        f
                        for f in self._failures
                        if f.path_contains is None or f.path_contains in path
                    ),
                    None,
                )
                if failure is not None:
                    self._failures.remove(failure)
                    if not failure.after:
                        raise _Reject(failure.status, failure.code, failure.message)
                handler, groups = self._route(request.method, path)
                status, result = handler(
                    merchant=merchant, query=query, body=payload, request=request, **groups
                )
                if failure is not None:
                    raise _Reject(failure.status, failure.code, failure.message)
            except _Reject as exc:
                record.status = exc.status
                return self._json_response(exc.status, {"code": exc.code, "message": exc.message})
            record.status = status
            if isinstance(result, bytes):  # a bill file: a stream, not signed by WeChat Pay
                return Response(result, status_code=status, media_type="application/octet-stream")
            return self._json_response(status, result)

    def _route(
        self, method: str, path: str
    ) -> tuple[Callable[..., tuple[int, Any]], dict[str, str]]:
        for m, pattern, handler in self._route_table:
            match = pattern.match(path)
            if match and m == method:
                return handler, match.groupdict()
        raise _Reject(404, "NOT_FOUND", f"no such API: {method} {path}")

    def _authenticate(self, request: Request, signed_path: str, body: bytes) -> FakeMerchant:
        header = request.headers.get("authorization", "")
        try:
            auth = parse_authorization(header)
        except ValueError as exc:
            raise _Reject(401, "SIGN_ERROR", f"Authorization 格式错误: {exc}") from None
        merchant = self._merchants.get(auth["mchid"])
        if merchant is None:
            raise _Reject(401, "SIGN_ERROR", "商户号不存在或未配置API证书")
        if auth["serial_no"].upper() != merchant.serial_no:
            raise _Reject(401, "SIGN_ERROR", "商户证书序列号有误")
        try:
            signed_at = int(auth["timestamp"])
        except ValueError:
            raise _Reject(401, "SIGN_ERROR", "timestamp 格式错误") from None
        if abs(self.clock() - signed_at) > 300:
            raise _Reject(401, "SIGN_ERROR", "请求时间戳与当前时间相差超过5分钟")
        message = request_message(
            request.method, signed_path, auth["timestamp"], auth["nonce_str"], body
        )
        if not rsa_verify(merchant.private_key.public_key(), message, auth["signature"]):
            raise _Reject(401, "SIGN_ERROR", "签名错误，验签失败")
        return merchant

    def _json_response(self, status: int, payload: Any) -> Response:
        body = (
            b""
            if payload is None
            else json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        )
        tamper = self._tampers.pop(0) if self._tampers else None
        timestamp = int(self.clock()) - (600 if tamper == "timestamp" else 0)
        nonce = new_nonce()
        signed_body = body + b" " if tamper == "signature" else body
        signature = rsa_sign(
            self.platform_private_key, response_message(str(timestamp), nonce, signed_body)
        )
        if tamper == "body" and body:
            body = body.replace(b'"', b"'", 1) if b'"' in body else body + b" "
        headers = {
            "Request-ID": uuid.uuid4().hex,
            "Wechatpay-Timestamp": str(timestamp),
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": signature,
            "Wechatpay-Serial": "PUB_KEY_ID_0000000000WRONG"
            if tamper == "serial"
            else self.platform_serial,
            "Wechatpay-Signature-Type": SIGNATURE_SCHEME,
        }
        if status == 204 or not body:
            return Response(status_code=status, headers=headers)
        return Response(body, status_code=status, headers=headers, media_type="application/json")

    # ------------------------------------------------------------------ handlers: orders

    @staticmethod
    def _ids(
        merchant: FakeMerchant, body: Mapping[str, Any], partner: bool
    ) -> tuple[str, str | None]:
        """Check the merchant ids in a body; returns (appid, sub_mchid)."""
        if partner:
            _require(body, "sp_appid", "sp_mchid", "sub_mchid")
            if body["sp_mchid"] != merchant.mchid:
                raise _Reject(400, "PARAM_ERROR", "sp_mchid 与 Authorization 中的商户号不一致")
            if body["sp_appid"] != merchant.appid:
                raise _Reject(400, "APPID_MCHID_NOT_MATCH", "sp_appid和sp_mchid不匹配")
            return body["sp_appid"], str(body["sub_mchid"])
        _require(body, "appid", "mchid")
        if body["mchid"] != merchant.mchid:
            raise _Reject(400, "PARAM_ERROR", "mchid 与 Authorization 中的商户号不一致")
        if body["appid"] != merchant.appid:
            raise _Reject(400, "APPID_MCHID_NOT_MATCH", "AppID和mch_id不匹配")
        return body["appid"], None

    @staticmethod
    def _parse_expire(value: Any) -> datetime | None:
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            raise _Reject(400, "PARAM_ERROR", "time_expire 格式错误，应为 RFC 3339") from None
        if parsed.tzinfo is None:
            raise _Reject(400, "PARAM_ERROR", "time_expire 需要时区")
        return parsed

    def _h_prepay(
        self, *, merchant: FakeMerchant, body: dict[str, Any], request: Request, kind: str, **_: Any
    ) -> tuple[int, Any]:
        partner = "/partner/" in request.url.path
        appid, sub_mchid = self._ids(merchant, body, partner)
        _require(body, "description", "out_trade_no", "notify_url", "amount")
        total = _positive_int(body["amount"].get("total"), "amount.total")
        if body["amount"].get("currency", "CNY") != "CNY":
            raise _Reject(400, "PARAM_ERROR", "currency 仅支持 CNY")
        openid, openid_kind = "", "openid"
        if kind == "jsapi":
            payer = body.get("payer") or {}
            for candidate in ("sub_openid", "sp_openid") if partner else ("openid",):
                if payer.get(candidate):
                    openid, openid_kind = payer[candidate], candidate
                    break
            if not openid:
                raise _Reject(400, "PARAM_ERROR", "payer 必填")
            if openid_kind == "sub_openid" and not body.get("sub_appid"):
                raise _Reject(400, "PARAM_ERROR", "使用 sub_openid 时 sub_appid 必填")
        elif kind == "h5":
            _check_h5_scene(body)
        expire = self._parse_expire(body.get("time_expire"))
        key = (merchant.mchid, sub_mchid or "", str(body["out_trade_no"]))
        fingerprint = _fingerprint(body, "time_expire") + kind
        existing = self.orders.get(key)
        if existing is not None:
            if existing.trade_state in {"SUCCESS", "REFUND"}:
                raise _Reject(400, "ORDERPAID", "该订单已支付")
            if existing.trade_state == "CLOSED":
                raise _Reject(400, "ORDER_CLOSED", "订单已关闭")
            if existing.request_fingerprint != fingerprint:
                raise _Reject(403, "OUT_TRADE_NO_USED", "商户订单号重复")
            return 200, _prepay_answer(existing, kind)
        order = FakeOrder(
            owner=merchant.mchid,
            mchid=merchant.mchid,
            appid=appid,
            sub_mchid=sub_mchid,
            sub_appid=body.get("sub_appid"),
            out_trade_no=str(body["out_trade_no"]),
            description=str(body["description"]),
            total=total,
            attach=str(body.get("attach", "")),
            notify_url=str(body["notify_url"]),
            trade_type=kind.upper(),
            openid=openid,
            openid_kind=openid_kind,
            profit_sharing=bool((body.get("settle_info") or {}).get("profit_sharing")),
            request_fingerprint=fingerprint,
            time_expire=expire,
        )
        if kind == "jsapi":
            order.prepay_id = (
                "wx" + datetime.now(CHINA_TZ).strftime("%d%H%M%S") + secrets.token_hex(12)
            )
        elif kind == "h5":
            order.h5_url = self._h5_url()
        else:
            order.code_url = "weixin://wxpay/bizpayurl?pr=" + secrets.token_urlsafe(6)
        self.orders[key] = order
        return 200, _prepay_answer(order, kind)

    def _h5_url(self) -> str:
        # WeChat's is https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id=…&package=…
        prepay = "wx" + datetime.now(CHINA_TZ).strftime("%d%H%M%S") + secrets.token_hex(12)
        return (
            f"{self.base_url}{H5_CASHIER_PATH}?prepay_id={prepay}"
            f"&package={secrets.randbelow(10**10):010d}"
        )

    def _order_from_query(
        self, merchant: FakeMerchant, query: Mapping[str, str], partner: bool
    ) -> str | None:
        if partner:
            if query.get("sp_mchid") != merchant.mchid or not query.get("sub_mchid"):
                raise _Reject(400, "PARAM_ERROR", "sp_mchid/sub_mchid 有误")
            return query["sub_mchid"]
        if query.get("mchid") != merchant.mchid:
            raise _Reject(400, "PARAM_ERROR", "mchid 与 Authorization 中的商户号不一致")
        return None

    def _h_query(
        self,
        *,
        merchant: FakeMerchant,
        query: dict[str, str],
        request: Request,
        by: str,
        no: str,
        **_: Any,
    ) -> tuple[int, Any]:
        sub_mchid = self._order_from_query(merchant, query, "/partner/" in request.url.path)
        if by == "id":
            key = self._by_transaction.get(no)
            if key is None or key[:2] != (merchant.mchid, sub_mchid or ""):
                raise _Reject(404, "ORDER_NOT_EXIST", "订单不存在")
        else:
            key = (merchant.mchid, sub_mchid or "", no)
        order = self.orders.get(key)
        if order is None:
            raise _Reject(404, "ORDER_NOT_EXIST", "订单不存在")
        return 200, self._order_view(order)

    def _h_close(
        self, *, merchant: FakeMerchant, body: dict[str, Any], request: Request, no: str, **_: Any
    ) -> tuple[int, Any]:
        sub_mchid = self._order_from_query(merchant, body, "/partner/" in request.url.path)
        order = self.orders.get((merchant.mchid, sub_mchid or "", no))
        if order is None:
            raise _Reject(404, "ORDER_NOT_EXIST", "订单不存在")
        if order.trade_state in {"SUCCESS", "REFUND"}:
            raise _Reject(400, "ORDERPAID", "订单已支付，不能关单")
        order.trade_state = "CLOSED"
        return 204, None

    # ------------------------------------------------------------------ handlers: combine

    def _h_combine_prepay(
        self, *, merchant: FakeMerchant, body: dict[str, Any], kind: str, **_: Any
    ) -> tuple[int, Any]:
        _require(body, "combine_appid", "combine_mchid", "combine_out_trade_no", "sub_orders")
        _require(body, "notify_url")
        if body["combine_mchid"] != merchant.mchid:
            raise _Reject(400, "PARAM_ERROR", "combine_mchid 与 Authorization 中的商户号不一致")
        if body["combine_appid"] != merchant.appid:
            raise _Reject(400, "APPID_MCHID_NOT_MATCH", "combine_appid和combine_mchid不匹配")
        subs = body["sub_orders"]
        if not isinstance(subs, list) or not 2 <= len(subs) <= 50:
            raise _Reject(400, "PARAM_ERROR", "sub_orders 数量须在2到50之间")
        openid = ""
        if kind == "jsapi":
            openid = str((body.get("combine_payer_info") or {}).get("openid") or "")
            if not openid:
                raise _Reject(400, "PARAM_ERROR", "combine_payer_info.openid 必填")
        elif kind == "h5":
            _check_h5_scene(body)
        else:
            if not (body.get("scene_info") or {}).get("payer_client_ip"):
                raise _Reject(400, "PARAM_ERROR", "scene_info.payer_client_ip 必填")
        combine_no = str(body["combine_out_trade_no"])
        fingerprint = _fingerprint(body, "time_expire") + kind
        existing = self.combines.get((merchant.mchid, combine_no))
        if existing is not None:
            states = {self.orders[k].trade_state for k in existing.order_keys}
            if states & {"SUCCESS", "REFUND"}:
                raise _Reject(400, "ORDERPAID", "该订单已支付")
            if "CLOSED" in states:
                raise _Reject(400, "ORDER_CLOSED", "订单已关闭")
            if existing.request_fingerprint != fingerprint:
                raise _Reject(403, "OUT_TRADE_NO_USED", "商户订单号重复")
            return 200, _prepay_answer(existing, kind)
        expire = self._parse_expire(body.get("time_expire"))
        new_orders: list[FakeOrder] = []
        for sub in subs:
            _require(sub, "mchid", "attach", "amount", "out_trade_no", "description")
            total = _positive_int(sub["amount"].get("total_amount"), "amount.total_amount")
            sub_mchid = sub.get("sub_mchid") or None
            owner = merchant.mchid if sub_mchid else str(sub["mchid"])
            key = (owner, sub_mchid or "", str(sub["out_trade_no"]))
            if key in self.orders or any(self._key_of(o) == key for o in new_orders):
                raise _Reject(
                    403, "OUT_TRADE_NO_USED", f"子单商户订单号重复: {sub['out_trade_no']}"
                )
            new_orders.append(
                FakeOrder(
                    owner=owner,
                    mchid=str(sub["mchid"]),
                    appid=str(body["combine_appid"]),
                    sub_mchid=sub_mchid,
                    sub_appid=sub.get("sub_appid"),
                    out_trade_no=str(sub["out_trade_no"]),
                    description=str(sub["description"]),
                    total=total,
                    attach=str(sub["attach"]),
                    notify_url=str(body["notify_url"]),
                    trade_type=kind.upper(),
                    openid=openid,
                    openid_kind="sp_openid" if sub_mchid else "openid",
                    profit_sharing=bool((sub.get("settle_info") or {}).get("profit_sharing")),
                    request_fingerprint=fingerprint,
                    time_expire=expire,
                    combine_out_trade_no=combine_no,
                )
            )
        combine = FakeCombine(
            owner=merchant.mchid,
            appid=str(body["combine_appid"]),
            combine_out_trade_no=combine_no,
            order_keys=[self._key_of(o) for o in new_orders],
            notify_url=str(body["notify_url"]),
            trade_type=kind.upper(),
            openid=openid,
            request_fingerprint=fingerprint,
            scene_info=body.get("scene_info"),
        )
        for o in new_orders:
            self.orders[self._key_of(o)] = o
        self.combines[(merchant.mchid, combine_no)] = combine
        if kind == "jsapi":
            combine.prepay_id = "wx" + secrets.token_hex(16)
        elif kind == "h5":
            combine.h5_url = self._h5_url()
        else:
            combine.code_url = "weixin://wxpay/bizpayurl?pr=" + secrets.token_urlsafe(6)
        return 200, _prepay_answer(combine, kind)

    def _h_combine_query(self, *, merchant: FakeMerchant, no: str, **_: Any) -> tuple[int, Any]:
        combine = self.combines.get((merchant.mchid, no))
        if combine is None:
            raise _Reject(404, "ORDER_NOT_EXIST", "订单不存在")
        return 200, self._combine_view(combine)

    def _h_combine_close(
        self, *, merchant: FakeMerchant, body: dict[str, Any], no: str, **_: Any
    ) -> tuple[int, Any]:
        _require(body, "combine_appid", "sub_orders")
        combine = self.combines.get((merchant.mchid, no))
        if combine is None:
            raise _Reject(404, "ORDER_NOT_EXIST", "订单不存在")
        wanted = {
            (str(s.get("out_trade_no")), s.get("sub_mchid") or "") for s in body["sub_orders"]
        }
        orders = [self.orders[k] for k in combine.order_keys]
        known = {(o.out_trade_no, o.sub_mchid or "") for o in orders}
        if not wanted <= known:
            raise _Reject(400, "PARAM_ERROR", "sub_orders 与合单不匹配")
        targets = [o for o in orders if (o.out_trade_no, o.sub_mchid or "") in wanted]
        if any(o.trade_state in {"SUCCESS", "REFUND"} for o in targets):
            raise _Reject(400, "ORDERPAID", "订单已支付，不能关单")
        for o in targets:
            o.trade_state = "CLOSED"
        return 204, None

    # ------------------------------------------------------------------ handlers: refunds

    def _h_refund(
        self, *, merchant: FakeMerchant, body: dict[str, Any], **_: Any
    ) -> tuple[int, Any]:
        _require(body, "out_refund_no", "amount")
        sub_mchid = body.get("sub_mchid") or None
        amount = body["amount"]
        refund_fen = _positive_int(amount.get("refund"), "amount.refund")
        total_fen = _positive_int(amount.get("total"), "amount.total")
        if amount.get("currency", "CNY") != "CNY":
            raise _Reject(400, "PARAM_ERROR", "currency 仅支持 CNY")
        if body.get("transaction_id"):
            key = self._by_transaction.get(str(body["transaction_id"]))
            if key is None or key[:2] != (merchant.mchid, sub_mchid or ""):
                raise _Reject(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        elif body.get("out_trade_no"):
            key = (merchant.mchid, sub_mchid or "", str(body["out_trade_no"]))
        else:
            raise _Reject(400, "PARAM_ERROR", "transaction_id 和 out_trade_no 必须二选一")
        order = self.orders.get(key)
        if order is None:
            raise _Reject(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        refund_key = (merchant.mchid, sub_mchid or "", str(body["out_refund_no"]))
        existing = self.refunds.get(refund_key)
        if existing is not None:
            if existing.order_key != key or existing.amount != refund_fen:
                raise _Reject(400, "INVALID_REQUEST", "商户退款单号已存在，且参数不一致")
            return 200, self._refund_view(existing)
        if order.trade_state not in {"SUCCESS", "REFUND"}:
            raise _Reject(400, "INVALID_REQUEST", "订单未支付，不能退款")
        if total_fen != order.total:
            raise _Reject(400, "PARAM_ERROR", "amount.total 与原订单金额不一致")
        if refund_fen > order.total - self._refunded(order) - order.shared_fen:
            raise _Reject(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        refund = FakeRefund(
            owner=merchant.mchid,
            sub_mchid=sub_mchid,
            order_key=key,
            out_refund_no=str(body["out_refund_no"]),
            refund_id="5030" + _digits(25),
            amount=refund_fen,
            reason=str(body.get("reason", "")),
            notify_url=str(body.get("notify_url", "")),
            create_time=self._now(),
        )
        if self.auto_complete_refunds:
            refund.status, refund.success_time = "SUCCESS", self._now()
        self.refunds[refund_key] = refund
        order.trade_state = "REFUND"
        return 200, self._refund_view(refund)

    def _h_refund_query(
        self, *, merchant: FakeMerchant, query: dict[str, str], no: str, **_: Any
    ) -> tuple[int, Any]:
        refund = self.refunds.get((merchant.mchid, query.get("sub_mchid", ""), no))
        if refund is None:
            raise _Reject(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return 200, self._refund_view(refund)

    def _h_abnormal_refund(
        self,
        *,
        merchant: FakeMerchant,
        body: dict[str, Any],
        request: Request,
        no: str,
        **_: Any,
    ) -> tuple[int, Any]:
        """发起异常退款 (POST /v3/refund/domestic/refunds/{refund_id}/apply-abnormal-refund)."""
        _require(body, "out_refund_no", "type")
        sub_mchid = body.get("sub_mchid") or None
        refund = self.refunds.get((merchant.mchid, sub_mchid or "", str(body["out_refund_no"])))
        if refund is None or refund.refund_id != no:
            raise _Reject(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        kind = body["type"]
        if kind not in {"USER_BANK_CARD", "MERCHANT_BANK_CARD"}:
            raise _Reject(400, "PARAM_ERROR", f"type 不合法: {kind}")
        sent: dict[str, Any] = {"type": kind}
        if kind == "USER_BANK_CARD":
            # 退款至用户银行卡: bank type, the card number and the payer's name (encrypted).
            _require(body, "bank_type", "bank_account", "real_name")
            sent["bank_type"] = str(body["bank_type"])
            sent["bank_account"] = self._decrypt_name(request, str(body["bank_account"]))
            sent["real_name"] = self._decrypt_name(request, str(body["real_name"]))
            if not sent["bank_account"].isdigit():
                raise _Reject(400, "PARAM_ERROR", "bank_account 不是有效的银行卡号")
        if refund.status != "ABNORMAL":
            raise _Reject(400, "INVALID_REQUEST", "退款单状态不是退款异常，不能发起异常退款")
        refund.status = "PROCESSING"
        refund.abnormal_type = kind
        refund.abnormal_request = sent
        return 200, self._refund_view(refund)

    # ------------------------------------------------------------------ handlers: certificates

    def _h_certificates(self, *, merchant: FakeMerchant, **_: Any) -> tuple[int, Any]:
        """下载平台证书: each listed certificate encrypted with the caller's APIv3 key."""
        if self.platform_mode != "certificate":
            raise _Reject(404, "RESOURCE_NOT_EXISTS", "商户已使用微信支付公钥，无平台证书")
        data = []
        for listed in self.platform_certificates:
            nonce = secrets.token_hex(6)
            data.append(
                {
                    "serial_no": listed.serial_no,
                    "effective_time": self._iso(listed.effective_time),
                    "expire_time": self._iso(listed.expire_time),
                    "encrypt_certificate": {
                        "algorithm": AEAD_ALGORITHM,
                        "nonce": nonce,
                        "associated_data": "certificate",
                        "ciphertext": aes_gcm_encrypt(
                            merchant.apiv3_key.encode(),
                            nonce,
                            listed.pem.encode("ascii"),
                            "certificate",
                        ),
                    },
                }
            )
        return 200, {"data": data}

    # ------------------------------------------------------------------ handlers: sharing

    def _decrypt_name(self, request: Request, ciphertext: str) -> str:
        """A sensitive field: encrypted with the platform key the ``Wechatpay-Serial`` header
        names (the public key id or a listed certificate's serial)."""
        serial = request.headers.get("wechatpay-serial", "")
        key = self._platform_key_for(serial) if serial else None
        if key is None:
            raise _Reject(400, "PARAM_ERROR", "Wechatpay-Serial 与加密所用的平台公钥不一致")
        try:
            return rsa_oaep_decrypt(key, ciphertext)
        except ValueError:
            raise _Reject(400, "PARAM_ERROR", "敏感信息解密失败") from None

    def _h_receiver_add(
        self, *, merchant: FakeMerchant, body: dict[str, Any], request: Request, **_: Any
    ) -> tuple[int, Any]:
        _require(body, "appid", "type", "account", "relation_type")
        if body["type"] not in {"MERCHANT_ID", "PERSONAL_OPENID", "PERSONAL_SUB_OPENID"}:
            raise _Reject(400, "PARAM_ERROR", f"type 不合法: {body['type']}")
        if body["type"] == "MERCHANT_ID":
            # 分账接收方类型是MERCHANT_ID时，name 是商户全称（必传，加密）.
            _require(body, "name")
        receiver = {k: body[k] for k in ("type", "account", "relation_type") if k in body}
        if body.get("name"):
            receiver["name"] = self._decrypt_name(request, str(body["name"]))
            self.received_names.append(receiver["name"])
            known = self._merchants.get(str(body["account"]))
            if body["type"] == "MERCHANT_ID" and known and receiver["name"] != known.name:
                raise _Reject(400, "INVALID_REQUEST", "分账接收方全称与商户号不匹配")
        scope = (merchant.mchid, body.get("sub_mchid") or "")
        self.receivers.setdefault(scope, []).append(receiver)
        answer = {k: v for k, v in body.items() if k not in {"appid", "name"}}
        return 200, answer

    def _sharing_order(
        self, merchant: FakeMerchant, transaction_id: str, sub_mchid: str | None
    ) -> FakeOrder:
        key = self._by_transaction.get(transaction_id)
        if key is None or key[:2] != (merchant.mchid, sub_mchid or ""):
            raise _Reject(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        order = self.orders[key]
        if not order.profit_sharing:
            raise _Reject(
                400, "INVALID_REQUEST", "该笔订单下单时未指定分账(settle_info.profit_sharing)"
            )
        if order.unfrozen:
            raise _Reject(400, "INVALID_REQUEST", "订单剩余资金已解冻，不能再分账")
        return order

    def _h_sharing(
        self, *, merchant: FakeMerchant, body: dict[str, Any], request: Request, **_: Any
    ) -> tuple[int, Any]:
        _require(body, "appid", "transaction_id", "out_order_no", "receivers")
        if not isinstance(body.get("unfreeze_unsplit"), bool):
            raise _Reject(400, "PARAM_ERROR", "unfreeze_unsplit 必填")
        sub_mchid = body.get("sub_mchid") or None
        scope_key = (merchant.mchid, sub_mchid or "", str(body["out_order_no"]))
        # Names are RSA-OAEP encrypted (randomised), so a retry is compared without them.
        fingerprint = json.dumps(
            [
                body["transaction_id"],
                body["unfreeze_unsplit"],
                [(r.get("type"), r.get("account"), r.get("amount")) for r in body["receivers"]],
            ],
            ensure_ascii=False,
        )
        existing = self.sharing_orders.get(scope_key)
        if existing is not None:
            if existing.request_fingerprint != fingerprint:
                raise _Reject(400, "INVALID_REQUEST", "商户分账单号已存在，且参数不一致")
            return 200, self._sharing_view(existing)
        order = self._sharing_order(merchant, str(body["transaction_id"]), sub_mchid)
        receivers = []
        allowed = self.receivers.get((merchant.mchid, sub_mchid or ""), [])
        for item in body["receivers"]:
            _require(item, "type", "account", "amount", "description")
            if item["type"] not in {"MERCHANT_ID", "PERSONAL_OPENID", "PERSONAL_SUB_OPENID"}:
                raise _Reject(400, "PARAM_ERROR", f"receivers.type 不合法: {item['type']}")
            amount = _positive_int(item["amount"], "receivers.amount")
            if item.get("name"):
                self.received_names.append(self._decrypt_name(request, str(item["name"])))
            if self.require_receivers and not any(
                r["type"] == item["type"] and r["account"] == item["account"] for r in allowed
            ):
                raise _Reject(400, "RECEIVER_INVALID", "分账接收方未添加或已删除")
            receivers.append(
                {
                    "amount": amount,
                    "description": str(item["description"]),
                    "type": item["type"],
                    "account": item["account"],
                    "result": "PENDING",
                    "fail_reason": "",
                    "detail_id": "3601" + _digits(25),
                    "create_time": self._iso(self.clock()),
                    "finish_time": "",
                }
            )
        wanted = sum(r["amount"] for r in receivers)
        available = order.total - order.shared_fen - self._refunded(order)
        if wanted > available:
            raise _Reject(400, "NOT_ENOUGH", "分账金额超过订单剩余可分金额")
        order.shared_fen += wanted
        if body["unfreeze_unsplit"]:
            order.unfrozen = True
        sharing = FakeSharingOrder(
            owner=merchant.mchid,
            sub_mchid=sub_mchid,
            transaction_id=str(body["transaction_id"]),
            out_order_no=str(body["out_order_no"]),
            order_id="3008" + _digits(24),
            receivers=receivers,
            unfreeze_unsplit=bool(body["unfreeze_unsplit"]),
            request_fingerprint=fingerprint,
        )
        self.sharing_orders[scope_key] = sharing
        return 200, self._sharing_view(sharing)

    def _h_unfreeze(
        self, *, merchant: FakeMerchant, body: dict[str, Any], **_: Any
    ) -> tuple[int, Any]:
        _require(body, "transaction_id", "out_order_no", "description")
        sub_mchid = body.get("sub_mchid") or None
        scope_key = (merchant.mchid, sub_mchid or "", str(body["out_order_no"]))
        existing = self.sharing_orders.get(scope_key)
        if existing is not None:
            return 200, self._sharing_view(existing)
        order = self._sharing_order(merchant, str(body["transaction_id"]), sub_mchid)
        remaining = order.total - order.shared_fen - self._refunded(order)
        order.unfrozen = True
        sharing = FakeSharingOrder(
            owner=merchant.mchid,
            sub_mchid=sub_mchid,
            transaction_id=str(body["transaction_id"]),
            out_order_no=str(body["out_order_no"]),
            order_id="3008" + _digits(24),
            receivers=[
                {
                    "amount": remaining,
                    "description": "解冻给分账方",
                    "type": "MERCHANT_ID",
                    "account": sub_mchid or order.mchid,
                    "result": "PENDING",
                    "fail_reason": "",
                    "detail_id": "3601" + _digits(25),
                    "create_time": self._iso(self.clock()),
                    "finish_time": "",
                }
            ],
            unfreeze_unsplit=True,
            request_fingerprint=_fingerprint(body),
        )
        self.sharing_orders[scope_key] = sharing
        return 200, self._sharing_view(sharing)

    def _h_sharing_query(
        self, *, merchant: FakeMerchant, query: dict[str, str], no: str, **_: Any
    ) -> tuple[int, Any]:
        sharing = self.sharing_orders.get((merchant.mchid, query.get("sub_mchid", ""), no))
        if sharing is None or sharing.transaction_id != query.get("transaction_id"):
            raise _Reject(404, "RESOURCE_NOT_EXISTS", "分账单不存在")
        return 200, self._sharing_view(sharing)

    # ------------------------------------------------------------------ handlers: bills

    def trade_bill_text(
        self, merchant_id: str, bill_date: date, sub_mchid: str | None = None
    ) -> str:
        """The trade bill (ALL) this fake would serve for ``bill_date`` (Beijing time)."""
        with self._lock:
            override = self._bill_overrides.get(
                (merchant_id, bill_date.isoformat())
            ) or self._bill_overrides.get(("*", bill_date.isoformat()))
            if override is not None:
                return override
            rows: list[tuple[datetime, list[str]]] = []
            totals = dict.fromkeys(BILL_SUMMARY_HEADER, 0)

            def include(o: FakeOrder) -> bool:
                return o.owner == merchant_id and (sub_mchid is None or o.sub_mchid == sub_mchid)

            for o in self.orders.values():
                if not include(o) or o.success_time is None:
                    continue
                if o.success_time.date() != bill_date:
                    continue
                fee = apply_rate(o.total, self.fee_rate_bp)
                rows.append((o.success_time, self._bill_row(o, None, fee, bill_date)))
                totals["应结订单总金额"] += o.total
                totals["订单总金额"] += o.total
                totals["手续费总金额"] += fee
            for r in self.refunds.values():
                # A refund is listed once, on the day it was initiated (交易时间 is 发起退款
                # 成功时间), with its status as of that day — not moved when it lands later.
                o = self.orders[r.order_key]
                if not include(o) or r.create_time.date() != bill_date:
                    continue
                fee = -apply_rate(r.amount, self.fee_rate_bp)
                rows.append((r.create_time, self._bill_row(o, r, fee, bill_date)))
                totals["退款总金额"] += r.amount
                totals["申请退款总金额"] += r.amount
                totals["手续费总金额"] += fee
            if not rows:
                return ""
            rows.sort(key=lambda item: item[0])
            lines = [",".join(BILL_HEADER)]
            lines += [",".join("`" + v for v in row) for _, row in rows]
            lines.append(",".join(BILL_SUMMARY_HEADER))
            summary = [str(len(rows))] + [_yuan(totals[n]) for n in BILL_SUMMARY_HEADER[1:]]
            lines.append(",".join("`" + v for v in summary))
            return "\r\n".join(lines) + "\r\n"

    def _bill_row(self, o: FakeOrder, r: FakeRefund | None, fee: int, bill_date: date) -> list[str]:
        when = (r.create_time if r else o.success_time) or self._now()
        refund_state = ""
        if r is not None:
            landed = r.success_time is not None and r.success_time.date() <= bill_date
            refund_state = "SUCCESS" if landed else "PROCESSING"
        return [
            when.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S"),
            o.appid,
            o.owner,
            o.sub_mchid or "0",
            "",
            o.transaction_id or "",
            o.out_trade_no,
            o.openid,
            o.trade_type,
            "REFUND" if r else "SUCCESS",
            "OTHERS",
            "CNY",
            _yuan(0 if r else o.total),
            "0.00",
            r.refund_id if r else "0",
            r.out_refund_no if r else "0",
            _yuan(r.amount if r else 0),
            "0.00",
            "ORIGINAL" if r else "",
            refund_state,
            o.description,
            o.attach,
            _yuan(fee),
            f"{self.fee_rate_bp / 100:.2f}%",
            _yuan(0 if r else o.total),
            _yuan(r.amount if r else 0),
            "",
        ]

    def _h_tradebill(
        self, *, merchant: FakeMerchant, query: dict[str, str], **_: Any
    ) -> tuple[int, Any]:
        raw_date = query.get("bill_date", "")
        try:
            bill_date = date.fromisoformat(raw_date)
        except ValueError:
            raise _Reject(400, "PARAM_ERROR", "bill_date 格式应为 yyyy-MM-DD") from None
        if query.get("bill_type", "ALL") != "ALL":
            raise _Reject(400, "PARAM_ERROR", "fake 只提供 bill_type=ALL")
        if bill_date < self._now().date() - timedelta(days=90):
            raise _Reject(400, "PARAM_ERROR", "仅支持三个月内的账单下载申请")
        # A day's bill is generated after 10:00 (Beijing) the next day; until then — or while a
        # test holds the bills back — WeChat Pay answers "being generated".
        published = datetime.combine(bill_date, dt_time(0), CHINA_TZ) + self.bill_publish_delay
        if self.bills_held or self._now() < published:
            raise _Reject(400, "STATEMENT_CREATING", "账单生成中，请稍后再试")
        text = self.trade_bill_text(merchant.mchid, bill_date, query.get("sub_mchid"))
        if not text:
            raise _Reject(400, "NO_STATEMENT_EXIST", "账单文件不存在")
        content = ("\ufeff" + text).encode("utf-8")
        token = secrets.token_urlsafe(24)
        served = content
        if self._bill_tampers:
            self._bill_tampers -= 1
            served = content.replace(b"`", b"`0", 1)  # not what the signed hash says
        self._bill_files[token] = (served, query.get("tar_type") == "GZIP")
        return 200, {
            "hash_type": "SHA1",
            "hash_value": hashlib.sha1(content).hexdigest(),
            "download_url": f"{self.base_url}/v3/billdownload/file?token={token}",
        }

    def _h_bill_download(self, *, query: dict[str, str], **_: Any) -> tuple[int, Any]:
        found = self._bill_files.get(query.get("token", ""))
        if found is None:
            raise _Reject(400, "INVALID_REQUEST", "token 无效或已过期")
        content, gzipped = found
        return 200, gzip.compress(content) if gzipped else content


@pytest.fixture
def fake_wechatpay() -> Iterator[FakeWeChatPay]:
    """A started fake; import this fixture into a test module to use it."""
    with FakeWeChatPay() as fake:
        yield fake
