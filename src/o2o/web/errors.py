"""Errors on page paths become pages in Chinese (never a raw 500 or problem+json).

The app's problem+json handlers (o2o.errors) stay in charge of the API: each handler installed
here looks at the path and hands API requests to the handler it replaced. Handling happens where
FastAPI's own handlers run, i.e. after the route's dependencies and transactions have seen the
error (and rolled back).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from o2o.errors import BUSY_RETRY_AFTER, AppError
from o2o.web.context import LoginRequired, WeChatAuthorize, is_htmx, login_url
from o2o.web.session import PageSession, is_page_path
from o2o.web.templating import templates

log = logging.getLogger(__name__)

TITLES = {
    400: "请求有误",
    401: "请先登录",
    403: "无权访问",
    404: "页面不存在",
    405: "不支持的操作",
    409: "操作冲突",
    410: "已失效",
    413: "提交的内容过大",
    422: "提交的内容有误",
    429: "操作过于频繁",
    500: "服务器开小差了",
    503: "系统繁忙",
}


def _area_home(path: str) -> tuple[str, str]:
    if path.startswith("/console"):
        return "/console", "返回商户后台"
    if path.startswith("/admin"):
        return "/admin", "返回运营后台"
    return "/", "返回首页"


def error_page(
    request: Request,
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    home, home_label = _area_home(request.url.path)
    return templates.TemplateResponse(
        request,
        "error.html",
        {
            "page": None,
            "status": status,
            "title": title or TITLES.get(status, "出错了"),
            "detail": detail,
            "home": home,
            "home_label": home_label,
        },
        status_code=status,
        headers=headers,
    )


def _redirect_to_login(request: Request, next_url: str) -> Response:
    url = login_url(next_url)
    if is_htmx(request):
        return Response(status_code=200, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def _login_required(request: Request, exc: LoginRequired) -> Response:
    return _redirect_to_login(request, exc.next_url)


def _wechat_authorize(request: Request, exc: WeChatAuthorize) -> Response:
    return RedirectResponse(exc.url, status_code=302)


def _app_error(request: Request, exc: AppError) -> Response:
    if exc.status == 401:
        session = request.scope.get("session")
        if isinstance(session, PageSession):
            session.logout()
        return _redirect_to_login(request, request.url.path)
    headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() == "retry-after"}
    return error_page(request, exc.status, exc.detail, headers=headers or None)


def _validation(request: Request, exc: RequestValidationError) -> Response:
    # A malformed id in a page URL is a page that does not exist.
    if any(err.get("loc", ("",))[0] == "path" for err in exc.errors()):
        return error_page(request, 404, "您访问的页面不存在或已被删除")
    return error_page(request, 400, "链接中的参数有误，请返回上一页重试")


def _http(request: Request, exc: StarletteHTTPException) -> Response:
    messages = {
        404: "您访问的页面不存在或已被删除",
        405: "该页面不支持这种操作",
        413: "提交的内容过大，请精简后重试",
    }
    detail = messages.get(exc.status_code, TITLES.get(exc.status_code, "请求失败"))
    return error_page(request, exc.status_code, detail)


def _data_error(request: Request, exc: DataError) -> Response:
    log.warning("database refused a value on a page: %s", exc.orig)
    return error_page(request, 422, "提交的值超出允许范围，请检查后重试")


def _integrity(request: Request, exc: IntegrityError) -> Response:
    log.warning("integrity error on a page: %s", exc.orig)
    return error_page(request, 409, "数据与现有记录冲突，请刷新后重试")


def _operational(request: Request, exc: OperationalError | PoolTimeout) -> Response:
    log.error("database unavailable or busy on a page: %s", exc)
    return error_page(
        request, 503, "系统繁忙，请稍后重试", headers={"Retry-After": str(BUSY_RETRY_AFTER)}
    )


def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on a page", exc_info=exc)
    try:
        return error_page(request, 500, "请稍后再试；如果问题持续，请联系平台客服")
    except Exception:  # the error page itself failed: plain text, still no traceback
        log.exception("error page failed")
        return Response("服务器开小差了，请稍后再试", status_code=500, media_type="text/plain")


PAGE_HANDLERS: dict[type[Exception], Callable[[Request, Any], Response]] = {
    AppError: _app_error,
    RequestValidationError: _validation,
    StarletteHTTPException: _http,
    DataError: _data_error,
    IntegrityError: _integrity,
    OperationalError: _operational,
    PoolTimeout: _operational,
    Exception: _unexpected,
}


def _for_pages(
    page_handler: Callable[[Request, Any], Response], api_handler: Callable[..., Any] | None
) -> Callable[[Request, Any], Any]:
    async def handler(request: Request, exc: Exception) -> Any:
        if is_page_path(request.url.path):
            return page_handler(request, exc)
        if api_handler is None:
            raise exc
        result = api_handler(request, exc)
        return await result if inspect.isawaitable(result) else result

    return handler


def install_page_errors(app: FastAPI) -> None:
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(WeChatAuthorize, _wechat_authorize)
    for exc_class, page_handler in PAGE_HANDLERS.items():
        original = app.exception_handlers.get(exc_class)
        app.add_exception_handler(exc_class, _for_pages(page_handler, original))
