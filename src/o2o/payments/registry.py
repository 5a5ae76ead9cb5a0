"""Which payment providers this installation offers, built from the settings.

``sandbox`` is available only with ``O2O_SANDBOX_PAYMENTS=true`` (``make run`` sets it for the
embedded demo; never in production: its cashier lets the payer mark a payment paid). ``wechatpay`` comes from
``o2o.payments.wechatpay_provider.build_provider(settings)``, which returns None while WeChat Pay
is not configured. Providers are built once per settings object (they keep connection pools).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable

from o2o.config import Settings
from o2o.errors import NotFound
from o2o.payments.providers import PaymentProvider
from o2o.payments.sandbox import SandboxProvider

SANDBOX, WECHATPAY = "sandbox", "wechatpay"
PROVIDER_NAMES = (SANDBOX, WECHATPAY)
PROVIDER_LABELS = {SANDBOX: "沙箱支付", WECHATPAY: "微信支付"}

ProviderFactory = Callable[[Settings], PaymentProvider | None]

# Tests (and future providers) may register a factory for a name; it wins over the built-ins.
overrides: dict[str, ProviderFactory] = {}

_lock = threading.Lock()
_built: dict[tuple[str, int], tuple[Settings, PaymentProvider | None]] = {}


def _sandbox(settings: Settings) -> PaymentProvider | None:
    if not getattr(settings, "sandbox_payments", False):
        return None
    return SandboxProvider(settings.resolved_secret_key())


def _wechatpay(settings: Settings) -> PaymentProvider | None:
    # The WeChat Pay engineer's module plugs in here; without it (or unconfigured) → None.
    try:
        module = importlib.import_module("o2o.payments.wechatpay_provider")
    except ModuleNotFoundError:
        return None
    return module.build_provider(settings)


FACTORIES: dict[str, ProviderFactory] = {SANDBOX: _sandbox, WECHATPAY: _wechatpay}


def find_provider(name: str, settings: Settings) -> PaymentProvider | None:
    factory = overrides.get(name) or FACTORIES.get(name)
    if factory is None:
        return None
    key = (name, id(settings))
    with _lock:
        cached = _built.get(key)
        if cached is not None and cached[0] is settings and name not in overrides:
            return cached[1]
        provider = factory(settings)
        if name not in overrides:
            if len(_built) > 64:  # tests make many settings objects; keep the cache small
                _built.clear()
            _built[key] = (settings, provider)
        return provider


def get_provider(name: str, settings: Settings) -> PaymentProvider:
    """The provider called ``name``, or 404 when it is unknown or not configured here."""
    provider = find_provider(name, settings)
    if provider is None:
        raise NotFound(
            f"支付方式「{PROVIDER_LABELS.get(name, name)}」未开通", code="provider_not_available"
        )
    return provider


def available(settings: Settings) -> list[str]:
    return [name for name in PROVIDER_NAMES if find_provider(name, settings) is not None]


def clear_cache() -> None:
    with _lock:
        _built.clear()
