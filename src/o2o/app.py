"""The application factory: API, pages and (optionally) the worker in one process."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from o2o import __version__, wiring
from o2o.channels.middleware import install as install_visit_recording
from o2o.config import Settings, get_settings
from o2o.db import Database
from o2o.errors import install_error_handlers, problem_response
from o2o.http_headers import HeadAsGetMiddleware, SecurityHeadersMiddleware
from o2o.registry import domain_modules, load_models
from o2o.web.install import install_pages
from o2o.worker import BackgroundWorker

log = logging.getLogger(__name__)


def domain_routers() -> list[APIRouter]:
    """Every domain's ``api.routers`` (pages come last so API paths win)."""
    routers: list[APIRouter] = []
    for module in domain_modules("api"):
        routers.extend(module.routers)
    return routers


def create_app(settings: Settings | None = None, *, run_worker: bool = False) -> FastAPI:
    load_models()
    wiring.install()  # who reacts to which domain event (o2o/wiring.py)
    settings = settings or get_settings()
    db = Database.from_url(settings.database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        worker = BackgroundWorker(settings) if run_worker else None
        if worker:
            worker.start()
        try:
            yield
        finally:
            if worker:
                worker.stop()
            db.dispose()

    app = FastAPI(
        title="O2O Platform",
        version=__version__,
        description="平台电商 + 到店 O2O：一个收银台、一个支付核心、一个账本",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.secret_key = settings.resolved_secret_key()
    install_error_handlers(app)
    for router in domain_routers():
        app.include_router(router)
    # HEAD wherever GET is (innermost of these, so every layer above sees the real method).
    app.add_middleware(HeadAsGetMiddleware)
    # Visits through traffic channels (?ch= / X-Channel), written off the request path.
    install_visit_recording(app, db)
    # Pages: session cookie, /static, HTML error pages (wraps the API's handlers, so after them).
    install_pages(app)
    # The API's protective headers, as pages have theirs.
    app.add_middleware(SecurityHeadersMiddleware)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], response_model=None)
    def readyz() -> dict[str, str] | JSONResponse:
        try:
            with db.transaction(readonly=True) as session:
                session.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("readiness check failed: %s", exc)
            return problem_response(503, "not_ready", "服务未就绪", "数据库不可达")
        return {"status": "ready", "database": db.dialect}

    return app


def served_app() -> FastAPI:
    """Factory for uvicorn (``o2o serve``): settings from the environment."""
    settings = get_settings()
    return create_app(settings, run_worker=settings.embedded_worker)
