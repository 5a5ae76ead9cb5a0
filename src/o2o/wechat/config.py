"""WeChat (公众号 / 小程序) settings: the ``O2O_WECHAT_*`` environment variables.

``O2O_WECHAT_APPID`` / ``O2O_WECHAT_SECRET``
    The 公众号 (official account) whose web authorization (网页授权) signs consumers in when our
    pages are opened inside WeChat. Its 网页授权域名 must be the host of ``O2O_PUBLIC_BASE_URL``.
    For JSAPI payments the openid must belong to the app id WeChat Pay pays for: the same as
    ``O2O_WECHATPAY_APPID`` (or, in partner mode, ``O2O_WECHAT_SUB_APPID``).
``O2O_WECHAT_MINIPROGRAM_APPID`` / ``O2O_WECHAT_MINIPROGRAM_SECRET``
    The mini-program whose ``wx.login`` codes ``POST /api/v1/auth/wechat/miniprogram`` takes.
``O2O_WECHAT_SUB_APPID``
    WeChat Pay partner mode (服务商) only: when the 公众号 above is not the service provider's
    ``sp_appid`` but an app id bound to the sub-merchants (子商户绑定 APPID), set it here (the
    same value as ``O2O_WECHAT_APPID``): payments then send ``sub_appid`` + ``sub_openid``
    instead of ``sp_openid``. Combined payments (合单) always need the ``sp_appid``'s openid.
``O2O_WECHAT_API_BASE_URL`` / ``O2O_WECHAT_OPEN_BASE_URL``
    ``https://api.weixin.qq.com`` and ``https://open.weixin.qq.com`` (tests point them at a
    local fake). ``O2O_WECHAT_TIMEOUT``: seconds (default 5).

Each part is enabled only when its app id and secret are both set.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from o2o.config import Settings

API_BASE_URL = "https://api.weixin.qq.com"
OPEN_BASE_URL = "https://open.weixin.qq.com"


class WeChatSettings(BaseSettings):
    """``O2O_WECHAT_*`` (see the module docstring)."""

    model_config = SettingsConfigDict(env_prefix="O2O_WECHAT_", extra="ignore")

    appid: str = ""
    secret: SecretStr = SecretStr("")
    miniprogram_appid: str = ""
    miniprogram_secret: SecretStr = SecretStr("")
    sub_appid: str = ""
    api_base_url: str = API_BASE_URL
    open_base_url: str = OPEN_BASE_URL
    timeout: float = Field(default=5.0, gt=0, le=60)

    @property
    def oauth_enabled(self) -> bool:
        return bool(self.appid.strip() and self.secret.get_secret_value().strip())

    @property
    def miniprogram_enabled(self) -> bool:
        return bool(
            self.miniprogram_appid.strip() and self.miniprogram_secret.get_secret_value().strip()
        )


_lock = threading.Lock()
_loaded: dict[int, tuple[Settings, WeChatSettings]] = {}


def wechat_settings(settings: Settings) -> WeChatSettings:
    """The environment's WeChat settings, read once per ``Settings`` object (like the payment
    providers; tests build a new ``Settings`` after changing the environment)."""
    with _lock:
        found = _loaded.get(id(settings))
        if found is not None and found[0] is settings:
            return found[1]
        loaded = WeChatSettings()
        if len(_loaded) > 64:
            _loaded.clear()
        _loaded[id(settings)] = (settings, loaded)
        return loaded


def clear_cache() -> None:
    with _lock:
        _loaded.clear()
