"""One home for errors: every failure leaves the API as RFC 9457 problem+json with a stable code."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://o2o.invalid/problems/"


class AppError(Exception):
    """A rule said no. Services raise these; routes never build error responses by hand."""

    status: int = 400
    code: str = "bad_request"
    title: str = "请求有误"

    def __init__(
        self,
        detail: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self.detail = detail or self.title
        if code:
            self.code = code
        if status:
            self.status = status
        if title:
            self.title = title
        self.headers = headers
        self.extra = extra
        super().__init__(self.detail)


class BadRequest(AppError):
    status, code, title = 400, "bad_request", "请求有误"


class Unauthorized(AppError):
    status, code, title = 401, "unauthorized", "需要登录"


class Forbidden(AppError):
    status, code, title = 403, "forbidden", "无权操作"


class NotFound(AppError):
    status, code, title = 404, "not_found", "未找到"


class Conflict(AppError):
    status, code, title = 409, "conflict", "状态冲突"


class Gone(AppError):
    status, code, title = 410, "gone", "已失效"


class ValidationFailed(AppError):
    status, code, title = 422, "validation_error", "参数校验失败"

    def __init__(self, detail: str | None = None, *, field: str | None = None, **kw: Any):
        errors = kw.pop("errors", None) or (
            [{"field": field, "message": detail or self.title}] if field else []
        )
        super().__init__(detail, errors=errors, **kw)


class TooManyRequests(AppError):
    status, code, title = 429, "too_many_requests", "操作过于频繁"


class ServiceUnavailable(AppError):
    """The server is busy (every database connection taken, too many sign-ins hashing at once):
    try again shortly. Always with ``Retry-After``."""

    status, code, title = 503, "service_unavailable", "服务繁忙"

    def __init__(self, detail: str | None = None, *, retry_after: int = 2, **kw: Any) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)}, **kw)


# Seconds a caller is asked to wait when the database is busy or unavailable.
BUSY_RETRY_AFTER = 2


class InvalidTransition(Conflict):
    """A state machine refused a move (DESIGN.md law 6)."""

    code = "invalid_transition"


def problem_body(status: int, code: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    return JSONResponse(
        problem_body(status, code, title, detail, **extra),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or str(loc[0] if loc else "")


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for err in exc.errors():
        errors.append(
            {
                "field": _field_path(err.get("loc", ())),
                "in": str(err.get("loc", ("body",))[0]),
                "message": str(err.get("msg", "invalid")),
                "type": str(err.get("type", "invalid")),
            }
        )
    return errors


STATUS_CODES = {
    400: ("bad_request", "请求有误"),
    401: ("unauthorized", "需要登录"),
    403: ("forbidden", "无权操作"),
    404: ("not_found", "未找到"),
    405: ("method_not_allowed", "不支持的请求方法"),
    406: ("not_acceptable", "无法提供该格式"),
    409: ("conflict", "状态冲突"),
    413: ("payload_too_large", "请求体过大"),
    414: ("uri_too_long", "地址过长"),
    415: ("unsupported_media_type", "不支持的内容类型"),
    422: ("validation_error", "参数校验失败"),
    429: ("too_many_requests", "操作过于频繁"),
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        return problem_response(
            exc.status, exc.code, exc.title, exc.detail, headers=exc.headers, **exc.extra
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc)
        if any(e["type"] in ("json_invalid", "model_attributes_type") for e in errors):
            detail = "请求体不是有效的 JSON"
            code = "malformed_json"
        else:
            detail = "；".join(f"{e['field']}: {e['message']}" for e in errors[:5])
            code = "validation_error"
        return problem_response(422, code, "参数校验失败", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code, title = STATUS_CODES.get(exc.status_code, ("http_error", "请求失败"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404 and detail == "Not Found":
            detail = "没有这个地址"
        return problem_response(
            exc.status_code, code, title, detail, headers=getattr(exc, "headers", None)
        )

    # Safety nets: input the schemas let through but the database refuses is still the caller's
    # mistake (4xx), and it changed nothing because the transaction rolled back.
    @app.exception_handler(DataError)
    async def _data_error(_request: Request, exc: DataError) -> JSONResponse:
        log.warning("database refused a value: %s", exc.orig)
        return problem_response(422, "invalid_value", "参数校验失败", "提交的值超出允许范围")

    @app.exception_handler(IntegrityError)
    async def _integrity(_request: Request, exc: IntegrityError) -> JSONResponse:
        log.warning("integrity error: %s", exc.orig)
        return problem_response(409, "conflict", "状态冲突", "数据与现有记录冲突，请刷新后重试")

    @app.exception_handler(OperationalError)
    async def _operational(_request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", exc.orig)
        return problem_response(
            503,
            "database_unavailable",
            "服务暂不可用",
            "数据库繁忙，请稍后重试",
            headers={"Retry-After": str(BUSY_RETRY_AFTER)},
        )

    # Every pooled connection is taken (a flood): busy, not broken — 503 and come back shortly.
    @app.exception_handler(PoolTimeout)
    async def _pool_timeout(_request: Request, exc: PoolTimeout) -> JSONResponse:
        log.warning("database pool exhausted: %s", exc)
        return problem_response(
            503,
            "database_busy",
            "服务繁忙",
            "服务繁忙，请稍后重试",
            headers={"Retry-After": str(BUSY_RETRY_AFTER)},
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return problem_response(500, "internal_error", "服务器内部错误", "服务器内部错误")
