"""Merchant onboarding (商户入驻), stores, staff and the category tree."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from o2o import events
from o2o.errors import Forbidden, NotFound, ValidationFailed
from o2o.events import OPERATOR, USER, Who
from o2o.merchants.access import MANAGERS, OWNER, Actor
from o2o.merchants.models import Category, Membership, Merchant, MerchantReview, Store
from o2o.search import indexer
from o2o.statemachine import StateMachine
from o2o.timeutil import utcnow

PENDING, APPROVED, REJECTED, SUSPENDED = "pending", "approved", "rejected", "suspended"

MERCHANT_STATUS = StateMachine(
    "商户",
    {
        (PENDING, "approve"): APPROVED,
        (PENDING, "reject"): REJECTED,
        (REJECTED, "resubmit"): PENDING,
        (APPROVED, "suspend"): SUSPENDED,
        (SUSPENDED, "approve"): APPROVED,
    },
    labels={PENDING: "待审核", APPROVED: "已通过", REJECTED: "已驳回", SUSPENDED: "已暂停"},
)

# The events a review decision publishes (``o2o.events``); "resubmit" publishes none.
_DECISION_EVENTS: dict[str, type[events.MerchantApplied]] = {
    "approve": events.MerchantApproved,
    "reject": events.MerchantRejected,
    "suspend": events.MerchantSuspended,
}


# --- categories -----------------------------------------------------------------------------


def get_category(session: Session, category_id: int, *, field: str = "category_id") -> Category:
    category = session.get(Category, category_id)
    if category is None:
        raise ValidationFailed("类目不存在", field=field)
    return category


def category_tree(session: Session) -> list[dict[str, Any]]:
    categories = session.scalars(select(Category).order_by(Category.sort_order, Category.id)).all()
    nodes = {
        c.id: {
            "id": c.id,
            "parent_id": c.parent_id,
            "name": c.name,
            "commission_bp": c.commission_bp,
            "sort_order": c.sort_order,
            "icon": c.icon,
            "children": [],
        }
        for c in categories
    }
    roots = []
    for c in categories:
        node = nodes[c.id]
        parent = nodes.get(c.parent_id) if c.parent_id else None
        (parent["children"] if parent else roots).append(node)
    return roots


def category_and_descendants(session: Session, category_id: int) -> list[int]:
    rows = session.execute(select(Category.id, Category.parent_id)).all()
    children: dict[int | None, list[int]] = {}
    for cid, parent in rows:
        children.setdefault(parent, []).append(cid)
    result, stack = [], [category_id]
    while stack:
        cid = stack.pop()
        result.append(cid)
        stack.extend(children.get(cid, []))
    return result


def create_category(session: Session, **fields: Any) -> Category:
    if fields.get("parent_id") is not None:
        get_category(session, fields["parent_id"], field="parent_id")
    category = Category(**fields)
    session.add(category)
    session.flush()
    return category


def update_category(session: Session, category_id: int, **changes: Any) -> Category:
    category = session.get(Category, category_id)
    if category is None:
        raise NotFound("类目不存在")
    for key, value in changes.items():
        setattr(category, key, value)
    session.flush()
    return category


def commission_rate_bp(session: Session, merchant: Merchant, category_id: int | None) -> int:
    """The merchant's override if set, else the category's default (basis points)."""
    if merchant.commission_bp is not None:
        return merchant.commission_bp
    category = session.get(Category, category_id) if category_id else None
    return category.commission_bp if category else 0


# --- merchants ------------------------------------------------------------------------------


def get_merchant(session: Session, merchant_id: int, *, for_update: bool = False) -> Merchant:
    stmt = select(Merchant).where(Merchant.id == merchant_id)
    if for_update:
        stmt = stmt.with_for_update()
    merchant = session.scalar(stmt)
    if merchant is None:
        raise NotFound("商户不存在", code="merchant_not_found")
    return merchant


def visible_merchant(session: Session, merchant_id: int, actor: Actor | None) -> Merchant:
    """Approved merchants are public; others only to their staff and operators."""
    merchant = get_merchant(session, merchant_id)
    if merchant.status == APPROVED:
        return merchant
    if actor is not None and (actor.is_admin or actor.staff_role(merchant_id) is not None):
        return merchant
    raise NotFound("商户不存在", code="merchant_not_found")


def apply(session: Session, actor: Actor, **fields: Any) -> Merchant:
    """A user applies to open a merchant and becomes its owner; status pending."""
    if fields.get("category_id") is not None:
        get_category(session, fields["category_id"])
    merchant = Merchant(status=PENDING, **fields)
    session.add(merchant)
    session.flush()
    session.add(Membership(user_id=actor.user_id, merchant_id=merchant.id, role=OWNER))
    _record_review(session, merchant, "apply", "", Who(USER, actor.user_id), "")
    session.flush()
    events.publish(
        session, events.MerchantApplied(merchant_id=merchant.id, by_user_id=actor.user_id)
    )
    return merchant


def update(session: Session, actor: Actor, merchant_id: int, **changes: Any) -> Merchant:
    actor.require_staff(merchant_id, (OWNER,))
    merchant = get_merchant(session, merchant_id, for_update=True)
    if changes.get("category_id") is not None:
        get_category(session, changes["category_id"])
    for key, value in changes.items():
        setattr(merchant, key, value)
    if merchant.status == REJECTED:
        # Editing a rejected application sends it back for review.
        _move(session, merchant, "resubmit", reason="", by=Who(USER, actor.user_id))
    session.flush()
    if "name" in changes:
        indexer.merchant_changed(session, merchant.id)  # the new name is searchable at once
    return merchant


def list_merchants(
    session: Session, *, status: str | None, limit: int, after_id: int | None
) -> Sequence[Merchant]:
    stmt = select(Merchant).order_by(Merchant.id).limit(limit)
    if status:
        stmt = stmt.where(Merchant.status == status)
    if after_id:
        stmt = stmt.where(Merchant.id > after_id)
    return session.scalars(stmt).all()


def _move(session: Session, merchant: Merchant, action: str, *, reason: str, by: Who) -> None:
    previous = merchant.status
    merchant.status = MERCHANT_STATUS.next_state(merchant.status, action)
    merchant.status_reason = reason
    _record_review(session, merchant, action, previous, by, reason)
    decided = _DECISION_EVENTS.get(action)
    if decided is not None:
        events.publish(session, decided(merchant_id=merchant.id, by_user_id=by.id, reason=reason))


def _record_review(
    session: Session, merchant: Merchant, action: str, previous: str, by: Who, reason: str
) -> None:
    """Every decision is kept (审核记录); the merchant row only shows the latest."""
    session.add(
        MerchantReview(
            merchant_id=merchant.id,
            action=action,
            from_status=previous,
            to_status=merchant.status,
            actor_kind=by.kind,
            actor_id=by.id,
            reason=reason[:500],
            at=utcnow(),
        )
    )


REVIEW_ACTION_LABELS = {
    "apply": "提交申请",
    "approve": "审核通过",
    "reject": "驳回",
    "suspend": "暂停",
    "resubmit": "修改后重新提交",
}


def review_histories(
    session: Session, merchant_ids: Sequence[int]
) -> dict[int, list[MerchantReview]]:
    """Each merchant's decisions (审核记录), oldest first."""
    result: dict[int, list[MerchantReview]] = {mid: [] for mid in merchant_ids}
    if not merchant_ids:
        return result
    for row in session.scalars(
        select(MerchantReview)
        .where(MerchantReview.merchant_id.in_(list(merchant_ids)))
        .order_by(MerchantReview.id)
    ):
        result[row.merchant_id].append(row)
    return result


def review(
    session: Session, actor: Actor, merchant_id: int, action: str, reason: str = ""
) -> Merchant:
    """Operator decisions: approve, reject (with reason), suspend (with reason)."""
    actor.require_admin()
    merchant = get_merchant(session, merchant_id, for_update=True)
    _move(session, merchant, action, reason=reason, by=Who(OPERATOR, actor.user_id))
    merchant.reviewed_at = utcnow()
    merchant.reviewed_by = actor.user_id
    session.flush()
    indexer.merchant_changed(session, merchant.id)  # suspended: its listings leave search
    return merchant


def configure(session: Session, actor: Actor, merchant_id: int, **changes: Any) -> Merchant:
    actor.require_admin()
    merchant = get_merchant(session, merchant_id, for_update=True)
    for key, value in changes.items():
        setattr(merchant, key, value)
    session.flush()
    return merchant


def require_approved(merchant: Merchant) -> None:
    if merchant.status != APPROVED:
        raise Forbidden(
            f"商户状态为「{MERCHANT_STATUS.label(merchant.status)}」，审核通过后才能操作",
            code="merchant_not_approved",
        )


# --- stores ---------------------------------------------------------------------------------


def create_store(session: Session, actor: Actor, merchant_id: int, **fields: Any) -> Store:
    actor.require_staff(merchant_id, MANAGERS)
    require_approved(get_merchant(session, merchant_id))
    store = Store(merchant_id=merchant_id, **fields)
    session.add(store)
    session.flush()
    indexer.store_changed(session, store.id)
    return store


def get_store(session: Session, merchant_id: int, store_id: int) -> Store:
    store = session.get(Store, store_id)
    if store is None or store.merchant_id != merchant_id:
        raise NotFound("门店不存在", code="store_not_found")
    return store


def update_store(
    session: Session, actor: Actor, merchant_id: int, store_id: int, **changes: Any
) -> Store:
    actor.require_staff(merchant_id, MANAGERS)
    store = get_store(session, merchant_id, store_id)
    for key, value in changes.items():
        setattr(store, key, value)
    session.flush()
    indexer.store_changed(session, store.id)  # moved, renamed or closed
    return store


def list_stores(session: Session, merchant_id: int) -> Sequence[Store]:
    return session.scalars(
        select(Store).where(Store.merchant_id == merchant_id).order_by(Store.id)
    ).all()
