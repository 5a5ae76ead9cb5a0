"""The two WeChat server calls sign-in needs, and the authorization URL.

* 公众号网页授权: ``authorize_url`` sends the browser to WeChat, which comes back to our
  callback with a ``code``; ``oauth2_access_token(code)`` turns it into the openid (and unionid
  when the 公众号 is bound to an open platform account). ``snsapi_base`` is silent: no consent
  page, only the openid.
* 小程序登录: ``jscode2session(code)`` turns a ``wx.login`` code into openid / unionid.

Codes are single-use and live 5 minutes (WeChat answers 40029 / 40163 otherwise). WeChat answers
errors as HTTP 200 with ``{"errcode", "errmsg"}``; ``WeChatApiError`` carries them. No answer,
a 5xx or ``-1`` (系统繁忙) is ``WeChatUnavailable``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from o2o.wechat.config import WeChatSettings

SNSAPI_BASE = "snsapi_base"
# WeChat limits state to 128 characters of [a-zA-Z0-9].
STATE_PATTERN = re.compile(r"^[A-Za-z0-9]{1,128}$")
BUSY_CODES = frozenset({-1, 45011})


class WeChatApiError(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        self.errcode = errcode
        self.errmsg = errmsg
        super().__init__(f"{errcode}: {errmsg}")


class WeChatUnavailable(Exception):
    """WeChat could not be reached or is busy; the user may try again (with a new code)."""


@dataclass(frozen=True)
class WeChatUser:
    """Who WeChat says the code belongs to."""

    appid: str
    openid: str
    unionid: str | None = None


class WeChatClient:
    """Sync client for the 公众号 and mini-program sign-in calls. Thread-safe."""

    def __init__(self, settings: WeChatSettings, *, http_client: httpx.Client | None = None):
        self.settings = settings
        self._http = http_client or httpx.Client(timeout=settings.timeout)

    def close(self) -> None:
        self._http.close()

    def authorize_url(self, redirect_uri: str, state: str, scope: str = SNSAPI_BASE) -> str:
        """Where to send the browser for 网页授权 (parameter order as WeChat documents it; the
        ``#wechat_redirect`` fragment is required)."""
        if not STATE_PATTERN.match(state):
            raise ValueError("state must be 1-128 letters and digits")
        query = urlencode(
            {
                "appid": self.settings.appid,
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": scope,
                "state": state,
            },
            quote_via=quote,
        )
        base = self.settings.open_base_url.rstrip("/")
        return f"{base}/connect/oauth2/authorize?{query}#wechat_redirect"

    def oauth2_access_token(self, code: str) -> WeChatUser:
        """网页授权 code → openid (+ unionid). The access token is not kept: ``snsapi_base``
        cannot read anything with it."""
        appid = self.settings.appid
        data = self._get(
            "/sns/oauth2/access_token",
            appid=appid,
            secret=self.settings.secret.get_secret_value(),
            code=code,
            grant_type="authorization_code",
        )
        return self._user(appid, data)

    def jscode2session(self, code: str) -> WeChatUser:
        """小程序 ``wx.login`` code → openid (+ unionid). The session_key is not kept (we
        decrypt no user data with it)."""
        appid = self.settings.miniprogram_appid
        data = self._get(
            "/sns/jscode2session",
            appid=appid,
            secret=self.settings.miniprogram_secret.get_secret_value(),
            js_code=code,
            grant_type="authorization_code",
        )
        return self._user(appid, data)

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _user(appid: str, data: dict[str, Any]) -> WeChatUser:
        openid = data.get("openid")
        if not isinstance(openid, str) or not openid:
            raise WeChatApiError(-2, "answer without openid")
        unionid = data.get("unionid")
        return WeChatUser(appid, openid, unionid if isinstance(unionid, str) and unionid else None)

    def _get(self, path: str, **params: str) -> dict[str, Any]:
        url = self.settings.api_base_url.rstrip("/") + path
        try:
            response = self._http.get(url, params=params)
        except httpx.HTTPError as exc:
            raise WeChatUnavailable(f"WeChat not reachable: {exc.__class__.__name__}") from exc
        if response.status_code >= 500:
            raise WeChatUnavailable(f"WeChat answered HTTP {response.status_code}")
        try:
            data = json.loads(response.content)
        except ValueError as exc:
            raise WeChatUnavailable("WeChat answered something that is not JSON") from exc
        if not isinstance(data, dict):
            raise WeChatUnavailable("WeChat answered something that is not a JSON object")
        errcode = data.get("errcode", 0)
        if errcode:
            message = str(data.get("errmsg", ""))
            if errcode in BUSY_CODES:
                raise WeChatUnavailable(f"{errcode}: {message}")
            raise WeChatApiError(int(errcode), message)
        return data
