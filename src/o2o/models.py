"""Every table of every domain, registered in one place for Alembic and the tests."""

from o2o import idempotency, meta, ratelimit  # noqa: F401  (tables outside domain packages)
from o2o.db import Base
from o2o.registry import domain_modules

DOMAIN_MODELS = domain_modules("models")

__all__ = ["DOMAIN_MODELS", "Base"]
