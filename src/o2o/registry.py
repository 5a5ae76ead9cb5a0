"""Finds each domain's modules (``o2o.<domain>.api``, ``.models``, ``.demo``) by convention,
so adding a domain never means editing a central list.

``load_models()`` is the one start-up step that registers every table: the app, the worker and
every CLI command call it before touching the database, so SQLAlchemy can resolve every foreign
key whichever module happens to run first (``o2o reconcile`` once crashed on ``users``)."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import o2o


def domain_modules(name: str) -> list[ModuleType]:
    found = []
    for info in sorted(pkgutil.iter_modules(o2o.__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        module_name = f"o2o.{info.name}.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        found.append(importlib.import_module(module_name))
    return found


def load_models() -> None:
    """Import every table of every domain (``o2o.models``); cheap after the first call."""
    importlib.import_module("o2o.models")
