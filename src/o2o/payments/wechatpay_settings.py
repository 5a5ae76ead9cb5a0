"""WeChat Pay settings: the ``O2O_WECHATPAY_*`` environment variables → the adapter's config.

Configuration — every variable is optional; the provider is **enabled** only when all the
required ones are set (``WeChatPaySettings.enabled``; ``problems()`` says what is missing):

``O2O_WECHATPAY_MODE``
    ``direct`` (default): the platform is an ordinary WeChat Pay merchant (普通商户) and every
    payment is one plain order for the whole amount — the money of all the orders in a checkout
    lands on the platform's account (资金归集), which is only acceptable when the operator is
    itself the only seller. ``partner``: the platform is a service provider (服务商) and every
    merchant a sub-merchant (``sub_mchid`` on the merchant record); a checkout with one order is a
    partner order of that sub-merchant, a checkout across merchants a **combined payment**
    (合单支付) whose sub-orders are the per-merchant orders, so the platform never pools money.
``O2O_WECHATPAY_MCHID`` (required)
    The merchant id (商户号); in partner mode the service provider's ``sp_mchid``.
``O2O_WECHATPAY_APPID`` (required)
    The AppID bound to the merchant id (公众号/小程序); in partner mode the ``sp_appid``. JSAPI
    payers' openids must belong to this AppID.
``O2O_WECHATPAY_PRIVATE_KEY`` (required)
    The merchant API private key (``apiclient_key.pem``): the PEM text itself (``\\n`` escapes
    are accepted) or the path of the file.
``O2O_WECHATPAY_CERT_SERIAL_NO`` (required)
    The serial number of the merchant API certificate (商户API证书序列号).
``O2O_WECHATPAY_APIV3_KEY`` (required)
    The 32-character APIv3 key; decrypts notifications.
``O2O_WECHATPAY_PUBLIC_KEY`` and ``O2O_WECHATPAY_PUBLIC_KEY_ID``
    The WeChat Pay public key (``pub_key.pem``, PEM text or path) and its id
    (``PUB_KEY_ID_…``): verifies responses and notifications. Required unless
    ``O2O_WECHATPAY_PLATFORM_CERTIFICATE`` is set.
``O2O_WECHATPAY_PLATFORM_CERTIFICATE``
    For merchants still on platform certificates (平台证书): a certificate (PEM text or path),
    or the word ``download``. Without a public key this is **certificate mode**: the
    certificates are downloaded from ``GET /v3/certificates`` (decrypted with the APIv3 key),
    cached, refreshed every 12 hours and whenever WeChat Pay signs with a serial we do not know
    (a rotation; several are kept meanwhile); a configured certificate is used until then.
    When both a public key and a certificate are set, notifications signed with either are
    accepted (the migration from certificates to the public key, which is the recommended
    default).
``O2O_WECHATPAY_MERCHANT_NAME``
    The platform merchant's full registered name (商户全称). Partner-mode profit sharing adds
    the platform as a ``MERCHANT_ID`` receiver, which WeChat Pay accepts only with this name
    (sent encrypted).
``O2O_WECHATPAY_NOTIFY_URL``
    Where WeChat Pay posts payment notifications. Default:
    ``O2O_PUBLIC_BASE_URL`` + ``/api/v1/payments/notify/wechatpay`` (must be public HTTPS in
    production).
``O2O_WECHATPAY_REFUND_NOTIFY_URL``
    Where refund notifications go; defaults to the notify URL (one endpoint handles both).
``O2O_WECHATPAY_BASE_URL``
    The API gateway, default ``https://api.mch.weixin.qq.com`` (tests point it at a local fake).
``O2O_WECHATPAY_BACKUP_BASE_URL``
    Where a request goes when the gateway cannot be reached at all (connection error or
    timeout — never after an answer, even a 5xx): default ``https://api2.mch.weixin.qq.com``
    with the default gateway, none otherwise; empty turns failover off.
``O2O_WECHATPAY_TIMEOUT``
    Seconds to wait for WeChat Pay (default 10); a timeout is ``ProviderUnavailable``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from o2o.payments.wechatpay import DEFAULT_BASE_URL, WeChatPayConfig
from o2o.payments.wechatpay_crypto import load_public_key

if TYPE_CHECKING:
    from o2o.config import Settings

__all__ = ["DOWNLOAD", "NOTIFY_PATH", "WeChatPaySettings"]

NOTIFY_PATH = "/api/v1/payments/notify/wechatpay"
# O2O_WECHATPAY_PLATFORM_CERTIFICATE=download: certificate mode, everything downloaded.
DOWNLOAD = "download"


def _pem_or_file(value: str, what: str) -> str:
    """PEM text as such (with ``\\n`` escapes from a one-line env var), else a file path."""
    text = value.strip()
    if "-----BEGIN" in text:
        return text.replace("\\n", "\n")
    path = Path(text).expanduser()
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what}: neither PEM text nor a readable file ({path})") from exc


def _looks_usable(value: str) -> bool:
    text = value.strip()
    return "-----BEGIN" in text or Path(text).expanduser().is_file()


class WeChatPaySettings(BaseSettings):
    """``O2O_WECHATPAY_*`` (see the module docstring for each variable)."""

    model_config = SettingsConfigDict(env_prefix="O2O_WECHATPAY_", extra="ignore")

    mode: Literal["direct", "partner"] = "direct"
    mchid: str = ""
    appid: str = ""
    private_key: SecretStr = SecretStr("")
    cert_serial_no: str = ""
    apiv3_key: SecretStr = SecretStr("")
    public_key: str = ""
    public_key_id: str = ""
    platform_certificate: str = ""
    merchant_name: str = ""
    notify_url: str = ""
    refund_notify_url: str = ""
    base_url: str = DEFAULT_BASE_URL
    backup_base_url: str | None = None
    timeout: float = Field(default=10.0, gt=0, le=60)

    @classmethod
    def from_settings(cls, settings: Settings, **values: Any) -> WeChatPaySettings:
        """Read the environment (``values`` override it) and derive the notify URL from
        ``O2O_PUBLIC_BASE_URL`` when it is not set."""
        loaded = cls(**values)
        if not loaded.notify_url:
            derived = settings.public_base_url.rstrip("/") + NOTIFY_PATH
            loaded = loaded.model_copy(update={"notify_url": derived})
        return loaded

    @property
    def partner(self) -> bool:
        return self.mode == "partner"

    @property
    def download_certificates(self) -> bool:
        """Certificate mode: no public key, so the platform certificates are downloaded."""
        return not self.public_key.strip() and bool(self.platform_certificate.strip())

    def _certificate_is_download(self) -> bool:
        return self.platform_certificate.strip().lower() == DOWNLOAD

    def problems(self) -> list[str]:
        """What keeps this configuration from working (empty when fully configured)."""
        found: list[str] = []
        for name in ("mchid", "appid", "cert_serial_no"):
            if not getattr(self, name).strip():
                found.append(f"O2O_WECHATPAY_{name.upper()} is not set")
        private_key = self.private_key.get_secret_value()
        if not private_key.strip():
            found.append("O2O_WECHATPAY_PRIVATE_KEY is not set")
        elif not _looks_usable(private_key):
            found.append("O2O_WECHATPAY_PRIVATE_KEY is neither PEM text nor an existing file")
        if len(self.apiv3_key.get_secret_value().encode("utf-8")) != 32:
            found.append("O2O_WECHATPAY_APIV3_KEY must be the 32-character APIv3 key")
        has_key = bool(self.public_key.strip())
        if has_key and not self.public_key_id.strip():
            found.append("O2O_WECHATPAY_PUBLIC_KEY_ID (PUB_KEY_ID_...) is not set")
        if has_key and not _looks_usable(self.public_key):
            found.append("O2O_WECHATPAY_PUBLIC_KEY is neither PEM text nor an existing file")
        certificate = self.platform_certificate.strip()
        if certificate and not self._certificate_is_download() and not _looks_usable(certificate):
            found.append(
                "O2O_WECHATPAY_PLATFORM_CERTIFICATE is neither PEM text, an existing file "
                "nor 'download'"
            )
        if not has_key and not self.platform_certificate.strip():
            found.append(
                "set O2O_WECHATPAY_PUBLIC_KEY and O2O_WECHATPAY_PUBLIC_KEY_ID "
                "(or O2O_WECHATPAY_PLATFORM_CERTIFICATE)"
            )
        if not self.notify_url.strip():
            found.append("O2O_WECHATPAY_NOTIFY_URL is not set")
        return found

    @property
    def enabled(self) -> bool:
        """True only when every required value is there (the provider can be built)."""
        return not self.problems()

    def to_config(self) -> WeChatPayConfig:
        """The adapter's config; ValueError when not fully configured or a key is unreadable."""
        problems = self.problems()
        if problems:
            raise ValueError("WeChat Pay is not configured: " + "; ".join(problems))
        extra: dict[str, str] = {}
        configured_cert = ""
        if self.platform_certificate.strip() and not self._certificate_is_download():
            configured_cert = _pem_or_file(
                self.platform_certificate, "O2O_WECHATPAY_PLATFORM_CERTIFICATE"
            )
        if self.public_key.strip():
            platform_key = _pem_or_file(self.public_key, "O2O_WECHATPAY_PUBLIC_KEY")
            platform_serial = self.public_key_id.strip()
            if configured_cert:
                cert_serial = load_public_key(configured_cert)[1]
                if cert_serial:
                    extra[cert_serial] = configured_cert
        else:
            # Certificate mode: a configured certificate (if any) until the download.
            platform_key = configured_cert
            platform_serial = ""  # taken from the certificate
        return WeChatPayConfig(
            mchid=self.mchid.strip(),
            appid=self.appid.strip(),
            private_key=_pem_or_file(
                self.private_key.get_secret_value(), "O2O_WECHATPAY_PRIVATE_KEY"
            ),
            merchant_serial_no=self.cert_serial_no.strip(),
            apiv3_key=self.apiv3_key.get_secret_value(),
            platform_public_key=platform_key,
            platform_serial=platform_serial,
            notify_url=self.notify_url.strip(),
            refund_notify_url=self.refund_notify_url.strip(),
            base_url=self.base_url,
            backup_base_url=self.backup_base_url,
            timeout=self.timeout,
            partner=self.partner,
            extra_platform_keys=extra,
            download_certificates=self.download_certificates,
        )
