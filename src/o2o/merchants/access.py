"""Who may act for which merchant and store (DESIGN.md law 5: tenants are isolated)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o.accounts.models import User
from o2o.errors import Forbidden, Unauthorized
from o2o.merchants.models import Membership

OWNER, MANAGER, CLERK = "owner", "manager", "clerk"
ROLES = (OWNER, MANAGER, CLERK)
MANAGERS = (OWNER, MANAGER)
ROLE_LABELS = {OWNER: "店主", MANAGER: "店长", CLERK: "店员"}


@dataclass(frozen=True)
class StaffRole:
    merchant_id: int
    role: str
    store_ids: frozenset[int]

    def covers_store(self, store_id: int) -> bool:
        """Owners and managers act for every store; a clerk only for its own."""
        return self.role in MANAGERS or store_id in self.store_ids


@dataclass(frozen=True)
class Actor:
    """The caller: a user (every user is a consumer), maybe staff, maybe an operator."""

    user_id: int
    phone: str | None
    name: str
    is_admin: bool = False
    roles: dict[int, StaffRole] = field(default_factory=dict)

    def staff_role(self, merchant_id: int) -> StaffRole | None:
        return self.roles.get(merchant_id)

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("仅平台运营可操作", code="admin_only")

    def require_staff(
        self,
        merchant_id: int,
        roles: Iterable[str] = ROLES,
        *,
        store_id: int | None = None,
    ) -> StaffRole:
        role = self.roles.get(merchant_id)
        if role is None:
            raise Forbidden("您不是该商户的员工", code="not_merchant_staff")
        if role.role not in tuple(roles):
            raise Forbidden(
                f"{ROLE_LABELS.get(role.role, role.role)}无权执行此操作", code="role_not_allowed"
            )
        if store_id is not None and not role.covers_store(store_id):
            raise Forbidden("您不属于该门店", code="store_not_allowed")
        return role

    def visible_store_ids(self, merchant_id: int) -> frozenset[int] | None:
        """None = all stores of the merchant; else the clerk's stores."""
        role = self.require_staff(merchant_id)
        return None if role.role in MANAGERS else role.store_ids


def load_actor(session: Session, user: User) -> Actor:
    memberships = session.scalars(select(Membership).where(Membership.user_id == user.id)).all()
    roles = {
        m.merchant_id: StaffRole(m.merchant_id, m.role, frozenset(m.store_ids)) for m in memberships
    }
    return Actor(user.id, user.phone, user.name, user.is_admin, roles)


def anonymous_forbidden() -> Unauthorized:
    return Unauthorized("请先登录", headers={"WWW-Authenticate": "Bearer"})
