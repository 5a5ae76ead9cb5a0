from __future__ import annotations

from fastapi import APIRouter, Request

from o2o.accounts import service
from o2o.accounts.schemas import MeOut, RegisterIn, TokenIn, TokenOut, UserOut
from o2o.deps import ActorDep, DbDep, ReadSessionDep, SessionDep, SettingsDep
from o2o.merchants.models import Merchant

router = APIRouter(prefix="/api/v1", tags=["accounts"])


@router.post("/auth/register", status_code=201, response_model=UserOut)
def register(body: RegisterIn, session: SessionDep) -> UserOut:
    user = service.register(session, phone=body.phone, password=body.password, name=body.name)
    return UserOut.model_validate(user)


@router.post("/auth/token", response_model=TokenOut)
def token(body: TokenIn, request: Request, db: DbDep, settings: SettingsDep) -> TokenOut:
    access_token = service.authenticate(
        db, settings, request.app.state.secret_key, body.phone, body.password
    )
    return TokenOut(access_token=access_token, expires_in=settings.token_ttl_seconds)


@router.get("/me", response_model=MeOut)
def me(actor: ActorDep, session: ReadSessionDep) -> MeOut:
    names = {
        m.id: m.name for m in session.query(Merchant).filter(Merchant.id.in_(list(actor.roles)))
    }
    return MeOut(
        id=actor.user_id,
        phone=actor.phone,
        name=actor.name,
        is_admin=actor.is_admin,
        memberships=[
            {
                "merchant_id": r.merchant_id,
                "merchant_name": names.get(r.merchant_id, ""),
                "role": r.role,
                "store_ids": sorted(r.store_ids),
            }
            for r in actor.roles.values()
        ],
    )


routers = [router]
