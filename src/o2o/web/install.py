"""What the app needs for pages: the session cookie middleware, /static and HTML error pages.

Called once from ``o2o.app.create_app``; the page routes themselves arrive like every domain's,
through ``o2o.web.api.routers``.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from o2o.web.errors import install_page_errors
from o2o.web.session import PageSessionMiddleware
from o2o.web.templating import STATIC_DIR


def install_pages(app: FastAPI) -> None:
    settings = app.state.settings
    app.add_middleware(
        PageSessionMiddleware,
        secret_key=app.state.secret_key,
        secure=settings.public_base_url.startswith("https://"),
    )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    install_page_errors(app)
