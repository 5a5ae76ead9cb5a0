from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from o2o.deps import ActorDep, AdminDep, DbDep, OptionalActorDep, ReadSessionDep, SessionDep
from o2o.merchants import service, staff
from o2o.merchants.schemas import (
    CategoryIn,
    CategoryOut,
    CategoryUpdate,
    InvitationOut,
    MerchantApply,
    MerchantOut,
    MerchantPublic,
    MerchantSettings,
    MerchantUpdate,
    ReviewDecision,
    StaffIn,
    StaffOut,
    StoreIn,
    StoreOut,
    StoreUpdate,
)
from o2o.schemas import Id, Page, PageLimit

router = APIRouter(prefix="/api/v1", tags=["merchants"])
admin_router = APIRouter(prefix="/api/v1/admin", tags=["admin"])

MerchantStatus = Literal["pending", "approved", "rejected", "suspended"]


def _cursor(items: list, limit: int) -> str | None:
    return str(items[-1].id) if len(items) == limit else None


@router.post("/merchants", status_code=201, response_model=MerchantOut)
def apply(body: MerchantApply, actor: ActorDep, session: SessionDep) -> MerchantOut:
    return MerchantOut.model_validate(service.apply(session, actor, **body.model_dump()))


@router.get("/merchants/{merchant_id}", response_model=MerchantOut | MerchantPublic)
def get_merchant(
    merchant_id: Id, actor: OptionalActorDep, session: ReadSessionDep
) -> MerchantOut | MerchantPublic:
    merchant = service.visible_merchant(session, merchant_id, actor)
    if actor is not None and (actor.is_admin or actor.staff_role(merchant_id)):
        return MerchantOut.model_validate(merchant)
    return MerchantPublic.model_validate(merchant)


@router.patch("/merchants/{merchant_id}", response_model=MerchantOut)
def update_merchant(
    merchant_id: Id, body: MerchantUpdate, actor: ActorDep, session: SessionDep
) -> MerchantOut:
    changes = body.model_dump(exclude_unset=True)
    return MerchantOut.model_validate(service.update(session, actor, merchant_id, **changes))


@router.post("/merchants/{merchant_id}/stores", status_code=201, response_model=StoreOut)
def create_store(merchant_id: Id, body: StoreIn, actor: ActorDep, session: SessionDep) -> StoreOut:
    return StoreOut.model_validate(
        service.create_store(session, actor, merchant_id, **body.model_dump())
    )


@router.get("/merchants/{merchant_id}/stores", response_model=list[StoreOut])
def list_stores(
    merchant_id: Id, actor: OptionalActorDep, session: ReadSessionDep
) -> list[StoreOut]:
    service.visible_merchant(session, merchant_id, actor)
    return [StoreOut.model_validate(s) for s in service.list_stores(session, merchant_id)]


@router.get("/merchants/{merchant_id}/stores/{store_id}", response_model=StoreOut)
def get_store(
    merchant_id: Id, store_id: Id, actor: OptionalActorDep, session: ReadSessionDep
) -> StoreOut:
    service.visible_merchant(session, merchant_id, actor)
    return StoreOut.model_validate(service.get_store(session, merchant_id, store_id))


@router.patch("/merchants/{merchant_id}/stores/{store_id}", response_model=StoreOut)
def update_store(
    merchant_id: Id, store_id: Id, body: StoreUpdate, actor: ActorDep, session: SessionDep
) -> StoreOut:
    changes = body.model_dump(exclude_unset=True)
    return StoreOut.model_validate(
        service.update_store(session, actor, merchant_id, store_id, **changes)
    )


@router.get("/merchants/{merchant_id}/staff", response_model=list[StaffOut])
def list_staff(merchant_id: Id, actor: ActorDep, session: ReadSessionDep) -> list[StaffOut]:
    return [StaffOut(**row) for row in staff.list_staff(session, actor, merchant_id)]


@router.delete("/merchants/{merchant_id}/staff/{user_id}", status_code=204)
def remove_staff(merchant_id: Id, user_id: Id, actor: ActorDep, session: SessionDep) -> Response:
    """The last owner cannot be removed (409 last_owner)."""
    staff.remove_staff(session, actor, merchant_id, user_id)
    return Response(status_code=204)


# Invitation routes own their transaction (``db.transaction()``): committed before the answer
# is sent, so the invited user's next request already sees the membership.


@router.post("/merchants/{merchant_id}/invitations", status_code=201, response_model=InvitationOut)
def invite_staff(merchant_id: Id, body: StaffIn, actor: ActorDep, db: DbDep) -> InvitationOut:
    """邀请员工: the user becomes staff only when they accept (owners invite owners and
    managers; managers invite clerks)."""
    with db.transaction() as session:
        invitation = staff.invite_staff(
            session, actor, merchant_id, phone=body.phone, role=body.role, store_ids=body.store_ids
        )
        return InvitationOut(**staff.invitation_row(session, invitation.id))


@router.get("/merchants/{merchant_id}/invitations", response_model=list[InvitationOut])
def list_invitations(
    merchant_id: Id, actor: ActorDep, session: ReadSessionDep
) -> list[InvitationOut]:
    return [InvitationOut(**r) for r in staff.list_invitations(session, actor, merchant_id)]


@router.delete("/merchants/{merchant_id}/invitations/{invitation_id}", status_code=204)
def revoke_invitation(merchant_id: Id, invitation_id: Id, actor: ActorDep, db: DbDep) -> Response:
    with db.transaction() as session:
        staff.revoke_invitation(session, actor, merchant_id, invitation_id)
    return Response(status_code=204)


@router.get("/me/invitations", response_model=list[InvitationOut])
def my_invitations(actor: ActorDep, session: ReadSessionDep) -> list[InvitationOut]:
    """Invitations waiting for the caller's answer."""
    return [InvitationOut(**r) for r in staff.my_invitations(session, actor.user_id)]


@router.post("/me/invitations/{invitation_id}/accept", response_model=StaffOut)
def accept_invitation(invitation_id: Id, actor: ActorDep, db: DbDep) -> StaffOut:
    with db.transaction() as session:
        membership = staff.accept_invitation(session, actor.user_id, invitation_id)
        role, store_ids = membership.role, membership.store_ids
    return StaffOut(
        user_id=actor.user_id, phone=actor.phone, name=actor.name, role=role, store_ids=store_ids
    )


@router.post("/me/invitations/{invitation_id}/decline", status_code=204)
def decline_invitation(invitation_id: Id, actor: ActorDep, db: DbDep) -> Response:
    with db.transaction() as session:
        staff.decline_invitation(session, actor.user_id, invitation_id)
    return Response(status_code=204)


@router.get("/categories", response_model=list[CategoryOut])
def categories(session: ReadSessionDep) -> list[CategoryOut]:
    return [CategoryOut.model_validate(n) for n in service.category_tree(session)]


# --- operator -------------------------------------------------------------------------------


@admin_router.get("/merchants", response_model=Page[MerchantOut])
def admin_list_merchants(
    _admin: AdminDep,
    session: ReadSessionDep,
    status: MerchantStatus | None = None,
    limit: PageLimit = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")] = None,
) -> Page[MerchantOut]:
    items = list(
        service.list_merchants(
            session, status=status, limit=limit, after_id=int(cursor) if cursor else None
        )
    )
    return Page[MerchantOut](
        items=[MerchantOut.model_validate(m) for m in items], next_cursor=_cursor(items, limit)
    )


@admin_router.post("/merchants/{merchant_id}/approve", response_model=MerchantOut)
def approve(merchant_id: Id, admin: AdminDep, session: SessionDep) -> MerchantOut:
    return MerchantOut.model_validate(service.review(session, admin, merchant_id, "approve"))


@admin_router.post("/merchants/{merchant_id}/reject", response_model=MerchantOut)
def reject(
    merchant_id: Id, body: ReviewDecision, admin: AdminDep, session: SessionDep
) -> MerchantOut:
    return MerchantOut.model_validate(
        service.review(session, admin, merchant_id, "reject", body.reason)
    )


@admin_router.post("/merchants/{merchant_id}/suspend", response_model=MerchantOut)
def suspend(
    merchant_id: Id, body: ReviewDecision, admin: AdminDep, session: SessionDep
) -> MerchantOut:
    return MerchantOut.model_validate(
        service.review(session, admin, merchant_id, "suspend", body.reason)
    )


@admin_router.patch("/merchants/{merchant_id}", response_model=MerchantOut)
def configure(
    merchant_id: Id, body: MerchantSettings, admin: AdminDep, session: SessionDep
) -> MerchantOut:
    changes = body.model_dump(exclude_unset=True)
    return MerchantOut.model_validate(service.configure(session, admin, merchant_id, **changes))


@admin_router.get("/categories", response_model=list[CategoryOut])
def admin_categories(_admin: AdminDep, session: ReadSessionDep) -> list[CategoryOut]:
    return [CategoryOut.model_validate(n) for n in service.category_tree(session)]


@admin_router.post("/categories", status_code=201, response_model=CategoryOut)
def create_category(body: CategoryIn, _admin: AdminDep, session: SessionDep) -> CategoryOut:
    return CategoryOut.model_validate(service.create_category(session, **body.model_dump()))


@admin_router.patch("/categories/{category_id}", response_model=CategoryOut)
def update_category(
    category_id: Id, body: CategoryUpdate, _admin: AdminDep, session: SessionDep
) -> CategoryOut:
    changes = body.model_dump(exclude_unset=True)
    return CategoryOut.model_validate(service.update_category(session, category_id, **changes))


routers = [router, admin_router]
