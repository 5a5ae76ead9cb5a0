"""WeChat identity rules: who a (appid, openid) is, and the OAuth ``state`` that binds a web
authorization to the browser that started it.

* Sign-in: a known (appid, openid) is its user; an unknown one whose unionid another identity
  already has joins that user (the same person in the 公众号 and the mini-program); anyone
  else gets a light consumer account (no phone, no password) bound to it.
* State (login CSRF): the callback only signs in when its ``state`` is the one this browser's
  signed session cookie holds, unused and at most ``STATE_TTL`` old — an attacker's code
  delivered to a victim's browser (or a replayed callback) signs nobody in. The page to go back
  to is kept next to it and must be a local path (no open redirect).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o.accounts.models import User
from o2o.errors import AppError, Conflict
from o2o.timeutil import utcnow
from o2o.wechat.client import WeChatUser
from o2o.wechat.models import WeChatIdentity

WECHAT_UA_MARK = "micromessenger"
MINIPROGRAM_UA_MARK = "miniprogram"
LIGHT_ACCOUNT_NAME = "微信用户"
# A light account has no password: this can never be an argon2 hash, so no password matches.
NO_PASSWORD = "!wechat"
STATE_TTL = 600
# After a failed or refused authorization the pages stay anonymous this long (no redirect loop).
RETRY_AFTER_FAILURE = 600
_STATE_KEY, _SKIP_KEY = "wx_state", "wx_skip"
CALLBACK_PATH = "/wechat/oauth/callback"


class OAuthStateInvalid(AppError):
    status, code, title = 400, "wechat_state_invalid", "授权已失效"


def is_wechat_browser(user_agent: str | None) -> bool:
    """WeChat's built-in browser (and the mini-program web-view) say ``MicroMessenger``."""
    return WECHAT_UA_MARK in (user_agent or "").lower()


# --- accounts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedInUser:
    user_id: int
    created: bool


def sign_in(session: Session, who: WeChatUser) -> SignedInUser:
    """The user WeChat says ``who`` is; a light account for a first-time visitor. A concurrent
    first visit of the same openid loses on the unique (appid, openid): the caller retries."""
    now = utcnow()
    identity = session.scalar(
        select(WeChatIdentity).where(
            WeChatIdentity.appid == who.appid, WeChatIdentity.openid == who.openid
        )
    )
    if identity is not None:
        identity.last_seen_at = now
        if who.unionid and identity.unionid != who.unionid:
            identity.unionid = who.unionid
        return SignedInUser(identity.user_id, created=False)
    user_id = None
    if who.unionid:
        user_id = session.scalar(
            select(WeChatIdentity.user_id).where(WeChatIdentity.unionid == who.unionid).limit(1)
        )
    created = user_id is None
    if user_id is None:
        user = User(phone=None, name=LIGHT_ACCOUNT_NAME, password_hash=NO_PASSWORD)
        session.add(user)
        session.flush()
        user_id = user.id
    session.add(
        WeChatIdentity(
            user_id=user_id,
            appid=who.appid,
            openid=who.openid,
            unionid=who.unionid,
            created_at=now,
            last_seen_at=now,
        )
    )
    session.flush()
    return SignedInUser(user_id, created)


def bind(session: Session, user_id: int, who: WeChatUser) -> None:
    """Bind a WeChat identity to a signed-in account (a phone account paying inside WeChat).
    WeChat proved the openid and our session the account; an openid already bound to someone
    else stays theirs (409)."""
    now = utcnow()
    identity = session.scalar(
        select(WeChatIdentity).where(
            WeChatIdentity.appid == who.appid, WeChatIdentity.openid == who.openid
        )
    )
    if identity is not None:
        if identity.user_id != user_id:
            raise Conflict(
                "该微信已绑定其他账号，请退出后用微信登录", code="wechat_bound_elsewhere"
            )
        identity.last_seen_at = now
        identity.unionid = who.unionid or identity.unionid
        return
    session.add(
        WeChatIdentity(
            user_id=user_id,
            appid=who.appid,
            openid=who.openid,
            unionid=who.unionid,
            created_at=now,
            last_seen_at=now,
        )
    )
    session.flush()


def openid_for(session: Session, user_id: int, appids: list[str]) -> tuple[str, str] | None:
    """The user's (appid, openid) in the first of ``appids`` they have an identity in."""
    wanted = [a for a in appids if a]
    if not wanted:
        return None
    rows = dict(
        session.execute(
            select(WeChatIdentity.appid, WeChatIdentity.openid).where(
                WeChatIdentity.user_id == user_id, WeChatIdentity.appid.in_(wanted)
            )
        ).all()
    )
    for appid in wanted:
        if appid in rows:
            return appid, rows[appid]
    return None


# --- the OAuth state, kept in the signed page session -------------------------------------------


def new_state(
    store: MutableMapping[str, Any],
    next_url: str,
    *,
    bind: bool = False,
    now: float | None = None,
) -> str:
    """A fresh state for this browser, remembering where to go back to (already a local path)
    and whether the openid is for the account signed in now (``bind``)."""
    state = secrets.token_hex(16)
    stamp = int(time.time() if now is None else now)
    store[_STATE_KEY] = {"s": state, "n": next_url, "t": stamp, "b": bind}
    return state


@dataclass(frozen=True)
class TakenState:
    next_url: str
    bind: bool


def take_state(
    store: MutableMapping[str, Any], state: str, *, now: float | None = None
) -> TakenState:
    """Check the callback's ``state`` against this browser's (once): where to go back to."""
    kept = store.pop(_STATE_KEY, None)
    now = time.time() if now is None else now
    if (
        not isinstance(kept, dict)
        or not isinstance(kept.get("s"), str)
        or not hmac.compare_digest(kept["s"].encode(), state.encode())
        or not isinstance(kept.get("t"), int)
        or not 0 <= now - kept["t"] <= STATE_TTL
    ):
        raise OAuthStateInvalid("微信授权已失效或不是从本页面发起的，请重新打开页面")
    next_url = kept.get("n")
    return TakenState(next_url if isinstance(next_url, str) else "/", kept.get("b") is True)


def skip_authorization(store: MutableMapping[str, Any], *, now: float | None = None) -> None:
    """Stop redirecting this browser to WeChat for a while (a failure must not loop)."""
    store[_SKIP_KEY] = int(time.time() if now is None else now)


def should_authorize(store: MutableMapping[str, Any], *, now: float | None = None) -> bool:
    skipped = store.get(_SKIP_KEY)
    now = time.time() if now is None else now
    return not (isinstance(skipped, int) and now - skipped < RETRY_AFTER_FAILURE)
