"""员工: a merchant's staff, and the invitations that make someone staff.

Nobody becomes staff (or owner) of a merchant without saying yes: an owner or manager *invites*
a registered user by phone number; the invited user sees the invitation (``/me`` page, ``GET
/api/v1/me/invitations``) and accepts or declines it. Owners invite owners and managers; managers
invite clerks. A merchant always keeps at least one owner: removing the last one is refused,
with the merchant row locked so that two owners removing each other at once cannot both succeed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from o2o.accounts import service as accounts
from o2o.accounts.models import User
from o2o.errors import Conflict, Forbidden, NotFound, ValidationFailed
from o2o.merchants.access import CLERK, MANAGER, MANAGERS, OWNER, Actor
from o2o.merchants.models import Membership, MembershipStore, Merchant, StaffInvitation, Store
from o2o.merchants.service import get_merchant
from o2o.statemachine import StateMachine
from o2o.timeutil import utcnow

PENDING, ACCEPTED, DECLINED, REVOKED = "pending", "accepted", "declined", "revoked"
INVITATION_STATUS = StateMachine(
    "邀请",
    {(PENDING, "accept"): ACCEPTED, (PENDING, "decline"): DECLINED, (PENDING, "revoke"): REVOKED},
    labels={PENDING: "待接受", ACCEPTED: "已接受", DECLINED: "已拒绝", REVOKED: "已撤回"},
)


def _check_store_ids(session: Session, merchant_id: int, store_ids: list[int]) -> None:
    if not store_ids:
        return
    found = set(
        session.scalars(
            select(Store.id).where(Store.merchant_id == merchant_id, Store.id.in_(store_ids))
        )
    )
    missing = sorted(set(store_ids) - found)
    if missing:
        raise ValidationFailed(f"门店 {missing} 不属于该商户", field="store_ids")


def _membership(session: Session, merchant_id: int, user_id: int) -> Membership | None:
    return session.scalar(
        select(Membership).where(
            Membership.user_id == user_id, Membership.merchant_id == merchant_id
        )
    )


# --- invitations (the inviting side) ---------------------------------------------------------


def invite_staff(
    session: Session, actor: Actor, merchant_id: int, *, phone: str, role: str, store_ids: list[int]
) -> StaffInvitation:
    me = actor.require_staff(merchant_id, MANAGERS)
    if role in MANAGERS and me.role != OWNER:
        raise Forbidden("只有店主可以邀请店长或店主", code="role_not_allowed")
    if role == CLERK and not store_ids:
        raise ValidationFailed("店员至少需要一个门店", field="store_ids")
    _check_store_ids(session, merchant_id, store_ids)
    user = accounts.require_user(session, phone)
    if _membership(session, merchant_id, user.id) is not None:
        raise Conflict("该用户已是本商户员工", code="already_staff")
    pending = session.scalar(
        select(StaffInvitation.id).where(
            StaffInvitation.merchant_id == merchant_id,
            StaffInvitation.user_id == user.id,
            StaffInvitation.status == PENDING,
        )
    )
    if pending is not None:
        raise Conflict("已邀请该用户，等待对方接受", code="already_invited")
    invitation = StaffInvitation(
        merchant_id=merchant_id,
        user_id=user.id,
        role=role,
        store_ids=sorted(set(store_ids)) if role == CLERK else [],
        invited_by=actor.user_id,
        status=PENDING,
    )
    session.add(invitation)
    session.flush()
    return invitation


def _invitation_rows(session: Session, *conditions: Any) -> list[dict[str, Any]]:
    rows = session.execute(
        select(StaffInvitation, User.phone, User.name, Merchant.name.label("merchant_name"))
        .join(User, User.id == StaffInvitation.user_id)
        .join(Merchant, Merchant.id == StaffInvitation.merchant_id)
        .where(*conditions)
        .order_by(StaffInvitation.id.desc())
    ).all()
    return [
        {
            "id": inv.id,
            "merchant_id": inv.merchant_id,
            "merchant_name": merchant_name,
            "user_id": inv.user_id,
            "phone": phone,
            "name": name,
            "role": inv.role,
            "store_ids": list(inv.store_ids or []),
            "status": inv.status,
            "created_at": inv.created_at,
        }
        for inv, phone, name, merchant_name in rows
    ]


def invitation_row(session: Session, invitation_id: int) -> dict[str, Any]:
    return _invitation_rows(session, StaffInvitation.id == invitation_id)[0]


def list_invitations(session: Session, actor: Actor, merchant_id: int) -> list[dict[str, Any]]:
    """The merchant's pending invitations (owners and managers)."""
    actor.require_staff(merchant_id, MANAGERS)
    return _invitation_rows(
        session,
        StaffInvitation.merchant_id == merchant_id,
        StaffInvitation.status == PENDING,
    )


def _locked_invitation(session: Session, invitation_id: int) -> StaffInvitation | None:
    return session.scalar(
        select(StaffInvitation).where(StaffInvitation.id == invitation_id).with_for_update()
    )


def revoke_invitation(
    session: Session, actor: Actor, merchant_id: int, invitation_id: int
) -> StaffInvitation:
    me = actor.require_staff(merchant_id, MANAGERS)
    invitation = _locked_invitation(session, invitation_id)
    if invitation is None or invitation.merchant_id != merchant_id:
        raise NotFound("邀请不存在", code="invitation_not_found")
    if invitation.role in MANAGERS and me.role != OWNER:
        raise Forbidden("只有店主可以撤回店长或店主的邀请", code="role_not_allowed")
    invitation.status = INVITATION_STATUS.next_state(invitation.status, "revoke")
    invitation.responded_at = utcnow()
    session.flush()
    return invitation


# --- invitations (the invited side) ----------------------------------------------------------


def my_invitations(session: Session, user_id: int) -> list[dict[str, Any]]:
    return _invitation_rows(
        session, StaffInvitation.user_id == user_id, StaffInvitation.status == PENDING
    )


def _own_invitation(session: Session, user_id: int, invitation_id: int) -> StaffInvitation:
    invitation = _locked_invitation(session, invitation_id)
    if invitation is None or invitation.user_id != user_id:
        # Someone else's invitation looks exactly like none.
        raise NotFound("邀请不存在", code="invitation_not_found")
    return invitation


def accept_invitation(session: Session, user_id: int, invitation_id: int) -> Membership:
    """Say yes: the invitation becomes a membership with its role (and a clerk's stores that
    still belong to the merchant)."""
    invitation = _own_invitation(session, user_id, invitation_id)
    invitation.status = INVITATION_STATUS.next_state(invitation.status, "accept")
    invitation.responded_at = utcnow()
    if _membership(session, invitation.merchant_id, user_id) is not None:
        raise Conflict("您已是该商户的员工", code="already_staff")
    store_ids = list(invitation.store_ids or [])
    if store_ids:
        store_ids = sorted(
            session.scalars(
                select(Store.id).where(
                    Store.merchant_id == invitation.merchant_id, Store.id.in_(store_ids)
                )
            )
        )
        if invitation.role == CLERK and not store_ids:
            raise Conflict("邀请中的门店已不存在，请联系商户重新邀请", code="invitation_stale")
    membership = Membership(
        user_id=user_id, merchant_id=invitation.merchant_id, role=invitation.role
    )
    membership.stores = [MembershipStore(store_id=s) for s in store_ids]
    session.add(membership)
    session.flush()
    return membership


def decline_invitation(session: Session, user_id: int, invitation_id: int) -> StaffInvitation:
    invitation = _own_invitation(session, user_id, invitation_id)
    invitation.status = INVITATION_STATUS.next_state(invitation.status, "decline")
    invitation.responded_at = utcnow()
    session.flush()
    return invitation


# --- members ---------------------------------------------------------------------------------


def remove_staff(session: Session, actor: Actor, merchant_id: int, user_id: int) -> None:
    me = actor.require_staff(merchant_id, MANAGERS)
    # The merchant row locked first: removals of owners of one merchant take turns, so the
    # "is this the last owner" count below cannot be outrun by a concurrent removal.
    get_merchant(session, merchant_id, for_update=True)
    membership = _membership(session, merchant_id, user_id)
    if membership is None:
        raise NotFound("该员工不存在", code="staff_not_found")
    if membership.role in MANAGERS and me.role != OWNER:
        raise Forbidden("只有店主可以移除店长", code="role_not_allowed")
    if membership.role == OWNER:
        owners = session.scalar(
            select(func.count()).where(
                Membership.merchant_id == merchant_id, Membership.role == OWNER
            )
        )
        if (owners or 0) <= 1:
            raise Conflict("不能移除唯一的店主", code="last_owner")
    session.delete(membership)
    session.flush()


def list_staff(session: Session, actor: Actor, merchant_id: int) -> list[dict[str, Any]]:
    actor.require_staff(merchant_id, (OWNER, MANAGER))
    rows = session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.merchant_id == merchant_id)
        .order_by(Membership.id)
    ).all()
    return [
        {
            "user_id": u.id,
            "phone": u.phone,
            "name": u.name,
            "role": m.role,
            "store_ids": m.store_ids,
        }
        for m, u in rows
    ]
