"""Page routes of every module in ``o2o.web.pages`` (found by convention: each module defines
``router = page_router()``). They are out of the OpenAPI schema; their access rules are tested
in tests/web."""

from __future__ import annotations

import importlib
import pkgutil

from fastapi import APIRouter

from o2o.web import pages
from o2o.web.csrf import verify_csrf


def page_routers() -> list[APIRouter]:
    found = []
    for info in sorted(pkgutil.iter_modules(pages.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{pages.__name__}.{info.name}")
        router = getattr(module, "router", None)
        if router is None:
            continue
        # Every page router must check CSRF (page_router() does); refuse to start otherwise.
        if not any(d.dependency is verify_csrf for d in router.dependencies):
            raise RuntimeError(f"{module.__name__}.router must be made with page_router()")
        found.append(router)
    return found


routers = page_routers()
