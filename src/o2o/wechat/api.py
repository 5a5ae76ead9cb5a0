"""Route for the mini-program's sign-in."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from o2o.accounts.schemas import TokenOut
from o2o.deps import DbDep, SettingsDep
from o2o.security import issue_token
from o2o.wechat import flows
from o2o.wechat.schemas import MiniProgramLoginIn

router = APIRouter(prefix="/api/v1", tags=["accounts"])


@router.post(
    "/auth/wechat/miniprogram",
    response_model=TokenOut,
    responses={
        401: {"description": "wechat_code_invalid: unknown, used or expired code"},
        404: {"description": "wechat_not_configured"},
        503: {"description": "WeChat cannot be reached"},
    },
)
async def miniprogram_login(
    body: MiniProgramLoginIn, request: Request, db: DbDep, settings: SettingsDep
) -> TokenOut:
    """小程序登录: a ``wx.login`` code → a bearer token (via ``jscode2session``). A first-time
    WeChat user gets a light consumer account bound to the openid."""
    user_id, sid = await run_in_threadpool(flows.miniprogram_sign_in, db, settings, body.code)
    token = issue_token(
        request.app.state.secret_key, user_id, settings.token_ttl_seconds, session_id=sid
    )
    return TokenOut(access_token=token, expires_in=settings.token_ttl_seconds)


routers = [router]
