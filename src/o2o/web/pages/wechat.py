"""微信网页授权的回调: WeChat sends the browser back here with ``code`` and ``state`` after the
silent authorization that ``o2o.web.context`` starts for visitors inside WeChat."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from o2o.errors import AppError
from o2o.web.context import PageDep, page_router, safe_next
from o2o.web.session import SESSION_MAX_AGE
from o2o.wechat import flows
from o2o.wechat import service as wechat

router = page_router()


@router.get(wechat.CALLBACK_PATH, name="wechat_oauth_callback")
async def oauth_callback(
    page: PageDep,
    state: Annotated[str, Query(max_length=128)] = "",
    code: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    # The state must be the one this browser started (login CSRF); it is used up here.
    taken = wechat.take_state(page.session, state)
    next_url = safe_next(taken.next_url)
    if not code:  # the user declined (snsapi_userinfo only): stay anonymous
        wechat.skip_authorization(page.session)
        return RedirectResponse(next_url, status_code=303)
    try:
        if taken.bind and page.actor is not None:
            # A signed-in account paying inside WeChat: this openid becomes theirs.
            await run_in_threadpool(
                flows.web_bind, page.db, page.settings, page.actor.user_id, code
            )
            return RedirectResponse(next_url, status_code=303)
        user_id, sid = await run_in_threadpool(
            flows.web_sign_in, page.db, page.settings, code, ttl_seconds=SESSION_MAX_AGE
        )
    except flows.WeChatCodeInvalid as exc:
        wechat.skip_authorization(page.session)  # show the pages anonymously for a while
        # 400, not 401: a page 401 means "go and sign in", and there is nothing to sign in to.
        raise AppError(exc.detail, status=400, code=exc.code) from exc
    except AppError:
        wechat.skip_authorization(page.session)
        raise
    page.session.login(user_id, sid)
    return RedirectResponse(next_url, status_code=303)
