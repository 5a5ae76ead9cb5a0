"""Every table of every domain, imported in one place for Alembic and the tests."""

from o2o.accounts.models import User
from o2o.db import Base
from o2o.idempotency import IdempotencyRecord
from o2o.merchants.models import Category, Membership, MembershipStore, Merchant, Store
from o2o.meta import MetaValue
from o2o.ratelimit import RateEvent

__all__ = [
    "Base",
    "Category",
    "IdempotencyRecord",
    "Membership",
    "MembershipStore",
    "Merchant",
    "MetaValue",
    "RateEvent",
    "Store",
    "User",
]
