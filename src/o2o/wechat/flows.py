"""WeChat sign-in use cases: ask WeChat (no transaction open), then bind and start a session
(one short transaction). Used by the page callback and the mini-program API."""

from __future__ import annotations

import threading

from sqlalchemy.exc import IntegrityError

from o2o.accounts import service as accounts
from o2o.config import Settings
from o2o.db import Database
from o2o.errors import AppError, NotFound, ServiceUnavailable
from o2o.wechat import service
from o2o.wechat.client import WeChatApiError, WeChatClient, WeChatUnavailable, WeChatUser
from o2o.wechat.config import WeChatSettings, wechat_settings


class WeChatCodeInvalid(AppError):
    status, code, title = 401, "wechat_code_invalid", "微信登录失败"


_lock = threading.Lock()
_clients: dict[int, tuple[WeChatSettings, WeChatClient]] = {}


def client(settings: Settings) -> WeChatClient:
    """One client (connection pool) per settings object."""
    wx = wechat_settings(settings)
    with _lock:
        found = _clients.get(id(wx))
        if found is not None and found[0] is wx:
            return found[1]
        made = WeChatClient(wx)
        if len(_clients) > 16:
            _clients.clear()
        _clients[id(wx)] = (wx, made)
        return made


def _ask(call: object, code: str) -> WeChatUser:
    try:
        return call(code)  # type: ignore[operator]
    except WeChatApiError as exc:
        # 40029 invalid / 40163 used / expired: the user opens the page (or logs in) again.
        raise WeChatCodeInvalid(f"微信登录凭证无效或已使用（{exc.errcode}）") from exc
    except WeChatUnavailable as exc:
        raise ServiceUnavailable("微信服务暂时无法连接，请稍后重试", retry_after=5) from exc


def start_session(db: Database, who: WeChatUser, *, kind: str, ttl_seconds: int) -> tuple[int, str]:
    """Bind (or find) the account and open a server-side session: (user id, session id)."""
    for attempt in range(2):
        try:
            with db.transaction() as session:
                signed_in = service.sign_in(session, who)
                sid = accounts.start_session(
                    session, signed_in.user_id, kind=kind, ttl_seconds=ttl_seconds
                )
                return signed_in.user_id, sid
        except IntegrityError:
            if attempt:  # the concurrent first visit won: its identity is there now
                raise
    raise AssertionError("unreachable")


def web_sign_in(
    db: Database, settings: Settings, code: str, *, ttl_seconds: int
) -> tuple[int, str]:
    """公众号网页授权 callback: code → (user id, page session id)."""
    if not wechat_settings(settings).oauth_enabled:
        raise NotFound("微信登录未开通", code="wechat_not_configured")
    who = _ask(client(settings).oauth2_access_token, code)
    return start_session(db, who, kind=accounts.PAGE, ttl_seconds=ttl_seconds)


def web_bind(db: Database, settings: Settings, user_id: int, code: str) -> None:
    """公众号网页授权 for the account signed in now: its openid for paying inside WeChat."""
    if not wechat_settings(settings).oauth_enabled:
        raise NotFound("微信登录未开通", code="wechat_not_configured")
    who = _ask(client(settings).oauth2_access_token, code)
    with db.transaction() as session:
        service.bind(session, user_id, who)


def miniprogram_sign_in(db: Database, settings: Settings, code: str) -> tuple[int, str]:
    """小程序 wx.login code → (user id, API session id)."""
    if not wechat_settings(settings).miniprogram_enabled:
        raise NotFound("小程序登录未开通", code="wechat_not_configured")
    who = _ask(client(settings).jscode2session, code)
    return start_session(db, who, kind=accounts.API, ttl_seconds=settings.token_ttl_seconds)
